"""Weights saved by the MONAI Generative package (before its merge into MONAI 1.4) under current MONAI names.

MONAI's model zoo and many papers' releases hold ``DiffusionModelUNet`` / ``AutoencoderKL`` / ``ControlNet``
state dicts from ``monai-generative``; current MONAI renamed some of their tensors, which is what its own
``load_old_state_dict`` methods undo. Those methods load in place into one bare MONAI network and print; medgen
needs the renaming as data (medgen's models hold the networks under ``net.unet.`` or ``autoencoder.``, and the
loading report must say what happened), so :func:`upgrade_state` applies the same rules, driven by the names the
current network has:

- attention blocks: ``B.to_q/to_k/to_v.*`` → ``B.attn.to_q/to_k/to_v.*`` (MONAI moved them into a ``SABlock``);
- their output projection: ``B.proj_attn.*`` → ``B.attn.out_proj.*``; an old autoencoder attention block without
  ``proj_attn`` gets an identity weight and a zero bias (as ``AutoencoderKL.load_old_state_dict``: the old
  block had no projection, and the identity reproduces it);
- cross-attention: ``B.to_out.0.*`` → ``B.out_proj.*`` (transformer blocks);
- up-sampling convolutions: ``B.conv.*`` → ``B.postconv.*``.

Weights in current MONAI names pass unchanged. Files are read by :func:`medgen.weights.read_state` (never code).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from medgen.weights import StateDict

#: Why each rule renames (shown in loading reports).
WHY_ATTENTION = "MONAI Generative name; MONAI 1.4 moved q/k/v into the attention block's .attn"
WHY_PROJECTION = "MONAI Generative's proj_attn is MONAI 1.4's attn.out_proj"
WHY_CROSS = "MONAI Generative's cross-attention to_out.0 is MONAI 1.4's out_proj"
WHY_POSTCONV = "MONAI Generative's up-sampling 'conv' is MONAI 1.4's 'postconv'"
WHY_IDENTITY = (
    "MONAI Generative's autoencoder attention had no output projection: identity weight / zero bias reproduce it "
    "(as MONAI's AutoencoderKL.load_old_state_dict)"
)


@dataclass
class KeyUpgrade:
    """The renaming of one state dict.

    Attributes:
        state: The tensors under current MONAI names (unchanged when nothing was old).
        renamed: ``(old name, new name, why)`` per renamed tensor.
        filled: ``(new name, why)`` per tensor made up because the old layout had none.
    """

    state: StateDict
    renamed: list[tuple[str, str, str]] = field(default_factory=list)
    filled: list[tuple[str, str]] = field(default_factory=list)

    def lines(self, prefix: str = "") -> list[str]:
        """One report line per renamed or filled tensor (new names with ``prefix``)."""
        out = [f"  renamed: {old} -> {prefix}{new} ({why})" for old, new, why in self.renamed]
        return out + [f"  filled: {prefix}{new} ({why})" for new, why in self.filled]


def upgrade_state(old: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> KeyUpgrade:
    """``old`` with MONAI Generative names renamed to the current names ``target`` (a network's state dict) has.

    Only names ``target`` has and ``old`` lacks are looked for, so current-layout weights come back unchanged.
    """
    state = dict(old)
    result = KeyUpgrade(state)

    def move(old_key: str, new_key: str, why: str) -> bool:
        if new_key in state or old_key not in state or new_key not in target:
            return False
        state[new_key] = state.pop(old_key)
        result.renamed.append((old_key, new_key, why))
        return True

    for key in target:
        if key in state:
            continue
        if ".attn.to_" in key:
            block, _, leaf = key.rpartition(".attn.")
            move(f"{block}.{leaf}", key, WHY_ATTENTION)
        elif "postconv" in key:
            move(key.replace("postconv", "conv"), key, WHY_POSTCONV)
        elif "transformer_blocks" in key and ".out_proj." in key:
            block, _, leaf = key.rpartition(".out_proj.")
            move(f"{block}.to_out.0.{leaf}", key, WHY_CROSS)
    for key, value in target.items():  # after q/k/v, so that an old attention block is known as such
        if ".attn.out_proj." not in key or key in state:
            continue
        block, _, leaf = key.rpartition(".attn.out_proj.")
        if move(f"{block}.proj_attn.{leaf}", key, WHY_PROJECTION):
            continue
        if any(new.startswith(f"{block}.attn.to_") for _, new, _ in result.renamed):
            state[key] = torch.eye(value.shape[0], dtype=value.dtype) if leaf == "weight" else torch.zeros_like(value)
            result.filled.append((key, WHY_IDENTITY))
    return result


def upgrade_for(
    state: StateDict, target: Mapping[str, torch.Tensor], prefixes: Sequence[str]
) -> tuple[KeyUpgrade, str]:
    """:func:`upgrade_state` against the sub-network of ``target`` under the prefix where it renames most.

    Args:
        state: A bare network's tensors (MONAI Generative or current names).
        target: A medgen model's state dict (networks under ``net.``, ``net.unet.``, ``autoencoder.`` ...).
        prefixes: Where bare networks sit in medgen models (with ``""`` for a bare network itself).

    Returns:
        The upgrade (nothing renamed when ``state`` already has current names or no prefix fits) and its prefix.
    """
    best, best_prefix = KeyUpgrade(state), ""
    for prefix in prefixes:
        sub = {k[len(prefix) :]: v for k, v in target.items() if k.startswith(prefix)}
        upgrade = upgrade_state(state, sub)
        if len(upgrade.renamed) > len(best.renamed):
            best, best_prefix = upgrade, prefix
    return best, best_prefix
