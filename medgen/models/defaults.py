"""``SamplingDefaults``: how a model samples unless told otherwise (a leaf of :mod:`medgen.models`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingDefaults:
    """How a model samples unless told otherwise.

    Attributes:
        method: A diffusers scheduler class name or alias (``ddpm``, ``ddim``, ``dpm++``, ``unipc``, ``euler`` …)
            for diffusion families; an ODE solver (``euler``, ``heun``, ``midpoint``) for flow families.
        num_steps: Sampling steps.
        guidance: Classifier-free guidance scale (1: none).
    """

    method: str = "dpm++"
    num_steps: int = 25
    guidance: float = 1.0
