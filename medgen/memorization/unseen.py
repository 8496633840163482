"""Memorization evaluation on images the shipped embedder never saw (issue 12), and its scores.

The shipped structural embedder was trained on MNI152, nibabel's ``anatomical.nii``, MR phantoms of seed 0
and the demo's CT/X-ray phantoms (:mod:`.shipped`). None of those enter this set. Roles are split by subject
(one volume or file = one subject), so no subject is in two of them:

- **training** (copy sources): slab slices (:func:`~medgen.memorization.planted.slab_slices`) of dipy's
  ``S0_10slices`` b0 and nibabel's EPI ``example4d`` (first volume), plus dipy's 2D ``t1_coronal_slice``;
- **null** (calibration): every slice with >= 15 % foreground, along each axis, of dipy's ``test_piesno`` and
  nibabel's Philips phantom EPI (``phantom_EPI_asc_CLEAR_2_1.PAR``);
- **held-out real** (false-positive rate): every such slice of dipy's ``aniso_vox`` b0 and nibabel's AFNI
  ``scaled+tlrc`` brain, plus the two head-CT slices in pydicom's test files;
- **copies** of training slices, one disguise each, cycling through: exact, rotation (±5-10°), translation
  (6-10 % of the field), elastic warp, 10-20 % border, contrast/gamma change;
- **unrelated images** of other modalities/anatomy: pydicom's CT_small, MR_small and abdominal
  ``examples_overlay``, scikit-image's Shepp-Logan phantom, CT/X-ray phantoms of seed 12345.

Slices of one volume are not independent: the held-out set is a few hundred images of four subjects.

3D: the unseen volumes as a whole, one subject each, with copies rotated (8°), shifted (8 %) and resampled
(0.8x) among the other volumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medgen.data.io import load_image
from medgen.demo_data import _package_file
from medgen.memorization.augment import elastic, gamma, rotate_shift
from medgen.memorization.planted import PlantedSet, slab_slices
from medgen.memorization.preprocess import foreground_fraction

DISGUISES = ("exact", "rotation", "translation", "elastic", "border", "contrast")
MAX_SIDE = 128
#: Volumes of each role of the 2D evaluation (one subject each; see the module docstring).
TRAIN_VOLUMES = ("S0_10slices", "example4d")
NULL_VOLUMES = ("test_piesno", "phantom_EPI")
HELDOUT_VOLUMES = ("aniso_vox", "scaled+tlrc")
#: Head-CT slices of pydicom's test files (held-out real images of another modality).
HELDOUT_DICOM = ("J2K_pixelrep_mismatch.dcm", "693_J2KI.dcm")


def unseen_mri_volumes() -> dict[str, Path]:
    """Real brain MRI volumes that the shipped embedder never saw (dipy's and nibabel's test data)."""
    found = {
        "S0_10slices": _package_file("dipy", "data", "files", "S0_10slices.nii.gz"),
        "aniso_vox": _package_file("dipy", "data", "files", "aniso_vox.nii.gz"),
        "test_piesno": _package_file("dipy", "data", "files", "test_piesno.nii.gz"),
        "example4d": _package_file("nibabel", "tests", "data", "example4d.nii.gz"),
    }
    return {name: path for name, path in found.items() if path is not None}


def _role_volumes() -> dict[str, Path]:
    """Every volume of the 2D evaluation's roles (:data:`TRAIN_VOLUMES`, null, held-out) that is installed."""
    found = {
        **unseen_mri_volumes(),
        "phantom_EPI": _package_file("nibabel", "tests", "data", "phantom_EPI_asc_CLEAR_2_1.PAR"),
        "scaled+tlrc": _package_file("nibabel", "tests", "data", "scaled+tlrc.HEAD"),
    }
    return {name: path for name, path in found.items() if path is not None}


