"""Export a pixel-space diffusion model as a MONAI bundle that loads and samples without medgen.

The folder written by :func:`write_monai_bundle`::

    <out_dir>/
      configs/inference.json   network_def (monai.networks.nets.DiffusionModelUNet), noise_scheduler
                               (monai.networks.schedulers.DDPMScheduler or DDIMScheduler), inferer
                               (monai.inferers.DiffusionInferer), image shape, num_inference_steps,
                               and initialize/run sections for ``python -m monai.bundle run``
      configs/metadata.json    MONAI's metadata fields, plus a ``medgen`` block (source schedule and sampler)
      models/model.pt          state dict of the MONAI DiffusionModelUNet (plain name -> tensor dict)

Loading it needs only MONAI and torch::

    parser = monai.bundle.ConfigParser()
    parser.read_config("<out_dir>/configs/inference.json")
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load("<out_dir>/models/model.pt", weights_only=True))
    scheduler = parser.get_parsed_content("noise_scheduler")
    scheduler.set_timesteps(parser["num_inference_steps"])
    sample = parser.get_parsed_content("inferer").sample(noise, net, scheduler)

What maps exactly (anything else raises :class:`~medgen.errors.InputError` naming the reason):

- Networks: an unconditional :class:`~medgen.nets.unet.DiffusionUNet` (no ``conditions``, ``image_channels``
  0), 2D or 3D. Its ``.unet`` *is* a MONAI ``DiffusionModelUNet`` and its forward calls it with ``(x, t)``
  unchanged, so the bundle holds the same module with the same weights.
- Noise schedules (the diffusers ``DDPMScheduler`` config of :class:`~medgen.objectives.DiffusionObjective`):
  ``linear``, ``scaled_linear`` and ``squaredcos_cap_v2`` (MONAI ``linear_beta``, ``scaled_linear_beta``,
  ``cosine``); prediction types ``epsilon``, ``v_prediction`` and ``sample`` (same names in MONAI);
  ``clip_sample`` with its range.
- Samplers: ``ddim`` (any timestep spacing whose timesteps MONAI's DDIMScheduler reproduces: ``linspace``
  always, ``trailing`` when the step count divides ``num_train_timesteps``, ``leading`` only with all steps)
  and ``ddpm`` with all ``num_train_timesteps`` steps.

Refused:

- class-conditioned nets (medgen's ``ConditionEmbedding`` replaces MONAI's class embedding and takes
  ``(B, K)`` values with NaN for dropped entries; MONAI's takes integer labels), image-conditioned nets
  (``image_channels`` > 0: the bundle would need the conditioning image), ControlNets
  (:class:`~medgen.nets.controlnet.ControlNetUNet`), any other network class;
- latent diffusion (the sample is a latent that medgen's autoencoder decodes) and flow matching (MONAI's
  ``RFlowScheduler`` steps ``x + v·dt`` towards the data, i.e. expects ``v = x0 − noise``, while medgen
  predicts ``noise − x0``, and its resolution time shift differs from medgen's);
- samplers MONAI lacks (DPM-Solver++, UniPC, Euler, Heun, PNDM, LCM, DEIS): pass ``sampler="ddim"``;
- ``ddpm`` with fewer steps than ``num_train_timesteps`` (MONAI's DDPMScheduler always steps from t to
  t − 1, so it matches diffusers' DDPM only when every step is taken);
- schedule options MONAI has no counterpart for: ``trained_betas``, ``thresholding``,
  ``rescale_betas_zero_snr``, learned variances.

Each mapping is checked numerically before anything is written: the MONAI schedulers are built from the
very arguments written to the config and compared with the diffusers scheduler medgen samples with
(``√ᾱ`` and ``√(1 − ᾱ)`` within 1e-5; MONAI computes the cosine schedule in float32 and diffusers in
float64, which differ by up to ~5e-6), and the timesteps must be equal; the MONAI network is built from
the written arguments and must load the state dict strictly. One float32 difference remains with ``ddpm``:
MONAI's last step weights the predicted x0 by β₀ / (1 − ᾱ₀) where diffusers' weight is exactly 1; for a linear
schedule with β₀ = 1e-4 that is 1 − 1.7e-4 (the final sample is scaled by it), for the cosine schedule 1. It
is recorded in the scheduler's ``_desc_``; above 1e-3 the export is refused.
"""

