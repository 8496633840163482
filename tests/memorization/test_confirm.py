import pytest
import torch

from medgen.memorization.augment import copy_augment, rotate_shift
from medgen.memorization.confirm import confirm, confirm_pair


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_aligned_copy_scores_above_other_subject(planted_sets, spatial_dims):
    planted = planted_sets[spatial_dims]
    source, other = planted.train[0], planted.holdout[0]
    moved = rotate_shift(source[None], torch.tensor([5.0]), torch.tensor([[0.1] * spatial_dims]))[0]
    copy = confirm_pair(moved, source, 0)
    different = confirm_pair(other, source, 0)
    assert copy.ncc > 0.95 and copy.ssim > different.ssim + 0.1  # phantoms differ little in NCC
    assert copy.rotation_deg == -5.0 and not copy.flip


def test_flip_is_recovered_and_best_candidate_wins(planted_2d):
    source = planted_2d.train[3]
    flipped = copy_augment(source[None].flip(-1), torch.Generator().manual_seed(0))[0]
    best = confirm(flipped, [(7, planted_2d.holdout[1]), (3, source)])
    assert best.train_index == 3 and best.flip
    assert 0.0 < best.ssim <= 1.0
