"""Set C (:mod:`medgen.memorization.unseen_c`): the blind memorization evaluation, frozen before it was scored.

The construction tests check roles disjoint by subject and sources disjoint from the shipped embedder, set A and
set B. Set C was scored blind once and failed; the method was changed in view of that run, so it is a development
set now: the acceptance tests assert issue 12's targets on the current method, strict xfails carry its numbers.
"""

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medgen.memorization import unseen, unseen_b, unseen_c
from medgen.memorization.unseen import UnseenScore
from medgen.memorization.unseen_b import subject_of
from tests.memorization.shared_score import shared_score

needs_data = pytest.mark.skipif(
    any(importlib.util.find_spec(p) is None for p in ("matplotlib", "skimage")),
    reason="needs the test extra's data packages",
)


def test_phantom_seeds_are_new():
    c_seeds = {s.seed for s in unseen_b.phantom_subjects(unseen_c.BASE_SEED)}
    b_seeds = {s.seed for s in unseen_b.phantom_subjects()}
    shipped = {int(s.generate_state(1)[0]) for s in np.random.SeedSequence(0).spawn(64)}
    assert len(c_seeds) == sum(sum(c) for c in unseen_b.PHANTOM_ROLES.values())
    assert not c_seeds & (b_seeds | shipped | {12345 + i for i in range(8)} | {0, unseen_b.BASE_SEED})
    assert unseen_c.BASE_SEED not in (unseen_b.BASE_SEED, 0, 12345)


def test_sources_are_disjoint_from_the_embedder_set_a_and_set_b():
    from medgen.demo_data import _package_file, real_mri_volumes

    def path(package: str, parts: tuple[str, ...]) -> Path | None:
        return _package_file(package, *parts)

    c_paths = {path(p, parts) for p, parts, _ in unseen_c.REAL_SOURCES.values()}
    c_paths |= {path(p, parts) for p, parts in unseen_c.UNRELATED_SOURCES.values()} | {path(*unseen_c.FACES_FILE)}
    c_paths.discard(None)
    earlier = set(unseen._role_volumes().values()) | set(real_mri_volumes())
    earlier |= {path("dipy", ("data", "files", "t1_coronal_slice.npy")), path("skimage", ("data", "phantom.png"))}
    earlier |= {path(p, parts) for p, parts, _, _ in unseen_b.REAL_SOURCES.values()}
    earlier |= {path(p, parts) for p, parts in unseen_b.UNRELATED_SOURCES.values()}
    assert not c_paths & earlier
    names = {p.name for p in c_paths if p is not None}
    assert not names & (set(unseen.HELDOUT_DICOM) | {"CT_small.dcm", "MR_small.dcm", "examples_overlay.dcm"})
    # faces: disjoint index ranges per role; the non-face crops (unrelated) lie outside them
    ranges = [set(r) for r in unseen_c.FACE_ROLES.values()]
    assert sum(len(r) for r in ranges) == len(set().union(*ranges)) == 100
    assert not set(unseen_c.NON_FACES) & set().union(*ranges)


@pytest.fixture(scope="module")
def set_c():
    return unseen_c.unseen_c()


@pytest.mark.slow
@needs_data
def test_set_c_builds_with_roles_disjoint_by_subject(set_c):
    planted = set_c.planted
    roles = set_c.subjects_by_role
    train, null, heldout = set(roles["train"]), set(roles["null"]), set(roles["heldout"])
    assert not train & null and not train & heldout and not null & heldout
    assert {subject_of(s) for s in planted.subjects} == train
    assert {subject_of(n) for n in set_c.real_names} == heldout
    assert set_c.null_subjects == len(null) >= 60 and len(heldout) >= 80
    copies = planted.copy_of[planted.is_copy]
    assert (copies >= 0).all() and (copies < len(planted.train)).all()
    kinds = [k for k in set_c.disguise if k != "real"]
    assert {k: kinds.count(k) for k in unseen.DISGUISES} == {k: 10 for k in unseen.DISGUISES}
    assert {subject_of(n) for n in set_c.copy_sources} >= {"coins", "jacksboro_fault_dem", "hubble_deep_field"}
    assert len(set_c.unrelated) == len(set_c.unrelated_names) >= 10

    def digest(images):
        return {hashlib.sha1(x.numpy().tobytes()).hexdigest() for x in images}

    n_real = len(set_c.real_names)
    parts = [digest(planted.train), digest(planted.holdout), digest(planted.generated[:n_real])]
    parts.append(digest(set_c.unrelated))
    assert sum(len(p) for p in parts) == len(set().union(*parts))


