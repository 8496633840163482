"""Finding training images: a plain folder, or a CSV/JSON datalist with per-sample conditions.

A datalist has one row per image with an ``image`` column (path, relative to the datalist's folder
or absolute) and optional ``mask`` (paired mask/label path), ``source`` (the input image of an image-to-image
pair, on the same grid; ``image`` is then the pair's target), ``subject`` (patient id used for the
train/val split) and any number of condition columns (class labels, age, sex …). Numeric condition
values stay numbers; text values become integer codes (sorted vocabulary), reported back to the user.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from medgen.data.formats import SUFFIXES, looks_like_dicom, suffix_of
from medgen.errors import InputError

RESERVED_COLUMNS = ("image", "mask", "source", "subject")
_MASK_SUFFIX = re.compile(r"(_mask|_seg|_label|_labels)$", re.IGNORECASE)


@dataclass
class ImageRecord:
    """One training image and what belongs to it.

    Attributes:
        image: Path to the image file or DICOM series folder.
        subject: Subject/patient id; all images of one subject stay in one split.
        mask: Optional paired mask or label map path.
        source: Optional input image of an image-to-image pair (``image`` is its target); same grid as ``image``.
        conditions: Condition values by column name (numbers; text columns are coded as integers).
    """

    image: str
    subject: str
    mask: str | None = None
    conditions: dict[str, float] = field(default_factory=dict)
    source: str | None = None


@dataclass
class Datalist:
    """Records plus the vocabulary of text-valued condition columns.

    Attributes:
        records: One per image.
        vocab: Text values of each text-valued condition column, in code order.
        origin: Where the records came from (the folder or datalist file; ``""`` when built in code).
    """

    records: list[ImageRecord]
    vocab: dict[str, list[str]] = field(default_factory=dict)
    origin: str = ""

    @property
    def paired(self) -> bool:
        """Every record has a ``source`` image (image-to-image pairs)."""
        return bool(self.records) and all(r.source for r in self.records)


def find_records(data_dir: str | Path, folder_label: str | None = None) -> Datalist:
    """Records from a folder (searched recursively), a ``.csv``/``.json`` datalist, or ``demo:mri|ct|xray``.

    Args:
        data_dir: The folder, datalist file or ``demo:`` name.
        folder_label: With a folder: a text condition of this name whose value is each image's first subfolder
            (``data_dir/a/x.nii.gz`` -> ``a``), coded in sorted order, e.g. ``domain`` for unpaired translation
            from ``a/`` and ``b/``, or class labels from one folder per class.

    Raises:
        InputError: The path is missing, the folder holds no image, a datalist row is invalid, or ``folder_label``
            is given with a datalist, names a reserved column, or an image lies outside every subfolder.
    """
    if str(data_dir).startswith("demo:"):
        from medgen.demo_data import demo_folder

        data_dir = demo_folder(str(data_dir)[5:])
    path = Path(data_dir)
    if not path.exists():
        raise InputError(path, "data_dir does not exist (expected a folder of images or a CSV/JSON datalist)")
    if path.is_file():
        if folder_label is not None:
            raise InputError("data.folder_label", f"expected a folder data_dir; {path} is a datalist (use a column)")
        if path.suffix.lower() == ".csv":
            return _from_rows(path, _read_csv(path))
        if path.suffix.lower() == ".json":
            return _from_rows(path, _read_json(path))
        raise InputError(path, "data_dir must be a folder, a .csv or a .json datalist")
    if folder_label is None:
        return Datalist(_scan_folder(path), origin=str(path))
    return _label_by_folder(path, _scan_folder(path), folder_label)


def _label_by_folder(folder: Path, records: list[ImageRecord], label: str) -> Datalist:
    """Give each record the condition ``label`` = its first subfolder below ``folder`` (text, sorted codes)."""
    if label in RESERVED_COLUMNS:
        raise InputError("data.folder_label", f"expected a condition name other than {', '.join(RESERVED_COLUMNS)}")
    values = []
    for record in records:
        parts = Path(record.image).relative_to(folder).parts
        if len(parts) < 2:
            raise InputError(
                record.image,
                f"data.folder_label '{label}' takes each image's subfolder of {folder} as its value; "
                "this image is in no subfolder",
            )
        values.append(parts[0])
    vocab = sorted(set(values))
    for record, value in zip(records, values, strict=True):
        record.conditions[label] = float(vocab.index(value))
    return Datalist(records, {label: vocab}, str(folder))


def _scan_folder(folder: Path) -> list[ImageRecord]:
    images: list[Path] = []
    masks: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if _hidden(p, folder) or not p.is_file():
            continue
        suffix = suffix_of(p)
        if suffix not in SUFFIXES or SUFFIXES[suffix] == "dicom":
            continue
        stem = p.name[: -len(suffix)]
        if _MASK_SUFFIX.search(stem):
            masks[str(p.parent / _MASK_SUFFIX.sub("", stem))] = p
        else:
            images.append(p)
    images += _dicom_images(folder)
    if not images:
        known = ", ".join(sorted(SUFFIXES))
        raise InputError(folder, f"no readable images found in folder (looked for {known} and DICOM series folders)")
    records = []
    for img in sorted(set(images)):
        stem = img.name[: -len(suffix_of(img))] if img.is_file() and suffix_of(img) else img.name
        rel = img.relative_to(folder)
        subject = str(rel.parent / stem) if img != folder else img.name
        mask = masks.get(str(img.parent / stem))
        records.append(ImageRecord(image=str(img), subject=subject, mask=str(mask) if mask else None))
    return records


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _dicom_images(folder: Path) -> list[Path]:
    """DICOM inputs below ``folder``.

    A folder holding one multi-file series counts as one image; any other DICOM file (single X-rays,
    mixed folders) is an image of its own.
    """
    out: list[Path] = []
    for d in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir() and not _hidden(p, folder))]:
        files = sorted(f for f in d.iterdir() if f.is_file() and _is_dicom_file(f))
        if len(files) > 1 and len(_series_uids(files)) == 1:
            out.append(d)
        else:
            out += files
    return out


def _is_dicom_file(path: Path) -> bool:
    suffix = suffix_of(path)
    if suffix in (".dcm", ".dicom"):
        return True
    return suffix == "" and looks_like_dicom(path)


def _series_uids(files: list[Path]) -> set[str]:
    import pydicom

    uids = set()
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
            uids.add(str(ds.get("SeriesInstanceUID", f)))
        except Exception:  # unreadable files are reported when they are loaded
            uids.add(str(f))
    return uids


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if rows and "image" not in rows[0]:
        raise InputError(path, f"datalist has no 'image' column (columns: {', '.join(rows[0])})")
    return rows


def _read_json(path: Path) -> list[dict[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(path, f"invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, dict):
        data = data.get("training", data.get("data"))
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise InputError(path, "expected a list of objects (or {'training': [...]}) with an 'image' key")
    return data


def _from_rows(path: Path, rows: list[dict[str, str]]) -> Datalist:
    if not rows:
        raise InputError(path, "datalist has no rows")
    columns = [c for c in rows[0] if c not in RESERVED_COLUMNS]
    vocab = {c: sorted({str(r[c]) for r in rows}) for c in columns if not all(_is_number(r.get(c)) for r in rows)}
    records = []
    for i, row in enumerate(rows, start=1):
        where = f"{path} row {i}"
        if not row.get("image"):
            raise InputError(where, "the 'image' value is empty")
        image = _resolve(path, row["image"], where, "image")
        mask = _resolve(path, row["mask"], where, "mask") if row.get("mask") else None
        source = None
        if "source" in row:
            if not row["source"]:
                raise InputError(where, "the 'source' value is empty (every pair needs its input image)")
            source = _resolve(path, row["source"], where, "source")
        conditions = {}
        for c in columns:
            value = row.get(c)
            if value is None or value == "":
                raise InputError(where, f"condition column '{c}' is empty")
            conditions[c] = float(vocab[c].index(str(value))) if c in vocab else float(value)  # type: ignore[arg-type]
        subject = str(row.get("subject") or Path(row["image"]).name.split(".")[0])
        records.append(ImageRecord(image=image, subject=subject, mask=mask, conditions=conditions, source=source))
    return Datalist(records, vocab, str(path))


def _resolve(datalist: Path, value: str, where: str, column: str) -> str:
    p = Path(value)
    p = p if p.is_absolute() else datalist.parent / p
    if not p.exists():
        raise InputError(where, f"{column} file '{value}' does not exist")
    return str(p)


def _is_number(value: object) -> bool:
    if isinstance(value, (int, float)):
        return True
    try:
        float(str(value))
    except ValueError:
        return False
    return True
