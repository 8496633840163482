"""MAISI (NV-Generate-CT/MR) checkpoint files → a medgen latent flow model, exported with a card.

The layouts MAISI's scripts write (NV-Generate-CTMR ``scripts/diff_model_train.py``, ``scripts/inference.py``,
``scripts/train_controlnet.py``):

- diffusion UNet: ``torch.save({"epoch", "loss", "num_train_timesteps", "scale_factor": tensor,
  "unet_state_dict": {...}})`` (``DiffusionModelUNetMaisi`` names);
- autoencoder: a bare ``AutoencoderKlMaisi`` state dict, or the same wrapped as ``{"unet_state_dict": ...}`` (its
  scripts accept both);
- ControlNet: ``{"epoch", "loss", "controlnet_state_dict": {...}}`` (``ControlNetMaisi`` names), for a model whose
  net is :class:`~medgen.nets.maisi.MaisiControlNet`.

Every file is read with ``torch.load(weights_only=True)``: tensors, numbers and containers only, never code; what
model the weights become is decided by the medgen config (architecture arguments, allow-listed classes), never by
the file. Every tensor must fit by name and shape; the first that does not is named with both shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from monai.networks.utils import copy_model_state
from torch import nn

from medgen.errors import InputError
from medgen.models.latent import LatentSpace
from medgen.nets.maisi import MaisiAutoencoder, MaisiControlNet, MaisiDiffusionUNet
from medgen.weights import StateDict

#: Keys of MAISI's UNet checkpoint dict that hold the weights and the latent scale.
UNET_KEY, SCALE_KEY, CONTROLNET_KEY = "unet_state_dict", "scale_factor", "controlnet_state_dict"
#: The intensity record of MAISI's CT models: HU -1000..1000 mapped to the autoencoder's [0, 1].
MAISI_CT_INTENSITY = {"kind": "window", "low": -1000.0, "high": 1000.0, "unit": "HU"}


@dataclass
class MaisiFiles:
    """What was read from MAISI's files.

    Attributes:
        unet: ``DiffusionModelUNetMaisi`` tensors.
        autoencoder: ``AutoencoderKlMaisi`` tensors.
        scale_factor: The latent scale stored with the UNet (None when the file has none).
        extras: The UNet file's other plain entries (epoch, loss, num_train_timesteps), recorded in the card.
        controlnet: ``ControlNetMaisi`` tensors (None: no ControlNet file).
    """

    unet: StateDict
    autoencoder: StateDict
    scale_factor: float | None
    extras: dict[str, Any]
    controlnet: StateDict | None = None


def read_raw(path: str | Path) -> Any:
    """The object in a ``torch.save`` file, read with ``weights_only=True`` (no code can run).

    Raises:
        InputError: The file is missing or holds anything but tensors, numbers and containers (names the file).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "MAISI checkpoint file does not exist")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise InputError(p, f"cannot read weights ({type(exc).__name__}: {str(exc)[:160]})") from None


def tensors_of(raw: Any, key: str, path: str | Path) -> StateDict:
    """``raw[key]`` when ``raw`` has it, else ``raw`` itself, as a name → tensor dict (MAISI's two layouts)."""
    state = raw.get(key, raw) if isinstance(raw, dict) else raw
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(path, f"expected a state dict or a dict with '{key}' (MAISI's layout)")
    return {str(k): v for k, v in state.items()}


def read_maisi_files(
    unet_path: str | Path, autoencoder_path: str | Path, controlnet_path: str | Path | None = None
) -> MaisiFiles:
    """Read MAISI's UNet, autoencoder and (optionally) ControlNet checkpoints in the layouts its scripts save."""
    raw = read_raw(unet_path)
    unet = tensors_of(raw, UNET_KEY, unet_path)
    scale = raw.get(SCALE_KEY) if isinstance(raw, dict) else None
    if scale is not None and not (isinstance(scale, (int, float)) or (torch.is_tensor(scale) and scale.numel() == 1)):
        raise InputError(unet_path, f"'{SCALE_KEY}' must be one number, got {type(scale).__name__}")
    extras = {}
    if isinstance(raw, dict):
        extras = {str(k): v for k, v in raw.items() if isinstance(v, (int, float, str)) and k != SCALE_KEY}
    autoencoder = tensors_of(read_raw(autoencoder_path), UNET_KEY, autoencoder_path)
    controlnet = None
    if controlnet_path is not None:
        controlnet = tensors_of(read_raw(controlnet_path), CONTROLNET_KEY, controlnet_path)
    return MaisiFiles(unet, autoencoder, None if scale is None else float(scale), extras, controlnet)


def maisi_model_state(path: str | Path) -> StateDict:
    """One MAISI file's tensors under a medgen latent model's names, for ``--pretrained.init_from maisi:PATH``.

    A UNet file (``{"unet_state_dict", "scale_factor", ...}``) gives ``net.unet.*`` and ``latent_scale``; an
    autoencoder file (bare or wrapped; names starting ``encoder.``/``decoder.``) gives ``autoencoder.*``.
    """
    raw = read_raw(path)
    state = tensors_of(raw, UNET_KEY, path)
    if all(k.split(".")[0] in _AUTOENCODER_PARTS for k in state):
        return {f"autoencoder.{k}": v for k, v in state.items()}
    out = {f"net.unet.{k}": v for k, v in state.items()}
    scale = raw.get(SCALE_KEY) if isinstance(raw, dict) else None
    if scale is not None:
        out["latent_scale"] = torch.as_tensor(scale, dtype=torch.float32).reshape(())
    return out


#: Top-level children of MAISI's autoencoder.
_AUTOENCODER_PARTS = ("encoder", "decoder", "quant_conv_mu", "quant_conv_log_sigma", "post_quant_conv")


