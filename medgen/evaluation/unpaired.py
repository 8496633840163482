"""Unpaired (distribution) evaluation of a generated set against a real set, for ``medgen evaluate``.

Intensities are mapped to [-1, 1] identically for both sets: linearly from ``window=(lo, hi)`` when given,
else by the real set's modality preset (CT full HU window, MRI/X-ray percentiles) — the mapping is part of
the metric and is recorded in the protocol. 2D images go through the extractor directly; 3D volumes are
evaluated 2.5D (every slice along the three axes; FID per plane and their mean, the MAISI protocol).
"""

from __future__ import annotations

import warnings as warnings_module
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import torch
from monai.data import MetaTensor

from medgen.data.io import META_MODALITY, META_MODALITY_SOURCE, load_image
from medgen.data.presets import ModalityIntensity, check_window_units
from medgen.errors import InputError
from medgen.evaluation import distributed
from medgen.evaluation.distribution import prdc
from medgen.evaluation.extractors import ExtractorSpec, get_extractor
from medgen.evaluation.paired import WINDOW_HINT
from medgen.evaluation.report import MetricValue, Report, write_report
from medgen.evaluation.similarity import ms_ssim
from medgen.evaluation.slicing import PLANES, plane_features, slice_counts
from medgen.evaluation.sources import ImageItem, load_ras
from medgen.evaluation.statistics import (
    CI_METHOD,
    SUBSAMPLE_FRACTION,
    UnitFeatures,
    estimate,
    fid_value,
    kid_value,
    per_row_units,
    set_statistic,
    small_n_warning,
    split_half_baseline,
    volume_units,
)

UNPAIRED = ("fid", "kid", "prdc", "diversity")
#: How the metrics message names the paired metrics (``medgen evaluate`` names its flag instead).
PAIRED_HINT = "paired ones: medgen.evaluation.paired.evaluate_paired"


@dataclass(frozen=True)
class UnpairedOptions:
    """One unpaired evaluation (what ``medgen evaluate`` without ``--paired`` sets).

    Attributes:
        out: Report folder (``report.json``, ``report.html``).
        metrics: Metric names, some of :data:`UNPAIRED`.
        window: ``(lo, hi)`` in the stored values, mapped linearly to [-1, 1] after clipping; None: the real set's
            modality preset.
        extractor: Feature extractor name (:func:`~medgen.evaluation.extractors.get_extractor`).
        weights: The extractor's weights file; None: the installed one (or ``MEDGEN_WEIGHTS_DIR``).
        bootstrap: Subsamples for the 95 % CIs (0: none; the split-half baseline is still computed).
        seed: Seed of the baselines, subsamples and diversity pairs.
    """

    out: str | Path
    metrics: tuple[str, ...] = UNPAIRED
    window: tuple[float, float] | None = None
    extractor: str = "inception"
    weights: str | Path | None = None
    bootstrap: int = 200
    seed: int = 0


def normalised(items: Sequence[ImageItem], window: tuple[float, float] | None, modality: str) -> list[torch.Tensor]:
    """Each image as ``(1, *spatial)`` float32 in [-1, 1] (window, else the modality's preset)."""
    return [normalised_one(item, window, modality) for item in items]


def normalised_one(item: ImageItem, window: tuple[float, float] | None, modality: str) -> torch.Tensor:
    """One image as ``(1, *spatial)`` float32 in [-1, 1] (window, else the modality's preset)."""
    img = load_ras(item.path)  # 3D: slice planes in RAS, as MAISI's protocol
    if window is not None:
        lo, hi = window
        check_window_units(img, window, "window")
        return ((img.as_tensor().clamp(lo, hi) - lo) / (hi - lo) * 2 - 1).float()
    mapped = ModalityIntensity(modality)(img)
    return (mapped.as_tensor() if isinstance(mapped, MetaTensor) else mapped).float()


class LazyImages(Sequence[torch.Tensor]):
    """The normalised images of ``items``, each loaded when indexed (diversity pairs and report examples)."""

    def __init__(self, items: Sequence[ImageItem], window: tuple[float, float] | None, modality: str) -> None:
        self.items, self.window, self.modality = items, window, modality

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, index: int) -> torch.Tensor: ...
    @overload
    def __getitem__(self, index: slice) -> list[torch.Tensor]: ...
    def __getitem__(self, index: int | slice) -> torch.Tensor | list[torch.Tensor]:
        if isinstance(index, slice):
            return normalised(self.items[index], self.window, self.modality)
        return normalised_one(self.items[index], self.window, self.modality)


def features_2d(extractor: torch.nn.Module, images: list[torch.Tensor], batch_size: int = 32) -> torch.Tensor:
    """``(N, d)`` float64 CPU features of 2D images, batching images of equal shape (on the extractor's device)."""
    feats = []
    dev = next(extractor.parameters(), torch.empty(0)).device
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            chunk = [c.to(dev) for c in images[start : start + batch_size]]
            if all(c.shape == chunk[0].shape for c in chunk):
                feats.append(extractor(torch.stack(chunk)).double().cpu())
            else:
                feats += [extractor(c[None]).double().cpu() for c in chunk]
    return torch.cat(feats)


