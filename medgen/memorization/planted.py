"""Planted-copy self-test data: train / holdout / generated sets where the copies are known.

2D (real MRI): the brain T1 volumes that ship in installed wheels (MNI152 from nilearn, nibabel's
``anatomical.nii``) are cut into slices along all three axes. Only two real subjects ship offline, so
*pseudo-subjects* are slabs of 24 mm: each slab keeps its central 8 mm (slices 2 mm apart) and drops the
outer ones, leaving a 16 mm gap between slabs; sagittal slices come from one hemisphere only (the MNI152 template
is symmetric, so mirror-position sagittal slices are duplicates). Slabs are split with
:func:`medgen.data.split.split_by_subject`, never slice by slice (adjacent slices 1 mm apart have SSIM ≈ 0.97
and would be near-duplicates).

3D (real MRI): only two real volumes ship, so each pseudo-subject slab above becomes one small volume (its
kept slices stacked along the last axis, in-plane axes first); the split is the 2D one (same subjects, same
seed). :func:`planted_phantoms_3d` builds the same test from seeded MR phantoms (one subject per volume); they
differ so little from one another (aligned NCC 0.98 between subjects) that they make a poor null.

In both, ``generated`` = held-out real images not used for calibration + disguised copies of training
images (:func:`~medgen.memorization.augment.copy_augment`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medgen.data.datalist import ImageRecord
from medgen.data.io import META_SPACING, load_image
from medgen.data.split import split_by_subject
from medgen.memorization.augment import copy_augment
from medgen.memorization.preprocess import foreground_fraction


@dataclass
class PlantedSet:
    """A planted-copy test.

    Attributes:
        train: Training images ``(1, *spatial)``.
        holdout: Held-out real images for calibration (other subjects than ``train``).
        generated: Held-out real images (other subjects than ``train`` and ``holdout``) then copies.
        copy_of: ``(len(generated),)`` long, index into ``train`` of the copied image, -1 for real images.
        subjects: Subject id of each training image.
    """

    train: list[Tensor]
    holdout: list[Tensor]
    generated: list[Tensor]
    copy_of: Tensor
    subjects: list[str]

    @property
    def is_copy(self) -> Tensor:
        """``(len(generated),)`` bool."""
        return self.copy_of >= 0


SLAB_MM = 24.0


def slab_slices(
    volume: Tensor, name: str, spacing_mm: float, slab_mm: float = SLAB_MM, keep_mm: float = 8.0, stride_mm: float = 2.0
) -> list[tuple[Tensor, str]]:
    """Central slices of ``slab_mm`` slabs per axis (sagittal: one half), with ids ``volume:axis:slab``.

    Args:
        volume: ``(1, X, Y, Z)`` isotropic volume.
        name: Volume name (first part of the subject id).
        spacing_mm: Voxel size.
        slab_mm: Slab thickness.
        keep_mm: Thickness of the central part kept (the gap between slabs is ``slab_mm - keep_mm``).
        stride_mm: Distance between kept slices.

    Returns:
        ``((1, a, b) slice, subject)`` pairs of slices with at least 15 % foreground.
    """
    out = []
    slab = max(4, round(slab_mm / spacing_mm))
    margin = round((slab_mm - keep_mm) / 2 / spacing_mm)
    stride = max(1, round(stride_mm / spacing_mm))
    for axis in range(3):
        slices = volume.movedim(axis + 1, 0).unsqueeze(1)[:, :, 0]
        informative = foreground_fraction(slices) >= 0.15
        # sagittal: one hemisphere only (mirror slices of a symmetric brain are near-duplicates)
        for index in range(slices.shape[0] // 2 if axis == 0 else 0, slices.shape[0]):
            offset = index % slab
            if informative[index] and margin <= offset < slab - margin and (offset - margin) % stride == 0:
                out.append((slices[index], f"{name}:{axis}:{index // slab}"))
    return out


def real_mri_slices(max_side: int = 112, keep_mm: float = 8.0, stride_mm: float = 2.0) -> list[tuple[Tensor, str]]:
    """Slab slices of the real MRI volumes shipped in wheels, downsampled so the longest side ≤ ``max_side``."""
    from medgen.demo_data import real_mri_volumes

    items: list[tuple[Tensor, str]] = []
    for path in real_mri_volumes():
        image = load_image(path)
        spacing = float((image.meta.get(META_SPACING) or [1.0])[0])
        name = path.name.split(".")[0]
        for s, subject in slab_slices(image.as_tensor().float()[:1], name, spacing, SLAB_MM, keep_mm, stride_mm):
            factor = max_side / max(s.shape[-2:])
            if factor < 1:
                size = [max(8, round(n * factor)) for n in s.shape[-2:]]
                s = F.interpolate(s[None], size=size, mode="bilinear", antialias=True)[0]
            items.append((s, subject))
    return items


def split_planted(items: list[tuple[Tensor, str]], n_copies: int, seed: int = 0) -> PlantedSet:
    """Split ``(image, subject)`` items by subject (half train, a quarter each holdout / generated-real).

    Copies: ``n_copies`` training images (evenly spread over the training set), each disguised once.
    """
    records = [ImageRecord(image=str(i), subject=subject) for i, (_, subject) in enumerate(items)]
    first = split_by_subject(records, 0.5, seed=seed)
    second = split_by_subject(first.val, 0.5, seed=seed + 1)
    train = [items[int(r.image)][0] for r in first.train]
    holdout = [items[int(r.image)][0] for r in second.train]
    real = [items[int(r.image)][0] for r in second.val]
    gen = torch.Generator().manual_seed(seed)
    picks = torch.linspace(0, len(train) - 1, min(n_copies, len(train))).round().long().tolist()
    copies = [copy_augment(train[i][None], gen)[0] for i in picks]
    copy_of = torch.tensor([-1] * len(real) + picks, dtype=torch.long)
    return PlantedSet(train, holdout, real + copies, copy_of, [r.subject for r in first.train])


def planted_mri_2d(n_copies: int = 40, seed: int = 0) -> PlantedSet:
    """The 2D planted-copy test on real MRI slices (see the module docstring)."""
    return split_planted(real_mri_slices(), n_copies, seed)


def planted_mri_3d(n_copies: int = 8, seed: int = 0) -> PlantedSet:
    """The 3D planted-copy test on real MRI slab volumes (see the module docstring)."""
    by_subject: dict[str, list[Tensor]] = {}
    for s, subject in real_mri_slices():
        by_subject.setdefault(subject, []).append(s)
    items = [(torch.stack(slices, dim=-1), subject) for subject, slices in by_subject.items()]
    return split_planted(items, n_copies, seed)


def planted_phantoms_3d(
    n_subjects: int = 16, shape: tuple[int, int, int] = (48, 48, 32), n_copies: int = 8, seed: int = 0
) -> PlantedSet:
    """The 3D planted-copy test on seeded MR phantom volumes, one subject each."""
    from medgen.data.phantoms import phantom_family

    family = phantom_family("mri", n_subjects, shape, seed=seed)
    items = [(torch.from_numpy(p.image)[None].float(), f"phantom{i}") for i, p in enumerate(family)]
    return split_planted(items, n_copies, seed)


@dataclass
class PlantedScore:
    """How an embedder did on a planted-copy test at its calibrated threshold.

    Attributes:
        recall: Fraction of copies flagged.
        false_positive_rate: Fraction of held-out real images in ``generated`` flagged.
        macro_f1: Mean of the F1 scores of the classes "copy" and "not a copy".
        threshold: The calibrated threshold.
        source_found: Fraction of copies whose nearest training image is the one copied.
        copy_similarity_min: Lowest nearest-train similarity among copies.
        real_similarity_max: Highest nearest-train similarity among held-out real images.
    """

    recall: float
    false_positive_rate: float
    macro_f1: float
    threshold: float
    source_found: float
    copy_similarity_min: float
    real_similarity_max: float


def _f1(truth: Tensor, predicted: Tensor) -> float:
    tp = float((truth & predicted).sum())
    denominator = float(truth.sum() + predicted.sum())
    return 2 * tp / denominator if denominator else 1.0


def score_planted(embedder: nn.Module, planted: PlantedSet, quantile: float = 0.99) -> PlantedScore:
    """Build an in-memory index of ``planted.train`` calibrated on ``planted.holdout`` and check ``generated``."""
    from medgen.memorization.embedders import embed_images, get_embedder
    from medgen.memorization.index import MemorizationIndex

    model = get_embedder(embedder)
    train = embed_images(model, planted.train)
    files = [f"train_{i:04d}" for i in range(len(planted.train))]
    holdout = embed_images(model, planted.holdout, query=True)
    index = MemorizationIndex.build(model, train, files, planted.subjects, holdout, quantile)
    matches = index.check(planted.generated, k=1)
    flagged = torch.tensor([m.flagged for m in matches])
    sims = torch.tensor([m.similarity for m in matches])
    nearest = torch.tensor([m.train_index for m in matches])
    copy = planted.is_copy
    return PlantedScore(
        recall=float(flagged[copy].float().mean()),
        false_positive_rate=float(flagged[~copy].float().mean()),
        macro_f1=(_f1(copy, flagged) + _f1(~copy, ~flagged)) / 2,
        threshold=index.threshold,
        source_found=float((nearest[copy] == planted.copy_of[copy]).float().mean()),
        copy_similarity_min=float(sims[copy].min()),
        real_similarity_max=float(sims[~copy].max()),
    )
