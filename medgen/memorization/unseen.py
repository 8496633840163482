"""Memorization evaluation on images the shipped embedder never saw (issue 12), and its scores.

The shipped structural embedder was trained on MNI152, nibabel's ``anatomical.nii``, MR phantoms of seed 0
and the demo's CT/X-ray phantoms (:mod:`.shipped`). None of those enter this set:

- **real brain MRI** from dipy's wheel (``S0_10slices`` b0, ``aniso_vox`` b0, ``test_piesno``, the 2D
  ``t1_coronal_slice``) and nibabel's EPI ``example4d`` (first volume): slices along each axis, with
  pseudo-subjects = 24 mm slabs (:func:`~medgen.memorization.planted.slab_slices`), split by subject into
  train (half), holdout (the null, a quarter) and generated-real (a quarter);
- **copies** of training slices, one disguise each, cycling through: exact, rotation (±5-10°), translation
  (6-10 % of the field), elastic warp, 10-20 % border, contrast/gamma change;
- **unrelated images** of other modalities/anatomy: pydicom's CT_small, MR_small and abdominal
  ``examples_overlay``, scikit-image's Shepp-Logan phantom, CT/X-ray phantoms of seed 12345.

3D: the unseen volumes as a whole, one subject each, with copies rotated (8°), shifted (8 %) and resampled
(0.8x) among the other volumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medgen.data.io import load_image
from medgen.demo_data import _package_file
from medgen.memorization.augment import elastic, gamma, rotate_shift
from medgen.memorization.planted import PlantedSet, slab_slices, split_planted

DISGUISES = ("exact", "rotation", "translation", "elastic", "border", "contrast")
MAX_SIDE = 128


def unseen_mri_volumes() -> dict[str, Path]:
    """Real brain MRI volumes that the shipped embedder never saw (dipy's and nibabel's test data)."""
    found = {
        "S0_10slices": _package_file("dipy", "data", "files", "S0_10slices.nii.gz"),
        "aniso_vox": _package_file("dipy", "data", "files", "aniso_vox.nii.gz"),
        "test_piesno": _package_file("dipy", "data", "files", "test_piesno.nii.gz"),
        "example4d": _package_file("nibabel", "tests", "data", "example4d.nii.gz"),
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
    """

    planted: PlantedSet
    disguise: list[str]
    unrelated: list[Tensor]


def unseen_2d(n_copies: int = 48, seed: int = 0) -> UnseenSet:
    """The 2D unseen evaluation (module docstring); copies cycle through :data:`DISGUISES`."""
    planted = split_planted(unseen_slices(), 0, seed)
    gen = torch.Generator().manual_seed(seed)
    picks = torch.linspace(0, len(planted.train) - 1, min(n_copies, len(planted.train))).round().long().tolist()
    kinds = [DISGUISES[i % len(DISGUISES)] for i in range(len(picks))]
    copies = [disguise(planted.train[i], kind, gen) for i, kind in zip(picks, kinds, strict=True)]
    n_real = len(planted.generated)
    planted.generated = planted.generated + copies
    planted.copy_of = torch.tensor([-1] * n_real + picks, dtype=torch.long)
    return UnseenSet(planted, ["real"] * n_real + kinds, unrelated_images())


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
    """

    method: str
    recall: float
    recall_by_disguise: dict[str, float]
    false_positive_rate: float
    auroc: float
    recall_at_k: float
    threshold: float
    unrelated_flagged: float


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
        index.calibrate_verification(holdout, planted.holdout, len(planted.holdout), 0.99)
    queries = planted.generated + unseen.unrelated
    result = index.search(queries, k)
    checks = verify_search(queries, result, index.images, "verify") if verify else None
    matches = index.matches(result, checks)
    flagged = torch.tensor([m.flagged for m in matches])
    score = torch.tensor([m.verification.score if m.verification else m.similarity for m in matches])
    n_gen = len(planted.generated)
    copy = planted.is_copy
    kinds = unseen.disguise
    copy_score, unrelated_score = score[:n_gen][copy], score[n_gen:]
    labels = torch.cat([torch.ones(len(copy_score)), torch.zeros(len(unrelated_score))]).long()
    found = (result.index[:n_gen][copy] == planted.copy_of[copy].unsqueeze(1)).any(dim=1)
    threshold = index.verification.threshold if index.verification is not None else index.threshold
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
    )
