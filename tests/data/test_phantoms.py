import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medgen.data.phantoms import (
    SOP_CLASS_UIDS,
    ct_phantom,
    mr_phantom,
    phantom_family,
    save_phantom_set,
    write_dicom_image,
    write_dicom_series,
    xray_phantom,
)

CT_SHAPES = {2: (64, 64), 3: (48, 48, 24)}
MR_SHAPES = {2: (64, 64), 3: (40, 44, 24)}


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_ct_phantom_tissue_values(spatial_dims):
    ph = ct_phantom(CT_SHAPES[spatial_dims], seed=3)
    image, mask = ph.image, ph.mask
    assert image.shape == mask.shape == CT_SHAPES[spatial_dims]
    assert image.dtype == np.int16 and mask.dtype == np.uint8
    assert ph.modality == "ct" and len(ph.spacing) == spatial_dims
    assert image.min() >= -1024 and image.max() <= 3071
    assert set(np.unique(mask)) == {0, 1, 2, 3}
    assert abs(np.median(image[mask == 0]) + 1000) <= 50
    assert image[mask == 3].mean() > 600
    assert -900 <= image[mask == 2].mean() <= -650
    assert -150 <= image[mask == 1].mean() <= 100
    # the spine is posterior (large y) in every slice, and the body is surrounded by air
    nx, ny = mask.shape[:2]
    assert (mask[nx // 2, int(0.72 * ny)] == 3).all()
    assert (mask[nx // 2, int(0.2 * ny)] != 3).any()
    assert (mask[0] == 0).all() and (mask[-1] == 0).all()


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_ct_phantom_seeded(spatial_dims):
    shape = CT_SHAPES[spatial_dims]
    a, b, c = ct_phantom(shape, seed=1), ct_phantom(shape, seed=1), ct_phantom(shape, seed=2)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.mask, c.mask)


def test_ct_phantom_options():
    ph = ct_phantom((64, 64), spacing=(0.7, 0.8), lungs=False, noise_hu=0.0)
    assert ph.spacing == (0.7, 0.8)
    assert 2 not in np.unique(ph.mask)
    quiet = ct_phantom((64, 64), noise_hu=0.0)
    noisy = ct_phantom((64, 64), noise_hu=60.0)
    spine_only = ct_phantom((64, 64), ribs=False)
    assert spine_only.image[spine_only.mask == 3].mean() > 600
    assert 0 < (spine_only.mask == 3).sum() < (quiet.mask == 3).sum()
    np.testing.assert_array_equal(noisy.mask, quiet.mask)  # noise is drawn after the anatomy
    noise = noisy.image.astype(float) - quiet.image
    assert 55 < noise[quiet.mask > 0].std() < 65
    with pytest.raises(ValueError):
        ct_phantom((64,))
    with pytest.raises(ValueError):
        ct_phantom((32, 32, 32), spacing=(1.0, 1.0))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_mr_phantom_contrast(spatial_dims):
    ph = mr_phantom(MR_SHAPES[spatial_dims], seed=5)
    image, mask = ph.image, ph.mask
    assert image.dtype == np.float32 and image.shape == mask.shape == MR_SHAPES[spatial_dims]
    assert ph.modality == "mri"
    csf, gm, wm = (image[mask == label].mean() for label in (1, 2, 3))
    assert wm > gm > csf
    assert wm - gm > 0.1 and gm - csf > 0.2
    assert image[mask == 0].mean() < csf
    assert np.percentile(image, 99.5) == pytest.approx(1.0, abs=1e-4)
    assert image.min() >= 0  # Rician magnitude
    np.testing.assert_array_equal(image, mr_phantom(MR_SHAPES[spatial_dims], seed=5).image)


def test_xray_phantom_bone_bright_and_monochrome1_flips():
    mono2 = xray_phantom((64, 64), seed=4, depth=32)
    mono1 = xray_phantom((64, 64), seed=4, depth=32, monochrome1=True)
    assert mono2.image.dtype == np.float32 and mono2.image.shape == (64, 64)
    assert mono2.modality == "xray" and len(mono2.spacing) == 2
    assert set(np.unique(mono2.mask)) == {0, 1}
    bone = mono2.mask > 0
    soft = ~bone & (mono2.image > 0.5)  # inside the body, no bone along the ray
    assert soft.sum() > 50
    assert mono2.image[bone].mean() > mono2.image[soft].mean() + 0.2
    assert mono1.image[bone].mean() < mono1.image[soft].mean() - 0.2
    np.testing.assert_allclose(mono1.image, mono2.image.max() - mono2.image, atol=1e-6)
    # air is near zero attenuation; bone (spine) runs down the middle columns
    assert abs(np.median(mono2.image[:3])) < 0.1
    assert bone[30:34].mean() > 0.8


def test_xray_phantom_photon_noise():
    low = xray_phantom((64, 64), seed=0, depth=32, photons=1e3).image
    high = xray_phantom((64, 64), seed=0, depth=32, photons=1e6).image
    assert np.abs(np.diff(low[28:36], axis=1)).mean() > 2 * np.abs(np.diff(high[28:36], axis=1)).mean()


@pytest.mark.parametrize("modality,shape", [("ct", (48, 48)), ("mri", (32, 32, 16)), ("xray", (48, 48))])
def test_phantom_family(modality, shape):
    a = phantom_family(modality, 3, shape, seed=0)
    a_again = phantom_family(modality, 3, shape, seed=0)
    b = phantom_family(modality, 3, shape, seed=0, variant="b")
    assert len(a) == 3 and all(p.image.shape == shape and p.modality == modality for p in a)
    np.testing.assert_array_equal(a[1].image, a_again[1].image)
    assert not np.array_equal(a[0].image, a[1].image)
    # same subjects (same masks); variant b is noisier (image corners hold no anatomy) with less contrast
    np.testing.assert_array_equal(a[2].mask, b[2].mask)
    corners = np.ix_([0, 1, -2, -1], [0, 1, -2, -1])
    noise_a, noise_b = (np.mean([p.image[corners].std() for p in fam]) for fam in (a, b))
    assert noise_b > 1.5 * noise_a
    high, low = (3, 1) if modality != "xray" else (1, 0)
    contrast_a, contrast_b = (
        np.mean([p.image[p.mask == high].mean() - p.image[p.mask == low].mean() for p in fam]) for fam in (a, b)
    )
    assert contrast_b < 0.95 * contrast_a
    with pytest.raises(ValueError):
        phantom_family(modality, 1, shape, variant="c")


def test_write_dicom_image_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    image2d = rng.integers(0, 4096, size=(40, 30)).astype(np.uint16)  # (x, y) = (columns, rows)
    path = write_dicom_image(tmp_path / "cr.dcm", image2d)
    ds = pydicom.dcmread(path)
    assert (ds.Rows, ds.Columns) == image2d.shape[::-1]
    np.testing.assert_array_equal(ds.pixel_array.T, image2d)
    assert ds.Modality == "CR" and ds.SOPClassUID == SOP_CLASS_UIDS["CR"]
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert "PixelSpacing" not in ds and "ImagerPixelSpacing" not in ds


def test_write_dicom_image_spacing_photometric_rescale(tmp_path):
    image2d = np.arange(12 * 8, dtype=np.uint16).reshape(12, 8)
    ds = pydicom.dcmread(
        write_dicom_image(tmp_path / "dx.dcm", image2d, "DX", (0.2, 0.15), "MONOCHROME1", use_imager_pixel_spacing=True)
    )
    assert ds.SOPClassUID == SOP_CLASS_UIDS["DX"] and ds.PhotometricInterpretation == "MONOCHROME1"
    assert "PixelSpacing" not in ds
    assert [float(v) for v in ds.ImagerPixelSpacing] == [0.2, 0.15]
    ds = pydicom.dcmread(write_dicom_image(tmp_path / "ps.dcm", image2d, spacing=(0.5, 0.25)))
    assert [float(v) for v in ds.PixelSpacing] == [0.5, 0.25] and "ImagerPixelSpacing" not in ds
    real = np.linspace(-1.0, 3.0, 60, dtype=np.float32).reshape(6, 10)
    ds = pydicom.dcmread(write_dicom_image(tmp_path / "f.dcm", real, rescale=(0.001, -1.0)))
    values = ds.pixel_array.T * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(values, real, atol=1e-3)


def test_write_dicom_image_ct_signed(tmp_path):
    ph = ct_phantom((32, 24), seed=0)
    ds = pydicom.dcmread(write_dicom_image(tmp_path / "ct.dcm", ph.image, "CT", (1.0, 1.0)))
    assert ds.PixelRepresentation == 1 and ds.SOPClassUID == SOP_CLASS_UIDS["CT"]
    np.testing.assert_array_equal(ds.pixel_array.T, ph.image)
    with pytest.raises(ValueError):
        write_dicom_image(tmp_path / "bad.dcm", ph.image, "US")


def test_write_dicom_series_reads_back_with_simpleitk(tmp_path):
    volume = ct_phantom((32, 28, 6), seed=2).image
    spacing = (0.8, 0.7, 2.5)
    paths = write_dicom_series(tmp_path / "series", volume, spacing, series_uid="1.2.3.4.5")
    assert len(paths) == 6
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    assert {h.SeriesInstanceUID for h in headers} == {"1.2.3.4.5"}
    assert len({h.StudyInstanceUID for h in headers}) == 1 and len({h.FrameOfReferenceUID for h in headers}) == 1
    assert len({h.SOPInstanceUID for h in headers}) == 6
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "series")))
    img = reader.Execute()
    assert img.GetSize() == volume.shape
    np.testing.assert_allclose(img.GetSpacing(), spacing, atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img).transpose(2, 1, 0), volume)


