"""Train/validation split by subject.

All images (and therefore all slices) of one subject go to the same split: slices of one patient in
both splits is the classic leakage bug of 2D medical pipelines, and it inflates every validation
number and hides memorization.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medgen.data.datalist import ImageRecord
from medgen.errors import InputError


@dataclass
class Split:
    """Records of each split."""

    train: list[ImageRecord]
    val: list[ImageRecord]


def split_by_subject(records: Sequence[ImageRecord], val_fraction: float, seed: int = 0) -> Split:
    """Split records so that no subject appears in both parts.

    The subject list is sorted, then permuted with ``numpy.random.default_rng(seed)``, so the split
    depends only on the set of subjects, the fraction and the seed (not on file order).

    Args:
        records: Records with ``subject`` ids.
        val_fraction: Fraction of subjects (not images) for validation, in [0, 1).
        seed: Seed of the permutation.

    Raises:
        InputError: ``val_fraction`` outside [0, 1).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise InputError("data.val_fraction", f"expected a value in [0, 1), got {val_fraction}")
    subjects = sorted({r.subject for r in records})
    n_val = int(round(val_fraction * len(subjects)))
    if val_fraction > 0 and n_val == 0 and len(subjects) > 1:
        n_val = 1
    n_val = min(n_val, max(len(subjects) - 1, 0))
    order = np.random.default_rng(seed).permutation(len(subjects))
    val_subjects = {subjects[i] for i in order[:n_val]}
    return Split(
        train=[r for r in records if r.subject not in val_subjects],
        val=[r for r in records if r.subject in val_subjects],
    )
