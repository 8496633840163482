"""Verification stage: similarity alignment in pixel space recovers disguised copies; structure-free images score ~0."""

import pytest
import torch

from medgen.memorization.augment import elastic, gamma
from medgen.memorization.verified import MIN_VERIFIED_SCORE, null_margins
from medgen.memorization.verify import (
    MIN_CONTENT,
    Verification,
    VerifyConfig,
    prepare,
    spatial_content,
    support,
    transform,
    verify_candidates,
)


def _disguise(image: torch.Tensor, angle: float, shift: float, scale: float, flip: bool) -> torch.Tensor:
    """Rotate/shift/scale/flip, warp, bend the contrast, add a 10 % in-plane border: ``(1, *S)`` → ``(1, *S')``."""
    x = image[None] - image.min()
    d = x.ndim - 2
    moved = transform(x, torch.tensor([flip]), torch.tensor([angle]), torch.tensor([scale]), torch.full((1, d), shift))
    warped = elastic(moved, torch.Generator().manual_seed(0), magnitude=0.01)
    bent = gamma(warped, torch.tensor([0.7]))
    border = [max(1, n // 10) for n in bent.shape[2:4] for _ in range(2)][::-1]  # in-plane border
    return torch.nn.functional.pad(bent, [0, 0] * (d - 2) + border)[0] * 3 + 100


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_disguised_copy_is_found_among_other_subjects(planted_sets, spatial_dims):
    planted = planted_sets[spatial_dims]
    source = 3
    copy = _disguise(planted.train[source], angle=8.0, shift=0.08, scale=1.05, flip=spatial_dims == 2)
    candidates = [prepare(planted.holdout[i]) for i in range(4)] + [prepare(planted.train[source])]
    results = verify_candidates(copy, candidates, [100, 101, 102, 103, source])
    best = results[0]
    assert isinstance(best, Verification) and best.train_index == source
    # the others are slabs of the same two brains (adjacent anatomy): 3D 0.91 vs 0.71 at most
    assert best.score > 0.8 and best.score > max(r.score for r in results[1:]) + 0.15
    assert best.flip == (spatial_dims == 2)
    assert abs(abs(best.angle_deg) - 8.0) <= 3.0


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_noise_blank_and_constant_images_are_never_copies(planted_sets, spatial_dims):
    planted = planted_sets[spatial_dims]
    candidates = [prepare(image) for image in planted.train[:5]]
    shape = planted.train[0].shape
    samples = {
        "noise": torch.randn(shape, generator=torch.Generator().manual_seed(1)),
        "blank": torch.zeros(shape),
        "constant": torch.full(shape, 7.0),
        "uniform noise": torch.rand(shape, generator=torch.Generator().manual_seed(2)) * 1000,
    }
    for name, sample in samples.items():
        best = verify_candidates(sample, candidates, list(range(5)))[0]
        assert best.score < 0.3 < MIN_VERIFIED_SCORE, (name, best)


def _blob(shape: tuple[int, ...], widths: tuple[float, ...], offset: float = 0.0) -> torch.Tensor:
    """A smooth Gaussian blob ``(1, *S)`` with the given half-widths (fractions of the field) per axis."""
    grids = torch.meshgrid(*[torch.linspace(-1, 1, n) for n in shape], indexing="ij")
    return torch.exp(-sum(((g - offset) / w) ** 2 for g, w in zip(grids, widths, strict=True)))[None]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_featureless_blobs_of_different_shape_are_not_copies(spatial_dims):
    """Aligned blobs share their centre-to-rim intensity profile (NCC > 0.6) but not their edges."""
    shape, wide, tall = (
        ((64, 64), (0.5, 0.35), (0.3, 0.6)) if spatial_dims == 2 else ((48, 48, 16), (0.5, 0.35, 0.6), (0.3, 0.6, 0.4))
    )
    sample, other = _blob(shape, wide), _blob(shape, tall, offset=0.1)
    best = verify_candidates(sample, [prepare(other)], [0])[0]
    assert best.ncc > MIN_VERIFIED_SCORE > best.score
    assert verify_candidates(sample, [prepare(sample)], [0])[0].score > 0.99


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_spatial_content_separates_noise_from_images(planted_sets, spatial_dims):
    planted = planted_sets[spatial_dims]
    shape = planted.train[0].shape
    gen = torch.Generator().manual_seed(3)
    for flat in (torch.randn(shape, generator=gen), torch.rand(shape, generator=gen), torch.zeros(shape)):
        assert abs(spatial_content(flat)) < MIN_CONTENT / 2
    smooth = torch.nn.functional.avg_pool2d if spatial_dims == 2 else torch.nn.functional.avg_pool3d
    kernel = [min(5, n - (1 - n % 2)) for n in shape[1:]]  # odd, at most the side (3D slabs are 4 deep)
    blurred = smooth(torch.randn(1, *shape, generator=gen), kernel, 1, [k // 2 for k in kernel])[0]  # not i.i.d.
    assert spatial_content(blurred) > MIN_CONTENT
    assert min(spatial_content(x) for x in planted.train + planted.generated) > 0.5


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_polish_recovers_a_transform_between_grid_steps(planted_sets, spatial_dims):
    """A rotation and scale between the grid's steps (3.4°, 1.03) leave a residue that the polish removes."""
    image = planted_sets[spatial_dims].train[3]
    x = (image - image.min())[None]
    d = x.ndim - 2
    copy = transform(x, torch.tensor([False]), torch.tensor([3.4]), torch.tensor([1.03]), torch.full((1, d), 0.013))[0]
    rough = verify_candidates(copy, [prepare(image, VerifyConfig(polish=False))], [0], VerifyConfig(polish=False))[0]
    fine = verify_candidates(copy, [prepare(image)], [0])[0]
    assert fine.score >= rough.score and fine.score > 0.9, (rough, fine)
    assert abs(fine.angle_deg + 3.4) < 0.6 or abs(fine.angle_deg - 3.4) < 0.6


def test_null_margins_leave_the_null_image_s_own_subject_out():
    """A training image that two null subjects match well gets their score as its baseline (query side); each
    null image's own margin uses the other subject's score only (the calibration never sees its own match)."""

    def check(train_index: int, score: float) -> Verification:
        return Verification(train_index, score, 0.0, 0.0, False, 0.0, 1.0, [0.0, 0.0])

    checks = [[check(0, 0.95), check(1, 0.3)], [check(0, 0.93)], [check(0, 0.97)]]
    subjects = ["a", "b", "a"]  # two slices of subject a, one of b
    best, baselines = null_margins(checks, subjects, torch.tensor([0.2, 0.5]))
    assert baselines.tolist() == pytest.approx([0.97, 0.5])  # max(training baseline, best null score)
    assert best[0].baseline == pytest.approx(0.93) and best[1].baseline == pytest.approx(0.97)
    assert best[2].baseline == pytest.approx(0.93) and best[2].margin == pytest.approx((0.97 - 0.93) / 0.07)
    assert best[0].train_index == 0 and best[0].margin == pytest.approx((0.95 - 0.93) / 0.07)


def test_support_leaves_out_constant_fill_at_the_edges():
    image = torch.arange(1.0, 31.0).view(1, 5, 6)
    image[:, :2] = 0.0  # two rows of fill (the minimum) on top, as a translated copy has
    image[:, :, -1] = 0.0  # one column on the right
    image[:, 3, 2] = 0.0  # a background pixel inside the content stays in the support
    mask = support(image)
    assert mask[0, 2:, :-1].all() and not mask[0, :2].any() and not mask[0, :, -1].any()
    assert support(torch.zeros(1, 4, 4)).all()  # all fill: everything counts


@pytest.mark.parametrize("size", [25, 64])
def test_translated_copy_of_a_small_image_verifies_near_one(planted_2d, size):
    """A translation of 8 % with constant fill, the easiest disguise, of content that fills the field (the middle
    of a slice; set C's 25² faces): before the whole-image frame, supports and masked shifts it verified at 0.73
    (25²) and 0.66 (64²), translated faces of set C at 0.55-0.68; now 0.97 and 0.96."""
    h, w = planted_2d.train[3].shape[1:]
    middle = planted_2d.train[3][:, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]
    image = torch.nn.functional.interpolate(middle[None], size=(size, size), mode="area")[0]
    x = image[None] - image.min()
    copy = transform(x, torch.tensor([False]), torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([[0.08, -0.08]]))
    best = verify_candidates(copy[0], [prepare(image)], [0])[0]
    assert best.score > 0.9 and not best.flip and abs(best.angle_deg) < 2.0, best
