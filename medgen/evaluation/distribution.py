"""Distribution metrics on extracted features: FID and PRDC, plus torchmetrics ``Metric`` wrappers (KID: ``kid.py``).

All functions take ``(N, d)`` feature matrices (torch or numpy; computed in float64 on the CPU) from ONE feature
pass, so FID, KID, PRDC, the real-vs-real baseline and the bootstrap CIs of
:mod:`medgen.evaluation.statistics` share the same features.

- FID (Heusel et al. 2017): ``‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½)`` with unbiased covariances (pytorch-fid /
  MONAI formula). ``Tr (Σ1 Σ2)^½`` is computed as ``Σ √λ(Lᵀ Σ2 L)`` with ``Σ1 = L Lᵀ`` (Cholesky, or an
  eigendecomposition when Σ1 is singular): the same quantity as scipy's ``sqrtm`` trace for PSD matrices, without
  its complex round-off, and about 3× cheaper than ``eigvals(Σ1 Σ2)`` at d = 2048. For N ≤ d, :func:`fid` uses
  the equivalent nuclear norm of ``A Bᵀ`` (centred features), which needs no d × d matrix at all.
- KID (Bińkowski et al. 2018): in :mod:`medgen.evaluation.kid` (functional ``kid`` and the ``KID`` Metric).
- PRDC: precision/recall of Kynkäänniemi et al. 2019 (k = 3, inside a k-NN ball means distance ≤ radius) and
  density/coverage of Naeem et al. 2020 (k = 5, strict <, as the ``prdc`` package).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from medgen.errors import InputError

Features = Tensor | np.ndarray


def as_features(x: Features, name: str = "features") -> Tensor:
    """Validate an ``(N, d)`` feature matrix (N ≥ 2, finite) and return it as a float64 CPU tensor."""
    t = torch.as_tensor(x).detach().to(device="cpu", dtype=torch.float64)
    if t.ndim != 2 or t.shape[0] < 2:
        raise InputError(name, f"expected an (N, d) feature matrix with N >= 2, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise InputError(name, "features contain NaN or Inf")
    return t


@dataclass(frozen=True)
class GaussianStats:
    """Mean ``(d,)`` and unbiased covariance ``(d, d)`` (float64) of ``n`` feature vectors."""

    mean: Tensor
    cov: Tensor
    n: int


def gaussian_stats(feats: Features) -> GaussianStats:
    """Mean and unbiased covariance (divisor N − 1) of ``(N, d)`` features."""
    f = as_features(feats)
    mean = f.mean(dim=0)
    centred = f - mean
    return GaussianStats(mean, centred.T @ centred / (f.shape[0] - 1), f.shape[0])


def stats_from_sums(total: Tensor, outer: Tensor, n: int) -> GaussianStats:
    """Statistics from running float64 sums: ``Σx`` ``(d,)``, ``Σxxᵀ`` ``(d, d)`` and the count ``n``."""
    mean = total / n
    return GaussianStats(mean, (outer - n * torch.outer(mean, mean)) / (n - 1), n)


def _psd_factor(matrix: Tensor) -> Tensor:
    """``(d, r)`` factor ``L`` with ``matrix = L Lᵀ``: Cholesky if positive definite, else ``V √Λ`` over λ > 0."""
    chol, info = torch.linalg.cholesky_ex(matrix)
    if int(info) == 0:
        return chol
    eigval, eigvec = torch.linalg.eigh(matrix)  # singular, e.g. N <= d
    keep = eigval > 0
    return eigvec[:, keep] * eigval[keep].sqrt()


def trace_sqrt_product(sigma1: Tensor, sigma2: Tensor) -> float:
    """``Tr (Σ1 Σ2)^½`` for PSD ``(d, d)`` matrices.

    With ``Σ1 = L Lᵀ``, the nonzero eigenvalues of ``Σ1 Σ2`` are those of the PSD matrix ``Lᵀ Σ2 L``, so the trace is
    ``Σ √λ(Lᵀ Σ2 L)`` from one symmetric eigenvalue problem (no general ``eigvals`` or ``sqrtm``).
    """
    factor = _psd_factor(sigma1.double())
    inner = factor.T @ sigma2.double() @ factor
    return float(torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum())


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """Fréchet distance between two Gaussians: ``‖μa − μb‖² + Tr Σa + Tr Σb − 2 Tr (Σa Σb)^½``."""
    if a.mean.shape != b.mean.shape:
        raise InputError("features", f"feature dimensions differ: {a.mean.numel()} vs {b.mean.numel()}")
    diff = a.mean - b.mean
    traces = float(a.cov.trace() + b.cov.trace())
    return float(diff @ diff) + traces - 2 * trace_sqrt_product(a.cov, b.cov)


@dataclass(frozen=True)
class FIDResult:
    """FID value and the sample sizes it was computed from."""

    value: float
    n_real: int
    n_fake: int


def _fid_from_centred(real: Tensor, fake: Tensor) -> float:
    """FID from centred features ``A`` ``(N1, d)``, ``B`` ``(N2, d)``, with no d × d matrix (for N ≤ d).

    With ``Σ = AᵀA / (N − 1)``: ``Tr Σ = ‖A‖²_F / (N − 1)`` and ``Tr (Σ1 Σ2)^½ = ‖A Bᵀ‖_* / √((N1 − 1)(N2 − 1))``.
    """
    diff = real.mean(dim=0) - fake.mean(dim=0)
    a, b = real - real.mean(dim=0), fake - fake.mean(dim=0)
    n1, n2 = a.shape[0] - 1, b.shape[0] - 1
    cross = torch.linalg.svdvals(a @ b.T).sum() / (n1 * n2) ** 0.5
    return float(diff @ diff + a.square().sum() / n1 + b.square().sum() / n2 - 2 * cross)


def fid(real_feats: Features, fake_feats: Features) -> FIDResult:
    """Fréchet Inception Distance between ``(N_r, d)`` real and ``(N_f, d)`` fake features (float64).

    When ``min(N_r, N_f) ≤ d`` the same formula is evaluated from the centred features (an ``N_r × N_f`` nuclear
    norm; cheaper and exact for the rank-deficient covariances of small N), otherwise from the covariances.
    """
    real, fake = as_features(real_feats, "real_feats"), as_features(fake_feats, "fake_feats")
    if real.shape[1] != fake.shape[1]:
        raise InputError("features", f"feature dimensions differ: {real.shape[1]} vs {fake.shape[1]}")
    if min(real.shape[0], fake.shape[0]) <= real.shape[1]:
        return FIDResult(_fid_from_centred(real, fake), real.shape[0], fake.shape[0])
    return FIDResult(frechet_distance(gaussian_stats(real), gaussian_stats(fake)), real.shape[0], fake.shape[0])


@dataclass(frozen=True)
class PRDCResult:
    """Precision/recall (k-NN manifolds, ``k_pr``) and density/coverage (``k_dc``), each in [0, 1] (density ≥ 0)."""

    precision: float
    recall: float
    density: float
    coverage: float
    k_pr: int
    k_dc: int


def _kth_radius(x: Tensor, k: int, chunk: int) -> Tensor:
    """Distance of each row of ``(N, d)`` ``x`` to its k-th nearest other row → ``(N,)``."""
    if x.shape[0] <= k:
        raise InputError("features", f"k-NN radius with k={k} needs more than {k} samples, got {x.shape[0]}")
    parts = [torch.cdist(x[i : i + chunk], x).kthvalue(k + 1, dim=1).values for i in range(0, x.shape[0], chunk)]
    return torch.cat(parts)


def prdc(real_feats: Features, fake_feats: Features, k_pr: int = 3, k_dc: int = 5, chunk: int = 1024) -> PRDCResult:
    """Improved precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020).

    Precision: share of fakes inside some real k_pr-NN ball (≤); recall: share of reals inside some fake ball.
    Density: mean number of real k_dc-NN balls (<) containing each fake, divided by k_dc; coverage: share of reals
    whose k_dc-NN ball contains a fake. Distances are computed in chunks of ``chunk`` fake rows.
    """
    real, fake = as_features(real_feats, "real_feats"), as_features(fake_feats, "fake_feats")
    r_pr, f_pr, r_dc = _kth_radius(real, k_pr, chunk), _kth_radius(fake, k_pr, chunk), _kth_radius(real, k_dc, chunk)
    precise, dense = [], []
    recalled = torch.zeros(real.shape[0], dtype=torch.bool)
    nearest = torch.full((real.shape[0],), float("inf"), dtype=torch.float64)
    for i in range(0, fake.shape[0], chunk):
        dist = torch.cdist(fake[i : i + chunk], real)  # (chunk, N_real)
        precise.append((dist <= r_pr).any(dim=1))
        dense.append((dist < r_dc).sum(dim=1))
        recalled |= (dist <= f_pr[i : i + chunk, None]).any(dim=0)
        nearest = torch.minimum(nearest, dist.min(dim=0).values)
    return PRDCResult(
        precision=float(torch.cat(precise).double().mean()),
        recall=float(recalled.double().mean()),
        density=float(torch.cat(dense).double().mean() / k_dc),
        coverage=float((nearest < r_dc).double().mean()),
        k_pr=k_pr,
        k_dc=k_dc,
    )


def _num_features(extractor: nn.Module, num_features: int | None) -> int:
    dim = num_features or getattr(extractor, "num_features", None)
    if not isinstance(dim, int):
        raise InputError("num_features", "pass num_features= or give the extractor an int `num_features` attribute")
    return dim


def _extract(extractor: nn.Module, images: Tensor) -> Tensor:
    with torch.no_grad():
        feats = extractor(images)
    if feats.ndim != 2 or feats.shape[0] != images.shape[0]:
        raise InputError(
            "extractor", f"expected (N, d) features for {images.shape[0]} images, got {tuple(feats.shape)}"
        )
    return feats.double()


class FID(Metric):
    """FID as a torchmetrics ``Metric`` with float64 sufficient statistics (sums and Σxxᵀ), summed under DDP.

    Args:
        extractor: ``nn.Module`` mapping an image batch to ``(N, d)`` features (see ``get_extractor``).
        num_features: ``d``; default ``extractor.num_features``.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    real_sum: Tensor
    real_outer: Tensor
    real_n: Tensor
    fake_sum: Tensor
    fake_outer: Tensor
    fake_n: Tensor

    def __init__(self, extractor: nn.Module, num_features: int | None = None) -> None:
        super().__init__()
        self.extractor = extractor
        d = _num_features(extractor, num_features)
        for side in ("real", "fake"):
            self.add_state(f"{side}_sum", torch.zeros(d, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(d, d, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_n", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, images: Tensor, real: bool) -> None:
        """Add a batch of real or generated images (whatever the extractor takes, e.g. ``(N, 1, H, W)`` in [-1, 1])."""
        feats = _extract(self.extractor, images)
        if real:
            self.real_sum += feats.sum(dim=0)
            self.real_outer += feats.T @ feats
            self.real_n += feats.shape[0]
        else:
            self.fake_sum += feats.sum(dim=0)
            self.fake_outer += feats.T @ feats
            self.fake_n += feats.shape[0]

    def compute(self) -> Tensor:
        """FID as a float64 scalar tensor (needs ≥ 2 real and ≥ 2 fake images)."""
        n_real, n_fake = int(self.real_n), int(self.fake_n)
        if min(n_real, n_fake) < 2:
            raise InputError("FID", f"needs at least 2 real and 2 fake images, got {n_real} and {n_fake}")
        real = stats_from_sums(self.real_sum, self.real_outer, n_real)
        fake = stats_from_sums(self.fake_sum, self.fake_outer, n_fake)
        return torch.tensor(frechet_distance(real, fake), dtype=torch.float64)


@dataclass
class FeatureSets:
    """Real ``(N_r, d)`` and fake ``(N_f, d)`` float64 features gathered by a :class:`FeatureBank`.

    Not frozen: torchmetrics' ``compute`` wrapper rebuilds dataclass outputs field by field.
    """

    real: Tensor
    fake: Tensor


class FeatureStore(Metric):
    """Keeps every feature row (``dist_reduce_fx="cat"``, gathered across DDP ranks)."""

    is_differentiable = False
    full_state_update = False
    real_features: list[Tensor]
    fake_features: list[Tensor]

    def __init__(self, extractor: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    def update(self, images: Tensor, real: bool) -> None:
        """Extract features of a batch of real or generated images and store them."""
        (self.real_features if real else self.fake_features).append(_extract(self.extractor, images))

    def gathered(self) -> FeatureSets:
        """The real and fake features stored so far (all ranks after a DDP sync)."""
        if len(self.real_features) == 0 or len(self.fake_features) == 0:  # a list, or a tensor after DDP sync
            raise InputError("features", "compute() needs both real and fake images; call update() with both")
        return FeatureSets(dim_zero_cat(self.real_features), dim_zero_cat(self.fake_features))


class FeatureBank(FeatureStore):
    """One feature pass for every distribution metric: ``compute()`` returns the gathered :class:`FeatureSets`.

    Args:
        extractor: ``nn.Module`` mapping an image batch to ``(N, d)`` features.
    """

    def compute(self) -> FeatureSets:
        """The real and fake features seen so far (all ranks)."""
        return self.gathered()
