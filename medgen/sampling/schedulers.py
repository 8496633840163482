"""Noise schedulers by name: short aliases or any diffusers scheduler class, always a fresh instance.

A scheduler object carries state between its ``step`` calls (multistep histories, step indices, Heun's
first-order half step), so medgen never keeps one across sampling calls: :func:`make_scheduler` builds a
new one from a plain config every time (see ``docs/DESIGN.md``, principle 2).
"""

from __future__ import annotations

import inspect
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

_UNSUPPORTED_PREDICTIONS: dict[str, set[str]] = {
    "EulerAncestralDiscreteScheduler": {"sample"},
    "PNDMScheduler": {"sample"},
}
"""Prediction types that diffusers' ``step`` rejects only after a network call has been spent."""


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
            ``clip_sample``, ...). Keys the target class does not take are dropped (silently: a DDPM config
            holds ``variance_type``, which e.g. ``LCMScheduler`` does not know).
            Every key given is used as given: diffusers' private ``_use_default_values`` list (present in
            dicts made from ``scheduler.config``) is dropped, since ``from_config`` would otherwise silently
            ignore those keys even after they were edited (e.g. a changed ``prediction_type``).

    Returns:
        A new scheduler instance; nothing is shared with earlier calls.

    Raises:
        InputError: ``name`` is unknown, or the scheduler cannot step with the config's ``prediction_type``.
    """
    class_name = scheduler_class_name(name)
    prediction = config.get("prediction_type", "epsilon")
    if prediction in _UNSUPPORTED_PREDICTIONS.get(class_name, set()):
        raise InputError("sampler", f"{class_name} does not support prediction_type '{prediction}'")
    cls = getattr(diffusers, class_name)
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kept = {k: v for k, v in config.items() if k != "_use_default_values" and (takes_any or k in params)}
    return cls.from_config(kept)
