"""A second unseen memorization evaluation, "set B", built blind (before any detection was run on it).

Why a second set: the verification's edge term was chosen with set A (:mod:`.unseen`) in view, so set A is no
longer unseen for the method. Set B uses no source that the shipped embedder (:mod:`.shipped`: MNI152, nibabel's
``anatomical.nii``, MR phantoms of :func:`~medgen.memorization.planted.planted_phantoms_3d`, the demo's CT and X-ray
phantoms of seed 0) or set A (dipy's ``S0_10slices``/``aniso_vox``/``test_piesno``/``t1_coronal_slice``, nibabel's
``example4d``/``scaled+tlrc``/Philips phantom EPI, pydicom's head CTs, ``CT_small``, ``MR_small``,
``examples_overlay``, scikit-image's Shepp-Logan, phantoms of seed 12345) uses. It was frozen (committed) before
it was scored; the method must not be changed in view of its scores.

Every installed image file was surveyed (nibabel, dipy, nilearn, pydicom, matplotlib, scikit-image test data).
Unused *real* radiology is scarce: there is no unused real MRI or CT volume (nibabel's ``functional.nii``,
``example4d+orig``, ``reoriented_anat_moved`` and ``example_nifti2`` derive from subjects that the embedder or set A
already hold; dipy's ``ascm_out_test`` is ``aniso_vox`` denoised; ``phantom_varscale``/``phantom_truncated`` are set
A's Philips phantom; nibabel's ``0.dcm``/``1.dcm`` mosaic is a synthetic gradient; ``philips_mprage``,
``siemens_dwi_*`` and ``decimal_rescale`` decode to zeros; the MINC files are 10x20x20 toys). The real subjects
used are single 2D images or one volume each. Medgen phantom families (MR brain, CT chest, X-ray chest) with seeds
spawned from :data:`BASE_SEED` (used nowhere else) fill the roles; each phantom volume or radiograph is one
subject, its generator parameters (shape, noise, contrast, lungs, ribs, photons) drawn per subject.

Roles, split by subject (one file, volume or phantom seed = one subject; no subject in two roles):

- **training** (copy sources):
  - real: matplotlib's sagittal head MRI ``s1045.ima`` (256², 2D), pydicom's whole-body bone scintigram
    ``JPEG2000.dcm`` (NM, 1024x256), frames 0 and 15 of pydicom's cardiac ultrasound cine
    ``examples_ybr_color.dcm`` (one subject);
  - phantoms: slab slices (:func:`~medgen.memorization.planted.slab_slices`, 24 mm slabs, 8 mm kept) along each
    axis of 3 MR and 3 CT phantom volumes, and 4 X-ray phantom radiographs;
- **null** (calibration, 0.99 quantile): 8 MR + 8 CT phantom volumes (4 informative slices per axis each) and
  10 X-ray phantoms, plus two real ultrasound images (pydicom's ``ExplVR_BigEnd.dcm`` and the palette-colour
  ``examples_palette.dcm``): 28 subjects;
- **held-out** (false-positive rate): 10 MR + 10 CT phantom volumes (4 slices per axis each), 12 X-ray phantoms,
  and 3 real subjects: nilearn's NeuroVault statistical map ``image_10426`` (4 informative slices per axis),
  pydicom's kidney ultrasound ``examples_rgb_color.dcm`` (= ``examples_jpeg2k.dcm``, so only one of them) and
  nibabel's MR angiography MIP ``slicethickness_empty_string.dcm``: 35 subjects;
- **copies** of training images, the disguises of set A (:func:`.unseen.disguise`: exact, rotation 5-10°,
  translation 6-10 % of the field, elastic warp, 10-20 % border, contrast/gamma), 10 of each: every real training
  image three times (3 different disguises), 48 phantom training slices evenly spaced over the training list;
- **unrelated** images of other modalities and anatomy: scikit-image's ``retina``, ``microaneurysms`` (fundus),
  ``ihc`` (histology), ``cell`` (microscopy), ``camera`` and ``moon`` (photographs), pydicom's liver segmentation
  mask ``liver_1frame.dcm`` and matplotlib's ``grace_hopper.jpg``.

Every image is shrunk so its longest side is at most 128 (as in set A); RGB is averaged to grey; values are raw
(HU, scanner units), since the methods normalise.

Caveats, stated before scoring: phantom subjects of one family differ little from one another (planted.py
measured aligned NCC 0.98 between MR phantoms), so held-out phantom slices are hard negatives, closer to the
training phantoms than real subjects would be, and the null (same families) is built the same way. Slices of one
volume are not independent: count subjects, not images. The real held-out images are 3 subjects only.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medgen.demo_data import _package_file
from medgen.memorization.planted import PlantedSet, slab_slices
from medgen.memorization.preprocess import foreground_fraction
from medgen.memorization.unseen import DISGUISES, UnseenSet, disguise

#: Root of every seed of set B (phantom subjects, their parameters, disguises); used nowhere else in medgen.
BASE_SEED = 20261128
MAX_SIDE = 128
#: Phantom subjects per family and role: (training, null, held-out).
PHANTOM_ROLES: dict[str, tuple[int, int, int]] = {"mri": (3, 8, 10), "ct": (3, 8, 10), "xray": (4, 10, 12)}
#: Informative slices taken per axis from each null / held-out volume (evenly spaced).
SLICES_PER_AXIS = 4
#: Copies of phantom training slices (evenly spaced); real training images get 3 copies each on top.
PHANTOM_COPIES = 48
REAL_COPIES_EACH = 3

#: Real sources of set B: name -> (package, path inside it, role, what it is).
REAL_SOURCES: dict[str, tuple[str, tuple[str, ...], str, str]] = {
    "s1045": ("matplotlib", ("mpl-data", "sample_data", "s1045.ima.gz"), "train", "sagittal head MRI slice"),
    "JPEG2000.dcm": ("pydicom", ("data", "test_files", "JPEG2000.dcm"), "train", "NM whole-body bone scan"),
    "examples_ybr_color.dcm": (
        "pydicom",
        ("data", "test_files", "examples_ybr_color.dcm"),
        "train",
        "cardiac ultrasound cine (frames 0, 15)",
    ),
    "ExplVR_BigEnd.dcm": ("pydicom", ("data", "test_files", "ExplVR_BigEnd.dcm"), "null", "ultrasound"),
    "examples_palette.dcm": ("pydicom", ("data", "test_files", "examples_palette.dcm"), "null", "ultrasound"),
    "image_10426": ("nilearn", ("datasets", "data", "image_10426.nii.gz"), "heldout", "NeuroVault statistical map"),
    "examples_rgb_color.dcm": (
        "pydicom",
        ("data", "test_files", "examples_rgb_color.dcm"),
        "heldout",
        "kidney ultrasound",
    ),
    "slicethickness_empty_string.dcm": (
        "nibabel",
        ("nicom", "tests", "data", "slicethickness_empty_string.dcm"),
        "heldout",
        "MR angiography MIP",
    ),
}
#: Unrelated images: name -> (package, path inside it).
UNRELATED_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "retina": ("skimage", ("data", "retina.jpg")),
    "microaneurysms": ("skimage", ("data", "microaneurysms.png")),
    "ihc": ("skimage", ("data", "ihc.png")),
    "cell": ("skimage", ("data", "cell.png")),
    "camera": ("skimage", ("data", "camera.png")),
    "moon": ("skimage", ("data", "moon.png")),
    "liver_1frame.dcm": ("pydicom", ("data", "test_files", "liver_1frame.dcm")),
    "grace_hopper": ("matplotlib", ("mpl-data", "sample_data", "grace_hopper.jpg")),
}


def _fit(image: Tensor) -> Tensor:
    """``(1, H, W)`` float32, bilinear-shrunk (antialiased) so that the longest side is at most :data:`MAX_SIDE`."""
    image = image.float()
    scale = MAX_SIDE / max(image.shape[-2:])
    if scale >= 1:
        return image
    size = [max(8, round(n * scale)) for n in image.shape[-2:]]
    return F.interpolate(image[None], size=size, mode="bilinear", antialias=True)[0]


def _grey(pixels: np.ndarray) -> Tensor:
    """``(1, H, W)`` float32 of a 2D array or of an RGB(A) ``(H, W, C)`` one (channel mean)."""
    array = np.asarray(pixels, dtype=np.float32)
    if array.ndim == 3:
        array = array[..., :3].mean(axis=-1)
    return torch.from_numpy(np.ascontiguousarray(array))[None]


def _dicom(path: Path) -> np.ndarray:
    """Decoded pixels of a DICOM file, palette colour mapped to RGB."""
    import pydicom
    from pydicom.pixels import apply_color_lut

    ds = pydicom.dcmread(str(path))
    pixels = ds.pixel_array
    if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    return np.asarray(pixels)


def _picture(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=np.float32)


def _informative(volume: Tensor, name: str, per_axis: int, nonzero: bool = False) -> list[tuple[Tensor, str]]:
    """``per_axis`` evenly spaced informative slices along each axis of ``(1, X, Y, Z)``, named ``name:axis:index``.

    Informative: >= 15 % foreground (:func:`~medgen.memorization.preprocess.foreground_fraction`, or of non-zero
    voxels when ``nonzero``, for signed maps whose background is 0).
    """
    out = []
    for axis in range(3):
        slices = volume.movedim(axis + 1, 0).unsqueeze(1)[:, :, 0]
        fraction = (slices != 0).float().mean(dim=(1, 2, 3)) if nonzero else foreground_fraction(slices)
        keep = torch.nonzero(fraction >= 0.15).flatten().tolist()
        if not keep:
            continue
        picks = sorted({keep[i] for i in np.linspace(0, len(keep) - 1, min(per_axis, len(keep))).round().astype(int)})
        out += [(_fit(slices[i]), f"{name}:{axis}:{i}") for i in picks]
    return out


@dataclass
class PhantomSubject:
    """One phantom subject of set B.

    Attributes:
        name: ``ph-<family>-<nn>``.
        family: ``"mri"``, ``"ct"`` or ``"xray"``.
        role: ``"train"``, ``"null"`` or ``"heldout"``.
        seed: The generator's seed (spawned from :data:`BASE_SEED`).
        params: Generator keyword arguments drawn for this subject.
    """

    name: str
    family: str
    role: str
    seed: int
    params: dict[str, Any]


def phantom_subjects(base_seed: int = BASE_SEED) -> list[PhantomSubject]:
    """The phantom subjects of every role (module docstring), seeds and parameters drawn from ``base_seed``.

    Args:
        base_seed: Root seed (:data:`BASE_SEED` for set B; set C passes its own).
    """
    out = []
    for k, (family, counts) in enumerate(PHANTOM_ROLES.items()):
        total = sum(counts)
        children = np.random.SeedSequence([base_seed, k]).spawn(total)
        roles = ["train"] * counts[0] + ["null"] * counts[1] + ["heldout"] * counts[2]
        for i, (child, role) in enumerate(zip(children, roles, strict=True)):
            seed = int(child.generate_state(1)[0])
            rng = np.random.default_rng(child.spawn(1)[0])
            params: dict[str, Any]
            if family == "mri":
                shape = (int(rng.integers(64, 97)), int(rng.integers(64, 97)), int(rng.integers(48, 65)))
                params = {
                    "shape": shape,
                    "noise": float(rng.uniform(0.02, 0.05)),
                    "contrast": float(rng.uniform(0.8, 1.2)),
                }
            elif family == "ct":
                shape = (int(rng.integers(72, 97)), int(rng.integers(72, 97)), int(rng.integers(40, 57)))
                params = {
                    "shape": shape,
                    "spacing": (1.0, 1.0, 1.0),
                    "noise_hu": float(rng.uniform(10.0, 30.0)),
                    "contrast": float(rng.uniform(0.8, 1.2)),
                    "lungs": bool(rng.random() < 0.8),
                    "ribs": bool(rng.random() < 0.7),
                }
            else:
                params = {
                    "shape": (int(rng.integers(96, 129)), int(rng.integers(96, 129))),
                    "photons": float(10 ** rng.uniform(3.5, 4.5)),
                    "contrast": float(rng.uniform(0.8, 1.2)),
                }
            out.append(PhantomSubject(f"ph-{family}-{i:02d}", family, role, seed, params))
    return out


def _phantom_image(subject: PhantomSubject) -> Tensor:
    """``(1, *S)`` float32 image of a phantom subject (a volume for MR/CT, a radiograph for X-ray)."""
    from medgen.data.phantoms import ct_phantom, mr_phantom, xray_phantom

    make: dict[str, Callable[..., Any]] = {"mri": mr_phantom, "ct": ct_phantom, "xray": xray_phantom}
    image = make[subject.family](seed=subject.seed, **subject.params).image
    return torch.from_numpy(np.ascontiguousarray(image.astype(np.float32)))[None]


def _real_images(name: str) -> list[tuple[Tensor, str]]:
    """``((1, H, W), image name)`` of one real source of :data:`REAL_SOURCES` (empty if it is not installed)."""
    package, parts, _, _ = REAL_SOURCES[name]
    path = _package_file(package, *parts)
    if path is None:
        return []
    if name == "s1045":  # 256x256 uint16, raw (matplotlib's MRI demo)
        return [(_fit(_grey(np.frombuffer(gzip.decompress(path.read_bytes()), np.uint16).reshape(256, 256))), name)]
    if name == "image_10426":
        import nibabel as nib

        volume = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)  # type: ignore[attr-defined]
        return _informative(torch.from_numpy(volume)[None], name, SLICES_PER_AXIS, nonzero=True)
    try:
        pixels = _dicom(path)
    except (RuntimeError, ValueError, OSError):  # no decoder for the transfer syntax
        return []
    if name == "examples_ybr_color.dcm":
        return [(_fit(_grey(pixels[f])), f"{name}:frame{f}") for f in (0, 15)]
    return [(_fit(_grey(pixels)), name)]


def unrelated_b() -> tuple[list[Tensor], list[str]]:
    """Set B's unrelated images and their names (those installed)."""
    images, names = [], []
    for name, (package, parts) in UNRELATED_SOURCES.items():
        path = _package_file(package, *parts)
        if path is None:
            continue
        try:
            pixels = _dicom(path) if path.suffix == ".dcm" else _picture(path)
        except (RuntimeError, ValueError, OSError):
            continue
        images.append(_fit(_grey(pixels)))
        names.append(name)
    return images, names


