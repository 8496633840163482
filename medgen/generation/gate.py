"""The memorization gate of ``medgen generate --memorization-index DIR``.

Each generated sample is embedded and searched against the training set's index (built by
``medgen memorization index``), and aligned in pixel space to its top-k training candidates: a sample whose
verified score is above the index's calibrated threshold counts as a copy (the same two-stage decision as
``medgen memorization``; an index built with ``--no-verify`` decides on the embedding similarity). The
generation loop redraws it with the next attempt's seed, up to ``--max-retries`` times, and drops it when it
still copies; the manifest records the similarity, the nearest training image and the decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict on one sample.

    Attributes:
        similarity: Similarity to the nearest training image.
        nearest_train: That image's file.
        flagged: Above the calibrated threshold (a likely copy).
        verification: The best pixel-space match (score, NCC, SSIM, transform, training index), when verified.
    """

    similarity: float
    nearest_train: str
    flagged: bool
    verification: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields for the manifest."""
        out = {"similarity": round(self.similarity, 6), "nearest_train": self.nearest_train, "flagged": self.flagged}
        return {**out, "verification": self.verification} if self.verification is not None else out


class MemorizationGate:
    """Checks generated samples against a memorization index.

    Args:
        index: A loaded :class:`medgen.memorization.index.MemorizationIndex`.
        path: Its folder (recorded in the manifest).
    """

    def __init__(self, index: Any, path: str) -> None:
        self.index = index
        self.path = path

    @classmethod
    def load(cls, folder: str | Path) -> MemorizationGate:
        """Load the index written by ``medgen memorization index``."""
        from medgen.memorization.index import MemorizationIndex

        return cls(MemorizationIndex.load(folder), str(folder))

    def check(self, samples: torch.Tensor) -> list[GateResult]:
        """Verdicts for ``(B, C, *spatial)`` samples in the model's [-1, 1] range."""
        matches = self.index.check(samples)
        return [
            GateResult(
                float(m.similarity),
                str(m.nearest_train),
                bool(m.flagged),
                m.verification.as_dict() if m.verification is not None else None,
            )
            for m in matches
        ]
