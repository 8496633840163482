"""Reading and writing medical images with their geometry.

Reading stays inside MONAI's chain: a reader chosen by the (content-checked) format is passed to
``monai.transforms.LoadImage``, which returns a channel-first ``MetaTensor`` whose ``affine`` (RAS)
carries spacing, orientation and origin. medgen adds the checks MONAI leaves to the user (format vs
content, non-finite voxels, zero-length or unexpected dimensions) and three metadata keys:
``modality``, ``modality_source`` and ``spacing`` (None when the file does not state it).
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk
import torch
from monai.data import MetaTensor, NibabelReader, NumpyReader, PILReader, PydicomReader
from monai.data.image_reader import ImageReader
from monai.data.utils import orientation_ras_lps, to_affine_nd
from monai.transforms import LoadImage
from PIL import Image

from medgen.data.formats import Format, detect_format, suffix_of
from medgen.data.modality import Modality, guess_modality, modality_from_dicom
from medgen.data.sitk_reader import DICOM_MODALITY_KEY, SimpleITKReader
from medgen.errors import ImageReadError

# MONAI registers an optional GPU DICOM decoder when LoadImage is built and logs its absence every time.
logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)

#: Metadata keys medgen adds to every loaded ``MetaTensor``.
META_FORMAT = "medgen_format"
META_MODALITY = "modality"
META_MODALITY_SOURCE = "modality_source"
META_SPACING = "medgen_spacing"
META_PHOTOMETRIC = "photometric_interpretation"


def _pil_to_grey(image: Image.Image) -> Image.Image:
    """Colour or palette images become 8-bit grey; 16-bit and float grey images stay as they are."""
    return image.convert("L") if image.mode in ("RGB", "RGBA", "P", "LA", "CMYK", "YCbCr") else image


def make_reader(fmt: Format) -> ImageReader:
    """The MONAI reader medgen uses for a format."""
    if fmt == "nifti":
        return NibabelReader()
    if fmt in ("mha", "nrrd"):
        return SimpleITKReader()
    if fmt == "dicom":
        return PydicomReader(prune_metadata=False)
    if fmt in ("png", "jpeg", "tiff"):
        return PILReader(converter=_pil_to_grey)
    return NumpyReader()


_LOADERS: dict[str, LoadImage] = {}
_READERS: dict[str, ImageReader] = {}


def _loader(dtype: Any) -> LoadImage:
    """A cached ``LoadImage`` per output dtype (building one registers every MONAI reader)."""
    key = str(dtype)
    if key not in _LOADERS:
        with _quiet():
            _LOADERS[key] = LoadImage(image_only=True, ensure_channel_first=True, dtype=dtype)
    return _LOADERS[key]


def _reader(kind: str) -> ImageReader:
    """The cached reader instance for a format (``dicom-series`` for DICOM folders)."""
    if kind not in _READERS:
        _READERS[kind] = SimpleITKReader() if kind == "dicom-series" else make_reader(kind)  # type: ignore[arg-type]
    return _READERS[kind]


@contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*nvImageCodec.*")
        warnings.filterwarnings("ignore", category=UserWarning, module="monai.*")
        yield


def load_image(
    path: str | Path,
    *,
    spatial_dims: int | None = None,
    dtype: Any = np.float32,
    check_finite: bool = True,
) -> MetaTensor:
    """Read an image file or DICOM series folder into a channel-first ``MetaTensor``.

    Args:
        path: A NIfTI, MHA/MHD, NRRD, DICOM file or series folder, PNG/JPEG/TIFF or NPY file.
        spatial_dims: If given (2 or 3), the image must have exactly this many spatial dimensions
            (a 2D image is accepted for 3 only as a single-slice volume, never the reverse).
        dtype: Output dtype (numpy); None keeps the stored dtype.
        check_finite: Reject images with NaN or Inf voxels.

    Returns:
        ``MetaTensor`` of shape ``(C, X, Y[, Z])`` with a 4x4 RAS ``affine`` and the medgen metadata keys.

    Raises:
        ImageReadError: The file is missing, empty, of the wrong content, truncated, non-finite, has a
            zero-length dimension or the wrong number of dimensions.
    """
    p = Path(path)
    fmt = detect_format(p)
    reader = _reader("dicom-series" if p.is_dir() else fmt)
    try:
        with _quiet():
            # Passing the reader at call time stops LoadImage from falling back to other readers,
            # whose errors (e.g. "not DICOM" for a broken .mha) would hide the real problem.
            img = _loader(dtype)(str(p), reader=reader)
    except ImageReadError:
        raise
    except Exception as exc:  # readers raise many types; the user needs one line naming the file
        raise ImageReadError(p, f"cannot read {fmt.upper()} data ({_describe(exc)})") from None
    return _finish(img, p, fmt, spatial_dims, check_finite, series=p.is_dir())


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[-1] if text else ""
    msg = msg.replace(str(Path.cwd()) + os.sep, "")
    name = type(exc).__name__
    if isinstance(exc, EOFError) or "end of file" in msg.lower() or "compressed file ended" in msg.lower():
        return "file is truncated"
    return f"{name}: {msg[:160]}" if msg else name


def _finish(
    img: MetaTensor, path: Path, fmt: Format, spatial_dims: int | None, check_finite: bool, series: bool
) -> MetaTensor:
    shape = tuple(img.shape[1:])
    if any(s == 0 for s in shape) or img.numel() == 0:
        stored = img.meta.get("spatial_shape")
        shown = tuple(int(s) for s in stored) if stored is not None else _full_shape(img)
        raise ImageReadError(path, f"image has a zero-length dimension: shape {shown}")
    rank = len(shape)
    if img.shape[0] != 1:
        wanted = f"{spatial_dims}-D" if spatial_dims else "2-D or 3-D"
        got = f"{img.ndim}-D shape {_full_shape(img)}"
        raise ImageReadError(path, f"expected a single-channel {wanted} image, got {got}")
    if spatial_dims is not None and rank != spatial_dims:
        raise ImageReadError(path, f"expected a {spatial_dims}-D image, got {rank}-D shape {shape}")
    if check_finite and img.is_floating_point():
        bad = int((~torch.isfinite(img)).sum())
        if bad:
            raise ImageReadError(path, f"image has {bad} non-finite voxels (NaN or Inf)")
    img.affine = torch.as_tensor(to_affine_nd(3, np.asarray(img.affine, dtype=np.float64)), dtype=torch.float64)
    modality, source = _modality(img, fmt)
    img.meta[META_FORMAT] = fmt
    img.meta[META_MODALITY] = modality
    img.meta[META_MODALITY_SOURCE] = source
    img.meta[META_SPACING] = _spacing(img, fmt, rank, series)
    photometric = _tag(img.meta, "00280004", "0028|0004")
    if photometric is not None:
        img.meta[META_PHOTOMETRIC] = str(photometric).upper()
    return img


def _full_shape(img: MetaTensor) -> tuple[int, ...]:
    """The shape as stored in the file: spatial dims first, then channels/time points if more than one."""
    spatial = tuple(int(s) for s in img.shape[1:])
    return spatial if img.shape[0] == 1 else (*spatial, int(img.shape[0]))


def _tag(meta: dict, pydicom_key: str, sitk_key: str) -> Any:
    """A DICOM tag value from MONAI's PydicomReader metadata or SimpleITK's (``gggg|eeee``)."""
    if sitk_key in meta:
        return str(meta[sitk_key]).strip() or None
    entry = meta.get(pydicom_key)
    if isinstance(entry, dict):
        values = entry.get("Value") or []
        return values if len(values) > 1 else (values[0] if values else None)
    return None


def _modality(img: MetaTensor, fmt: Format) -> tuple[Modality, str]:
    from_header = modality_from_dicom(_tag(img.meta, "00080060", DICOM_MODALITY_KEY))
    if from_header is not None:
        return from_header, "header"
    return guess_modality(fmt, float(img.min()), float(img.max()), img.ndim - 1), "guess"


def _spacing(img: MetaTensor, fmt: Format, rank: int, series: bool) -> list[float] | None:
    """Voxel spacing in mm in index order, or None when the file does not state it.

    PNG/JPEG/TIFF/NPY carry no physical spacing, and CR/DX DICOM often lacks ``PixelSpacing``
    (``ImagerPixelSpacing`` is used then): medgen reports the spacing as unknown instead of inventing 1 mm.
    """
    if fmt in ("png", "jpeg", "tiff", "npy"):
        return None
    if fmt == "dicom" and not series:
        values = _tag(img.meta, "00280030", "0028|0030") or _tag(img.meta, "00181164", "0018|1164")
        if values is None:
            return None
        row_col = [float(v) for v in (values if isinstance(values, list) else [values, values])]
        if min(row_col) <= 0:
            return None
        inplane = [row_col[1], row_col[0]]  # PixelSpacing is (row, column); index order is (column, row)
        return inplane if rank == 2 else [*inplane, float(img.pixdim[2])]
    return [float(s) for s in np.asarray(img.pixdim[:rank], dtype=np.float64)]


# --------------------------------------------------------------------------------------------- writing


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Write a file through a temporary name in the same folder, then rename it into place.

    A crash leaves either the old file or nothing, never a half-written one.

    Args:
        path: The final path.
        write: Called with the temporary path; must write the complete file there.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix_of(final)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".tmp{suffix}", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; the file gets what an ordinary open would give
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def _umask() -> int:
    """The process's umask (read by setting it and setting it back: the OS offers no plain getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _as_array(image: torch.Tensor | np.ndarray) -> np.ndarray:
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim in (3, 4) and arr.shape[0] == 1:
        arr = arr[0]
    return arr


