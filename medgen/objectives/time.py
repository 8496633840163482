"""Pure tensor and time helpers shared by the objectives and the samplers.

A leaf module: it imports only torch and :mod:`medgen.errors`, so both :mod:`medgen.objectives` and
the layer above it, :mod:`medgen.sampling`, can use it.
"""

from __future__ import annotations

import math

from torch import Tensor

from medgen.errors import InputError

__all__ = ["expand_like", "resolution_shift", "shift_time"]


def expand_like(t: Tensor, x: Tensor) -> Tensor:
    """View a per-sample ``(B,)`` tensor as ``(B, 1, ..., 1)`` so it broadcasts against ``x``.

    Args:
        t: ``(B,)`` per-sample values.
        x: ``(B, C, *spatial)`` tensor of any number of dimensions.

    Returns:
        ``t`` viewed with shape ``(B,) + (1,) * (x.ndim - 1)``.
    """
    return t.view(t.shape[0], *([1] * (x.ndim - 1)))


def shift_time(t: Tensor, shift: float) -> Tensor:
    """The resolution-dependent time shift ``t' = shift t / (1 + (shift - 1) t)`` (SD3, Eq. 23).

    It keeps ``0`` and ``1`` fixed and, for ``shift > 1``, moves every other time toward ``t = 1``.
    """
    return shift * t / (1 + (shift - 1) * t)


def resolution_shift(num_voxels: int, base_voxels: int = 64 * 64) -> float:
    """The time shift for images of ``num_voxels`` relative to a ``base_voxels`` reference: ``sqrt(n / n0)``.

    Esser et al. 2024 (SD3, arXiv:2403.03206, Sec. 5.3.2): with more voxels the same noise level destroys
    less of the image, since neighbouring voxels carry redundant signal that averaging recovers; a
    schedule tuned at ``base_voxels`` then spends too few steps at high noise, where the coarse layout is
    decided. Matching the signal-to-noise ratio of ``n`` voxels to that of ``n0`` gives the factor
    ``sqrt(n / n0)`` on the noise-to-signal ratio ``t / (1 - t)``, i.e. :func:`shift_time` with that shift.

    Args:
        num_voxels: Voxels per channel of the sampled images (``H * W`` or ``D * H * W``).
        base_voxels: Voxels per channel at which the schedule was tuned (default 64x64).
    """
    if num_voxels < 1 or base_voxels < 1:
        raise InputError("num_voxels", f"expected positive voxel counts, got {num_voxels} and {base_voxels}")
    return math.sqrt(num_voxels / base_voxels)
