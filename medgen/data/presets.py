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

from medgen.data.io import META_FORMAT, META_MODALITY, META_PHOTOMETRIC
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


#: Raster formats whose 8-bit files hold 0..255 only.
RASTER_FORMATS = ("png", "jpeg", "tiff")


def check_window_units(img: torch.Tensor, window: tuple[float, float], field: str) -> None:
    """Refuse a window that an 8-bit raster image cannot be in the units of (e.g. a CT HU window on a PNG).

    An 8-bit PNG/JPEG/TIFF stores 0..255 whatever it shows; a window of which less than half lies in 0..255
    (``-1000,1000``, any CT preset) was meant for other units and would clip the image to a few grey levels.

    Args:
        img: ``(C, *spatial)`` image as read by :func:`medgen.data.io.load_image`.
        window: ``(low, high)`` about to be applied.
        field: The option that chose the window, for the message (``--window``, ``data.ct_window`` …).

    Raises:
        InputError: Naming the file, the window and what was expected.
    """
    if not isinstance(img, MetaTensor) or img.meta.get(META_FORMAT) not in RASTER_FORMATS:
        return
    lo, hi = float(window[0]), float(window[1])
    if float(img.min()) < 0 or float(img.max()) > 255:
        return  # 16-bit or float raster: its units are unknown, not 8-bit
    inside = max(0.0, min(hi, 255.0) - max(lo, 0.0))
    if inside < 0.5 * (hi - lo):
        raise InputError(
            _source(img),
            f"8-bit {img.meta[META_FORMAT].upper()} (values 0..255) cannot be in the units of {field} "
            f"[{lo:g}, {hi:g}] (a CT window is in HU); give a window in the stored values, e.g. --window 0,255",
        )


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

    def describe(self, modality: str) -> str:
        """The mapping applied to images of ``modality`` in words, for protocols and reports."""
        if modality == "ct":
            name = self.preset.ct_window if isinstance(self.preset.ct_window, str) else "custom"
            lo, hi = resolve_ct_window(self.preset.ct_window)
            return f"ct preset: window {name} [{lo:g}, {hi:g}] HU, clipped, linear to [-1, 1]"
        if modality == "mri":
            if self.preset.mri_zscore:
                return "mri preset: z-score over non-zero voxels"
            lo, hi = self.preset.mri_percentiles
            return f"mri preset: percentiles [{lo:g}, {hi:g}] of each image to [-1, 1], clipped"
        lo, hi = self.preset.xray_percentiles
        return f"xray preset: MONOCHROME1 inverted, percentiles [{lo:g}, {hi:g}] of each image to [-1, 1], clipped"

    def __call__(self, img: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Normalise ``img`` of shape ``(C, *spatial)``; returns the same shape, float32.

        Raises:
            InputError: Modality unknown (``auto``), or a CT window applied to an 8-bit raster image.
        """
        modality = self.resolve(img)
        if modality == "ct":
            check_window_units(img, resolve_ct_window(self.preset.ct_window), "the CT window")
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