def diversity(images: Sequence[torch.Tensor], pairs: int = 200, seed: int = 0) -> float:
    """Mean MS-SSIM over random pairs of distinct images (data_range 2 on [-1, 1]); lower = more diverse."""
    n = len(images)
    if n < 2:
        return float("nan")
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, n, (pairs,), generator=g)
    b = (a + torch.randint(1, n, (pairs,), generator=g)) % n
    same = [i for i in range(pairs) if images[int(a[i])].shape == images[int(b[i])].shape]
    x = torch.stack([images[int(a[i])] for i in same])
    y = torch.stack([images[int(b[i])] for i in same])
    return ms_ssim(x, y, data_range=2.0).mean


def evaluate_unpaired(real: list[ImageItem], fake: list[ImageItem], options: UnpairedOptions) -> tuple[Path, Path]:
    """Compute the unpaired metrics of ``fake`` against ``real`` and write the report into ``options.out``.

    Args:
        real: The real images (one modality; 2D images or 3D volumes).
        fake: The generated images, of the same kind.
        options: What to compute and where to write it.

    Returns:
        The paths of ``report.json`` and ``report.html``.

    Raises:
        InputError: Naming ``metrics`` (an unknown metric), ``window`` (none given for an unknown modality, or one
            an 8-bit image cannot be in the units of) or a file.
    """
    features = unpaired_features(real, fake, options)
    return write_unpaired(features, real, fake, options)


@dataclass(frozen=True)
class UnpairedFeatures:
    """The one feature pass of an unpaired evaluation (what :func:`write_unpaired` needs besides the images).

    Attributes:
        real: Real features (per image, or per volume and plane in 3D).
        fake: Generated features, likewise.
        modality: The real set's modality (``ct``, ``mri``, ``xray`` or unknown) and ``modality_source``.
        spec: The extractor's spec (name, sha256, resize, input).
        spatial_dims: 2 or 3.
    """

    real: UnitFeatures
    fake: UnitFeatures
    modality: tuple[str, str]
    spec: ExtractorSpec
    spatial_dims: int


def unpaired_features(real: list[ImageItem], fake: list[ImageItem], options: UnpairedOptions) -> UnpairedFeatures:
    """Load, map to [-1, 1] and extract the features of both sets (sharded under ``distributed``).

    Batches of :data:`FEATURE_BATCH` images (2D) or one volume (3D) are the unit of work; under
    :func:`medgen.evaluation.distributed.distributed` each process extracts every ``world_size``-th batch on its
    device and every process receives all features, in file order.

    Raises:
        InputError: Naming ``metrics`` (an unknown metric), ``window`` (none given for an unknown modality, or one
            an 8-bit image cannot be in the units of) or a file.
    """
    unknown = [m for m in options.metrics if m not in UNPAIRED]
    warnings_module.filterwarnings("ignore", message="FID below")  # reported in the report's warnings instead
    if unknown:
        raise InputError(
            "metrics",
            f"unknown unpaired metric(s) {unknown}; expected some of {', '.join(UNPAIRED)} ({PAIRED_HINT})",
        )
    first = load_image(real[0].path)
    modality, modality_source = str(first.meta[META_MODALITY]), str(first.meta[META_MODALITY_SOURCE])
    if options.window is None and modality not in ("ct", "mri", "xray"):
        raise InputError(real[0].path, f"modality unknown: give {WINDOW_HINT} in the stored values to map intensities")
    extractor, spec = get_extractor(options.extractor, options.weights)
    extractor = extractor.to(distributed.device())
    spatial_dims = LazyImages(real, options.window, modality)[0].ndim - 1
    sets = [_set_features(extractor, LazyImages(items, options.window, modality), spatial_dims, name)
            for items, name in ((real, "real"), (fake, "fake"))]  # fmt: skip
    return UnpairedFeatures(sets[0], sets[1], (modality, modality_source), spec, spatial_dims)


def _set_features(extractor: torch.nn.Module, images: LazyImages, spatial_dims: int, name: str) -> UnitFeatures:
    """Features of one set: per image (2D, :data:`FEATURE_BATCH` per call) or per volume and plane (3D)."""
    if spatial_dims == 3:
        parts = distributed.map_batches(lambda b: _plane_parts(extractor, images[b.start : b.stop]), len(images), 1,
                                        f"{name} features")  # fmt: skip
        planes = range(len(PLANES))
        return volume_units([torch.cat([p[k][0] for p in parts]) for k in planes],
                            [[n for p in parts for n in p[k][1]] for k in planes])  # fmt: skip
    rows = distributed.map_batches(lambda b: features_2d(extractor, images[b.start : b.stop], FEATURE_BATCH),
                                   len(images), FEATURE_BATCH, f"{name} features")  # fmt: skip
    return per_row_units(torch.cat(rows), f"{name} features")


