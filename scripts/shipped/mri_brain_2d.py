"""Train, export, evaluate and card the shipped ``mri-brain-2d`` checkpoint (2D DDPM, 64x64 axial brain T1).

Data: nilearn's MNI152 ICBM 2009a T1 template only (``medgen.demo_data.real_mri_volumes()[0]``), resampled to
2 mm in-plane, plus offline-augmented copies (:func:`prepare_training_data`; the data module has no on-the-fly
augmentation); nibabel's ``anatomical.nii`` is the held-out subject and is never trained on. Steps, each a
``medgen`` command in a fresh process:

1. ``medgen fit --config configs/shipped/mri_brain_2d.yaml`` (one torch thread; ``max_time`` ends it; an existing
   run under ``--out`` is resumed from its ``last.ckpt``, which returns at once when it is finished);
2. ``medgen export --dtype float16`` into ``checkpoints/mri-brain-2d``, and the untrained baseline (the same config,
   a fresh network, seed 0);
3. ``medgen generate`` of ``--num-samples`` images from both with the card's sampler (DPM-Solver++ 25 steps,
   seed 0), and ``medgen evaluate --metrics kid`` of each against the template's un-augmented axial slices
   (:func:`write_real`; Inception features, 95 % CI; the real-vs-real baseline is evaluate's split-half: two
   disjoint seeded random halves of the real slices at the generated set's N, capped at half the real slices);
4. the card (``--card-extra``: training command, steps, wall time, machine, data and licences, KID with
   baselines and the claim the slow test checks), ``samples.png`` (rows: real | samples | untrained) and
   ``benchmarks/results/mri_brain_2d.json``.

    python scripts/shipped/mri_brain_2d.py [--out runs/shipped/mri_brain_2d] [--num-samples 128]

About 60 minutes on 2 shared CPU cores (50 of them training).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import shipmore_common as common

NAME = "mri-brain-2d"
CONFIG = common.REPO / "configs" / "shipped" / "mri_brain_2d.yaml"
RESULT = common.REPO / "benchmarks" / "results" / "mri_brain_2d.json"
#: The card's claim (checked by tests/shipped/test_mri_brain_2d.py): KID below the untrained net's, and at most
#: this many times the real-vs-real split-half KID.
FACTOR = 20.0
DATA = [
    {
        "name": "MNI152 ICBM 2009a nonlinear symmetric T1 template (average of 152 adults), "
        "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz from the nilearn wheel",
        "licence": "nilearn BSD-3-Clause; the template's own licence is not stated in the wheel (McConnell Brain "
        "Imaging Centre, MNI: free use with attribution; see nilearn.datasets.load_mni152_template)",
        "role": "training: the only training subject; 113 axial slices (> 15 % foreground) at 64x64, with 9 "
        "augmented copies (left-right flip; rotation about the axial normal up to 6 degrees, scale 0.95-1.05, "
        "shift up to 3 mm, seeded)",
    },
    {
        "name": "nibabel tests/data/anatomical.nii (one SPM-normalised T1 subject)",
        "licence": "nibabel MIT",
        "role": "held out: never trained on (fine-tuning demo and memorization hold-out)",
    },
]


def _fit(out: Path, datalist: Path) -> tuple[Path, float, list[str]]:
    """Fit, or resume the run under ``out`` from its ``last.ckpt``; the checkpoint, training seconds, command."""
    args = ["fit", f"--config={CONFIG.relative_to(common.REPO)}", f"--data.data_dir={datalist}",
            f"--trainer.default_root_dir={out / 'fit'}", *common.QUIET]  # fmt: skip
    found = list((out / "fit").glob("lightning_logs/*/checkpoints/last.ckpt"))
    common.medgen([*args, f"--ckpt_path={common.last_checkpoint(out / 'fit')}"] if found else args)
    ckpt = common.last_checkpoint(out / "fit")
    return ckpt, _training_seconds(ckpt), ["medgen", *args]


def _training_seconds(ckpt: Path) -> float:
    """Training time recorded by Lightning's Timer (``max_time``) in the checkpoint, across resumptions."""
    from medgen.store.ckpt import read_checkpoint

    timer = read_checkpoint(ckpt)["callbacks"].get("Timer", {})
    return float(timer.get("time_elapsed", {}).get("train", float("nan")))


