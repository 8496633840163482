"""Set B (:mod:`medgen.memorization.unseen_b`): a second unseen evaluation, built before it was scored.

These tests check its construction only: roles disjoint by subject, sources disjoint from the shipped embedder's
training data and from set A, seeds never used elsewhere.
"""

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medgen.memorization import unseen
from medgen.memorization.unseen import UnseenScore
from medgen.memorization.unseen_b import (
    BASE_SEED,
    PHANTOM_ROLES,
    REAL_SOURCES,
    UNRELATED_SOURCES,
    phantom_subjects,
    subject_of,
    unseen_b,
)
from tests.memorization.shared_score import shared_score

needs_data = pytest.mark.skipif(
    any(importlib.util.find_spec(p) is None for p in ("dipy", "nilearn", "matplotlib", "skimage")),
    reason="needs the test extra's data packages",
)


def _family_seeds(seed: int, n: int) -> set[int]:
    """Subject seeds of ``medgen.data.phantoms.phantom_family(..., n, seed=seed)``."""
    return {int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)}


def test_phantom_roles_are_disjoint_and_seeds_unused_elsewhere():
    subjects = phantom_subjects()
    assert len(subjects) == sum(sum(c) for c in PHANTOM_ROLES.values())
    assert len({s.name for s in subjects}) == len(subjects)
    seeds = [s.seed for s in subjects]
    assert len(set(seeds)) == len(seeds)  # one seed, one subject, one role
    for family, (n_train, n_null, n_heldout) in PHANTOM_ROLES.items():
        roles = [s.role for s in subjects if s.family == family]
        assert roles.count("train") == n_train and roles.count("null") == n_null and roles.count("heldout") == n_heldout
    # the shipped embedder's phantoms (planted_phantoms_3d: 16 MR, seed 0; demo: CT and X-ray, seed 0) and set A's
    # (seed 12345 and 12345 + i) use none of these seeds
    used = _family_seeds(0, 64) | {12345 + i for i in range(8)} | {0, BASE_SEED}
    assert not used & set(seeds)


def test_real_sources_are_disjoint_from_set_a_and_the_embedder():
    from medgen.demo_data import _package_file, real_mri_volumes

    def path(package: str, parts: tuple[str, ...]) -> Path | None:
        return _package_file(package, *parts)

    b_paths = {path(p, parts) for p, parts, _, _ in REAL_SOURCES.values()} | {
        path(p, parts) for p, parts in UNRELATED_SOURCES.values()
    }
    b_paths.discard(None)
    a_paths = set(unseen._role_volumes().values()) | set(real_mri_volumes())
    a_paths |= {path("dipy", ("data", "files", "t1_coronal_slice.npy")), path("skimage", ("data", "phantom.png"))}
    a_names = set(unseen.HELDOUT_DICOM) | {"CT_small.dcm", "MR_small.dcm", "examples_overlay.dcm"}
    assert not b_paths & a_paths
    assert not {p.name for p in b_paths if p is not None} & a_names
    # pydicom's examples_jpeg2k.dcm is the same picture as examples_rgb_color.dcm (held-out): never in another role
    assert "examples_jpeg2k.dcm" not in {p.name for p in b_paths if p is not None}
    roles = {role for _, _, role, _ in REAL_SOURCES.values()}
    assert roles == {"train", "null", "heldout"}


@pytest.fixture(scope="module")
def set_b():
    return unseen_b()


