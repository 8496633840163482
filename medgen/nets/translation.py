"""Image-to-image networks: :class:`TranslationUNet`, the U-Net generator of pix2pix (Isola et al. 2017), 2D or 3D.

The network is MONAI's ``UNet`` (residual units, strided convolutions down, transposed convolutions up, skip
connections) with a ``tanh`` output, so translated images are in [-1, 1] like every medgen image. Inputs whose sides
are not multiples of the total stride are padded (edge values repeated) and the output cropped back, so a trained
network translates images of any size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from monai.networks.nets import UNet
from torch import nn

from medgen.config import class_config
from medgen.errors import InputError


class TranslationUNet(nn.Module):
    """U-Net translator: images ``(B, in_channels, *spatial)`` → images ``(B, out_channels, *spatial)`` in [-1, 1].

    Args:
        spatial_dims: 2 or 3.
        in_channels: Channels of the input (source) images.
        out_channels: Channels of the output (target) images.
        channels: Feature channels of each level, from the finest down.
        strides: Down-sampling stride between consecutive levels (``len(channels) - 1`` of them).
        num_res_units: Residual units per convolution block (0: plain convolutions).
        norm: MONAI norm (``INSTANCE`` by default: per-image statistics, as pix2pix uses at batch size 1); None: no
            normalisation, so the output at a voxel does not depend on statistics of the whole image (translation
            across fields of view that differ from training's, e.g. mostly background vs a tight crop).
        dropout: Dropout probability in every block (pix2pix's noise source; 0: deterministic).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: Sequence[int] = (64, 128, 256, 512),
        strides: Sequence[int] = (2, 2, 2),
        num_res_units: int = 2,
        norm: str | None = "INSTANCE",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.config = class_config(self, {k: v for k, v in locals().items() if k not in ("self", "__class__")})
        if spatial_dims not in (2, 3):
            raise InputError("net.spatial_dims", f"expected 2 or 3, got {spatial_dims}")
        if len(channels) < 2 or len(strides) != len(channels) - 1:
            raise InputError(
                "net.strides", f"expected {max(len(channels) - 1, 1)} strides for {len(channels)} channel levels"
            )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.multiple = math.prod(int(s) for s in strides)
        self.body = UNet(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=tuple(channels),
            strides=tuple(strides),
            num_res_units=num_res_units,
            norm=cast(Any, norm),  # MONAI's ADN takes None (no norm layer); its annotation leaves it out
            dropout=dropout,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *spatial)`` → ``(B, out_channels, *spatial)`` in [-1, 1] (any spatial size)."""
        spatial = x.shape[2:]
        extra = [(-n) % self.multiple for n in spatial]
        if any(extra):
            pad = [p for e in reversed(extra) for p in (0, e)]  # F.pad lists the last dimension first
            x = F.pad(x, pad, mode="replicate")
        out = torch.tanh(self.body(x))
        for dim, n in enumerate(spatial, start=2):
            out = out.narrow(dim, 0, n)
        return out
