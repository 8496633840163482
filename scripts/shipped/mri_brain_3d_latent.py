"""Train, export, evaluate and card the shipped ``mri-brain-3d-latent`` checkpoint (3D autoencoder + latent diffusion).

Data: random 32^3 crops at 5 mm (160 mm cubes: nearly the whole brain at a random shift) of nilearn's MNI152 T1
template; nibabel's ``anatomical.nii`` is the held-out subject (the validation split, never trained on). Why crops
of a 5 mm volume rather than 2 mm patches (``benchmarks/latent_mri_3d.py``) or one whole volume: 2 mm patches gave
blobs without recognisable anatomy, one whole volume would be one training image (nothing to measure KID
against); a 160 mm crop shows a whole brain's mid-slices and still gives many different training images.

1. ``medgen fit --config configs/shipped/mri-brain-3d-latent-ae.yaml`` (KL autoencoder, 32^3 -> 4 x 16^3);
2. ``medgen fit --config configs/shipped/mri-brain-3d-latent.yaml --pretrained.autoencoder_from AE_CKPT``;
3. ``medgen export`` into ``checkpoints/mri-brain-3d-latent`` (the export holds the autoencoder too);
4. ``medgen generate`` of N volumes from the export and from the untrained baseline (same autoencoder, fresh UNet);
5. ``medgen evaluate`` (KID, Inception) of both against N random training crops, on 9 slices of each volume
   (axial, coronal, sagittal at the centre and 4 voxels either side; not the full 2.5D protocol, which the shared
   cores could not afford); the slices of one volume are not independent samples; real-vs-real split-half (~0:
   every real crop is the one template), and a cross-subject reference: the held-out subject's crops, drawn the
   same way, against the training crops ("how far another real brain is");
6. the card's training record and KID claim, and a picture of mid-slices (real | samples | untrained | held out).

    python scripts/shipped/mri_brain_3d_latent.py [--out runs/shipped/mri_brain_3d_latent] [--reuse] [--dtype D]

With ``--reuse`` an interrupted fit resumes from its ``last.ckpt`` (written every 250 steps; keep ``max_steps`` a
multiple of 250, or the last steps are not saved). Torch runs with one thread (``shipmore_common``; set
``OMP_NUM_THREADS`` to change it): on the 2 shared cores under load, an autoencoder step took 2.2 s with one thread
and 3.2 s with two (median of 8, 2026-12-08).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path
from typing import Any

import shipmore_common as common  # one torch thread unless OMP_NUM_THREADS says otherwise
import torch
import yaml
from latent_mri_3d import write_datalist  # benchmarks/: the same split (MNI 8 times, anatomical.nii once)

NAME = "mri-brain-3d-latent"
AE_CONFIG = common.REPO / "configs" / "shipped" / f"{NAME}-ae.yaml"
CONFIG = common.REPO / "configs" / "shipped" / f"{NAME}.yaml"
SPACING = 5.0
#: The card's claim: KID below the untrained model's and at most this many times the real-vs-real KID.
KID_FACTOR = 6.0
#: Voxel size (mm) that stretches the held-out subject to fill a crop. Its header's 2 mm is plausible (its corpus
#: callosum, ~75 mm, spans its 82 mm field of view): the volume is a central 66 x 82 x 50 mm field of one brain
#: (ventricles, corpus callosum, no cortex edge), so at 5 mm it is a 13 x 16 x 10 block in a black 32^3 crop. At
#: 4.4 mm that field is 145 x 180 x 110 mm and fills a crop as the training brains do, magnified ~2.2 times. The
#: card reports both as cross-subject references; neither is a whole second brain at the training brains' scale.
ANATOMICAL_FILL_VOXEL_MM = 4.4
#: Slice offsets from the centre (voxels) along each axis that the KID sees.
OFFSETS = (-4, 0, 4)
DATA = [
    {
        "name": "nilearn MNI152 T1 template (mni_icbm152_t1_tal_nlin_sym_09a, brain-masked average of 152 subjects), "
        "random 32^3 crops at 5 mm",
        "licence": "ICBM152 2009a template (McConnell Brain Imaging Centre, free use with "
        "its copyright notice), shipped in nilearn (BSD-3-Clause)",
        "role": "training, real (one template volume)",
    },
    {
        "name": "nibabel tests/data/anatomical.nii (another subject, 2 mm)",
        "licence": "nibabel MIT",
        "role": "held out: validation split, never trained on",
    },
]


def fit_resumable(config: Path, root: Path, extra: list[str], reuse: bool) -> tuple[Path, float, list[str]]:
    """``medgen fit --config CONFIG`` into ``root``; with ``reuse`` a finished fit is reused, an unfinished one resumed.

    Unfinished: its ``last.ckpt`` (the configs write one every 250 steps) holds fewer steps than the config's
    ``trainer.max_steps``; the fit resumes from it with ``--ckpt_path`` into a new version folder of ``root``.
    ``shipmore_common.fit`` would reuse an interrupted run as if it had finished.

    Returns:
        The run's ``last.ckpt``, the fit's wall time in seconds (fresh: measured; reused or resumed: the sum over the
        version folders of ``root``, each from its ``hparams.yaml`` to its newest file, so work lost to an
        interruption counts) and the command (without ``--ckpt_path``).
    """
    args = ["fit", f"--config={config.relative_to(common.REPO)}", *extra, f"--trainer.default_root_dir={root}",
            *common.QUIET]  # fmt: skip
    if not (reuse and list(root.glob("lightning_logs/*/checkpoints/last.ckpt"))):
        seconds = common.medgen(args)
        return common.last_checkpoint(root), seconds, ["medgen", *args]
    last = common.last_checkpoint(root)
    if common.trained_steps(last) < int(yaml.safe_load(config.read_text())["trainer"]["max_steps"]):
        common.medgen([*args, f"--ckpt_path={last}"])
    versions = [v for v in root.glob("lightning_logs/version_*") if (v / "hparams.yaml").exists()]
    seconds = sum(max(p.stat().st_mtime for p in v.rglob("*")) - (v / "hparams.yaml").stat().st_mtime for v in versions)
    return common.last_checkpoint(root), seconds, ["medgen", *args]


def write_crops(datalist: Path, out: Path, n: int, val_fraction: float = 0.5) -> list[torch.Tensor]:
    """``n`` random training crops ``(32, 32, 32)`` in [-1, 1] as NIfTI (5 mm), as ``medgen fit`` draws them."""
    import numpy as np

    from medgen.data.datamodule import MedicalImageDataModule
    from medgen.generation.writers import write_sample

    torch.manual_seed(0)
    dm = MedicalImageDataModule(str(datalist), modality="mri", spatial_dims=3, image_size=32, patches=True,
                                target_spacing=[SPACING] * 3, val_fraction=val_fraction, num_workers=0)  # fmt: skip
    dm.setup("fit")
    crops = [dm.train_set[k % len(dm.train_set)]["image"] for k in range(n)]  # type: ignore[index,arg-type]
    affine = np.diag([SPACING, SPACING, SPACING, 1.0])
    for k, crop in enumerate(crops):
        write_sample(crop, out / f"crop_{k:03d}.nii.gz", "nifti", affine, None)
    return [c[0] for c in crops]


def write_cross_subject_crops(datalist: Path, out: Path, n: int, voxel_mm: float | None) -> list[torch.Tensor]:
    """``n`` random crops of the held-out subject (``anatomical.nii``), drawn as the training crops are.

    Args:
        datalist: The run's datalist; its ``anatomical`` row is the held-out volume (never trained on).
        out: Folder for the crops and a one-subject datalist (and the rescaled volume).
        n: Number of crops.
        voxel_mm: The volume's voxel size to assume (``None``: its header's 2 mm; see ``ANATOMICAL_FILL_VOXEL_MM``).
    """
    import nibabel as nib
    import numpy as np

    with datalist.open() as f:
        source = Path(next(row["image"] for row in csv.DictReader(f) if row["subject"] == "anatomical"))
    out.mkdir(parents=True, exist_ok=True)
    if voxel_mm is not None:
        image = nib.load(source)
        affine = image.affine.copy()
        affine[:3, :3] *= voxel_mm / float(image.header.get_zooms()[0])
        nib.save(nib.Nifti1Image(np.asarray(image.dataobj, dtype=np.float32), affine), out / "anatomical_rescaled.nii")
        source = out / "anatomical_rescaled.nii"
    held_out = out / "datalist.csv"
    with held_out.open("w", newline="") as f:
        csv.writer(f).writerows([["image", "subject"], *[[str(source), "anatomical"]] * n])
    return write_crops(held_out, out / "crops", n, val_fraction=0.0)


def cross_subject_record(kid: float, header: dict[str, Any], filled: dict[str, Any]) -> dict[str, Any]:
    """The card's cross-subject references: KID of the held-out subject's crops against the training crops.

    The split-half real-vs-real KID is ~0 (every real crop is the one template, shifted), so no model comes within
    a factor of it; "how far another real brain is" is a reference a sample set can be measured against.

    Args:
        kid: The samples' KID.
        header: ``medgen evaluate`` report of the held-out crops at the header's 2 mm (the training protocol).
        filled: The same with ``ANATOMICAL_FILL_VOXEL_MM`` voxels (the field fills the crop).
    """
    ref, fill = header["metrics"]["kid"], filled["metrics"]["kid"]
    return {
        "kid_cross_subject": ref["value"], "kid_cross_subject_ci95": ref.get("ci95"),
        "kid_over_cross_subject": kid / ref["value"],
        "kid_cross_subject_filled": fill["value"], "kid_cross_subject_filled_ci95": fill.get("ci95"),
        "kid_over_cross_subject_filled": kid / fill["value"],
        "cross_subject": f"KID of {header['n_fake']} slices (9 a crop) of random 32^3 crops at 5 mm of the held-out "
        "subject (nibabel anatomical.nii, never trained on), drawn as the training crops are, against the training "
        "crops' slices. The volume is a central 66 x 82 x 50 mm field of one brain (header 2 mm), so its crops are a "
        f"13 x 16 x 10 block in black; 'filled': its voxels taken as {ANATOMICAL_FILL_VOXEL_MM} mm so that the field "
        "fills the crop (magnified ~2.2 times). References only: no claim was set on them.",
    }  # fmt: skip


def mid_slices(volume: torch.Tensor) -> list[torch.Tensor]:
    """Axial, coronal and sagittal mid-slices of a ``(32, 32, 32)`` RAS volume as ``(X, Y)``-style tiles."""
    x, y, z = (s // 2 for s in volume.shape)
    return [volume[:, :, z], volume[:, y, :], volume[x, :, :]]


def write_slices(volumes: list[torch.Tensor], out: Path) -> Path:
    """Axial, coronal and sagittal slices at the centre and 4 voxels either side of each ``(32, 32, 32)`` volume.

    9 a volume, as 2D NIfTI in [-1, 1]: what the card's KID compares (the full 2.5D protocol, 96 slices a volume,
    took ~4 min a volume of Inception features on the shared cores).
    """
    import numpy as np

    from medgen.generation.writers import write_sample

    for v, volume in enumerate(volumes):
        for offset in OFFSETS:
            x, y, z = (s // 2 + offset for s in volume.shape)
            for plane, image in zip("zyx", (volume[:, :, z], volume[:, y, :], volume[x, :, :]), strict=True):
                name = f"vol{v:02d}_{plane}{offset:+d}.nii.gz"
                write_sample(image.clamp(-1, 1)[None], out / name, "nifti", np.eye(4), None)
    return out


def main() -> None:
    """Fit both stages (or reuse them), export, evaluate and write the card."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=common.REPO / "runs" / "shipped" / "mri_brain_3d_latent")
    parser.add_argument("--export-to", type=Path, default=common.CHECKPOINTS / NAME)
    parser.add_argument("--num-samples", type=int, default=8, help="volumes generated, and real crops")
    parser.add_argument("--dtype", default="float16", help="export dtype (empty: float32)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse finished fits under --out, resume unfinished ones (and reuse finished KID reports)",
    )
    args = parser.parse_args()
    out: Path = args.out.resolve()
    datalist = write_datalist(out)
    data_arg = f"--data.data_dir={datalist}"
    ae_ckpt, ae_s, _ = fit_resumable(AE_CONFIG, out / "ae", [data_arg], args.reuse)
    ldm_ckpt, ldm_s, command = fit_resumable(
        CONFIG, out / "ldm", [data_arg, f"--pretrained.autoencoder_from={ae_ckpt}"], args.reuse
    )
    start = time.perf_counter()
    folder = common.export(ldm_ckpt, args.export_to, args.dtype or None)
    untrained = common.untrained_export(ldm_ckpt, CONFIG, out / "untrained_model")
    n = args.num_samples
    common.generate(folder, out / "generated", n)
    common.generate(untrained, out / "untrained", n)
    real = write_crops(datalist, out / "real_crops", n)
    cross = {
        "cross_subject": write_cross_subject_crops(datalist, out / "cross_subject", n, None),
        "cross_subject_filled": write_cross_subject_crops(
            datalist, out / "cross_subject_filled", n, ANATOMICAL_FILL_VOXEL_MM
        ),
    }
    sets = {"real": real, "generated": common.read_images(out / "generated", n),
            "untrained": common.read_images(out / "untrained", n), **cross}  # fmt: skip
    slices = {name: write_slices(volumes, out / "slices" / name) for name, volumes in sets.items()}
    reports = {
        name: common.evaluate_kid(slices["real"], slices[name], out / f"eval_{name}", "-1,1", args.reuse)
        for name in ("generated", "untrained", *cross)
    }
    kid = common.kid_record(reports["generated"], reports["untrained"], KID_FACTOR)
    kid |= cross_subject_record(kid["kid"], reports["cross_subject"], reports["cross_subject_filled"])
    shown = min(3, n)
    rows = {"real": real[:shown], "samples": common.read_images(out / "generated", shown),
            "untrained": common.read_images(out / "untrained", shown),
            "held_out": cross["cross_subject_filled"][:shown]}  # fmt: skip
    tiles = {k: [s for v in vols for s in mid_slices(v)] for k, vols in rows.items()}
    common.picture_2d(tiles, folder / "samples.png", (-1.0, 1.0))
    after_s = time.perf_counter() - start  # export, generate, evaluate (this run)
    seconds = {"autoencoder_fit": ae_s, "latent_diffusion_fit": ldm_s, "export_generate_evaluate": after_s,
               "total": ae_s + ldm_s + after_s}  # fmt: skip
    steps = {"autoencoder": common.trained_steps(ae_ckpt), "latent_diffusion": common.trained_steps(ldm_ckpt)}
    record = common.training_record(command, steps, seconds)
    record["stage1_command"] = f"medgen fit --config={AE_CONFIG.relative_to(common.REPO)} {data_arg}"
    extra = {"training": record, "data_sources": DATA, "evaluation": {"kid_slices": kid},
             "picture": "samples.png: rows real crops | samples | untrained | held-out subject stretched to fill "
             "the crop (4.4 mm voxels), 3 volumes a row, each its axial/coronal/sagittal mid-slices"}  # fmt: skip
    common.export(ldm_ckpt, folder, args.dtype or None, extra, out / "eval_generated" / "report.json")
    print(f"{NAME}: KID {kid['kid']:.4g} {kid['kid_ci95']} untrained {kid['kid_untrained']:.4g} real-vs-real "
          f"{kid['kid_real_vs_real']:.4g} cross-subject {kid['kid_cross_subject']:.4g} claim met {kid['claim_met']}; "
          f"{common.folder_mb(folder):.2f} MB; sha256 "
          f"{common.card_sha256(folder)}; {common.describe()}")  # fmt: skip


if __name__ == "__main__":
    main()
