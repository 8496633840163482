"""GAN networks, 2D and 3D: an up-sampling generator and a patch discriminator, both over MONAI's networks.

- :class:`UpsamplingGenerator`: MONAI's ``Generator`` (a linear layer to a small start grid, then stages of a
  stride-2 transposed convolution and residual units) with a ``tanh`` output, so images are in [-1, 1] like every
  medgen model's. Value conditions (class labels, scalars; :class:`~medgen.nets.conditioning.ConditionSpec`) are
  embedded and concatenated to the latent vector.
- :class:`PatchCritic`: MONAI's ``PatchDiscriminator`` (PatchGAN), optionally with spectral normalisation of every
  convolution, and a projection term for value conditions (Miyato & Koyama 2018): the logits of each patch get
  ``⟨embed(y), mean of the last features⟩``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.nets import Generator, PatchDiscriminator
from torch import nn

from medgen.config import class_config
from medgen.errors import InputError
from medgen.nets.condition import Condition
from medgen.nets.conditioning import ConditionEmbedding, ConditionSpec
from medgen.nets.protocol import GeneratorNet


class UpsamplingGenerator(GeneratorNet):
    """DCGAN-style generator: ``z`` ``(B, latent_dim)`` → images ``(B, out_channels, *image_size)`` in [-1, 1].

    Args:
        spatial_dims: 2 or 3.
        image_size: Size of the generated images; each side must be a multiple of ``2^(len(channels) - 1)``.
        out_channels: Image channels.
        latent_dim: Width of the latent vector.
        channels: Feature channels from the start grid up; every stage after the first doubles the resolution.
        num_res_units: Residual units per stage.
        norm: MONAI norm of the stages (``INSTANCE``, ``BATCH``, ``GROUP`` …); per-image norms keep generation
            independent of the batch size.
        conditions: Value conditions embedded and concatenated to ``z``.
        condition_dim: Width of the condition embedding.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        image_size: Sequence[int] = (64, 64),
        out_channels: int = 1,
        latent_dim: int = 128,
        channels: Sequence[int] = (256, 128, 64, 32),
        num_res_units: int = 1,
        norm: str = "INSTANCE",
        conditions: Sequence[ConditionSpec] = (),
        condition_dim: int = 64,
    ) -> None:
        super().__init__()
        self.config = class_config(self, {k: v for k, v in locals().items() if k not in ("self", "__class__")})
        if spatial_dims not in (2, 3) or len(image_size) != spatial_dims:
            raise InputError("image_size", f"expected {spatial_dims} sides for spatial_dims {spatial_dims}")
        if len(channels) < 2:
            raise InputError("channels", "expected at least two stages")
        factor = 2 ** (len(channels) - 1)
        if any(s % factor for s in image_size):
            raise InputError("image_size", f"{list(image_size)} must be a multiple of 2^(stages - 1) = {factor}")
        self.spatial_dims = spatial_dims
        self.in_channels = out_channels
        self.latent_dim = latent_dim
        self.image_size = tuple(int(s) for s in image_size)
        self.conditions = [c if isinstance(c, ConditionSpec) else ConditionSpec(**c) for c in conditions]  # type: ignore[arg-type]
        self.embed = ConditionEmbedding(self.conditions, condition_dim) if self.conditions else None
        start = tuple(s // factor for s in self.image_size)
        self.body = Generator(
            latent_shape=(latent_dim + (condition_dim if self.conditions else 0),),
            start_shape=(channels[0], *start),
            channels=(*channels[1:], out_channels),
            strides=(2,) * (len(channels) - 1) + (1,),
            num_res_units=num_res_units,
            norm=norm,
        )

    @property
    def condition_names(self) -> list[str]:
        """Names of the value conditions, in column order."""
        return [c.name for c in self.conditions]

    def forward(self, z: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        """Images ``(B, out_channels, *image_size)`` in [-1, 1] from ``z`` ``(B, latent_dim)``."""
        if self.embed is not None:
            values = cond.values if cond is not None else None
            if values is None:
                values = torch.full((z.shape[0], len(self.conditions)), float("nan"), device=z.device)
            z = torch.cat([z, self.embed(values.to(z.device)).to(z.dtype)], dim=1)
        return torch.tanh(self.body(z))


class PatchCritic(nn.Module):
    """PatchGAN discriminator: images ``(B, C, *spatial)`` → patch logits ``(B, 1, *patches)``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: Image channels.
        channels: Feature channels of the first layer (doubled at each following layer, as MONAI does).
        num_layers: Strided layers.
        norm: MONAI norm (``INSTANCE`` by default: batch norm breaks gradient penalties).
        spectral_norm: Spectral normalisation of every convolution (Miyato et al. 2018).
        conditions: Value conditions, used through a projection term.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        channels: int = 64,
        num_layers: int = 3,
        norm: str = "INSTANCE",
        spectral_norm: bool = False,
        conditions: Sequence[ConditionSpec] = (),
    ) -> None:
        super().__init__()
        self.config = class_config(self, {k: v for k, v in locals().items() if k not in ("self", "__class__")})
        self.spatial_dims = spatial_dims
        self.body = PatchDiscriminator(
            spatial_dims=spatial_dims, channels=channels, in_channels=in_channels, num_layers_d=num_layers, norm=norm
        )
        if spectral_norm:
            for module in list(self.body.modules()):
                if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                    nn.utils.parametrizations.spectral_norm(module)
        self.conditions = [c if isinstance(c, ConditionSpec) else ConditionSpec(**c) for c in conditions]  # type: ignore[arg-type]
        features = self._feature_channels(in_channels)
        self.project = ConditionEmbedding(self.conditions, features) if self.conditions else None

    def _feature_channels(self, in_channels: int) -> int:
        """Channels of the features before the last convolution (one dry run on a small input)."""
        side = 2 ** (len(self.body) + 2)
        with torch.no_grad():
            outs = self.body(torch.zeros(1, in_channels, *([side] * self.spatial_dims)))
        return int(outs[-2].shape[1])

    def forward(self, x: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        """Patch logits ``(B, 1, *patches)``; with conditions, plus the projection of their embedding."""
        outs: Any = self.body(x)
        logits: torch.Tensor = outs[-1]
        if self.project is not None:
            values = cond.values if cond is not None else None
            if values is None:
                values = torch.full((x.shape[0], len(self.conditions)), float("nan"), device=x.device)
            pooled = outs[-2].mean(dim=tuple(range(2, outs[-2].ndim)))
            projection = (self.project(values.to(x.device)).to(pooled.dtype) * pooled).sum(dim=1)
            logits = logits + projection.view(-1, *([1] * (logits.ndim - 1)))
        return logits
