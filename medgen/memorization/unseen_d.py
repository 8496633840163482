"""A fourth memorization evaluation, "set D", built blind and frozen (committed) before any method was scored on it.

Why a fourth set: set C (:mod:`.unseen_c`) was scored once and failed; the verification was then changed with set
C's failures in view (continuous polish of the alignment, scoring on the frames' overlap, margins over each
training image's baseline against other subjects), so set C is a development set too. Set D uses no image source,
no seed and no phantom parameter range that the shipped embedder (:mod:`.shipped`), set A, B or C uses.

- **handwritten digits**: the 8x8 scans of scikit-learn's ``load_digits`` (UCI optical digits, 17 grey levels),
  shrunk nowhere but enlarged to 32x32 (bilinear), one image = one subject (writers are not given, so two digits
  of one writer would be two "subjects": only harder negatives). Like the faces of set C, a real family whose
  members resemble each other; digits of one class look alike at this resolution, a hard null;
- **other real pictures**: scikit-learn's ``china.jpg`` and ``flower.jpg``, scikit-image's ``motorcycle_disp``
  disparity map (training); scikit-image's ``logo`` and ``color`` (null); matplotlib's ``logo2`` and
  ``Minduka_Present_Blue_Pack`` (held-out);
- **phantoms**: MR brain, CT chest and X-ray chest subjects of medgen's families with the root seed
  :data:`BASE_SEED` (used nowhere else) and parameter ranges of their own (:func:`phantom_subjects_d`: other
  shapes, noise, contrast, lung/rib frequencies and photon counts than sets B and C), the same counts per role.

Roles, split by subject (no subject in two roles):

- **training** (copy sources): the three training pictures, digits 0-7, slab slices of 3 MR and 3 CT phantom
  volumes, 4 X-ray phantoms;
- **null** (calibration): ``logo``, ``color``, digits 8-67, 8 MR + 8 CT volumes (4 informative slices per axis),
  10 X-ray phantoms;
- **held-out** (false-positive rate): ``logo2``, ``Minduka_Present_Blue_Pack``, digits 68-127, 10 MR + 10 CT
  volumes (4 slices per axis), 12 X-ray phantoms;
- **copies** with the disguises of set A (:func:`.unseen.disguise`), 10 per disguise (60): each training picture
  three times, each training digit twice, then phantom training slices evenly spaced; disguises cycle in order;
- **unrelated** images: scikit-image ``binary_blobs`` (4 seeds) and ``random_shapes`` (4 seeds), synthetic
  pictures of no family above.

Every image is shrunk so its longest side is at most 128; RGB is averaged to grey; values are raw.

Caveats, stated before scoring: digits are tiny (8x8 sources), so a disguise of a digit acts on an enlarged,
smooth blob; digits of one class from different writers may be closer to each other than a disguised copy is to
its source; held-out phantom slices are hard negatives (sets B, C); slices of one volume are not independent
(count subjects).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from medgen.demo_data import _package_file
from medgen.memorization.planted import PlantedSet
from medgen.memorization.unseen import DISGUISES, disguise
from medgen.memorization.unseen_b import (
    PHANTOM_ROLES,
    PhantomSubject,
    UnseenSetB,
    _grey,
    package_picture,
    role_images,
    subject_of,
)

#: Root of every seed of set D (phantom subjects, their parameters, disguises, unrelated images).
BASE_SEED = 20261208
#: Digits of ``load_digits`` per role: index ranges.
DIGIT_ROLES: dict[str, range] = {"train": range(0, 8), "null": range(8, 68), "heldout": range(68, 128)}
#: Side of an enlarged digit.
DIGIT_SIDE = 32
#: Real pictures: name -> (package, path inside it, role).
REAL_SOURCES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "china": ("sklearn", ("datasets", "images", "china.jpg"), "train"),
    "flower": ("sklearn", ("datasets", "images", "flower.jpg"), "train"),
    "motorcycle_disp": ("skimage", ("data", "motorcycle_disp.npz"), "train"),
    "logo": ("skimage", ("data", "logo.png"), "null"),
    "color": ("skimage", ("data", "color.png"), "null"),
    "logo2": ("matplotlib", ("mpl-data", "sample_data", "logo2.png"), "heldout"),
    "Minduka_Present_Blue_Pack": (
        "matplotlib",
        ("mpl-data", "sample_data", "Minduka_Present_Blue_Pack.png"),
        "heldout",
    ),
}
DIGITS_FILE = ("sklearn", ("datasets", "data", "digits.csv.gz"))
#: Copies per training picture and per training digit.
PICTURE_COPIES, DIGIT_COPIES = 3, 2
#: Total copies (10 per disguise).
N_COPIES = 60


def _digits() -> np.ndarray | None:
    """``(N, 8, 8)`` float32 digits (None if scikit-learn is not installed)."""
    path = _package_file(DIGITS_FILE[0], *DIGITS_FILE[1])
    if path is None:
        return None
    rows = np.loadtxt(path, delimiter=",", dtype=np.float32)
    return rows[:, :64].reshape(-1, 8, 8)


def _digit(pixels: np.ndarray) -> Tensor:
    """``(1, 32, 32)`` float32: an 8x8 digit enlarged (bilinear)."""
    x = torch.from_numpy(np.ascontiguousarray(pixels))[None, None]
    return F.interpolate(x, size=(DIGIT_SIDE, DIGIT_SIDE), mode="bilinear", align_corners=False)[0]


def phantom_subjects_d(base_seed: int = BASE_SEED) -> list[PhantomSubject]:
    """Set D's phantom subjects: :data:`~.unseen_b.PHANTOM_ROLES` counts, parameter ranges of set D's own."""
    out = []
    for k, (family, counts) in enumerate(PHANTOM_ROLES.items()):
        children = np.random.SeedSequence([base_seed, k]).spawn(sum(counts))
        roles = ["train"] * counts[0] + ["null"] * counts[1] + ["heldout"] * counts[2]
        for i, (child, role) in enumerate(zip(children, roles, strict=True)):
            rng = np.random.default_rng(child.spawn(1)[0])
            contrast = float(rng.uniform(0.7, 1.3))
            params: dict[str, Any]
            if family == "mri":
                shape = (int(rng.integers(72, 113)), int(rng.integers(72, 113)), int(rng.integers(40, 73)))
                params = {"shape": shape, "noise": float(rng.uniform(0.01, 0.04)), "contrast": contrast}
            elif family == "ct":
                shape = (int(rng.integers(80, 113)), int(rng.integers(80, 113)), int(rng.integers(36, 65)))
                noise_hu = float(rng.uniform(5.0, 25.0))
                lungs, ribs = bool(rng.random() < 0.9), bool(rng.random() < 0.5)
                params = {"shape": shape, "spacing": (1.0, 1.0, 1.0), "noise_hu": noise_hu, "contrast": contrast,
                          "lungs": lungs, "ribs": ribs}  # fmt: skip
            else:
                side = (int(rng.integers(100, 161)), int(rng.integers(100, 161)))
                params = {"shape": side, "photons": float(10 ** rng.uniform(3.2, 4.8)), "contrast": contrast}
            seed = int(child.generate_state(1)[0])
            out.append(PhantomSubject(f"ph-{family}-{i:02d}", family, role, seed, params))
    return out


def unrelated_d() -> tuple[list[Tensor], list[str]]:
    """Set D's unrelated images (synthetic scikit-image pictures) and their names; empty without scikit-image."""
    try:
        from skimage.data import binary_blobs
        from skimage.draw import random_shapes
    except ImportError:
        return [], []
    images, names = [], []
    for j in range(4):
        blobs = binary_blobs(length=96, blob_size_fraction=0.1 + 0.05 * j, rng=BASE_SEED + j).astype(np.float32)
        images.append(_grey(blobs))
        names.append(f"binary_blobs-{j}")
    for j in range(4):
        shapes, _ = random_shapes((96, 96), max_shapes=6, channel_axis=None, rng=BASE_SEED + 10 + j)
        images.append(_grey(shapes.astype(np.float32)))
        names.append(f"random_shapes-{j}")
    return images, names


