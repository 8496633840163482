"""``medgen inspect PATH [PATH ...]``: one JSON line per image."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``inspect`` sub-command."""
    p = sub.add_parser(
        "inspect",
        help="print format, shape, spacing, dtype, range and modality of images",
        description=(
            "Read each image (file, or DICOM series folder) the way training reads it and print one JSON "
            "object per line: path, format, shape (index order x, y[, z]), spacing (mm, same order; null when "
            "the file states none), dtype (as stored), min, max, modality (ct|mri|xray|unknown) and "
            "modality_source (header|guess). Unreadable files are reported on stderr, one line each; the "
            "exit code is then 2."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or DICOM series folders")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors (default: off)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Inspect every path; exit 2 if any could not be read."""
    from medgen.data.inspect import inspect_image  # heavy imports only when the command runs
    from medgen.errors import ImageReadError

    failed = 0
    for path in args.paths:
        try:
            info = inspect_image(path)
        except ImageReadError as exc:
            failed += 1
            print(f"medgen inspect: error: {exc}", file=sys.stderr)
            continue
        print(json.dumps(info.to_dict()), flush=True)
    return 2 if failed else 0
