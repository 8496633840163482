"""``MedicalImageDataModule``: the LightningDataModule every medgen model trains from."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
from torch.utils.data import DataLoader, Dataset

from medgen.data.datalist import Datalist, ImageRecord, find_records
from medgen.data.datasets import CacheMode, PipelineConfig, SampleDataset, SliceDataset
from medgen.data.intensity import IntensityMapping
from medgen.data.io import META_SPACING, load_image
from medgen.data.latents import CachedLatents, Draw, open_latents
from medgen.data.modality import check_modality_option
from medgen.data.presets import IntensityPreset, resolve_ct_window
from medgen.data.sampler import ResumableRandomSampler
from medgen.data.split import split_by_subject
from medgen.errors import ImageReadError, InputError

log = logging.getLogger(__name__)


class MedicalImageDataModule(L.LightningDataModule):
    """Medical images from a folder or datalist, split by subject, normalised per modality.

    2D models train on 2D images and on slices cut from volumes; 3D models on whole volumes resized to
    ``image_size`` or on random patches of that size.

    Args:
        data_dir: Folder of images (NIfTI, MHA/MHD, NRRD, DICOM files or series folders, PNG/JPEG/TIFF,
            NPY; searched recursively; ``*_mask``/``*_seg`` files pair with their image) or a CSV/JSON
            datalist with an ``image`` column and optional ``mask``, ``source`` (the input image of an
            image-to-image pair on the grid of its target ``image``; batches then carry ``source``, prepared
            exactly like ``image``), ``subject`` and condition columns.
        modality: ``ct``, ``mri``, ``xray`` or ``auto`` (DICOM Modality tag, else a guess from values).
        spatial_dims: 2 or 3.
        image_size: Output size (one int for all sides, or one per side); default 256 (2D) / 128 (3D).
        batch_size: Samples per batch.
        num_workers: At most this many DataLoader worker processes (also used to fill the cache); the value
            used is ``min(num_workers, CPUs this process may use - 1)`` (:func:`usable_workers`), kept as
            ``self.num_workers`` and recorded in :meth:`describe`.
        val_fraction: Fraction of subjects held out for validation.
        seed: Seed of the subject split.
        target_spacing: Resample to this spacing in mm before sizing (None keeps each file's grid).
        resize_mode: ``resize`` (keep aspect ratio, pad) or ``pad_crop`` (keep voxel size, centre pad/crop).
        patches: 3D only: random ``image_size`` patches instead of whole resized volumes.
        slice_axis: 2D from volumes: axis of the RAS volume to slice along (0 sagittal, 1 coronal, 2 axial).
        min_foreground: 2D from volumes: minimum fraction of non-background pixels for a slice to be kept.
        ct_window: CT window name (full, body, soft_tissue, abdomen, lung, bone, brain) or ``[low, high]`` HU.
        mri_percentiles: MRI intensities at these percentiles map to -1 and 1.
        mri_zscore: Z-score MRI over non-zero voxels instead of percentile scaling.
        xray_percentiles: X-ray intensities at these percentiles map to -1 and 1.
        cache: ``memory`` (MONAI CacheDataset), ``disk`` (PersistentDataset in ``cache_dir``) or ``none``.
        cache_dir: Folder of the disk cache.
        skip_unreadable: Skip files that cannot be read and report them, instead of failing.
        conditions: Datalist columns used as conditions (None: every non-reserved column).
        source_modality: Modality option of the pairs' ``source`` images (None: the same as ``modality``), e.g.
            ``ct`` for CT-to-MRI translation with ``modality: mri``.
        latents_dir: A ``medgen encode`` output: a latent model trains on its cached latents instead of encoding
            images each step (the other options must be those they were encoded with; :mod:`medgen.data.latents`).
        latent_draw: With ``latents_dir``: ``mean`` (the posterior mean, as on-the-fly encoding) or ``sample`` (a
            new posterior draw each epoch, seeded by ``seed``, epoch and index).
        folder_label: With a folder ``data_dir``: a text condition of this name whose value is each image's first
            subfolder, coded in sorted order (``--data.folder_label domain`` trains CycleGAN on ``a/`` and ``b/``;
            or class labels from one folder per class).
        slice_position: 2D from volumes: a scalar condition of this name holding each slice's position along
            ``slice_axis`` (0 at the volume's first slice, 1 at its last, in RAS order: axial runs inferior to
            superior), so that a model can be asked for a level (``--condition slice_position=0.6``); the net
            declares it as a ``scalar`` condition. Positions are relative to each volume's field of view.
    """

    def __init__(
        self,
        data_dir: str,
        modality: str = "auto",
        spatial_dims: int = 2,
        image_size: int | list[int] | None = None,
        batch_size: int = 16,
        num_workers: int = 4,
        val_fraction: float = 0.1,
        seed: int = 0,
        target_spacing: list[float] | None = None,
        resize_mode: Literal["resize", "pad_crop"] = "resize",
        patches: bool = False,
        slice_axis: int = 2,
        min_foreground: float = 0.15,
        ct_window: str | list[float] = "full",
        mri_percentiles: tuple[float, float] = (0.5, 99.5),
        mri_zscore: bool = False,
        xray_percentiles: tuple[float, float] = (0.5, 99.5),
        cache: CacheMode = "memory",
        cache_dir: str | None = None,
        skip_unreadable: bool = False,
        conditions: list[str] | None = None,
        source_modality: str | None = None,
        latents_dir: str | None = None,
        latent_draw: Draw = "mean",
        folder_label: str | None = None,
        slice_position: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if spatial_dims not in (2, 3):
            raise InputError("data.spatial_dims", f"expected 2 or 3, got {spatial_dims}")
        if slice_position is not None and (spatial_dims != 2 or latents_dir is not None):
            raise InputError("data.slice_position", "a condition of 2D slices cut from volumes (spatial_dims 2, "
                                                    "no latents_dir)")  # fmt: skip
        if batch_size < 1:
            raise InputError("data.batch_size", f"expected a positive integer, got {batch_size}")
        if slice_axis not in (0, 1, 2):
            raise InputError("data.slice_axis", f"expected 0, 1 or 2, got {slice_axis}")
        if cache not in ("memory", "disk", "none"):
            raise InputError("data.cache", f"expected memory, disk or none, got '{cache}'")
        resolve_ct_window(ct_window if isinstance(ct_window, str) else tuple(ct_window))
        self.data_dir = data_dir
        self.spatial_dims = spatial_dims
        self.batch_size = batch_size
        self.num_workers = usable_workers(num_workers)
        self.val_fraction = val_fraction
        self.seed = seed
        self.cache: CacheMode = cache
        self.cache_dir = cache_dir
        self.skip_unreadable = skip_unreadable
        self.conditions = conditions
        self.folder_label = folder_label
        self.config = PipelineConfig(
            spatial_dims=spatial_dims,
            image_size=_size_tuple(image_size, spatial_dims),
            modality=check_modality_option(modality),
            preset=IntensityPreset(
                ct_window=ct_window if isinstance(ct_window, str) else (float(ct_window[0]), float(ct_window[1])),
                mri_percentiles=(float(mri_percentiles[0]), float(mri_percentiles[1])),
                mri_zscore=mri_zscore,
                xray_percentiles=(float(xray_percentiles[0]), float(xray_percentiles[1])),
            ),
            target_spacing=None if target_spacing is None else tuple(float(s) for s in target_spacing),
            resize_mode=resize_mode,
            slice_axis=slice_axis,
            min_foreground=min_foreground,
            patches=patches,
            source_modality=None if source_modality is None else check_modality_option(source_modality),
            slice_position=slice_position or None,
        )
        self.datalist: Datalist | None = None
        self.skipped: list[tuple[str, str]] = []
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.train_subjects: list[str] = []
        self._sampler: ResumableRandomSampler | None = None
        self._resume: tuple[int, int] | None = None
        self._epoch_offset = 0
        self._first_grid: tuple[str, list[float] | None] | None = None
        self.latents_dir, self.latent_draw = latents_dir, latent_draw
        self.latents: CachedLatents | None = None

    @property
    def image_size(self) -> tuple[int, ...]:
        """Spatial size of every sample."""
        return self.config.image_size

    @property
    def condition_vocab(self) -> dict[str, list[str]]:
        """Text values of each text-valued condition column, in code order."""
        return {} if self.datalist is None else self.datalist.vocab

    def setup(self, stage: str | None = None) -> None:
        """Find images, split by subject and build the (cached) datasets."""
        if self.train_set is not None:
            self._check_columns(self.datalist)
            return
        if self.latents_dir is not None:
            trainer = self._attached_trainer()
            model = getattr(getattr(trainer, "lightning_module", None), "model", None)
            self.latents = open_latents(self.latents_dir, dict(self.hparams), self.latent_draw, self.seed, model)
            self.datalist, self.train_set, self.val_set = self.latents.datalist, self.latents.train, self.latents.val
            self.train_subjects = self.latents.subjects
            self._check_columns(self.datalist)
            return
        datalist = find_records(self.data_dir, self.folder_label)
        name = self.config.slice_position
        if name and datalist.records and name in datalist.records[0].conditions:
            where = datalist.origin or self.data_dir
            raise InputError("data.slice_position", f"'{name}' is already a column of {where}")
        self._check_columns(datalist)
        records = self._select_conditions(datalist.records)
        if self.skip_unreadable:
            records = self._drop_unreadable(records)
        self.datalist = Datalist(records, datalist.vocab, datalist.origin)
        split = split_by_subject(records, self.val_fraction, self.seed)
        self.train_set = self._dataset(split.train, progress=True)
        self.train_subjects = sorted({r.subject for r in split.train})
        self.val_set = self._dataset(split.val, progress=False) if split.val else None
        if len(self.train_set) == 0:  # type: ignore[arg-type]
            raise InputError(self.data_dir, "no training samples left (all slices below data.min_foreground?)")

    def _dataset(self, records: Sequence[ImageRecord], progress: bool) -> Dataset:
        if self.spatial_dims == 2:
            return SliceDataset(records, self.config, self.cache, self.cache_dir, self.num_workers, progress)
        return SampleDataset(records, self.config, self.cache, self.cache_dir, self.num_workers, self.seed)

    def _check_columns(self, datalist: Datalist | None) -> None:
        """Check that the data has the columns the attached model trains on (``data_columns`` of the model).

        Raises:
            InputError: Naming the datalist and the missing column (e.g. pix2pix given data without ``source``).
        """
        trainer = self._attached_trainer()
        task = None if trainer is None else getattr(trainer, "lightning_module", None)
        model = getattr(task, "model", None)
        if datalist is None or model is None:
            return
        needed = tuple(getattr(model, "data_columns", ()))
        if "source" in needed and not datalist.paired:
            raise InputError(
                datalist.origin or self.data_dir,
                f"{type(model).__name__} trains on image pairs: the datalist needs a 'source' column "
                "(the input image of each pair; 'image' is its target)",
            )
        available = set(datalist.records[0].conditions) if datalist.records else set()
        available |= {self.config.slice_position} if self.config.slice_position else set()
        missing = [c for c in needed if c != "source" and c not in available]
        if missing:
            raise InputError(
                datalist.origin or self.data_dir,
                f"{type(model).__name__} needs the datalist column(s) {', '.join(missing)} "
                f"(has: {', '.join(sorted(available)) or 'none'})",
            )

    def _select_conditions(self, records: list[ImageRecord]) -> list[ImageRecord]:
        if self.conditions is None:
            return records
        available = set(records[0].conditions) if records else set()
        missing = [c for c in self.conditions if c not in available]
        if missing:
            raise InputError(
                "data.conditions",
                f"datalist has no column(s) {', '.join(missing)} (has: {', '.join(sorted(available)) or 'none'})",
            )
        for r in records:
            r.conditions = {c: r.conditions[c] for c in self.conditions}
        return records

    def _drop_unreadable(self, records: list[ImageRecord]) -> list[ImageRecord]:
        kept = []
        for r in records:
            try:
                image = load_image(r.image)
                if r.mask and tuple(load_image(r.mask).shape) != tuple(image.shape):
                    raise ImageReadError(r.mask, "mask shape does not match its image")
                if r.source:
                    load_image(r.source)
            except ImageReadError as exc:
                self.skipped.append((exc.subject, exc.problem))
                log.warning("skipping unreadable %s", exc)
                continue
            kept.append(r)
        if not kept:
            raise InputError(self.data_dir, f"no readable images ({len(self.skipped)} skipped)")
        return kept

    def describe(self) -> dict[str, Any]:
        """What generation and model cards need to know about the training data (stored in checkpoints).

        Returns:
            ``data_dir``, ``modality`` (resolved from the first training image when ``auto``), ``spatial_dims``,
            ``image_size``, ``spacing`` of the training grid in mm (``target_spacing`` or the first image's
            spacing scaled by the resize; ``None`` when the files carry none), ``intensity`` (how stored values
            map to the model's [-1, 1]: ``{"kind": "window", "low", "high"}`` for CT, invertible to HU; else
            ``{"kind": "percentile"|"zscore"}``, not invertible), ``preprocessing`` (``target_spacing`` and
            ``resize_mode``: generation prepares conditioning images the same way), ``n_train`` (training samples),
            ``n_subjects`` (subjects in the training split only; validation subjects are not counted),
            ``num_workers`` (the number used), ``vocab``, and for paired data (a ``source`` column)
            ``source_modality`` (the modality the pair inputs were normalised as; None without pairs) and
            ``source_intensity`` (their mapping, like ``intensity``), and ``slice_axis`` (2D: the RAS axis slices of
            volumes were cut along, which ``medgen translate`` slices volumes along; None for 3D), and
            ``slice_position`` (the name of the slice-position condition, or None).
        """
        if self.latents is not None:  # the encoder's record of the images
            return {
                **self.latents.record["data"]["record"],
                "num_workers": self.num_workers,
                "latents_dir": self.latents_dir,
            }
        modality, spacing = self._grid_of_first_image()
        source_modality = self._source_modality()
        return {
            "data_dir": str(self.data_dir),
            "modality": modality,
            "source_modality": source_modality,
            "source_intensity": None if source_modality is None else self._intensity(source_modality).to_dict(),
            "spatial_dims": self.spatial_dims,
            "image_size": list(self.image_size),
            "spacing": spacing,
            "intensity": self._intensity(modality).to_dict(),
            "n_train": None if self.train_set is None else len(self.train_set),  # type: ignore[arg-type]
            "n_subjects": None if self.train_set is None else len(self.train_subjects),
            "num_workers": self.num_workers,
            "vocab": self.condition_vocab,
            "slice_axis": self.config.slice_axis if self.spatial_dims == 2 else None,
            "slice_position": self.config.slice_position,
            "preprocessing": {
                "target_spacing": None if self.config.target_spacing is None else list(self.config.target_spacing),
                "resize_mode": self.config.resize_mode,
            },
        }

    def _source_modality(self) -> str | None:
        """Modality the pair inputs are normalised as (``modality`` when not set; None for unpaired data)."""
        if self.datalist is None or not self.datalist.paired:
            return None
        option = self.config.source_modality or self.config.modality
        if option != "auto":
            return option
        try:
            return str(load_image(self.datalist.records[0].source or "").meta.get("modality", "auto"))
        except ImageReadError as exc:
            log.warning("cannot describe the pair inputs from %s", exc)
            return "auto"

    def _grid_of_first_image(self) -> tuple[str, list[float] | None]:
        """(modality, grid spacing) from the first training image, read once per setup (checkpoints ask often)."""
        if self._first_grid is None and self.datalist is not None and self.datalist.records:
            modality, spacing = self.config.modality, None
            try:
                first = load_image(self.datalist.records[0].image)
                modality = str(first.meta.get("modality", modality)) if modality == "auto" else modality
                spacing = self._grid_spacing(first.meta.get(META_SPACING), tuple(first.shape[1:]))
            except ImageReadError as exc:
                log.warning("cannot describe the training grid from %s", exc)
            self._first_grid = (modality, spacing)
        return self._first_grid or (self.config.modality, None)

    def _grid_spacing(self, source: Sequence[float] | None, shape: tuple[int, ...]) -> list[float] | None:
        """Spacing of the model's grid: the source (or target) spacing times the resize factor (1 for patches)."""
        spacing = self.config.target_spacing or (None if source is None else tuple(float(v) for v in source))
        if spacing is None:
            return None
        if self.config.target_spacing is not None and source is not None:
            shape = tuple(round(n * s / t) for n, s, t in zip(shape, source, spacing, strict=False))
        if self.spatial_dims == 2 and len(spacing) == 3:
            keep = [a for a in range(3) if a != self.config.slice_axis]
            spacing, shape = tuple(spacing[a] for a in keep), tuple(shape[a] for a in keep)
        # random patches are cut from the (resampled) grid without resizing, so they keep its spacing
        resized = self.config.resize_mode == "resize" and not self.config.patches
        scale = max(shape) / max(self.image_size) if resized else 1.0
        return [round(float(s) * scale, 6) for s in spacing[: self.spatial_dims]]

    def _intensity(self, modality: str) -> IntensityMapping:
        if modality == "ct":
            lo, hi = resolve_ct_window(self.config.preset.ct_window)
            return IntensityMapping("window", lo, hi, "HU")
        if modality == "mri" and self.config.preset.mri_zscore:
            return IntensityMapping("zscore")
        pct = self.config.preset.mri_percentiles if modality == "mri" else self.config.preset.xray_percentiles
        return IntensityMapping("percentile", pct[0], pct[1])

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches (the last incomplete batch is dropped when there is more than one).

        The order of each epoch depends only on ``seed`` and the epoch, and a run resumed from a mid-epoch
        checkpoint continues with the batches the interrupted run had not seen. Under DDP each process takes
        its share of that order (:class:`~medgen.data.sampler.ResumableRandomSampler`).
        """
        assert self.train_set is not None, "call setup() first"
        trainer = self._attached_trainer()
        world = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        self._sampler = self.train_sampler(*world)
        n = len(self._sampler)
        return self._loader(self.train_set, sampler=self._sampler, drop_last=n > self.batch_size)

    def train_sampler(self, num_replicas: int = 1, rank: int = 0) -> ResumableRandomSampler:
        """The training sampler of process ``rank`` of ``num_replicas``, at the resumed position if any."""
        assert self.train_set is not None, "call setup() first"
        size = len(self.train_set)  # type: ignore[arg-type]
        random_draws = bool(getattr(self.train_set, "random_draws", False))
        sampler = ResumableRandomSampler(size, self.seed, num_replicas, rank, tag_epoch=random_draws)
        if self._resume is not None:
            sampler.resume_at(*self._resume, epoch_offset=self._epoch_offset)
        return sampler

    def _attached_trainer(self) -> L.Trainer | None:
        return getattr(self, "_trainer", None) or getattr(self, "trainer", None)

    def val_dataloader(self) -> DataLoader | list:
        """Validation batches in a fixed order (empty when ``val_fraction`` is 0)."""
        return [] if self.val_set is None else self._loader(self.val_set, sampler=None, drop_last=False)

    def predict_dataloader(self) -> DataLoader:
        """Batches whose conditions drive ``predict`` (validation data when there is any, else training data)."""
        dataset = self.val_set if self.val_set is not None else self.train_set
        assert dataset is not None, "call setup() first"
        return self._loader(dataset, sampler=None, drop_last=False)

    def _loader(self, dataset: Dataset, sampler: ResumableRandomSampler | None, drop_last: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=False,
        )

    def state_dict(self) -> dict[str, Any]:
        """Split, vocabulary and the position in the current epoch, saved in every checkpoint."""
        state: dict[str, Any] = {"seed": self.seed}
        if self.datalist is not None:
            state["val_subjects"] = sorted({r.subject for r in getattr(self.val_set, "records", [])})
            state["vocab"] = self.condition_vocab
        trainer = self._attached_trainer()
        if trainer is not None and self.train_set is not None:
            state["position"], state["epoch_offset"] = self._position(trainer)
        return state

    def _position(self, trainer: L.Trainer) -> tuple[tuple[int, int], int]:
        """``((data epoch, samples consumed), trainer epoch - data epoch)`` where the next batch comes from.

        The batches counted so far belong to the trainer's epoch ``started - 1``. A checkpoint written when ``fit``
        stopped at ``max_steps`` has that epoch marked finished although its order was not used up: the resumed
        trainer draws the rest of it under the next epoch number, hence the offset.
        """
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        done = int(progress.processed)  # type: ignore[attr-defined]  # batches, on each process
        epochs: Any = trainer.fit_loop.epoch_progress.current  # a _ProcessedTracker at run time
        trainer_epoch = max(0, int(epochs.started) - 1)  # the epoch of the batches counted in ``done``
        closed = int(epochs.processed) >= int(epochs.started) > 0  # the loop already counted that epoch as done
        per_epoch = trainer.num_training_batches  # what the loop runs per epoch (drop-last, limits)
        finished = math.isfinite(per_epoch) and done >= per_epoch
        data_epoch = trainer_epoch - self._epoch_offset
        consumed = done * self.batch_size * trainer.world_size  # samples of the epoch's order, all processes
        position = (data_epoch + 1, 0) if finished else (data_epoch, consumed)
        next_trainer_epoch = trainer_epoch + (1 if closed or finished else 0)
        return position, next_trainer_epoch - position[0]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume the epoch where the checkpoint left it; warn when the split differs from the checkpoint's."""
        if "position" in state_dict:
            self._resume = (int(state_dict["position"][0]), int(state_dict["position"][1]))
            self._epoch_offset = int(state_dict.get("epoch_offset", 0))
        current = self.state_dict()
        if (
            "val_subjects" in state_dict
            and "val_subjects" in current
            and state_dict["val_subjects"] != current["val_subjects"]
        ):
            log.warning("the validation subjects differ from the checkpoint's; was data_dir or seed changed?")


def usable_workers(requested: int) -> int:
    """``min(requested, CPUs this process may use - 1)``: one core stays for the training loop itself.

    Raises:
        InputError: ``requested`` is negative.
    """
    if requested < 0:
        raise InputError("data.num_workers", f"expected 0 or more, got {requested}")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    used = max(0, min(requested, cpus - 1))
    if used < requested:
        log.info("data.num_workers: %d of the %d requested (%d CPUs available)", used, requested, cpus)
    return used


def _size_tuple(image_size: int | Sequence[int] | None, spatial_dims: int) -> tuple[int, ...]:
    if image_size is None:
        image_size = 256 if spatial_dims == 2 else 128
    sizes = (int(image_size),) * spatial_dims if isinstance(image_size, int) else tuple(int(s) for s in image_size)
    if len(sizes) != spatial_dims or min(sizes) < 1:
        raise InputError("data.image_size", f"expected one positive size or {spatial_dims} of them, got {image_size}")
    return sizes
