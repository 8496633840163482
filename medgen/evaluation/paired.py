"""Paired evaluation of image sets matched by file name (synthesis vs ground truth, e.g. MR→CT).

Each pair is compared on one grid: 3D volumes are reoriented to RAS (``medgen generate`` writes RAS; scanners
often store LPS), and a pair (or mask) whose grid then still differs from the reference in shape, spacing,
direction or origin is refused with a one-line error: comparing voxels at different world positions would score
a correct synthesis as wrong. The report's protocol says how many generated files were reoriented.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor

from medgen.data.io import load_image
from medgen.errors import InputError
from medgen.evaluation.model_range import ModelRange, model_range
from medgen.evaluation.report import MetricValue, Report, write_report
from medgen.evaluation.similarity import PAIRED_METRICS, paired_metrics
from medgen.evaluation.sources import ImageItem, list_source, load_ras, load_stack, pair_items, to_ras
from medgen.evaluation.synthrad import synthrad2023, synthrad2025
from medgen.progress import progress

PROTOCOLS = ("default", "synthrad2023", "synthrad2025")
#: How messages name the window option (``medgen evaluate`` names its flag instead).
WINDOW_HINT = "window=(LO, HI)"


@dataclass(frozen=True)
class PairedOptions:
    """One paired evaluation (what ``medgen evaluate --paired`` sets).

    Attributes:
        out: Report folder (``report.json``, ``report.html``).
        metrics: Metric names for the default protocol, some of ``ssim``, ``ms_ssim``, ``psnr``, ``mae``.
        data_range: Value range of the stored intensities; None: ``window``'s width (the default protocol needs
            one of the two).
        window: Clip both images to ``(lo, hi)`` first; None: no clipping.
        protocol: ``default``, ``synthrad2023`` or ``synthrad2025`` (HU volumes with body masks).
        masks: Source of masks matched to the pairs by file name (folder or ``manifest.jsonl``); None: none.
        bootstrap: Resamples for the 95 % CIs of the means (0: none).
        normalize_real: ``ct``, ``mri``, ``xray`` or ``auto`` (the generated set's manifest's modality): compare in
            the model's [-1, 1] (:mod:`medgen.evaluation.model_range`): each real image mapped by that modality's
            training preset (``window``: the CT window), each generated one read back as medgen writes it; the
            data range is then 2. None: the stored intensities.
    """

    out: str | Path
    metrics: tuple[str, ...] = PAIRED_METRICS
    data_range: float | None = None
    window: tuple[float, float] | None = None
    protocol: str = "default"
    masks: str | Path | None = None
    bootstrap: int = 200
    normalize_real: str | None = None


@dataclass
class PairedEvaluation:
    """Per-pair values and their summary."""

    metrics: dict[str, MetricValue]
    per_image: list[dict[str, object]]
    settings: dict[str, object]


def bootstrap_mean_ci(values: np.ndarray, n_boot: int, seed: int = 0) -> list[float] | None:
    """Percentile 95 % interval of the mean of ``values`` over ``n_boot`` resamples (None when n_boot is 0)."""
    if n_boot <= 0 or len(values) < 2:
        return None
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def evaluate_pairs(
    pairs: Sequence[tuple[ImageItem, ImageItem]],
    masks: dict[str, ImageItem] | None,
    metrics: Sequence[str],
    data_range: float | None,
    window: tuple[float, float] | None,
    protocol: str,
    n_boot: int,
    mapping: ModelRange | None = None,
) -> PairedEvaluation:
    """Compute paired metrics for every (real, fake) pair.

    Args:
        pairs: (real, generated) items with equal keys.
        masks: Mask items by key (each pair needs one when given).
        metrics: Metric names for the default protocol (ssim, ms_ssim, psnr, mae).
        data_range: Value range of the stored intensities (default protocol).
        window: Clip both images to ``(lo, hi)`` first (default protocol).
        protocol: ``default``, ``synthrad2023`` or ``synthrad2025`` (HU volumes with masks).
        n_boot: Bootstrap resamples for the CIs of the means (0: none).
        mapping: Compare in the model's [-1, 1] (then ``window`` is not applied again); None: stored values.
    """
    if protocol not in PROTOCOLS:
        raise InputError("protocol", f"unknown protocol '{protocol}'; expected one of {', '.join(PROTOCOLS)}")
    if protocol != "default" and masks is None:
        raise InputError("masks", f"the {protocol} protocol needs body masks (matched to the pairs by file name)")
    rows: list[dict[str, object]] = []
    settings: dict[str, object] = {}
    reoriented: list[str] = []
    for real, fake in progress(pairs, "paired metrics"):
        gt_stored, pred_stored = load_image(real.path), load_image(fake.path)
        gt_img, pred_img = to_ras(gt_stored), to_ras(pred_stored)
        check_same_grid(pred_img, gt_img, fake.path, real.path)
        if orientation(pred_stored) != orientation(gt_stored):
            reoriented.append(f"{fake.path.name} ({orientation(pred_stored)} vs {orientation(gt_stored)})")
        mask = _mask_for(masks, real.key, gt_img, real.path)
        gt, pred = gt_img.as_tensor()[None], pred_img.as_tensor()[None]
        if mapping is not None:
            gt, pred = mapping.real(gt_img)[None], mapping.fake(pred_img, fake.path)[None]
            window = None
        if protocol == "default":
            results = paired_metrics(pred, gt, data_range, mask=mask, metrics=metrics, window=window)
            values = {name: float(r.values[0]) for name, r in results.items()}
            settings = {name: r.settings for name, r in results.items()}
        else:
            fn = synthrad2023 if protocol == "synthrad2023" else synthrad2025
            values = fn(gt[0, 0].double(), pred[0, 0].double(), mask[0, 0] if mask is not None else None)  # type: ignore[arg-type]
        rows.append({"file": str(fake.path.name), "reference": str(real.path.name), **values})
    if mapping is not None:
        settings["intensity_mapping"] = mapping.describe()
    settings["geometry"] = (
        "3D pairs compared in RAS on the reference grid; "
        + (f"{len(reoriented)} generated file(s) stored in another orientation were reoriented: "
           + ", ".join(reoriented[:5]) + (" ..." if len(reoriented) > 5 else "")
           if reoriented else "no file needed reorienting")
    )  # fmt: skip
    return PairedEvaluation(_summarise(rows, n_boot), rows, settings)


def evaluate_paired(real: list[ImageItem], fake: list[ImageItem], options: PairedOptions) -> tuple[Path, Path]:
    """Match ``fake`` to ``real`` by file name, compute the paired metrics and write the report into ``options.out``.

    Args:
        real: The reference images.
        fake: The generated images (files without a partner are counted in the report's warnings).
        options: What to compute and where to write it.

    Returns:
        The paths of ``report.json`` and ``report.html``.

    Raises:
        InputError: Naming ``data_range`` (neither it nor ``window`` given for the default protocol), ``metrics``,
            ``window``, ``protocol``, ``masks``, ``normalize_real``, or a file (no partners, a pair on different
            grids, a generated MRI/X-ray file outside [-1, 1] under ``normalize_real``).
    """
    pairs = pair_items(real, fake)
    masks = {m.key: m for m in list_source(options.masks)} if options.masks else None
    data_range = options.data_range
    mapping = model_range(options.normalize_real, options.window, fake) if options.normalize_real else None
    if mapping is not None:
        if options.protocol != "default":
            raise InputError("normalize_real", f"the {options.protocol} protocol compares HU volumes; drop it")
        if data_range not in (None, 2.0):
            raise InputError("data_range", "is 2 when real images are normalised (both sides in [-1, 1])")
        data_range = 2.0
    if data_range is None and options.window is not None:
        data_range = options.window[1] - options.window[0]
    if data_range is None and options.protocol == "default":
        raise InputError(
            "data_range",
            f"required for paired metrics (the value range of the stored intensities), or give {WINDOW_HINT}",
        )
    window = options.window
    result = evaluate_pairs(pairs, masks, options.metrics, data_range, window, options.protocol, options.bootstrap,
                            mapping)  # fmt: skip
    protocol = {"mode": "paired", "protocol": options.protocol, "data_range": data_range, "window": window,
                "normalize_real": mapping.modality if mapping else None, "settings": result.settings,
                "bootstrap": options.bootstrap}  # fmt: skip
    warnings = (
        [f"{len(real) - len(pairs)} real and {len(fake) - len(pairs)} generated files have no partner"]
        if len(pairs) < max(len(real), len(fake))
        else []
    )
    report = Report(result.metrics, len(pairs), len(pairs), protocol, warnings, result.per_image)
    shown = _examples(pairs[:16], window, mapping)
    value_range = window or ((float(shown[0].min()), float(shown[0].max())) if shown else (-1.0, 1.0))
    if mapping is not None:
        value_range = (-1.0, 1.0)
    real_examples, fake_examples = shown if shown else (None, None)
    return write_report(report, options.out, real_examples, fake_examples, value_range=value_range)


def _examples(
    pairs: list[tuple[ImageItem, ImageItem]], window: tuple[float, float] | None, mapping: ModelRange | None
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(N, 1, *spatial)`` real and generated stacks for the report's picture; None for differently sized images."""
    try:
        if mapping is None:
            return load_stack([r for r, _ in pairs], window), load_stack([f for _, f in pairs], window)
    except InputError:  # differently sized images: no picture
        return None
    real = [mapping.real(load_ras(r.path)) for r, _ in pairs]
    fake = [mapping.fake(load_ras(f.path), f.path) for _, f in pairs]
    if any(x.shape != real[0].shape for x in real + fake):
        return None
    return torch.stack(real), torch.stack(fake)


def orientation(img: MetaTensor) -> str:
    """Axis codes of an image as stored (e.g. ``LPS``; ``""`` for 2D images, which have no orientation)."""
    return "".join(nib.orientations.aff2axcodes(np.asarray(img.affine))) if img.ndim == 4 else ""


def check_same_grid(image: MetaTensor, reference: MetaTensor, path: Path, reference_path: Path) -> None:
    """Refuse ``image`` unless it lies on ``reference``'s grid (shape and affine, both already in RAS).

    Raises:
        InputError: Naming ``path`` and the first difference: shape, spacing, direction or origin (mm).
    """
    shape, ref_shape = tuple(image.shape[1:]), tuple(reference.shape[1:])
    a, b = np.asarray(image.affine, dtype=np.float64), np.asarray(reference.affine, dtype=np.float64)
    spacing, ref_spacing = np.linalg.norm(a[:3, :3], axis=0), np.linalg.norm(b[:3, :3], axis=0)
    tol = 1e-3 * float(min(ref_spacing.min(), 1.0))
    if shape != ref_shape:
        what = f"shape {shape} vs {ref_shape}"
    elif not np.allclose(spacing, ref_spacing, atol=tol):
        what = f"spacing {_mm(spacing)} vs {_mm(ref_spacing)} mm"
    elif not np.allclose(a[:3, :3], b[:3, :3], atol=tol):
        what = "direction cosines differ"
    elif not np.allclose(a[:3, 3], b[:3, 3], atol=tol):
        what = f"origin {_mm(a[:3, 3])} vs {_mm(b[:3, 3])} mm"
    else:
        return
    raise InputError(
        path, f"grid differs from its pair {reference_path} after reorienting to RAS: {what}; resample it onto the "
        "reference grid first (e.g. MONAI ResampleToMatch)",
    )  # fmt: skip


def _mm(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"


def _mask_for(
    masks: dict[str, ImageItem] | None, key: str, reference: MetaTensor, reference_path: Path
) -> torch.Tensor | None:
    if masks is None:
        return None
    if key not in masks:
        raise InputError("masks", f"no mask named like '{key}' (masks are matched by file name)")
    mask = load_ras(masks[key].path)
    check_same_grid(mask, reference, masks[key].path, reference_path)
    return mask.as_tensor()[None]


def _summarise(rows: list[dict[str, object]], n_boot: int) -> dict[str, MetricValue]:
    names = [k for k in rows[0] if k not in ("file", "reference")]
    out = {}
    for name in names:
        values = np.asarray([float(r[name]) for r in rows])  # type: ignore[arg-type]
        finite = values[np.isfinite(values)]
        mean = float(finite.mean()) if len(finite) else float("nan")
        out[name] = MetricValue(mean, bootstrap_mean_ci(finite, n_boot), None, higher_is_better=name != "mae")
    return out