#: Images per extractor call (2D), and the unit of work of one process.
FEATURE_BATCH = 32


def _plane_parts(extractor: torch.nn.Module, volumes: list[torch.Tensor]) -> list[tuple[torch.Tensor, list[int]]]:
    """Per plane: the slice features ``(S, d)`` of ``volumes`` and their slice counts."""
    dev = next(extractor.parameters(), torch.empty(0)).device
    feats = plane_features(extractor, [v.to(dev) for v in volumes])
    return [(getattr(feats, p), slice_counts(volumes, p)) for p in PLANES]


def write_unpaired(
    features: UnpairedFeatures, real: list[ImageItem], fake: list[ImageItem], options: UnpairedOptions
) -> tuple[Path, Path]:
    """Compute the metrics from ``features`` (diversity and examples load images again) and write the report.

    Returns:
        The paths of ``report.json`` and ``report.html``.
    """
    modality, modality_source = features.modality
    real_imgs, fake_imgs = LazyImages(real, options.window, modality), LazyImages(fake, options.window, modality)
    real_f, fake_f, spec, spatial_dims = features.real, features.fake, features.spec, features.spatial_dims
    values, warnings = _metric_values(list(options.metrics), real_f, fake_f, options, real_imgs, fake_imgs)
    if options.window:
        mapping = f"window [{options.window[0]:g}, {options.window[1]:g}], clipped, linear to [-1, 1]"
    else:
        mapping = ModalityIntensity(modality).describe(modality)
    protocol = {"mode": "unpaired", "extractor": spec.name, "extractor_sha256": spec.sha256, "resize": spec.resize,
                "extractor_input": spec.input, "window": options.window, "intensity_mapping": mapping,
                "modality": modality, "modality_source": modality_source,
                "data_range": 2.0,  # the metrics see [-1, 1]: the extractor's input and the diversity MS-SSIM's range
                "spatial_dims": spatial_dims, "slicing": "2.5D (xy, yz, zx)" if spatial_dims == 3 else None,
                "bootstrap": options.bootstrap, "seed": options.seed, "sampling_unit": real_f.unit[:-1],
                "ci95": CI_METHOD.format(fraction=SUBSAMPLE_FRACTION, n_boot=options.bootstrap) if options.bootstrap
                else None,
                "headline": _HEADLINE_3D if spatial_dims == 3 else "fid and kid on all images"}  # fmt: skip
    report = Report(values, len(real), len(fake), protocol, warnings)
    shown = _examples(real_imgs), _examples(fake_imgs)
    return write_report(report, options.out, shown[0], shown[1])


_HEADLINE_3D = (
    "fid (and kid) = mean of the per-plane values fid_xy, fid_yz, fid_zx (MAISI 2.5D protocol); CI, baseline and "
    "N count whole volumes"
)


def _metric_values(metrics, real_f, fake_f, options, real_imgs, fake_imgs):  # type: ignore[no-untyped-def]
    values: dict[str, MetricValue] = {}
    warnings: list[str] = []
    for name, fn in (("fid", fid_value), ("kid", kid_value)):
        if name not in metrics:
            continue
        if options.bootstrap:
            est = estimate(real_f, fake_f, fn, n_boot=options.bootstrap, seed=options.seed)
            values[name], warning = MetricValue(est.value, list(est.ci95), est.baseline), est.warning
        else:
            baseline = split_half_baseline(real_f, fake_f.n_units, fn, options.seed).value
            values[name] = MetricValue(set_statistic(fn, real_f, fake_f), None, baseline)
            warning = small_n_warning(min(real_f.n_units, fake_f.n_units), unit=real_f.unit)
        if warning and warning not in warnings:
            warnings.append(warning)
    if "fid" in metrics and len(real_f.planes) == len(PLANES):
        for plane, r, f in zip(PLANES, real_f.planes, fake_f.planes, strict=True):
            values[f"fid_{plane}"] = MetricValue(fid_value(r, f))
    if "prdc" in metrics:
        res = prdc(torch.cat(real_f.planes), torch.cat(fake_f.planes))
        for key in ("precision", "recall", "density", "coverage"):
            values[key] = MetricValue(float(getattr(res, key)), higher_is_better=True)
    if "diversity" in metrics and len(real_f.planes) == 1:  # 2D
        values["diversity_ms_ssim"] = MetricValue(
            diversity(fake_imgs, seed=options.seed), baseline=diversity(real_imgs, seed=options.seed)
        )
    return values, warnings


def _examples(images: Sequence[torch.Tensor], count: int = 16) -> torch.Tensor | None:
    """Up to ``count`` images spread evenly over the set (the first files are often all one subject)."""
    step = max(1, len(images) // count)
    picked = [images[i] for i in range(0, len(images), step)[:count]]
    chosen = [im for im in picked if im.shape == picked[0].shape]
    return torch.stack(chosen) if chosen else None
