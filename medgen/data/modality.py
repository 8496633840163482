"""Imaging modality names and how medgen reads them from headers or guesses them."""

from __future__ import annotations

from typing import Literal

from medgen.errors import InputError

Modality = Literal["ct", "mri", "xray", "unknown"]
ModalityOption = Literal["ct", "mri", "xray", "auto"]
MODALITY_OPTIONS: tuple[str, ...] = ("ct", "mri", "xray", "auto")

#: DICOM Modality (0008,0060) values and the medgen modality they map to.
DICOM_MODALITIES: dict[str, Modality] = {
    "CT": "ct",
    "MR": "mri",
    "CR": "xray",
    "DX": "xray",
    "DR": "xray",
    "RG": "xray",
    "RF": "xray",
    "XA": "xray",
    "MG": "xray",
    "PX": "xray",
    "IO": "xray",
}


def check_modality_option(value: str, field: str = "data.modality") -> ModalityOption:
    """Validate a user-given modality option.

    Args:
        value: The option value, e.g. ``"ct"``.
        field: The option name used in the error message.

    Raises:
        InputError: ``value`` is not one of ``ct``, ``mri``, ``xray``, ``auto``.
    """
    norm = str(value).strip().lower()
    aliases = {"mr": "mri", "x-ray": "xray", "cr": "xray", "dx": "xray"}
    norm = aliases.get(norm, norm)
    if norm not in MODALITY_OPTIONS:
        raise InputError(field, f"unknown modality '{value}'; expected one of {', '.join(MODALITY_OPTIONS)}")
    return norm  # type: ignore[return-value]


def modality_from_dicom(tag_value: str | None) -> Modality | None:
    """Map a DICOM Modality tag value to a medgen modality (``unknown`` for other modalities)."""
    if tag_value is None or not str(tag_value).strip():
        return None
    return DICOM_MODALITIES.get(str(tag_value).strip().upper(), "unknown")


def guess_modality(fmt: str, minimum: float, maximum: float, spatial_rank: int) -> Modality:
    """Guess the modality of a header-less image from its values and format; ``unknown`` where the guess is weak.

    CT is stored in Hounsfield units: air near -1000 HU and rarely more than a few thousand HU at the
    top. A header-less 3D volume that is not CT is taken as MRI. A 2D image without a header (PNG/JPEG/TIFF,
    2D NIfTI or NPY) is ``unknown``: an 8-bit brain MRI slice and a radiograph have the same value range, so
    the user must say which (``--data.modality``, or ``--window`` for evaluation).

    Args:
        fmt: The file format (``nifti``, ``png`` …).
        minimum: The smallest voxel value as stored.
        maximum: The largest voxel value as stored.
        spatial_rank: 2 or 3.
    """
    if minimum <= -500.0 and maximum <= 4095.0:
        return "ct"
    if fmt in ("png", "jpeg", "tiff") or spatial_rank == 2:
        return "unknown"
    return "mri"
