"""Subject-level splits: no subject in both splits, deterministic, and slices follow their volume."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medgen.data.datalist import ImageRecord
from medgen.data.datamodule import MedicalImageDataModule
from medgen.data.split import split_by_subject
from medgen.errors import InputError


def _records(n_subjects: int, per_subject: int) -> list[ImageRecord]:
    return [
        ImageRecord(image=f"s{s}_{i}.nii.gz", subject=f"s{s}") for s in range(n_subjects) for i in range(per_subject)
    ]


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_no_subject_in_both_splits(seed: int) -> None:
    split = split_by_subject(_records(20, 3), val_fraction=0.25, seed=seed)
    train = {r.subject for r in split.train}
    val = {r.subject for r in split.val}
    assert not train & val
    assert len(val) == 5 and len(train) == 15
    assert len(split.train) + len(split.val) == 60


def test_split_is_deterministic_and_order_independent() -> None:
    recs = _records(10, 2)
    a = split_by_subject(recs, 0.3, seed=3)
    b = split_by_subject(list(reversed(recs)), 0.3, seed=3)
    assert {r.subject for r in a.val} == {r.subject for r in b.val}
    c = split_by_subject(recs, 0.3, seed=4)
    assert {r.subject for r in a.val} != {r.subject for r in c.val}


def test_bad_fraction() -> None:
    with pytest.raises(InputError, match=r"data.val_fraction: expected a value in \[0, 1\)"):
        split_by_subject(_records(3, 1), 1.0)


def test_slices_of_one_volume_never_cross_splits(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for s in range(6):
        nib.save(
            nib.Nifti1Image(rng.random((12, 12, 10)).astype(np.float32), np.eye(4)),
            str(tmp_path / f"vol{s}.nii.gz"),
        )
    dm = MedicalImageDataModule(
        str(tmp_path),
        modality="mri",
        spatial_dims=2,
        image_size=12,
        num_workers=0,
        val_fraction=0.34,
        min_foreground=0.0,
        batch_size=4,
    )
    dm.setup("fit")
    train_subjects = {dm.train_set[i]["subject"] for i in range(len(dm.train_set))}
    val_subjects = {dm.val_set[i]["subject"] for i in range(len(dm.val_set))}
    assert len(dm.train_set) == 4 * 10 and len(dm.val_set) == 2 * 10
    assert not train_subjects & val_subjects
    assert dm.state_dict()["val_subjects"] == sorted(val_subjects)


def test_datalist_subject_column_groups_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = ["image,subject"]
    for i in range(8):
        nib.save(
            nib.Nifti1Image(rng.random((8, 8, 4)).astype(np.float32), np.eye(4)),
            str(tmp_path / f"scan{i}.nii.gz"),
        )
        rows.append(f"scan{i}.nii.gz,patient{i // 2}")  # two scans per patient
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    dm = MedicalImageDataModule(
        str(tmp_path / "list.csv"),
        modality="mri",
        spatial_dims=3,
        image_size=8,
        num_workers=0,
        val_fraction=0.25,
    )
    dm.setup("fit")
    val = {r.subject for r in dm.val_set.records}
    train = {r.subject for r in dm.train_set.records}
    assert len(val) == 1 and not val & train
    assert len(dm.val_set) == 2
