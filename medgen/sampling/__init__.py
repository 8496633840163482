"""Sampling: one loop for any diffusers scheduler, classifier-free guidance, flow ODE solvers and inversion.

Every sampler is a plain function of a *denoise function* ``denoise(x, t, cond)`` (see
:data:`DenoiseFn`); it builds whatever scheduler it needs afresh and keeps its loop state in locals.
"""

from medgen.objectives.time import expand_like, resolution_shift, shift_time
from medgen.sampling.common import DenoiseFn
from medgen.sampling.diffusion import sample_diffusion
from medgen.sampling.flow import (
    Solver,
    flow_timesteps,
    integrate,
    invert_flow,
    sample_flow,
    translate,
)
from medgen.sampling.guidance import guided
from medgen.sampling.schedulers import SAMPLER_ALIASES, make_scheduler

__all__ = [
    "SAMPLER_ALIASES",
    "DenoiseFn",
    "Solver",
    "expand_like",
    "flow_timesteps",
    "guided",
    "integrate",
    "invert_flow",
    "make_scheduler",
    "resolution_shift",
    "sample_diffusion",
    "sample_flow",
    "shift_time",
    "translate",
]
