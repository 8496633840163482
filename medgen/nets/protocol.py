"""The contract between generative models and their networks: ``net(x, t, cond)`` or a generator's ``net(z, cond)``.

Models (:mod:`medgen.models`) read a few attributes off their network to build inputs and conditions; this base
class declares them so that nothing is read by ``getattr`` with a guessed default, and so that the CLI offers
exactly these networks for ``--model.model.net`` (jsonargparse lists the subclasses of the declared type).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medgen.nets.condition import Condition


class ConditionedNet(nn.Module):
    """What every network a generative model drives declares (2D or 3D).

    Attributes:
        spatial_dims: 2 or 3.
        in_channels: Channels of the generated image (or latent), without conditioning channels.
        image_channels: Channels of a conditioning image concatenated to the input (0: none).
        control_channels: Channels of a ControlNet's control image (0: no ControlNet).
        config: ``{"class_path", "init_args"}`` that rebuilds the network (see :mod:`medgen.config`).
    """

    spatial_dims: int
    in_channels: int
    image_channels: int = 0
    control_channels: int = 0
    config: dict[str, Any]

    @property
    def condition_names(self) -> list[str]:
        """Names of the value conditions (class labels, scalars) in column order; empty when unconditional."""
        return []


class GenerativeNet(ConditionedNet):
    """Base of the networks a diffusion or flow model drives: ``net(x, t, cond)``."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        """Prediction ``(B, C_out, *spatial)`` for ``x`` ``(B, in_channels, *spatial)`` at times ``t`` ``(B,)``."""
        raise NotImplementedError


class GeneratorNet(ConditionedNet):
    """Base of GAN generators: ``net(z, cond) -> image`` in one forward pass.

    Attributes:
        latent_dim: Width of the latent vector ``z`` ``(B, latent_dim)``.
        image_size: Spatial size of the generated images.
    """

    latent_dim: int
    image_size: tuple[int, ...]

    def forward(self, z: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        """Images ``(B, in_channels, *image_size)`` in [-1, 1] from latents ``z`` ``(B, latent_dim)``."""
        raise NotImplementedError
