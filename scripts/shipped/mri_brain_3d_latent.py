"""Train, export, evaluate and card the shipped ``mri-brain-3d-latent`` checkpoint (3D autoencoder + latent diffusion).

Data: random 32^3 crops at 5 mm (160 mm cubes: nearly the whole brain at a random shift) of nilearn's MNI152 T1
template; nibabel's ``anatomical.nii`` is the held-out subject (the validation split, never trained on). Why crops
of a 5 mm volume rather than 2 mm patches (``benchmarks/latent_mri_3d.py``) or one whole volume: 2 mm patches gave
blobs without recognisable anatomy, one whole volume would be one training image (nothing to measure KID
against); a 160 mm crop shows a whole brain's mid-slices and still gives many different training images.

1. ``medgen fit --config configs/shipped/mri-brain-3d-latent-ae.yaml`` (KL autoencoder, 32^3 -> 4 x 8^3);
2. ``medgen fit --config configs/shipped/mri-brain-3d-latent.yaml --pretrained.autoencoder_from AE_CKPT``;
3. ``medgen export`` into ``checkpoints/mri-brain-3d-latent`` (the export holds the autoencoder too);
4. ``medgen generate`` of N volumes from the export and from the untrained baseline (same autoencoder, fresh UNet);
5. ``medgen evaluate`` (KID, Inception) of both against N random training crops, on 9 slices of each volume
   (axial, coronal, sagittal at the centre and 4 voxels either side; not the full 2.5D protocol, which the shared
   cores could not afford); the slices of one volume are not independent samples; real-vs-real split-half;
6. the card's training record and KID claim, and a picture of mid-slices (real | samples | untrained).

    python scripts/shipped/mri_brain_3d_latent.py [--out runs/shipped/mri_brain_3d_latent] [--reuse] [--dtype D]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import shipmore_common as common
import torch
from latent_mri_3d import write_datalist  # benchmarks/: the same split (MNI 8 times, anatomical.nii once)

NAME = "mri-brain-3d-latent"
AE_CONFIG = common.REPO / "configs" / "shipped" / f"{NAME}-ae.yaml"
CONFIG = common.REPO / "configs" / "shipped" / f"{NAME}.yaml"
SPACING = 5.0
#: The card's claim: KID below the untrained model's and at most this many times the real-vs-real KID.
KID_FACTOR = 6.0
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


def write_real_crops(datalist: Path, out: Path, n: int) -> list[torch.Tensor]:
    """``n`` random training crops ``(32, 32, 32)`` in [-1, 1] as NIfTI (5 mm), as ``medgen fit`` draws them."""
    import numpy as np

    from medgen.data.datamodule import MedicalImageDataModule
    from medgen.generation.writers import write_sample

    torch.manual_seed(0)
    dm = MedicalImageDataModule(str(datalist), modality="mri", spatial_dims=3, image_size=32, patches=True,
                                target_spacing=[SPACING] * 3, val_fraction=0.5, num_workers=0)  # fmt: skip
    dm.setup("fit")
    crops = [dm.train_set[k]["image"] for k in range(n)]  # type: ignore[index]
    affine = np.diag([SPACING, SPACING, SPACING, 1.0])
    for k, crop in enumerate(crops):
        write_sample(crop, out / f"crop_{k:03d}.nii.gz", "nifti", affine, None)
    return [c[0] for c in crops]


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
    parser.add_argument("--reuse", action="store_true", help="reuse finished fits under --out")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    start = time.perf_counter()
    datalist = write_datalist(out)
    data_arg = f"--data.data_dir={datalist}"
    ae_ckpt, ae_s, _ = common.fit(AE_CONFIG, out / "ae", [data_arg], args.reuse)
    ldm_ckpt, ldm_s, command = common.fit(
        CONFIG, out / "ldm", [data_arg, f"--pretrained.autoencoder_from={ae_ckpt}"], args.reuse
    )
    folder = common.export(ldm_ckpt, args.export_to, args.dtype or None)
    untrained = common.untrained_export(ldm_ckpt, CONFIG, out / "untrained_model")
    n = args.num_samples
    common.generate(folder, out / "generated", n)
    common.generate(untrained, out / "untrained", n)
    real = [v for v in write_real_crops(datalist, out / "real_crops", n)]
    sets = {"real": real, "generated": common.read_images(out / "generated", n),
            "untrained": common.read_images(out / "untrained", n)}  # fmt: skip
    slices = {name: write_slices(volumes, out / "slices" / name) for name, volumes in sets.items()}
    reports = {
        name: common.evaluate_kid(slices["real"], slices[name], out / f"eval_{name}", "-1,1", args.reuse)
        for name in ("generated", "untrained")
    }
    kid = common.kid_record(reports["generated"], reports["untrained"], KID_FACTOR)
    shown = min(3, n)
    rows = {"real": real[:shown], "samples": common.read_images(out / "generated", shown),
            "untrained": common.read_images(out / "untrained", shown)}  # fmt: skip
    tiles = {k: [s for v in vols for s in mid_slices(v)] for k, vols in rows.items()}
    common.picture_2d(tiles, folder / "samples.png", (-1.0, 1.0))
    record = common.training_record(
        command,
        {"autoencoder": common.trained_steps(ae_ckpt), "latent_diffusion": common.trained_steps(ldm_ckpt)},
        {"autoencoder_fit": ae_s, "latent_diffusion_fit": ldm_s, "total": time.perf_counter() - start},
    )
    record["stage1_command"] = f"medgen fit --config={AE_CONFIG.relative_to(common.REPO)} {data_arg}"
    extra = {"training": record, "data_sources": DATA, "evaluation": {"kid_slices": kid},
             "picture": "samples.png: rows real crops | samples | untrained, 3 volumes a row, each its "
             "axial/coronal/sagittal mid-slices"}  # fmt: skip
    common.export(ldm_ckpt, folder, args.dtype or None, extra, out / "eval_generated" / "report.json")
    print(f"{NAME}: KID {kid['kid']:.4g} {kid['kid_ci95']} untrained {kid['kid_untrained']:.4g} real-vs-real "
          f"{kid['kid_real_vs_real']:.4g} claim met {kid['claim_met']}; {common.folder_mb(folder):.2f} MB; sha256 "
          f"{common.card_sha256(folder)}; {common.describe()}")  # fmt: skip


if __name__ == "__main__":
    main()
