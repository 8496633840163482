"""Modality intensity presets: CT Hounsfield windows, MRI percentiles, X-ray photometric handling.

Every preset maps intensities to [-1, 1] (MRI z-scoring excepted), the range diffusion and flow
models are trained in. Each is a MONAI array transform so it composes with the rest of the chain.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import (
    MapTransform,
    NormalizeIntensity,
    ScaleIntensityRange,
    ScaleIntensityRangePercentiles,
    Transform,
)

from medgen.data.io import META_MODALITY, META_PHOTOMETRIC
from medgen.errors import InputError

#: Named CT windows as (low, high) HU. "full" keeps everything a scanner stores.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "full": (-1024.0, 3071.0),
    "body": (-1000.0, 1000.0),
    "soft_tissue": (-160.0, 240.0),
    "abdomen": (-135.0, 215.0),
    "lung": (-1350.0, 150.0),
    "bone": (-450.0, 1050.0),
    "brain": (0.0, 80.0),
}


def resolve_ct_window(window: str | Sequence[float]) -> tuple[float, float]:
    """Turn a window name or a ``(low, high)`` pair into HU bounds.

    Raises:
        InputError: Unknown name, or ``low >= high``.
    """
    if isinstance(window, str):
        if window not in CT_WINDOWS:
            raise InputError(
                "data.ct_window",
                f"unknown window '{window}'; expected one of {', '.join(CT_WINDOWS)} or [low, high]",
            )
        return CT_WINDOWS[window]
    lo, hi = (float(v) for v in window)
    if lo >= hi:
        raise InputError("data.ct_window", f"low ({lo}) must be below high ({hi})")
    return lo, hi


@dataclass(frozen=True)
class IntensityPreset:
    """How intensities are normalised per modality.

    Attributes:
        ct_window: CT window name or ``(low, high)`` in HU; clipped, then scaled to [-1, 1].
        mri_percentiles: Lower/upper percentiles mapped to -1/1 for MRI (clipped).
        mri_zscore: Z-score MRI over non-zero voxels instead of percentile scaling.
        xray_percentiles: Lower/upper percentiles mapped to -1/1 for X-ray (clipped).
    """

    ct_window: str | tuple[float, float] = "full"
    mri_percentiles: tuple[float, float] = (0.5, 99.5)
    mri_zscore: bool = False
    xray_percentiles: tuple[float, float] = (0.5, 99.5)


class ModalityIntensity(Transform):
    """Normalise an image by the rules of its modality.

    MONOCHROME1 radiographs (bright = low attenuation) are inverted first so bone is bright, as in
    MONOCHROME2. The modality comes from the argument, or from the ``MetaTensor``'s ``modality`` key
    when the argument is ``"auto"``.

    Args:
        modality: ``ct``, ``mri``, ``xray`` or ``auto``.
        preset: The parameters of each modality's normalisation.
    """

    def __init__(self, modality: str = "auto", preset: IntensityPreset | None = None) -> None:
        self.modality = modality
        self.preset = preset or IntensityPreset()
        lo, hi = resolve_ct_window(self.preset.ct_window)
        self._ct = ScaleIntensityRange(a_min=lo, a_max=hi, b_min=-1.0, b_max=1.0, clip=True)
        self._mri = (
            NormalizeIntensity(nonzero=True)
            if self.preset.mri_zscore
            else _percentile_scaler(self.preset.mri_percentiles)
        )
        self._xray = _percentile_scaler(self.preset.xray_percentiles)

    def resolve(self, img: torch.Tensor) -> str:
        """The modality used for ``img``."""
        if self.modality != "auto":
            return self.modality
        found = img.meta.get(META_MODALITY, "unknown") if isinstance(img, MetaTensor) else "unknown"
        if found not in ("ct", "mri", "xray"):
            raise InputError(_source(img), "modality is unknown from the file; set --data.modality to ct, mri or xray")
        return str(found)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Normalise ``img`` of shape ``(C, *spatial)``; returns the same shape, float32."""
        modality = self.resolve(img)
        img = img.float() if not img.is_floating_point() else img
        if modality == "ct":
            out = self._ct(img)
        elif modality == "mri":
            out = self._mri(img)
        else:
            if isinstance(img, MetaTensor) and img.meta.get(META_PHOTOMETRIC) == "MONOCHROME1":
                img = img.max() - img
            out = self._xray(img)
        return torch.as_tensor(out) if not isinstance(out, torch.Tensor) else out


class ModalityIntensityd(MapTransform):
    """Dictionary version of :class:`ModalityIntensity` (masks are never passed through it)."""

    def __init__(self, keys: KeysCollection, modality: str = "auto", preset: IntensityPreset | None = None) -> None:
        super().__init__(keys)
        self.transform = ModalityIntensity(modality, preset)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:  # type: ignore[override]
        """Apply the preset to each key."""
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


def _percentile_scaler(percentiles: tuple[float, float]) -> ScaleIntensityRangePercentiles:
    lo, hi = percentiles
    if not 0.0 <= lo < hi <= 100.0:
        raise InputError("data.percentiles", f"expected 0 <= low < high <= 100, got ({lo}, {hi})")
    return ScaleIntensityRangePercentiles(lower=lo, upper=hi, b_min=-1.0, b_max=1.0, clip=True)


def _source(img: torch.Tensor) -> str:
    if isinstance(img, MetaTensor):
        return str(img.meta.get("filename_or_obj", "image"))
    return "image"
