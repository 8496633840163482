"""``medgen demo``: the shipped checkpoints shown off on embedded data, tied together in one ``index.html``.

An augmentation set from ``mri-brain-2d`` with its manifest; that model fine-tuned on a held-out subject;
evaluation of both against real slices; a memorization check with the held-out subject as the null; a volume
from ``mri-brain-3d-latent`` and its mid-slices; a T1 → T2 translation with ``mri-t1-to-t2-2d`` when it is
installed. The stages are in :mod:`medgen.demo`; a rerun into the same folder reuses the finished ones.
"""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``demo`` sub-command."""
    p = sub.add_parser(
        "demo",
        help="show the shipped checkpoints on embedded data in one HTML page",
        description="Generate an augmentation set from the shipped 2D brain model, fine-tune it on a held-out "
        "subject, evaluate both against real slices, check for memorized training slices, generate a 3D volume "
        "and translate one T1 image; write OUT/index.html linking every picture, report and manifest, and print "
        "its path. A rerun into the same folder reuses the finished stages; --quick is the test-sized run.",
    )
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--quick", action="store_true", help="test-sized run: fewer samples and steps (default: off)")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors (default: off)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo into ``args.out``."""
    from medgen.demo.run import run_demo  # heavy imports only when the command runs

    run_demo(args.out, quick=args.quick)
    return 0