@dataclass
class UnseenSetB(UnseenSet):
    """Set B: :class:`~medgen.memorization.unseen.UnseenSet` plus where every image comes from.

    Attributes:
        heldout_kind: Source kind of each held-out image (``"real"``, ``"mri"``, ``"ct"``, ``"xray"``).
        subjects_by_role: Subjects (file, volume or phantom names) of ``train``, ``null`` and ``heldout``.
        null_kind: Source kind of each null image.
        unrelated_names: Name of each unrelated image.
        copy_sources: Training-image name of each copy.
    """

    heldout_kind: list[str] = field(default_factory=list)
    subjects_by_role: dict[str, list[str]] = field(default_factory=dict)
    null_kind: list[str] = field(default_factory=list)
    unrelated_names: list[str] = field(default_factory=list)
    copy_sources: list[str] = field(default_factory=list)


def subject_of(name: str) -> str:
    """Subject of an image name (``volume:axis:index`` or ``file:frameN``): the part before the first ``:``."""
    return name.split(":")[0]


def add_phantom_images(roles: dict[str, list[tuple[Tensor, str, str]]], subjects: list[PhantomSubject]) -> None:
    """Append each phantom subject's images to its role as ``(image, name, family)``.

    X-ray: the radiograph; training MR/CT volumes: slab slices (:func:`~.planted.slab_slices`, sides >= 24);
    null and held-out volumes: :data:`SLICES_PER_AXIS` informative slices per axis.
    """
    for subject in subjects:
        image = _phantom_image(subject)
        if subject.family == "xray":
            items = [(_fit(image), subject.name)]
        elif subject.role == "train":
            items = [(_fit(s), n) for s, n in slab_slices(image, subject.name, 1.0) if min(s.shape[-2:]) >= 24]
        else:
            items = _informative(image, subject.name, SLICES_PER_AXIS)
        roles[subject.role] += [(s, n, subject.family) for s, n in items]


