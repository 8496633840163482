"""Seeded synthetic phantoms (CT, MRI, X-ray) and writers for NIfTI, MHA and DICOM.

These images are for tests and demos: they let the CT, MRI and X-ray code paths (HU windows,
DICOM series geometry, photometric inversion, spacing handling) run when real files are scarce.
They are anatomically crude on purpose: nested ellipses/ellipsoids with plausible intensities.

Conventions: arrays are indexed ``(x, y)`` or ``(x, y, z)`` in voxels, with ``x`` left-right, ``y``
anterior-to-posterior (the DICOM/LPS direction, so the spine has large ``y``) and ``z`` along the
body axis. ``spacing`` is in mm per array axis. One code path builds 2D and 3D images: a 2D shape
gives an axial section through the same kind of anatomy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DSfloat
from scipy import ndimage

#: SOP Class UIDs of the storage classes the writers produce, by DICOM Modality.
SOP_CLASS_UIDS: dict[str, str] = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
}
HU_MIN, HU_MAX = -1024, 3071
Vector = np.ndarray | Sequence[float]
#: Linear attenuation of water (mm^-1) at a typical diagnostic effective energy (~70 keV).
MU_WATER = 0.02


@dataclass
class Phantom:
    """One synthetic subject.

    Attributes:
        image: ``(x, y[, z])`` intensities: int16 HU (CT), float32 (MRI, X-ray line integrals).
        mask: Same spatial shape, uint8 labels (see each generator for their meaning).
        spacing: mm per array axis.
        modality: ``"ct"``, ``"mri"`` or ``"xray"``.
    """

    image: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, ...]
    modality: str


def _check_geometry(shape: Sequence[int], spacing: Sequence[float]) -> tuple[tuple[int, ...], tuple]:
    """Validate a 2D/3D shape; cut ``spacing`` to its rank (a 3D default serves 2D too)."""
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (2, 3) or min(shape) < 4:
        raise ValueError(f"shape must have 2 or 3 axes of at least 4 voxels, got {shape}")
    if len(spacing) < len(shape) or min(spacing[: len(shape)]) <= 0:
        raise ValueError(f"spacing {tuple(spacing)} needs {len(shape)} positive values")
    return shape, tuple(float(s) for s in spacing[: len(shape)])


@dataclass
class _Canvas:
    """A phantom under construction: normalised open grid, generator, values and labels.

    ``grid[i]`` holds axis ``i``'s coordinates in [-1, 1], shaped to broadcast (like ``np.ogrid``).
    Centres and radii are given for 3 axes; a 2D grid ignores the third, so one code path draws
    both a 3D volume and its axial section.
    """

    grid: list[np.ndarray]
    rng: np.random.Generator
    values: np.ndarray
    labels: np.ndarray

    @classmethod
    def new(cls, shape: tuple[int, ...], seed: int, background: float) -> _Canvas:
        """Canvas filled with ``background`` and label 0."""
        axes = [(np.arange(n) - (n - 1) / 2) / (n / 2) for n in shape]
        grid = [a.reshape([-1 if i == j else 1 for j in range(len(shape))]) for i, a in enumerate(axes)]
        values = np.full(shape, background, dtype=np.float64)
        return cls(grid, np.random.default_rng(seed), values, np.zeros(shape, dtype=np.uint8))

    def r2(self, centre: Vector, radii: Vector) -> np.ndarray:
        """Squared normalised radius of an axis-aligned ellipsoid (``np.inf`` radius: a cylinder)."""
        total = np.zeros(self.values.shape)
        for g, c, r in zip(self.grid, centre, radii, strict=False):
            total = total + ((g - c) / r) ** 2
        return total

    def smooth(self, max_freq: int, terms: int = 6) -> np.ndarray:
        """Random sum of low-frequency cosines, scaled so that ``max |field| == 1``."""
        field = np.zeros(self.values.shape)
        for _ in range(terms):
            freqs = self.rng.integers(0, max_freq + 1, size=3)
            phase = sum(np.pi * f * g for f, g in zip(freqs, self.grid, strict=False))
            field = field + self.rng.uniform(0.5, 1.0) * np.cos(phase + self.rng.uniform(0, 2 * np.pi))
        return field / max(float(np.abs(field).max()), 1e-6)

    def paint(self, region: np.ndarray, value: float | np.ndarray, label: int | None = None) -> None:
        """Set ``value`` (a scalar or a full-size array) and optionally ``label`` inside ``region``."""
        self.values[region] = np.broadcast_to(value, self.values.shape)[region]
        if label is not None:
            self.labels[region] = label


def _ct_body(cv: _Canvas) -> np.ndarray:
    """Paint the body (fat layer, textured soft tissue, heart); return its normalised centre."""
    centre = np.array([*cv.rng.uniform(-0.04, 0.04, 2), cv.rng.uniform(-0.05, 0.05)])
    radii = np.array([0.86, 0.66, 2.5]) * cv.rng.uniform(0.93, 1.03, 3)
    cv.paint(cv.r2(centre, radii) <= 1, cv.rng.uniform(-120.0, -80.0), 1)
    inner = cv.r2(centre, radii - [0.07, 0.07, 0.0]) <= 1
    cv.paint(inner, np.clip(35.0 + 12.0 * cv.smooth(max_freq=3), 0.0, 60.0))
    cv.paint(inner & (cv.r2(centre + [0.08, -0.2, 0.0], [0.22, 0.2, 0.35]) <= 1), cv.rng.uniform(40.0, 55.0))
    return centre


def _ct_lungs(cv: _Canvas, centre: np.ndarray) -> None:
    """Paint two lung ellipsoids of -850 to -700 HU, left and right of the heart."""
    for side in (-1.0, 1.0):
        radii = np.array([0.28, 0.42, 0.75]) * cv.rng.uniform(0.92, 1.05, 3)
        lung_hu = np.clip(cv.rng.uniform(-845.0, -800.0) + 10.0 * cv.smooth(max_freq=4), -850.0, -700.0)
        cv.paint(cv.r2(centre + [side * 0.36, -0.05, 0.0], radii) <= 1, lung_hu, 2)


def _ct_bones(cv: _Canvas, centre: np.ndarray, ribs: bool) -> None:
    """Paint the spine (posterior cylinder with a cortical rim) and optionally a broken rib shell."""
    spine_c, spine_r = centre + [0.0, 0.45, 0.0], np.array([0.12, 0.12, np.inf])
    spine = (cv.r2(spine_c, spine_r) <= 1) & (cv.labels > 0)
    cv.paint(spine, cv.rng.uniform(1200.0, 1500.0), 3)
    cv.paint(spine & (cv.r2(spine_c, 0.6 * spine_r) <= 1), cv.rng.uniform(700.0, 900.0))
    if not ribs:
        return
    shell_c = centre + [0.0, -0.03, 0.0]
    shell = (cv.r2(shell_c, [0.76, 0.58, 0.85]) <= 1) & (cv.r2(shell_c, [0.65, 0.47, 0.85]) > 1)
    theta = np.arctan2(cv.grid[1] - shell_c[1], cv.grid[0] - shell_c[0])
    shell &= np.cos(7 * theta + cv.rng.uniform(0, 2 * np.pi)) > -0.3  # gaps between rib arcs
    if len(cv.grid) == 3:  # separate ribs along the body axis
        shell &= np.sin(2 * np.pi * 1.25 * cv.grid[2] + cv.rng.uniform(0, 2 * np.pi)) > -0.2
    cv.paint(shell, cv.rng.uniform(1100.0, 1400.0), 3)


def ct_phantom(
    shape: Sequence[int] = (64, 64, 48),
    spacing: Sequence[float] = (1.0, 1.0, 2.5),
    seed: int = 0,
    lungs: bool = True,
    noise_hu: float = 20.0,
    ribs: bool = True,
    contrast: float = 1.0,
) -> Phantom:
    """Synthetic chest CT in Hounsfield units (a 2D shape gives one axial slice).

    Air (-1000) surrounds an ellipsoidal body: a fat layer (~-100), soft tissue (0 to 60), two lungs
    (-850 to -700), a posterior spine (+700 to +1500) and rib arcs. The image is blurred by 0.7
    voxel, then Gaussian noise is added. Use at least ~48 voxels in-plane; smaller images are
    dominated by partial volume.

    Args:
        shape: ``(x, y)`` or ``(x, y, z)`` voxels.
        spacing: mm per axis; a longer tuple is cut to the rank of ``shape``.
        seed: Seed of body size/position jitter, tissue values, texture and noise.
        lungs: Add two lungs.
        noise_hu: Standard deviation of the noise (HU).
        ribs: Add rib arcs around the lungs.
        contrast: Scale of tissue HU around soft tissue (40 HU) inside the body; air stays -1000.

    Returns:
        ``image`` int16 HU within [-1024, 3071]; ``mask`` 0 air, 1 body (soft tissue, fat), 2 lung,
        3 bone.
    """
    shape, spacing = _check_geometry(shape, spacing)
    cv = _Canvas.new(shape, seed, background=-1000.0)
    centre = _ct_body(cv)
    if lungs:
        _ct_lungs(cv, centre)
    _ct_bones(cv, centre, ribs)
    body = cv.labels > 0
    cv.values[body] = 40.0 + contrast * (cv.values[body] - 40.0)
    hu = ndimage.gaussian_filter(cv.values, sigma=0.7) + cv.rng.normal(0.0, noise_hu, shape)
    image = np.clip(np.rint(hu), HU_MIN, HU_MAX).astype(np.int16)
    return Phantom(image=image, mask=cv.labels, spacing=spacing, modality="ct")


def _mr_labels(cv: _Canvas) -> None:
    """Label a head: 1 CSF (outer ring and ventricles), 2 GM, 3 WM with a folded edge."""
    centre = np.array([*cv.rng.uniform(-0.04, 0.04, 2), cv.rng.uniform(-0.05, 0.05)])
    radii = np.array([0.78, 0.88, 0.8]) * cv.rng.uniform(0.94, 1.03, 3)
    cv.labels[cv.r2(centre, radii) <= 1] = 1
    cv.labels[cv.r2(centre, 0.9 * radii) <= 1] = 2
    # WM edge at 0.59 to 0.76 of the radii: always inside the GM
    cv.labels[cv.r2(centre, 0.68 * radii) <= 1.0 + 0.25 * cv.smooth(max_freq=6, terms=10)] = 3
    for side in (-1.0, 1.0):
        ventricle = centre + [side * 0.11 * radii[0], -0.05, 0.05]
        cv.labels[cv.r2(ventricle, [0.07, 0.25, 0.2] * radii) <= 1] = 1


def mr_phantom(
    shape: Sequence[int] = (64, 64, 48),
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    seed: int = 0,
    noise: float = 0.03,
    contrast: float = 1.0,
) -> Phantom:
    """Synthetic T1-weighted brain MRI (a 2D shape gives one axial slice).

    Intensities WM 0.85 > GM 0.6 > CSF 0.2 are blurred by 0.6 voxel (partial volume), multiplied by
    a smooth bias field (within ±15 %), made Rician (magnitude of signal plus complex Gaussian
    noise) and scaled so that the 99.5th percentile is 1.0.

    Args:
        shape: ``(x, y)`` or ``(x, y, z)`` voxels.
        spacing: mm per axis; a longer tuple is cut to the rank of ``shape``.
        seed: Seed of the head size/position, cortical folding, bias field and noise.
        noise: Standard deviation of each complex noise component, before scaling.
        contrast: Scale of tissue intensities around 0.55.

    Returns:
        ``image`` float32; ``mask`` 0 background, 1 CSF, 2 GM, 3 WM.
    """
    shape, spacing = _check_geometry(shape, spacing)
    cv = _Canvas.new(shape, seed, background=0.0)
    _mr_labels(cv)
    tissue = 0.55 + contrast * (np.array([0.0, 0.2, 0.6, 0.85]) - 0.55)
    cv.paint(cv.labels > 0, tissue[cv.labels])
    signal = ndimage.gaussian_filter(cv.values, sigma=0.6) * (1.0 + 0.15 * cv.smooth(max_freq=1))
    image = np.hypot(signal + cv.rng.normal(0.0, noise, shape), cv.rng.normal(0.0, noise, shape))
    image = (image / np.percentile(image, 99.5)).astype(np.float32)
    return Phantom(image=image, mask=cv.labels, spacing=spacing, modality="mri")


def xray_phantom(
    shape: Sequence[int] = (128, 128),
    seed: int = 0,
    photons: float = 1e4,
    monochrome1: bool = False,
    depth: int = 64,
    spacing: Sequence[float] = (2.0, 2.0),
    contrast: float = 1.0,
) -> Phantom:
    """Synthetic AP chest radiograph: attenuation integrated through a CT phantom.

    A noise-free CT of ``(shape[0], depth, shape[1])`` voxels (x, AP, body axis) becomes
    ``mu = 0.02 mm^-1 * (1 + HU / 1000)`` (at least 0), is integrated along y and detected with
    Poisson noise, ``I ~ Poisson(photons * exp(-sum(mu * dy)))``; the image is ``-log(I / photons)``.

    Args:
        shape: ``(x, rows)`` detector pixels; row 0 is the head end.
        seed: Seed of the CT phantom and the photon noise.
        photons: Unattenuated photon count per pixel (I0); fewer photons, more noise.
        monochrome1: Store ``max - value`` so that bone is dark (DICOM MONOCHROME1 convention).
        depth: Voxels along the AP axis; the AP field of view equals the left-right one.
        spacing: Detector pixel spacing, mm per image axis.
        contrast: Scale of the attenuation above water's (bone), as a higher tube voltage gives.

    Returns:
        ``image`` float32 ``(x, rows)``, bone bright unless ``monochrome1``; ``mask`` uint8, 1 where
        the ray crosses bone.
    """
    shape, spacing = _check_geometry(shape, spacing)
    if len(shape) != 2 or depth < 4 or photons <= 0:
        raise ValueError("xray_phantom needs a 2D shape, depth >= 4 and photons > 0")
    dy = spacing[0] * shape[0] / depth
    ct = ct_phantom((shape[0], depth, shape[1]), (spacing[0], dy, spacing[1]), seed=seed, noise_hu=0.0)
    hu = ct.image.astype(np.float64)
    mu = np.clip(MU_WATER * (1.0 + np.where(hu > 0, contrast * hu, hu) / 1000.0), 0.0, None)
    line_integral = mu.sum(axis=1)[:, ::-1] * dy  # z flipped: row 0 is the head end
    counts = np.random.default_rng([seed, 1]).poisson(photons * np.exp(-line_integral))
    image = -np.log(np.maximum(counts, 1) / photons).astype(np.float32)
    if monochrome1:
        image = image.max() - image
    mask = (ct.mask == 3).any(axis=1)[:, ::-1].astype(np.uint8)
    return Phantom(np.ascontiguousarray(image), np.ascontiguousarray(mask), spacing, "xray")


def phantom_family(modality: str, n: int, shape: Sequence[int], seed: int = 0, variant: str = "a") -> list[Phantom]:
    """``n`` independent subjects of one modality, for distribution tests such as FID.

    Variant ``"b"`` is a controlled shift of ``"a"``: 2.5x the noise (1/6.25 the photons for X-ray)
    and 0.75x the contrast (tissue values for CT/MRI, bone attenuation for X-ray), meant for checks
    such as FID(A, A') < FID(A, B) with A, A' two ``"a"`` families of different seeds.

    Args:
        modality: ``"ct"``, ``"mri"`` or ``"xray"`` (X-ray needs a 2D shape).
        n: Number of subjects.
        shape: Spatial shape of each image.
        seed: Family seed; subject ``i`` gets a seed derived from ``(seed, i)``.
        variant: ``"a"`` (defaults) or ``"b"`` (noisier, lower contrast).
    """
    if variant not in ("a", "b"):
        raise ValueError(f"variant must be 'a' or 'b', got {variant!r}")
    noise, contrast = (2.5, 0.75) if variant == "b" else (1.0, 1.0)
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]
    if modality == "ct":
        return [ct_phantom(shape, seed=s, noise_hu=20.0 * noise, contrast=contrast) for s in seeds]
    if modality == "mri":
        return [mr_phantom(shape, seed=s, noise=0.03 * noise, contrast=contrast) for s in seeds]
    if modality == "xray":
        return [xray_phantom(shape, seed=s, photons=1e4 / noise**2, contrast=contrast) for s in seeds]
    raise ValueError(f"modality must be 'ct', 'mri' or 'xray', got {modality!r}")


def _new_dataset(modality: str, study_uid: str, series_uid: str) -> Dataset:
    """A dataset with file meta, SOP, patient, study and series identity for ``modality``."""
    if modality not in SOP_CLASS_UIDS:
        raise ValueError(f"DICOM modality must be one of {sorted(SOP_CLASS_UIDS)}, got {modality!r}")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(SOP_CLASS_UIDS[modality])
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.ImageType = modality, ["DERIVED", "SECONDARY"]
    ds.PatientName, ds.PatientID = "Phantom^Synthetic", "PHANTOM"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240101"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    return ds


def _stored_pixels(image2d: np.ndarray, rescale: tuple | None) -> tuple[np.ndarray, tuple | None]:
    """Stored uint16/int16 values and the rescale to write (integers are stored unchanged)."""
    image2d = np.asarray(image2d)
    if image2d.ndim != 2:
        raise ValueError(f"image2d must be 2D, got shape {image2d.shape}")
    if np.issubdtype(image2d.dtype, np.floating):
        if rescale is None:  # spread the range over 12 bits
            lo, hi = float(image2d.min()), float(image2d.max())
            rescale = ((hi - lo) / 4095.0 if hi > lo else 1.0, lo)
        image2d = np.rint((image2d - rescale[1]) / rescale[0])
    lo, hi = image2d.min(), image2d.max()
    if lo >= 0 and hi <= np.iinfo(np.uint16).max:
        return image2d.astype(np.uint16), rescale
    if lo >= np.iinfo(np.int16).min and hi <= np.iinfo(np.int16).max:
        return image2d.astype(np.int16), rescale
    raise ValueError(f"pixel values {lo}..{hi} fit neither uint16 nor int16; pass a rescale")


def _save(ds: Dataset, rows_cols: np.ndarray, photometric: str, path: Path) -> Path:
    """Attach the ``(Rows, Columns)`` pixels and write a DICOM Part 10 file."""
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}")
    ds.set_pixel_data(np.ascontiguousarray(rows_cols), photometric, 16, generate_instance_uid=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _ds(values: Sequence[float]) -> list[DSfloat]:
    """Decimal String values that fit DICOM's 16 characters."""
    return [DSfloat(float(v), auto_format=True) for v in values]


def write_dicom_image(
    path: str | Path,
    image2d: np.ndarray,
    modality: str = "CR",
    spacing: tuple[float, float] | None = None,
    photometric: str = "MONOCHROME2",
    use_imager_pixel_spacing: bool = False,
    rescale: tuple[float, float] | None = None,
) -> Path:
    """Write one 2D image as a single-frame DICOM file (CR, DX, CT or MR storage).

    Args:
        path: Output file.
        image2d: ``(x, y)`` = ``(Columns, Rows)`` array; the pixel array written is ``image2d.T``.
            Integer values are stored unchanged (uint16, or int16 with PixelRepresentation 1 when
            negative); float values are real values, stored as ``round((v - intercept) / slope)``.
        modality: DICOM Modality, one of ``CR``, ``DX``, ``CT``, ``MR``.
        spacing: ``(row_mm, col_mm)``; None writes no spacing at all (as many CR files do).
        photometric: ``MONOCHROME2`` (high values bright) or ``MONOCHROME1`` (high values dark).
        use_imager_pixel_spacing: Write ``spacing`` as ImagerPixelSpacing instead of PixelSpacing.
        rescale: ``(slope, intercept)``; for float input None picks one spanning 12 bits.

    Returns:
        The written path.
    """
    stored, rescale = _stored_pixels(image2d, rescale)
    if rescale is None and modality == "CT":
        rescale = (1.0, 0.0)
    ds = _new_dataset(modality, generate_uid(), generate_uid())
    if spacing is not None:
        tag = "ImagerPixelSpacing" if use_imager_pixel_spacing else "PixelSpacing"
        setattr(ds, tag, _ds(spacing))
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = _ds(rescale)
        if modality in ("CR", "DX"):
            ds.RescaleType = "US"
    if modality in ("CT", "MR"):
        ds.FrameOfReferenceUID = generate_uid()
        ds.ImagePositionPatient, ds.ImageOrientationPatient = _ds([0, 0, 0]), _ds([1, 0, 0, 0, 1, 0])
    return _save(ds, stored.T, photometric, Path(path))


def write_dicom_series(
    folder: str | Path,
    volume_hu: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    modality: str = "CT",
    series_uid: str | None = None,
) -> list[Path]:
    """Write a 3D volume as one DICOM file per z slice (``slice_0000.dcm`` …).

    Slices share Study/Series/FrameOfReference UIDs, have ImageOrientationPatient ``[1,0,0,0,1,0]``
    and ImagePositionPatient ``[0, 0, k * sz]``; values are stored as int16 with slope 1, intercept 0.

    Args:
        folder: Output folder (created).
        volume_hu: ``(x, y, z)`` integer volume (HU for CT) within the int16 range.
        spacing: ``(sx, sy, sz)`` mm; PixelSpacing is written as ``[sy, sx]`` (row, column).
        modality: ``CT`` or ``MR``.
        series_uid: SeriesInstanceUID; None generates one.

    Returns:
        The slice paths in z order.
    """
    volume = np.asarray(volume_hu)
    if volume.ndim != 3 or not np.issubdtype(volume.dtype, np.integer):
        raise ValueError(f"volume_hu must be a 3D integer array, got {volume.dtype} {volume.shape}")
    if not np.array_equal(volume, volume.astype(np.int16)):
        raise ValueError("volume_hu values must fit int16")
    sx, sy, sz = (float(s) for s in spacing)
    study_uid, series_uid, frame_uid = generate_uid(), series_uid or generate_uid(), generate_uid()
    paths = []
    for k in range(volume.shape[2]):
        ds = _new_dataset(modality, study_uid, series_uid)
        ds.FrameOfReferenceUID, ds.InstanceNumber = frame_uid, k + 1
        ds.ImagePositionPatient, ds.ImageOrientationPatient = _ds([0, 0, k * sz]), _ds([1, 0, 0, 0, 1, 0])
        ds.PixelSpacing, (ds.SliceThickness, ds.SliceLocation) = _ds([sy, sx]), _ds([sz, k * sz])
        ds.RescaleSlope, ds.RescaleIntercept = _ds([1, 0])
        path = Path(folder) / f"slice_{k:04d}.dcm"
        paths.append(_save(ds, volume[:, :, k].astype(np.int16).T, "MONOCHROME2", path))
    return paths


def _write_volume(path: Path, array: np.ndarray, spacing: tuple[float, ...]) -> None:
    """Write a 2D/3D ``(x, y[, z])`` array with :func:`medgen.data.io.write_image`.

    The phantoms' axes are LPS (x to the patient's left, y posterior), so the RAS affine is
    ``diag(-sx, -sy, sz)``: NIfTI, MHA and DICOM copies of one phantom agree physically.
    """
    from medgen.data.io import write_image

    signs = (-1.0, -1.0, 1.0)
    affine = np.diag([*(sign * s for sign, s in zip(signs, spacing, strict=False)), *([1.0] * (4 - len(spacing)))])
    write_image(array, path, affine=affine)


def save_phantom_set(out_dir: str | Path, phantoms: Sequence[Phantom], fmt: str = "nifti") -> list[Path]:
    """Write images and masks as ``subject_{i:03d}`` and ``subject_{i:03d}_mask`` files.

    Both formats get ``spacing``, origin 0 and LPS-aligned axes (NIfTI affine ``diag(-sx, -sy, sz)``,
    MHA identity direction).

    Args:
        out_dir: Output folder (created).
        phantoms: Subjects to write.
        fmt: ``"nifti"`` (``.nii.gz``) or ``"mha"``.

    Returns:
        The image paths (each mask sits next to its image).
    """
    if fmt not in ("nifti", "mha"):
        raise ValueError(f"fmt must be 'nifti' or 'mha', got {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if fmt == "nifti" else ".mha"
    paths = []
    for i, ph in enumerate(phantoms):
        paths.append(out / f"subject_{i:03d}{suffix}")
        _write_volume(paths[-1], ph.image, ph.spacing)
        _write_volume(out / f"subject_{i:03d}_mask{suffix}", ph.mask, ph.spacing)
    return paths
