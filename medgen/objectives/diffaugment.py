"""Differentiable augmentation for GANs on small data (DiffAugment, Zhao et al. 2020, arXiv 2006.10738), 2D and 3D.

The same random transform is applied to real and generated images before the discriminator, in both its and the
generator's step, and it is differentiable, so the generator learns the un-augmented distribution while the
discriminator cannot memorise a small training set. Policies: ``brightness``, ``contrast`` (intensity only: medical
images have no colour), ``translation`` (integer shifts up to ``1/8`` of each side, zero padded) and ``cutout``
(one zeroed box of half of each side). torch and MONAI have no differentiable batch augmentation of this kind (MONAI's
transforms are per-sample and not meant for the generator's gradient), hence this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.nn import functional as F

POLICIES = ("brightness", "contrast", "translation", "cutout")


def diff_augment(x: torch.Tensor, policy: Sequence[str], generator: torch.Generator | None) -> torch.Tensor:
    """``x`` ``(B, C, *spatial)`` augmented by each policy in order, per sample, differentiably; same shape."""
    for name in policy:
        if name == "brightness":
            x = x + (torch.rand(_per_sample(x), generator=generator, device=x.device, dtype=x.dtype) - 0.5)
        elif name == "contrast":
            mean = x.mean(dim=tuple(range(1, x.ndim)), keepdim=True)
            scale = torch.rand(_per_sample(x), generator=generator, device=x.device, dtype=x.dtype) + 0.5
            x = (x - mean) * scale + mean
        elif name == "translation":
            x = _translate(x, generator)
        elif name == "cutout":
            x = _cutout(x, generator)
        else:
            raise ValueError(f"unknown DiffAugment policy '{name}' (expected some of {', '.join(POLICIES)})")
    return x


def _per_sample(x: torch.Tensor) -> tuple[int, ...]:
    return (x.shape[0],) + (1,) * (x.ndim - 1)


def _translate(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Shift each sample by whole voxels (up to 1/8 of each side), filling with zeros."""
    spatial = x.shape[2:]
    pads = [max(1, s // 8) for s in spatial]
    padded = F.pad(x, [p for p in reversed(pads) for _ in (0, 1)])
    out = []
    for i in range(x.shape[0]):
        starts = [int(torch.randint(0, 2 * p + 1, (1,), generator=generator, device=x.device)) for p in pads]
        index: tuple[Any, ...] = (i, slice(None), *(slice(a, a + s) for a, s in zip(starts, spatial, strict=True)))
        out.append(padded[index])
    return torch.stack(out)


def _cutout(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Zero one box of half of each side at a random place in each sample."""
    spatial = x.shape[2:]
    mask = torch.ones_like(x)
    for i in range(x.shape[0]):
        box = []
        for s in spatial:
            size = max(1, s // 2)
            start = int(torch.randint(0, s - size + 1, (1,), generator=generator, device=x.device))
            box.append(slice(start, start + size))
        index: tuple[Any, ...] = (i, slice(None), *box)
        mask[index] = 0
    return x * mask
