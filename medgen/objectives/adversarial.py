"""Adversarial losses and discriminator penalties (2D and 3D; math only).

- ``non_saturating`` (Goodfellow et al. 2014): D minimises ``softplus(-D(x)) + softplus(D(G(z)))``, G minimises
  ``softplus(-D(G(z)))``.
- ``hinge`` (Lim & Ye 2017; Miyato et al. 2018): D ``relu(1 - D(x)) + relu(1 + D(G(z)))``, G ``-D(G(z))``.
- ``least_squares`` (Mao et al. 2017): D ``(D(x) - 1)² + D(G(z))²``, G ``(D(G(z)) - 1)²``.
- ``wasserstein`` (Gulrajani et al. 2017): D ``D(G(z)) - D(x)`` plus a gradient penalty on interpolates,
  G ``-D(G(z))``.
- R1 (Mescheder et al. 2018): ``γ/2 · ‖∇ₓ D(x)‖²`` on real images, applied lazily every k steps and scaled by k
  (Karras et al. 2020).

Logits may be patch maps ``(B, 1, *patch)``; every loss is the mean over all entries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch.nn import functional as F

AdversarialLoss = Literal["non_saturating", "hinge", "least_squares", "wasserstein"]
LOSSES: tuple[str, ...] = ("non_saturating", "hinge", "least_squares", "wasserstein")

#: ``critic(images) -> logits``: the discriminator with the batch's conditions bound.
Critic = Callable[[torch.Tensor], torch.Tensor]


def discriminator_loss(kind: AdversarialLoss, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss from its logits on real and generated images (scalar)."""
    if kind == "non_saturating":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    if kind == "least_squares":
        return ((real - 1) ** 2).mean() + (fake**2).mean()
    if kind == "wasserstein":
        return fake.mean() - real.mean()
    raise ValueError(f"unknown adversarial loss '{kind}' (expected one of {', '.join(LOSSES)})")


def generator_loss(kind: AdversarialLoss, fake: torch.Tensor) -> torch.Tensor:
    """The generator's loss from the discriminator's logits on generated images (scalar)."""
    if kind == "non_saturating":
        return F.softplus(-fake).mean()
    if kind in ("hinge", "wasserstein"):
        return -fake.mean()
    if kind == "least_squares":
        return ((fake - 1) ** 2).mean()
    raise ValueError(f"unknown adversarial loss '{kind}' (expected one of {', '.join(LOSSES)})")


def gradient_penalty(
    critic: Critic, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """WGAN-GP: ``mean((‖∇ D(x̂)‖ - 1)²)`` at random interpolates ``x̂`` of real and generated images (scalar)."""
    shape = (real.shape[0],) + (1,) * (real.ndim - 1)
    alpha = torch.rand(shape, generator=generator, device=real.device, dtype=real.dtype)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def r1_penalty(critic: Critic, real: torch.Tensor) -> torch.Tensor:
    """R1: ``mean(‖∇ₓ D(x)‖²)`` on real images (scalar; the caller multiplies by ``γ / 2`` and the lazy interval)."""
    x = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return grad.flatten(1).pow(2).sum(dim=1).mean()


def discriminator_accuracy(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Share of patches the discriminator classifies right (real > 0, generated < 0): a collapse guard (scalar)."""
    right = torch.cat([(real > 0).flatten().float(), (fake < 0).flatten().float()])
    return right.mean()
