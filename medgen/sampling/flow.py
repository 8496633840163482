"""Flow-matching ODE sampling, inversion and translation.

A flow model predicts the velocity ``v(x, t) = dx/dt`` of the straight path between data and noise,

    x_t = (1 - t) x0 + t noise,        v = noise - x0,

(rectified flow, Liu et al. 2022, arXiv:2209.03003; flow matching, Lipman et al. 2022,
arXiv:2210.02747). Sampling integrates ``dx/dt = v`` from ``t = 1`` (``x = noise``) to ``t = 0``;
inversion integrates the same ODE from ``t = 0`` to ``t = 1``. The solvers are Euler, Heun (the
trapezoidal predictor-corrector of EDM, Karras et al. 2022, arXiv:2206.00364, Algorithm 1, which
skips the corrector on the step to ``t = 0``) and the explicit midpoint rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Literal

import torch
from torch import Tensor

from medgen.errors import InputError
from medgen.nets.condition import Condition
from medgen.objectives.time import shift_time
from medgen.progress import progress as progress_bar
from medgen.sampling.common import DenoiseFn, Generators, broadcast_condition, initial_noise
from medgen.sampling.guidance import guided

Solver = Literal["euler", "heun", "midpoint"]
StepFn = Callable[[DenoiseFn, Tensor, float, float, Condition | None], Tensor]


def flow_timesteps(
    num_steps: int,
    shift: float = 1.0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The ``num_steps + 1`` sampling times from ``t = 1`` to ``t = 0``, uniform before the shift.

    Args:
        num_steps: Number of integration steps.
        shift: Time shift (1: linear grid; > 1: denser near ``t = 1``); see
            :func:`~medgen.objectives.time.resolution_shift`.
        device: Device of the result.
        dtype: Float type of the result.

    Returns:
        ``(num_steps + 1,)`` decreasing times with ``t[0] = 1`` and ``t[-1] = 0``.
    """
    return _time_grid(1.0, 0.0, num_steps, shift).to(device, dtype)


def _time_grid(t_from: float, t_to: float, num_steps: int, shift: float) -> Tensor:
    """``(num_steps + 1,)`` float64 times from ``t_from`` to ``t_to``: uniform in unshifted time, then shifted."""
    if num_steps < 1:
        raise InputError("num_steps", f"expected a positive number of steps, got {num_steps}")
    if not shift > 0:
        raise InputError("shift", f"expected a positive time shift, got {shift}")
    if not (0.0 <= t_from <= 1.0 and 0.0 <= t_to <= 1.0):
        raise InputError("t", f"expected times in [0, 1], got {t_from} -> {t_to}")
    u_from, u_to = (t / (shift - (shift - 1) * t) for t in (t_from, t_to))  # inverse of shift_time
    grid = shift_time(torch.linspace(u_from, u_to, num_steps + 1, dtype=torch.float64), shift)
    grid[0], grid[-1] = t_from, t_to
    return grid


def _at(t: float, x: Tensor) -> Tensor:
    """Time ``t`` as the ``(B,)`` tensor the velocity function takes (at least float32, also for half ``x``)."""
    return torch.full((x.shape[0],), t, dtype=torch.promote_types(x.dtype, torch.float32), device=x.device)


def _euler_step(v: DenoiseFn, x: Tensor, t: float, t_next: float, cond: Condition | None) -> Tensor:
    """``x + h v(x, t)``: one evaluation."""
    return x + (t_next - t) * v(x, _at(t, x), cond)


def _heun_step(v: DenoiseFn, x: Tensor, t: float, t_next: float, cond: Condition | None) -> Tensor:
    """EDM Algorithm 1, lines 5-8: Euler predictor, trapezoidal corrector unless ``t_next = 0``."""
    h = t_next - t
    d = v(x, _at(t, x), cond)
    x_next = x + h * d
    if t_next == 0.0:
        return x_next
    d_next = v(x_next, _at(t_next, x), cond)
    return x + h * (d + d_next) / 2


def _midpoint_step(v: DenoiseFn, x: Tensor, t: float, t_next: float, cond: Condition | None) -> Tensor:
    """Explicit midpoint rule: ``x + h v(x + h/2 v(x, t), t + h/2)``; two evaluations."""
    h = t_next - t
    x_mid = x + h / 2 * v(x, _at(t, x), cond)
    return x + h * v(x_mid, _at(t + h / 2, x), cond)


_STEPS: dict[str, StepFn] = {"euler": _euler_step, "heun": _heun_step, "midpoint": _midpoint_step}


