"""``medgen evaluate --real SRC --fake SRC --out DIR``: distribution or paired metrics with a report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medgen.errors import InputError

if TYPE_CHECKING:
    from medgen.evaluation.distributed import Devices
    from medgen.evaluation.paired import PairedOptions
    from medgen.evaluation.unpaired import UnpairedOptions

DEFAULT_UNPAIRED = "fid,kid,prdc,diversity"
DEFAULT_PAIRED = "ssim,ms_ssim,psnr,mae"
#: The library's parameter names → this command's flags, for error messages.
FLAGS = {"metrics": "--metrics", "window": "--window", "extractor": "--extractor", "data_range": "--data-range",
         "protocol": "--protocol", "masks": "--mask", "bootstrap": "--bootstrap", "seed": "--seed",
         "normalize_real": "--normalize-real"}  # fmt: skip


def _range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (two numbers), got '{text}'") from None
    if not lo < hi:
        raise argparse.ArgumentTypeError(f"expected LO < HI, got '{text}'")
    return lo, hi


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``evaluate`` sub-command."""
    p = sub.add_parser(
        "evaluate",
        help="FID/KID/PRDC/diversity of generated vs real sets, or paired SSIM/MS-SSIM/PSNR/MAE; JSON + HTML report",
        description=(
            "Compare generated images with real ones and write DIR/report.json and DIR/report.html. Unpaired "
            f"sets (default metrics {DEFAULT_UNPAIRED}) use features of --extractor on intensities mapped to "
            "[-1, 1] by --window (else the modality's training preset), with a real-vs-real split-half baseline "
            "and 95 % CIs (unpaired: subsamples of half the images or 3D volumes, without replacement; paired: a "
            f"bootstrap of the per-pair mean). --paired matches files by name (default metrics {DEFAULT_PAIRED}) and "
            "works on the stored intensities, clipped to --window when given; --data-range states their range. "
            "medgen translate/generate write MRI and X-ray outputs in the model's [-1, 1] (the per-image percentile "
            "scaling is not inverted): --normalize-real MODALITY maps each real image to [-1, 1] as training maps "
            "targets and compares there (data range 2). --real may be a paired datalist (its image column = the "
            "targets, which translate's outputs are named after)."
        ),
    )
    p.add_argument("--real", required=True, metavar="SRC",
                   help="folder of real images, a datalist (its image column; a paired datalist's targets), demo:NAME "
                        "or a manifest.jsonl")  # fmt: skip
    p.add_argument("--fake", required=True, metavar="SRC", help="folder of generated images or a manifest.jsonl")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder for report.json and report.html")
    p.add_argument("--include-qc-failed", action="store_true",
                   help="also use generated samples that failed quality control (default: skipped; the manifest "
                        "marks them qc.passed false)")  # fmt: skip
    p.add_argument("--metrics", default=None, help="comma list (default: depends on --paired, see above)")
    p.add_argument("--paired", action="store_true", help="match files by name and compute paired metrics")
    p.add_argument("--mask", default=None, metavar="SRC", help="masks matched by name (paired metrics, SynthRAD)")
    p.add_argument("--data-range", type=float, default=None, help="value range of the stored intensities (paired)")
    p.add_argument("--normalize-real", default=None, metavar="MODALITY",
                   help="paired: map each real image to the model's [-1, 1] by the training preset of MODALITY (mri, "
                        "xray: percentiles 0.5/99.5 of each image; ct: the HU window, --window LO,HI or full) and read "
                        "the generated images back into [-1, 1] as medgen writes them; auto: the modality in --fake's "
                        "manifest.jsonl. Use it on medgen translate/generate outputs (default: off)")  # fmt: skip
    p.add_argument("--window", type=_range, default=None, metavar="LO,HI", help="clip intensities to [LO, HI] first")
    p.add_argument("--protocol", default="default", choices=("default", "synthrad2023", "synthrad2025"),
                   help="paired-metric definitions (default: default)")  # fmt: skip
    p.add_argument(
        "--extractor", default="inception", help="feature extractor for unpaired metrics (default: inception)"
    )
    p.add_argument(
        "--weights", default=None, help="weights file of the extractor (default: installed/MEDGEN_WEIGHTS_DIR)"
    )
    p.add_argument("--bootstrap", type=int, default=200, help="resamples for the 95%% CIs (default: 200; 0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of baselines and bootstraps (default: 0)")
    add_device_options(p, "unpaired feature extraction")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors (default: off)")
    p.set_defaults(func=run)