@pytest.mark.slow
@needs_data
def test_set_b_builds_with_roles_disjoint_by_subject(set_b):
    planted = set_b.planted
    roles = set_b.subjects_by_role
    train, null, heldout = set(roles["train"]), set(roles["null"]), set(roles["heldout"])
    assert not train & null and not train & heldout and not null & heldout
    assert {subject_of(s) for s in planted.subjects} == train
    assert {subject_of(n) for n in set_b.real_names} == heldout
    assert len(null) >= 8 and set_b.null_subjects == len(null)
    assert len(heldout) >= 6
    assert len(set_b.real_names) == len(set_b.heldout_kind) and len(planted.holdout) == len(set_b.null_kind)
    # copies: every disguise of set A, 10 each, sources in training; the real training images are copied too
    copies = planted.copy_of[planted.is_copy]
    assert (copies >= 0).all() and (copies < len(planted.train)).all()
    kinds = [k for k in set_b.disguise if k != "real"]
    assert {k: kinds.count(k) for k in unseen.DISGUISES} == {k: 10 for k in unseen.DISGUISES}
    assert {subject_of(n) for n in set_b.copy_sources} >= {"s1045", "JPEG2000.dcm", "examples_ybr_color.dcm"}
    assert len(set_b.unrelated) == len(set_b.unrelated_names) >= 6

    # no picture (decoded pixels) appears in two roles
    def digest(images):
        return {hashlib.sha1(x.numpy().tobytes()).hexdigest() for x in images}

    n_real = len(set_b.real_names)
    parts = [digest(planted.train), digest(planted.holdout), digest(planted.generated[:n_real])]
    parts.append(digest(set_b.unrelated))
    assert sum(len(p) for p in parts) == len(set().union(*parts))
    assert all(min(x.shape[-2:]) >= 24 and max(x.shape[-2:]) <= 160 for x in planted.train + planted.holdout)


# Issue 12's targets on set B. Set B was frozen (commit 1d68441) and first scored blind
# (benchmarks/results/memorization_f1_unseen_b.txt); the verification was then changed in view of its analysis
# (wider scale search, two refinement passes, a background-padded crop margin, the spatial-content rule), so set B
# is a development set now. After set C's blind run the decision changed again (polish, overlap-only score, margins
# over training and null baselines; set D in test_unseen_d.py is the blind set now). Targets that set B does not
# meet are strict xfails carrying the current method's numbers.


@pytest.fixture(scope="module")
def b_scored(tmp_path_factory) -> tuple[UnseenScore, dict[str, Any]]:
    """Set B scored by the default decision (structural retrieval + pixel verification), once per session."""
    return shared_score(tmp_path_factory, "set_b", unseen_b)


@pytest.fixture(scope="module")
def b_verified(b_scored) -> UnseenScore:
    return b_scored[0]


@pytest.mark.slow
@needs_data
def test_set_b_every_disguised_copy_is_flagged(b_verified):
    """Measured recall 1.0 at the margin threshold 0.476 since the whole-image frame, supports and masked-NCC shifts
    (before: 0.917, the first blind run 0.783)."""
    assert b_verified.recall_by_disguise == {k: 1.0 for k in unseen.DISGUISES}


@pytest.mark.slow
@needs_data
@pytest.mark.xfail(
    strict=True,
    reason="measured on set B (development set): 3/266 held-out flagged (1.1 %, one-sided 95 % bound 2.9 %), one MR, "
    "one CT and one X-ray phantom (margins 0.51, 0.70, 0.84) that an independent training subject matches at 0.89-0.97 "
    "(the phantom families differ little; 10 X-ray null subjects set the X-ray baselines); before the whole-image "
    "frame 2/266",
)
def test_set_b_false_positives_on_held_out_at_most_one_percent(b_verified):
    assert b_verified.false_positive_rate <= 0.01, (b_verified.false_positives, b_verified.flagged_real)


@pytest.mark.slow
@needs_data
def test_set_b_no_real_held_out_image_is_flagged(b_scored, b_verified):
    """The 14 real held-out images (3 subjects): 0 flagged; with 14 images the 95 % upper bound is only 19 %."""
    facts = b_scored[1]
    real = {n for n, kind in zip(facts["real_names"], facts["heldout_kind"], strict=True) if kind == "real"}
    assert len(real) == 14
    assert not real & {name for name, _ in b_verified.flagged_real}


@pytest.mark.slow
@needs_data
def test_set_b_auroc_copies_vs_unrelated(b_verified):
    """Measured 1.000 (weakest copy's margin 0.611, highest unrelated -0.218); before the whole-image frame 0.981."""
    assert b_verified.auroc >= 0.99


@pytest.mark.slow
@needs_data
def test_set_b_threshold_comes_from_its_null_and_no_unrelated_image_is_flagged(b_scored, b_verified):
    # 204 null images of 28 subjects: the threshold is the 0.99 quantile of the null's margins (measured 0.476)
    facts = b_scored[1]
    assert facts["null_subjects"] >= 8 and not b_verified.floor_decided and 0.0 < b_verified.threshold < 1.0
    assert b_verified.unrelated_flagged == 0.0
