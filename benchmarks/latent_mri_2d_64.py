"""The README's latent-family figures on the MRI shipped in wheels, end to end through the medgen CLI.

Runs what the README describes, in order:

1. ``medgen fit --config configs/quality/ae_mri_2d_64.yaml`` (KL autoencoder, 64x64 -> 4 x 16 x 16);
2. ``medgen fit --config configs/quality/ldm_mri_2d_64.yaml --pretrained.autoencoder_from <ae last.ckpt>``;
3. ``medgen generate`` of 128 samples from the latent-diffusion ``last.ckpt`` (EMA weights);
4. ``medgen evaluate`` of those samples against the real training slices (written as 8-bit PNGs, like the
   samples, hence ``--window 0,255``), which also reports the real-vs-real split-half baseline;
5. the PSNR of the autoencoder's reconstructions of the training slices vs bilinear resizing through the
   latent's number of values (4 x 16 x 16 = 1,024 values = 32 x 32 pixels), and of the held-out subject.

Prints every figure labelled with the machine (CPU model, cores, torch threads) and the wall time of each
stage. About 30 minutes on 2 free CPU cores.

    python benchmarks/latent_mri_2d_64.py [--out runs/bench_latent_mri_2d_64] [--report FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from cli_runs import REPO, last_checkpoint, medgen
from machine import describe

AE_CONFIG = REPO / "configs" / "quality" / "ae_mri_2d_64.yaml"
LDM_CONFIG = REPO / "configs" / "quality" / "ldm_mri_2d_64.yaml"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def slices(val_fraction: float, split: str) -> tuple[torch.Tensor, list[tuple[str, int]]]:
    """The 64x64 slices of one split exactly as ``medgen fit`` presents them, with (subject, slice index)."""
    from medgen.data.datamodule import MedicalImageDataModule

    dm = MedicalImageDataModule("demo:mri", modality="mri", spatial_dims=2, image_size=64, num_workers=0,
                                val_fraction=val_fraction, seed=0)  # fmt: skip
    dm.setup("fit")
    data = dm.train_set if split == "train" else dm.val_set
    images = torch.stack([data[i]["image"] for i in range(len(data))])
    names = [(data.records[v].subject, s) for v, s in data.index]
    return images, names


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR in dB over the [-1, 1] range (peak-to-peak 2)."""
    return float(10 * torch.log10(4.0 / ((x.clamp(-1, 1) - ref) ** 2).mean()))


def reconstruction_psnr(ae_ckpt: Path) -> dict[str, float]:
    """Autoencoder vs bilinear resizing through the same number of values, on the AE run's own split."""
    from medgen.models import Autoencoder

    model = Autoencoder.from_pretrained(ae_ckpt)
    ae_val = float(AE_CONFIG.read_text().split("val_fraction:")[1].split()[0])
    train, _ = slices(ae_val, "train")
    held_out, _ = slices(ae_val, "val")
    with torch.no_grad():
        values = int(model.net.posterior(train[:1]).mean[0].numel())  # type: ignore[union-attr,operator]
        side = int(round(values**0.5))
        recon = torch.cat([model.reconstruct(b) for b in train.split(32)])
        recon_held = torch.cat([model.reconstruct(b) for b in held_out.split(32)])
    small = torch.nn.functional.interpolate(train, size=(side, side), mode="bilinear", antialias=True)
    resized = torch.nn.functional.interpolate(small, size=train.shape[-2:], mode="bilinear")
    return {"n_train": len(train), "n_held_out": len(held_out), "latent_values": values, "side": side,
            "ae": psnr(recon, train), "bilinear": psnr(resized, train),
            "ae_held_out": psnr(recon_held, held_out)}  # fmt: skip


def write_real_slices(out: Path) -> int:
    """Write the latent-diffusion run's training slices as 8-bit PNGs (the samples' format), one folder a subject."""
    from medgen.generation.writers import write_sample

    ldm_val = float(LDM_CONFIG.read_text().split("val_fraction:")[1].split()[0])
    images, names = slices(ldm_val, "train")
    for image, (subject, index) in zip(images, names, strict=True):
        write_sample(image, out / subject / f"slice_{index:04d}.png", "png", np.eye(4), None)
    return len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_latent_mri_2d_64")
    parser.add_argument("--num-samples", type=int, default=128)
    parser.add_argument("--report", type=Path, default=None, help="also write the printed figures to this file")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse the last.ckpt of a stage already trained under --out"
    )
    parser.add_argument("--include-qc-failed", action="store_true", help="evaluate samples that failed QC too")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    times: dict[str, float] = {}
    if not (args.reuse and list((out / "ae").glob("lightning_logs/*/checkpoints/last.ckpt"))):
        times["autoencoder fit"] = medgen(["fit", f"--config={AE_CONFIG}", f"--trainer.default_root_dir={out / 'ae'}",
                                           *QUIET])  # fmt: skip
    ae_ckpt = last_checkpoint(out / "ae")
    if not (args.reuse and list((out / "ldm").glob("lightning_logs/*/checkpoints/last.ckpt"))):
        times["latent diffusion fit"] = medgen(["fit", f"--config={LDM_CONFIG}",
                                                f"--pretrained.autoencoder_from={ae_ckpt}",
                                                f"--trainer.default_root_dir={out / 'ldm'}", *QUIET])  # fmt: skip
    ldm_ckpt = last_checkpoint(out / "ldm")
    generated = out / "generated"
    times["generate"] = medgen(["generate", "--checkpoint", str(ldm_ckpt), "--num-samples", str(args.num_samples),
                                "--out", str(generated), "--batch-size", "16", "--seed", "0"])  # fmt: skip
    write_real_slices(out / "real_slices")
    evaluation = out / "evaluation"
    times["evaluate"] = medgen(["evaluate", "--real", str(out / "real_slices"), "--fake", str(generated),
                                "--out", str(evaluation), "--window", "0,255", "--seed", "0",
                                *(["--include-qc-failed"] if args.include_qc_failed else [])])  # fmt: skip
    report = json.loads((evaluation / "report.json").read_text())
    metrics = report["metrics"]
    start = time.perf_counter()
    rec = reconstruction_psnr(ae_ckpt)
    times["reconstruction PSNR"] = time.perf_counter() - start

    def baseline(name: str) -> str:
        value = metrics.get(name, {})
        base = value.get("baseline") if isinstance(value, dict) else None
        point = value.get("value") if isinstance(value, dict) else value
        return f"{point:.4g} (real-vs-real split-half baseline {base:.4g})" if base is not None else f"{point}"

    lines = [
        f"machine: {describe()}",
        f"autoencoder PSNR on {rec['n_train']} training slices (64x64): {rec['ae']:.1f} dB",
        f"bilinear resizing through {rec['side']}x{rec['side']} (= the latent's {rec['latent_values']} values): "
        f"{rec['bilinear']:.1f} dB",
        f"autoencoder PSNR on {rec['n_held_out']} held-out-subject slices: {rec['ae_held_out']:.1f} dB",
        f"latent diffusion, {report['n_fake']} of {args.num_samples} samples (QC) vs {report['n_real']} training "
        f"slices: "
        f"FID {baseline('fid')}, KID {baseline('kid')}",
        "wall time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in times.items()),
    ]
    text = "\n".join(lines)
    print("\n" + text)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text + "\n")


if __name__ == "__main__":
    main()