def integrate(
    velocity: DenoiseFn,
    x: Tensor,
    t_from: float,
    t_to: float,
    num_steps: int,
    solver: Solver = "euler",
    cond: Condition | None = None,
    guidance: float = 1.0,
    shift: float = 1.0,
    progress: bool = False,
) -> Tensor:
    """Integrate ``dx/dt = v(x, t, cond)`` from ``t_from`` to ``t_to`` (either direction).

    Args:
        velocity: ``velocity(x, t, cond)``: ``x`` ``(B, C, *spatial)``, ``t`` ``(B,)`` in [0, 1].
        x: ``(B, C, *spatial)`` state at ``t_from``.
        t_from: Start time in [0, 1].
        t_to: End time in [0, 1].
        num_steps: Number of steps on the (shifted) uniform grid.
        solver: ``"euler"``, ``"heun"`` or ``"midpoint"``.
        cond: Condition of batch size ``B`` (``None``: unconditional).
        guidance: Classifier-free guidance weight applied to the velocity (1: none).
        shift: Time shift of the grid (see :func:`shift_time`).
        progress: Show a progress bar.

    Returns:
        ``(B, C, *spatial)`` state at ``t_to``.
    """
    if solver not in _STEPS:
        raise InputError("solver", f"unknown ODE solver '{solver}'; expected one of {', '.join(_STEPS)}")
    step = _STEPS[solver]
    times = _time_grid(t_from, t_to, num_steps, shift).tolist()
    cond = broadcast_condition(cond, x.shape[0], x.device)
    v = guided(velocity, guidance)
    pairs = list(pairwise(times))
    for t, t_next in progress_bar(pairs, desc=f"flow ({solver})") if progress else pairs:
        x = step(v, x, t, t_next, cond)
    return x


def sample_flow(
    velocity: DenoiseFn,
    shape: Sequence[int],
    num_steps: int = 30,
    solver: Solver = "euler",
    shift: float = 1.0,
    cond: Condition | None = None,
    guidance: float = 1.0,
    generator: Generators = None,
    device: torch.device | str = "cpu",
    x_T: Tensor | None = None,
    progress: bool = False,
) -> Tensor:
    """Draw samples by integrating the flow ODE from noise at ``t = 1`` to data at ``t = 0``.

    Network evaluations (NFE, each ``2B`` samples wide under guidance): Euler ``n``, Heun ``2n - 1``
    (no corrector on the last step), midpoint ``2n``.

    Args:
        velocity: ``velocity(x, t, cond)``: ``x`` ``(B, C, *spatial)``, ``t`` ``(B,)`` float in [0, 1].
        shape: Sample shape ``(B, C, H, W)`` or ``(B, C, D, H, W)``.
        num_steps: Number of integration steps ``n``.
        solver: ``"euler"``, ``"heun"`` or ``"midpoint"``.
        shift: Time shift of the grid (1: uniform; see :func:`~medgen.objectives.time.resolution_shift`).
        cond: Condition of batch size ``B`` (``None``: unconditional).
        guidance: Classifier-free guidance weight (1: none).
        generator: Random generator of the start noise, or one per sample.
        device: Device of the samples and of the network calls.
        x_T: Start noise of shape ``shape`` instead of drawing it.
        progress: Show a progress bar.

    Returns:
        ``(B, C, *spatial)`` samples on ``device``.
    """
    x = initial_noise(shape, generator, device, x_T)
    return integrate(velocity, x, 1.0, 0.0, num_steps, solver, cond, guidance, shift, progress)


def invert_flow(
    velocity: DenoiseFn,
    x0: Tensor,
    num_steps: int = 50,
    solver: Solver = "heun",
    cond: Condition | None = None,
    guidance: float = 1.0,
    shift: float = 1.0,
    progress: bool = False,
) -> Tensor:
    """Map images to their noise by integrating the flow ODE from ``t = 0`` to ``t = 1``.

    The inverse of :func:`sample_flow` up to discretization error (Heun: ``2n`` evaluations here, since
    the last step ends at ``t = 1`` and keeps its corrector).

    Args:
        velocity: ``velocity(x, t, cond)`` as in :func:`sample_flow`.
        x0: ``(B, C, *spatial)`` images.
        num_steps: Number of integration steps.
        solver: ``"euler"``, ``"heun"`` or ``"midpoint"``.
        cond: Condition of batch size ``B`` the images are inverted under.
        guidance: Classifier-free guidance weight (1: none).
        shift: Time shift of the grid.
        progress: Show a progress bar.

    Returns:
        ``(B, C, *spatial)`` noise at ``t = 1``.
    """
    return integrate(velocity, x0, 0.0, 1.0, num_steps, solver, cond, guidance, shift, progress)


def translate(
    velocity: DenoiseFn,
    x: Tensor,
    source: Condition,
    target: Condition,
    num_steps: int = 50,
    solver: Solver = "heun",
    guidance: float = 1.0,
    shift: float = 1.0,
) -> Tensor:
    """Translate images between conditions with a conditional flow model (MedShift-style).

    MedShift-style translation: invert the images to noise under the source class, then integrate that
    noise back to data under the target class. The noise keeps what the two classes share (anatomy,
    pose); the target condition supplies what differs. With ``source == target`` it returns ``x`` up to
    discretization error; the same ``guidance`` is used in both directions for that reason.

    Args:
        velocity: ``velocity(x, t, cond)`` of a class-conditional flow model.
        x: ``(B, C, *spatial)`` images of the source condition.
        source: Condition of batch size ``B`` describing ``x``.
        target: Condition of batch size ``B`` to translate to.
        num_steps: Integration steps in each direction.
        solver: ``"euler"``, ``"heun"`` or ``"midpoint"``.
        guidance: Classifier-free guidance weight for both directions (1: none).
        shift: Time shift of the grid.

    Returns:
        ``(B, C, *spatial)`` translated images.
    """
    noise = invert_flow(velocity, x, num_steps, solver, source, guidance, shift)
    return integrate(velocity, noise, 1.0, 0.0, num_steps, solver, target, guidance, shift)
