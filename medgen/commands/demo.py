"""``medgen demo``: the main job on embedded default data.

Read and inspect real MRI, CT phantoms and CR X-ray DICOM with their geometry; build the training data as
models see it; train a small diffusion model on real brain-MRI slices; export it; generate an augmentation
set with a provenance manifest; evaluate it against the real slices (HTML report); check it for copies of
training images (HTML report).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

STAGE_NOTE = (
    "medgen demo: data layer (real MRI, CT phantoms, CR X-ray DICOM with geometry) -> training data preview ->\n"
    "a small diffusion model trained on real brain-MRI slices -> export -> generated set with a manifest ->\n"
    "evaluation report -> memorization report."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``demo`` sub-command."""
    p = sub.add_parser(
        "demo",
        help="run the main job on embedded default data",
        description="Prepare embedded default data (real MRI from installed wheels, CT and X-ray phantoms) "
        "and run every stage of medgen that exists on it, printing where the pictures and reports are.",
    )
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--steps", type=int, default=600, help="training steps of the demo model (default: 600; 0 skips)")
    p.add_argument("--num-samples", type=int, default=64, help="samples generated and evaluated (default: 64)")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors (default: off)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo into ``args.out``."""
    from medgen.demo_data import prepare_demo_data  # heavy imports only when the command runs

    out = Path(args.out)
    start = time.time()
    print(STAGE_NOTE, flush=True)
    data = prepare_demo_data(out / "data")
    print(f"\n[1/8] demo data in {out / 'data'}")
    for name, source in data.sources.items():
        print(f"  {name}: {source}")
    inspect_stage(data)
    pictures = preview_stage(data, out)
    reports: list[Path] = []
    if args.steps > 0:
        ckpt, more = train_stage(data.mri, out, args.steps)
        pictures += more + generate_stage(ckpt, out, args.num_samples)
        include_qc_failed = qc_fallback(out / "generated" / "manifest.jsonl", args.steps)
        reports += [evaluate_stage(out, include_qc_failed), memorization_stage(out, include_qc_failed)]
    print(f"\ndone in {time.time() - start:.0f} s.\n  pictures: " + ", ".join(str(p) for p in pictures))
    if reports:
        print("  HTML reports: " + ", ".join(str(p) for p in reports))
    return 0


def inspect_stage(data: Any) -> None:
    """Print ``medgen inspect`` lines for a few files of each modality."""
    from medgen.data.inspect import inspect_image

    print("\n[2/8] medgen inspect (one JSON line per image):")
    for folder in (data.mri, data.ct, data.xray):
        for path in sorted(p for p in folder.iterdir() if "_mask" not in p.name)[:2]:
            print("  " + json.dumps(inspect_image(path).to_dict()))


def preview_stage(data: Any, out: Path) -> list[Path]:
    """Build 2D and 3D training data per modality and save a picture of one batch of each."""
    from medgen.data.datamodule import MedicalImageDataModule
    from medgen.visualize import save_grid

    print("\n[3/8] training data as models will see it:")
    pictures = []
    for name, folder, dims, modality, size in (
        ("mri_2d_slices", data.mri, 2, "mri", 64),
        ("ct_3d_volumes", data.ct, 3, "ct", 64),
        ("xray_2d", data.xray, 2, "auto", 128),
    ):
        dm = MedicalImageDataModule(
            str(folder), modality=modality, spatial_dims=dims, image_size=size, batch_size=16, num_workers=0,
            val_fraction=0.25 if dims == 2 else 0.0, ct_window="body",
        )  # fmt: skip
        dm.setup("fit")
        batch = next(iter(dm.train_dataloader()))
        path = save_grid(batch["image"][: 16 if dims == 2 else 2], out / f"{name}.png")
        pictures.append(path)
        n_val = 0 if dm.val_set is None else len(dm.val_set)  # type: ignore[arg-type]
        lo, hi = float(batch["image"].min()), float(batch["image"].max())
        print(f"  {name}: {len(dm.train_set)} train / {n_val} val samples, "  # type: ignore[arg-type]
              f"batch {tuple(batch['image'].shape)}, range [{lo:.2f}, {hi:.2f}] -> {path}")  # fmt: skip
    return pictures


def train_stage(mri: Path, out: Path, steps: int) -> tuple[Path, list[Path]]:
    """Train a small 2D diffusion model on 32x32 MRI slices; save its checkpoint and the real slices as PNG."""
    import lightning as L
    import numpy as np
    import torch
    from lightning.pytorch.callbacks import EMAWeightAveraging

    from medgen.data.datamodule import MedicalImageDataModule
    from medgen.generation.writers import write_sample
    from medgen.lit import GenerativeTask, Optimization, ValidationPictures
    from medgen.lit.quiet import quiet_lightning
    from medgen.lit.step_progress import StepProgressBar
    from medgen.models import DiffusionModel
    from medgen.nets.unet import DiffusionUNet
    from medgen.visualize import save_grid

    print(f"\n[4/8] training a small diffusion model on real MRI slices ({steps} steps, 32x32, CPU is fine):")
    L.seed_everything(0, verbose=False)
    dm = MedicalImageDataModule(str(mri), modality="mri", spatial_dims=2, image_size=32, batch_size=16, num_workers=0,
                                val_fraction=0.0)  # fmt: skip
    net = DiffusionUNet(spatial_dims=2, channels=(32, 64, 64), attention_levels=(False, False, True), num_res_blocks=1,
                        num_head_channels=32, norm_num_groups=16)  # fmt: skip
    task = GenerativeTask(
        DiffusionModel(net),
        optimization=Optimization(lr=5e-4, weight_decay=0.01, warmup_steps=50),
        pictures=ValidationPictures(num_samples=0),
    )
    ema = EMAWeightAveraging(decay=0.995, update_starting_at_step=min(100, steps // 3))
    ckpt = out / "train" / "demo.ckpt"
    with quiet_lightning(banners=True):  # Lightning's device banners, tips and checkpoint notes say nothing here
        trainer = L.Trainer(accelerator="cpu", max_steps=steps, limit_val_batches=0, default_root_dir=out / "train",
                            gradient_clip_val=1.0, enable_model_summary=False, logger=False,
                            callbacks=[ema, StepProgressBar()], enable_checkpointing=False)  # fmt: skip
        trainer.fit(task, datamodule=dm)
        trainer.save_checkpoint(ckpt)
    train_set: Any = dm.train_set
    real = torch.stack([train_set[i]["image"] for i in range(len(train_set))])
    real_dir = out / "real_slices"  # one folder per subject: memorization calibrates on held-out subjects
    for i, image in enumerate(real):
        volume, slice_index = train_set.index[i]
        subject = train_set.records[volume].subject
        write_sample(image, real_dir / subject / f"slice_{slice_index:04d}.png", "png", np.eye(4), None)
    reference = save_grid(real[torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[:16]],
                          out / "mri_2d_real.png", ncol=8)  # fmt: skip
    print(f"  checkpoint -> {ckpt}\n  {len(real)} real training slices -> {real_dir} (picture: {reference})")
    return ckpt, [reference]


def generate_stage(ckpt: Path, out: Path, num_samples: int) -> list[Path]:
    """Export the model, generate an augmentation set from the export as ``medgen generate`` does, picture it."""
    import torch

    from medgen.data.io import load_image
    from medgen.generation.conditions import make_plan
    from medgen.generation.job import default_device, default_format, load_generator, summary_line
    from medgen.generation.run import GenerationJob, GenerationOptions, generate
    from medgen.store.export import export_checkpoint
    from medgen.visualize import save_grid

    print("\n[5/8] medgen export: config.yaml + model.safetensors (EMA weights) + model_card.json")
    model_dir = export_checkpoint(ckpt, out / "model", name="demo-mri-ddpm-32", licence="same as the demo data")
    print(f"  -> {model_dir}")
    print(f"\n[6/8] medgen generate: {num_samples} samples with a manifest (sha256, seed, sampler per file)")
    generated = out / "generated"
    loaded = load_generator(model_dir)
    opts = GenerationOptions(
        num_samples=num_samples, out_dir=generated, batch_size=16, fmt=default_format(loaded.model.spatial_dims),
        checkpoint=loaded.checkpoint, checkpoint_sha256=loaded.sha256, weights="ema", command=["medgen", *sys.argv[1:]],
    )  # fmt: skip
    plan = make_plan(loaded.model.net, loaded.card.vocab, [], loaded.card.raw)
    summary = generate(GenerationJob(loaded.model, loaded.card, opts, plan), default_device())
    print(summary_line(summary, generated, "complete" if summary.merged else "shard 0/1 done"), file=sys.stderr)
    files = sorted(generated.glob("sample_*.png"))[:16]
    stack = torch.stack([torch.as_tensor(load_image(f)) / 127.5 - 1.0 for f in files])
    picture = save_grid(stack, out / "mri_2d_samples.png", ncol=8)
    print(f"  -> {generated / 'manifest.jsonl'} (picture: {picture})")
    return [picture]


def qc_fallback(manifest: Path, steps: int) -> bool:
    """True (include samples that failed quality control) when fewer than half the generated samples passed it.

    A demo model trained for a few steps (as in tests, or ``--steps 50``) draws samples that fail QC; the demo then
    still shows both reports, on every sample, and says so. At the default steps most samples pass, and the
    reports use only those, as ``evaluate`` and ``memorization`` do by default.
    """
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    passed = sum(1 for row in rows if row.get("qc", {}).get("passed", True))
    if 2 * passed >= len(rows):
        return False
    print(f"\n  only {passed} of {len(rows)} samples passed quality control (a model trained for {steps} steps): "
          "the next two stages include the failed ones (--include-qc-failed) to show the reports")  # fmt: skip
    return True


def evaluate_stage(out: Path, include_qc_failed: bool) -> Path:
    """``medgen evaluate`` of the generated set against the real training slices."""
    from medgen.commands.evaluate import print_report
    from medgen.evaluation.sources import list_source
    from medgen.evaluation.unpaired import UnpairedOptions, evaluate_unpaired

    print("\n[7/8] medgen evaluate: FID/KID/PRDC/diversity with a real-vs-real baseline and bootstrap CIs")
    report = out / "evaluation"
    real = list_source(out / "real_slices", include_qc_failed)
    fake = list_source(out / "generated", include_qc_failed)
    json_path, html_path = evaluate_unpaired(real, fake, UnpairedOptions(report, window=(0.0, 255.0), bootstrap=50))
    print_report(json_path, html_path)  # the headline metrics with their baseline and CI
    return html_path


def memorization_stage(out: Path, include_qc_failed: bool) -> Path:
    """``medgen memorization`` of the generated set against the training slices."""
    from medgen.commands.memorization import print_summary
    from medgen.memorization.detect import detect_memorization

    print("\n[8/8] medgen memorization: nearest training slice of every sample, threshold from held-out subjects")
    report = out / "memorization"
    result = detect_memorization(
        out / "real_slices", out / "generated" / "manifest.jsonl", report, include_qc_failed=include_qc_failed
    )
    print_summary(result, report)
    decision = result.get("verification") or result["calibration"]
    print(f"  {result['n_flagged']} of {len(result['samples'])} samples flagged as copies "
          f"(verified-score threshold {decision['threshold']:.3f}, {decision.get('source')}). A sample is flagged "
          "only when it aligns with one of its retrieved training slices in pixel space; with many patients and "
          "--holdout the threshold is steadier.")  # fmt: skip
    return report / "report.html"
