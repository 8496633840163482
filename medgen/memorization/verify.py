"""Verification of retrieved candidates: similarity alignment in pixel space, then a structural score.

Retrieval (:mod:`.search`) only proposes the top-k training images of a sample; this stage decides. For each
candidate the sample is aligned by a similarity transform (flip, rotation in the first two spatial axes,
isotropic scale, translation) and scored on the overlapping foreground. Written here instead of calling
SimpleITK's registration because one sample is matched against k candidates under dozens of start
transforms at once: batched FFT cross-correlation in torch does all of them in a few tensor operations
(SimpleITK registers one pair from one start at a time, ~10-50 ms each).

1. **Canonical frames.** Each image is cropped to its foreground bounding box (robust: 1st-99th percentile of
   foreground coordinates, a 5 % margin padded with the background), padded to a square in the rotation plane
   with its background, and resized; borders, padding, whole-image crops and rescaling mostly drop out here. A
   second frame keeps the whole image (no crop): there a translated copy of the same size is a pure
   translation (in the cropped frame the crop of its smaller foreground adds a scale change). Each frame
   carries the image's **support** (:func:`support`): its own pixels, without the square padding, the crop's
   margin and constant fill at its edges (a translated copy's uncovered side).
2. **Coarse search** per frame (2D 32², 3D 24² × depth): every flip × rotation × scale variant of the sample
   against every candidate; the best circular shift within ±25 % of the field comes from one FFT
   cross-correlation.
3. **Refinement** of the best few candidates per frame (2D 96², 3D 48² × depth) around the coarse transform
   and from the identity, in two passes (the second with half the steps); the coarse scales span 0.85-1.17.
   The shift is found by masked NCC (:func:`_masked_shifts`): correlated only where both supports are, so
   fill and lost content do not pull it. The best match is then **polished** (:func:`polish`): a few gradient
   steps on angle, scale and shift that maximise NCC on the supports' overlap, which removes the grid's
   residue (set C: a rotated copy of a star field went from 0.83 to 0.94, a bordered elevation map from 0.95
   to 0.99).
4. **Score** on the pair aligned by ``grid_sample`` (no wrap-around): the Spearman correlation (Pearson on
   ranks, so any monotone intensity change, gamma or window, drops out) over the intersection of the two
   foregrounds, computed twice, on the intensities and on the edge strength (:func:`edge_strength`; its scale
   at least one pixel of the original image, :func:`edge_scale`), and the smaller of the two is kept. The edges
   are blurred within each support and correlated away from the supports' boundaries (a band of 2 σ): where
   content was cut, by a copy's translation or by the source's own frame (which a rotated copy shows against
   its fill), the cut is no edge of the content; times the foregrounds' overlap (Dice, capped at 1
   from 0.8 upwards) so that a match on a small corner does not count. Only the overlap of the two supports
   is scored: content that a translated or cropped copy lost is neither compared nor counted in the Dice, but
   the overlap must hold :data:`MIN_COVERAGE` of the training image's foreground. NCC and SSIM of the aligned
   pair are reported beside it. A
   constant, blank or pure-noise sample has no structure to correlate and scores about 0; a sample whose
   neighbouring voxels are uncorrelated (:func:`spatial_content` below :data:`MIN_CONTENT`: i.i.d. noise, blank,
   constant) scores 0 whatever the alignment found.

   Set C (development) showed why the frames, supports and masked shifts: translated 25² faces verified at
   0.55-0.68 and a translated CT slice at 0.49 (wrong flip) before, 0.89-0.96 and 0.86 after; the image's own
   edge against the padding and the fill's edge had counted as structure.

   Why both: the ranks of a smooth, featureless blob's intensities are mostly its centre-to-rim profile, and
   any two such blobs share it once aligned (edge slices of a low-resolution brain reached 0.6-0.68 against
   unrelated thin slices). Where the intensity changes and how strongly, the edges, is what two different
   blobs do not share, while a copy keeps its edges through every disguise the alignment undoes (rotation,
   shift, scale, border) and through a monotone intensity change up to a local contrast factor. A copy has
   to match on both; the minimum keeps the score on the scale of the intensity correlation, so the threshold
   floor of :mod:`.verified` keeps its meaning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from medgen.evaluation.similarity import ssim
from medgen.memorization.preprocess import zscore


@dataclass(frozen=True)
class VerifyConfig:
    """Search grid of the alignment.

    Attributes:
        coarse: Side of the coarse grid per spatial_dims (rotation plane).
        fine: Side of the refinement grid per spatial_dims.
        angles: Coarse rotations (degrees) of the sample.
        scales: Coarse isotropic scales of the sample.
        flips: Also try the sample mirrored along its last axis.
        max_shift: Largest translation searched, as a fraction of the field.
        refine: Candidates refined at the fine grid per frame (best coarse scores; with 3, a translated slice of
            set A and one of set C were missed: neighbouring slices of its volume ranked higher in the coarse
            search and its source was never refined).
        refine_angles: Offsets (degrees) around the coarse angle.
        refine_scales: Factors around the coarse scale.
        refine_passes: Refinement passes; each one searches around the previous best with the offsets and the
            scale factors' distance to 1 halved (two passes: ±2.5° / ±4 %, then ±1.25° / ±2 %).
        polish: Refine the refined transforms continuously (:func:`polish`).
        whole_frame: Also search in the whole image's frame, not only the foreground-cropped one
            (:func:`canonical_frame`): a translated copy is a pure translation there.
    """

    coarse: tuple[int, int] = (32, 24)
    fine: tuple[int, int] = (96, 48)
    angles: tuple[float, ...] = (-15.0, -10.0, -5.0, 0.0, 5.0, 10.0, 15.0)
    scales: tuple[float, ...] = (0.85, 0.92, 1.0, 1.08, 1.17)
    flips: bool = True
    max_shift: float = 0.25
    refine: int = 5
    refine_angles: tuple[float, ...] = (-2.5, 0.0, 2.5)
    refine_scales: tuple[float, ...] = (0.96, 1.0, 1.04)
    refine_passes: int = 2
    polish: bool = True
    whole_frame: bool = True

    def side(self, spatial_dims: int, fine: bool) -> int:
        """Grid side for 2D (index 0) or 3D (index 1)."""
        return (self.fine if fine else self.coarse)[spatial_dims - 2]


#: Least room ``1 - baseline`` in :attr:`Verification.margin` (a baseline of 0.99 would otherwise make any
#: score above it a full margin).
MIN_ROOM = 0.05


@dataclass
class Verification:
    """Best alignment of a sample to one training image and its scores.

    Attributes:
        train_index: The training image (index into the training set).
        score: Decision score: the smaller foreground Spearman correlation of intensities and of edge strength,
            × overlap, in [-1, 1].
        ncc: Normalised cross-correlation of the aligned pair on the union of the foregrounds.
        ssim: SSIM of the aligned pair (canonical grid).
        flip: The sample was mirrored along its last axis.
        angle_deg: Rotation of the sample in the first two spatial axes.
        scale: Isotropic scale of the sample (in the canonical frame).
        shift: Translation of the sample per spatial axis, as a fraction of the field.
        baseline: The training image's own best score against the training images of *other* subjects
            (:func:`~medgen.memorization.verified.training_baselines`; 0 when unknown): how well an independent
            image already matches it.
    """

    train_index: int
    score: float
    ncc: float
    ssim: float
    flip: bool
    angle_deg: float
    scale: float
    shift: list[float]
    baseline: float = 0.0

    @property
    def margin(self) -> float:
        """Decision value: the score's excess over the baseline, relative to the room above it.

        ``(score - baseline) / (1 - baseline)`` with the room at least :data:`MIN_ROOM`; equal to ``score`` when
        the baseline is 0. A featureless training image (a plain ellipse that every other subject's edge slice
        matches at 0.97) needs a near-perfect match; a distinctive one (a face that other faces match at 0.5)
        is flagged by a disguised copy at 0.8.
        """
        return (self.score - self.baseline) / max(1.0 - self.baseline, MIN_ROOM)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready fields (rounded), with the margin."""
        out = asdict(self)
        out["margin"] = self.margin
        for key in ("score", "ncc", "ssim", "angle_deg", "scale", "baseline", "margin"):
            out[key] = round(float(out[key]), 4)
        out["shift"] = [round(s, 4) for s in self.shift]
        return out