from __future__ import annotations

import inspect
import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler
from torch import nn

from medgen import __version__
from medgen.data.io import atomic_write
from medgen.errors import InputError
from medgen.sampling.schedulers import make_scheduler, scheduler_class_name

MONAI_NETWORK = "monai.networks.nets.DiffusionModelUNet"
MONAI_INFERER = "monai.inferers.DiffusionInferer"
MONAI_SCHEDULERS = {
    "DDPMScheduler": "monai.networks.schedulers.DDPMScheduler",
    "DDIMScheduler": "monai.networks.schedulers.DDIMScheduler",
}
"""diffusers scheduler class name → the MONAI scheduler that reproduces it."""

SCHEDULE_NAMES = {"linear": "linear_beta", "scaled_linear": "scaled_linear_beta", "squaredcos_cap_v2": "cosine"}
"""diffusers ``beta_schedule`` → MONAI ``schedule`` (a member of ``monai.networks.schedulers.NoiseSchedules``)."""

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
"""Prediction types with the same name and meaning in diffusers and MONAI."""

SCHEDULE_TOLERANCE = 1e-5
"""Largest difference in √ᾱ or √(1 − ᾱ) accepted between the MONAI and the diffusers schedule."""

FINAL_STEP_TOLERANCE = 1e-3
"""Largest relative error of MONAI DDPM's last-step x0 weight (float32 β₀ / (1 − ᾱ₀), 1 in diffusers) accepted."""

_UNSUPPORTED_OPTIONS: dict[str, Any] = {"trained_betas": None, "thresholding": False, "rescale_betas_zero_snr": False}
"""diffusers options MONAI's schedulers lack, with the only value that maps."""


def write_monai_bundle(
    net: nn.Module,
    scheduler_config: dict[str, Any],
    image_size: Sequence[int],
    sampling: dict[str, Any],
    out_dir: str | Path,
    name: str,
    description: str = "",
    *,
    family: str = "diffusion",
    version: str = "0.1.0",
    value_range: Sequence[float] = (-1.0, 1.0),
    overwrite: bool = False,
) -> Path:
    """Write a MONAI bundle (``configs/inference.json``, ``configs/metadata.json``, ``models/model.pt``).

    Args:
        net: The denoising network (``model.net``): an unconditional :class:`~medgen.nets.unet.DiffusionUNet`.
        scheduler_config: The training noise schedule as a diffusers ``DDPMScheduler`` config
            (``model.objective.scheduler_config``).
        image_size: Spatial size of the samples, ``(H, W)`` or ``(D, H, W)``.
        sampling: Sampling defaults, ``{"sampler": "ddim", "num_steps": 50, ...}`` (a checkpoint's
            ``medgen.sampling`` block); ``sampler`` must be ``ddim`` or ``ddpm``, ``num_steps`` ``None`` takes
            medgen's default (all steps for DDPM, 50 otherwise). ``guidance`` is ignored: an unconditional
            net has nothing to guide.
        out_dir: The bundle folder (created).
        name: Model name (metadata ``name``).
        description: Plain-language description (metadata ``description``).
        family: The checkpoint's model family; only ``diffusion`` (pixel space) maps.
        version: Bundle version (metadata ``version``).
        value_range: Intensity range of the samples, for the metadata.
        overwrite: Replace an existing bundle in ``out_dir``.

    Returns:
        ``out_dir``.

    Raises:
        InputError: The model, schedule or sampler does not map exactly onto MONAI (see the module docstring),
            or ``out_dir`` already holds a bundle and ``overwrite`` is false.
    """
    out = Path(out_dir)
    if family != "diffusion":
        raise InputError("family", _family_problem(family))
    network_args = monai_network_args(net)
    spatial = [int(s) for s in image_size]
    if len(spatial) != network_args["spatial_dims"] or min(spatial, default=0) < 1:
        raise InputError(
            "image_size", f"expected {network_args['spatial_dims']} positive sizes for this network, got {spatial}"
        )
    scheduler_def, num_steps, sampler = monai_scheduler_def(scheduler_config, sampling)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in net.unet.state_dict().items()}  # type: ignore[union-attr]
    _check_network_loads(network_args, state)

    inference_path = out / "configs" / "inference.json"
    if inference_path.exists() and not overwrite:
        raise InputError(
            out, "already holds a MONAI bundle (configs/inference.json); pass overwrite=True to replace it"
        )
    inference = inference_config(network_args, scheduler_def, spatial, num_steps)
    metadata = metadata_config(
        name, description, version, network_args, spatial, value_range,
        source={"scheduler_config": dict(scheduler_config), "sampler": sampler, "num_steps": num_steps},
    )  # fmt: skip
    atomic_write(out / "models" / "model.pt", lambda p: torch.save(state, p))
    atomic_write(out / "configs" / "metadata.json", lambda p: p.write_text(_dumps(metadata), encoding="utf-8"))
    atomic_write(inference_path, lambda p: p.write_text(_dumps(inference), encoding="utf-8"))
    return out


