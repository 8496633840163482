"""MedicalImageDataModule end to end on real MRI and on phantoms, 2D and 3D."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medgen.data.datamodule import MedicalImageDataModule
from medgen.data.phantoms import ct_phantom, phantom_family, save_phantom_set, write_dicom_image
from medgen.errors import InputError


@pytest.fixture
def mri_dir(tmp_path: Path, anatomical_nii: Path) -> Path:
    d = tmp_path / "mri"
    d.mkdir()
    shutil.copyfile(anatomical_nii, d / "anat.nii")
    img = nib.load(str(anatomical_nii))
    flipped = nib.Nifti1Image(
        np.asanyarray(img.dataobj)[::-1].copy(),
        img.affine @ np.diag([-1, 1, 1, 1]) + np.array([[0, 0, 0, 64.0], [0] * 4, [0] * 4, [0] * 4]),
    )
    nib.save(flipped, str(d / "anat_lr.nii.gz"))  # same anatomy stored left-right flipped
    return d


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_real_mri_batches(mri_dir: Path, spatial_dims: int) -> None:
    batch_size = 4 if spatial_dims == 2 else 2  # two volumes; many slices
    dm = MedicalImageDataModule(
        str(mri_dir),
        modality="mri",
        spatial_dims=spatial_dims,
        image_size=32,
        batch_size=batch_size,
        num_workers=0,
        val_fraction=0.0,
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (batch_size, 1) + (32,) * spatial_dims
    assert type(batch["image"]) is torch.Tensor and batch["image"].dtype == torch.float32
    assert -1.0 <= float(batch["image"].min()) and float(batch["image"].max()) <= 1.0
    assert float(batch["image"].max()) > 0.5  # brain present, not only background


def test_reorientation_to_ras_makes_flipped_storage_identical(mri_dir: Path) -> None:
    dm = MedicalImageDataModule(
        str(mri_dir),
        modality="mri",
        spatial_dims=3,
        image_size=[33, 41, 25],
        resize_mode="pad_crop",
        batch_size=2,
        num_workers=0,
        val_fraction=0.0,
    )
    dm.setup("fit")
    a, b = dm.train_set[0]["image"], dm.train_set[1]["image"]
    torch.testing.assert_close(a, b)


def test_ct_window_maps_hu_to_unit_range(tmp_path: Path) -> None:
    ph = ct_phantom(shape=(32, 32, 8), seed=0)
    save_phantom_set(tmp_path, [ph])
    dm = MedicalImageDataModule(
        str(tmp_path),
        modality="ct",
        spatial_dims=3,
        image_size=[32, 32, 8],
        resize_mode="pad_crop",
        ct_window=[-1000, 1000],
        num_workers=0,
        val_fraction=0.0,
    )
    dm.setup("fit")
    sample = dm.train_set[0]
    img = sample["image"][0].numpy()
    expected = np.clip((ph.image.astype(np.float32) + 1000) / 2000 * 2 - 1, -1, 1)
    oriented = nib.load(str(next(tmp_path.glob("*[0-9].nii.gz"))))
    expected = nib.orientations.apply_orientation(expected, nib.orientations.io_orientation(oriented.affine))
    np.testing.assert_allclose(img, expected, atol=1e-5)
    assert sample["mask"].shape == sample["image"].shape and set(np.unique(sample["mask"])) <= {0, 1, 2, 3}


def test_named_ct_window_and_bad_window() -> None:
    with pytest.raises(InputError, match="data.ct_window: unknown window 'lungs'"):
        MedicalImageDataModule("x", ct_window="lungs")


def test_xray_monochrome1_is_inverted_so_bone_is_bright(tmp_path: Path) -> None:
    image = np.zeros((16, 16), dtype=np.uint16)
    image[4:8, :] = 3000  # "bone" band stored bright
    write_dicom_image(tmp_path / "m2.dcm", image, modality="CR", photometric="MONOCHROME2")
    write_dicom_image(tmp_path / "m1.dcm", 3000 - image, modality="CR", photometric="MONOCHROME1")
    dm = MedicalImageDataModule(
        str(tmp_path),
        modality="auto",
        spatial_dims=2,
        image_size=16,
        resize_mode="pad_crop",
        num_workers=0,
        val_fraction=0.0,
        min_foreground=0.0,
        xray_percentiles=(0, 100),
    )
    dm.setup("fit")
    first, second = (dm.train_set[i]["image"] for i in range(2))
    torch.testing.assert_close(first, second)
    assert float(first[0, 5, 0]) == 1.0 and float(first[0, 12, 0]) == -1.0


def test_conditions_from_csv_datalist(tmp_path: Path) -> None:
    phantoms = phantom_family("mri", 4, (16, 16, 6), seed=0)
    paths = save_phantom_set(tmp_path, phantoms)
    rows = ["image,age,sex,label"] + [f"{p.name},{60 + i},{'MF'[i % 2]},{i % 3}" for i, p in enumerate(paths)]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    dm = MedicalImageDataModule(
        str(tmp_path / "list.csv"),
        modality="mri",
        spatial_dims=3,
        image_size=16,
        batch_size=4,
        num_workers=0,
        val_fraction=0.0,
    )
    dm.setup("fit")
    assert dm.condition_vocab == {"sex": ["F", "M"]}
    by_subject = {dm.train_set[i]["subject"]: dm.train_set[i]["cond"] for i in range(4)}
    first = by_subject[paths[0].name.split(".")[0]]
    assert float(first["age"]) == 60 and float(first["sex"]) == 1.0 and float(first["label"]) == 0
    batch = next(iter(dm.train_dataloader()))
    assert batch["cond"]["age"].shape == (4,)
    with pytest.raises(InputError, match="data.conditions: datalist has no column"):
        MedicalImageDataModule(str(tmp_path / "list.csv"), conditions=["weight"], num_workers=0).setup("fit")


def test_json_datalist_with_masks(tmp_path: Path) -> None:
    paths = save_phantom_set(tmp_path, phantom_family("ct", 2, (16, 16, 8), seed=1))
    import json

    items = [
        {"image": p.name, "mask": p.name.replace(".nii.gz", "_mask.nii.gz"), "label": i} for i, p in enumerate(paths)
    ]
    (tmp_path / "list.json").write_text(json.dumps({"training": items}))
    dm = MedicalImageDataModule(
        str(tmp_path / "list.json"),
        modality="ct",
        spatial_dims=2,
        image_size=16,
        num_workers=0,
        val_fraction=0.0,
        min_foreground=0.0,
    )
    dm.setup("fit")
    s = dm.train_set[0]
    assert s["mask"].shape == (1, 16, 16) and len(dm.train_set) == 16


def test_3d_patches_are_random_crops(tmp_path: Path) -> None:
    phantom = ct_phantom(shape=(40, 40, 20), seed=0)
    save_phantom_set(tmp_path, [phantom])
    dm = MedicalImageDataModule(
        str(tmp_path),
        modality="ct",
        spatial_dims=3,
        image_size=[16, 16, 8],
        patches=True,
        num_workers=0,
        val_fraction=0.0,
    )
    dm.setup("fit")
    ds = dm.train_set
    a, again = ds[0]["image"], ds[0]["image"]  # type: ignore[index]
    next_epoch = ds[len(ds)]["image"]  # type: ignore[index,arg-type]  # the sampler's key for epoch 1, index 0
    assert a.shape == (1, 16, 16, 8) and not torch.equal(a, next_epoch)
    assert torch.equal(a, again)  # a draw depends on (seed, epoch, index) alone: resumed runs draw the same patches
    # patches are cut without resizing: the model's grid keeps the images' spacing (cards, written NIfTI headers)
    assert dm.describe()["spacing"] == pytest.approx(list(phantom.spacing))


@pytest.mark.parametrize("cache", ["memory", "disk", "none"])
def test_cache_modes_give_identical_samples(tmp_path: Path, cache: str) -> None:
    data = tmp_path / "data"
    save_phantom_set(data, phantom_family("ct", 2, (24, 24, 6), seed=2))
    kw = dict(modality="ct", spatial_dims=2, image_size=16, num_workers=0, val_fraction=0.0)
    ref = MedicalImageDataModule(str(data), cache="none", **kw)
    dm = MedicalImageDataModule(str(data), cache=cache, cache_dir=str(tmp_path / "cache"), **kw)
    ref.setup("fit")
    dm.setup("fit")
    assert len(dm.train_set) == len(ref.train_set) > 0
    for i in range(len(ref.train_set)):
        torch.testing.assert_close(dm.train_set[i]["image"], ref.train_set[i]["image"])


def test_describe_counts_only_training_subjects(tmp_path: Path) -> None:
    save_phantom_set(tmp_path, phantom_family("ct", 2, (16, 16, 8), seed=1))
    dm = MedicalImageDataModule(
        str(tmp_path), modality="ct", spatial_dims=3, image_size=16, num_workers=0, val_fraction=0.5
    )
    dm.setup("fit")
    described = dm.describe()
    assert (described["n_train"], described["n_subjects"]) == (1, 1)  # the second subject is validation only
    assert dm.val_set is not None and len(dm.val_set) == 1


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_describe_records_the_slice_axis_of_2d_models(tmp_path: Path, spatial_dims: int) -> None:
    """``medgen translate`` slices volumes along the recorded axis; 3D data records none."""
    save_phantom_set(tmp_path, phantom_family("ct", 2, (16, 16, 8), seed=1))
    dm = MedicalImageDataModule(str(tmp_path), modality="ct", spatial_dims=spatial_dims, image_size=16,
                                num_workers=0, val_fraction=0.5, slice_axis=0, min_foreground=0.0)  # fmt: skip
    dm.setup("fit")
    assert dm.describe()["slice_axis"] == (0 if spatial_dims == 2 else None)