def foreground(x: Tensor) -> Tensor:
    """Voxels above 15 % of the robust range (1st to 99th percentile) after a 3-voxel box blur (noise-robust).

    Args:
        x: ``(N, 1, *S)`` images.

    Returns:
        ``(N, 1, *S)`` bool; all False for a constant image.
    """
    pool = F.avg_pool2d if x.ndim == 4 else F.avg_pool3d
    kernel = [3 if n >= 3 else 1 for n in x.shape[2:]]
    smooth = pool(x.float(), kernel, stride=1, padding=[k // 2 for k in kernel], count_include_pad=False)
    flat = smooth.flatten(1)[:, :: max(1, smooth[0].numel() // 100_000)]
    n = flat.shape[1]
    lo = flat.kthvalue(max(1, round(0.01 * n)), dim=1).values
    hi = flat.kthvalue(max(1, round(0.99 * n)), dim=1).values
    shape = (-1,) + (1,) * (x.ndim - 1)
    return (smooth > (lo + 0.15 * (hi - lo)).view(shape)) & (hi > lo).view(shape)


def support(image: Tensor) -> Tensor:
    """Where ``(1, *S)`` has its own pixels: all of it except constant fill at its edges.

    Whole rows/columns (slices in 3D) at an edge of the image that hold one value, the image's minimum, are
    fill (a translated copy's uncovered side, a border), not content: they are left out of the score, so a
    translated copy is compared only where it still shows the image, and its fill's edge is not an edge.

    Returns:
        ``(1, *S)`` float mask, 1 inside; all 1 for an image without such fill (or that is all fill).
    """
    x = image[0].float()
    lo = float(x.min())
    tol = 1e-6 * max(float(x.max()) - lo, 1e-12)
    keep = []
    for axis, n in enumerate(x.shape):
        lines = x.movedim(axis, 0).reshape(n, -1)
        fill = (lines.amax(1) - lo <= tol).tolist()  # the whole line is the minimum
        start, stop = 0, n
        while start < stop and fill[start]:
            start += 1
        while stop > start and fill[stop - 1]:
            stop -= 1
        keep.append(slice(start, stop) if stop > start else slice(0, n))
    mask = torch.zeros_like(image, dtype=torch.float32)
    mask[(slice(None),) + tuple(keep)] = 1.0
    return mask


def _foreground_box(image: Tensor, margin: float) -> tuple[tuple[slice, ...], list[int]]:
    """The 1st-99th percentile box of ``(1, *S)``'s foreground coordinates and the margin per axis (voxels)."""
    mask = foreground(image[None].float())[0, 0]
    total = int(mask.sum())
    if total < 4:
        return tuple(slice(None) for _ in mask.shape), [0] * mask.ndim
    box, pads = [], []
    for axis, n in enumerate(mask.shape):
        profile = mask.sum(dim=[a for a in range(mask.ndim) if a != axis]).cumsum(0).float() / total
        lo, hi = int(torch.searchsorted(profile, 0.01)), int(torch.searchsorted(profile, 0.99))
        extra = max(0.0, (min(n, 4) - (hi - lo + 1)) / 2)  # at least 4 voxels (thin slabs)
        start = max(0, min(int(lo - extra), n - min(n, 4)))
        stop = max(start + min(n, 4), min(n, int(hi + extra + 0.5) + 1))
        box.append(slice(start, stop))
        pads.append(max(1, round(margin * (stop - start))))
    return tuple(box), pads


def crop_foreground(image: Tensor, margin: float = 0.05) -> Tensor:
    """Crop ``(1, *S)`` to the 1st-99th percentile box of its foreground coordinates, plus ``margin`` per side.

    The margin is added as padding with the image's minimum (its background), not taken from the image: an
    image whose content touches its edges and the same image inside a border then crop to the same frame (a
    margin taken from the image is clipped at the edges of the one and not of the other: a 10 % scale change
    between a training image and its bordered copy, which sets A and B showed).
    """
    return _crop_pad(image.float(), *_foreground_box(image, margin), float(image.min()))


def _crop_pad(image: Tensor, box: tuple[slice, ...], pads: list[int], value: float) -> Tensor:
    crop = image[(slice(None),) + box].float()
    spec = [p for pad in reversed(pads) for p in (pad, pad)]  # F.pad lists the last axis first
    return F.pad(crop[None], spec, value=value)[0]


@dataclass
class Frame:
    """One canonical frame of an image at both grids.

    Attributes:
        coarse: ``(1, 1, *S_coarse)`` background-subtracted image.
        fine: ``(1, 1, *S_fine)`` background-subtracted image.
        support: ``(1, 1, *S_fine)`` where the fine image shows the image's own pixels (:func:`support`; not
            the square padding, the foreground crop's margin or constant fill), in [0, 1].
        resolution: Fine-grid voxels per voxel of the original image (4 for a 25² face, 0.7 for a 128² one).
    """

    coarse: Tensor
    fine: Tensor
    support: Tensor
    resolution: float


def canonical_frame(image: Tensor, side: int, fine_side: int, crop: bool = True) -> Frame:
    """Crop to the foreground (or not), pad the rotation plane to a square with the minimum, resize.

    Args:
        image: ``(1, *S)`` 2D image or 3D volume, any intensity scale.
        side: Coarse output side in the first two spatial axes.
        fine_side: Fine output side.
        crop: Crop to the foreground box first (:func:`crop_foreground`); False: the whole image, so that a
            translated copy of the same size differs from its source by a translation only (the crop of its
            smaller foreground would add a scale change).

    Returns:
        The :class:`Frame` (3D: the last axis keeps the crop's aspect, at least 4).
    """
    image = image.float()
    mask = support(image)
    box, pads = _foreground_box(image, 0.05) if crop else (tuple(slice(None) for _ in image.shape[1:]), [0])
    pads = pads + [0] * (image.ndim - 1 - len(pads))
    x = _crop_pad(image, box, pads, float(image.min()))[None]
    m = _crop_pad(mask, box, pads, 0.0)[None]
    x = x - x.amin()
    h, w = x.shape[2:4]
    square = max(h, w)
    d = x.ndim - 2
    spec = [0, 0] * (d - 2) + [(square - w) // 2, square - w - (square - w) // 2]
    spec += [(square - h) // 2, square - h - (square - h) // 2]
    x, m = F.pad(x, spec), F.pad(m, spec)
    mode = "bilinear" if d == 2 else "trilinear"

    def resize(t: Tensor, n: int) -> Tensor:
        size: tuple[int, ...] = (n, n)
        if d == 3:
            size += (max(4, min(n, round(n * x.shape[4] / square))),)
        return F.interpolate(t, size=size, mode=mode, align_corners=False, antialias=d == 2 and square > n)

    return Frame(resize(x, side), resize(x, fine_side), resize(m, fine_side), fine_side / square)


def _theta(d: int, flip: Tensor, angle: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """``(V, d, d+1)`` grid_sample matrices (output → input coordinates; reversed axis order) of the transforms."""
    v = angle.shape[0]
    rad = angle * math.pi / 180
    a, b = d - 1, d - 2  # grid order is reversed: the first spatial axis is the last grid coordinate
    cos, sin = torch.cos(rad), torch.sin(rad)
    eye = torch.eye(d).expand(v, d, d)
    plane = torch.zeros(v, d, d)
    plane[:, a, a] = plane[:, b, b] = 1.0
    rotation = eye - plane  # out of place throughout: polish differentiates through this
    rotation = rotation + plane * cos.view(v, 1, 1)
    off = torch.zeros(d, d)
    off[a, b], off[b, a] = -1.0, 1.0
    rotation = rotation + off * sin.view(v, 1, 1)
    mirror = torch.ones(v, d, 1)
    mirror = torch.cat([torch.where(flip, -1.0, 1.0).view(v, 1, 1), mirror[:, 1:]], dim=1)
    linear = rotation / scale.view(v, 1, 1) * mirror  # mirror the last spatial axis (grid row 0)
    # the shift applies after the linear part: input = A·(out − s) = A·out − A·s (grid units, reversed order)
    offset = -(linear @ (shift.flip(-1) * 2).unsqueeze(-1))
    theta = torch.cat([linear, offset], dim=2)
    return theta


def transform(x: Tensor, flip: Tensor, angle: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """Apply ``V`` similarity transforms to one image ``(1, 1, *S)`` (background 0) → ``(V, 1, *S)``.

    Args:
        x: ``(1, 1, *S)`` image with background 0.
        flip: ``(V,)`` bool, mirror the last spatial axis.
        angle: ``(V,)`` degrees in the first two spatial axes.
        scale: ``(V,)`` isotropic magnification.
        shift: ``(V, d)`` translation per spatial axis, fraction of the field.
    """
    d = x.ndim - 2
    theta = _theta(d, flip, angle, scale, shift)
    grid = F.affine_grid(theta, [angle.shape[0], 1, *x.shape[2:]], align_corners=False)
    return F.grid_sample(x.expand(angle.shape[0], *x.shape[1:]), grid, align_corners=False, padding_mode="zeros")


def _best_shifts(moving: Tensor, fixed: Tensor, max_shift: float) -> tuple[Tensor, Tensor]:
    """Best circular shift of each of ``V`` moving images for each of ``K`` fixed ones (FFT correlation).

    Args:
        moving: ``(V, 1, *S)`` z-scored.
        fixed: ``(K, 1, *S)`` z-scored.
        max_shift: Largest shift searched, fraction of each axis.

    Returns:
        ``(V, K)`` correlations (mean product) and ``(V, K, d)`` shifts as fractions of each axis.
    """
    spatial = moving.shape[2:]
    dims = tuple(range(-len(spatial), 0))
    fm = torch.fft.rfftn(moving[:, 0], dim=dims)
    ff = torch.fft.rfftn(fixed[:, 0], dim=dims)
    corr = torch.fft.irfftn(ff[None] * fm[:, None].conj(), s=spatial, dim=dims)  # (V, K, *S)
    best, shifts = _window(corr, spatial, spatial, max_shift)
    return best / math.prod(spatial), shifts


def _window(corr: Tensor, spatial: Sequence[int], period: Sequence[int], max_shift: float) -> tuple[Tensor, Tensor]:
    """Best of ``(V, K, *period)`` correlations over shifts within ±``max_shift`` of each axis of ``spatial``.

    ``period`` is the FFT size per axis (``spatial`` for circular correlation, larger when zero-padded).

    Returns:
        ``(V, K)`` best values and ``(V, K, d)`` their shifts as fractions of each axis of ``spatial``.
    """
    windows = []
    for axis, (n, p) in enumerate(zip(spatial, period, strict=True)):  # shifts within ±max_shift (circular offsets)
        limit = max(1, int(max_shift * n))
        offsets = torch.cat([torch.arange(0, min(limit, p // 2) + 1), torch.arange(max(p - limit, p // 2 + 1), p)])
        corr = corr.index_select(2 + axis, offsets)
        windows.append(offsets)
    best, flat = corr.flatten(2).max(dim=2)
    shifts = []
    for n, p, offsets in zip(reversed(spatial), reversed(period), reversed(windows), strict=True):
        s = offsets[flat % offsets.numel()]
        shifts.append(torch.where(s > p // 2, s - p, s).float() / n)
        flat = flat // offsets.numel()
    return best, torch.stack(shifts[::-1], dim=-1)


#: Least overlap of the two supports, as a fraction of the smaller one, for a shift of :func:`_masked_shifts`.
MIN_OVERLAP = 0.5


def _masked_shifts(
    moving: Tensor, moving_mask: Tensor, fixed: Tensor, fixed_mask: Tensor, max_shift: float
) -> tuple[Tensor, Tensor]:
    """Best shift of each of ``V`` moving images for each of ``K`` fixed ones by NCC on the supports' overlap.

    The masked normalised cross-correlation of Padfield (2012, "Masked object registration in the Fourier
    domain") for every shift at once (FFTs zero-padded by the largest shift: no wrap-around): each shift is
    scored only where both images show their own pixels, so fill, borders and content that a translated copy
    lost do not pull the shift (plain correlation put a translated featureless band, whose noise was its only
    clue, 10 % off).

    Args:
        moving: ``(V, 1, *S)``.
        moving_mask: ``(V, 1, *S)`` support in [0, 1].
        fixed: ``(K, 1, *S)``.
        fixed_mask: ``(K, 1, *S)``.
        max_shift: Largest shift searched, fraction of each axis.

    Returns:
        ``(V, K)`` correlations and ``(V, K, d)`` shifts as fractions of each axis.
    """
    spatial = tuple(moving.shape[2:])
    period = tuple(n + max(1, int(max_shift * n)) for n in spatial)  # enough zero padding: no wrap-around
    dims = tuple(range(-len(spatial), 0))

    def standard(x: Tensor, m: Tensor) -> Tensor:  # zero mean, unit variance inside the mask (float32 sums)
        total = m.flatten(1).sum(1).clamp_min(1.0).view(-1, *[1] * (x.ndim - 1))
        mean = (x * m).flatten(1).sum(1).view_as(total) / total
        std = (((x - mean) ** 2 * m).flatten(1).sum(1).view_as(total) / total).sqrt().clamp_min(1e-6)
        return (x - mean) / std * m

    def fft(x: Tensor) -> Tensor:
        return torch.fft.rfftn(x[:, 0], s=period, dim=dims)

    def corr(a: Tensor, b: Tensor) -> Tensor:  # sum_x a(x) b(x + s) for every V x K pair
        return torch.fft.irfftn(b[None] * a[:, None].conj(), s=period, dim=dims)

    m, f = standard(moving, moving_mask), standard(fixed, fixed_mask)
    mm, fm = fft(moving_mask), fft(fixed_mask)
    m1, f1 = fft(m), fft(f)
    n = corr(mm, fm)
    sum_m, sum_f = corr(m1, fm), corr(mm, f1)
    var_m = (corr(fft(m * m), fm) - sum_m.square() / n.clamp_min(1.0)).clamp_min(0.0)
    var_f = (corr(mm, fft(f * f)) - sum_f.square() / n.clamp_min(1.0)).clamp_min(0.0)
    ncc = (corr(m1, f1) - sum_m * sum_f / n.clamp_min(1.0)) / (var_m * var_f).sqrt().clamp_min(1e-6)
    least = MIN_OVERLAP * torch.minimum(
        moving_mask.flatten(1).sum(1).view(-1, 1), fixed_mask.flatten(1).sum(1).view(1, -1)
    )
    ncc = torch.where(n >= least.view(*least.shape, *[1] * len(spatial)), ncc, torch.full_like(ncc, -2.0))
    return _window(ncc, spatial, period, max_shift)


def _grid_search(
    moving: Tensor,
    fixed: Tensor,
    flip: Tensor,
    angle: Tensor,
    scale: Tensor,
    max_shift: float,
    masks: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Best variant (index into the ``V`` transforms) and shift of ``moving`` ``(1,1,*S)`` per fixed ``(K,1,*S)``.

    With ``masks`` (the supports of ``moving`` and ``fixed``) the shift is found by masked NCC
    (:func:`_masked_shifts`), else by plain circular correlation (:func:`_best_shifts`).
    """
    zero = torch.zeros(angle.shape[0], moving.ndim - 2)
    variants = transform(moving, flip, angle, scale, zero)
    if masks is None:
        corr, shifts = _best_shifts(zscore(variants), zscore(fixed), max_shift)
    else:
        variant_masks = (transform(masks[0], flip, angle, scale, zero) > 0.999).float()
        corr, shifts = _masked_shifts(variants, variant_masks, fixed, masks[1], max_shift)
    value, best = corr.max(dim=0)  # (K,)
    return value, best, shifts[best, torch.arange(fixed.shape[0])]


#: Adam steps of :func:`polish` (continuous refinement after the grid search) and its learning rate (units of
#: the parametrisation: degrees, percent of scale, percent of the field).
POLISH_STEPS, POLISH_LR = 15, 0.25


def polish(
    moving: Frame, target: Frame, flip: Tensor, angle: Tensor, scale: Tensor, shift: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Continuous refinement of ``V`` grid-search transforms: maximise NCC on the frames' overlap by gradient.

    The grid search lands within half a grid step (1.25°, 2 % of scale, one voxel); on fine texture (stars,
    faces at 25², noise-free phantom edges) that residue costs more correlation than the disguise itself. Written
    here instead of SimpleITK's optimisers because it reuses :func:`transform` on the canonical tensors already
    in memory and can refine several transforms in one batched ``grid_sample`` (:func:`verify_candidates`
    polishes only the best one, for cost: 1.8x the verification time without it). Images are blurred by one
    voxel (or the native pixel of a small image) within their supports first (a wider basin); the correlation
    runs over the overlap of the two supports; a transform whose correlation does not improve keeps its grid
    value.

    Args:
        moving: The sample's frame (fine grid).
        target: The candidate's frame.
        flip: ``(V,)`` bool.
        angle: ``(V,)`` degrees.
        scale: ``(V,)`` isotropic scale.
        shift: ``(V, d)`` fraction of the field.

    Returns:
        Refined ``(angle, scale, shift)``.
    """
    with torch.inference_mode(False), torch.enable_grad():
        sigma = max(1.0, 0.5 * max(moving.resolution, target.resolution))
        blurred = _gaussian(moving.fine.clone(), sigma, moving.support)
        fixed = _gaussian(target.fine.clone(), sigma, target.support)
        inside = (target.support > 0.999).float()
        start = torch.cat([angle.view(-1, 1), 100 * scale.log().view(-1, 1), 100 * shift], dim=1).detach()
        params = start.clone().requires_grad_(True)

        def correlation(p: Tensor) -> Tensor:
            a_, s_, t_ = p[:, 0], (p[:, 1] / 100).exp(), p[:, 2:] / 100
            aligned = transform(blurred, flip, a_, s_, t_)
            with torch.no_grad():  # the overlap's weight moves little per step: no gradient through it
                weight = (transform(moving.support, flip, a_.detach(), s_.detach(), t_.detach()) > 0.999) * inside
            total = weight.flatten(1).sum(1).clamp_min(1.0)

            def centred(x: Tensor) -> Tensor:
                mean = (x * weight).flatten(1).sum(1) / total
                return (x - mean.view(-1, *[1] * (x.ndim - 1))) * weight

            a, b = centred(aligned).flatten(1), centred(fixed).flatten(1)
            return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)

        optimizer = torch.optim.Adam([params], lr=POLISH_LR)
        for step in range(POLISH_STEPS):
            for group in optimizer.param_groups:
                group["lr"] = POLISH_LR * 0.5 * (1 + math.cos(math.pi * step / POLISH_STEPS))
            optimizer.zero_grad()
            (-correlation(params).sum()).backward()
            optimizer.step()
        with torch.no_grad():
            better = (correlation(params) > correlation(start)).view(-1, 1)
            best = torch.where(better, params, start).detach()
    return best[:, 0], (best[:, 1] / 100).exp(), best[:, 2:] / 100


#: Least fraction of the training image's foreground that the aligned sample's frame must overlap for a full
#: score (:func:`score_pair`): a copy translated by 10 % of the field keeps about 80 %.
MIN_COVERAGE = 0.6


def _ranks(values: Tensor) -> Tensor:
    out = torch.empty_like(values)
    out[values.argsort()] = torch.arange(values.numel(), dtype=values.dtype)
    return out


def _pearson(a: Tensor, b: Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = float(a.norm() * b.norm())
    return float((a * b).sum()) / denominator if denominator > 1e-12 else 0.0


#: Scale (voxels of the fine grid, ~1.5 % of the field) of the Gaussian derivative in :func:`edge_strength`:
#: the Gaussian window of the SSIM beside it, the usual scale for edges that noise and resampling leave intact.
EDGE_SIGMA = 1.5


def _gaussian(x: Tensor, sigma: float, mask: Tensor | None = None) -> Tensor:
    """Separable Gaussian blur of ``(N, 1, *S)`` along every spatial axis (edges replicated).

    With ``mask`` (``(N, 1, *S)`` in [0, 1]) a normalised convolution, ``blur(x·m) / blur(m)``: values outside
    the mask do not leak in, so the mask's boundary (a frame's edge, fill) makes no edge.
    """
    if mask is not None:
        weight = _gaussian(mask.float(), sigma)
        return _gaussian(x * mask, sigma) / weight.clamp_min(1e-3) * (weight > 1e-3)
    radius = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-t * t / (2 * sigma * sigma))
    kernel = kernel / kernel.sum()
    d = x.ndim - 2
    conv = F.conv2d if d == 2 else F.conv3d
    for axis in range(d):
        shape = [1, 1] + [1] * d
        shape[2 + axis] = kernel.numel()
        pad = [0, 0] * d
        pad[2 * (d - 1 - axis)] = pad[2 * (d - 1 - axis) + 1] = radius  # F.pad lists the last axis first
        x = conv(F.pad(x, pad, mode="replicate"), kernel.view(shape))
    return x


def edge_strength(x: Tensor, sigma: float = EDGE_SIGMA, mask: Tensor | None = None) -> Tensor:
    """Gradient magnitude of ``(N, 1, *S)`` (2D or 3D) after a Gaussian blur of ``sigma`` voxels (within ``mask``)."""
    smooth = _gaussian(x.float(), sigma, mask)
    grads = torch.gradient(smooth, dim=list(range(2, x.ndim)))
    return torch.stack(grads).square().sum(0).sqrt()


def _erode(mask: Tensor, sigma: float) -> Tensor:
    """``(1, 1, *S)`` bool ``mask`` without a band of ``2 sigma`` voxels along its boundary (the image's frame)."""
    radius = max(1, math.ceil(2 * sigma))
    pool = F.max_pool2d if mask.ndim == 4 else F.max_pool3d
    kernel = [min(2 * radius + 1, 2 * (n // 2) + 1) for n in mask.shape[2:]]
    outside = pool((~mask).float(), kernel, stride=1, padding=[k // 2 for k in kernel])
    return outside < 0.5


def score_pair(
    aligned: Tensor,
    fixed: Tensor,
    valid: Tensor | None = None,
    fixed_support: Tensor | None = None,
    sigma: float = EDGE_SIGMA,
) -> tuple[float, float, float]:
    """Decision score, NCC and SSIM of an aligned pair ``(1, 1, *S)`` each (background 0).

    Args:
        aligned: ``(1, 1, *S)`` the sample after alignment.
        fixed: ``(1, 1, *S)`` the training image.
        valid: ``(1, 1, *S)`` bool, where the aligned sample has support (its own pixels, :func:`support`); None:
            everywhere. Only this overlap of the two supports is scored: content that the sample lost (a
            translated or cropped copy) neither counts against it nor enters the Dice; the overlap must hold at
            least :data:`MIN_COVERAGE` of the training image's foreground (else the score shrinks in proportion).
        fixed_support: ``(1, 1, *S)`` bool, the training image's support; None: everywhere.
        sigma: Scale of the edges (fine-grid voxels).

    Returns:
        ``(score, ncc, ssim)``: score = min(Spearman correlation of the intensities, of the edge strengths)
        on the foregrounds' intersection × min(1, Dice / 0.8) × min(1, coverage / MIN_COVERAGE) (module
        docstring, step 4).
    """
    fg_a, fg_b = foreground(aligned)[0, 0], foreground(fixed)[0, 0]
    own_a = torch.ones_like(aligned, dtype=torch.bool) if valid is None else valid
    own_b = torch.ones_like(fixed, dtype=torch.bool) if fixed_support is None else fixed_support
    fg_b = fg_b & own_b[0, 0]
    inside = own_a[0, 0] & own_b[0, 0]
    total_b = int(fg_b.sum())
    coverage = int((fg_b & inside).sum()) / total_b if total_b else 0.0
    fg_a, fg_b = fg_a & inside, fg_b & inside
    both, either = fg_a & fg_b, fg_a | fg_b
    n_both, n_either = int(both.sum()), int(either.sum())
    if n_both < 16:
        return 0.0, 0.0, 0.0
    dice = 2 * n_both / (int(fg_a.sum()) + int(fg_b.sum()))
    a, b = aligned[0, 0], fixed[0, 0]
    intensity = _pearson(_ranks(a[both]), _ranks(b[both]))
    edges_a = edge_strength(aligned, sigma, own_a.float())[0, 0]
    edges_b = edge_strength(fixed, sigma, own_b.float())[0, 0]
    interior = both & _erode(own_a, sigma)[0, 0] & _erode(own_b, sigma)[0, 0]
    region = interior if int(interior.sum()) >= 16 else both
    edges = _pearson(_ranks(edges_a[region]), _ranks(edges_b[region]))
    score = min(intensity, edges) * min(1.0, dice / 0.8) * min(1.0, coverage / MIN_COVERAGE)
    ncc = _pearson(a[either], b[either]) if n_either else 0.0
    pair = zscore(torch.cat([aligned, fixed]))
    side = min(fixed.shape[2:])
    k = min(11, side - (1 - side % 2))
    value = float(ssim(pair[:1], pair[1:], data_range=float(pair.max() - pair.min()), kernel_size=k,
                       sigma=1.5 * k / 11).values[0])  # fmt: skip
    return score, ncc, value


#: A sample whose neighbouring voxels are less correlated than this (:func:`spatial_content`) has no spatial
#: structure (i.i.d. noise: about 0; blank or constant: 0) and is never a copy: its verified score is 0. Disguised
#: copies in sets A and B, training images and unrelated pictures all lie above 0.85; a noise-only training slice
#: (an MR phantom's edge slice in set B, 0.39) falls below it only through its own noise. Exception: a verified
#: score of at least :data:`IDENTICAL_SCORE` (the sample reproduces a training image voxel for voxel, noise
#: included) stands: identity can be verified on noise even though no disguise can.
MIN_CONTENT = 0.2
IDENTICAL_SCORE = 0.95


def spatial_content(image: Tensor) -> float:
    """Lag-1 autocorrelation of ``(1, *S)`` (z-scored), the smallest over the spatial axes of >= 3 voxels.

    Returns:
        About 0 for i.i.d. noise, 0 for a constant image, close to 1 for images with structure.
    """
    x = image.float()
    std = float(x.std()) if x.numel() > 1 else 0.0
    if std <= 1e-12 * max(1.0, float(x.abs().max())):
        return 0.0
    x = (x - x.mean()) / std
    values = [
        float((x.narrow(d, 0, n - 1) * x.narrow(d, 1, n - 1)).mean()) for d, n in enumerate(x.shape) if d and n >= 3
    ]
    return min(values) if values else 0.0


@dataclass
class Canonical:
    """An image in its canonical frames at both grids (cache it for training images that recur as candidates).

    Attributes:
        frames: The foreground-cropped frame, then (:attr:`VerifyConfig.whole_frame`) the whole image's frame.
    """

    frames: tuple[Frame, ...]


def prepare(image: Tensor, config: VerifyConfig | None = None) -> Canonical:
    """:func:`canonical_frame` of ``image`` ``(1, *S)`` at the coarse and fine grids of ``config``."""
    cfg = config or VerifyConfig()
    d = image.ndim - 1
    crops = (True, False) if cfg.whole_frame else (True,)
    return Canonical(tuple(canonical_frame(image, cfg.side(d, False), cfg.side(d, True), crop) for crop in crops))


def _like(x: Tensor, reference: Tensor) -> Tensor:
    """Resize ``x`` to ``reference``'s spatial shape (3D volumes whose depths differ)."""
    if x.shape[2:] == reference.shape[2:]:
        return x
    return F.interpolate(x, size=tuple(reference.shape[2:]), mode="trilinear", align_corners=False)


def _like_frame(frame: Frame, reference: Frame) -> Frame:
    """``frame`` resized to ``reference``'s grids (3D volumes whose depths differ)."""
    return Frame(
        _like(frame.coarse, reference.coarse),
        _like(frame.fine, reference.fine),
        _like(frame.support, reference.fine),
        frame.resolution,
    )


#: Edge scale per voxel of the original image (:func:`edge_scale`): at least one native pixel, so that a small
#: image upsampled to the fine grid is compared on its content, not on its pixel grid (a 25² face is 4 fine
#: voxels per pixel; a sub-pixel shift of it moves the bilinear creases between pixels).
NATIVE_SIGMA = 1.0


def edge_scale(moving: Frame, target: Frame) -> float:
    """Edge scale (fine-grid voxels) for a pair: :data:`EDGE_SIGMA`, or one native pixel of the coarser image."""
    return max(EDGE_SIGMA, NATIVE_SIGMA * max(moving.resolution, target.resolution))


def verify_candidates(
    generated: Tensor | Canonical,
    candidates: Sequence[Canonical],
    indices: Sequence[int],
    config: VerifyConfig | None = None,
) -> list[Verification]:
    """Align a sample to each candidate and score the best-matching ones; best first.

    Each frame (:attr:`Canonical.frames`) is searched on its own: the coarse search against every candidate,
    then the refinement of the best ``config.refine``; the best-scoring match of all is polished.

    Args:
        generated: ``(1, *S)`` sample (2D or 3D, any size and intensity scale) or its :func:`prepare` result.
        candidates: :func:`prepare` results of the training images (same spatial_dims).
        indices: Training index of each candidate.
        config: Search grid (default :class:`VerifyConfig`); the one the candidates were prepared with.

    Returns:
        One :class:`Verification` per refined candidate (its best frame), best first; a sample tensor without
        spatial structure (:data:`MIN_CONTENT`) scores 0 against every candidate that it does not reproduce
        (:data:`IDENTICAL_SCORE`).
    """
    cfg = config or VerifyConfig()
    structured = isinstance(generated, Canonical) or spatial_content(generated) >= MIN_CONTENT
    sample = generated if isinstance(generated, Canonical) else prepare(generated, cfg)
    flips = (False, True) if cfg.flips else (False,)
    grid = torch.tensor([(f, a, s) for f in flips for a in cfg.angles for s in cfg.scales], dtype=torch.float32)
    fine = torch.tensor([(a, s) for a in cfg.refine_angles for s in cfg.refine_scales])
    found: list[tuple[Verification, Frame, Frame, tuple[Tensor, Tensor, Tensor, Tensor]]] = []
    for f, moving in enumerate(sample.frames):
        fixed = torch.cat([_like(c.frames[f].coarse, moving.coarse) for c in candidates])
        value, best, _ = _grid_search(moving.coarse, fixed, grid[:, 0].bool(), grid[:, 1], grid[:, 2], cfg.max_shift)
        for k in value.argsort(descending=True)[: cfg.refine].tolist():
            flip, angle, scale = grid[best[k]].tolist()
            target = _like_frame(candidates[k].frames[f], moving)
            for step in range(max(1, cfg.refine_passes)):
                factor = 0.5**step
                angles, scales = angle + factor * fine[:, 0], scale * (1 + factor * (fine[:, 1] - 1))
                flip_v = torch.full((fine.shape[0],), bool(flip))
                if step == 0:  # and the identity: the coarse grid cannot align fine texture (noise, stars)
                    flip_v = torch.cat([flip_v, torch.tensor([False])])
                    angles, scales = torch.cat([angles, torch.zeros(1)]), torch.cat([scales, torch.ones(1)])
                _, pick, shift = _grid_search(
                    moving.fine, target.fine, flip_v, angles, scales, cfg.max_shift, (moving.support, target.support)
                )
                i = int(pick[0])
                flip, angle, scale = bool(flip_v[i]), float(angles[i]), float(scales[i])
            params = (torch.tensor(bool(flip)), torch.tensor(angle), torch.tensor(scale), shift[0])
            found.append((_scored(moving, target, int(indices[k]), *params), moving, target, params))
    if cfg.polish:  # the best match only (the cost: see POLISH_STEPS)
        j = max(range(len(found)), key=lambda i: found[i][0].score)
        check, moving, target, (flip_j, angle_j, scale_j, shift_j) = found[j]
        refined = polish(moving, target, flip_j.view(1), angle_j.view(1), scale_j.view(1), shift_j.view(1, -1))
        polished = _scored(moving, target, check.train_index, flip_j, *(r[0] for r in refined))
        found[j] = (max(check, polished, key=lambda v: v.score), *found[j][1:])
    out: dict[int, Verification] = {}
    for v, *_ in found:
        v.score = v.score if structured or v.score >= IDENTICAL_SCORE else 0.0  # no structure: only identity counts
        if v.train_index not in out or v.score > out[v.train_index].score:
            out[v.train_index] = v
    return sorted(out.values(), key=lambda v: v.score, reverse=True)


def _scored(
    moving: Frame, target: Frame, train_index: int, flip: Tensor, angle: Tensor, scale: Tensor, shift: Tensor
) -> Verification:
    """Align ``moving`` by one transform (0-d flip/angle/scale, ``(d,)`` shift) and score it against ``target``."""
    args = (flip.view(1), angle.view(1), scale.view(1), shift.view(1, -1))
    aligned = transform(moving.fine, *args)
    valid = transform(moving.support, *args) > 0.999
    score, ncc, value_ssim = score_pair(aligned, target.fine, valid, target.support > 0.999, edge_scale(moving, target))
    return Verification(train_index, score, ncc, value_ssim, bool(flip), float(angle), float(scale), shift.tolist())