def monai_network_args(net: nn.Module) -> dict[str, Any]:
    """Every constructor argument of the MONAI ``DiffusionModelUNet`` inside ``net``, JSON-ready.

    Arguments medgen does not set take the installed MONAI's defaults, written out so that the bundle does
    not depend on later changes of those defaults.

    Raises:
        InputError: ``net`` is not an unconditional :class:`~medgen.nets.unet.DiffusionUNet`.
    """
    from medgen.nets.controlnet import ControlNetUNet
    from medgen.nets.unet import DiffusionUNet

    if isinstance(net, ControlNetUNet):
        raise InputError(
            "model.net",
            "ControlNets do not map onto a MONAI bundle (the DiffusionInferer has no ControlNet input); "
            "only unconditional DiffusionUNet nets do",
        )
    if not isinstance(net, DiffusionUNet):
        raise InputError(
            "model.net",
            f"{type(net).__name__} does not map onto a MONAI bundle; only unconditional DiffusionUNet nets do",
        )
    if net.conditions:
        raise InputError(
            "model.net.conditions",
            f"class/value-conditioned nets ({', '.join(net.condition_names)}) do not map onto MONAI: medgen's "
            "ConditionEmbedding replaces MONAI's integer class embedding; only unconditional nets do",
        )
    if net.image_channels:
        raise InputError(
            "model.net.image_channels",
            f"image-conditioned nets ({net.image_channels} conditioning channel(s)) do not map onto a MONAI "
            "bundle; only unconditional nets do",
        )
    unet = net.unet
    if not isinstance(unet, DiffusionModelUNet) or getattr(unet, "class_embedding", None) is not None:
        raise InputError("model.net", "the inner network is not a plain MONAI DiffusionModelUNet")
    given = dict(net.config["init_args"])
    explicit = {
        "spatial_dims": given["spatial_dims"],
        "in_channels": given["in_channels"],
        "out_channels": given["out_channels"],
        "num_res_blocks": given["num_res_blocks"],
        "channels": given["channels"],
        "attention_levels": given["attention_levels"],
        "norm_num_groups": given["norm_num_groups"],
        "resblock_updown": given["resblock_updown"],
        "num_head_channels": given["num_head_channels"],
        "use_flash_attention": given["use_flash_attention"],
        "num_class_embeds": None,
    }
    args: dict[str, Any] = {}
    for param in list(inspect.signature(DiffusionModelUNet.__init__).parameters.values())[1:]:
        if param.name in explicit:
            args[param.name] = explicit[param.name]
        elif param.default is not inspect.Parameter.empty:
            args[param.name] = param.default
        else:
            raise InputError("model.net", f"MONAI's DiffusionModelUNet needs '{param.name}', which medgen does not set")
    return _plain(args)