def write_image(
    image: torch.Tensor | np.ndarray,
    path: str | Path,
    affine: torch.Tensor | np.ndarray | None = None,
) -> Path:
    """Write an image with its geometry, atomically.

    Args:
        image: ``(1, X, Y[, Z])`` or ``(X, Y[, Z])`` array; a ``MetaTensor`` brings its own affine.
        path: Output file; the format follows the extension (``.nii``, ``.nii.gz``, ``.mha``,
            ``.nrrd``, ``.npy``).
        affine: 4x4 RAS affine; defaults to the ``MetaTensor``'s affine, else identity.

    Returns:
        The written path.
    """
    if affine is None and isinstance(image, MetaTensor):
        affine = image.affine
    aff = np.eye(4) if affine is None else to_affine_nd(3, np.asarray(affine, dtype=np.float64))
    arr = _as_array(image)
    fmt = {".nii": "nifti", ".nii.gz": "nifti", ".mha": "mha", ".nrrd": "nrrd", ".npy": "npy"}.get(suffix_of(path))
    if fmt is None:
        raise ImageReadError(path, "cannot write this extension (expected .nii, .nii.gz, .mha, .nrrd or .npy)")
    if fmt == "nifti":
        return atomic_write(path, lambda tmp: nib.save(nib.Nifti1Image(arr, aff), str(tmp)))
    if fmt == "npy":
        return atomic_write(path, lambda tmp: np.save(tmp, arr))
    return atomic_write(path, lambda tmp: sitk.WriteImage(_to_sitk(arr, aff), str(tmp), useCompression=True))


def _to_sitk(arr: np.ndarray, affine_ras: np.ndarray) -> sitk.Image:
    """Build a SimpleITK image from an (x, y[, z]) array and a RAS affine."""
    rank = arr.ndim
    lps = orientation_ras_lps(affine_ras)
    linear = lps[:rank, :rank]
    spacing = np.linalg.norm(linear, axis=0)
    direction = linear / spacing
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(arr)))
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(d) for d in direction.ravel()])
    image.SetOrigin([float(o) for o in lps[:rank, 3]])
    return image
