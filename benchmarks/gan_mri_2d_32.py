"""The GAN family on the MRI shipped in wheels, end to end through the medgen CLI: trained vs untrained generator.

1. ``medgen fit --config configs/quality/gan_mri_2d_32.yaml`` (3,000 generator updates, hinge + DiffAugment, on
   the 113 training slices at 32x32);
2. ``medgen generate`` of N samples from its ``last.ckpt`` (EMA weights), and of N samples from an untrained
   generator of the same architecture (``GANModel.save_pretrained`` of a fresh model, seed 0);
3. ``medgen evaluate`` of both against the real training slices (written as 8-bit PNGs, like the samples, hence
   ``--window 0,255``), which also reports the real-vs-real split-half baseline;
4. a picture of the first 32 samples of each (``trained.png``, ``untrained.png``) and of 32 real slices.

Prints the figures labelled with the machine (CPU model, cores, torch threads) and the wall time of each stage.
About 5 minutes on 2 free CPU cores.

    python benchmarks/gan_mri_2d_32.py [--out runs/bench_gan_mri_2d_32] [--report FILE] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from cli_runs import REPO, last_checkpoint, medgen
from machine import describe

CONFIG = REPO / "configs" / "quality" / "gan_mri_2d_32.yaml"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def write_real_slices(out: Path) -> torch.Tensor:
    """The run's training slices as ``medgen fit`` presents them, written as 8-bit PNGs, one folder a subject."""
    from medgen.data.datamodule import MedicalImageDataModule
    from medgen.generation.writers import write_sample

    data = yaml.safe_load(CONFIG.read_text())["data"]
    dm = MedicalImageDataModule(
        data["data_dir"], modality=data["modality"], spatial_dims=2, image_size=data["image_size"], num_workers=0,
        val_fraction=data["val_fraction"],
    )  # fmt: skip
    dm.setup("fit")
    train = dm.train_set
    assert train is not None
    images = torch.stack([train[i]["image"] for i in range(len(train))])  # type: ignore[arg-type]
    for i, image in enumerate(images):
        volume, index = train.index[i]  # type: ignore[attr-defined]
        subject = train.records[volume].subject  # type: ignore[attr-defined]
        write_sample(image, out / subject / f"slice_{index:04d}.png", "png", np.eye(4), None)
    return images


def untrained_export(out: Path) -> Path:
    """A fresh generator of the config's architecture, saved as an export (seed 0)."""
    from medgen.models import GANModel
    from medgen.nets.gan import UpsamplingGenerator

    net_config = yaml.safe_load(CONFIG.read_text())["model"]["init_args"]["model"]["init_args"]["net"]
    torch.manual_seed(0)
    model = GANModel(UpsamplingGenerator(**net_config["init_args"]))
    return model.save_pretrained(out, name="untrained-gan")


def picture(folder: Path, path: Path) -> Path:
    """The first 32 PNGs of ``folder`` (sorted) as a grid, upsampled 3x (nearest)."""
    from PIL import Image

    from medgen.data.io import load_image
    from medgen.visualize import save_grid

    files = sorted(folder.rglob("*.png"))[:32]
    stack = torch.stack([torch.as_tensor(load_image(f)).float() / 127.5 - 1.0 for f in files])
    saved = save_grid(stack, path, ncol=8)
    image = Image.open(saved)
    image.resize((image.width * 3, image.height * 3), Image.NEAREST).save(saved)
    return saved


def evaluate(out: Path, fake: Path, name: str) -> dict:
    """``medgen evaluate`` of ``fake`` against the real slices; the report's metrics."""
    medgen(["evaluate", "--real", str(out / "real_slices"), "--fake", str(fake), "--out", str(out / name),
            "--window", "0,255", "--seed", "0", "--include-qc-failed"])  # fmt: skip
    return json.loads((out / name / "report.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_gan_mri_2d_32")
    parser.add_argument("--num-samples", type=int, default=128)
    parser.add_argument("--report", type=Path, default=None, help="also write the printed figures to this file")
    parser.add_argument("--reuse", action="store_true", help="reuse the last.ckpt of a run already under --out")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    times: dict[str, float] = {}
    if not (args.reuse and list((out / "gan").glob("lightning_logs/*/checkpoints/last.ckpt"))):
        times["fit"] = medgen(["fit", f"--config={CONFIG}", f"--trainer.default_root_dir={out / 'gan'}", *QUIET])
    ckpt = last_checkpoint(out / "gan")
    n = str(args.num_samples)
    times["generate"] = medgen(["generate", "--checkpoint", str(ckpt), "--num-samples", n, "--out",
                                str(out / "trained"), "--batch-size", "32", "--seed", "0"])  # fmt: skip
    medgen(["generate", "--checkpoint", str(untrained_export(out / "untrained_model")), "--num-samples", n,
            "--out", str(out / "untrained"), "--batch-size", "32", "--seed", "0"])  # fmt: skip
    write_real_slices(out / "real_slices")
    start = time.perf_counter()
    trained, untrained = (
        evaluate(out, out / "trained", "eval_trained"),
        evaluate(out, out / "untrained", "eval_untrained"),
    )
    times["evaluate (both)"] = time.perf_counter() - start
    pictures = [picture(out / name, out / f"{name}.png") for name in ("trained", "untrained", "real_slices")]

    def figure(report: dict, name: str) -> str:
        value = report["metrics"][name]
        return f"{value['value']:.4g} (real-vs-real split-half baseline {value['baseline']:.4g})"

    lines = [
        f"machine: {describe()}",
        f"GAN after {yaml.safe_load(CONFIG.read_text())['trainer']['max_steps']} generator updates, "
        f"{trained['n_fake']} samples vs {trained['n_real']} training slices (32x32): "
        f"KID {figure(trained, 'kid')}, FID {figure(trained, 'fid')}",
        f"untrained generator of the same architecture, {untrained['n_fake']} samples: "
        f"KID {figure(untrained, 'kid')}, FID {figure(untrained, 'fid')}",
        "pictures: " + ", ".join(str(p) for p in pictures),
        "wall time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in times.items()),
    ]
    text = "\n".join(lines)
    print("\n" + text)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text + "\n")


if __name__ == "__main__":
    main()
