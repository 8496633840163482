"""``medgen memorization``: find generated samples that copy training images; train embedders; build indexes.

Forms::

    medgen memorization --train SRC --generated SRC --out DIR [--holdout SRC] [--embedder NAME|PATH] ...
    medgen memorization train-embedder --train SRC [--train SRC ...] --out FILE [--steps N]
    medgen memorization index --train SRC --out DIR [--holdout SRC] [--embedder NAME|PATH] [--quantile Q]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from pathlib import Path
from typing import Any

from medgen.commands.evaluate import add_device_options, devices, positive_int
from medgen.errors import InputError

EMBEDDER_HELP = "structural (default; shipped weights), pixel, inception, or a .safetensors file from train-embedder"


def _quantile(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got '{text}'") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got '{text}'")
    return value


def _calibration_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--holdout", default=None, metavar="SRC",
                   help="real images NOT in the training set, for the null distribution (default: hold out 20 %% "
                        "of the training subjects)")  # fmt: skip
    p.add_argument("--embedder", default="structural", metavar="NAME|PATH", help=EMBEDDER_HELP)
    p.add_argument("--quantile", type=_quantile, default=0.99,
                   help="flag above this quantile of the held-out null similarities (default: 0.99)")  # fmt: skip


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``memorization`` command and its ``train-embedder`` / ``index`` actions."""
    p = sub.add_parser(
        "memorization",
        help="find generated samples that copy training images (report.json + report.html)",
        description=(
            "Retrieve each generated sample's top-k training images by exact embedding search (a structural "
            "embedding trained on SSIM targets, united with a foreground-cropped pixel descriptor), align the "
            "sample to each candidate in pixel space (flip, rotation, scale, shift) and flag it when the verified "
            "score is above the chosen quantile of the held-out null run through the same two stages; write "
            "DIR/report.json and DIR/report.html. --no-verify: the embedding decides. Actions: train-embedder, "
            "index."
        ),
    )
    p.add_argument("--train", default=None, metavar="SRC", help="training images: folder, CSV/JSON datalist, demo:KIND")
    p.add_argument("--generated", default=None, metavar="SRC", help="generated images: folder or manifest.jsonl")
    p.add_argument("--include-qc-failed", action="store_true",
                   help="also check generated samples that failed quality control (default: skipped; the "
                        "manifest marks them qc.passed false)")  # fmt: skip
    p.add_argument("--out", default=None, metavar="DIR", help="output folder for report.json and report.html")
    p.add_argument("--index", default=None, metavar="DIR", help="use a prebuilt index instead of --train")
    p.add_argument("--top-k", type=positive_int, default=None,
                   help="training candidates retrieved and verified per sample (default: 20; 5 with "
                        "--no-verify)")  # fmt: skip
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="decide on the embedding similarity alone, without pixel verification (faster at very "
                        "large N; flagged samples are still confirmed)")  # fmt: skip
    _calibration_options(p)
    add_device_options(p, "embedding passes")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors (default: off)")
    p.set_defaults(func=run, action=None)
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    t = actions.add_parser("train-embedder", help="train a structural embedder on your training set",
                           description="Train the DeepSSIM-style structural embedder (CPU: minutes) and write "
                                       "FILE.safetensors and FILE.json (spec with sha256).")  # fmt: skip
    t.add_argument("--train", required=True, action="append", metavar="SRC", help="training images (repeatable)")
    t.add_argument("--out", required=True, metavar="FILE", help="weights file to write (.safetensors)")
    t.add_argument("--steps", type=positive_int, default=800, help="optimiser steps (default: 800)")
    t.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    t.add_argument("--debug", action="store_true", help="show tracebacks on errors (default: off)")
    i = actions.add_parser("index", help="build a reusable index (for medgen generate --memorization-index)",
                           description="Embed the training set, calibrate the threshold and write the index "
                                       "folder DIR.")  # fmt: skip
    i.add_argument("--train", required=True, metavar="SRC", help="training images: folder, datalist, demo:KIND")
    i.add_argument("--out", required=True, metavar="DIR", help="index folder to write")
    _calibration_options(i)
    i.add_argument("--no-verify", dest="verify", action="store_false",
                   help="calibrate the embedding threshold only (no two-stage decision)")  # fmt: skip
    add_device_options(i, "embedding passes")
    i.add_argument("--debug", action="store_true", help="show tracebacks on errors (default: off)")


