"""Every kind of bad input gives one line naming the file/field and the problem, and exit code 2."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medgen.cli import main
from medgen.data.datamodule import MedicalImageDataModule
from medgen.data.io import load_image, write_image
from medgen.errors import ImageReadError, InputError


def _nifti(path: Path, arr: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(path))
    return path


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def _empty(tmp: Path) -> Path:
    (tmp / "empty.nii.gz").write_bytes(b"")
    return tmp / "empty.nii.gz"


def _truncated(tmp: Path) -> Path:
    full = _nifti(tmp / "full.nii.gz", np.random.default_rng(0).normal(size=(32, 32, 32)).astype(np.float32))
    data = full.read_bytes()
    (tmp / "trunc.nii.gz").write_bytes(data[: len(data) // 2])
    return tmp / "trunc.nii.gz"


def _text_nii(tmp: Path) -> Path:
    (tmp / "notes.nii").write_text("this is a text file, not an image\n" * 20)
    return tmp / "notes.nii"


def _nan(tmp: Path) -> Path:
    arr = np.zeros((8, 8, 8), dtype=np.float32)
    arr[1, 2, 3] = np.nan
    arr[4, 4, 4] = np.inf
    return _nifti(tmp / "nan.nii.gz", arr)


def _random_dcm(tmp: Path) -> Path:
    (tmp / "noise.dcm").write_bytes(np.random.default_rng(0).bytes(2048))
    return tmp / "noise.dcm"


def _mhd_missing_raw(tmp: Path) -> Path:
    write_image(np.zeros((4, 5, 6), dtype=np.float32), tmp / "vol.mha")
    header = "ObjectType = Image\nNDims = 3\nDimSize = 4 5 6\nElementType = MET_FLOAT\nElementDataFile = vol.raw\n"
    (tmp / "vol.mhd").write_text(header)
    return tmp / "vol.mhd"


def _png_as_mha(tmp: Path) -> Path:
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp / "img.png")
    shutil.copyfile(tmp / "img.png", tmp / "img.mha")
    return tmp / "img.mha"


FILE_CASES = {
    "empty file": (_empty, "empty file (0 bytes)"),
    "truncated nii.gz": (_truncated, "truncated"),
    "text named .nii": (_text_nii, "not a NIfTI file: content is text"),
    "NaN and Inf voxels": (_nan, "2 non-finite voxels (NaN or Inf)"),
    "random bytes .dcm": (_random_dcm, "not a DICOM file"),
    "mhd without its data file": (
        _mhd_missing_raw,
        "data file 'vol.raw' named by ElementDataFile is missing",
    ),
    "PNG named .mha": (_png_as_mha, "content is PNG, but the extension '.mha' says MetaImage"),
}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_bad_file_gives_one_line_error(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make, expected = FILE_CASES[case]
    path = make(tmp_path)
    with pytest.raises(ImageReadError) as info:
        load_image(path)
    assert str(path) in str(info.value) and expected in str(info.value)
    err = _one_line_error(capsys, ["inspect", str(path)])
    assert err.startswith("medgen inspect: error: ") and str(path) in err and expected in err


def test_inspect_reports_every_path_before_failing(
    tmp_path: Path, anatomical_nii: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _empty(tmp_path)
    assert main(["inspect", str(bad), str(anatomical_nii)]) == 2
    captured = capsys.readouterr()
    assert "empty file" in captured.err and '"format": "nifti"' in captured.out


def test_inspect_folder_of_nifti_inspects_each_image(
    tmp_path: Path, anatomical_nii: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a.nii", "b.nii"):
        shutil.copy(anatomical_nii, tmp_path / name)
    assert main(["inspect", str(tmp_path)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(r["path"]).name for r in rows] == ["a.nii", "b.nii"] and {r["format"] for r in rows} == {"nifti"}
    (tmp_path / "sub").mkdir()
    err = _one_line_error(capsys, ["inspect", str(tmp_path / "sub")])
    assert "no readable images found in folder" in err


def test_4d_volume_where_3d_expected(tmp_path: Path) -> None:
    path = _nifti(tmp_path / "fmri.nii.gz", np.zeros((6, 7, 8, 5), dtype=np.float32))
    with pytest.raises(
        ImageReadError,
        match=r"fmri.nii.gz: expected a single-channel 3-D image, got 4-D shape \(6, 7, 8, 5\)",
    ):
        load_image(path, spatial_dims=3)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_4d_volume_in_a_dataset_names_the_file(
    tmp_path: Path, spatial_dims: int, capsys: pytest.CaptureFixture[str]
) -> None:
    _nifti(tmp_path / "fmri.nii.gz", np.zeros((6, 7, 8, 5), dtype=np.float32))
    err = _one_line_error(
        capsys,
        [
            "dataset",
            f"--data.data_dir={tmp_path}",
            f"--data.spatial_dims={spatial_dims}",
            "--data.modality=mri",
            "--data.num_workers=0",
        ],
    )
    assert "fmri.nii.gz" in err and "4-D shape (6, 7, 8, 5)" in err


def test_zero_size_dimension(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _nifti(tmp_path / "flat.nii.gz", np.zeros((5, 0, 4), dtype=np.float32))
    err = _one_line_error(capsys, ["inspect", str(path)])
    assert "flat.nii.gz: image has a zero-length dimension: shape (5, 0, 4)" in err


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_image_mask_shape_mismatch(tmp_path: Path, spatial_dims: int, capsys: pytest.CaptureFixture[str]) -> None:
    _nifti(tmp_path / "a.nii.gz", np.ones((8, 8, 8), dtype=np.float32))
    _nifti(tmp_path / "a_mask.nii.gz", np.ones((8, 8, 6), dtype=np.uint8))
    err = _one_line_error(
        capsys,
        [
            "dataset",
            f"--data.data_dir={tmp_path}",
            f"--data.spatial_dims={spatial_dims}",
            "--data.modality=mri",
            "--data.num_workers=0",
        ],
    )
    assert "a_mask.nii.gz: mask shape (8, 8, 6) does not match image shape (8, 8, 8)" in err


def test_folder_without_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    err = _one_line_error(capsys, ["dataset", f"--data.data_dir={tmp_path}", "--data.num_workers=0"])
    assert f"{tmp_path}: no readable images found in folder" in err


def test_datalist_row_with_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _nifti(tmp_path / "a.nii.gz", np.ones((8, 8, 8), dtype=np.float32))
    (tmp_path / "list.csv").write_text("image,label\na.nii.gz,0\nmissing.nii.gz,1\n")
    err = _one_line_error(capsys, ["dataset", f"--data.data_dir={tmp_path / 'list.csv'}", "--data.num_workers=0"])
    assert "list.csv row 2: image file 'missing.nii.gz' does not exist" in err


def test_unknown_modality(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match="data.modality: unknown modality 'pet'; expected one of ct, mri, xray, auto"):
        MedicalImageDataModule(str(tmp_path), modality="pet")
    err = _one_line_error(capsys, ["dataset", f"--data.data_dir={tmp_path}", "--data.modality=pet"])
    assert "data.modality: unknown modality 'pet'" in err


def test_skip_unreadable_reports_instead_of_failing(tmp_path: Path) -> None:
    for i in range(3):
        _nifti(tmp_path / f"ok{i}.nii.gz", np.random.default_rng(i).random((16, 16, 8)).astype(np.float32))
    bad = _truncated(tmp_path)
    (tmp_path / "full.nii.gz").unlink()
    dm = MedicalImageDataModule(
        str(tmp_path),
        modality="mri",
        spatial_dims=2,
        image_size=16,
        num_workers=0,
        val_fraction=0.0,
        skip_unreadable=True,
        min_foreground=0.0,
    )
    dm.setup("fit")
    assert [p for p, _ in dm.skipped] == [str(bad)]
    assert "truncated" in dm.skipped[0][1]
    assert len(dm.train_set) == 3 * 8


def test_gzip_truncated_inside_header(tmp_path: Path) -> None:
    raw = gzip.compress(b"\x5c\x01\x00\x00" + b"\x00" * 400)
    (tmp_path / "h.nii.gz").write_bytes(raw[:12])
    with pytest.raises(ImageReadError, match="h.nii.gz: truncated"):
        load_image(tmp_path / "h.nii.gz")
