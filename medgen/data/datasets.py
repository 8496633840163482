"""Datasets: whole images (2D or 3D), 2D slices from volumes, 3D random patches.

Each dataset is built from :class:`~medgen.data.datalist.ImageRecord` lists and the shared MONAI chain
in :mod:`medgen.data.transforms`. Deterministic steps are cached (MONAI ``CacheDataset`` in memory,
``PersistentDataset`` on disk); slices are cut and sized once and then served from memory, which is
what makes a 2D slice pipeline fast enough not to starve a GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.transforms import Compose, RandSpatialCropd, SpatialPadd
from torch.utils.data import Dataset as TorchDataset

from medgen.data.datalist import ImageRecord
from medgen.data.presets import IntensityPreset
from medgen.data.transforms import BACKGROUND, ResizeMode, SizeTo, SizeTod, ToSampled, volume_chain
from medgen.errors import InputError, MedgenError
from medgen.progress import progress as progress_iter

CacheMode = Literal["memory", "disk", "none"]


@dataclass(frozen=True)
class PipelineConfig:
    """Everything that decides how a record becomes a training sample.

    Attributes:
        spatial_dims: 2 (images or slices) or 3 (volumes or patches).
        image_size: Output size per spatial dimension.
        modality: ``ct``, ``mri``, ``xray`` or ``auto`` (from the header, else a guess).
        preset: Intensity normalisation parameters.
        target_spacing: Resample to this spacing (mm) before sizing; None keeps the file's grid.
        resize_mode: ``resize`` (keep aspect, pad) or ``pad_crop`` (keep voxel size).
        slice_axis: Axis of the RAS volume that slices are cut along (2 = axial).
        min_foreground: Minimum fraction of a slice above background for it to be kept.
        patches: For 3D, random crops of ``image_size`` instead of whole resized volumes.
    """

    spatial_dims: int = 2
    image_size: tuple[int, ...] = (64, 64)
    modality: str = "auto"
    preset: IntensityPreset = IntensityPreset()
    target_spacing: tuple[float, ...] | None = None
    resize_mode: ResizeMode = "resize"
    slice_axis: int = 2
    min_foreground: float = 0.15
    patches: bool = False


def record_dicts(records: Sequence[ImageRecord]) -> list[dict[str, Any]]:
    """MONAI-style data dicts (``image``, ``mask``, ``subject``, ``cond``) from records.

    Masks are kept only when every record has one, so that every batch has the same keys.
    """
    with_masks = all(r.mask for r in records)
    out = []
    for r in records:
        d: dict[str, Any] = {"image": r.image, "subject": r.subject, "cond": dict(r.conditions)}
        if with_masks:
            d["mask"] = r.mask
        out.append(d)
    return out


def reraise_medgen(fn: Callable[[], Any]) -> Any:
    """Run ``fn``, turning MONAI's ``RuntimeError("applying transform …")`` wrappers back into medgen errors."""
    try:
        return fn()
    except RuntimeError as exc:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, MedgenError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise


def cached_dataset(
    data: list[dict[str, Any]],
    transform: Compose,
    cache: CacheMode,
    cache_dir: str | Path | None,
    num_workers: int,
) -> TorchDataset:
    """Wrap ``data`` in MONAI's Dataset, CacheDataset (memory) or PersistentDataset (disk)."""
    if cache == "memory":
        return reraise_medgen(
            lambda: CacheDataset(
                data, transform, cache_rate=1.0, num_workers=max(num_workers, 0) or None, progress=False
            )
        )
    if cache == "disk":
        if cache_dir is None:
            raise InputError("data.cache_dir", "cache='disk' needs a cache_dir")
        return PersistentDataset(data, transform, cache_dir=str(cache_dir))
    return Dataset(data, transform)


