"""A third memorization evaluation, "set C", built blind and frozen (committed) before any method was scored on it.

Why a third set: set A (:mod:`.unseen`) shaped the verification's edge term, and set B (:mod:`.unseen_b`) was
scored and its failures were analysed in detail (missed copies, phantom-vs-phantom null); the method changes made
after that analysis were developed on A and B, so both are development sets now. Set C uses no image source and
no seed that the shipped embedder (:mod:`.shipped`), set A or set B uses.

Installed real radiology is exhausted (set B's docstring lists the survey: every decodable real MRI/CT/US/NM
image of nibabel, dipy, nilearn and pydicom is used by the embedder, set A or set B, or derives from a subject they
hold; the rest are synthetic patterns, 16x16 DICOMDIR thumbnails, 10x10 dose grids or empty frames). Set C's real
images are therefore *other* real pictures that ship with scikit-image and matplotlib and that no earlier role
used, plus fresh phantom subjects of medgen's MR, CT and X-ray families:

- **faces**: the 100 face crops (25x25, grey) of scikit-image's ``lfw_subset.npy`` (Labeled Faces in the Wild),
  one image = one subject (LFW identities are not given; a person photographed twice would be two "subjects",
  which only makes held-out faces harder negatives). Faces of different people resemble each other the way
  slices of different patients of one modality do: a real-data family for the calibration question of set B;
- **other real pictures**: scikit-image's ``coins``, ``hubble_deep_field``, ``brick``, ``text``, ``page``,
  ``gravel``, ``grass``; matplotlib's ``jacksboro_fault_dem`` and ``topobathy`` elevation maps;
- **phantoms**: MR brain, CT chest and X-ray chest subjects of :func:`.unseen_b.phantom_subjects` with the root
  seed :data:`BASE_SEED` (used nowhere else), same counts per role as set B.

Roles, split by subject (no subject in two roles):

- **training** (copy sources): ``coins``, ``jacksboro_fault_dem``, ``hubble_deep_field``, faces 0-9; slab slices of
  3 MR and 3 CT phantom volumes, 4 X-ray phantoms;
- **null** (calibration, 0.99 quantile): faces 10-49, ``topobathy``, ``brick``; 8 MR + 8 CT phantom volumes
  (4 informative slices per axis), 10 X-ray phantoms;
- **held-out** (false-positive rate): faces 50-99, ``text``, ``page``, ``gravel``, ``grass``; 10 MR + 10 CT
  phantom volumes (4 slices per axis), 12 X-ray phantoms;
- **copies** of training images with the disguises of set A (:func:`.unseen.disguise`: exact, rotation 5-10°,
  translation 6-10 % of the field, elastic warp, 10-20 % border, contrast/gamma), 10 of each (60): ``coins``,
  ``jacksboro_fault_dem`` and ``hubble_deep_field`` three times each, every training face twice, and 31 phantom
  training slices evenly spaced over the training list; disguises cycle over all 60 copies in that order;
- **unrelated** images: scikit-image's ``astronaut``, ``chelsea``, ``coffee``, ``horse``, ``rocket``,
  ``clock_motion``, ``motorcycle_left``, ``chessboard_GRAY`` and five non-face crops of ``lfw_subset``
  (indices 100, 120, 140, 160, 180).

Every image is shrunk so its longest side is at most 128; RGB is averaged to grey; values are raw.

Caveats, stated before scoring: the faces are tiny (25x25), so a 10 % translation is 2-3 pixels and an elastic warp
moves features by about a pixel; held-out phantom slices are hard negatives (see set B); slices of one volume are
not independent (count subjects); no real radiology could be added.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from medgen.demo_data import _package_file
from medgen.memorization.planted import PlantedSet
from medgen.memorization.unseen import DISGUISES, disguise
from medgen.memorization.unseen_b import (
    UnseenSetB,
    _fit,
    _grey,
    _picture,
    package_picture,
    phantom_subjects,
    role_images,
    subject_of,
)

#: Root of every seed of set C (phantom subjects, their parameters, disguises); used nowhere else in medgen.
BASE_SEED = 20261207
#: Faces of ``lfw_subset.npy`` per role: index ranges (train, null, held-out).
FACE_ROLES: dict[str, range] = {"train": range(0, 10), "null": range(10, 50), "heldout": range(50, 100)}
#: Non-face crops of ``lfw_subset.npy`` used as unrelated images.
NON_FACES = (100, 120, 140, 160, 180)
#: Real pictures: name -> (package, path inside it, role).
REAL_SOURCES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "coins": ("skimage", ("data", "coins.png"), "train"),
    "jacksboro_fault_dem": ("matplotlib", ("mpl-data", "sample_data", "jacksboro_fault_dem.npz"), "train"),
    "hubble_deep_field": ("skimage", ("data", "hubble_deep_field.jpg"), "train"),
    "topobathy": ("matplotlib", ("mpl-data", "sample_data", "topobathy.npz"), "null"),
    "brick": ("skimage", ("data", "brick.png"), "null"),
    "text": ("skimage", ("data", "text.png"), "heldout"),
    "page": ("skimage", ("data", "page.png"), "heldout"),
    "gravel": ("skimage", ("data", "gravel.png"), "heldout"),
    "grass": ("skimage", ("data", "grass.png"), "heldout"),
}
#: Unrelated pictures: name -> (package, path inside it).
UNRELATED_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    name: ("skimage", ("data", file))
    for name, file in (
        ("astronaut", "astronaut.png"),
        ("chelsea", "chelsea.png"),
        ("coffee", "coffee.png"),
        ("horse", "horse.png"),
        ("rocket", "rocket.jpg"),
        ("clock_motion", "clock_motion.png"),
        ("motorcycle_left", "motorcycle_left.png"),
        ("chessboard_GRAY", "chessboard_GRAY.png"),
    )
}
FACES_FILE = ("skimage", ("data", "lfw_subset.npy"))
#: Copies per real training picture and per training face.
PICTURE_COPIES, FACE_COPIES = 3, 2
#: Total copies (10 per disguise).
N_COPIES = 60


def _real_picture(name: str) -> Tensor | None:
    """``(1, H, W)`` of one :data:`REAL_SOURCES` picture (None if not installed)."""
    package, parts, _ = REAL_SOURCES[name]
    return package_picture(package, parts)


def _faces() -> np.ndarray | None:
    path = _package_file(FACES_FILE[0], *FACES_FILE[1])
    return None if path is None else np.load(path)


def unrelated_c() -> tuple[list[Tensor], list[str]]:
    """Set C's unrelated images and their names (those installed)."""
    images, names = [], []
    for name, (package, parts) in UNRELATED_SOURCES.items():
        path = _package_file(package, *parts)
        if path is not None:
            images.append(_fit(_grey(_picture(path))))
            names.append(name)
    faces = _faces()
    if faces is not None:
        images += [_fit(_grey(faces[i])) for i in NON_FACES]
        names += [f"lfw-nonface-{i}" for i in NON_FACES]
    return images, names


