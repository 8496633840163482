"""MONAI ``DiffusionModelUNet`` adapted to medgen's model contract ``net(x, t, cond=None)``.

One class serves 2D and 3D (``spatial_dims``). Conditioning:

- values (class labels, scalars): :class:`~medgen.nets.conditioning.ConditionEmbedding` takes the place
  of MONAI's class embedding, which the UNet adds to its timestep embedding;
- images/masks: concatenated to the input along channels (``image_channels``);
- ControlNet: see :mod:`medgen.nets.controlnet`.

Gradient checkpointing wraps the forward of each down/mid/up block in ``torch.utils.checkpoint`` without
changing parameter names, so MONAI state dicts still load.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.networks.nets import DiffusionModelUNet
from torch import nn
from torch.utils.checkpoint import checkpoint

from medgen.config import class_config
from medgen.errors import InputError
from medgen.nets.condition import Condition
from medgen.nets.conditioning import ConditionEmbedding, ConditionSpec, network_inputs
from medgen.nets.levels import check_levels
from medgen.nets.protocol import GenerativeNet


class DiffusionUNet(GenerativeNet):
    """A denoising UNet for 2D or 3D images, with optional value and image conditioning.

    Args:
        spatial_dims: 2 or 3.
        in_channels: Image channels (the generated image).
        out_channels: Output channels (usually ``in_channels``).
        channels: Feature channels per resolution level.
        attention_levels: Self-attention at each level (keep it to the lowest resolutions in 3D).
        num_res_blocks: Residual blocks per level.
        num_head_channels: Channels per attention head.
        norm_num_groups: GroupNorm groups (must divide every entry of ``channels``).
        resblock_updown: Residual blocks for up/down-sampling (instead of plain convolutions).
        use_flash_attention: Use ``torch.nn.functional.scaled_dot_product_attention`` (flash /
            memory-efficient kernels on GPU).
        gradient_checkpointing: Recompute block activations in the backward pass (less memory, ~30 % slower).
        conditions: Condition columns embedded into the timestep pathway (class labels, scalars).
        image_channels: Channels of a conditioning image concatenated to the input (0 = none).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: Sequence[int] = (128, 256, 256, 512),
        attention_levels: Sequence[bool] = (False, False, True, True),
        num_res_blocks: int | Sequence[int] = 2,
        num_head_channels: int | Sequence[int] = 32,
        norm_num_groups: int = 32,
        resblock_updown: bool = True,
        use_flash_attention: bool = True,
        gradient_checkpointing: bool = False,
        conditions: Sequence[ConditionSpec] = (),
        image_channels: int = 0,
    ) -> None:
        super().__init__()
        self.config = class_config(self, {k: v for k, v in locals().items() if k not in ("self", "__class__")})
        check_levels("model.net", spatial_dims, channels, attention_levels, norm_num_groups)
        heads = [num_head_channels] * len(channels) if isinstance(num_head_channels, int) else list(num_head_channels)
        bad_heads = [c for c, h, a in zip(channels, heads, attention_levels, strict=False) if a and c % h]
        if bad_heads:
            raise InputError(
                "model.net.num_head_channels",
                f"attention levels with {bad_heads} channels are not divisible by {num_head_channels}",
            )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.image_channels = image_channels
        self.conditions = [c if isinstance(c, ConditionSpec) else ConditionSpec(**c) for c in conditions]  # type: ignore[arg-type]
        self.unet = DiffusionModelUNet(
            spatial_dims=spatial_dims,
            in_channels=in_channels + image_channels,
            out_channels=out_channels,
            channels=tuple(channels),
            attention_levels=tuple(attention_levels),
            num_res_blocks=num_res_blocks,
            num_head_channels=num_head_channels,
            norm_num_groups=norm_num_groups,
            resblock_updown=resblock_updown,
            use_flash_attention=use_flash_attention,
            num_class_embeds=1 if self.conditions else None,
        )
        if self.conditions:
            self.unet.class_embedding = ConditionEmbedding(self.conditions, channels[0] * 4)  # type: ignore[assignment]
        if gradient_checkpointing:
            enable_gradient_checkpointing(self.unet)

    @property
    def condition_names(self) -> list[str]:
        """Names of the value conditions, in column order."""
        return [c.name for c in self.conditions]

    def prepare(self, x: torch.Tensor, cond: Condition | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The UNet's input (``x`` with the conditioning image concatenated) and its ``(B, K)`` class labels."""
        return network_inputs(x, cond, self.image_channels, len(self.conditions))

    def forward(  # type: ignore[override]  # extra ControlNet residuals
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: Condition | None = None,
        down_residuals: Sequence[torch.Tensor] | None = None,
        mid_residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict from ``x`` of shape ``(B, C, *spatial)`` at timesteps ``t`` ``(B,)``.

        Args:
            x: Noisy images.
            t: Timesteps (integer DDPM steps, or continuous values scaled to a similar range).
            cond: Condition values ``(B, K)`` and/or a conditioning image ``(B, image_channels, *spatial)``.
            down_residuals: ControlNet residuals added to the skip connections.
            mid_residual: ControlNet residual added to the middle block.

        Returns:
            ``(B, out_channels, *spatial)``.
        """
        x, labels = self.prepare(x, cond)
        return self.unet(
            x,
            t,
            class_labels=labels,
            down_block_additional_residuals=tuple(down_residuals) if down_residuals is not None else None,
            mid_block_additional_residual=mid_residual,
        )


def enable_gradient_checkpointing(unet: nn.Module) -> None:
    """Checkpoint the forward of every down, middle and up block of a MONAI diffusion UNet (in place)."""
    blocks: list[Any] = [*unet.down_blocks, unet.middle_block, *unet.up_blocks]  # type: ignore[misc, union-attr]
    for block in blocks:
        block.forward = functools.partial(_checkpointed, block.forward)


def _checkpointed(forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)