def unseen_d() -> UnseenSetB:
    """Build set D (module docstring). Deterministic; nothing here looks at any detection score."""
    digits = _digits()
    members = {
        role: [(_digit(digits[i]), f"digit-{i:04d}") for i in indices]
        for role, indices in DIGIT_ROLES.items()
        if digits is not None
    }
    pictures = [(package_picture(package, parts), name, role) for name, (package, parts, role) in REAL_SOURCES.items()]
    roles = role_images(pictures, "digit", members, phantom_subjects_d())
    train, null, heldout = roles["train"], roles["null"], roles["heldout"]
    each = {"real": PICTURE_COPIES, "digit": DIGIT_COPIES}
    sources = [i for i, (_, _, kind) in enumerate(train) for _ in range(each.get(kind, 0))]
    phantom_train = [i for i, (_, _, kind) in enumerate(train) if kind not in each]
    spaced = np.linspace(0, len(phantom_train) - 1, min(N_COPIES - len(sources), len(phantom_train)))
    sources += [phantom_train[j] for j in spaced.round().astype(int)]
    kinds = [DISGUISES[n % len(DISGUISES)] for n in range(len(sources))]
    gen = torch.Generator().manual_seed(BASE_SEED)
    copies = [disguise(train[i][0], kind, gen) for i, kind in zip(sources, kinds, strict=True)]
    planted = PlantedSet(
        [s for s, _, _ in train],
        [s for s, _, _ in null],
        [s for s, _, _ in heldout] + copies,
        torch.tensor([-1] * len(heldout) + sources, dtype=torch.long),
        [n for _, n, _ in train],
    )
    unrelated, unrelated_names = unrelated_d()
    return UnseenSetB(
        planted=planted,
        disguise=["real"] * len(heldout) + kinds,
        unrelated=unrelated,
        real_names=[n for _, n, _ in heldout],
        null_subjects=len({subject_of(n) for _, n, _ in null}),
        null_names=[n for _, n, _ in null],
        heldout_kind=[kind for _, _, kind in heldout],
        subjects_by_role={role: sorted({subject_of(n) for _, n, _ in items}) for role, items in roles.items()},
        null_kind=[kind for _, _, kind in null],
        unrelated_names=unrelated_names,
        copy_sources=[train[i][1] for i in sources],
    )
