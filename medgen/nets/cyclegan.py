"""CycleGAN's ResNet generator (Johnson et al. 2016, as used by Zhu et al. 2017), 2D or 3D, over MONAI blocks.

``c7s1-C0, d-C1 … d-Ck, R-Ck × num_res_blocks, u-Ck-1 … u-C0, c7s1-out, tanh``: a 7-wide convolution, stride-2
down-sampling convolutions, residual units (MONAI ``ResidualUnit``) at the lowest resolution, then nearest-neighbour
up-sampling with a convolution per stage (instead of transposed convolutions: no checkerboard artefacts) and a
``tanh`` output, so images stay in medgen's [-1, 1]. Written here because MONAI ships no image-to-image ResNet
generator; each block is MONAI's ``Convolution``/``ResidualUnit``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

from medgen.config import class_config
from medgen.errors import InputError


class ResnetTranslator(nn.Module):
    """Image → image of the same grid: ``(B, in_channels, *spatial)`` → ``(B, out_channels, *spatial)`` in [-1, 1].

    Args:
        spatial_dims: 2 or 3.
        in_channels: Input image channels.
        out_channels: Output image channels.
        channels: Feature channels per resolution (full resolution first); each later entry halves the grid, so
            each side of the input must be a multiple of ``2^(len(channels) - 1)``.
        num_res_blocks: Residual units at the lowest resolution (Zhu et al.: 9 at 256², 6 at 128²).
        norm: MONAI norm (``INSTANCE`` as in Zhu et al.: per-image, so outputs do not depend on the batch); None:
            no normalisation (each output voxel then depends on its neighbourhood only, not on whole-image
            statistics).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: Sequence[int] = (64, 128, 256),
        num_res_blocks: int = 9,
        norm: str | None = "INSTANCE",
    ) -> None:
        super().__init__()
        self.config = class_config(self, {k: v for k, v in locals().items() if k not in ("self", "__class__")})
        if spatial_dims not in (2, 3):
            raise InputError("spatial_dims", f"expected 2 or 3, got {spatial_dims}")
        if not channels or num_res_blocks < 0:
            raise InputError("channels", "expected at least one channel width and num_res_blocks >= 0")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.factor = 2 ** (len(channels) - 1)
        widths = [int(c) for c in channels]

        def conv(c_in: int, c_out: int, kernel: int, stride: int = 1) -> Convolution:
            return Convolution(spatial_dims, c_in, c_out, strides=stride, kernel_size=kernel, norm=norm, act="RELU")

        layers: list[nn.Module] = [conv(in_channels, widths[0], 7)]
        layers += [conv(a, b, 3, stride=2) for a, b in zip(widths, widths[1:], strict=False)]
        layers += [
            ResidualUnit(spatial_dims, widths[-1], widths[-1], kernel_size=3, subunits=2, norm=norm, act="RELU")
            for _ in range(num_res_blocks)
        ]
        for a, b in zip(widths[::-1], widths[-2::-1], strict=False):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), conv(a, b, 3)]
        layers += [Convolution(spatial_dims, widths[0], out_channels, kernel_size=7, conv_only=True), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translated images ``(B, out_channels, *spatial)`` in [-1, 1] from ``x`` ``(B, in_channels, *spatial)``.

        Raises:
            InputError: A side of ``x`` is not a multiple of ``2^(len(channels) - 1)``.
        """
        if any(int(s) % self.factor for s in x.shape[2:]):
            raise InputError("image_size", f"each side must be a multiple of {self.factor}, got {list(x.shape[2:])}")
        return self.body(x)
