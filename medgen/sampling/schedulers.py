"""Noise schedulers by name: short aliases or any diffusers scheduler class, always a fresh instance.

A scheduler object carries state between its ``step`` calls (multistep histories, step indices, Heun's
first-order half step), so medgen never keeps one across sampling calls: :func:`make_scheduler` builds a
new one from a plain config every time (see ``docs/DESIGN.md``, principle 2).
"""

from __future__ import annotations

from typing import Any

import diffusers
from diffusers import SchedulerMixin

from medgen.errors import InputError

SAMPLER_ALIASES: dict[str, str] = {
    "ddpm": "DDPMScheduler",
    "ddim": "DDIMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "dpmpp": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "euler-ancestral": "EulerAncestralDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "pndm": "PNDMScheduler",
    "lcm": "LCMScheduler",
    "deis": "DEISMultistepScheduler",
}
"""Short sampler names and the diffusers scheduler classes they stand for."""


def scheduler_class_name(name: str) -> str:
    """The diffusers class name for an alias or a (case-insensitive) scheduler class name.

    Args:
        name: An alias from :data:`SAMPLER_ALIASES` (``"ddim"``) or a class name (``"ddimscheduler"``).

    Raises:
        InputError: ``name`` is neither.
    """
    key = name.strip().lower()
    if key in SAMPLER_ALIASES:
        return SAMPLER_ALIASES[key]
    classes = {n.lower(): n for n in getattr(diffusers, "__all__", dir(diffusers)) if n.endswith("Scheduler")}
    if key in classes:
        return classes[key]
    aliases = ", ".join(SAMPLER_ALIASES)
    raise InputError(
        "sampler", f"unknown sampler '{name}'; expected one of {aliases} or a diffusers scheduler class name"
    )


def make_scheduler(name: str, config: dict[str, Any]) -> SchedulerMixin:
    """A fresh diffusers scheduler of the named kind built from a training scheduler's config.

    Args:
        name: An alias from :data:`SAMPLER_ALIASES` or any diffusers scheduler class name (any case).
        config: The noise schedule the model was trained with, as a ``DDPMScheduler`` config
            (``num_train_timesteps``, ``beta_schedule``, ``beta_start``, ``beta_end``, ``prediction_type``,
            ``clip_sample``, ...). Keys the target class does not know are ignored by ``from_config``.

    Returns:
        A new scheduler instance; nothing is shared with earlier calls.

    Raises:
        InputError: ``name`` is unknown.
    """
    cls = getattr(diffusers, scheduler_class_name(name))
    return cls.from_config(dict(config))
