"""Image sets for evaluation: a folder of images or a ``manifest.jsonl`` written by ``medgen generate``.

Images are read with :func:`medgen.data.io.load_image` (geometry checks, one-line errors), 3D volumes are
reoriented to RAS as the data module does (so slices, pairs and pictures agree with ``medgen dataset``), and
intensities are kept as stored; what to do with those intensities (window, normalisation) is the metric's
business and is recorded in the report's protocol.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from monai.data import MetaTensor
from monai.transforms import Orientation

from medgen.data.datalist import find_records
from medgen.data.formats import suffix_of
from medgen.data.io import META_MODALITY, load_image
from medgen.errors import InputError

log = logging.getLogger(__name__)


@dataclass
class ImageItem:
    """One image of a set.

    Attributes:
        key: Name used to pair images across sets (file name without extension).
        path: The file (or DICOM series folder).
    """

    key: str
    path: Path


def list_source(source: str | Path, include_qc_failed: bool = False) -> list[ImageItem]:
    """The images of a folder (searched recursively) or of a ``manifest.jsonl`` (its ``file`` fields).

    A folder written by ``medgen generate`` (a ``manifest.jsonl`` at its root) is read through its manifest.
    Generated samples that failed quality control (``qc.passed`` false) are skipped with a warning unless
    ``include_qc_failed``.

    Raises:
        InputError: Missing source, malformed manifest, a manifest row naming a missing file, or no images.
    """
    src = Path(source)
    if src.is_dir() and (src / "manifest.jsonl").is_file():
        src = src / "manifest.jsonl"
    if src.is_file() and src.suffix == ".jsonl":
        return _from_manifest(src, include_qc_failed)
    records = find_records(src)
    return [ImageItem(key=_key(Path(r.image)), path=Path(r.image)) for r in records.records]


def _key(path: Path) -> str:
    suffix = suffix_of(path)
    return path.name[: -len(suffix)] if suffix and path.is_file() else path.name


def _from_manifest(manifest: Path, include_qc_failed: bool) -> list[ImageItem]:
    items, failed = [], 0
    for i, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{manifest} line {i}", f"invalid JSON ({exc.msg})") from None
        if "file" not in row:
            raise InputError(f"{manifest} line {i}", "row has no 'file' field")
        if row["file"] is None and row.get("dropped"):  # a sample the generation gate dropped: no file
            continue
        if (row.get("qc") or {}).get("passed") is False and not include_qc_failed:
            failed += 1
            continue
        path = manifest.parent / row["file"]
        if not path.exists():
            raise InputError(f"{manifest} line {i}", f"file '{row['file']}' does not exist")
        items.append(ImageItem(key=_key(path), path=path))
    if failed:
        log.warning("%s: skipping %d samples that failed quality control (--include-qc-failed keeps them)",
                    manifest, failed)  # fmt: skip
    if not items:
        raise InputError(manifest, "manifest has no rows" if not failed else "every sample failed quality control")
    return items


def to_ras(img: MetaTensor) -> MetaTensor:
    """A ``(1, *spatial)`` image; a 3D volume reoriented to RAS (2D images have no orientation to fix)."""
    return Orientation(axcodes="RAS", labels=None)(img) if img.ndim == 4 else img  # type: ignore[return-value]


def load_ras(path: str | Path) -> MetaTensor:
    """One image as ``(1, *spatial)`` read by :func:`~medgen.data.io.load_image`, a 3D volume in RAS."""
    return to_ras(load_image(path))


def load_stack(items: list[ImageItem], window: tuple[float, float] | None = None) -> torch.Tensor:
    """Load same-shaped images (3D: in RAS) into ``(N, 1, *spatial)`` float32, clipped to ``window`` when given.

    Raises:
        InputError: Images of different shapes (naming the first that differs).
    """
    images: list[torch.Tensor] = []
    for item in items:
        img = load_ras(item.path).as_tensor()
        if images and img.shape != images[0].shape:
            raise InputError(
                item.path, f"shape {tuple(img.shape[1:])} differs from {tuple(images[0].shape[1:])} of the first image"
            )
        images.append(img)
    stack = torch.stack(images).float()
    return stack.clamp(*window) if window is not None else stack


def modality_of(items: list[ImageItem]) -> str:
    """The modality of the first image (header or guess), for choosing an intensity mapping."""
    return str(load_image(items[0].path).meta[META_MODALITY])


def pair_items(real: list[ImageItem], fake: list[ImageItem]) -> list[tuple[ImageItem, ImageItem]]:
    """Pairs with equal keys (file names without extension), in key order.

    Raises:
        InputError: No file name appears in both sets.
    """
    by_key = {item.key: item for item in real}
    pairs = [(by_key[f.key], f) for f in sorted(fake, key=lambda i: i.key) if f.key in by_key]
    if not pairs:
        raise InputError("--paired", "no file name appears in both --real and --fake (files are matched by name)")
    return pairs
