"""Reading Lightning checkpoints written by ``medgen fit``: tensors and metadata, never pickled code.

A checkpoint's ``medgen`` block says what the model is: from medgen 0.2 (``format: 2``) the model's class config
under ``model``; before, the Lightning module's class under ``module`` with its parts (``net``, ``objective``,
``autoencoder``) and the module's ``hyper_parameters`` (read by :mod:`medgen.models.legacy`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medgen.errors import InputError
from medgen.weights import StateDict, sub_state, unwrap_state

#: Prefix of the model's tensors in the state dict of a checkpoint written by a :mod:`medgen.lit` task.
TASK_PREFIX = "model."


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


def model_state(ckpt: dict[str, Any], use_ema: bool = True) -> StateDict:
    """The model's tensors in a checkpoint, named as in the model's own ``state_dict``.

    Args:
        ckpt: A checkpoint dict from :func:`read_checkpoint`.
        use_ema: The EMA weights (the ``state_dict`` of a run that kept them); False: the raw training weights
            (``current_model_state``, where the run kept both).
    """
    state = unwrap_state(ckpt, "state_dict" if use_ema else "current_model_state") or {}
    if is_task_checkpoint(ckpt):
        return sub_state(state, TASK_PREFIX)
    return state  # medgen < 0.2: the Lightning module held the net, objective and autoencoder itself


def is_task_checkpoint(ckpt: dict[str, Any]) -> bool:
    """True for a checkpoint written by a :mod:`medgen.lit` task (the model under ``model.``)."""
    return isinstance(ckpt.get("medgen"), dict) and "model" in ckpt["medgen"]