def _volume(path: Path) -> tuple[Tensor, float]:
    """``(1, X, Y, Z)`` float32 volume (4D: its first volume) and its first voxel size, read with nibabel."""
    import nibabel as nib

    image: Any = nib.load(str(path))  # a Nifti1Image (nibabel's load is typed as the generic base)
    data = np.asarray(image.dataobj, dtype=np.float32)
    while data.ndim > 3:
        data = data[..., 0]
    return torch.from_numpy(np.ascontiguousarray(data))[None], float(image.header.get_zooms()[0])


def _shrink(image: Tensor) -> Tensor:
    factor = MAX_SIDE / max(image.shape[-2:])
    if factor >= 1:
        return image
    size = [max(8, round(n * factor)) for n in image.shape[-2:]]
    return F.interpolate(image[None], size=size, mode="bilinear", antialias=True)[0]


def unseen_slices(min_side: int = 24) -> list[tuple[Tensor, str]]:
    """``((1, a, b) slice, subject)`` of the unseen MRI: slab slices of every volume, plus the 2D T1 slice."""
    items = []
    for name, path in unseen_mri_volumes().items():
        volume, spacing = _volume(path)
        for s, subject in slab_slices(volume, name, spacing):
            if min(s.shape[-2:]) >= min_side:
                items.append((_shrink(s), subject))
    t1 = _package_file("dipy", "data", "files", "t1_coronal_slice.npy")
    if t1 is not None:
        items.append((_shrink(torch.from_numpy(np.load(t1)).float()[None]), "t1_coronal_slice"))
    return items


def every_slice(volume: Tensor, name: str, min_side: int = 24) -> list[tuple[Tensor, str]]:
    """Every slice of ``(1, X, Y, Z)`` along each axis with >= 15 % foreground and both sides >= ``min_side``.

    Returns:
        ``((1, a, b) slice shrunk to MAX_SIDE, "volume:axis:index")`` pairs.
    """
    out = []
    for axis in range(3):
        slices = volume.movedim(axis + 1, 0).unsqueeze(1)[:, :, 0]
        if min(slices.shape[-2:]) < min_side:
            continue
        informative = foreground_fraction(slices) >= 0.15
        out += [(_shrink(slices[i]), f"{name}:{axis}:{i}") for i in range(slices.shape[0]) if informative[i]]
    return out


def _dicom_slices(names: tuple[str, ...]) -> list[tuple[Tensor, str]]:
    """``((1, H, W), name)`` of pydicom test files (those that ship and decode)."""
    import pydicom
    from pydicom.data import get_testdata_file

    out = []
    for name in names:
        try:
            path = get_testdata_file(name)
            if path is not None:
                pixels = pydicom.dcmread(path).pixel_array.astype(np.float32)
                out.append((_shrink(torch.from_numpy(pixels)[None]), name))
        except (RuntimeError, ValueError, OSError):  # no decoder for the transfer syntax
            continue
    return out


def unrelated_images() -> list[Tensor]:
    """``(1, H, W)`` images of other modalities and anatomy (never seen by the shipped embedder)."""
    from medgen.data.phantoms import ct_phantom, xray_phantom

    out = []
    try:
        import pydicom
        from pydicom.data import get_testdata_file

        for name in ("CT_small.dcm", "MR_small.dcm", "examples_overlay.dcm"):
            path = get_testdata_file(name)
            if path is not None:
                out.append(torch.from_numpy(pydicom.dcmread(path).pixel_array.astype(np.float32))[None])
    except ImportError:  # pragma: no cover - pydicom is a core dependency
        pass
    phantom = _package_file("skimage", "data", "phantom.png")
    if phantom is not None:
        out.append(load_image(phantom).as_tensor().float()[:1])
    ct = ct_phantom(shape=(96, 96, 24), seed=12345).image
    out += [torch.from_numpy(ct[:, :, z].astype(np.float32))[None] for z in (6, 12, 18)]
    out += [torch.from_numpy(xray_phantom(seed=12345 + i).image.astype(np.float32))[None] for i in range(3)]
    return [_shrink(x) for x in out]


