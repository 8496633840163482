"""Loading trained medgen models from Lightning checkpoints, without the training config.

Checkpoints carry a ``medgen`` block (module class, network and objective configs, sample size), so a model
is rebuilt from the checkpoint alone. Loading uses ``torch.load(weights_only=True)``, and the classes a
checkpoint or an exported ``config.yaml`` may name are an allow-list (:data:`MODULE_CLASSES` for the module,
:data:`COMPONENT_CLASSES` for its parts): a file cannot choose which code runs beyond those constructors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from medgen.config import Allowed, construct, instantiate, is_class_config, resolve_class
from medgen.errors import InputError
from medgen.lit.base import GenerativeModule
from medgen.objectives import DiffusionObjective, FlowObjective

#: Constructor arguments that are objects, rebuilt from their ``class_config`` in the ``medgen`` block.
COMPONENTS = ("net", "objective", "autoencoder")

#: What a checkpoint's ``medgen.module`` or an export's ``model.class_path`` may name.
MODULE_CLASSES = (Allowed("medgen.lit.", GenerativeModule),)

#: What the module's parts (networks, autoencoders, objectives; nested too) may name.
COMPONENT_CLASSES = (
    Allowed("medgen.nets.", nn.Module),
    Allowed("medgen.objectives.", DiffusionObjective),
    Allowed("medgen.objectives.", FlowObjective),
)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint dict, loaded with ``weights_only=True``.

    Raises:
        InputError: Missing file, unreadable file, or not a medgen checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "checkpoint file does not exist")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise InputError(
            p, f"cannot load checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
        ) from None
    if not isinstance(ckpt, dict) or "medgen" not in ckpt:
        raise InputError(p, "not a medgen checkpoint (no 'medgen' metadata block)")
    return ckpt


def load_module(path: str | Path, use_ema: bool = True, map_location: str | torch.device = "cpu") -> GenerativeModule:
    """Rebuild a trained module from a Lightning checkpoint, ready to sample.

    Args:
        path: ``.ckpt`` file written by ``medgen fit``.
        use_ema: Use the EMA weights when the run kept them (the ``state_dict`` of a checkpoint written with
            ``EMAWeightAveraging``); False loads the raw training weights.
        map_location: Device to load tensors to.

    Returns:
        The module in eval mode.
    """
    return module_from_checkpoint(read_checkpoint(path, map_location), path, use_ema)


def module_from_checkpoint(ckpt: dict[str, Any], path: str | Path, use_ema: bool = True) -> GenerativeModule:
    """Rebuild the module of a checkpoint dict already read by :func:`read_checkpoint` (``path`` for errors)."""
    meta = ckpt["medgen"]
    hparams = {k: v for k, v in (ckpt.get("hyper_parameters") or {}).items() if not k.startswith("_")}
    parts = {k: meta[k] for k in COMPONENTS if isinstance(meta.get(k), dict)}
    module = build_module(str(meta["module"]), {**hparams, **parts}, path)
    state = ckpt["state_dict"] if use_ema else ckpt.get("current_model_state", ckpt["state_dict"])
    module.load_state_dict(state)
    if meta.get("image_size"):
        module.image_size = tuple(meta["image_size"])
    return module.eval()


def build_module(class_path: str, init_args: dict[str, Any], source: str | Path) -> GenerativeModule:
    """An allow-listed module built from ``init_args`` whose class configs are allow-listed components.

    Args:
        class_path: Dotted path of a :class:`~medgen.lit.base.GenerativeModule` subclass.
        init_args: Constructor arguments; ``{"class_path", "init_args"}`` values are built first.
        source: The checkpoint or config file, named in errors.

    Raises:
        InputError: A class outside :data:`MODULE_CLASSES` / :data:`COMPONENT_CLASSES`, or bad arguments.
    """
    cls = resolve_class(class_path, MODULE_CLASSES, source)
    args = {k: instantiate(v, COMPONENT_CLASSES, source) if is_class_config(v) else v for k, v in init_args.items()}
    module: GenerativeModule = construct(cls, args, source)
    return module
