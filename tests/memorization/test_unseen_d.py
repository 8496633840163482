"""Set D (:mod:`medgen.memorization.unseen_d`): the fourth memorization evaluation, frozen before it is scored.

Set D has NOT been scored: these tests check its construction only (roles disjoint by subject, sources, seeds and
phantom parameter ranges disjoint from the shipped embedder, set A, set B and set C). Score it once, with the
method that passes set C, and add the acceptance tests then (like set C's).
"""

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from medgen.memorization import unseen, unseen_b, unseen_c, unseen_d
from medgen.memorization.unseen_b import subject_of

needs_data = pytest.mark.skipif(
    any(importlib.util.find_spec(p) is None for p in ("matplotlib", "skimage", "sklearn")),
    reason="needs the test extra's data packages",
)


def test_phantom_seeds_and_parameters_are_new():
    d = unseen_d.phantom_subjects_d()
    earlier = unseen_b.phantom_subjects() + unseen_b.phantom_subjects(unseen_c.BASE_SEED)
    shipped = {int(s.generate_state(1)[0]) for s in np.random.SeedSequence(0).spawn(64)}
    assert len(d) == sum(sum(c) for c in unseen_b.PHANTOM_ROLES.values()) == len({s.name for s in d})
    assert not {s.seed for s in d} & ({s.seed for s in earlier} | shipped | {12345 + i for i in range(8)})
    assert unseen_d.BASE_SEED not in (unseen_b.BASE_SEED, unseen_c.BASE_SEED, 0, 12345)
    # parameter ranges of its own: some subjects fall outside every range that sets B and C draw from
    mri = [s.params for s in d if s.family == "mri"]
    assert any(p["shape"][0] > 96 or p["noise"] < 0.02 or p["contrast"] > 1.2 for p in mri)
    ct = [s.params for s in d if s.family == "ct"]
    assert any(p["shape"][0] > 96 or p["noise_hu"] < 10 or p["contrast"] < 0.8 for p in ct)
    xray = [s.params for s in d if s.family == "xray"]
    assert any(p["shape"][0] > 128 or p["photons"] < 10**3.5 or p["photons"] > 10**4.5 for p in xray)


def test_sources_are_disjoint_from_the_embedder_and_sets_a_b_c():
    from medgen.demo_data import _package_file, real_mri_volumes

    def path(package: str, parts: tuple[str, ...]) -> Path | None:
        return _package_file(package, *parts)

    d_paths = {path(p, parts) for p, parts, _ in unseen_d.REAL_SOURCES.values()} | {path(*unseen_d.DIGITS_FILE)}
    d_paths.discard(None)
    earlier = set(unseen._role_volumes().values()) | set(real_mri_volumes())
    earlier |= {path("dipy", ("data", "files", "t1_coronal_slice.npy")), path("skimage", ("data", "phantom.png"))}
    earlier |= {path(p, parts) for p, parts, _, _ in unseen_b.REAL_SOURCES.values()}
    earlier |= {path(p, parts) for p, parts in unseen_b.UNRELATED_SOURCES.values()}
    earlier |= {path(p, parts) for p, parts, _ in unseen_c.REAL_SOURCES.values()}
    earlier |= {path(p, parts) for p, parts in unseen_c.UNRELATED_SOURCES.values()} | {path(*unseen_c.FACES_FILE)}
    assert not d_paths & earlier
    ranges = [set(r) for r in unseen_d.DIGIT_ROLES.values()]
    assert sum(len(r) for r in ranges) == len(set().union(*ranges))


@pytest.mark.slow
@needs_data
def test_set_d_builds_with_roles_disjoint_by_subject():
    set_d = unseen_d.unseen_d()
    planted = set_d.planted
    roles = set_d.subjects_by_role
    train, null, heldout = set(roles["train"]), set(roles["null"]), set(roles["heldout"])
    assert not train & null and not train & heldout and not null & heldout
    assert {subject_of(s) for s in planted.subjects} == train
    assert {subject_of(n) for n in set_d.real_names} == heldout
    assert {subject_of(n) for n in set_d.null_names} == null and len(set_d.null_names) == len(planted.holdout)
    assert set_d.null_subjects == len(null) >= 80 and len(heldout) >= 90
    copies = planted.copy_of[planted.is_copy]
    assert (copies >= 0).all() and (copies < len(planted.train)).all()
    kinds = [k for k in set_d.disguise if k != "real"]
    assert {k: kinds.count(k) for k in unseen.DISGUISES} == {k: 10 for k in unseen.DISGUISES}
    assert {subject_of(n) for n in set_d.copy_sources} >= {"china", "flower", "motorcycle_disp", "digit-0000"}
    assert len(set_d.unrelated) == len(set_d.unrelated_names) == 8
    # no image in two roles: training, null, held-out and unrelated images are pairwise distinct
    groups = (planted.train, planted.holdout, planted.generated[: len(set_d.real_names)], set_d.unrelated)
    hashes = [{hashlib.sha1(x.numpy().tobytes()).hexdigest() for x in group} for group in groups]
    assert sum(map(len, hashes)) == len(set().union(*hashes))
