"""ControlNet (Zhang et al. 2023, arXiv 2302.05543) on a medgen UNet, built from MONAI's ``ControlNet``.

A trainable copy of the base UNet's encoder reads a control image (e.g. a segmentation mask) and adds
zero-initialised residuals to the base's skip connections, so training starts from the base model's
behaviour. The base can be frozen (the usual ControlNet recipe, with ``base_weights`` from a trained
checkpoint) or trained jointly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.nets import ControlNet

from medgen.config import class_config
from medgen.errors import InputError
from medgen.nets.condition import Condition
from medgen.nets.conditioning import ConditionEmbedding
from medgen.nets.protocol import GenerativeNet
from medgen.nets.unet import DiffusionUNet
from medgen.weights import best_prefix, read_state, sub_state


class ControlNetUNet(GenerativeNet):
    """A :class:`~medgen.nets.unet.DiffusionUNet` steered by a ControlNet on ``cond.control``.

    Args:
        base: The base network (its architecture arguments are reused for the ControlNet encoder).
        control_channels: Channels of the control image.
        conditioning_scale: Multiplier of the ControlNet residuals.
        freeze_base: Train only the ControlNet.
        embedding_channels: Channels of the control-image embedding convolutions (one entry keeps full resolution).
        base_weights: Optional medgen ``.ckpt`` whose network weights (EMA when present) initialise the base.
            Not recorded in :attr:`config`: once loaded, those weights are part of this net's state dict, so a
            checkpoint or export of it is self-contained and never re-reads (or needs) that file.
    """

    def __init__(
        self,
        base: DiffusionUNet,
        control_channels: int = 1,
        conditioning_scale: float = 1.0,
        freeze_base: bool = True,
        embedding_channels: Sequence[int] = (32,),
        base_weights: str | None = None,
    ) -> None:
        super().__init__()
        recorded = {k: v for k, v in locals().items() if k not in ("self", "__class__", "base_weights")}
        self.config = class_config(self, recorded)
        self.config["init_args"]["base"] = base.config
        self.base = base
        if base_weights:
            load_base_weights(base, base_weights)
        args: dict[str, Any] = dict(base.config["init_args"])
        self.controlnet = ControlNet(
            spatial_dims=base.spatial_dims,
            in_channels=base.in_channels + base.image_channels,
            num_res_blocks=args["num_res_blocks"],
            channels=tuple(args["channels"]),
            attention_levels=tuple(args["attention_levels"]),
            norm_num_groups=args["norm_num_groups"],
            resblock_updown=args["resblock_updown"],
            num_head_channels=args["num_head_channels"],
            num_class_embeds=1 if base.conditions else None,
            conditioning_embedding_in_channels=control_channels,
            conditioning_embedding_num_channels=tuple(embedding_channels),
            use_flash_attention=args["use_flash_attention"],
        )
        if base.conditions:
            self.controlnet.class_embedding = ConditionEmbedding(base.conditions, args["channels"][0] * 4)  # type: ignore[assignment]
        copy_encoder(base, self.controlnet)
        self.base.requires_grad_(not freeze_base)
        self.control_channels = control_channels
        self.conditioning_scale = conditioning_scale
        self.spatial_dims = base.spatial_dims
        self.in_channels = base.in_channels
        self.image_channels = base.image_channels
        self.conditions = base.conditions

    @property
    def condition_names(self) -> list[str]:
        """Names of the value conditions, in column order."""
        return self.base.condition_names

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        """``(B, C, *spatial)`` prediction; ``cond.control`` is ``(B, control_channels, *spatial)``."""
        if cond is None or cond.control is None:
            raise ValueError(f"this network needs a control image with {self.control_channels} channel(s)")
        x_in, labels = self.base.prepare(x, cond)
        down, mid = self.controlnet(
            x_in,
            t,
            controlnet_cond=cond.control.to(x.dtype),
            conditioning_scale=self.conditioning_scale,
            class_labels=labels,
        )
        return self.base(x, t, cond, down_residuals=down, mid_residual=mid)


def copy_encoder(base: DiffusionUNet, controlnet: ControlNet) -> None:
    """Initialise the ControlNet encoder from the base UNet (every parameter with a matching name and shape)."""
    source = base.unet.state_dict()
    target = controlnet.state_dict()
    shared = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    controlnet.load_state_dict(shared, strict=False)


def load_base_weights(base: DiffusionUNet, path: str) -> None:
    """Load a trained model's network weights into ``base``.

    Args:
        base: The base network.
        path: A medgen ``.ckpt`` (its EMA weights when the run kept them), an exported ``model.safetensors``, or
            the network's own state dict (``.pt`` / ``.safetensors``).

    Raises:
        InputError: The file's network tensors do not fit ``base`` (names the file).
    """
    state = read_state(path)
    want = base.state_dict()
    prefix = best_prefix(("", "net.", "model.net.", "net.base.", "model.net.base."), want, state)
    net_state = sub_state(state, prefix) if prefix else state
    missing, unexpected = base.load_state_dict(net_state, strict=False)
    if missing or unexpected:
        raise InputError(
            path,
            f"base weights do not fit the base network ({len(missing)} missing, {len(unexpected)} unexpected keys)",
        )
