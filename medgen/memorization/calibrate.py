"""Threshold calibration from data, and the published fixed thresholds for comparison.

The null distribution is the nearest-train similarity of real images the model never saw: held-out real
images (``--holdout``), or else a held-out split of the training set made by subject/volume (never by slice:
adjacent slices of one patient are near-duplicates and would inflate the null). A generated sample is
flagged when its nearest-train similarity exceeds the chosen quantile (default 0.99) of that null.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from medgen.data.datalist import ImageRecord
from medgen.data.split import split_by_subject
from medgen.errors import InputError

#: Fixed thresholds of published copy detectors (EVALUATION.md §5). They belong to *their* embeddings and are
#: reported only for comparability: the fraction of our similarities above them is not their detector's verdict.
PUBLISHED_THRESHOLDS: tuple[dict[str, Any], ...] = (
    {"method": "DeepSSIM", "embedding": "ConvNeXt-B 256-d", "threshold": 0.85, "meaning": "> 0.85 duplicate",
     "source": "arXiv 2509.16582"},
    {"method": "DeepSSIM (similar)", "embedding": "ConvNeXt-B 256-d", "threshold": 0.60,
     "meaning": "0.60-0.85 similar, <= 0.60 different", "source": "arXiv 2509.16582"},
    {"method": "SSCD (DeepSSIM's Chen baseline)", "embedding": "SSCD 288px", "threshold": 0.60,
     "meaning": "> 0.60 duplicate", "source": "arXiv 2509.16582"},
    {"method": "SSCD README", "embedding": "sscd_disc_mixup", "threshold": 0.75,
     "meaning": "> 0.75 copy at 90% precision", "source": "facebookresearch/sscd-copy-detection"},
    {"method": "Dar et al.", "embedding": "contrastive ResNet-50 128-d", "threshold": 0.8030425,
     "meaning": "> 0.8030425 duplicate (correlation)", "source": "arXiv 2402.01054"},
    {"method": "Somepalli et al.", "embedding": "SSCD sscd_disc_mixup", "threshold": 0.5,
     "meaning": "fraction of top-1 cosines > 0.5", "source": "somepago/DCR"},
    {"method": "SemDeDup", "embedding": "open_clip", "threshold": 0.99905,
     "meaning": ">= 0.99905 duplicate", "source": "SemDeDup"},
)  # fmt: skip

CalibrationSource = Literal["holdout", "train_split"]


@dataclass
class Calibration:
    """How the threshold was set.

    Attributes:
        threshold: Flag when the nearest-train similarity is above this.
        quantile: Quantile of the null used.
        source: ``"holdout"`` (``--holdout`` images) or ``"train_split"`` (training subjects held out).
        null: ``(n,)`` nearest-train similarities of the null images.
        notes: Caveats (small null, split by file …).
    """

    threshold: float
    quantile: float
    source: CalibrationSource
    null: Tensor
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the null values)."""
        q = torch.quantile(self.null.double(), torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64)).tolist()
        return {
            "source": self.source,
            "quantile": self.quantile,
            "threshold": self.threshold,
            "n_null": int(self.null.numel()),
            "null_median": q[0],
            "null_p90": q[1],
            "null_p99": q[2],
            "null_max": float(self.null.max()),
            "notes": list(self.notes),
        }


def calibrate(null: Tensor, quantile: float = 0.99, source: CalibrationSource = "holdout") -> Calibration:
    """Threshold = ``quantile`` of the null similarities (linear interpolation).

    Args:
        null: ``(n,)`` nearest-train similarities of real images not in the training set.
        quantile: In (0, 1); 0.99 flags about 1 % of unseen real images.
        source: Where the null comes from.

    Raises:
        InputError: ``quantile`` outside (0, 1) or an empty null.
    """
    if not 0.0 < quantile < 1.0:
        raise InputError("--quantile", f"expected a value in (0, 1), got {quantile}")
    if null.numel() == 0:
        raise InputError("--holdout", "no held-out images to calibrate the threshold on")
    threshold = float(torch.quantile(null.double(), quantile))
    notes = []
    if null.numel() < 1 / (1 - quantile):
        notes.append(
            f"only {null.numel()} null images: the {quantile} quantile is close to their maximum; "
            "more held-out images give a steadier threshold"
        )
    return Calibration(threshold, quantile, source, null.float(), notes)


def subject_split(subjects: Sequence[str], null_fraction: float = 0.2, seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices of reference and null images, split by subject with :func:`medgen.data.split.split_by_subject`.

    Raises:
        InputError: Fewer than two subjects (nothing can be held out).
    """
    if len(set(subjects)) < 2:
        raise InputError(
            "--train", "cannot calibrate on a training split with a single subject; give --holdout real images"
        )
    records = [ImageRecord(image=str(i), subject=s) for i, s in enumerate(subjects)]
    split = split_by_subject(records, null_fraction, seed=seed)
    return [int(r.image) for r in split.train], [int(r.image) for r in split.val]


def published_comparison(similarities: Tensor) -> list[dict[str, Any]]:
    """The published thresholds with the fraction of ``similarities`` above each (our embedding, for scale)."""
    sims = similarities.float()
    return [
        {**entry, "fraction_above": float((sims > entry["threshold"]).float().mean())} for entry in PUBLISHED_THRESHOLDS
    ]
