"""Image format detection by extension, verified against the file's content.

SimpleITK picks its reader by content (a PNG renamed ``.mha`` is silently read as a PNG) and
MONAI falls through readers with misleading errors, so medgen decides the format from the
extension and then checks the leading bytes ("magic") before any reader touches the file.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Literal

from medgen.errors import ImageReadError

Format = Literal["nifti", "mha", "nrrd", "dicom", "png", "jpeg", "tiff", "npy"]

#: File suffixes (lower case) and the format they announce. Longest suffix wins.
SUFFIXES: dict[str, Format] = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".mha": "mha",
    ".mhd": "mha",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".dcm": "dicom",
    ".dicom": "dicom",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".npy": "npy",
}

#: Formats that hold 2D images only.
FORMATS_2D: frozenset[str] = frozenset({"png", "jpeg", "tiff"})

_MAGIC: dict[str, tuple[bytes, ...]] = {
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpeg": (b"\xff\xd8\xff",),
    "tiff": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
    "npy": (b"\x93NUMPY",),
}
_GZIP = b"\x1f\x8b"
_META_KEYS = (b"objecttype", b"ndims", b"dimsize", b"elementtype", b"comment", b"objectsubtype")


def suffix_of(path: str | Path) -> str:
    """Return the lower-case suffix medgen uses to pick a format (``.nii.gz`` counts as one)."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def is_dicom_dir(path: str | Path) -> bool:
    """True if ``path`` is a folder that holds at least one DICOM file (a series)."""
    p = Path(path)
    if not p.is_dir():
        return False
    return any(f.is_file() and looks_like_dicom(f) for f in sorted(p.iterdir())[:64])


def format_from_name(path: str | Path) -> Format | None:
    """Format announced by the path's extension (or ``dicom`` for a series folder); None if unknown."""
    p = Path(path)
    if p.is_dir():
        return "dicom" if is_dicom_dir(p) else None
    return SUFFIXES.get(suffix_of(p))


def detect_format(path: str | Path) -> Format:
    """Decide the format of an image file or DICOM series folder and check its content.

    Args:
        path: An image file or a folder holding one DICOM series.

    Returns:
        The format name.

    Raises:
        ImageReadError: The path is missing, empty, has an unknown extension, or its content does
            not match its extension.
    """
    p = Path(path)
    if not p.exists():
        raise ImageReadError(p, "file does not exist")
    if p.is_dir():
        if is_dicom_dir(p):
            return "dicom"
        raise ImageReadError(p, "folder holds no DICOM files (expected a DICOM series folder)")
    fmt = SUFFIXES.get(suffix_of(p))
    if fmt is None:
        known = ", ".join(sorted(SUFFIXES))
        raise ImageReadError(p, f"unknown image extension '{suffix_of(p) or p.name}' (expected one of {known})")
    if p.stat().st_size == 0:
        raise ImageReadError(p, "empty file (0 bytes)")
    with open(p, "rb") as fh:
        head = fh.read(1024)
    _check_content(p, fmt, head)
    return fmt


def _sniff(head: bytes) -> str:
    """Best guess of what the content really is, for error messages."""
    for name, magics in _MAGIC.items():
        if any(head.startswith(m) for m in magics):
            return name.upper()
    if head.startswith(_GZIP):
        return "gzip data"
    if len(head) > 132 and head[128:132] == b"DICM":
        return "DICOM"
    if head.startswith(b"NRRD"):
        return "NRRD"
    if _is_text(head):
        return "text"
    return "unrecognised binary data"


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _mismatch(path: Path, fmt: str, head: bytes, expected: str) -> ImageReadError:
    return ImageReadError(path, f"content is {_sniff(head)}, but the extension '{suffix_of(path)}' says {expected}")


def _check_content(path: Path, fmt: str, head: bytes) -> None:
    """Raise :class:`ImageReadError` if ``head`` (the first bytes) does not fit ``fmt``."""
    if fmt in _MAGIC:
        if not any(head.startswith(m) for m in _MAGIC[fmt]):
            raise _mismatch(path, fmt, head, fmt.upper())
    elif fmt == "nifti":
        _check_nifti(path, head)
    elif fmt == "mha":
        first = head.lstrip().split(b"=", 1)[0].strip().lower()
        if first not in _META_KEYS:
            raise _mismatch(path, fmt, head, "MetaImage (a text header starting with 'ObjectType' or 'NDims')")
    elif fmt == "nrrd":
        if not head.startswith(b"NRRD"):
            raise _mismatch(path, fmt, head, "NRRD (a header starting with 'NRRD000')")
    elif fmt == "dicom" and not looks_like_dicom(path):
        raise ImageReadError(path, f"not a DICOM file: content is {_sniff(head)} and there is no 'DICM' marker")


def _check_nifti(path: Path, head: bytes) -> None:
    if suffix_of(path) == ".nii.gz":
        if not head.startswith(_GZIP):
            raise _mismatch(path, "nifti", head, "gzip-compressed NIfTI")
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(4)
        except (OSError, EOFError) as exc:
            raise ImageReadError(path, f"truncated or corrupt gzip stream ({exc})") from None
    if len(head) < 4:
        raise ImageReadError(path, "truncated NIfTI header (fewer than 4 bytes)")
    sizes = {struct.unpack("<i", head[:4])[0], struct.unpack(">i", head[:4])[0]}
    if not sizes & {348, 540}:
        raise ImageReadError(path, f"not a NIfTI file: content is {_sniff(head)} (header size field is not 348 or 540)")


def looks_like_dicom(path: Path) -> bool:
    """DICOM Part 10 files carry 'DICM' at byte 128; fall back to pydicom for preamble-less files."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    if len(head) == 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    # Raw (preamble-less) implicit-VR data sets start with a group 0x0008 tag.
    return head[:2] == b"\x08\x00" and head[2:4] in (b"\x05\x00", b"\x08\x00", b"\x16\x00")
