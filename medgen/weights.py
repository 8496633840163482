"""Reading tensors from weight files: the one reader of state dicts in medgen (a leaf: torch and safetensors only).

Every format medgen reads weights from goes through :func:`read_state`:

- ``.safetensors``: read by safetensors, which cannot run code;
- ``.pt`` / ``.pth`` / ``.bin`` / ``.ckpt``: ``torch.load(weights_only=True)``, which refuses pickled code; a
  ``{"state_dict": ...}`` wrapper (Lightning checkpoints, MONAI bundles, MedicalNet) is unwrapped.

Registry names and exported folders are resolved by :mod:`medgen.store`, which calls this module for the tensors.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from medgen.errors import InputError

#: File suffixes :func:`read_state` reads.
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")

StateDict = dict[str, torch.Tensor]

#: Storage types of exported weights (``medgen export --dtype``); loading always upcasts to float32.
WeightsDtype = Literal["float32", "float16", "bfloat16"]
WEIGHTS_DTYPES: tuple[WeightsDtype, ...] = ("float32", "float16", "bfloat16")
_HALF = (torch.float16, torch.bfloat16)


def stored(tensor: torch.Tensor, dtype: WeightsDtype) -> torch.Tensor:
    """``tensor`` as it is stored in an export of ``dtype``: floating-point tensors cast, others unchanged."""
    if dtype not in WEIGHTS_DTYPES:
        raise InputError("dtype", f"expected one of {', '.join(WEIGHTS_DTYPES)}, got '{dtype}'")
    return tensor.to(getattr(torch, dtype)) if tensor.is_floating_point() else tensor


def upcast(state: StateDict) -> StateDict:
    """``state`` with half-precision (float16, bfloat16) tensors as float32, the type models compute in."""
    return {k: v.float() if v.dtype in _HALF else v for k, v in state.items()}


def read_state(path: str | Path, key: str = "state_dict", strip: Sequence[str] = ()) -> StateDict:
    """The tensors of a weights file, never unpickling code.

    Args:
        path: A ``.safetensors``, ``.pt``, ``.pth``, ``.bin`` or ``.ckpt`` file.
        key: Entry to take from a dict-wrapped file (``state_dict``; a Lightning checkpoint also has
            ``current_model_state``, the raw training weights beside EMA ones). A missing key falls back to
            ``state_dict``, then to the file's top level.
        strip: Key prefixes removed where present (e.g. ``module.`` of ``DataParallel`` weights).

    Returns:
        Name → tensor; half-precision tensors (an export of ``medgen export --dtype float16``) come back as float32.

    Raises:
        InputError: The file is missing, unreadable, or does not hold a name → tensor mapping (names the file).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "weights file does not exist")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: Any = load_file(str(p))
        else:
            raw = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors and torch raise many types for corrupt or unsafe files
        first = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise InputError(p, f"cannot read weights ({type(exc).__name__}: {first})") from None
    state = unwrap_state(raw, key)
    if state is None:
        raise InputError(p, "expected a state dict (name → tensor)")
    for prefix in strip:
        state = {k.removeprefix(prefix): v for k, v in state.items()}
    return upcast(state)


def unwrap_state(raw: Any, key: str = "state_dict") -> StateDict | None:
    """The name → tensor mapping inside ``raw`` (``raw[key]``, ``raw["state_dict"]`` or ``raw``), else None."""
    if isinstance(raw, dict):
        for candidate in (key, "state_dict"):
            if isinstance(raw.get(candidate), dict):
                raw = raw[candidate]
                break
    if isinstance(raw, dict) and raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        return {str(k): v for k, v in raw.items()}
    return None


def sub_state(state: StateDict, prefix: str) -> StateDict:
    """The entries under ``prefix`` (e.g. ``net.``), with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def best_prefix(prefixes: Sequence[str], names: Iterable[str], pool: Container[str]) -> str:
    """The prefix that, put before ``names``, finds the most of them in ``pool`` (the first on a tie)."""
    names = list(names)
    return max(prefixes, key=lambda p: sum(f"{p}{k}" in pool for k in names))


def align_prefix(state: StateDict, target: Container[str], prefixes: Sequence[str]) -> StateDict:
    """``state`` with the prefix of ``prefixes`` that lands most of its keys in ``target`` put before each key.

    A state dict whose keys already match ``target`` is returned as is (a bare network's weights are prefixed so
    they land in a model that holds the network under ``net.`` or ``autoencoder.``).
    """
    if any(k in target for k in state):
        return state
    best = best_prefix(prefixes, state, target)
    return {f"{best}{k}": v for k, v in state.items()}
