from __future__ import annotations

import diffusers
import pytest
from diffusers import DDPMScheduler

from medgen.errors import InputError
from medgen.sampling import SAMPLER_ALIASES, make_scheduler

# diffusers calls np.array(tensor) on torch tensors, which warns under numpy 2; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array(_wrap)?__:DeprecationWarning")

EXPECTED = {
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


def test_aliases_name_the_documented_classes():
    assert SAMPLER_ALIASES == EXPECTED


@pytest.mark.parametrize("name", [*EXPECTED, "DDIM", "ddimscheduler", "KDPM2DiscreteScheduler", "lmsdiscretescheduler"])
def test_make_scheduler_builds_the_named_class(name, ddpm_config):
    scheduler = make_scheduler(name, ddpm_config("v_prediction"))
    class_name = EXPECTED.get(name.lower()) or next(n for n in diffusers.__all__ if n.lower() == name.lower())
    assert type(scheduler) is getattr(diffusers, class_name)
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.config.num_train_timesteps == 1000


def test_unknown_sampler_names_the_choices(ddpm_config):
    with pytest.raises(InputError) as info:
        make_scheduler("x", ddpm_config())
    assert str(info.value) == (
        "sampler: unknown sampler 'x'; expected one of ddpm, ddim, dpm++, dpmpp, unipc, euler, euler_a, "
        "euler-ancestral, heun, pndm, lcm, deis or a diffusers scheduler class name"
    )


def test_every_call_builds_a_fresh_scheduler(ddpm_config):
    first = make_scheduler("dpm++", ddpm_config())
    first.set_timesteps(10)
    second = make_scheduler("dpm++", ddpm_config())
    assert second is not first
    assert second.num_inference_steps is None


def test_edited_config_of_a_scheduler_is_honoured():
    # diffusers marks untouched keys in `_use_default_values`; from_config would drop an edited one.
    config = dict(DDPMScheduler().config)
    config["prediction_type"] = "v_prediction"
    config["beta_schedule"] = "scaled_linear"
    scheduler = make_scheduler("ddim", config)
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.config.beta_schedule == "scaled_linear"


@pytest.mark.parametrize("name", ["euler_a", "pndm"])
def test_unsupported_prediction_type_fails_before_sampling(name, ddpm_config):
    with pytest.raises(InputError, match="does not support prediction_type 'sample'"):
        make_scheduler(name, ddpm_config("sample"))
