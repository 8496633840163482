"""Image sets for memorization checks: files with the subject each belongs to, embedded without holding images.

A source is a folder (searched recursively), a CSV/JSON datalist, ``demo:mri|ct|xray``, or a ``manifest.jsonl``
written by ``medgen generate``. Subjects decide how a training set may be split for calibration: a datalist's
``subject`` column; in a folder, the first sub-folder below the root (one folder per patient), else the file
itself (a volume, or a 2D slice that cannot be grouped).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from medgen.data.datalist import find_records
from medgen.data.io import load_image
from medgen.errors import InputError
from medgen.evaluation.distributed import map_batches
from medgen.evaluation.sources import list_source
from medgen.memorization.embedders import Embedded, embed_images


@dataclass
class SourceItem:
    """One file of a set.

    Attributes:
        path: Image file or DICOM series folder.
        subject: Subject/patient id used to split the set.
        name: Short name shown in reports (path relative to the source folder).
    """

    path: Path
    subject: str
    name: str


def list_items(source: str | Path, option: str, include_qc_failed: bool = False) -> list[SourceItem]:
    """The files of a source with their subjects.

    Args:
        source: Folder, datalist, ``demo:<kind>`` or ``manifest.jsonl``.
        option: The CLI option the source came from (named in errors).
        include_qc_failed: Keep generated samples that failed quality control (a ``manifest.jsonl``, or a
            folder written by ``medgen generate``); skipped by default.

    Raises:
        InputError: Missing or empty source (message names ``option`` and the path).
    """
    text = str(source)
    if not text.startswith("demo:") and not Path(text).exists():
        raise InputError(option, f"'{text}' does not exist (expected a folder of images, a datalist or manifest.jsonl)")
    try:
        if text.endswith(".jsonl") or (Path(text) / "manifest.jsonl").is_file():
            items = list_source(text, include_qc_failed)
            return [SourceItem(i.path, i.key, i.path.name) for i in items]
        datalist = find_records(text)
    except InputError as exc:
        raise InputError(option, f"{exc}") from None
    root = Path(text) if Path(text).is_dir() else None
    out = []
    for record in datalist.records:
        path = Path(record.image)
        subject, name = record.subject, path.name
        if root is not None:
            rel = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
            subject, name = (rel.parts[0] if len(rel.parts) > 1 else str(rel)), str(rel)
        out.append(SourceItem(path, subject, name))
    return out


#: A file-name stem that ends in a slice index: ``brain_012``, ``brain-slice12``, ``brain.z012``, ``brain12``.
_SLICE_STEM = re.compile(r"^(?P<volume>.*?[A-Za-z].*?)[_\-. ]*(?:slice|slc|sl|z|s)?[_\-. ]*(?P<index>\d+)$", re.I)


def slice_subjects(items: Sequence[SourceItem], single_volume: bool = False) -> list[str]:
    """Subjects of 2D files, grouping slices of one volume that lie side by side in one folder.

    A file whose subject is the file itself (directly in the source folder, no datalist subject) gets the
    stem without its trailing slice index (``vol3_slice012.png`` → ``vol3``), prefixed by its folder. Kept
    when it yields at least two groups, or one group with ``single_volume`` (a holdout calibrates the null, so
    there is nothing to split: the slices of one volume stay one subject and never act as independent images
    against each other); other subjects (per-patient folders, datalist columns) are kept as they are.
    """
    grouped = []
    for item in items:
        name = Path(item.name)
        if item.subject != str(name):
            grouped.append(item.subject)
            continue
        stem = name.name.split(".")[0]
        match = _SLICE_STEM.match(stem)
        grouped.append(str(name.parent / match.group("volume")) if match else item.subject)
    return grouped if single_volume or len(set(grouped)) >= 2 else [item.subject for item in items]


def load_one(path: str | Path) -> Tensor:
    """Load one image as ``(1, *spatial)`` float32 (first channel)."""
    return load_image(path).as_tensor().float()[:1]


class LazyImages(Sequence[Tensor]):
    """Images of ``items`` loaded one at a time on access (a generated set may not fit in memory)."""

    def __init__(self, items: Sequence[SourceItem]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Tensor:  # type: ignore[override]
        return load_one(self.items[i].path)


def load_items(items: Sequence[SourceItem]) -> list[Tensor]:
    """Load ``(1, *spatial)`` float32 images (first channel) of ``items``."""
    return [load_one(item.path) for item in items]


def embed_items(
    embedder: nn.Module, items: Sequence[SourceItem], what: str, files_per_batch: int = 64, query: bool = False
) -> Embedded:
    """Embed files batch by batch (only embeddings are kept in memory); ``query``: with query rotations.

    Under :func:`medgen.evaluation.distributed.distributed` (``medgen memorization --devices N``) each process
    embeds every ``world_size``-th batch and every process receives all embeddings, in file order.

    Raises:
        InputError: Images of mixed 2D and 3D in one set.
    """

    def one_batch(batch: range) -> tuple[Tensor, Tensor, set[int]]:
        images = load_items(items[batch.start : batch.stop])
        embedded = embed_images(embedder, images, query=query)
        return embedded.vectors, embedded.owner + batch.start, {image.ndim - 1 for image in images}

    parts = map_batches(one_batch, len(items), files_per_batch, f"embed {what}")
    vectors, owners = [p[0] for p in parts], [p[1] for p in parts]
    dims = set().union(*(p[2] for p in parts))
    if len(dims) > 1:
        raise InputError(what, "mixes 2D images and 3D volumes; give one kind per set")
    spatial_dims = dims.pop() if dims else 2
    variants = len(getattr(embedder, "query_rotations", (0.0,))) if query else 1
    return Embedded(torch.cat(vectors), torch.cat(owners), len(items), spatial_dims, variants)
