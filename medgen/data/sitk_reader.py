"""A MONAI ``ImageReader`` backed by SimpleITK, for MetaImage, NRRD and DICOM series.

MONAI's own ``ITKReader`` needs the separate ``itk`` package; without it ``LoadImage`` falls through
to another reader and fails with a misleading error. SimpleITK is a single wheel that reads the same
formats, so medgen wraps it in MONAI's reader interface and the rest of the MONAI transform chain
(``LoadImage`` → ``MetaTensor`` → ``Orientation`` …) stays unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from monai.config import PathLike
from monai.data.image_reader import ImageReader
from monai.data.utils import orientation_ras_lps
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

from medgen.data.formats import is_dicom_dir, suffix_of
from medgen.errors import ImageReadError

_IO_BY_SUFFIX = {".mha": "MetaImageIO", ".mhd": "MetaImageIO", ".nrrd": "NrrdImageIO", ".nhdr": "NrrdImageIO"}
DICOM_MODALITY_KEY = "0008|0060"
SLICE_SPACING_WARNING_KEY = "medgen|slice_spacing_warning"
"""Image metadata key holding medgen's note on a DICOM series with uneven or missing slices."""


class SimpleITKReader(ImageReader):
    """Read ``.mha``/``.mhd``/``.nrrd``/``.nhdr`` files and DICOM series folders with SimpleITK.

    The array comes back in the file's index order (x, y, z), as MONAI's other readers return it,
    and the affine is converted from ITK's LPS to RAS like ``NibabelReader``'s.

    Args:
        affine_lps_to_ras: Convert the affine from LPS (ITK/DICOM) to RAS (NIfTI, MONAI default).
    """

    def __init__(self, affine_lps_to_ras: bool = True) -> None:
        super().__init__()
        self.affine_lps_to_ras = affine_lps_to_ras

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """True for MetaImage/NRRD files and DICOM series folders."""
        return all(
            suffix_of(f) in _IO_BY_SUFFIX or is_dicom_dir(f)
            for f in ensure_tuple(filename)  # type: ignore[arg-type]
        )

    def read(self, data: Sequence[str | Path] | str | Path) -> list[sitk.Image] | sitk.Image:  # type: ignore[override]
        """Read one path (or several) into ``SimpleITK.Image`` objects."""
        images = [self._read_one(Path(p)) for p in ensure_tuple(data)]  # type: ignore[arg-type]
        return images if len(images) > 1 else images[0]

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        """Return the array in (x, y, z[, c]) order and a MONAI-compatible metadata dict."""
        images = (img,) if isinstance(img, sitk.Image) else tuple(img)
        if len(images) != 1:
            raise ValueError("SimpleITKReader reads one image per call; stack images after loading.")
        image: sitk.Image = images[0]
        arr = sitk.GetArrayViewFromImage(image)
        ndim = image.GetDimension()
        # SimpleITK arrays are (z, y, x[, c]); MONAI readers return (x, y, z[, c]).
        order = tuple(reversed(range(ndim))) + ((ndim,) if arr.ndim > ndim else ())
        data = np.ascontiguousarray(np.transpose(arr, order))
        meta: dict[str, Any] = {key: image.GetMetaData(key) for key in image.GetMetaDataKeys()}
        affine = self._affine(image)
        meta["spacing"] = np.asarray(image.GetSpacing(), dtype=np.float64)
        meta[MetaKeys.ORIGINAL_AFFINE] = affine
        meta[MetaKeys.AFFINE] = affine.copy()
        meta[MetaKeys.SPACE] = SpaceKeys.RAS if self.affine_lps_to_ras else SpaceKeys.LPS
        meta[MetaKeys.SPATIAL_SHAPE] = np.asarray(image.GetSize())
        meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = -1 if data.ndim > ndim else float("nan")
        return data, meta

    def _affine(self, image: sitk.Image) -> np.ndarray:
        ndim = image.GetDimension()
        direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(ndim, ndim)
        affine = np.eye(ndim + 1)
        affine[:ndim, :ndim] = direction @ np.diag(image.GetSpacing())
        affine[:ndim, -1] = image.GetOrigin()
        return orientation_ras_lps(affine) if self.affine_lps_to_ras else affine

    def _read_one(self, path: Path) -> sitk.Image:
        if path.is_dir():
            return _read_dicom_series(path)
        io_name = _IO_BY_SUFFIX.get(suffix_of(path))
        if io_name is None:
            raise ImageReadError(path, "SimpleITKReader reads .mha, .mhd, .nrrd, .nhdr or DICOM series folders")
        if io_name == "MetaImageIO":
            _check_metaimage_data_file(path)
        reader = sitk.ImageFileReader()
        reader.SetImageIO(io_name)  # force the IO: never let SimpleITK guess from content
        reader.SetFileName(str(path))
        try:
            with itk_warnings_hidden():
                return reader.Execute()
        except RuntimeError as exc:
            raise ImageReadError(path, f"SimpleITK cannot read it ({_first_line(exc)})") from None


