"""``medgen evaluate --real SRC --fake SRC --out DIR``: distribution or paired metrics with a report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_UNPAIRED = "fid,kid,prdc,diversity"
DEFAULT_PAIRED = "ssim,ms_ssim,psnr,mae"


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
            "works on "
            "the stored intensities, clipped to --window when given; --data-range states their range."
        ),
    )
    p.add_argument("--real", required=True, metavar="SRC", help="folder of real images or a manifest.jsonl")
    p.add_argument("--fake", required=True, metavar="SRC", help="folder of generated images or a manifest.jsonl")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder for report.json and report.html")
    p.add_argument("--include-qc-failed", action="store_true",
                   help="also use generated samples that failed quality control (default: skipped; the manifest "
                        "marks them qc.passed false)")  # fmt: skip
    p.add_argument("--metrics", default=None, help="comma list (default: depends on --paired, see above)")
    p.add_argument("--paired", action="store_true", help="match files by name and compute paired metrics")
    p.add_argument("--mask", default=None, metavar="SRC", help="masks matched by name (paired metrics, SynthRAD)")
    p.add_argument("--data-range", type=float, default=None, help="value range of the stored intensities (paired)")
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
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors (default: off)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and write the report."""
    from medgen.evaluation.sources import list_source

    real, fake = list_source(args.real, args.include_qc_failed), list_source(args.fake, args.include_qc_failed)
    if args.paired:
        json_path, html_path = _paired(args, real, fake)
    else:
        from medgen.evaluation.unpaired import evaluate_unpaired

        json_path, html_path = evaluate_unpaired(args, real, fake)
    for line in headline(json.loads(Path(str(json_path)).read_text())["metrics"]):
        print(line)
    print(f"report: {json_path}\n        {html_path}", file=sys.stderr)
    return 0


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


def _paired(args: argparse.Namespace, real: list, fake: list) -> tuple[object, object]:
    from medgen.errors import InputError
    from medgen.evaluation.paired import evaluate_pairs
    from medgen.evaluation.report import Report, write_report
    from medgen.evaluation.sources import list_source, load_stack, pair_items

    pairs = pair_items(real, fake)
    masks = {m.key: m for m in list_source(args.mask)} if args.mask else None
    data_range = args.data_range
    if data_range is None and args.window is not None:
        data_range = args.window[1] - args.window[0]
    if data_range is None and args.protocol == "default":
        raise InputError(
            "--data-range",
            "required for paired metrics (the value range of the stored intensities), or give --window LO,HI",
        )
    metrics = [m.strip() for m in (args.metrics or DEFAULT_PAIRED).split(",") if m.strip()]
    result = evaluate_pairs(pairs, masks, metrics, data_range, args.window, args.protocol, args.bootstrap)
    protocol = {"mode": "paired", "protocol": args.protocol, "data_range": data_range, "window": args.window,
                "settings": result.settings, "bootstrap": args.bootstrap}  # fmt: skip
    warnings = (
        [f"{len(real) - len(pairs)} real and {len(fake) - len(pairs)} generated files have no partner"]
        if len(pairs) < max(len(real), len(fake))
        else []
    )
    report = Report(result.metrics, len(pairs), len(pairs), protocol, warnings, result.per_image)
    examples = pairs[:16]
    shown = None
    try:
        shown = (load_stack([r for r, _ in examples], args.window), load_stack([f for _, f in examples], args.window))
    except InputError:  # differently sized images: no picture
        pass
    value_range = args.window or ((float(shown[0].min()), float(shown[0].max())) if shown else (-1.0, 1.0))
    real_examples, fake_examples = shown if shown else (None, None)
    return write_report(report, args.out, real_examples, fake_examples, value_range=value_range)
