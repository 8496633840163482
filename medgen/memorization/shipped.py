"""Regenerate the structural embedder shipped with medgen (``weights/structural_v1.safetensors``).

Run ``python -m medgen.memorization.shipped`` (3 to 10 minutes on 2 CPU cores). Training data, all embedded
demo data (nothing downloaded):

- real brain T1 MRI (MNI152 from nilearn, nibabel's ``anatomical.nii``) cut into 24 mm slabs along each axis,
  *only the slabs on the training side* of the planted-copy self-tests
  (:func:`medgen.memorization.planted.planted_mri_2d` and ``planted_mri_3d`` share one split), their central
  20 mm at 2 mm steps, so every slice seen is at least 10 mm from any held-out slice;
- the MR phantom volumes on the training side of :func:`medgen.memorization.planted.planted_phantoms_3d`,
  slices along each axis;
- the CT phantom volumes (informative slices along each axis) and X-ray phantom radiographs of
  ``medgen demo``'s data (:func:`medgen.demo_data.demo_folder`).

Anchors are balanced over groups (one per MRI volume and axis, per phantom volume, per CT volume, X-ray).
The same recipe on your own data is ``medgen memorization train-embedder --train SRC --out FILE``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor

from medgen.data.datalist import find_records
from medgen.demo_data import demo_folder
from medgen.memorization.embedders import DEFAULT_WEIGHTS
from medgen.memorization.planted import planted_mri_2d, planted_phantoms_3d, real_mri_slices
from medgen.memorization.preprocess import prepare_2d, volume_slices
from medgen.memorization.train import TrainConfig, save_embedder, train_structural, training_images

DATA_WORDS = (
    "medgen demo data: real T1 MRI slabs (MNI152, nibabel anatomical.nii) on the training side of the 2D "
    "planted-copy self-test, MR phantoms on the training side of the 3D self-test, CT phantom volumes, X-ray phantoms"
)


def shipped_training_set(size: int = 64) -> tuple[Tensor, Tensor]:
    """``(N, 1, size, size)`` prepared images and ``(N,)`` groups of the shipped embedder's training data."""
    train_subjects = set(planted_mri_2d().subjects)
    mri = [(s, subject) for s, subject in real_mri_slices(keep_mm=20.0, stride_mm=2.0) if subject in train_subjects]
    names = sorted({subject.rsplit(":", 1)[0] for _, subject in mri})
    mri_images = torch.cat([prepare_2d(s[None], size, center=True) for s, _ in mri])
    mri_groups = torch.tensor([names.index(subject.rsplit(":", 1)[0]) for _, subject in mri])
    paths = [r.image for kind in ("ct", "xray") for r in find_records(demo_folder(kind)).records]
    other, other_groups = training_images(paths, size)
    phantoms = [
        torch.cat([prepare_2d(volume_slices(v, a, 64), size, center=True) for a in range(3)])
        for v in planted_phantoms_3d().train
    ]
    ph_images = torch.cat(phantoms)
    ph_groups = torch.cat([torch.full((s.shape[0],), i) for i, s in enumerate(phantoms)])
    offset = len(names) + int(other_groups.max()) + 1
    images = torch.cat([mri_images, other, ph_images])
    return images, torch.cat([mri_groups, other_groups + len(names), ph_groups + offset])


def main(argv: list[str] | None = None) -> None:
    """Train and write the shipped embedder (or ``--out FILE``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DEFAULT_WEIGHTS), help="weights file (default: the shipped one)")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps, help="optimiser steps")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    images, groups = shipped_training_set()
    config = TrainConfig(steps=args.steps)
    result = train_structural(images, config, groups)
    save_embedder(result, Path(args.out), f"{DATA_WORDS} ({images.shape[0]} images)", config)
    print(f"wrote {args.out} (loss per 100 steps: {[round(v, 4) for v in result.losses]})")


if __name__ == "__main__":
    main()
