"""``medgen export CKPT OUT_DIR``: config.yaml + model.safetensors + model_card.json."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

#: medgen.weights.WEIGHTS_DTYPES, spelled out: the parser is built without importing torch.
WEIGHTS_DTYPES = ("float32", "float16", "bfloat16")


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
    p.add_argument("checkpoint", metavar="CKPT",
                   help="Lightning checkpoint written by medgen fit (with --format monai-bundle: also an exported "
                        "folder or registry name)")  # fmt: skip
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder")
    p.add_argument("--name", default=None, help="model name in the card (default: the folder name)")
    p.add_argument("--licence", default="unspecified", help="licence of the weights (default: unspecified)")
    p.add_argument("--metrics", default=None, metavar="REPORT",
                   help="report.json of medgen evaluate whose metrics go into the card")  # fmt: skip
    p.add_argument("--raw-weights", action="store_true", help="export the raw training weights, not the EMA ones")
    p.add_argument("--dtype", choices=WEIGHTS_DTYPES, default="float32",
                   help="storage type of model.safetensors: float16 halves the folder; loading upcasts to float32 "
                        "(default: float32)")  # fmt: skip
    p.add_argument("--card-extra", default=None, metavar="JSON",
                   help="JSON file of further card fields, e.g. training (command, wall_time_s, machine), "
                        "data_sources (name, licence, role), evaluation (metrics with baselines); fields medgen "
                        "computes are refused")  # fmt: skip
    p.add_argument(
        "--format", choices=("medgen", "monai-bundle"), default="medgen",
        help="medgen (default): the folder above; monai-bundle: a MONAI bundle (configs/inference.json, "
        "configs/metadata.json, models/model.pt) that monai.bundle loads and samples without medgen, for "
        "unconditional pixel-space diffusion models sampled with DDIM or full DDPM (others are refused, naming why)",
    )  # fmt: skip
    p.add_argument("--sampler", default="ddim", choices=("ddim", "ddpm"),
                   help="monai-bundle: the MONAI scheduler written into the bundle (default: ddim)")  # fmt: skip
    p.add_argument("--steps", type=int, default=None,
                   help="monai-bundle: sampling steps (default: the model's)")  # fmt: skip
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
    if args.format == "monai-bundle":
        return _monai_bundle(args)
    extra = _card_extra(args.card_extra) if args.card_extra else None
    out = export_checkpoint(args.checkpoint, args.out_dir, args.name, not args.raw_weights, args.licence, metrics,
                            args.dtype, extra)  # fmt: skip
    card = json.loads((out / CARD_FILE).read_text())
    print(f"exported {card['name']} ({card['family']}, {card['spatial_dims']}D {card['modality']}, "
          f"{card['weights_dtype']} weights) -> {out}\n  sha256 {card['sha256']}", file=sys.stderr)  # fmt: skip
    return 0


def _card_extra(path: str) -> dict[str, object]:
    """The JSON object of ``--card-extra``."""
    from medgen.errors import InputError

    try:
        extra = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(path, f"not a readable JSON file ({exc})") from None
    if not isinstance(extra, dict):
        raise InputError(path, "expected a JSON object of card fields")
    return extra


def _monai_bundle(args: argparse.Namespace) -> int:
    """Write the model as a MONAI bundle (see :mod:`medgen.interop.monai_bundle`)."""
    from medgen.errors import InputError
    from medgen.interop.monai_bundle import write_monai_bundle
    from medgen.models.diffusion import DiffusionModel
    from medgen.store.load import load_model

    loaded = load_model(args.checkpoint, use_ema=not args.raw_weights)
    model = loaded.model
    if not isinstance(model, DiffusionModel) or model.image_size is None:
        raise InputError(
            args.checkpoint, f"is a {loaded.card.family} model: only pixel-space diffusion maps to a MONAI bundle"
        )
    sampling = {"sampler": args.sampler, "num_steps": args.steps or model.sampling.num_steps}
    name = args.name or Path(args.out_dir).resolve().name
    description = (
        f"medgen {loaded.card.family} model {loaded.source.name} ({loaded.card.modality}), sha256 {loaded.sha256}"
    )
    out = write_monai_bundle(
        model.net, model.objective.scheduler_config, model.image_size, sampling, args.out_dir, name, description,
        family=model.family,
    )  # fmt: skip
    print(f"exported {name} as a MONAI bundle -> {out} (load with monai.bundle.ConfigParser: configs/inference.json)",
          file=sys.stderr)  # fmt: skip
    return 0