def load_exact(module: nn.Module, state: StateDict, source: str | Path) -> None:
    """Load ``state`` into ``module`` when every tensor fits by name and shape, else name the first that does not.

    Raises:
        InputError: A key missing from either side, or the first key whose shapes differ, with both shapes.
    """
    want = module.state_dict()
    for key, value in state.items():
        if key not in want:
            raise InputError(source, f"'{key}' is not a tensor of {type(module).__name__} with these arguments")
        if tuple(value.shape) != tuple(want[key].shape):
            raise InputError(
                source,
                f"first mismatching key '{key}': file {tuple(value.shape)} vs model {tuple(want[key].shape)}; "
                "check the architecture arguments against the checkpoint's config_network",
            )
    missing = [k for k in want if k not in state]
    if missing:
        raise InputError(source, f"{len(missing)} tensors of {type(module).__name__} missing, first '{missing[0]}'")
    module.load_state_dict(state)


def load_maisi(
    model: LatentSpace,
    files: MaisiFiles,
    unet_path: str | Path,
    autoencoder_path: str | Path,
    controlnet_path: str | Path | None = None,
) -> None:
    """Put MAISI's weights into a latent model with MAISI's networks (:mod:`medgen.nets.maisi`).

    The latent scale becomes the file's ``scale_factor`` (fixed; MAISI multiplies latents by it as medgen does).
    A :class:`MaisiControlNet` starts from a copy of the loaded UNet's encoder, then takes the ControlNet file.

    Raises:
        InputError: The model's networks are not MAISI's, a ControlNet file without a ControlNet (or the reverse),
            or a tensor does not fit (see :func:`load_exact`).
    """
    net = getattr(model, "net", None)
    base = net.base if isinstance(net, MaisiControlNet) else net
    if not isinstance(base, MaisiDiffusionUNet) or not isinstance(model.autoencoder, MaisiAutoencoder):
        raise InputError(
            "model",
            "needs net medgen.nets.maisi.MaisiDiffusionUNet (or MaisiControlNet) and autoencoder "
            "medgen.nets.maisi.MaisiAutoencoder",
        )
    if (files.controlnet is None) == isinstance(net, MaisiControlNet):
        raise InputError(
            "controlnet", "a MaisiControlNet model needs a ControlNet file, and only such a model takes one"
        )
    load_exact(base.unet, files.unet, unet_path)
    load_exact(model.autoencoder, files.autoencoder, autoencoder_path)
    if isinstance(net, MaisiControlNet) and files.controlnet is not None:
        copy_model_state(net.controlnet, base.unet.state_dict())
        load_exact(net.controlnet, files.controlnet, str(controlnet_path))
    if files.scale_factor is not None:
        model.latent_scale.fill_(files.scale_factor)
        model.fixed_scale = True


def model_from_config(config: str | Path) -> LatentSpace:
    """The latent model of a ``medgen fit`` config (``model.init_args.model``, or a bare ``model:`` section).

    Raises:
        InputError: Unreadable config, a class outside medgen's allow-lists, or not a latent model.
    """
    from medgen.models.base import MODEL_CLASSES
    from medgen.models.build import build_model

    path = Path(config)
    try:
        section = yaml.safe_load(path.read_text())["model"]
        if str(section["class_path"]).startswith("medgen.lit."):
            section = section["init_args"]["model"]
        class_path, init_args = str(section["class_path"]), dict(section.get("init_args") or {})
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise InputError(path, f"expected a medgen fit config with a model section ({exc})") from None
    model = build_model(class_path, init_args, path, MODEL_CLASSES)
    if not isinstance(model, LatentSpace):
        raise InputError(path, f"the model must be a latent model, got {type(model).__name__}")
    return model


def import_maisi(
    config: str | Path,
    unet: str | Path,
    autoencoder: str | Path,
    out_dir: str | Path,
    name: str | None = None,
    licence: str = "NVIDIA Open Model License (check the weights' own licence)",
    controlnet: str | Path | None = None,
) -> Path:
    """Write an exported medgen model (``config.yaml``, ``model.safetensors``, card) from MAISI's files.

    Args:
        config: ``medgen fit`` config naming the latent model and MAISI's architecture (``configs/maisi_ct_3d.yaml``).
        unet: MAISI diffusion UNet checkpoint (``{"unet_state_dict", "scale_factor", ...}``).
        autoencoder: MAISI autoencoder checkpoint (bare state dict or ``{"unet_state_dict": ...}``).
        out_dir: The exported folder (then ``medgen generate --checkpoint OUT_DIR``, ``--pretrained.init_from``).
        name: Model name in the card (default: the folder name).
        licence: Licence recorded in the card.
        controlnet: MAISI ControlNet checkpoint (``{"controlnet_state_dict", ...}``), for a MaisiControlNet model.

    Returns:
        ``out_dir``.
    """
    model = model_from_config(config)
    files = read_maisi_files(unet, autoencoder, controlnet)
    load_maisi(model, files, unet, autoencoder, controlnet)
    net = model.net.base if isinstance(model.net, MaisiControlNet) else model.net
    assert isinstance(net, MaisiDiffusionUNet)
    spacing = [float(s) for s in net.default_spacing.tolist()]
    data = {
        "modality": "ct",
        "intensity": MAISI_CT_INTENSITY,
        "spacing": spacing[: net.spatial_dims],
        "vocab": {},
        "data_dir": f"MAISI checkpoint {Path(unet).name}",
        "maisi": {
            "unet": str(unet),
            "autoencoder": str(autoencoder),
            "controlnet": None if controlnet is None else str(controlnet),
            "unet_file": files.extras,
        },
    }
    meta = {**model.describe(), "data": data}
    return model.save_pretrained(out_dir, name, licence, str(unet), None, describe=meta)
