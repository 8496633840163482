"""Train, export, evaluate and card the shipped ``mri-t1-to-t2-2d`` checkpoint (2D pix2pix, T1 -> T2-like).

Data: ``demo:mri-pairs`` (``medgen.demo_data.prepare_translation_data``): each real T1 volume paired with a T2-like
remap of itself times a smooth bias field (the target is synthetic, the anatomy real). ``val_fraction: 0.5`` with
seed 0 trains on the MNI152 T1 and holds out nibabel's ``anatomical.nii``, on which the card's numbers are measured.

1. ``medgen fit --config configs/shipped/mri-t1-to-t2-2d.yaml`` (settings of configs/quality/pix2pix_mri_2d_64.yaml);
2. ``medgen export`` into ``checkpoints/mri-t1-to-t2-2d``;
3. ``medgen translate --checkpoint checkpoints/mri-t1-to-t2-2d --input HELD_OUT_T1 --out DIR`` (the whole held-out
   volume, slice by slice, on its own grid);
4. the held-out target and source volumes mapped to [-1, 1] by the training preset (MRI: percentiles 0.5/99.5),
   and all three volumes cut into the axial slices whose target has at least 15 % foreground;
5. ``medgen evaluate --paired --data-range 2`` of the translations and of the identity (the source itself)
   against the targets: SSIM, PSNR, MAE with 95 % bootstrap CIs over slices; card and picture.

    python scripts/shipped/mri_t1_to_t2_2d.py [--out runs/shipped/mri_t1_to_t2_2d] [--reuse] [--dtype D]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import shipmore_common as common
import torch

NAME = "mri-t1-to-t2-2d"
CONFIG = common.REPO / "configs" / "shipped" / f"{NAME}.yaml"
METRICS = ("ssim", "psnr", "mae")
DATA = [
    {
        "name": "nilearn MNI152 T1 template (mni_icbm152_t1_tal_nlin_sym_09a), axial slices at 2 mm, 64x64 pad_crop",
        "licence": "ICBM152 2009a template (McConnell Brain Imaging Centre, free use with its copyright notice), "
        "shipped in nilearn (BSD-3-Clause)",
        "role": "training input, real",
    },
    {
        "name": "T2-like target of the MNI152 T1 (medgen.demo_data.t2_like times bias_field)",
        "licence": "derived by medgen (Apache-2.0)",
        "role": "training target, synthetic contrast of real anatomy",
    },
    {
        "name": "nibabel tests/data/anatomical.nii (another subject, 2 mm) and its T2-like target",
        "licence": "nibabel MIT",
        "role": "held out: the card's paired metrics, never trained on",
    },
]


def load(path: Path) -> torch.Tensor:
    """A NIfTI volume ``(X, Y, Z)`` as float32, as stored."""
    import nibabel as nib
    import numpy as np

    return torch.as_tensor(np.asarray(nib.load(path).dataobj, dtype=np.float32))


def to_unit(volume: torch.Tensor) -> torch.Tensor:
    """``(X, Y, Z)`` mapped to [-1, 1] by the MRI training preset (percentiles 0.5/99.5 of the volume)."""
    from medgen.data.presets import ModalityIntensity

    return torch.as_tensor(ModalityIntensity("mri")(volume[None]))[0]


def write_slices(volumes: dict[str, torch.Tensor], keep: list[int], out: Path) -> None:
    """Axial slices ``keep`` of each volume as ``out/NAME/slice_KKK.nii.gz``, one folder a volume."""
    import numpy as np

    from medgen.generation.writers import write_sample

    for name, volume in volumes.items():
        for k in keep:
            write_sample(volume[None, :, :, k], out / name / f"slice_{k:03d}.nii.gz", "nifti", np.eye(4), None)


def paired(real: Path, fake: Path, out: Path, reuse: bool) -> dict[str, Any]:
    """``medgen evaluate --paired`` (SSIM, PSNR, MAE over [-1, 1]); the report's metrics (reused if there)."""
    if not (reuse and (out / "report.json").exists()):
        common.medgen(["evaluate", "--paired", "--real", str(real), "--fake", str(fake), "--out", str(out),
                       "--metrics", ",".join(METRICS), "--data-range", "2", "--seed", "0"])  # fmt: skip
    return dict(json.loads((out / "report.json").read_text())["metrics"])


