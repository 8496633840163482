"""What every sampler shares: the denoise-function contract, the start noise, conditions and broadcasting."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from medgen.errors import InputError
from medgen.nets.condition import Condition

DenoiseFn = Callable[[Tensor, Tensor, Condition | None], Tensor]

Generators = torch.Generator | list[torch.Generator] | None
"""One generator for the batch, or one per sample (row ``i`` drawn from ``generators[i]``), or None (global RNG).

One generator per sample makes sample ``i`` independent of the batch it is drawn in: the start noise and
every stochastic step's noise of row ``i`` come from its own generator (diffusers' ``randn_tensor`` draws
row by row from a list).
"""
"""``denoise(x, t, cond) -> prediction``.

``x``: ``(B, C, *spatial)`` (4-D or 5-D); ``t``: ``(B,)`` (diffusion: the scheduler's timestep values;
flow: continuous time in [0, 1] as a float tensor); ``cond``: optional :class:`Condition`. The prediction
has ``x``'s shape: for diffusion in the scheduler's ``prediction_type`` parametrization, for flow the
velocity ``dx/dt = noise - x0`` of the path ``x_t = (1 - t) x0 + t noise``.
"""


def check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """Validate a sample shape ``(B, C, H, W)`` or ``(B, C, D, H, W)`` and return it as a tuple."""
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (4, 5) or min(shape) < 1:
        raise InputError("shape", f"expected (B, C, H, W) or (B, C, D, H, W) with positive sizes, got {shape}")
    return shape


def initial_noise(
    shape: Sequence[int],
    generator: Generators,
    device: torch.device | str,
    x_T: Tensor | None = None,
) -> Tensor:
    """Standard normal start noise, drawn on the generator's device and then moved to ``device``.

    Drawing on the generator's device (CPU by default) makes a seed give the same noise on any ``device``.

    Args:
        shape: ``(B, C, *spatial)`` sample shape.
        generator: Random generator, one per sample (``shape[0]`` of them), or ``None`` (torch's global one).
        device: Where the sampling runs.
        x_T: Given start noise of shape ``shape``; returned on ``device`` instead of drawing.

    Returns:
        ``(B, C, *spatial)`` float tensor on ``device``.
    """
    shape = check_shape(shape)
    if x_T is not None:
        if tuple(x_T.shape) != shape:
            raise InputError("x_T", f"expected shape {shape}, got {tuple(x_T.shape)}")
        return x_T.to(device)
    if isinstance(generator, list):
        if len(generator) != shape[0]:
            raise InputError("generator", f"expected one generator per sample ({shape[0]}), got {len(generator)}")
        rows = [torch.randn((1, *shape[1:]), generator=g, device=g.device).to(device) for g in generator]
        return torch.cat(rows)
    draw_on = generator.device if generator is not None else "cpu"
    return torch.randn(shape, generator=generator, device=draw_on).to(device)


def broadcast_condition(cond: Condition | None, batch_size: int, device: torch.device | str) -> Condition | None:
    """The condition on ``device`` after checking its batch size (``None`` for no or an empty condition).

    Raises:
        InputError: ``cond`` holds a different number of samples than ``batch_size``.
    """
    if cond is None or cond.is_empty():
        return None
    if cond.batch_size != batch_size:
        raise InputError(
            "cond",
            f"condition has batch size {cond.batch_size} but {batch_size} samples are drawn; "
            "use cond.repeat(n) to share one condition across n samples",
        )
    return cond.to(device)
