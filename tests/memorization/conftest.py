"""Memorization tests: one torch thread, planted-copy sets built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from medgen.data.io import write_image
from medgen.memorization.planted import PlantedSet, planted_mri_2d, planted_mri_3d
from tests.evaluation.conftest import _one_thread  # noqa: F401  (autouse: one torch thread per module)


@pytest.fixture(scope="session")
def planted_2d() -> PlantedSet:
    """Real MRI slices (pseudo-subjects = 24 mm slabs), copies of training slices."""
    return planted_mri_2d()


@pytest.fixture(scope="session")
def planted_3d() -> PlantedSet:
    """Real MRI slab volumes (one per pseudo-subject; only two real volumes ship), copies of training volumes."""
    return planted_mri_3d()


@pytest.fixture(scope="session")
def planted_sets(planted_2d: PlantedSet, planted_3d: PlantedSet) -> dict[int, PlantedSet]:
    return {2: planted_2d, 3: planted_3d}


def write_planted(planted: PlantedSet, root: Path, n_train: int | None = None) -> dict[str, Path]:
    """Write train/, holdout/ and generated/ folders (NumPy files for 2D, NIfTI for 3D); copies are copy_*."""
    suffix = ".npy" if planted.train[0].ndim == 3 else ".nii.gz"
    folders = {name: root / name for name in ("train", "holdout", "generated")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    train = planted.train[:n_train] if n_train else planted.train
    for i, image in enumerate(train):
        write_image(image, folders["train"] / f"train_{i:04d}{suffix}")
    for i, image in enumerate(planted.holdout):
        write_image(image, folders["holdout"] / f"holdout_{i:04d}{suffix}")
    for i, (image, source) in enumerate(zip(planted.generated, planted.copy_of.tolist(), strict=True)):
        if n_train is None or source < n_train:
            name = f"copy_{i:04d}_of_{source:04d}" if source >= 0 else f"real_{i:04d}"
            write_image(image, folders["generated"] / f"{name}{suffix}")
    return folders