@pytest.mark.parametrize("fmt", ["nifti", "mha"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_save_phantom_set(tmp_path, fmt, spatial_dims):
    phantoms = [ct_phantom(CT_SHAPES[spatial_dims][:2] + (8,) * (spatial_dims - 2), seed=i) for i in range(2)]
    paths = save_phantom_set(tmp_path, phantoms, fmt=fmt)
    suffix = ".nii.gz" if fmt == "nifti" else ".mha"
    assert [p.name for p in paths] == [f"subject_000{suffix}", f"subject_001{suffix}"]
    for path, ph in zip(paths, phantoms, strict=True):
        mask_path = path.with_name(path.name.replace(suffix, f"_mask{suffix}"))
        if fmt == "nifti":
            img, mask = nib.load(path), nib.load(mask_path)
            np.testing.assert_array_equal(np.asarray(img.dataobj), ph.image)
            np.testing.assert_array_equal(np.asarray(mask.dataobj), ph.mask)
            lps_signs = np.array([-1.0, -1.0, 1.0][:spatial_dims])  # phantom axes are LPS; NIfTI is RAS
            np.testing.assert_allclose(np.diag(img.affine)[:spatial_dims], lps_signs * np.array(ph.spacing))
        else:
            img = sitk.ReadImage(str(path))
            np.testing.assert_array_equal(sitk.GetArrayFromImage(img).T, ph.image)
            np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(mask_path))).T, ph.mask)
            np.testing.assert_allclose(img.GetSpacing(), ph.spacing)
    with pytest.raises(ValueError):
        save_phantom_set(tmp_path, phantoms, fmt="png")
