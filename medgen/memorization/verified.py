"""The two-stage decision: embedding retrieval proposes top-k training images, pixel verification decides.

:func:`verify_search` aligns every query to each of its retrieved candidates (:mod:`.verify`) and keeps the
best verified match; :func:`verified_calibration` runs the same two stages on real images the model never saw
(held-out images, or held-out training subjects matched only against the *other* subjects) and sets the
threshold at a quantile of that null.

The decision value is a **margin**, not the raw score (:attr:`~.verify.Verification.margin`): how far the score
rises above the training image's *baseline*, the best score that independent images reach against it (other
training subjects, :func:`training_baselines`, and the null's subjects, :func:`null_margins`). Set C showed why:
one threshold on the raw score was set by CT phantom edge slices (featureless ellipses that any other subject's
edge slice matches at 0.95-0.97), so disguised copies of faces and pictures at 0.8-0.9 were missed while
held-out ellipses were still flagged. A flagged sample also needs a raw score above :data:`MIN_VERIFIED_SCORE`.
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

    Attributes:
        baselines: ``(N,)`` each training image's best verified score against other subjects' training images
            (:func:`training_baselines`); None: unknown (margins equal scores).
    """

    def __init__(self, load: Callable[[int], Tensor], config: VerifyConfig | None = None) -> None:
        self.load, self.config = load, config or VerifyConfig()
        self._cache: dict[int, Canonical] = {}
        self.baselines: Tensor | None = None

    def __getitem__(self, index: int) -> Canonical:
        if index not in self._cache:
            self._cache[index] = prepare(self.load(index), self.config)
        return self._cache[index]


def is_copy(check: Verification, threshold: float) -> bool:
    """The two-stage decision: margin above the calibrated threshold and score above :data:`MIN_VERIFIED_SCORE`."""
    return check.margin > threshold and check.score > MIN_VERIFIED_SCORE


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
        One :class:`Verification` per sample: the candidate with the highest margin (the highest score when
        ``candidates`` has no baselines).

    Runs on one torch thread: the work is many small tensor operations, for which OpenMP threads cost more
    than they give (measured on 2 shared cores: 30x slower with 2 threads under load).
    """
    out = []
    for checks in verify_all(samples, result, candidates, what):
        if candidates.baselines is not None:
            for check in checks:
                check.baseline = float(candidates.baselines[check.train_index])
        out.append(max(checks, key=lambda v: v.margin))
    return out


def verify_all(
    samples: Sequence[Tensor], result: SearchResult, candidates: CandidateImages, what: str = "verify"
) -> list[list[Verification]]:
    """Every refined verification of each sample (:func:`~.verify.verify_candidates`; baselines not applied)."""
    out = []
    with _single_torch_thread(True):
        for sample, row in progress(list(zip(samples, result.index.tolist(), strict=True)), what):
            out.append(verify_candidates(sample, [candidates[j] for j in row], row, candidates.config))
    return out


def null_margins(
    checks: Sequence[Sequence[Verification]], subjects: Sequence[str], baselines: Tensor
) -> tuple[list[Verification], Tensor]:
    """Margins of the null images over baselines that include the null's own matches, leaving out its subject.

    The null's matches tell how well independent real images match each training image, like the training
    baselines (:func:`training_baselines`) but from the null's own population (a training set with 3 CT
    subjects says little about how alike CT subjects are; a null with 8 says more). Each training image
    gets, as a second baseline, its best score from a null subject; a null image's own margin uses the best
    score of the *other* null subjects (leave one subject out), so the calibration stays honest.

    Args:
        checks: Refined verifications of each null image (:func:`verify_all`).
        subjects: Subject of each null image (slices of one volume share it).
        baselines: ``(N,)`` training baselines (:func:`training_baselines`; zeros when unknown).

    Returns:
        The best verification of each null image (baseline set, highest margin) and ``(N,)`` baselines for
        samples: the larger of the training baseline and the best null score.
    """
    best: dict[int, list[tuple[float, str]]] = {}  # training index -> best score per null subject, two best
    for rows, subject in zip(checks, subjects, strict=True):
        for v in rows:
            entries = {name: score for score, name in best.get(v.train_index, [])}
            entries[subject] = max(entries.get(subject, -1.0), v.score)
            best[v.train_index] = sorted(((sc, nm) for nm, sc in entries.items()), reverse=True)[:2]
    out = []
    for rows, subject in zip(checks, subjects, strict=True):
        for v in rows:
            others = [score for score, name in best[v.train_index] if name != subject]
            v.baseline = max(float(baselines[v.train_index]), others[0] if others else 0.0)
        out.append(max(rows, key=lambda v: v.margin))
    final = baselines.clone()
    for index, ranked in best.items():
        final[index] = max(float(final[index]), ranked[0][0])
    return out, final


def training_baselines(
    candidates: CandidateImages, result: SearchResult, subjects: Sequence[str], k: int = DEFAULT_TOP_K
) -> Tensor:
    """Each training image's best verified score against training images of *other* subjects.

    This measures how crowded the image's neighbourhood is: a featureless slice (a plain ellipse, a band) that
    other subjects' slices match at 0.97 is no evidence of copying when a sample matches it at 0.97, while a
    distinctive one (a face that other faces match at 0.5) is. The score-normalisation idea of copy detection
    (SSCD, Pizzi et al. 2022, subtracts a query's similarity to a background set); here on the training side,
    so it is computed once per index.

    Args:
        candidates: The training images.
        result: Retrieval of the training images against themselves, with more than ``k`` neighbours so that
            ``k`` remain after the image's own subject is removed.
        subjects: Subject of each training image.
        k: Candidates verified per image.

    Returns:
        ``(N,)`` float32; 0 for an image without another subject among its neighbours.
    """
    out = torch.zeros(len(subjects))
    with _single_torch_thread(True):
        for i, row in progress(list(enumerate(result.index.tolist())), "verify training baselines"):
            others = [j for j in row if subjects[j] != subjects[i]][:k]
            if others:
                checks = verify_candidates(candidates[i], [candidates[j] for j in others], others, candidates.config)
                out[i] = checks[0].score
    return out


def verified_calibration(
    null: Sequence[Verification], quantile: float, source: CalibrationSource, n_subjects: int
) -> Calibration:
    """Threshold on the verified margin: ``quantile`` of the null's margins (:attr:`Verification.margin`).

    Without baselines the margin is the score and the threshold is at least :data:`MIN_VERIFIED_SCORE`; with
    them the floor applies to the score itself (:func:`is_copy`).

    Args:
        null: Best verification of each null image (real images not in the reference set).
        quantile: Quantile of the null.
        source: Where the null comes from.
        n_subjects: Independent subjects (volumes, patients) among the null images.
    """
    scores = torch.tensor([v.margin for v in null], dtype=torch.float32)
    calibration = calibrate(scores, quantile, source)
    if any(v.baseline for v in null):
        if calibration.threshold < 0:  # independent images match the training images better than the null matches
            calibration.notes.append(  # its own: a sample must at least beat every independent image (margin > 0)
                f"the null's {quantile} quantile of the margin ({calibration.threshold:.3f}) is below 0: 0 is used"
            )
            calibration.threshold = 0.0
        calibration.notes.append(
            "the threshold applies to the margin over each training image's baseline (its best score against "
            f"other subjects); a flagged sample also needs a verified score above {MIN_VERIFIED_SCORE}"
        )
    elif calibration.threshold < MIN_VERIFIED_SCORE:
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
