"""Loading trained medgen models from Lightning checkpoints, without the training config.

Checkpoints carry a ``medgen`` block (module class, network and objective configs, sample size), so a model
is rebuilt from the checkpoint alone. Loading uses ``torch.load(weights_only=True)``: a checkpoint cannot
run code.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from medgen.config import instantiate
from medgen.errors import InputError
from medgen.lit.base import GenerativeModule

#: Constructor arguments that are objects, rebuilt from their ``class_config`` in the ``medgen`` block.
COMPONENTS = ("net", "objective", "autoencoder")


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
    module_path = str(meta["module"])
    if not module_path.startswith("medgen."):
        raise InputError(path, f"checkpoint names a module outside medgen ('{module_path}')")
    module_name, _, class_name = module_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    hparams = {k: v for k, v in ckpt.get("hyper_parameters", {}).items() if not k.startswith("_")}
    parts = {k: instantiate(meta[k]) for k in COMPONENTS if isinstance(meta.get(k), dict)}
    module: GenerativeModule = cls(**parts, **hparams)
    state = ckpt["state_dict"] if use_ema else ckpt.get("current_model_state", ckpt["state_dict"])
    module.load_state_dict(state)
    if meta.get("image_size"):
        module.image_size = tuple(meta["image_size"])
    return module.eval()