# Issue 12's targets on set C. Set C was scored blind once (benchmarks/results/memorization_f1_unseen_c.txt: recall
# 0.583, 7/306 held-out flagged); the verification was then changed in view of that run (polish, overlap-only score,
# margins over training and null baselines), so set C is a development set now
# (benchmarks/results/memorization_f1_unseen_c_dev.txt) and set D (test_unseen_d.py) is the blind one. Targets that
# set C does not meet are strict xfails carrying the current method's numbers.


@pytest.fixture(scope="module")
def c_scored(tmp_path_factory) -> tuple[UnseenScore, dict[str, Any]]:
    """Set C scored by the default decision (structural retrieval + pixel verification), once per session."""
    return shared_score(tmp_path_factory, "set_c", unseen_c.unseen_c)


@pytest.fixture(scope="module")
def c_verified(c_scored) -> UnseenScore:
    return c_scored[0]


@pytest.mark.slow
@needs_data
@pytest.mark.xfail(
    strict=True,
    reason="measured on set C (development set): recall 0.933 (exact, rotation, translation, border 1.0, elastic 0.7, "
    "contrast 0.9) at the margin threshold 0.690 (blind run: 0.583); missed: 4 phantom slices, 3 of them matched by "
    "other subjects at 0.34-0.93 (baselines; margins 0.64-0.65), an elastic copy of a noise-only MR edge slice "
    "(0.60); the translated 25x25 faces (0.55, 0.68 before the whole-image frame) verify at 0.95-0.96 now",
)
def test_set_c_every_disguised_copy_is_flagged(c_verified):
    assert c_verified.recall_by_disguise == {k: 1.0 for k in unseen.DISGUISES}


@pytest.mark.slow
@needs_data
def test_set_c_false_positives_on_held_out_at_most_one_percent(c_verified):
    """Measured 0/306 (one-sided 95 % bound 0.97 %); the blind run flagged 7 CT phantom edge slices."""
    assert c_verified.false_positive_rate <= 0.01, (c_verified.false_positives, c_verified.flagged_real)


@pytest.mark.slow
@needs_data
def test_set_c_auroc_copies_vs_unrelated(c_verified):
    """Measured 1.000: every copy's margin exceeds every unrelated picture's (highest unrelated -0.023)."""
    assert c_verified.auroc >= 0.99


@pytest.mark.slow
@needs_data
def test_set_c_no_real_or_face_held_out_image_is_flagged(c_scored, c_verified):
    """The 54 held-out real images (50 faces, 4 pictures): none flagged (highest margins 0.169 and 0.002)."""
    facts = c_scored[1]
    real = {n for n, kind in zip(facts["real_names"], facts["heldout_kind"], strict=True) if kind in ("real", "face")}
    assert len(real) == 54
    assert not real & {name for name, _ in c_verified.flagged_real}


@pytest.mark.slow
@needs_data
def test_set_c_threshold_comes_from_its_null_and_no_unrelated_image_is_flagged(c_scored, c_verified):
    # 244 null images of 68 subjects: the threshold is the 0.99 quantile of the null's margins (measured 0.690)
    facts = c_scored[1]
    assert facts["null_subjects"] >= 60 and not c_verified.floor_decided and 0.0 < c_verified.threshold < 1.0
    assert c_verified.unrelated_flagged == 0.0 and c_verified.recall_at_k == 1.0