def main() -> None:
    """Fit (or reuse), export, translate the held-out subject, evaluate and write the card."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=common.REPO / "runs" / "shipped" / "mri_t1_to_t2_2d")
    parser.add_argument("--export-to", type=Path, default=common.CHECKPOINTS / NAME)
    parser.add_argument("--dtype", default="float16", help="export dtype (empty: float32)")
    parser.add_argument("--reuse", action="store_true", help="reuse a finished fit under --out")
    args = parser.parse_args()
    from medgen.demo_data import demo_folder

    out: Path = args.out.resolve()
    start = time.perf_counter()
    ckpt, fit_s, command = common.fit(CONFIG, out, [], args.reuse)
    folder = common.export(ckpt, args.export_to, args.dtype or None)
    pairs = demo_folder("mri-pairs").parent
    source_dir = out / "held_out_source"
    source_dir.mkdir(parents=True, exist_ok=True)
    source = source_dir / "anatomical_t1.nii.gz"
    source.write_bytes((pairs / "anatomical_t1.nii.gz").read_bytes())
    translate_s = common.medgen(["translate", "--checkpoint", str(folder), "--input", str(source_dir), "--out",
                                 str(out / "translated"), "--format", "nifti"])  # fmt: skip
    target = to_unit(load(pairs / "anatomical_t2like.nii.gz"))
    volumes = {"target": target, "pix2pix": load(out / "translated" / source.name).clamp(-1, 1),
               "identity": to_unit(load(source))}  # fmt: skip
    keep = [k for k in range(target.shape[2]) if float((target[:, :, k] > -0.95).float().mean()) >= 0.15]
    write_slices(volumes, keep, out / "slices")
    results = {m: paired(out / "slices" / "target", out / "slices" / m, out / f"eval_{m}", args.reuse)
               for m in ("pix2pix", "identity")}  # fmt: skip
    shown = keep[len(keep) // 2 - 3 : len(keep) // 2 + 3]
    rows = {name: [volumes[name][:, :, k] for k in shown] for name in ("identity", "pix2pix", "target")}
    common.picture_2d(rows, folder / "samples.png", (-1.0, 1.0))
    evaluation = {
        "held_out_slices": len(keep),
        **{f"{m}_{k}": results[m][k]["value"] for m in results for k in METRICS},
        **{f"{m}_{k}_ci95": results[m][k].get("ci95") for m in results for k in METRICS},
        "claim": "pix2pix beats the identity in SSIM and PSNR on the held-out subject (CIs not overlapping)",
        "claim_met": bool(results["pix2pix"]["ssim"]["ci95"][0] > results["identity"]["ssim"]["ci95"][1]
                          and results["pix2pix"]["psnr"]["ci95"][0] > results["identity"]["psnr"]["ci95"][1]),
    }  # fmt: skip
    record = common.training_record(
        command,
        {"generator_updates": common.trained_steps(ckpt)},
        {"fit": fit_s, "translate": translate_s, "total": time.perf_counter() - start},
    )
    extra = {
        "training": record,
        "data_sources": DATA,
        "evaluation": {"paired_held_out": evaluation},
        "picture": "samples.png: rows source T1 | pix2pix | T2-like target, six held-out axial slices",
    }
    common.export(ckpt, folder, args.dtype or None, extra, out / "eval_pix2pix" / "report.json")
    print(f"{NAME}: " + ", ".join(f"{k} {v:.4g}" for k, v in evaluation.items() if isinstance(v, float))
          + f"; claim met {evaluation['claim_met']}; {common.folder_mb(folder):.2f} MB; sha256 "
          f"{common.card_sha256(folder)}; {common.describe()}")  # fmt: skip


if __name__ == "__main__":
    main()
