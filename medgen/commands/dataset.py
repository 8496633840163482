"""``medgen dataset --data.data_dir DIR [--data.* …]``: build the training data exactly as ``fit`` would.

Prints a summary (samples and subjects per split, modality, conditions, skipped files) and can save a
picture of a batch, so users see what the model will see before spending GPU hours.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import torch
from jsonargparse import ActionConfigFile, ArgumentParser

from medgen.data.datamodule import MedicalImageDataModule
from medgen.visualize import save_grid

HELP = "build the training data as `fit` would: summary, skipped files, preview grid"


def build_parser() -> ArgumentParser:
    """Jsonargparse parser sharing ``--data.*`` options with ``medgen fit``."""
    parser = ArgumentParser(
        prog="medgen dataset",
        description=(
            "Build MedicalImageDataModule from the same --data.* options (or --config YAML) that `medgen fit` "
            "takes, print a JSON summary of the train/val splits and optionally save a preview grid of one "
            "training batch (2D: the images; 3D: axial, coronal and sagittal mid-slices per volume)."
        ),
        exit_on_error=True,
    )
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with a `data:` section")
    parser.add_class_arguments(MedicalImageDataModule, "data")
    parser.add_argument("--grid", type=str | None, default=None, help="save a PNG of one training batch here")
    parser.add_argument("--debug", type=bool, default=False, help="show tracebacks on errors")
    return parser


def run(argv: Sequence[str]) -> int:
    """Parse ``argv``, build the data module and report."""
    parser = build_parser()
    cfg = parser.parse_args(list(argv))
    init = parser.instantiate(cfg)
    dm: MedicalImageDataModule = init.data
    dm.setup("fit")
    assert dm.train_set is not None
    summary = {
        "data_dir": dm.data_dir,
        "spatial_dims": dm.spatial_dims,
        "image_size": list(dm.image_size),
        "train_samples": len(dm.train_set),  # type: ignore[arg-type]
        "val_samples": 0 if dm.val_set is None else len(dm.val_set),  # type: ignore[arg-type]
        "train_subjects": len(dm.train_subjects),
        "val_subjects": 0 if dm.val_set is None else len({r.subject for r in dm.val_set.records}),  # type: ignore[attr-defined]
        "conditions": sorted(dm.datalist.records[0].conditions) if dm.datalist and dm.datalist.records else [],
        "condition_vocab": dm.condition_vocab,
        "skipped": [{"path": p, "problem": m} for p, m in dm.skipped],
    }
    print(json.dumps(summary, indent=2))
    if cfg.grid:
        batch = next(iter(dm.train_dataloader()))
        images: torch.Tensor = batch["image"][:16]
        print(f"preview grid: {save_grid(images, cfg.grid)}", file=sys.stderr)
    return 0
