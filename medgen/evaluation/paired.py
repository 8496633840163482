"""Paired evaluation of image sets matched by file name (synthesis vs ground truth, e.g. MR→CT)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medgen.data.io import load_image
from medgen.errors import InputError
from medgen.evaluation.report import MetricValue
from medgen.evaluation.similarity import paired_metrics
from medgen.evaluation.sources import ImageItem
from medgen.evaluation.synthrad import synthrad2023, synthrad2025
from medgen.progress import progress

PROTOCOLS = ("default", "synthrad2023", "synthrad2025")


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
    """
    if protocol not in PROTOCOLS:
        raise InputError("--protocol", f"unknown protocol '{protocol}'; expected one of {', '.join(PROTOCOLS)}")
    if protocol != "default" and masks is None:
        raise InputError("--mask", f"the {protocol} protocol needs body masks (--mask SRC)")
    rows: list[dict[str, object]] = []
    settings: dict[str, object] = {}
    for real, fake in progress(pairs, "paired metrics"):
        mask = _mask_for(masks, real.key)
        gt, pred = load_image(real.path)[None], load_image(fake.path)[None]
        if gt.shape != pred.shape:
            raise InputError(
                fake.path, f"shape {tuple(pred.shape[2:])} differs from its pair {real.path} {tuple(gt.shape[2:])}"
            )
        if protocol == "default":
            results = paired_metrics(pred, gt, data_range, mask=mask, metrics=metrics, window=window)
            values = {name: float(r.values[0]) for name, r in results.items()}
            settings = {name: r.settings for name, r in results.items()}
        else:
            fn = synthrad2023 if protocol == "synthrad2023" else synthrad2025
            values = fn(gt[0, 0].double(), pred[0, 0].double(), mask[0, 0] if mask is not None else None)  # type: ignore[arg-type]
        rows.append({"file": str(fake.path.name), "reference": str(real.path.name), **values})
    return PairedEvaluation(_summarise(rows, n_boot), rows, settings)


def _mask_for(masks: dict[str, ImageItem] | None, key: str) -> torch.Tensor | None:
    if masks is None:
        return None
    if key not in masks:
        raise InputError("--mask", f"no mask named like '{key}' (masks are matched by file name)")
    return load_image(masks[key].path)[None]


def _summarise(rows: list[dict[str, object]], n_boot: int) -> dict[str, MetricValue]:
    names = [k for k in rows[0] if k not in ("file", "reference")]
    out = {}
    for name in names:
        values = np.asarray([float(r[name]) for r in rows])  # type: ignore[arg-type]
        finite = values[np.isfinite(values)]
        mean = float(finite.mean()) if len(finite) else float("nan")
        out[name] = MetricValue(mean, bootstrap_mean_ci(finite, n_boot), None, higher_is_better=name != "mae")
    return out
