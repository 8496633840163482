"""``medgen inspect``: what an image file holds, read the way training reads it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from PIL import Image

from medgen.data.formats import Format, detect_format
from medgen.data.io import META_FORMAT, META_MODALITY, META_MODALITY_SOURCE, META_SPACING, load_image
from medgen.data.sitk_reader import SLICE_SPACING_WARNING_KEY

_PIL_DTYPES = {
    "1": "bool",
    "L": "uint8",
    "P": "uint8",
    "RGB": "uint8",
    "RGBA": "uint8",
    "LA": "uint8",
    "I;16": "uint16",
    "I;16B": "uint16",
    "I;16L": "uint16",
    "I": "int32",
    "F": "float32",
}


@dataclass
class ImageInfo:
    """One line of ``medgen inspect`` output.

    Attributes:
        path: The path as given.
        format: ``nifti``, ``mha``, ``nrrd``, ``dicom``, ``png``, ``jpeg``, ``tiff`` or ``npy``.
        shape: Voxel grid in the file's index order (x, y[, z]).
        spacing: Voxel size in mm in the same order; None when the file does not state it.
        dtype: The stored data type (numpy name).
        min: Smallest value (after DICOM rescale slope/intercept).
        max: Largest value.
        modality: ``ct``, ``mri``, ``xray`` or ``unknown``.
        modality_source: ``header`` (DICOM Modality tag) or ``guess`` (from format and values).
        warnings: Things a user should know (unknown spacing …).
    """

    path: str
    format: str
    shape: list[int]
    spacing: list[float] | None
    dtype: str
    min: float
    max: float
    modality: str
    modality_source: str
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict (``warnings`` left out when empty)."""
        d = asdict(self)
        if not self.warnings:
            d.pop("warnings")
        return d


def inspect_image(path: str | Path) -> ImageInfo:
    """Read ``path`` as training would and summarise it.

    Raises:
        ImageReadError: The file cannot be read (same checks as training).
    """
    img = load_image(path, dtype=np.float64)
    fmt: Format = img.meta[META_FORMAT]
    spacing = img.meta[META_SPACING]
    warnings = []
    if spacing is None:
        warnings.append(
            "pixel spacing unknown: the file states none (CR/DX often lack PixelSpacing); not invented"
            if fmt == "dicom"
            else f"{fmt.upper()} files carry no physical spacing"
        )
    if img.meta.get(SLICE_SPACING_WARNING_KEY):
        warnings.append(str(img.meta[SLICE_SPACING_WARNING_KEY]))
    return ImageInfo(
        path=str(path),
        format=fmt,
        shape=[int(s) for s in img.shape[1:]],
        spacing=None if spacing is None else [round(float(s), 6) for s in spacing],
        dtype=stored_dtype(Path(path), fmt),
        min=_number(float(img.min())),
        max=_number(float(img.max())),
        modality=str(img.meta[META_MODALITY]),
        modality_source=str(img.meta[META_MODALITY_SOURCE]),
        warnings=warnings,
    )


def _number(x: float) -> float:
    return int(x) if float(x).is_integer() else round(x, 6)  # type: ignore[return-value]


def stored_dtype(path: Path, fmt: Format | None = None) -> str:
    """The data type as stored in the file (readers may convert it, e.g. DICOM rescale to float)."""
    fmt = fmt or detect_format(path)
    if fmt == "nifti":
        header: Any = nib.load(str(path)).header
        return np.dtype(header.get_data_dtype()).newbyteorder("=").name
    if fmt in ("mha", "nrrd"):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        return _sitk_dtype(reader.GetPixelID())
    if fmt == "dicom":
        import pydicom

        first = path if path.is_file() else sorted(f for f in path.iterdir() if f.is_file())[0]
        ds = pydicom.dcmread(first, stop_before_pixels=True)
        bits = int(ds.get("BitsAllocated", 16))
        return f"{'int' if int(ds.get('PixelRepresentation', 0)) else 'uint'}{bits}"
    if fmt == "npy":
        return np.load(path, mmap_mode="r").dtype.name
    with Image.open(path) as im:
        return _PIL_DTYPES.get(im.mode, im.mode)


def _sitk_dtype(pixel_id: int) -> str:
    names = {
        sitk.sitkUInt8: "uint8",
        sitk.sitkInt8: "int8",
        sitk.sitkUInt16: "uint16",
        sitk.sitkInt16: "int16",
        sitk.sitkUInt32: "uint32",
        sitk.sitkInt32: "int32",
        sitk.sitkUInt64: "uint64",
        sitk.sitkInt64: "int64",
        sitk.sitkFloat32: "float32",
        sitk.sitkFloat64: "float64",
    }
    return names.get(pixel_id, sitk.GetPixelIDValueAsString(pixel_id))