def write_real(out: Path) -> Path:
    """The template's axial slices as the config's data section prepares them (1 mm source, no augmentation).

    Written as NIfTI in [-1, 1] (generated MRI is written in [-1, 1]); returns the folder. The slow test writes the
    same set.
    """
    from medgen.demo_data import real_mri_volumes

    out.mkdir(parents=True, exist_ok=True)
    one = out.parent / "real.csv"
    with one.open("w", newline="") as f:
        csv.writer(f).writerows([("image", "subject"), (str(real_mri_volumes()[0]), "mni152")])
    if not list(out.glob("*.nii.gz")):
        common.write_real_2d(CONFIG, one, out, None)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every step; print and return the card's evaluation block."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=common.REPO / "runs" / "shipped" / "mri_brain_2d")
    parser.add_argument("--export-to", type=Path, default=common.CHECKPOINTS / NAME)
    parser.add_argument("--num-samples", type=int, default=128, help="images generated (trained and untrained)")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    start = time.perf_counter()
    datalist = prepare_training_data(out / "data")
    ckpt, fit_s, command = _fit(out, datalist)
    folder = common.export(ckpt, args.export_to, "float16")
    untrained = common.untrained_export(ckpt, CONFIG, out / "untrained_model")
    gen_s = common.generate(folder, out / "generated", args.num_samples)
    common.generate(untrained, out / "untrained", args.num_samples)
    real = write_real(out / "real")
    trained_report = common.evaluate_kid(real, out / "generated", out / "eval_trained", "-1,1")
    untrained_report = common.evaluate_kid(real, out / "untrained", out / "eval_untrained", "-1,1")
    kid = common.kid_record(trained_report, untrained_report, FACTOR)
    kid["real_vs_real_split"] = (
        "medgen evaluate's split-half baseline: two disjoint seeded (seed 0) random halves of the "
        f"{kid['n_real']} real slices, min(N_fake, N_real // 2) each; neighbouring slices of one template are "
        "alike, so this is an optimistic 'no difference' level"
    )
    kid["sampling"] = {"method": "dpm++", "num_steps": 25, "seed": 0, "num_samples": args.num_samples,
                       "seconds": round(gen_s, 1)}  # fmt: skip
    shown = 8
    slices = common.read_images(real, 10**6)  # every slice, inferior to superior; show them evenly spread
    spread = [slices[int(k)] for k in np.linspace(0, len(slices) - 1, shown).round()]
    rows = {"real": spread, "samples": common.read_images(out / "generated", shown),
            "untrained": common.read_images(out / "untrained", shown)}  # fmt: skip
    common.picture_2d(rows, folder / "samples.png", (-1.0, 1.0))
    record = common.training_record(command, {"ddpm": common.trained_steps(ckpt)},
                                    {"fit": fit_s, "script_run": time.perf_counter() - start})  # fmt: skip
    record["wall_time_note"] = (
        "fit: Lightning Timer's training time, across resumptions (max_time 50 min); script_run: this invocation "
        "of the script (fit or its resumption + export + generation + evaluation)"
    )
    record["script"] = "python scripts/shipped/mri_brain_2d.py"
    record["config"] = str(CONFIG.relative_to(common.REPO))
    extra = {
        "training": record,
        "data_sources": DATA,
        "held_out": "nibabel tests/data/anatomical.nii",
        "conditions_note": "unconditional: the data module gives no per-slice scalar (slice position) condition",
        "evaluation": {"kid": kid},
        "picture": "samples.png: rows real | samples (DPM-Solver++ 25 steps) | untrained net",
    }
    common.export(ckpt, folder, "float16", extra, out / "eval_trained" / "report.json")
    result = {"name": NAME, "sha256": common.card_sha256(folder), "mb": round(common.folder_mb(folder), 2),
              "kid": kid, "training": record}  # fmt: skip
    RESULT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{NAME}: KID {kid['kid']:.4g} {kid['kid_ci95']} untrained {kid['kid_untrained']:.4g} real-vs-real "
          f"{kid['kid_real_vs_real']:.4g} claim met {kid['claim_met']}; {result['mb']} MB; sha256 "
          f"{result['sha256']}; {common.describe()}")  # fmt: skip
    return kid


#: Offline augmentation of the one training volume: copies per orientation (original and left-right flip).
AFFINE_COPIES = 4


def prepare_training_data(out: Path, copies: int = AFFINE_COPIES, seed: int = 0) -> Path:
    """Write the MNI152 template and augmented copies as NIfTI plus ``train.csv`` (one subject); return the CSV.

    The copies are the template flipped left-right and, for both orientations, ``copies`` resamplings with a
    random rotation about the axial normal (±6°), an in-plane scaling (±5 %) and a shift (±3 mm), linear
    interpolation. All rows share the subject ``mni152``.
    """
    import nibabel as nib
    from scipy import ndimage

    from medgen.demo_data import real_mri_volumes

    csv_path = out / "train.csv"
    if csv_path.exists():
        return csv_path
    out.mkdir(parents=True, exist_ok=True)
    src = nib.as_closest_canonical(nib.load(str(real_mri_volumes()[0])))
    # 2 mm in-plane (1 mm between slices): the 64x64 slices lose nothing, and slicing costs a quarter
    volume = ndimage.zoom(np.asarray(src.dataobj, dtype=np.float32), (0.5, 0.5, 1.0), order=1)
    affine = src.affine @ np.diag([2.0, 2.0, 1.0, 1.0])
    rng = np.random.default_rng(seed)
    rows = []
    for flip in (False, True):
        base = volume[::-1].copy() if flip else volume
        variants = [base]
        for _ in range(copies):
            angle = np.deg2rad(rng.uniform(-6, 6))
            scale = rng.uniform(0.95, 1.05)
            shift = rng.uniform(-1.5, 1.5, size=2)  # voxels of 2 mm
            rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / scale
            matrix = np.eye(3)
            matrix[:2, :2] = rot
            centre = (np.array(volume.shape) - 1) / 2
            offset = centre - matrix @ centre - np.array([*shift, 0.0])
            variants.append(ndimage.affine_transform(base, matrix, offset=offset, order=1))
        for i, v in enumerate(variants):
            name = f"mni152_{'flip' if flip else 'orig'}_{i}.nii.gz"
            nib.save(nib.Nifti1Image(np.clip(v, 0, None).astype(np.float32), affine), str(out / name))
            rows.append((name, "mni152"))
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("image", "subject"))
        writer.writerows(rows)
    return csv_path


if __name__ == "__main__":
    main()