def positive_int(text: str) -> int:
    """Argparse type: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return value


def add_device_options(p: argparse.ArgumentParser, what: str) -> None:
    """``--devices``, ``--num-nodes`` and ``--accelerator`` of a command whose ``what`` is sharded (Fabric DDP)."""
    p.add_argument("--devices", type=positive_int, default=1,
                   help=f"devices per node sharing the {what}, one process each, started by Lightning (DDP; under "
                        "torchrun or srun Lightning joins the processes they started); the result equals one "
                        "process's (default: 1 = no Lightning)")  # fmt: skip
    p.add_argument("--num-nodes", type=positive_int, default=1, help="nodes for --devices (default: 1)")
    p.add_argument("--accelerator", default="auto", choices=("auto", "cpu", "gpu", "cuda"),
                   help="with --devices (default: auto)")  # fmt: skip


def devices(args: argparse.Namespace) -> Devices:
    """The :class:`~medgen.evaluation.distributed.Devices` of ``--devices``/``--num-nodes``/``--accelerator``."""
    from medgen.evaluation.distributed import Devices

    return Devices(args.accelerator, args.devices, args.num_nodes)


def run(args: argparse.Namespace) -> int:
    """Evaluate and write the report (unpaired features sharded over ``--devices`` processes, report on rank 0)."""
    from medgen.evaluation.distributed import distributed
    from medgen.evaluation.sources import list_source

    real, fake = list_source(args.real, args.include_qc_failed), list_source(args.fake, args.include_qc_failed)
    if args.paired and args.devices * args.num_nodes > 1:
        raise InputError("--devices", "shards the unpaired feature pass; paired metrics run in one process")
    try:
        if args.paired:
            from medgen.evaluation.paired import evaluate_paired

            json_path, html_path = evaluate_paired(real, fake, paired_options(args))
        else:
            from medgen.evaluation.unpaired import unpaired_features, write_unpaired

            options = unpaired_options(args)
            with distributed(devices(args)) as rank:
                features = unpaired_features(real, fake, options)
            if rank != 0:
                return 0
            json_path, html_path = write_unpaired(features, real, fake, options)
    except InputError as error:
        flagged = with_flags(error)
        if flagged is error:
            raise
        raise flagged from error
    print_report(json_path, html_path)
    return 0


def unpaired_options(args: argparse.Namespace) -> UnpairedOptions:
    """The :class:`~medgen.evaluation.unpaired.UnpairedOptions` of ``medgen evaluate`` without ``--paired``."""
    from medgen.evaluation.unpaired import UnpairedOptions

    return UnpairedOptions(
        out=args.out, metrics=_names(args.metrics or DEFAULT_UNPAIRED), window=args.window, extractor=args.extractor,
        weights=args.weights, bootstrap=args.bootstrap, seed=args.seed,
    )  # fmt: skip


def paired_options(args: argparse.Namespace) -> PairedOptions:
    """The :class:`~medgen.evaluation.paired.PairedOptions` of ``medgen evaluate --paired``."""
    from medgen.evaluation.paired import PairedOptions

    return PairedOptions(
        out=args.out, metrics=_names(args.metrics or DEFAULT_PAIRED), data_range=args.data_range, window=args.window,
        protocol=args.protocol, masks=args.mask, bootstrap=args.bootstrap, normalize_real=args.normalize_real,
    )  # fmt: skip


def with_flags(error: InputError) -> InputError:
    """``error`` naming this command's flags where the library named its parameters (``error`` itself if none).

    The subject ``window`` becomes ``--window``, and the library's spellings of options inside the message
    (``window=(LO, HI)``) become the flags' (``--window LO,HI``).
    """
    from medgen.evaluation.paired import WINDOW_HINT
    from medgen.evaluation.unpaired import PAIRED_HINT

    phrases = {WINDOW_HINT: "--window LO,HI", PAIRED_HINT: "paired ones need --paired",
               "the units of window ": "the units of --window "}  # fmt: skip
    subject = FLAGS.get(error.subject, error.subject)
    problem = error.problem
    for phrase, flag in phrases.items():
        problem = problem.replace(phrase, flag)
    if subject == error.subject and problem == error.problem:
        return error
    return InputError(subject, problem)


def print_report(json_path: str | Path, html_path: str | Path) -> None:
    """Print the headline metrics of a written report (stdout) and where it is (stderr)."""
    for line in headline(json.loads(Path(json_path).read_text())["metrics"]):
        print(line)
    print(f"report: {json_path}\n        {html_path}", file=sys.stderr)


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def headline(metrics: dict[str, Any]) -> list[str]:
    """One line per metric of a ``report.json``: value, 95% CI and the real-vs-real baseline where defined.

    Example: ``fid: 12.34 (95% CI 10.1 to 14.6; real-vs-real baseline 3.21)``.
    """
    lines = []
    for name, metric in metrics.items():
        if not isinstance(metric, dict) or not isinstance(metric.get("value"), (int, float)):
            continue
        notes = []
        if isinstance(metric.get("ci95"), (list, tuple)) and len(metric["ci95"]) == 2:
            notes.append(f"95% CI {metric['ci95'][0]:.4g} to {metric['ci95'][1]:.4g}")
        base = metric.get("baseline")
        base = base.get("value") if isinstance(base, dict) else base
        if isinstance(base, (int, float)):
            notes.append(f"real-vs-real baseline {base:.4g}")
        lines.append(f"{name}: {metric['value']:.4g}" + (f" ({'; '.join(notes)})" if notes else ""))
    return lines