def unseen_c() -> UnseenSetB:
    """Build set C (module docstring). Deterministic; nothing here looks at any detection score."""
    faces = _faces()
    members = {
        role: [(_grey(faces[i]), f"lfw-face-{i:03d}") for i in indices]
        for role, indices in FACE_ROLES.items()
        if faces is not None
    }
    pictures = [(_real_picture(name), name, role) for name, (_, _, role) in REAL_SOURCES.items()]
    roles = role_images(pictures, "face", members, phantom_subjects(BASE_SEED))
    train, null, heldout = roles["train"], roles["null"], roles["heldout"]
    sources: list[int] = []
    for i, (_, _, kind) in enumerate(train):
        sources += [i] * (PICTURE_COPIES if kind == "real" else FACE_COPIES if kind == "face" else 0)
    phantom_train = [i for i, (_, _, kind) in enumerate(train) if kind not in ("real", "face")]
    n_phantom = max(0, N_COPIES - len(sources))
    spaced = np.linspace(0, len(phantom_train) - 1, min(n_phantom, len(phantom_train))).round().astype(int)
    sources += [phantom_train[j] for j in spaced]
    picks = [(i, DISGUISES[n % len(DISGUISES)]) for n, i in enumerate(sources)]
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
    unrelated, unrelated_names = unrelated_c()
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
