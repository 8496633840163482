"""``medgen export CKPT OUT_DIR``: config.yaml + model.safetensors + model_card.json."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``export`` sub-command."""
    p = sub.add_parser(
        "export",
        help="export a .ckpt as config.yaml + model.safetensors (EMA weights) + model_card.json",
        description=(
            "Write OUT_DIR/config.yaml (the model: section, usable with medgen fit --config), model.safetensors "
            "(EMA weights when the run kept them) and model_card.json (family, modality, spatial_dims, image "
            "size and spacing, conditions, training data, metrics, licence, sha256 of the weights). The folder "
            "loads with medgen generate --checkpoint OUT_DIR and medgen fit --pretrained.init_from OUT_DIR; put it "
            "under checkpoints/ (or a MEDGEN_CHECKPOINTS folder) to use it by name."
        ),
    )
    p.add_argument("checkpoint", metavar="CKPT", help="Lightning checkpoint written by medgen fit")
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder")
    p.add_argument("--name", default=None, help="model name in the card (default: the folder name)")
    p.add_argument("--licence", default="unspecified", help="licence of the weights (default: unspecified)")
    p.add_argument("--metrics", default=None, metavar="REPORT",
                   help="report.json of medgen evaluate whose metrics go into the card")  # fmt: skip
    p.add_argument("--raw-weights", action="store_true", help="export the raw training weights, not the EMA ones")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors (default: off)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export and print the card's sha256."""
    from medgen.errors import InputError
    from medgen.store.card import CARD_FILE
    from medgen.store.export import export_checkpoint

    metrics = None
    if args.metrics:
        try:
            metrics = json.loads(Path(args.metrics).read_text()).get("metrics")
        except (OSError, json.JSONDecodeError, AttributeError) as exc:
            raise InputError(args.metrics, f"not a readable report.json ({exc})") from None
    out = export_checkpoint(args.checkpoint, args.out_dir, args.name, not args.raw_weights, args.licence, metrics)
    card = json.loads((out / CARD_FILE).read_text())
    print(f"exported {card['name']} ({card['family']}, {card['spatial_dims']}D {card['modality']}) -> {out}\n"
          f"  sha256 {card['sha256']}", file=sys.stderr)  # fmt: skip
    return 0