def monai_scheduler_def(scheduler_config: dict[str, Any], sampling: dict[str, Any]) -> tuple[dict[str, Any], int, str]:
    """The MONAI scheduler that reproduces medgen's sampler, as a bundle component, checked numerically.

    Args:
        scheduler_config: The training schedule as a diffusers ``DDPMScheduler`` config.
        sampling: ``{"sampler": ..., "num_steps": ...}``.

    Returns:
        ``({"_target_": ..., **args}, num_inference_steps, diffusers class name)``.

    Raises:
        InputError: MONAI cannot express the schedule or the sampler exactly.
    """
    config = {k: v for k, v in scheduler_config.items() if k != "_use_default_values"}
    sampler = str(sampling.get("sampler") or "ddpm")
    class_name = scheduler_class_name(sampler)
    if class_name not in MONAI_SCHEDULERS:
        raise InputError(
            "sampling.sampler",
            f"MONAI has no counterpart of {class_name} ('{sampler}'); export with sampler 'ddim' (or 'ddpm' with "
            "all training steps), which MONAI's DDIMScheduler/DDPMScheduler reproduce",
        )
    for key, only in _UNSUPPORTED_OPTIONS.items():
        if config.get(key, only) not in (only,):
            raise InputError(
                f"scheduler_config.{key}", f"MONAI's schedulers have no '{key}' option (got {config[key]})"
            )
    beta_schedule = config.get("beta_schedule", "linear")
    if beta_schedule not in SCHEDULE_NAMES:
        raise InputError(
            "scheduler_config.beta_schedule",
            f"'{beta_schedule}' has no MONAI counterpart; expected one of {', '.join(SCHEDULE_NAMES)}",
        )
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in PREDICTION_TYPES:
        raise InputError(
            "scheduler_config.prediction_type",
            f"'{prediction}' has no MONAI counterpart; expected one of {', '.join(PREDICTION_TYPES)}",
        )
    num_train = int(config.get("num_train_timesteps", 1000))
    num_steps = sampling.get("num_steps")
    num_steps = (num_train if class_name == "DDPMScheduler" else 50) if num_steps is None else int(num_steps)
    if not 1 <= num_steps <= num_train:
        raise InputError("sampling.num_steps", f"expected 1 to {num_train} steps, got {num_steps}")
    clip_range = float(config.get("clip_sample_range", 1.0))
    args: dict[str, Any] = {
        "num_train_timesteps": num_train,
        "schedule": SCHEDULE_NAMES[beta_schedule],
        "prediction_type": prediction,
        "clip_sample": bool(config.get("clip_sample", True)),
        "clip_sample_min": -clip_range,
        "clip_sample_max": clip_range,
    }
    if beta_schedule != "squaredcos_cap_v2":  # MONAI's cosine schedule takes no beta range
        args["beta_start"] = float(config.get("beta_start", 1e-4))
        args["beta_end"] = float(config.get("beta_end", 0.02))

    desc = ""
    reference: Any = make_scheduler(class_name, config)
    reference.set_timesteps(num_steps)
    if class_name == "DDPMScheduler":
        if num_steps != num_train:
            raise InputError(
                "sampling.num_steps",
                f"MONAI's DDPMScheduler always steps from t to t - 1, so it reproduces DDPM only with all "
                f"{num_train} steps (got {num_steps}); export with sampler 'ddim' for fewer steps",
            )
        variance = config.get("variance_type") or "fixed_small"
        if variance not in ("fixed_small", "fixed_large"):
            raise InputError("scheduler_config.variance_type", f"'{variance}' does not map onto MONAI's DDPMScheduler")
        args["variance_type"] = variance
        monai: Any = DDPMScheduler(**args)
        # MONAI's last step weights x0 by β₀ / (1 − ᾱ₀) (diffusers: (1 − ᾱ₀) / (1 − ᾱ₀) = 1); in float32 the two
        # differ for small β₀ (linear β₀ = 1e-4: 1 − 1.7e-4), which scales the final sample by that factor.
        x0_scale = float(monai.betas[0] / (1 - monai.alphas_cumprod[0]))
        if abs(x0_scale - 1) > FINAL_STEP_TOLERANCE:
            raise InputError(
                "scheduler_config.beta_start",
                f"MONAI's DDPMScheduler would scale the final sample by {x0_scale:.6f} (float32 rounding of "
                f"1 - alpha_bar_0); use sampler 'ddim'",
            )
        desc = f"the last DDPM step scales the predicted x0 by {x0_scale:.6f} (diffusers: 1; float32 rounding)"
    else:
        # MONAI spaces DDIM timesteps as round(linspace(T - 1 - offset, 0, n)) + offset; its last timestep is
        # the offset, so the only candidate is diffusers' last timestep. Both step to t - T // n.
        args["steps_offset"] = int(reference.timesteps[-1])
        args["set_alpha_to_one"] = bool(config.get("set_alpha_to_one", True))
        monai = DDIMScheduler(**args)
        desc = (
            f"steps_offset {args['steps_offset']} reproduces diffusers' '{config.get('timestep_spacing', 'leading')}' "
            f"timesteps for num_inference_steps {num_steps} only; change them together"
        )
        final_gap = abs(float(monai.final_alpha_cumprod) - float(reference.final_alpha_cumprod))
        if final_gap > SCHEDULE_TOLERANCE:
            raise InputError("scheduler_config.set_alpha_to_one", "MONAI's final alpha differs from diffusers'")
    monai.set_timesteps(num_steps)
    if not torch.equal(monai.timesteps.long().cpu(), reference.timesteps.long().cpu()):
        spacing = config.get("timestep_spacing", "leading")
        raise InputError(
            "scheduler_config.timestep_spacing",
            f"MONAI's {class_name} cannot reproduce diffusers' '{spacing}' spacing with {num_steps} of "
            f"{num_train} steps (MONAI: {monai.timesteps.tolist()[:4]}..., diffusers: "
            f"{reference.timesteps.tolist()[:4]}...); use 'linspace' spacing, or a step count that divides "
            f"{num_train} with 'trailing'",
        )
    gap = schedule_gap(monai.alphas_cumprod, reference.alphas_cumprod)
    if gap > SCHEDULE_TOLERANCE:
        raise InputError(
            "scheduler_config.beta_schedule",
            f"MONAI's '{args['schedule']}' schedule differs from diffusers' '{beta_schedule}' by {gap:.2e}",
        )
    component = {"_target_": MONAI_SCHEDULERS[class_name], **args}
    if desc:
        component["_desc_"] = desc
    return component, num_steps, class_name


