"""pix2pix on demo:mri-pairs, end to end through the medgen CLI: trained on one subject, judged on the other.

1. ``medgen fit --config configs/quality/pix2pix_mri_2d_64.yaml`` (2,000 generator updates at 64x64, 2 mm pixels,
   on the 57 axial slices of the MNI152 T1 and their T2-like remap; the data module's subject split holds nibabel's
   ``anatomical.nii`` out);
2. the held-out subject's 25 slice pairs as the data module prepares them (source T1, target T2-like, [-1, 1]),
   translated by the trained model's EMA weights (``Pix2PixModel.translate`` of ``last.ckpt``);
3. two baselines on the same slices: the identity (the source as it is) and the best global intensity mapping, the
   source histogram-matched to the target (``skimage.exposure.match_histograms`` of the whole held-out source stack
   against the whole target stack: one monotone mapping for the subject, fitted on the target itself, so an oracle
   no translation model gets);
4. ``medgen evaluate --paired --data-range 2`` of each against the targets (SSIM, PSNR, MAE over whole slices,
   background included; 95 % bootstrap CIs of the means), and a picture: source | pix2pix | histogram-matched |
   target, one held-out slice a row.

Prints the figures labelled with the machine and the wall time of each stage. Training runs with one torch thread
(``OMP_NUM_THREADS=1``): on 2 busy shared cores a second thread spin-waits and makes each step many times slower.
About 10 minutes on 2 shared CPU cores.

    python benchmarks/pix2pix_mri_2d.py [--out runs/bench_pix2pix_mri_2d] [--report FILE] [--picture FILE] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
import yaml
from cli_runs import REPO, last_checkpoint, medgen, print_report, save_upscaled_grid
from machine import describe

CONFIG = REPO / "configs" / "quality" / "pix2pix_mri_2d_64.yaml"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
METHODS = ("pix2pix", "identity", "histogram_matched")
METRICS = ("ssim", "psnr", "mae")


def held_out_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """Sources and targets ``(N, 1, 64, 64)`` of the validation subject, as ``medgen fit`` prepares them."""
    from medgen.data.datamodule import MedicalImageDataModule

    data = yaml.safe_load(CONFIG.read_text())["data"]
    dm = MedicalImageDataModule(
        data["data_dir"], modality=data["modality"], spatial_dims=2, image_size=data["image_size"], num_workers=0,
        val_fraction=data["val_fraction"], seed=data["seed"], target_spacing=data["target_spacing"],
        resize_mode=data["resize_mode"],
    )  # fmt: skip
    dm.setup("fit")
    val = dm.val_set
    assert val is not None
    items = [val[i] for i in range(len(val))]  # type: ignore[arg-type]
    print(f"held-out subject: {sorted({item['subject'] for item in items})}, {len(items)} slices")
    return torch.stack([item["source"] for item in items]), torch.stack([item["image"] for item in items])


def histogram_matched(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The source stack mapped monotonically so that its histogram is the target stack's (one mapping for all)."""
    from skimage.exposure import match_histograms

    return torch.from_numpy(match_histograms(source.numpy(), target.numpy())).float()


def write_set(images: torch.Tensor, folder: Path) -> None:
    """One 2D ``slice_XXXX.npy`` ``(64, 64)`` per image ``(1, 64, 64)`` (values in [-1, 1])."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        np.save(folder / f"slice_{i:04d}.npy", image[0].numpy())


def evaluate(out: Path, name: str) -> dict:
    """``medgen evaluate --paired`` of ``out/name`` against ``out/target``; the report's metrics."""
    medgen(["evaluate", "--paired", "--real", str(out / "target"), "--fake", str(out / name), "--out",
            str(out / f"eval_{name}"), "--data-range", "2", "--metrics", ",".join(METRICS)])  # fmt: skip
    return json.loads((out / f"eval_{name}" / "report.json").read_text())["metrics"]


def picture(columns: list[torch.Tensor], path: Path, rows: int = 8) -> Path:
    """``rows`` evenly spaced slices, one a row, the columns side by side; upsampled 3x (nearest)."""
    pick = torch.linspace(0, len(columns[0]) - 1, rows).round().long()
    return save_upscaled_grid(torch.stack([c[i] for i in pick for c in columns]), path, ncol=len(columns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_pix2pix_mri_2d")
    parser.add_argument("--report", type=Path, default=None, help="also write the printed figures to this file")
    parser.add_argument("--picture", type=Path, default=None, help="also copy the picture to this file")
    parser.add_argument("--reuse", action="store_true", help="reuse the last.ckpt of a run already under --out")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    os.environ["OMP_NUM_THREADS"] = "1"  # the fit subprocess inherits it
    torch.set_num_threads(1)
    times: dict[str, float] = {}
    if not (args.reuse and list((out / "pix2pix_run").glob("lightning_logs/*/checkpoints/last.ckpt"))):
        times["fit"] = medgen(
            ["fit", f"--config={CONFIG}", f"--trainer.default_root_dir={out / 'pix2pix_run'}", *QUIET]
        )
    from medgen.store.load import load_model

    model = load_model(last_checkpoint(out / "pix2pix_run")).model
    source, target = held_out_pairs()
    sets = {
        "pix2pix": model.translate(source).cpu(),  # type: ignore[attr-defined]
        "identity": source,
        "histogram_matched": histogram_matched(source, target),
    }
    write_set(target, out / "target")
    for name, images in sets.items():
        write_set(images, out / name)
    reports = {name: evaluate(out, name) for name in METHODS}
    drawn = picture([source, sets["pix2pix"], sets["histogram_matched"], target], out / "pix2pix_mri_2d.png")
    if args.picture is not None:
        args.picture.parent.mkdir(parents=True, exist_ok=True)
        args.picture.write_bytes(drawn.read_bytes())

    def cell(metric: dict) -> str:
        ci = metric.get("ci95")
        return f"{metric['value']:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")

    steps = yaml.safe_load(CONFIG.read_text())["trainer"]["max_steps"]
    lines = [
        f"machine: {describe()}",
        f"pix2pix after {steps} generator updates on the MNI152 slice pairs (64x64, 2 mm), judged on the "
        f"{len(source)} held-out slices of anatomical.nii (T1 -> T2-like x bias field), whole slices, range [-1, 1]:",
        f"{'method':<20}" + "".join(f"{m + ' (95% CI)':<28}" for m in METRICS),
        *(f"{name:<20}" + "".join(f"{cell(reports[name][m]):<28}" for m in METRICS) for name in METHODS),
        "histogram_matched = skimage.exposure.match_histograms of the held-out source stack to its target stack "
        "(the best single monotone mapping, an oracle fitted on the targets)",
        f"picture (source | pix2pix | histogram-matched | target): {drawn}",
        "wall time: " + (", ".join(f"{k} {v / 60:.1f} min" for k, v in times.items()) or "fit reused"),
    ]
    print_report(lines, args.report)


if __name__ == "__main__":
    main()
