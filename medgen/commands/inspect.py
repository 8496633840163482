"""``medgen inspect PATH [PATH ...]``: one JSON line per image."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``inspect`` sub-command."""
    p = sub.add_parser(
        "inspect",
        help="print format, shape, spacing, dtype, range and modality of images",
        description=(
            "Read each image (file, DICOM series folder, or every image of a folder) the way training reads "
            "it and print one JSON object per line: path, format, shape (index order x, y[, z]), spacing (mm, "
            "same order; null when "
            "the file states none), dtype (as stored), min, max, modality (ct|mri|xray|unknown) and "
            "modality_source (header|guess). Unreadable files are reported on stderr, one line each; the "
            "exit code is then 2."
        ),
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="image files, DICOM series folders or folders of images (each image is inspected)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors (default: off)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Inspect every path (each image of a folder that is not one DICOM series); exit 2 if any could not be read."""
    from medgen.data.inspect import inspect_image  # heavy imports only when the command runs
    from medgen.errors import InputError

    failed = 0
    for path in args.paths:
        try:
            images = _images(path)
        except InputError as exc:
            images, failed = [], failed + _report(exc)
        for image in images:
            try:
                print(json.dumps(inspect_image(image).to_dict()), flush=True)
            except InputError as exc:
                failed += _report(exc)
    return 2 if failed else 0


def _images(path: str) -> list[str]:
    """``path`` itself, or for a folder that is not one DICOM series, its images as training would find them."""
    from medgen.data.datalist import find_records
    from medgen.data.formats import is_dicom_dir

    folder = Path(path)
    if not folder.is_dir() or is_dicom_dir(folder):
        return [path]
    return [record.image for record in find_records(folder).records]


def _report(error: Exception) -> int:
    """Print one unreadable path's error line; returns 1 (one failure)."""
    print(f"medgen inspect: error: {error}", file=sys.stderr)
    return 1
