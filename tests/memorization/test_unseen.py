"""Issue 12 acceptance: memorization detection on images the shipped embedder never saw.

Data: :mod:`medgen.memorization.unseen` (dipy's and nibabel's brain MRI, disjoint from the embedder's training
data; unrelated images of other modalities). Thresholds are calibrated on the holdout null, never on these
sets. The figures are printed by ``python benchmarks/memorization_f1.py --sets unseen``.
"""

import importlib.util

import pytest

from medgen.memorization.unseen import score_unseen, unseen_2d, unseen_3d

needs_dipy = pytest.mark.skipif(importlib.util.find_spec("dipy") is None, reason="needs dipy's test data (test extra)")


@pytest.mark.slow
@needs_dipy
def test_verification_finds_every_disguised_copy_of_unseen_images():
    data = unseen_2d()
    assert {"exact", "rotation", "translation", "elastic", "border", "contrast"} <= set(data.disguise)
    verified = score_unseen("structural", data, verify=True)
    alone = score_unseen("structural", data, verify=False)
    print(f"\nunseen 2D: {verified}\n           {alone}")
    assert verified.recall == 1.0, verified.recall_by_disguise
    assert verified.false_positive_rate <= 0.01
    assert verified.auroc >= 0.99
    assert verified.unrelated_flagged == 0.0
    assert verified.recall_at_k == 1.0  # the union with the cropped-pixel descriptor finds every source
    assert alone.recall < verified.recall  # the embedding alone misses some disguised copies of unseen anatomy


@pytest.mark.slow
@needs_dipy
def test_rotated_shifted_resampled_copies_of_unseen_volumes_are_flagged():
    data = unseen_3d()
    score = score_unseen("structural", data, verify=True, k=2)
    print(f"\nunseen 3D: {score}")
    assert score.recall == 1.0 and score.recall_by_disguise["rotation+shift+resample"] == 1.0
    assert score.unrelated_flagged == 0.0 and score.auroc >= 0.99
