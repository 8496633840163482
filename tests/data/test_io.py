"""Reading real files with their geometry, and write → read round trips."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from PIL import Image

from medgen.cli import main
from medgen.data.inspect import inspect_image
from medgen.data.io import META_SPACING, load_image, write_image
from medgen.data.phantoms import ct_phantom, write_dicom_image, write_dicom_series, xray_phantom


def _inspect_cli(path: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["inspect", str(path)]) == 0
    return json.loads(capsys.readouterr().out.strip())


def test_inspect_nifti_matches_nibabel(anatomical_nii: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = nib.load(str(anatomical_nii))
    info = _inspect_cli(anatomical_nii, capsys)
    assert info["format"] == "nifti"
    assert info["shape"] == list(ref.shape)
    assert info["spacing"] == pytest.approx([float(z) for z in ref.header.get_zooms()])
    assert info["dtype"] == "int16"
    data = np.asanyarray(ref.dataobj)
    assert (info["min"], info["max"]) == (int(data.min()), int(data.max()))
    assert info["modality"] == "mri" and info["modality_source"] == "guess"


@pytest.mark.parametrize("ext", [".mha", ".nrrd"])
def test_inspect_itk_formats_match_simpleitk(tmp_path: Path, ext: str, capsys: pytest.CaptureFixture[str]) -> None:
    ph = ct_phantom(shape=(24, 20, 12), spacing=(0.8, 0.9, 2.5), seed=1)
    ref = sitk.GetImageFromArray(np.ascontiguousarray(ph.image.transpose(2, 1, 0)))
    ref.SetSpacing(ph.spacing)
    path = tmp_path / f"ct{ext}"
    sitk.WriteImage(ref, str(path))
    info = _inspect_cli(path, capsys)
    back = sitk.ReadImage(str(path))
    assert info["format"] == ext[1:]
    assert info["shape"] == list(back.GetSize()) == [24, 20, 12]
    assert info["spacing"] == pytest.approx(list(back.GetSpacing()))
    assert info["dtype"] == "int16"
    assert info["min"] == int(ph.image.min()) and info["max"] == int(ph.image.max())
    assert info["modality"] == "ct"


def test_inspect_dicom_series_matches_simpleitk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ph = ct_phantom(shape=(32, 28, 6), spacing=(0.7, 0.7, 3.0), seed=2)
    write_dicom_series(tmp_path / "series", ph.image, spacing=ph.spacing, modality="CT")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "series")))
    ref = reader.Execute()
    info = _inspect_cli(tmp_path / "series", capsys)
    assert info["format"] == "dicom"
    assert info["shape"] == list(ref.GetSize()) == [32, 28, 6]
    assert info["spacing"] == pytest.approx(list(ref.GetSpacing()))
    assert info["spacing"] == pytest.approx(list(ph.spacing))
    assert info["modality"] == "ct" and info["modality_source"] == "header"
    img = load_image(tmp_path / "series")
    np.testing.assert_array_equal(img[0].numpy(), ph.image.astype(np.float32))


def test_inspect_real_ct_slice_matches_pydicom(ct_small_dcm: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = pydicom.dcmread(ct_small_dcm)
    info = _inspect_cli(ct_small_dcm, capsys)
    assert info["shape"] == [ds.Columns, ds.Rows]
    assert info["spacing"] == pytest.approx([float(ds.PixelSpacing[1]), float(ds.PixelSpacing[0])])
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert (info["min"], info["max"]) == (hu.min(), hu.max())
    assert info["modality"] == "ct" and info["modality_source"] == "header"


def test_inspect_xray_without_spacing_reports_unknown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ph = xray_phantom(shape=(40, 30), seed=0)
    path = write_dicom_image(tmp_path / "cr.dcm", (ph.image * 1000).astype(np.uint16), modality="CR", spacing=None)
    info = _inspect_cli(path, capsys)
    ds = pydicom.dcmread(path)
    assert info["shape"] == [ds.Columns, ds.Rows] == [40, 30]
    assert info["spacing"] is None
    assert any("spacing unknown" in w for w in info["warnings"])
    assert info["modality"] == "xray" and info["modality_source"] == "header"


def test_imager_pixel_spacing_is_used_when_pixel_spacing_is_missing(tmp_path: Path) -> None:
    image = np.arange(20 * 10, dtype=np.uint16).reshape(20, 10)
    path = write_dicom_image(
        tmp_path / "dx.dcm", image, modality="DX", spacing=(0.2, 0.1), use_imager_pixel_spacing=True
    )
    info = inspect_image(path)
    assert info.spacing == pytest.approx([0.1, 0.2])  # index order (column, row)
    assert info.shape == [20, 10]


def test_inspect_png_matches_pil(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arr = (np.random.default_rng(0).random((30, 50)) * 255).astype(np.uint8)  # (rows, cols)
    Image.fromarray(arr).save(tmp_path / "img.png")
    info = _inspect_cli(tmp_path / "img.png", capsys)
    assert info["shape"] == [50, 30]  # index order x (columns), y (rows)
    assert info["spacing"] is None
    assert info["dtype"] == "uint8"
    assert (info["min"], info["max"]) == (int(arr.min()), int(arr.max()))


def test_inspect_npy(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.linspace(-1, 2, 24, dtype=np.float32).reshape(2, 3, 4))
    info = inspect_image(tmp_path / "a.npy")
    assert info.shape == [2, 3, 4] and info.dtype == "float32" and info.min == -1 and info.max == 2


def _random_affine(rank: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    aff = np.eye(4)
    rot, _ = np.linalg.qr(rng.normal(size=(rank, rank)))
    aff[:rank, :rank] = rot @ np.diag(rng.uniform(0.5, 3.0, rank))
    aff[:rank, 3] = rng.uniform(-100, 100, rank)
    return aff


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_round_trip_keeps_array_and_affine(tmp_path: Path, spatial_dims: int, ext: str) -> None:
    shape = (12, 9, 7)[:spatial_dims]
    arr = np.random.default_rng(spatial_dims).normal(size=shape).astype(np.float32)
    aff = _random_affine(spatial_dims, seed=3)
    src = tmp_path / "src.nii.gz"
    nib.save(nib.Nifti1Image(arr, aff), str(src))
    img = load_image(src)
    np.testing.assert_allclose(img.affine.numpy(), aff, atol=1e-5)
    out = write_image(img, tmp_path / f"out{ext}")
    back = load_image(out)
    np.testing.assert_array_equal(back[0].numpy(), arr)
    np.testing.assert_allclose(back.affine.numpy(), aff, atol=1e-5)
    assert back.meta[META_SPACING] == pytest.approx(list(np.linalg.norm(aff[:spatial_dims, :spatial_dims], axis=0)))


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "x.nii.gz"
    write_image(torch.zeros(1, 4, 4, 4), target)
    before = target.read_bytes()
    with pytest.raises(Exception, match=r"(?i)dtype|object"):
        write_image(np.zeros((2, 2, 2), dtype=object), target)  # nibabel refuses object arrays
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.nii.gz"]


@pytest.mark.parametrize("last_z", [6.0, 9.0])
def test_inspect_reports_non_uniform_dicom_slices_itself(
    tmp_path: Path, last_z: float, capfd: pytest.CaptureFixture[str]
) -> None:
    paths = write_dicom_series(tmp_path / "s", np.zeros((8, 8, 4), dtype=np.int16), spacing=(1.0, 1.0, 2.0))
    ds = pydicom.dcmread(paths[-1])
    ds.ImagePositionPatient = [0.0, 0.0, last_z]  # 6 keeps the 2 mm gaps; 9 leaves a 5 mm gap (a missing slice)
    ds.save_as(paths[-1])
    info = inspect_image(tmp_path / "s")
    assert "Non uniform" not in capfd.readouterr().err  # ITK's own warning is not printed
    if last_z == 6.0:
        assert info.warnings == []
    else:
        assert len(info.warnings) == 1 and info.warnings[0].startswith("non-uniform slice spacing")
        assert "from 2 to 5 mm" in info.warnings[0]