def package_picture(package: str, parts: tuple[str, ...]) -> Tensor | None:
    """``(1, H, W)`` grey picture shipped inside a package (None if not installed), shrunk by :func:`_fit`.

    An ``.npz`` gives its ``elevation`` or ``topo`` array (matplotlib's elevation maps), else its first array.
    """
    path = _package_file(package, *parts)
    if path is None:
        return None
    if path.suffix == ".npz":
        with np.load(path) as data:
            key = next((k for k in ("elevation", "topo") if k in data.files), data.files[0])
            return _fit(_grey(data[key]))
    return _fit(_grey(_picture(path)))


def role_images(
    pictures: list[tuple[Tensor | None, str, str]],
    family: str,
    members: dict[str, list[tuple[Tensor, str]]],
    subjects: list[PhantomSubject],
) -> dict[str, list[tuple[Tensor, str, str]]]:
    """Images of each role as ``(image, name, kind)``: real pictures, then one real family, then phantoms.

    Args:
        pictures: ``(image or None if not installed, name, role)`` of single real pictures (kind ``"real"``).
        family: Kind of the real family (``"face"``, ``"digit"``).
        members: The family's ``(image, name)`` per role.
        subjects: Phantom subjects (:func:`add_phantom_images`).
    """
    roles: dict[str, list[tuple[Tensor, str, str]]] = {"train": [], "null": [], "heldout": []}
    for picture, name, role in pictures:
        if picture is not None:
            roles[role].append((picture, name, "real"))
    for role, items in members.items():
        roles[role] += [(image, name, family) for image, name in items]
    add_phantom_images(roles, subjects)
    return roles


