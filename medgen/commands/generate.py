"""``medgen generate --checkpoint CKPT --num-samples N --out DIR``: an augmentation set with a manifest."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medgen.generation.conditions import ConditionPlan
    from medgen.generation.job import LoadedGenerator

FORMATS = ("nifti", "mha", "nrrd", "npy", "png")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``generate`` sub-command."""
    p = sub.add_parser(
        "generate",
        help="generate an augmentation set (files + manifest.jsonl + generation.json) from a trained model",
        description=(
            "Draw N samples from a trained model into DIR, one file per sample (sample_000000.png, ...), each "
            "recorded in DIR/manifest.jsonl with its sha256, seed and conditions once the file is complete. "
            "Sample i is seeded from (--seed, i): rerunning the same command continues an interrupted run and "
            "never duplicates a sample, and on the CPU the files do not depend on --batch-size. Several GPUs: "
            "--devices N runs Lightning's Trainer.predict with DDP (one process per device; under torchrun or "
            "srun Lightning joins the processes they started); or start single-device processes yourself "
            "(torchrun/srun, RANK/WORLD_SIZE or SLURM_PROCID/SLURM_NTASKS). Process r takes indices r, r+world, "
            "... and the shard manifests are merged into manifest.jsonl when all are done."
        ),
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="CKPT",
        help="Lightning .ckpt, exported folder (medgen export) or registry name (medgen checkpoints list)",
    )
    p.add_argument("--num-samples", required=True, type=_positive, metavar="N", help="number of samples")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (rerun to resume)")
    p.add_argument("--seed", type=int, default=0, help="run seed (default: 0)")
    p.add_argument("--batch-size", type=_positive, default=8, help="samples per network call (default: 8)")
    p.add_argument(
        "--sampler",
        default=None,
        help="diffusion: diffusers scheduler or alias (ddpm, ddim, dpm++, euler, heun, unipc); "
        "flow: euler, heun, midpoint (default: the model's)",
    )
    p.add_argument("--steps", type=_positive, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default: the model's)")
    p.add_argument(
        "--condition",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="condition of every sample, repeatable: label=2, age=70, mask=path.nii.gz, image=path",
    )
    p.add_argument(
        "--conditions-csv",
        default=None,
        metavar="CSV",
        help="one row of conditions per sample (header = keys); N may not exceed the rows",
    )
    p.add_argument("--format", default=None, choices=FORMATS, help="output format (default: nifti for 3D, png for 2D)")
    p.add_argument(
        "--reference",
        default=None,
        metavar="IMAGE",
        help="take the output geometry from this image (default: the training grid's spacing)",
    )
    p.add_argument(
        "--max-retries",
        type=int,
        default=2,
        help="redraws of a sample failing quality control, with a new seed (default: 2); a sample still failing "
        "is kept and marked qc.passed false in the manifest, and evaluate/memorization skip it unless "
        "--include-qc-failed",
    )
    p.add_argument("--raw-weights", action="store_true", help="use the raw training weights, not the EMA ones")
    p.add_argument(
        "--memorization-index",
        default=None,
        metavar="DIR",
        help="memorization index (medgen memorization index): redraw samples that copy training images",
    )
    p.add_argument(
        "--device", default=None, help="one process: cpu, cuda, cuda:1, ... (default: cuda:LOCAL_RANK if available)"
    )
    p.add_argument(
        "--devices",
        type=_positive,
        default=1,
        help="devices per node for Lightning Trainer.predict with DDP, one process each (default: 1 = no Lightning)",
    )
    p.add_argument("--num-nodes", type=_positive, default=1, help="nodes for --devices (default: 1)")
    p.add_argument(
        "--accelerator", default="auto", choices=("auto", "cpu", "gpu", "cuda"), help="with --devices (default: auto)"
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors (default: off)")
    p.set_defaults(func=run)  # fmt: skip


def _shard() -> tuple[int, int]:
    """(rank, world size) from torchrun or SLURM variables; (0, 1) when run alone."""
    for rank_key, world_key in (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
        if rank_key in os.environ and world_key in os.environ:
            return int(os.environ[rank_key]), int(os.environ[world_key])
    return 0, 1


def run(args: argparse.Namespace) -> int:
    """Load the model and generate the missing samples."""
    from medgen.errors import InputError
    from medgen.generation.job import default_device, default_format, load_generator, summary_line
    from medgen.generation.run import GenerationJob, GenerationOptions, generate
    from medgen.generation.writers import OutputFormat

    loaded = load_generator(args.checkpoint, use_ema=not args.raw_weights)
    model = loaded.model
    try:
        plan = _plan(args, loaded)
    except InputError as error:  # the library names the parameter ("condition T"); the flag is --condition
        subject = error.subject
        if subject.startswith("condition"):
            subject = "--conditions-csv" if args.conditions_csv and subject == "conditions" else "--condition"
            raise InputError(subject, f"{error.subject}: {error.problem}") from None
        raise
    fmt: OutputFormat = args.format or default_format(model.spatial_dims)
    if fmt == "png" and model.spatial_dims == 3:
        raise InputError("--format", "png is for 2D samples; use nifti, mha, nrrd or npy for volumes")
    rank, world = _shard()
    opts = GenerationOptions(
        num_samples=args.num_samples, out_dir=Path(args.out), seed=args.seed, batch_size=args.batch_size,
        sampler=args.sampler, steps=args.steps, guidance=args.guidance, fmt=fmt, reference=args.reference,
        max_retries=max(0, args.max_retries), rank=rank, world_size=world, checkpoint=loaded.checkpoint,
        checkpoint_sha256=loaded.sha256, weights="raw" if args.raw_weights else "ema",
        command=["medgen", *sys.argv[1:]],
    )  # fmt: skip
    gate = None
    if args.memorization_index:
        from medgen.generation.gate import MemorizationGate

        gate = MemorizationGate.load(args.memorization_index)
    job = GenerationJob(model, loaded.card, opts, plan, gate)
    if args.devices * args.num_nodes > 1:
        from medgen.generation.predict import generate_with_trainer

        summary, rank = generate_with_trainer(job, args.accelerator, args.devices, args.num_nodes)
        world = args.devices * args.num_nodes
    else:
        summary = generate(job, default_device(args.device))
    state = "complete" if summary.merged else f"shard {rank}/{world} done"
    print(summary_line(summary, args.out, state), file=sys.stderr)
    return 0


def _plan(args: argparse.Namespace, loaded: LoadedGenerator) -> ConditionPlan:
    """The conditions of every sample index, from ``--conditions-csv`` rows and ``--condition`` pairs."""
    from medgen.errors import InputError
    from medgen.generation.conditions import make_plan, parse_pairs, read_sweep

    rows = read_sweep(args.conditions_csv) if args.conditions_csv else []
    given = parse_pairs(args.condition)
    rows = [{**r, **given} for r in rows] if rows else ([given] if given else [])
    if args.conditions_csv and args.num_samples > len(rows):
        raise InputError(args.conditions_csv, f"has {len(rows)} rows but --num-samples is {args.num_samples}")
    return make_plan(loaded.model.net, loaded.card.vocab, rows, loaded.card.raw)
