"""KL-regularised autoencoder (Rombach et al. 2022, arXiv 2112.10752, §3) for latent generative models.

A thin layer over MONAI's ``AutoencoderKL`` (one class for 2D and 3D). It subclasses the MONAI network so
its state dict has MONAI's names: model-zoo ``AutoencoderKL`` weights load by architecture arguments. What
it adds: the constructor is the config (``self.config``), the posterior is drawn with a caller's generator
(MONAI's ``sampling`` uses the global RNG, which breaks per-sample seeding), and the latent grid of an image
size is computed and checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from monai.networks.nets import AutoencoderKL

from medgen.config import class_config
from medgen.errors import InputError
from medgen.nets.levels import check_levels


@dataclass
class Posterior:
    """The encoder's diagonal Gaussian ``q(z | x)``.

    Attributes:
        mean: ``(B, latent_channels, *latent_size)``.
        std: ``(B, latent_channels, *latent_size)``, positive.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """``mean + std · ε`` with ``ε`` drawn from ``generator``; same shape as ``mean``."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def kl(self) -> torch.Tensor:
        """``KL(q ‖ N(0, I))`` per sample, summed over latent elements: ``(B,)``."""
        var = self.std.pow(2)
        return 0.5 * (self.mean.pow(2) + var - torch.log(var.clamp_min(1e-12)) - 1).flatten(1).sum(1)


class KLAutoencoder(AutoencoderKL):
    """Encoder-decoder with a ``latent_channels``-channel latent at ``1 / 2^(levels-1)`` of the image size.

    Args:
        spatial_dims: 2 or 3.
        in_channels: Image channels.
        out_channels: Reconstructed channels (usually ``in_channels``).
        channels: Feature channels per level; each level after the first halves the resolution.
        attention_levels: Self-attention per level (keep it off at high resolutions, and in 3D).
        num_res_blocks: Residual blocks per level.
        latent_channels: Channels of the latent.
        norm_num_groups: GroupNorm groups (must divide every entry of ``channels``).
        with_nonlocal_attn: Attention in the encoder's and decoder's middle blocks.
        use_flash_attention: ``scaled_dot_product_attention`` kernels.
        use_checkpoint: Gradient checkpointing (less memory, slower).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: Sequence[int] = (64, 128, 256),
        attention_levels: Sequence[bool] = (False, False, False),
        num_res_blocks: int = 2,
        latent_channels: int = 4,
        norm_num_groups: int = 32,
        with_nonlocal_attn: bool = True,
        use_flash_attention: bool = False,
        use_checkpoint: bool = False,
    ) -> None:
        config = class_config(self, {k: v for k, v in locals().items() if k not in ("self", "__class__")})
        check_levels("model.autoencoder", spatial_dims, channels, attention_levels, norm_num_groups)
        super().__init__(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            num_res_blocks=[num_res_blocks] * len(channels),
            channels=tuple(channels),
            attention_levels=tuple(attention_levels),
            latent_channels=latent_channels,
            norm_num_groups=norm_num_groups,
            with_encoder_nonlocal_attn=with_nonlocal_attn,
            with_decoder_nonlocal_attn=with_nonlocal_attn,
            use_checkpoint=use_checkpoint,
            use_flash_attention=use_flash_attention,
        )
        self.config = config
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.factor = 2 ** (len(channels) - 1)

    def latent_size(self, image_size: Sequence[int]) -> tuple[int, ...]:
        """Spatial size of the latent of an image of ``image_size``.

        Raises:
            InputError: A side is not a multiple of the downsampling factor.
        """
        if any(s % self.factor for s in image_size):
            raise InputError(
                "data.image_size",
                f"{list(image_size)} must be a multiple of the autoencoder's downsampling factor {self.factor}",
            )
        return tuple(s // self.factor for s in image_size)

    def posterior(self, x: torch.Tensor) -> Posterior:
        """``q(z | x)`` of images ``(B, C, *spatial)``."""
        mean, std = self.encode(x)
        return Posterior(mean, std)
