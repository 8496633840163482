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
        source_modality: Modality option of pair inputs (``source``); None: the same as ``modality``.
        slice_position: 2D from volumes: name of a scalar condition holding each slice's position along
            ``slice_axis``, 0 at the volume's first slice and 1 at its last in RAS order (axial: inferior to
            superior); a 2D image gets 0.5. None: no such condition.
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
    source_modality: str | None = None
    slice_position: str | None = None

    def chain(self, spatial_rank: int | None) -> list[Any]:
        """The shared deterministic steps (:func:`~medgen.data.transforms.volume_chain`) for this configuration."""
        return volume_chain(spatial_rank, self.modality, self.preset, self.target_spacing, self.source_modality)


def record_dicts(records: Sequence[ImageRecord]) -> list[dict[str, Any]]:
    """MONAI-style data dicts (``image``, ``mask``, ``source``, ``subject``, ``cond``) from records.

    Masks and sources are kept only when every record has one, so that every batch has the same keys.
    """
    with_masks = all(r.mask for r in records)
    with_sources = bool(records) and all(r.source for r in records)
    out = []
    for r in records:
        d: dict[str, Any] = {"image": r.image, "subject": r.subject, "cond": dict(r.conditions)}
        if with_masks:
            d["mask"] = r.mask
        if with_sources:
            d["source"] = r.source
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

    A patch is cut at a position drawn from ``(seed, key)``, ``key`` being the index the dataset is asked for:
    the training sampler asks for ``epoch · len + index``
    (:class:`~medgen.data.sampler.ResumableRandomSampler` with ``tag_epoch``), so every epoch draws new patches and
    a resumed run draws the ones the uninterrupted run did; plain indices (validation) give fixed patches. Image,
    mask and source share the position.

    Args:
        records: The images.
        config: The preprocessing configuration.
        cache: Where deterministic steps are cached.
        cache_dir: Folder for ``cache="disk"``.
        num_workers: Workers used to fill the memory cache.
        seed: Seed of the patch positions.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        config: PipelineConfig,
        cache: CacheMode = "memory",
        cache_dir: str | Path | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        steps = config.chain(config.spatial_dims)
        self.random_draws = config.patches
        self.seed = seed
        self._crop: RandSpatialCropd | None = None
        if config.patches:
            steps.append(SpatialPadd(("image", "source"), config.image_size, value=BACKGROUND, allow_missing_keys=True))
            steps.append(SpatialPadd("mask", config.image_size, value=0.0, allow_missing_keys=True))
            self._crop = RandSpatialCropd(  # one crop position for every key: a pair stays aligned
                ("image", "mask", "source"), roi_size=config.image_size, random_size=False, allow_missing_keys=True
            )
        else:
            steps.append(SizeTod(config.image_size, config.resize_mode))
            steps.append(ToSampled())
        self._finish = ToSampled()
        self.records = list(records)
        self._data = cached_dataset(record_dicts(self.records), Compose(steps), cache, cache_dir, num_workers)

    def __len__(self) -> int:
        return len(self._data)  # type: ignore[arg-type]

    def __getitem__(self, key: int) -> dict[str, Any]:
        """``{"image": (1, *image_size), "subject": str, "cond": {name: ()}, ["mask"], ["source"]}``.

        Args:
            key: The index, or ``epoch · len + index`` for patches drawn anew each epoch.
        """
        item = reraise_medgen(lambda: self._data[key % len(self)])
        if self._crop is None:
            return item  # type: ignore[no-any-return]
        self._crop.set_random_state(seed=(self.seed * 1_000_003 + key) % 2**32)
        return self._finish(self._crop(item))


class SliceDataset(TorchDataset):
    """2D slices cut from volumes (2D images count as one slice), with a foreground filter.

    Volumes go through the shared chain once; the kept slices are sized and, with ``cache`` other than
    ``"none"``, stored as one tensor so that serving a slice is an index lookup. A pair's ``source`` gives the slice of
    the same index (the foreground filter looks at the target ``image``). With ``cache="none"``
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
        steps = config.chain(None) + [ToSampled()]
        volume_cache: CacheMode = "disk" if cache == "disk" else "none"
        self._volumes = cached_dataset(record_dicts(self.records), Compose(steps), volume_cache, cache_dir, num_workers)
        self.index: list[tuple[int, int]] = []
        #: Slices of each volume along the slice axis (0 for a 2D image, which has no position): see :meth:`position`.
        self.slice_counts: list[int] = []
        self._cached: dict[str, torch.Tensor] | None = {} if cache != "none" else None
        self._build(progress)

    def _build(self, progress: bool) -> None:
        cut: dict[str, list[torch.Tensor]] = {"image": [], "mask": [], "source": []}
        n = len(self.records)
        for vi in progress_iter(range(n), "slicing volumes") if progress else range(n):
            sample = self._volume(vi)
            slices = self._slices(sample)
            self.slice_counts.append(len(slices) if sample["image"].ndim == 4 else 0)
            for si, parts in enumerate(slices):
                if foreground_fraction(parts["image"]) < self.config.min_foreground:
                    continue
                self.index.append((vi, si))
                if self._cached is not None:
                    for key, value in self._sized(parts).items():
                        cut[key].append(value)
        if self._cached is not None and cut["image"]:
            self._cached.update({k: torch.stack(v) for k, v in cut.items() if len(v) == len(cut["image"])})

    def _volume(self, index: int) -> dict[str, Any]:
        """The preprocessed volume ``index`` (``image`` of shape ``(1, X, Y[, Z])``)."""
        return reraise_medgen(lambda: self._volumes[index])

    def _slices(self, sample: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
        """Per slice, ``{"image", ["mask"], ["source"]}`` of shape ``(1, H, W)`` (same index for every key)."""
        parts = {k: sample[k] for k in ("image", "mask", "source") if sample.get(k) is not None}
        if sample["image"].ndim == 3:  # a 2D image is one slice
            return [parts]
        axis = self.config.slice_axis + 1
        n = sample["image"].shape[axis]
        return [{k: v.select(axis, i) for k, v in parts.items()} for i in range(n)]

    def _sized(self, parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Slices brought to ``image_size``: images and sources by area, masks by nearest neighbour."""
        return {k: self._size_mask(v) if k == "mask" else self._size(v) for k, v in parts.items()}

    def __len__(self) -> int:
        return len(self.index)

    def position(self, volume: int, slice_index: int) -> float:
        """Position of slice ``slice_index`` of volume ``volume`` along the slice axis: 0 first, 1 last (2D: 0.5)."""
        n = self.slice_counts[volume]
        return 0.5 if n == 0 else slice_index / max(n - 1, 1)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """``{"image": (1, H, W), "subject": str, "cond": {name: ()}, ["mask"], ["source"], "slice": int}``.

        With ``config.slice_position``, ``cond`` also holds the slice's :meth:`position` under that name.
        """
        vi, si = self.index[index]
        record = self.records[vi]
        out: dict[str, Any] = {"subject": record.subject, "slice": si}
        out["cond"] = {k: torch.tensor(float(v)) for k, v in record.conditions.items()}
        if self.config.slice_position:
            out["cond"][self.config.slice_position] = torch.tensor(self.position(vi, si))
        if self._cached is not None:
            out.update({k: v[index] for k, v in self._cached.items()})
            return out
        out.update(self._sized(self._slices(self._volume(vi))[si]))
        return out


def foreground_fraction(image: torch.Tensor, threshold: float = -0.9) -> float:
    """Fraction of pixels above ``threshold`` (5 % of the [-1, 1] range above background)."""
    return float((image > threshold).float().mean())