class SampleDataset(TorchDataset):
    """Whole images (2D) or volumes (3D), or random 3D patches, as training samples.

    Args:
        records: The images.
        config: The preprocessing configuration.
        cache: Where deterministic steps are cached.
        cache_dir: Folder for ``cache="disk"``.
        num_workers: Workers used to fill the memory cache.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        config: PipelineConfig,
        cache: CacheMode = "memory",
        cache_dir: str | Path | None = None,
        num_workers: int = 0,
    ) -> None:
        steps = volume_chain(config.spatial_dims, config.modality, config.preset, config.target_spacing)
        if config.patches:
            steps.append(SpatialPadd("image", config.image_size, value=BACKGROUND))
            steps.append(SpatialPadd("mask", config.image_size, value=0.0, allow_missing_keys=True))
            steps.append(
                RandSpatialCropd(
                    ("image", "mask"), roi_size=config.image_size, random_size=False, allow_missing_keys=True
                )
            )
        else:
            steps.append(SizeTod(config.image_size, config.resize_mode))
        steps.append(ToSampled())
        self.records = list(records)
        self._data = cached_dataset(record_dicts(self.records), Compose(steps), cache, cache_dir, num_workers)

    def __len__(self) -> int:
        return len(self._data)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        """``{"image": (1, *image_size), "subject": str, "cond": {name: ()}, ["mask"]}``."""
        return reraise_medgen(lambda: self._data[index])


class SliceDataset(TorchDataset):
    """2D slices cut from volumes (2D images count as one slice), with a foreground filter.

    Volumes go through the shared chain once; the kept slices are sized and, with ``cache`` other than
    ``"none"``, stored as one tensor so that serving a slice is an index lookup. With ``cache="none"``
    every item re-reads its volume (the plain pipeline, kept as a baseline for benchmarks).

    Args:
        records: The volumes or 2D images.
        config: The preprocessing configuration (``spatial_dims`` must be 2).
        cache: ``memory``/``disk`` keep slices in memory; ``none`` re-reads the volume for each slice.
        cache_dir: Folder for ``cache="disk"`` (preprocessed volumes persist across runs).
        num_workers: Workers used to fill the volume cache.
        progress: Show a progress bar while cutting slices.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        config: PipelineConfig,
        cache: CacheMode = "memory",
        cache_dir: str | Path | None = None,
        num_workers: int = 0,
        progress: bool = False,
    ) -> None:
        if config.spatial_dims != 2:
            raise InputError("data.spatial_dims", "SliceDataset makes 2D samples; use SampleDataset for 3D")
        self.records = list(records)
        self.config = config
        self._size = SizeTo(config.image_size, config.resize_mode, "area", BACKGROUND)
        self._size_mask = SizeTo(config.image_size, config.resize_mode, "nearest", 0.0)
        steps = volume_chain(None, config.modality, config.preset, config.target_spacing) + [ToSampled()]
        volume_cache: CacheMode = "disk" if cache == "disk" else "none"
        self._volumes = cached_dataset(record_dicts(self.records), Compose(steps), volume_cache, cache_dir, num_workers)
        self.index: list[tuple[int, int]] = []
        self._cached: dict[str, torch.Tensor] | None = {} if cache != "none" else None
        self._build(progress)

    def _build(self, progress: bool) -> None:
        images, masks = [], []
        n = len(self.records)
        for vi in progress_iter(range(n), "slicing volumes") if progress else range(n):
            sample = self._volume(vi)
            for si, (img, mask) in enumerate(self._slices(sample)):
                if foreground_fraction(img) < self.config.min_foreground:
                    continue
                self.index.append((vi, si))
                if self._cached is not None:
                    images.append(self._size(img))
                    if mask is not None:
                        masks.append(self._size_mask(mask))
        if self._cached is not None and images:
            self._cached["image"] = torch.stack(images)
            if len(masks) == len(images):
                self._cached["mask"] = torch.stack(masks)

    def _volume(self, index: int) -> dict[str, Any]:
        """The preprocessed volume ``index`` (``image`` of shape ``(1, X, Y[, Z])``)."""
        return reraise_medgen(lambda: self._volumes[index])

    def _slices(self, sample: dict[str, Any]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        img, mask = sample["image"], sample.get("mask")
        if img.ndim == 3:  # a 2D image is one slice
            return [(img, mask)]
        axis = self.config.slice_axis + 1
        n = img.shape[axis]
        return [(img.select(axis, i), None if mask is None else mask.select(axis, i)) for i in range(n)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """``{"image": (1, H, W), "subject": str, "cond": {name: ()}, ["mask"], "slice": int}``."""
        vi, si = self.index[index]
        record = self.records[vi]
        out: dict[str, Any] = {"subject": record.subject, "slice": si}
        out["cond"] = {k: torch.tensor(float(v)) for k, v in record.conditions.items()}
        if self._cached is not None:
            out["image"] = self._cached["image"][index]
            if "mask" in self._cached:
                out["mask"] = self._cached["mask"][index]
            return out
        img, mask = self._slices(self._volume(vi))[si]
        out["image"] = self._size(img)
        if mask is not None:
            out["mask"] = self._size_mask(mask)
        return out


def foreground_fraction(image: torch.Tensor, threshold: float = -0.9) -> float:
    """Fraction of pixels above ``threshold`` (5 % of the [-1, 1] range above background)."""
    return float((image > threshold).float().mean())
