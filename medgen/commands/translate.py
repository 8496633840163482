"""``medgen translate --checkpoint CKPT --input SRC --out DIR``: image-to-image, one output per input file."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from medgen.commands.generate import FORMATS, _positive

#: The paragraphs of ``medgen translate --help`` (wrapped at 100 columns) and its examples (kept as lines).
_PARAGRAPHS = (
    "Translate every image of SRC with a trained model into DIR: one output per input file, named after it "
    "(ct_001.nii.gz -> DIR/ct_001.nii.gz), on the input's own grid (shape, spacing, origin, direction), in the "
    "units medgen generate writes (CT: HU; MRI/X-ray: the model's [-1, 1]; PNG: 8-bit over [-1, 1]). Each input "
    "is prepared as the training pairs' inputs were (the checkpoint's source_modality or modality, intensity "
    "preset, spacing, image size and resize mode). A 2D model given a 3D volume translates it slice by slice along "
    "the training slice axis (axial unless the checkpoint records another) and stacks the slices back. A model "
    "trained with resize_mode pad_crop covers larger inputs with overlapping windows.",
    "Models that translate: pix2pix and CycleGAN (--direction a2b or b2a), diffusion/flow models conditioned on "
    "an image (the input is the conditioning image; --steps, --method and --seed apply), and class-conditional "
    "flow models (MedShift-style class swap: --source and --target).",
    "DIR/manifest.jsonl gets one row per output (file, sha256, input, input_sha256, checkpoint, "
    "checkpoint_sha256, seed, direction, sampler, steps) once the file is complete; rerunning the same command "
    "skips inputs already translated and never leaves a half-written file. Paired metrics: medgen evaluate "
    "--paired --real TARGETS --fake DIR --out REPORT.",
)
_EXAMPLES = """examples:
  medgen translate --checkpoint runs/pix2pix/last.ckpt --input mri/ --out ct_synth/
  medgen translate --checkpoint cyclegan.ckpt --input b_images/ --direction b2a --out as_a/
  medgen translate --checkpoint mask2ct.ckpt --input masks/ --masks --out ct/ --steps 50 --seed 1
  medgen translate --checkpoint flow.ckpt --input scans/ --source scanner=0 --target scanner=1 --out swapped/"""
_DESCRIPTION = "\n\n".join([*(textwrap.fill(p, 100) for p in _PARAGRAPHS), _EXAMPLES])


def _format(text: str) -> str:
    """``--format``: a format name, or a file extension naming one (``nii.gz``, ``nii``, ``.mha``)."""
    name = text.lower().lstrip(".")
    return "nifti" if name in ("nii", "nii.gz") else name


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``translate`` sub-command."""
    p = sub.add_parser(
        "translate",
        help="translate images with a trained image-to-image model (one output per input, same geometry)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_DESCRIPTION,
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="CKPT",
        help="Lightning .ckpt, exported folder (medgen export) or registry name, e.g. runs/pix2pix/last.ckpt",
    )
    p.add_argument(
        "--input",
        required=True,
        metavar="SRC",
        help="one image file, a folder of images (NIfTI, MHA, NRRD, DICOM, PNG, NPY), a CSV/JSON datalist (its "
        "'source' column, else 'image'; for CycleGAN only the rows of the direction's source domain) or demo:NAME, "
        "e.g. --input scans/",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (rerun to resume), e.g. --out synth/")
    p.add_argument(
        "--direction",
        default=None,
        choices=("a2b", "b2a"),
        help="CycleGAN: a2b or b2a (default: the model's first, a2b); the other families translate a2b only",
    )
    p.add_argument(
        "--steps",
        type=_positive,
        default=None,
        help="diffusion/flow: sampling/ODE steps, e.g. 50 (default: the model's)",
    )
    p.add_argument(
        "--method",
        "--sampler",
        default=None,
        help="diffusion: scheduler or alias (ddim, dpm++, ...); flow: euler, heun, midpoint; --sampler is the same "
        "option, as in medgen generate (default: the model's)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="run seed; each file's noise comes from (seed, file name) (default: 0)"
    )
    p.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="class-swap flow: the inputs' condition, repeatable, e.g. --source scanner=0 (text values: the "
        "training vocabulary)",
    )
    p.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="class-swap flow: the condition to translate to, e.g. --target scanner=1; an image-conditioned model: "
        "its value conditions",
    )
    p.add_argument(
        "--format",
        default=None,
        type=_format,
        choices=FORMATS,
        help="output format: nifti (also nii.gz), mha, nrrd, npy or png, e.g. --format nii.gz (default: the input's "
        "own where medgen writes it, else nifti for 3D and png for 2D)",
    )
    p.add_argument(
        "--modality",
        default=None,
        choices=("ct", "mri", "xray"),
        help="the inputs' modality, for a model whose checkpoint does not record it or inputs whose header cannot "
        "tell, e.g. --modality mri (default: the checkpoint's source_modality, else its modality)",
    )
    p.add_argument(
        "--masks",
        action="store_true",
        help="the inputs are label maps for a mask-conditioned model (e.g. mask -> CT): no intensity preset, "
        "nearest-neighbour sizing, as training treated its masks (default: inputs are images)",
    )
    p.add_argument("--batch-size", type=_positive, default=8, help="slices per network call (default: 8)")
    p.add_argument("--raw-weights", action="store_true", help="use the raw training weights, not the EMA ones")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors (default: off)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the model and translate the inputs not yet translated."""
    from medgen.generation.job import default_device
    from medgen.generation.translate import make_translator
    from medgen.generation.translate_files import TranslateOptions, list_inputs, translate_files
    from medgen.generation.translate_grid import InputGrid
    from medgen.store.load import load_model

    loaded = load_model(args.checkpoint, use_ema=not args.raw_weights)
    translator = make_translator(
        loaded.model, loaded.card, args.checkpoint, args.direction, args.method, args.steps, args.source, args.target
    )
    inputs = list_inputs(args.input, translator.from_domain)
    grid = InputGrid.from_record(loaded.model, loaded.card.raw, args.batch_size, args.modality, args.masks)
    opts = TranslateOptions(
        inputs=inputs, out_dir=Path(args.out), seed=args.seed, fmt=args.format,
        checkpoint=str(loaded.source.path.resolve()), checkpoint_sha256=loaded.sha256, modality=loaded.card.modality,
        intensity=loaded.card.intensity,
    )  # fmt: skip
    summary = translate_files(opts, translator, grid, loaded.model, default_device(args.device))
    print(
        f"translated {summary.written} image{'' if summary.written == 1 else 's'} ({summary.skipped} already "
        f"there) -> {Path(args.out) / 'manifest.jsonl'}",
        file=sys.stderr,
    )
    return 0
