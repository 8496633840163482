"""``medgen encode --checkpoint AE --data.* --out DIR``: cache the latents of every training image once.

A latent model then trains from ``DIR`` with ``--data.latents_dir DIR`` and the same ``--data.*`` options, without
running the autoencoder each step (:mod:`medgen.data.latents`; the work is :mod:`medgen.generation.encode`).
``--config`` takes a ``medgen fit`` config (its ``data:`` section is used) or a YAML of data options only.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import yaml
from jsonargparse import ArgumentParser

from medgen.data.datamodule import MedicalImageDataModule
from medgen.errors import InputError

HELP = "encode every training image once with an autoencoder (cached latents for latent models)"
#: Top-level sections of a ``medgen fit`` config; a file with some of them and no ``data:`` adds no data options.
FIT_SECTIONS = frozenset(
    {"trainer", "model", "pretrained", "seed_everything", "ckpt_path", "optimizer", "lr_scheduler"}
)
#: Data options of the training side only: a config's ``latents_dir`` names where training reads, not what to encode.
TRAINING_ONLY = ("latents_dir", "latent_draw")


def build_parser() -> ArgumentParser:
    """Jsonargparse parser sharing ``--data.*`` options with ``medgen fit``."""
    parser = ArgumentParser(
        prog="medgen encode",
        description=(
            "Encode the training and validation samples that --data.* (or the data: section of a medgen fit "
            "--config) defines with the autoencoder of --checkpoint, one safetensors file per sample with the "
            "posterior mean and std (or one sampled latent), and DIR/latents.json: source files with their "
            "sha256, the checkpoint's and the weights' sha256, the data options, the latent shape and the scale "
            "factor. Rerunning the command finishes an interrupted run. Train a latent model from DIR with the "
            "same data options and --data.latents_dir DIR."
        ),
        exit_on_error=True,
    )
    parser.add_argument("--checkpoint", type=str, required=True, help="autoencoder (or latent model): .ckpt, export")
    parser.add_argument("--out", type=str, required=True, help="output folder (resumable)")
    parser.add_argument(  # listed for --help: run() turns each --config into --data before parsing
        "--config", type=str | None, default=None, help="medgen fit config (its data: section) or data options YAML"
    )
    parser.add_class_arguments(MedicalImageDataModule, "data")
    parser.add_argument(
        "--store", type=Literal["posterior", "sample"], default="posterior",
        help="posterior: mean and std (data.latent_draw may draw per epoch); sample: one latent drawn with --seed",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of --store sample")
    parser.add_argument(
        "--window", type=int, default=128, help="encode images with a side above this in tiles of this side (0: never)"
    )
    parser.add_argument("--device", type=str | None, default=None, help="cpu, cuda, cuda:1 (default: cuda if any)")
    return parser


def data_config(argv: Sequence[str]) -> list[str]:
    """``argv`` with each ``--config FILE`` replaced by ``--data JSON`` of the file's ``data:`` section.

    Files compose in order like ``medgen fit``'s (a full-size config, then its smoke twin); a file of fit sections
    without ``data:`` (a trainer preset) adds nothing, a file of bare data options adds them all; ``latents_dir`` and
    ``latent_draw`` (training-side options) are dropped.

    Raises:
        InputError: The file cannot be read or holds no mapping.
    """
    out, args = [], list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--config" or arg.startswith("--config="):
            path = Path(arg.split("=", 1)[1] if "=" in arg else (args.pop(0) if args else ""))
            try:
                content = yaml.safe_load(path.read_text())
            except (OSError, yaml.YAMLError) as exc:
                raise InputError(path, f"cannot be read as YAML ({exc})") from None
            if not isinstance(content, dict):
                raise InputError(path, "expected a YAML mapping (a medgen fit config or data options)")
            if "data" in content or not FIT_SECTIONS.intersection(content):
                section = {k: v for k, v in (content.get("data", content) or {}).items() if k not in TRAINING_ONLY}
                out += ["--data", json.dumps(section)]
        else:
            out.append(arg)
    return out


def run(argv: Sequence[str]) -> int:
    """Parse ``argv``, load the autoencoder, build the data module and encode."""
    from medgen.generation.encode import EncodeOptions, encode_data
    from medgen.generation.job import default_device
    from medgen.store.load import load_model

    parser = build_parser()
    cfg = parser.parse_args(data_config(argv))
    if cfg.window < 0:
        raise InputError("--window", f"expected 0 or a positive number of voxels, got {cfg.window}")
    dm: MedicalImageDataModule = parser.instantiate(cfg).data
    loaded = load_model(cfg.checkpoint)
    opts = EncodeOptions(Path(cfg.out), cfg.store, cfg.seed, cfg.window)
    summary = encode_data(dm, loaded, cfg.checkpoint, opts, default_device(cfg.device))
    counts = ", ".join(f"{n} {split}" for split, n in summary.counts.items())
    print(f"encoded {counts} samples ({summary.reused} already there) -> {summary.manifest}", file=sys.stderr)
    return 0
