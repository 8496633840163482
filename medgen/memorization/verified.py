"""The two-stage decision: embedding retrieval proposes top-k training images, pixel verification decides.

:func:`verify_search` aligns every query to each of its retrieved candidates (:mod:`.verify`) and keeps the
best verified match; :func:`verified_calibration` runs the same two stages on real images the model never saw
(held-out images, or held-out training subjects matched only against the *other* subjects) and sets the
threshold on the verified score at a quantile of that null, never below :data:`MIN_VERIFIED_SCORE`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from medgen.memorization.calibrate import Calibration, CalibrationSource, calibrate
from medgen.memorization.search import SearchResult, _single_torch_thread
from medgen.memorization.verify import Canonical, Verification, VerifyConfig, prepare, verify_candidates
from medgen.progress import progress

#: Retrieved candidates verified per sample by default (recall@20 of retrieval is reported by the benchmark).
DEFAULT_TOP_K = 20
#: A verified score (the smaller foreground rank correlation of intensities and of edges, after alignment) at or
#: below this is never a copy, whatever the null: noise, blank and constant images score below 0.3; other slabs of
#: the same brains (planted self-tests, seen data) reach 0.6 against small nulls; disguised copies of unseen images
#: score from 0.66 (elastic warps), most above 0.8.
MIN_VERIFIED_SCORE = 0.6
#: Fewer independent null images (subjects) than this make the quantile rough: a warning says so.
MIN_NULL_SUBJECTS = 200


class CandidateImages:
    """Training images in the canonical frame of :mod:`.verify`, loaded on first use and cached.

    Args:
        load: Returns training image ``i`` as ``(1, *S)``.
        config: Alignment grid.
    """

    def __init__(self, load: Callable[[int], Tensor], config: VerifyConfig | None = None) -> None:
        self.load, self.config = load, config or VerifyConfig()
        self._cache: dict[int, Canonical] = {}

    def __getitem__(self, index: int) -> Canonical:
        if index not in self._cache:
            self._cache[index] = prepare(self.load(index), self.config)
        return self._cache[index]


def verify_search(
    samples: Sequence[Tensor], result: SearchResult, candidates: CandidateImages, what: str = "verify"
) -> list[Verification]:
    """Best verified candidate of each sample among its retrieved ones.

    Args:
        samples: ``(1, *S)`` images, one per row of ``result``.
        result: Retrieval top-k (indices into the training set).
        candidates: The training images.
        what: Progress label.

    Returns:
        One :class:`Verification` per sample (its highest verified score).

    Runs on one torch thread: the work is many small tensor operations, for which OpenMP threads cost more
    than they give (measured on 2 shared cores: 30x slower with 2 threads under load).
    """
    out = []
    with _single_torch_thread(True):
        for sample, row in progress(list(zip(samples, result.index.tolist(), strict=True)), what):
            out.append(verify_candidates(sample, [candidates[j] for j in row], row, candidates.config)[0])
    return out


def verified_calibration(
    null: Sequence[Verification], quantile: float, source: CalibrationSource, n_subjects: int
) -> Calibration:
    """Threshold on the verified score: ``quantile`` of the null's scores, at least :data:`MIN_VERIFIED_SCORE`.

    Args:
        null: Best verification of each null image (real images not in the reference set).
        quantile: Quantile of the null.
        source: Where the null comes from.
        n_subjects: Independent subjects (volumes, patients) among the null images.
    """
    scores = torch.tensor([v.score for v in null], dtype=torch.float32)
    calibration = calibrate(scores, quantile, source)
    if calibration.threshold < MIN_VERIFIED_SCORE:
        calibration.notes.append(
            f"the null's {quantile} quantile ({calibration.threshold:.3f}) is below the floor {MIN_VERIFIED_SCORE}: "
            "the floor is used"
        )
        calibration.threshold = MIN_VERIFIED_SCORE
    if n_subjects < MIN_NULL_SUBJECTS:
        calibration.notes.append(
            f"the verified null has {len(null)} images from {n_subjects} independent subjects (fewer than "
            f"{MIN_NULL_SUBJECTS}): the threshold is rough; give --holdout with more subjects"
        )
    return calibration