def _read_dicom_series(folder: Path) -> sitk.Image:
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise ImageReadError(folder, "folder holds no readable DICOM series")
    if len(series_ids) > 1:
        raise ImageReadError(folder, f"folder holds {len(series_ids)} DICOM series; point to a folder with one series")
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_ids[0])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    reader.LoadPrivateTagsOff()
    try:
        with itk_warnings_hidden():  # ITK's "Non uniform sampling" note becomes medgen's own, below
            image = reader.Execute()
    except RuntimeError as exc:
        raise ImageReadError(folder, f"cannot read the DICOM series ({_first_line(exc)})") from None
    for key in (DICOM_MODALITY_KEY, "0028|0004", "0020|000e"):
        if reader.HasMetaDataKey(0, key):
            image.SetMetaData(key, reader.GetMetaData(0, key).strip())
    note = slice_spacing_warning(_slice_positions(reader, len(files)), image.GetSpacing()[-1])
    if note:
        image.SetMetaData(SLICE_SPACING_WARNING_KEY, note)
    return image


@contextmanager
def itk_warnings_hidden() -> Iterator[None]:
    """Keep ITK from printing warnings to stderr (medgen reports what matters itself)."""
    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(previous)


def _slice_positions(reader: sitk.ImageSeriesReader, n: int) -> list[float]:
    """Each slice's position (mm) along the slice normal, in the reader's order; empty when tags are missing."""
    keys = ("0020|0032", "0020|0037")
    if n < 3 or not all(reader.HasMetaDataKey(i, k) for i in range(n) for k in keys):
        return []
    cosines = np.array([float(v) for v in reader.GetMetaData(0, "0020|0037").split("\\")])
    normal = np.cross(cosines[:3], cosines[3:6])
    return [float(np.dot([float(v) for v in reader.GetMetaData(i, "0020|0032").split("\\")], normal)) for i in range(n)]


def slice_spacing_warning(positions: Sequence[float], spacing: float, rtol: float = 0.01) -> str | None:
    """A note when the gaps between consecutive slices differ by more than ``rtol`` of the read spacing.

    Args:
        positions: Slice positions along the normal (mm), in volume order.
        spacing: The slice spacing the volume was read with (mm).
        rtol: Tolerated spread of the gaps, relative to ``spacing``.

    Returns:
        The warning text, or None for an evenly sampled series.
    """
    gaps = np.abs(np.diff(np.asarray(positions, dtype=np.float64)))
    if gaps.size < 2 or gaps.max() - gaps.min() <= rtol * max(spacing, 1e-6):
        return None
    return (
        f"non-uniform slice spacing: gaps between the {len(positions)} slices range from {gaps.min():.4g} to "
        f"{gaps.max():.4g} mm (missing or uneven slices); the volume is read as evenly spaced at {spacing:.4g} mm, "
        "so positions along the slice axis are off; resample it or drop the series"
    )


def _check_metaimage_data_file(path: Path) -> None:
    """Fail clearly when a MetaImage header names a data file that is not there."""
    with open(path, "rb") as fh:
        header = fh.read(4096).decode("latin-1", errors="replace")
    match = re.search(r"^\s*ElementDataFile\s*=\s*(.+?)\s*$", header, flags=re.MULTILINE)
    if match is None:
        raise ImageReadError(path, "MetaImage header has no 'ElementDataFile' entry")
    target = match.group(1)
    if target.upper() in ("LOCAL", "LIST") or "%" in target:
        return
    data_file = path.parent / target
    if not data_file.is_file():
        raise ImageReadError(path, f"data file '{target}' named by ElementDataFile is missing")


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if "Exception" not in ln and not ln.startswith("sitk::")]
    return (useful or lines or [type(exc).__name__])[-1][:200]
