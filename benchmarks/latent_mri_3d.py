"""3D latent-model quality on the real brain MRI shipped in wheels, end to end through the medgen CLI.

The 3D version of ``benchmarks/latent_mri_2d_64.py``. Data: random 32^3 patches (2 mm voxels, 64 mm cubes) of
the MNI152 T1 template (nilearn's wheel) for training; nibabel's ``anatomical.nii`` (another subject, scanner and
contrast; 2 mm, 33 x 41 x 25 voxels) is held out. The script writes a datalist (``OUT/datalist.csv``) that lists
the MNI volume 8 times under one subject, so that a batch holds several different random patches, and
``anatomical.nii`` once (the validation subject of ``val_fraction: 0.5``). Then, in order:

1. ``medgen fit --config configs/quality/ae_mri_3d_32.yaml`` (KL autoencoder, 32^3 -> 4 x 8^3 latents);
2. ``medgen fit --config configs/quality/ldm_mri_3d_32.yaml --pretrained.autoencoder_from <ae last.ckpt>``;
3. ``medgen generate`` of N volumes from the latent-diffusion ``last.ckpt`` (EMA weights), and of N volumes from
   the untrained latent model: the same trained autoencoder and latent scale with a freshly initialised UNet
   (seed 0), saved with ``save_pretrained``;
4. ``medgen evaluate`` (2.5D: every slice along the three axes, Inception features, KID and FID per plane and
   their mean) of both sets against N random training patches written as NIfTI in [-1, 1] (``--window -1,1``),
   which also reports the real-vs-real split-half baseline (N/2 vs N/2 volumes);
5. the autoencoder's reconstruction PSNR and SSIM (``medgen.evaluation.similarity``, data range 2 over [-1, 1])
   of the whole training volume (MNI at 2 mm, 96 x 116 x 92) and of the whole held-out volume (32 x 40 x 24),
   over the whole grid and over the foreground (real > -0.95), beside area-downsampling + trilinear upsampling
   through the latent's number of values (16 times fewer);
6. PNGs of the axial, coronal and sagittal mid-slices of real patches, samples and untrained samples, and of
   both volumes beside their reconstructions.

Prints every figure with the machine (CPU model, cores, torch threads), the wall time of each stage and the
CPU time of the ``medgen`` processes. 34 minutes wall (33 CPU) with ``OMP_NUM_THREADS=1`` on 2 cores shared with a
test suite (committed run); on a shared machine use one thread (two threads that wait for each other's core were
3-10 times slower here).

    python benchmarks/latent_mri_3d.py [--out runs/bench_latent_mri_3d] [--report FILE] [--figures DIR] [--reuse]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import resource
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from cli_runs import REPO, last_checkpoint, medgen, print_report, save_upscaled_grid
from machine import describe

AE_CONFIG = REPO / "configs" / "quality" / "ae_mri_3d_32.yaml"
LDM_CONFIG = REPO / "configs" / "quality" / "ldm_mri_3d_32.yaml"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
#: Whole-volume grids (2 mm, pad/crop, divisible by the autoencoder's factor 4) for the reconstruction figures.
TRAIN_GRID, HELD_OUT_GRID = [96, 116, 92], [32, 40, 24]
SPACING = 2.0


def write_datalist(out: Path) -> Path:
    """The MNI volume 8 times (one subject: training) and ``anatomical.nii`` once (held out)."""
    from medgen.demo_data import real_mri_volumes

    mni, anatomical = real_mri_volumes()
    path = out / "datalist.csv"
    out.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "subject"])
        writer.writerows([[str(mni), "mni152"]] * 8 + [[str(anatomical), "anatomical"]])
    return path


def datamodule(datalist: Path, patches: bool, image_size: list[int] | int):  # type: ignore[no-untyped-def]
    """The data module of the configs (same split, intensity and spacing), set up."""
    from medgen.data.datamodule import MedicalImageDataModule

    data = yaml.safe_load(LDM_CONFIG.read_text())["data"]
    dm = MedicalImageDataModule(
        str(datalist), modality="mri", spatial_dims=3, image_size=image_size, num_workers=0, patches=patches,
        target_spacing=data["target_spacing"], val_fraction=data["val_fraction"], resize_mode="pad_crop",
    )  # fmt: skip
    dm.setup("fit")
    return dm


def write_real_patches(datalist: Path, out: Path, n: int) -> list[torch.Tensor]:
    """The first ``n`` random training patches (``(1, 32, 32, 32)``, [-1, 1]) as NIfTI with 2 mm voxels."""
    from medgen.generation.writers import write_sample

    dm = datamodule(datalist, True, 32)
    affine = np.diag([SPACING, SPACING, SPACING, 1.0])
    patches = [dm.train_set[k]["image"] for k in range(n)]
    for k, patch in enumerate(patches):
        write_sample(patch, out / f"patch_{k:03d}.nii.gz", "nifti", affine, None)
    return patches


def untrained_export(ldm_ckpt: Path, out: Path) -> Path:
    """The latent model with its UNet re-initialised (seed 0): trained autoencoder and scale, untrained UNet."""
    from medgen.models import LatentDiffusionModel

    model = LatentDiffusionModel.from_pretrained(ldm_ckpt)
    net_args = yaml.safe_load(LDM_CONFIG.read_text())["model"]["init_args"]["model"]["init_args"]["net"]
    torch.manual_seed(0)
    fresh = type(model.net)(**net_args["init_args"])
    model.net.load_state_dict(fresh.state_dict())
    return model.save_pretrained(out, name="untrained-latent-diffusion-3d")


def load_volumes(folder: Path) -> list[torch.Tensor]:
    """The ``.nii.gz`` volumes of ``folder`` (sorted), ``(X, Y, Z)`` as stored (RAS, diagonal affines)."""
    import nibabel as nib

    return [torch.as_tensor(np.asarray(nib.load(p).dataobj), dtype=torch.float32)
            for p in sorted(folder.rglob("*.nii.gz"))]  # fmt: skip


def mid_slices(volume: torch.Tensor, side: int) -> list[torch.Tensor]:
    """Axial, coronal and sagittal mid-slices of ``(X, Y, Z)``, superior/anterior up, padded to ``side``^2 with -1."""
    x, y, z = (s // 2 for s in volume.shape)
    planes = [volume[:, :, z], volume[:, y, :], volume[x, :, :]]  # (X, Y), (X, Z), (Y, Z)
    tiles = []
    for plane in planes:
        image = plane.T.flip(0)
        padded = torch.full((side, side), -1.0)
        h, w = image.shape
        top, left = (side - h) // 2, (side - w) // 2
        padded[top : top + h, left : left + w] = image
        tiles.append(padded)
    return tiles


def slices_figure(volumes: list[torch.Tensor], path: Path, zoom: int) -> Path:
    """One row a volume: its axial, coronal and sagittal mid-slices."""
    side = max(max(v.shape) for v in volumes)
    tiles = torch.stack([t for v in volumes for t in mid_slices(v.clamp(-1, 1), side)])[:, None]
    return save_upscaled_grid(tiles, path, ncol=3, zoom=zoom)


def reconstruction(ae_ckpt: Path, datalist: Path, figures: Path) -> dict[str, float]:
    """PSNR/SSIM of the autoencoder on the whole training and held-out volumes, and of area + trilinear resizing."""
    from medgen.evaluation.similarity import psnr, ssim
    from medgen.models import Autoencoder

    model = Autoencoder.from_pretrained(ae_ckpt)
    volumes = {
        "train": datamodule(datalist, False, TRAIN_GRID).train_set[0]["image"],  # type: ignore[index]
        "held_out": datamodule(datalist, False, HELD_OUT_GRID).val_set[0]["image"],  # type: ignore[index]
    }
    result: dict[str, float] = {}
    for name, volume in volumes.items():
        x = volume[None]
        with torch.no_grad():
            latent = model.net.posterior(x).mean  # type: ignore[union-attr,operator]
            recon = model.reconstruct(x).clamp(-1, 1)
        factor = (x.numel() / latent.numel()) ** (1 / 3)
        small = torch.nn.functional.interpolate(x, size=[round(s / factor) for s in x.shape[2:]], mode="area")
        resized = torch.nn.functional.interpolate(small, size=x.shape[2:], mode="trilinear").clamp(-1, 1)
        mask = (x > -0.95).float()
        result |= {
            f"{name}_psnr": psnr(recon, x, 2.0).mean, f"{name}_psnr_fg": psnr(recon, x, 2.0, mask).mean,
            f"{name}_ssim": ssim(recon, x, 2.0).mean, f"{name}_resize_psnr": psnr(resized, x, 2.0).mean,
            f"{name}_resize_ssim": ssim(resized, x, 2.0).mean, f"{name}_values_ratio": x.numel() / latent.numel(),
            f"{name}_foreground": float(mask.mean()),
        }  # fmt: skip
        slices_figure([x[0, 0], recon[0, 0]], figures / f"latent_mri_3d_reconstruction_{name}.png", zoom=2)
    return result


def evaluate(real: Path, fake: Path, out: Path) -> dict:
    """``medgen evaluate`` (2.5D KID and FID) of ``fake`` against ``real``; the report."""
    medgen(["evaluate", "--real", str(real), "--fake", str(fake), "--out", str(out), "--window=-1,1",
            "--metrics", "kid,fid", "--seed", "0", "--include-qc-failed"])  # fmt: skip
    return json.loads((out / "report.json").read_text())


def children_cpu() -> float:
    """CPU seconds (user + system) of the finished ``medgen`` processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_latent_mri_3d")
    parser.add_argument("--num-samples", type=int, default=6, help="volumes generated, and real patches")
    parser.add_argument("--report", type=Path, default=None, help="also write the printed figures to this file")
    parser.add_argument("--figures", type=Path, default=None, help="folder of the PNGs (default: --out)")
    parser.add_argument("--ae-steps", type=int, default=None, help="override the autoencoder's max_steps")
    parser.add_argument("--ldm-steps", type=int, default=None, help="override the latent model's max_steps")
    parser.add_argument("--reuse", action="store_true", help="reuse the last.ckpt of stages already under --out")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    figures: Path = (args.figures or out).resolve()
    figures.mkdir(parents=True, exist_ok=True)
    start_all, times = time.perf_counter(), {}
    datalist = write_datalist(out)
    data_arg = f"--data.data_dir={datalist}"
    steps = {"ae": args.ae_steps, "ldm": args.ldm_steps}
    overrides = {
        k: [f"--trainer.max_steps={v}", f"--trainer.val_check_interval={v}"] if v else [] for k, v in steps.items()
    }
    if not (args.reuse and list((out / "ae").glob("lightning_logs/*/checkpoints/last.ckpt"))):
        times["autoencoder fit"] = medgen(["fit", f"--config={AE_CONFIG}", data_arg, *overrides["ae"],
                                           f"--trainer.default_root_dir={out / 'ae'}", *QUIET])  # fmt: skip
    ae_ckpt = last_checkpoint(out / "ae")
    if not (args.reuse and list((out / "ldm").glob("lightning_logs/*/checkpoints/last.ckpt"))):
        times["latent diffusion fit"] = medgen(["fit", f"--config={LDM_CONFIG}", data_arg, *overrides["ldm"],
                                                f"--pretrained.autoencoder_from={ae_ckpt}",
                                                f"--trainer.default_root_dir={out / 'ldm'}", *QUIET])  # fmt: skip
    ldm_ckpt = last_checkpoint(out / "ldm")
    n = str(args.num_samples)
    times["generate"] = medgen(["generate", "--checkpoint", str(ldm_ckpt), "--num-samples", n, "--out",
                                str(out / "generated"), "--batch-size", "8", "--seed", "0"])  # fmt: skip
    medgen(["generate", "--checkpoint", str(untrained_export(ldm_ckpt, out / "untrained_model")), "--num-samples",
            n, "--out", str(out / "untrained"), "--batch-size", "8", "--seed", "0"])  # fmt: skip
    write_real_patches(datalist, out / "real_patches", args.num_samples)
    start = time.perf_counter()
    trained = evaluate(out / "real_patches", out / "generated", out / "eval_trained")
    untrained = evaluate(out / "real_patches", out / "untrained", out / "eval_untrained")
    times["evaluate (both)"] = time.perf_counter() - start
    start = time.perf_counter()
    rec = reconstruction(ae_ckpt, datalist, figures)
    times["reconstruction"] = time.perf_counter() - start
    shown = min(4, args.num_samples)
    for name in ("real_patches", "generated", "untrained"):
        slices_figure(load_volumes(out / name)[:shown], figures / f"latent_mri_3d_{name}.png", zoom=3)
    cpu = children_cpu() + time.process_time()

    def figure(report: dict, name: str) -> str:
        value = report["metrics"][name]
        planes = value.get("planes") or {}
        per_plane = ", ".join(f"{k} {v:.4g}" for k, v in planes.items()) if isinstance(planes, dict) else ""
        text = f"{value['value']:.4g} (real-vs-real split-half baseline {value['baseline']:.4g})"
        return text + (f" [{per_plane}]" if per_plane else "")

    ae_cfg, ldm_cfg = (yaml.safe_load(c.read_text()) for c in (AE_CONFIG, LDM_CONFIG))
    ae_steps = args.ae_steps or ae_cfg["trainer"]["max_steps"]
    ldm_steps = args.ldm_steps or ldm_cfg["trainer"]["max_steps"]
    kid_ratio = untrained["metrics"]["kid"]["value"] / trained["metrics"]["kid"]["value"]
    lines = [
        f"machine: {describe()}",
        f"autoencoder: {ae_steps} steps on random 32^3 patches (2 mm) of MNI152; latent 4 x 8^3 "
        f"({rec['train_values_ratio']:.0f} times fewer values)",
        f"autoencoder on the whole training volume (MNI152, {'x'.join(map(str, TRAIN_GRID))}): "
        f"PSNR {rec['train_psnr']:.2f} dB (foreground {rec['train_psnr_fg']:.2f} dB), SSIM {rec['train_ssim']:.3f}; "
        f"area+trilinear resizing through the same number of values: PSNR {rec['train_resize_psnr']:.2f} dB, "
        f"SSIM {rec['train_resize_ssim']:.3f}",
        f"autoencoder on the whole held-out volume (anatomical.nii, {'x'.join(map(str, HELD_OUT_GRID))}): "
        f"PSNR {rec['held_out_psnr']:.2f} dB (foreground {rec['held_out_psnr_fg']:.2f} dB), "
        f"SSIM {rec['held_out_ssim']:.3f}; area+trilinear resizing: PSNR {rec['held_out_resize_psnr']:.2f} dB, "
        f"SSIM {rec['held_out_resize_ssim']:.3f}",
        f"latent diffusion after {ldm_steps} steps, {trained['n_fake']} volumes vs {trained['n_real']} real "
        f"training patches, 2.5D: KID {figure(trained, 'kid')}; FID {figure(trained, 'fid')}",
        f"untrained latent model (trained autoencoder, fresh UNet), {untrained['n_fake']} volumes, 2.5D: "
        f"KID {figure(untrained, 'kid')}; FID {figure(untrained, 'fid')}",
        f"KID ratio untrained / trained: {kid_ratio:.3g}",
        "figures: " + ", ".join(p.name for p in sorted(figures.glob("latent_mri_3d_*.png"))),
        "wall time: "
        + ", ".join(f"{k} {v / 60:.1f} min" for k, v in times.items())
        + f"; total {(time.perf_counter() - start_all) / 60:.1f} min, CPU time {cpu / 60:.1f} min",
    ]
    print_report(lines, args.report)
    summary = {
        "ae_steps": ae_steps, "ldm_steps": ldm_steps, "num_samples": args.num_samples, **rec,
        "kid": trained["metrics"]["kid"]["value"], "kid_baseline": trained["metrics"]["kid"]["baseline"],
        "kid_untrained": untrained["metrics"]["kid"]["value"], "fid": trained["metrics"]["fid"]["value"],
        "fid_baseline": trained["metrics"]["fid"]["baseline"], "fid_untrained": untrained["metrics"]["fid"]["value"],
        "wall_min": (time.perf_counter() - start_all) / 60, "cpu_min": cpu / 60, "machine": describe(),
    }  # fmt: skip
    if args.report is not None:
        args.report.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    assert all(math.isfinite(float(v)) for v in (summary["kid"], summary["kid_untrained"]))


if __name__ == "__main__":
    main()