def unseen_b() -> UnseenSetB:
    """Build set B (module docstring). Deterministic; nothing here looks at any detection score."""
    roles: dict[str, list[tuple[Tensor, str, str]]] = {"train": [], "null": [], "heldout": []}
    for name, (_, _, role, _) in REAL_SOURCES.items():
        roles[role] += [(image, image_name, "real") for image, image_name in _real_images(name)]
    add_phantom_images(roles, phantom_subjects())
    train, null, heldout = roles["train"], roles["null"], roles["heldout"]
    real_train = [i for i, (_, _, kind) in enumerate(train) if kind == "real"]
    phantom_train = [i for i, (_, _, kind) in enumerate(train) if kind != "real"]
    spaced = np.linspace(0, len(phantom_train) - 1, min(PHANTOM_COPIES, len(phantom_train))).round().astype(int)
    picks: list[tuple[int, str]] = []
    for r, i in enumerate(real_train):
        picks += [(i, DISGUISES[(REAL_COPIES_EACH * r + j) % len(DISGUISES)]) for j in range(REAL_COPIES_EACH)]
    picks += [(phantom_train[j], DISGUISES[n % len(DISGUISES)]) for n, j in enumerate(spaced)]
    gen = torch.Generator().manual_seed(BASE_SEED)
    copies = [disguise(train[i][0], kind, gen) for i, kind in picks]
    copy_of = torch.tensor([-1] * len(heldout) + [i for i, _ in picks], dtype=torch.long)
    planted = PlantedSet(
        [s for s, _, _ in train],
        [s for s, _, _ in null],
        [s for s, _, _ in heldout] + copies,
        copy_of,
        [n for _, n, _ in train],
    )
    unrelated, unrelated_names = unrelated_b()
    subjects = {role: sorted({subject_of(n) for _, n, _ in items}) for role, items in roles.items()}
    return UnseenSetB(
        planted=planted,
        disguise=["real"] * len(heldout) + [kind for _, kind in picks],
        unrelated=unrelated,
        real_names=[n for _, n, _ in heldout],
        null_subjects=len(subjects["null"]),
        null_names=[n for _, n, _ in null],
        heldout_kind=[kind for _, _, kind in heldout],
        subjects_by_role=subjects,
        null_kind=[kind for _, _, kind in null],
        unrelated_names=unrelated_names,
        copy_sources=[train[i][1] for i, _ in picks],
    )