def schedule_gap(alphas_cumprod: torch.Tensor, reference: torch.Tensor) -> float:
    """Largest difference of the signal (√ᾱ) and noise (√(1 − ᾱ)) coefficients of two schedules."""
    a = alphas_cumprod.double().cpu()
    b = reference.double().cpu()
    if a.shape != b.shape:
        return float("inf")
    signal = (a.sqrt() - b.sqrt()).abs().max()
    noise = ((1 - a).clamp(min=0).sqrt() - (1 - b).clamp(min=0).sqrt()).abs().max()
    return float(max(signal, noise))


def inference_config(
    network_args: dict[str, Any], scheduler_def: dict[str, Any], image_size: list[int], num_steps: int
) -> dict[str, Any]:
    """``configs/inference.json``: components for ``ConfigParser`` and a ``monai.bundle run`` workflow.

    ``run`` draws ``batch_size`` samples from seeded noise and saves them with ``torch.save`` to
    ``output_path`` (a ``(B, C, *image_size)`` float tensor).
    """
    return {
        "bundle_root": ".",
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "model_path": "$@bundle_root + '/models/model.pt'",
        "output_path": "$@bundle_root + '/samples.pt'",
        "seed": 0,
        "batch_size": 1,
        "spatial_dims": network_args["spatial_dims"],
        "in_channels": network_args["in_channels"],
        "image_size": image_size,
        "num_inference_steps": num_steps,
        "network_def": {"_target_": MONAI_NETWORK, **network_args},
        "network": "$@network_def.to(@device)",
        "noise_scheduler": scheduler_def,
        "inferer": {"_target_": MONAI_INFERER, "scheduler": "@noise_scheduler"},
        "noise": "$torch.randn([@batch_size, @in_channels] + @image_size, device=@device)",
        "load_weights": "$@network.load_state_dict(torch.load(@model_path, map_location=@device, weights_only=True))",
        "set_timesteps": "$@noise_scheduler.set_timesteps(num_inference_steps=@num_inference_steps)",
        "sample": "$@inferer.sample(input_noise=@noise, diffusion_model=@network.eval(), "
        "scheduler=@noise_scheduler, verbose=False)",
        "initialize": ["$monai.utils.set_determinism(seed=@seed)", "$@load_weights", "$@set_timesteps"],
        "run": ["$torch.save(@sample.cpu(), @output_path)"],
    }


