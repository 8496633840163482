"""FSDP for medgen's networks, configured by block names instead of code.

Lightning's :class:`~lightning.pytorch.strategies.FSDPStrategy` takes its auto-wrap and activation-checkpointing
policies as Python objects (sets of module classes, callables), which a YAML config cannot hold without naming
arbitrary code. :class:`MedgenFSDP` takes block *names* and resolves them against :data:`BLOCKS`, the allow-list of
the transformer and residual blocks of medgen's backbones (DiT, MONAI's diffusion UNet); an unknown name is an
:class:`~medgen.errors.InputError`. Everything else is Lightning's FSDP: each wrapped block's parameters, gradients
and optimizer state are sharded over the processes (``FULL_SHARD``) and gathered for its forward and backward;
mixed precision comes from ``trainer.precision`` (``bf16-mixed``); ``state_dict_type: sharded`` writes each
checkpoint as a folder with one shard per process.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Literal

from lightning.pytorch.strategies import FSDPStrategy
from torch import nn

from medgen.errors import InputError

#: Block names a config may give → the class they stand for (imported when named).
BLOCKS: dict[str, str] = {
    "DiTBlock": "medgen.nets.dit.DiTBlock",
    "DiffusionUNetResnetBlock": "monai.networks.nets.diffusion_model_unet.DiffusionUNetResnetBlock",
    "SpatialTransformer": "monai.networks.nets.diffusion_model_unet.SpatialTransformer",
    "DiffusionUNetTransformerBlock": "monai.networks.nets.diffusion_model_unet.DiffusionUNetTransformerBlock",
}

#: The default wrap: every residual and attention block of the UNet, every DiT block.
DEFAULT_BLOCKS = ("DiTBlock", "DiffusionUNetResnetBlock", "SpatialTransformer")

Sharding = Literal["FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD"]


def block_classes(names: Sequence[str], field: str) -> set[type[nn.Module]]:
    """The module classes named by ``names`` (keys of :data:`BLOCKS`).

    Raises:
        InputError: A name outside :data:`BLOCKS` (names ``field``).
    """
    classes: set[type[nn.Module]] = set()
    for name in names:
        if name not in BLOCKS:
            raise InputError(field, f"a block name among {', '.join(sorted(BLOCKS))} (got '{name}')")
        module_name, _, attr = BLOCKS[name].rpartition(".")
        classes.add(getattr(importlib.import_module(module_name), attr))
    return classes


class MedgenFSDP(FSDPStrategy):
    """Lightning's FSDP with its wrap and activation-checkpointing policies given as block names.

    Args:
        wrap_blocks: Blocks that become FSDP units (:data:`BLOCKS` names); the rest of the network is the root unit.
        checkpoint_blocks: Blocks whose activations are recomputed in the backward pass (memory for compute).
        sharding_strategy: What is sharded: ``FULL_SHARD`` (parameters, gradients, optimizer state),
            ``SHARD_GRAD_OP`` (gradients and optimizer state), ``HYBRID_SHARD`` (full within a node, replicated
            across nodes), ``NO_SHARD`` (DDP).
        state_dict_type: ``sharded``: checkpoints are folders of per-process shards; ``full``: one file gathered on
            rank 0.
        cpu_offload: Keep parameters on the CPU between uses.
    """

    def __init__(
        self,
        wrap_blocks: Sequence[str] = DEFAULT_BLOCKS,
        checkpoint_blocks: Sequence[str] = (),
        sharding_strategy: Sharding = "FULL_SHARD",
        state_dict_type: Literal["full", "sharded"] = "sharded",
        cpu_offload: bool = False,
    ) -> None:
        wrap = block_classes(wrap_blocks, "strategy.wrap_blocks")
        recompute = block_classes(checkpoint_blocks, "strategy.checkpoint_blocks")
        super().__init__(
            auto_wrap_policy=wrap,
            activation_checkpointing_policy=recompute or None,
            sharding_strategy=sharding_strategy,
            state_dict_type=state_dict_type,
            cpu_offload=cpu_offload,
        )
        self.wrap_blocks = tuple(wrap_blocks)
        self.checkpoint_blocks = tuple(checkpoint_blocks)