def disguise(image: Tensor, kind: str, gen: torch.Generator) -> Tensor:
    """One disguise of ``(1, *S)``: see :data:`DISGUISES` (magnitudes drawn from ``gen``)."""
    x = image[None].float()
    n, d = 1, x.ndim - 2
    u = float(torch.rand(1, generator=gen))
    sign = 1.0 if float(torch.rand(1, generator=gen)) < 0.5 else -1.0
    if kind == "rotation":  # a true rotation: on the image padded to a square (grid_sample's frame is square)
        h, w = x.shape[2:4]
        side = max(h, w)
        pad = [(side - w) // 2, side - w - (side - w) // 2, (side - h) // 2, side - h - (side - h) // 2]
        x = F.pad(x, [0, 0] * (d - 2) + pad, value=float(x.min()))
        x = rotate_shift(x, torch.tensor([sign * (5 + 5 * u)]), torch.zeros(n, d))
    elif kind == "translation":
        shift = torch.full((n, d), sign * 2 * (0.06 + 0.04 * u))  # grid units: 2 x fraction of the field
        x = rotate_shift(x, torch.zeros(n), shift)
    elif kind == "elastic":
        x = elastic(x, gen, magnitude=0.02)
    elif kind == "border":
        pad = [max(1, round((0.1 + 0.1 * u) * m)) for m in x.shape[2:4] for _ in range(2)][::-1]
        x = F.pad(x, [0, 0] * (d - 2) + pad, value=float(x.min()))
    elif kind == "contrast":
        x = gamma(x, torch.tensor([0.6 + 0.8 * u])) * 2.5 + 40
    elif kind != "exact":
        raise ValueError(f"unknown disguise {kind!r}")
    return x[0]


@dataclass
class UnseenSet:
    """The unseen evaluation set.

    Attributes:
        planted: train / holdout / generated (held-out real then copies) with ``copy_of``.
        disguise: Disguise of each generated image (``"real"`` for held-out real images).
        unrelated: Images of other modalities and anatomy.
        real_names: ``volume:axis:index`` (or file name) of each held-out real image.
        null_subjects: Subjects (volumes, files) of the null.
        null_names: ``volume:axis:index`` (or file name) of each null image (empty: unknown, each its own subject).
    """

    planted: PlantedSet
    disguise: list[str]
    unrelated: list[Tensor]
    real_names: list[str] = field(default_factory=list)
    null_subjects: int = 0
    null_names: list[str] = field(default_factory=list)


def unseen_2d(n_copies: int = 48, seed: int = 0) -> UnseenSet:
    """The 2D unseen evaluation (module docstring): roles split by volume, copies cycle through :data:`DISGUISES`."""
    volumes = {name: _volume(path) for name, path in _role_volumes().items()}
    train_items = [
        (_shrink(s), subject)
        for name in TRAIN_VOLUMES
        if name in volumes
        for s, subject in slab_slices(volumes[name][0], name, volumes[name][1])
        if min(s.shape[-2:]) >= 24
    ]
    t1 = _package_file("dipy", "data", "files", "t1_coronal_slice.npy")
    if t1 is not None:
        train_items.append((_shrink(torch.from_numpy(np.load(t1)).float()[None]), "t1_coronal_slice"))
    null = [item for name in NULL_VOLUMES if name in volumes for item in every_slice(volumes[name][0], name)]
    real = [item for name in HELDOUT_VOLUMES if name in volumes for item in every_slice(volumes[name][0], name)]
    real += _dicom_slices(HELDOUT_DICOM)
    train = [s for s, _ in train_items]
    gen = torch.Generator().manual_seed(seed)
    picks = torch.linspace(0, len(train) - 1, min(n_copies, len(train))).round().long().tolist()
    kinds = [DISGUISES[i % len(DISGUISES)] for i in range(len(picks))]
    copies = [disguise(train[i], kind, gen) for i, kind in zip(picks, kinds, strict=True)]
    copy_of = torch.tensor([-1] * len(real) + picks, dtype=torch.long)
    planted = PlantedSet(
        train, [s for s, _ in null], [s for s, _ in real] + copies, copy_of, [n for _, n in train_items]
    )
    n_null_subjects = len({n.split(":")[0] for _, n in null})
    kinds = ["real"] * len(real) + kinds
    return UnseenSet(planted, kinds, unrelated_images(), [n for _, n in real], n_null_subjects, [n for _, n in null])


def _resampled_copy(volume: Tensor, angle: float, shift: float, factor: float) -> Tensor:
    """``(1, X, Y, Z)`` rotated in-plane (on a square in-plane frame), shifted, then resampled by ``factor``."""
    x = volume[None].float()
    h, w = x.shape[2:4]
    side = max(h, w)
    pad = [0, 0, (side - w) // 2, side - w - (side - w) // 2, (side - h) // 2, side - h - (side - h) // 2]
    x = F.pad(x, pad, value=float(x.min()))
    x = rotate_shift(x, torch.tensor([angle]), torch.full((1, 3), 2 * shift))
    size = [max(4, round(n * factor)) for n in x.shape[2:]]
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)[0]


def unseen_3d() -> UnseenSet:
    """The 3D unseen evaluation: whole volumes, one subject each.

    Train on two unseen volumes, calibrate on two others; copies of the training volumes are rotated 8°,
    shifted 8 % and resampled 0.8x (plus exact copies); MR and CT phantom volumes of seed 12345 are unrelated.
    """
    from medgen.data.phantoms import ct_phantom, mr_phantom

    volumes = {name: _volume(path)[0] for name, path in unseen_mri_volumes().items()}
    train = [volumes[n] for n in ("S0_10slices", "example4d") if n in volumes]
    holdout = [volumes[n] for n in ("aniso_vox", "test_piesno") if n in volumes]
    copies = [_resampled_copy(v, 8.0 * (-1) ** i, 0.08, 0.8) for i, v in enumerate(train)] + list(train)
    copy_of = torch.tensor(list(range(len(train))) * 2, dtype=torch.long)
    kinds = ["rotation+shift+resample"] * len(train) + ["exact"] * len(train)
    unrelated = [torch.from_numpy(mr_phantom(shape=(64, 64, 32), seed=12345).image)[None].float()]
    unrelated.append(torch.from_numpy(ct_phantom(shape=(64, 64, 24), seed=12345).image.astype(np.float32))[None])
    subjects = [f"train{i}" for i in range(len(train))]
    return UnseenSet(PlantedSet(train, holdout, copies, copy_of, subjects), kinds, unrelated)


@dataclass
class UnseenScore:
    """One method on the unseen set, at a threshold calibrated on its holdout null (never on the evaluation).

    Attributes:
        method: Embedder name, ``+verify`` when pixel verification decides.
        recall: Fraction of copies flagged.
        recall_by_disguise: The same per disguise.
        false_positive_rate: Fraction of held-out real images flagged.
        auroc: AUROC of the decision score, copies vs unrelated images.
        recall_at_k: Fraction of copies whose source is among the top-k retrieved.
        threshold: The calibrated threshold.
        unrelated_flagged: Fraction of unrelated images flagged.
        false_positives: Held-out real images flagged.
        n_real: Held-out real images.
        fpr_upper: One-sided 95 % Clopper-Pearson upper bound of the false-positive rate.
        flagged_real: Names (:attr:`UnseenSet.real_names`) of the flagged held-out real images with their scores.
        floor_decided: The threshold is the floor :data:`~medgen.memorization.verified.MIN_VERIFIED_SCORE`
            (the null's quantile was below it).
    """

    method: str
    recall: float
    recall_by_disguise: dict[str, float]
    false_positive_rate: float
    auroc: float
    recall_at_k: float
    threshold: float
    unrelated_flagged: float
    false_positives: int = 0
    n_real: int = 0
    fpr_upper: float = 1.0
    flagged_real: list[tuple[str, float]] = field(default_factory=list)
    floor_decided: bool = False


def clopper_pearson_upper(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided upper confidence bound of a binomial rate with ``k`` events in ``n`` trials (exact)."""
    from scipy.stats import beta

    return 1.0 if k >= n else float(beta.ppf(confidence, k + 1, n - k))


def score_unseen(embedder: str | torch.nn.Module, unseen: UnseenSet, verify: bool, k: int = 20) -> UnseenScore:
    """Calibrate on ``unseen.planted.holdout`` (quantile 0.99), then score generated and unrelated images."""
    from torchmetrics.functional.classification import binary_auroc

    from medgen.memorization.embedders import embed_images, get_embedder
    from medgen.memorization.index import MemorizationIndex
    from medgen.memorization.verified import CandidateImages, verify_search

    planted = unseen.planted
    model = get_embedder(embedder)
    train = embed_images(model, planted.train)
    holdout = embed_images(model, planted.holdout, query=True)
    files = [f"train_{i:04d}" for i in range(len(planted.train))]
    index = MemorizationIndex.build(model, train, files, planted.subjects, holdout, 0.99)
    index.images = CandidateImages(lambda i: planted.train[i])
    if verify:
        index.second = embed_images(index.second_embedder, planted.train)
        n_null = unseen.null_subjects or len(planted.holdout)
        subjects = [name.split(":")[0] for name in planted.subjects]  # volume:axis:slab -> volume
        null_names = [name.split(":")[0] for name in unseen.null_names] or None
        index.calibrate_verification(
            holdout, planted.holdout, n_null, 0.99, subjects=subjects, null_subjects=null_names
        )
    queries = planted.generated + unseen.unrelated
    result = index.search(queries, k)
    checks = verify_search(queries, result, index.images, "verify") if verify else None
    matches = index.matches(result, checks)
    flagged = torch.tensor([m.flagged for m in matches])
    score = torch.tensor([m.verification.margin if m.verification else m.similarity for m in matches])
    n_gen = len(planted.generated)
    copy = planted.is_copy
    kinds = unseen.disguise
    copy_score, unrelated_score = score[:n_gen][copy], score[n_gen:]
    labels = torch.cat([torch.ones(len(copy_score)), torch.zeros(len(unrelated_score))]).long()
    found = (result.index[:n_gen][copy] == planted.copy_of[copy].unsqueeze(1)).any(dim=1)
    threshold = index.verification.threshold if index.verification is not None else index.threshold
    real = [i for i in range(n_gen) if not bool(copy[i])]
    false_positives = int(flagged[real].sum()) if real else 0
    names = unseen.real_names or [f"real{i}" for i in range(len(real))]
    notes = index.verification.notes if index.verification is not None else []
    return UnseenScore(
        method=f"{model.spec.name}{'+verify' if verify else ''}",
        recall=float(flagged[:n_gen][copy].float().mean()),
        recall_by_disguise={
            kind: float(flagged[:n_gen][[i for i, x in enumerate(kinds) if x == kind]].float().mean())
            for kind in dict.fromkeys(kinds)
            if kind != "real"
        },
        false_positive_rate=float(flagged[:n_gen][~copy].float().mean()),
        auroc=float(binary_auroc(torch.cat([copy_score, unrelated_score]), labels)),
        recall_at_k=float(found.float().mean()),
        threshold=threshold,
        unrelated_flagged=float(flagged[n_gen:].float().mean()),
        false_positives=false_positives,
        n_real=len(real),
        fpr_upper=clopper_pearson_upper(false_positives, len(real)),
        flagged_real=[(names[j], round(float(score[i]), 3)) for j, i in enumerate(real) if bool(flagged[i])],
        floor_decided=any("floor" in note for note in notes),
    )