def metadata_config(
    name: str,
    description: str,
    version: str,
    network_args: dict[str, Any],
    image_size: list[int],
    value_range: Sequence[float],
    source: dict[str, Any],
) -> dict[str, Any]:
    """``configs/metadata.json`` with the keys MONAI's bundle specification requires."""
    import monai

    channels = int(network_args["out_channels"])
    tensor = {
        "type": "image",
        "format": "magnitude",
        "modality": "n/a",
        "num_channels": channels,
        "spatial_shape": image_size,
        "dtype": "float32",
        "is_patch_data": False,
    }
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
        "name": name,
        "version": version,
        "changelog": {version: "exported from medgen"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "optional_packages_version": {},
        "task": f"Unconditional {network_args['spatial_dims']}D image generation (denoising diffusion)",
        "description": description or f"{name}: a denoising diffusion model exported from medgen",
        "authors": "see medgen model card",
        "copyright": "see medgen model card",
        "license": "see medgen model card",
        "intended_use": "Research only; not for diagnostic use. Generated images are synthetic.",
        "network_data_format": {
            "inputs": {
                "image": {
                    **tensor,
                    "value_range": [],
                    "channel_def": {str(i): f"noisy image channel {i}" for i in range(channels)},
                },
                "timesteps": {
                    "type": "series",
                    "format": "timesteps",
                    "num_channels": 1,
                    "spatial_shape": ["*"],
                    "dtype": "float32",
                    "value_range": [0, source["scheduler_config"].get("num_train_timesteps", 1000) - 1],
                    "is_patch_data": False,
                    "channel_def": {"0": "diffusion timestep per sample"},
                },
            },
            "outputs": {
                "pred": {
                    **tensor,
                    "value_range": [],
                    "channel_def": {
                        str(i): f"{source['scheduler_config'].get('prediction_type', 'epsilon')} channel {i}"
                        for i in range(channels)
                    },
                },
                "sample": {
                    **tensor,
                    "value_range": [float(v) for v in value_range],
                    "channel_def": {str(i): f"generated image channel {i}" for i in range(channels)},
                },
            },
        },
        "medgen": {"version": __version__, "python_version": platform.python_version(), **_plain(source)},
    }


def _check_network_loads(network_args: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    """Build the MONAI net from the written arguments and load ``state`` strictly."""
    try:
        DiffusionModelUNet(**network_args).load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError) as err:
        raise InputError("model.net", f"the MONAI DiffusionModelUNet does not take these weights: {err}") from err


def _family_problem(family: str) -> str:
    if family.startswith("latent"):
        return (
            "latent diffusion does not map onto a MONAI bundle here: its samples are latents that medgen's "
            "autoencoder decodes; only pixel-space 'diffusion' models do"
        )
    if family == "flow":
        return (
            "flow matching does not map onto MONAI's RFlowScheduler: it steps x + v*dt towards the data "
            "(v = x0 - noise) while medgen predicts noise - x0, and its time shift differs; only pixel-space "
            "'diffusion' models map"
        )
    return f"'{family}' models do not map onto a MONAI bundle; only pixel-space 'diffusion' models do"


def _plain(value: Any) -> Any:
    """Tuples → lists, recursively (JSON-ready)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2) + "\n"