def run(args: argparse.Namespace) -> int:
    """Dispatch on the action (embedding passes sharded over ``--devices`` processes)."""
    if args.action == "train-embedder":
        return _train_embedder(args)
    from medgen.evaluation.distributed import distributed

    with distributed(devices(args)) as rank, _rank_output(args, rank):
        return _index(args) if args.action == "index" else _detect(args)


@contextmanager
def _rank_output(args: argparse.Namespace, rank: int) -> Iterator[None]:
    """Rank 0 writes ``--out`` and prints; other ranks (``--devices``) write into a scratch folder, print nothing.

    Every rank runs the whole pipeline, because each embedding pass is sharded over all of them (they meet in
    every pass); the search, verification and calibration after it are repeated on every rank.
    """
    if rank == 0:
        yield
        return
    with tempfile.TemporaryDirectory() as scratch, redirect_stderr(io.StringIO()):
        if args.out is not None:  # rank 0 reports a missing --out
            args.out = str(Path(scratch) / "out")
        yield


def _index(args: argparse.Namespace) -> int:
    from medgen.memorization.index import build_index

    index = build_index(args.train, args.out, args.embedder, args.holdout, args.quantile, verify=args.verify)
    verified = f", verified threshold {index.verification.threshold:.4f}" if index.verification else ""
    print(f"index: {args.out} (threshold {index.threshold:.4f}{verified}, {index.train.count} training images)",
          file=sys.stderr)  # fmt: skip
    _warn(index.calibration.notes + (index.verification.notes if index.verification else []))
    return 0


#: The library's parameter names → this command's flags, for error messages.
FLAGS = {"top_k": "--top-k", "generated": "--generated", "index_dir": "--index"}


def _detect(args: argparse.Namespace) -> int:
    from medgen.memorization.detect import detect_memorization

    if args.train is None and args.index is None:
        raise InputError("--train", "required (training images), or give --index DIR")
    for option in ("generated", "out"):
        if getattr(args, option) is None:
            raise InputError(f"--{option}", "required")
    try:
        report = detect_memorization(
            args.train, args.generated, args.out, args.holdout, args.embedder, args.quantile, args.top_k,
            args.index, args.verify, args.include_qc_failed,
        )  # fmt: skip
    except InputError as error:
        if error.subject in FLAGS:  # the library names its parameter; the user gave the flag
            raise InputError(FLAGS[error.subject], error.problem.replace("verify=False", "--no-verify")) from error
        raise
    print_summary(report, args.out)
    return 0


def print_summary(report: dict[str, Any], out: str | Path) -> None:
    """Print a detection report's calibration notes and how many samples it flagged (stderr)."""
    _warn(report["calibration"]["notes"] + ((report.get("verification") or {}).get("notes") or []))
    print(
        f"flagged {report['n_flagged']} of {report['n_generated']} ({_decision(report)}); "
        f"report: {Path(out) / 'report.json'}\n        {Path(out) / 'report.html'}",
        file=sys.stderr,
    )


def _decision(report: dict) -> str:
    if report.get("verification"):
        from medgen.memorization.verified import MIN_VERIFIED_SCORE

        return f"verified margin > {report['verification']['threshold']:.4f} and verified score > {MIN_VERIFIED_SCORE}"
    return f"embedding similarity > {report['threshold']:.4f}"


def _warn(notes: list[str]) -> None:
    """Print each calibration note once (the embedding and verified calibrations can share one)."""
    for note in dict.fromkeys(notes):
        print(f"warning: {note}", file=sys.stderr)


def _train_embedder(args: argparse.Namespace) -> int:
    from medgen.memorization.sources import list_items
    from medgen.memorization.train import TrainConfig, save_embedder, train_structural, training_images

    paths = [item.path for source in args.train for item in list_items(source, "--train")]
    config = TrainConfig(steps=args.steps, seed=args.seed)
    images, groups = training_images(paths, config.size)
    result = train_structural(images, config, groups)
    data = f"{', '.join(args.train)} ({len(paths)} files, {images.shape[0]} 2D images)"
    embedder = save_embedder(result, args.out, data, config)
    print(f"embedder: {embedder.spec.path} (sha256 {embedder.spec.sha256})", file=sys.stderr)
    return 0
