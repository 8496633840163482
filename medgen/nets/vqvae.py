"""Vector-quantised autoencoder (van den Oord et al. 2017, arXiv 1711.00937): a VQ first stage for latent models.

A thin layer over MONAI's ``VQVAE`` (one class for 2D and 3D; its state-dict names, so MONAI ``VQVAE`` weights
load by architecture arguments) with the interface of :class:`~medgen.nets.autoencoder.KLAutoencoder` that the
``Autoencoder`` model and the latent families use:

- ``posterior(x)`` is the encoder's output before quantisation, as a point mass (``std`` = 0). Latent models
  are trained on it and ``decode`` quantises before decoding: the quantisation layer belongs to the decoder, the
  VQ-regularised LDM of Rombach et al. (arXiv 2112.10752, §3 and App. G).
- ``quantize(z)`` returns the straight-through quantised latent and its terms: the commitment loss (already
  multiplied by ``commitment_cost``) and the codebook perplexity. The codebook itself is learned by MONAI's
  ``EMAQuantizer`` (exponential moving averages of the assigned encodings, no gradient), so there is no separate
  codebook loss term. The moving averages move only in a training-mode pass *with* gradients, so the
  discriminator pass of adversarial training (run without gradients) does not update the codebook a second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from monai.networks.nets import VQVAE

from medgen.config import class_config
from medgen.errors import InputError
from medgen.nets.autoencoder import KLAutoencoder, Posterior


@dataclass
class Quantized:
    """A straight-through quantised latent and its training terms.

    Attributes:
        latent: ``(B, embedding_dim, *latent_size)`` codebook vectors (gradients pass to the encoder's output).
        commitment: Scalar ``commitment_cost · MSE(sg[e], z)``.
        perplexity: Scalar ``exp`` of the entropy of the codebook usage in the batch (1 … ``num_embeddings``).
    """

    latent: torch.Tensor
    commitment: torch.Tensor
    perplexity: torch.Tensor


class VQAutoencoder(VQVAE):
    """Encoder, EMA codebook and decoder; the latent is ``embedding_dim`` channels at ``1 / 2^len(channels)``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: Image channels.
        out_channels: Reconstructed channels (usually ``in_channels``).
        channels: Feature channels per level; every level halves the resolution (stride-2 convolutions of kernel 4,
            transposed in the decoder: MONAI's defaults).
        num_res_layers: Residual units per level.
        num_res_channels: Channels inside the residual units, per level (None: ``channels``).
        num_embeddings: Codebook size.
        embedding_dim: Channels of the latent (and of each codebook vector).
        commitment_cost: Weight of the commitment loss.
        decay: Decay of the codebook's moving averages (MONAI's default 0.5 forgets fast; ~0.99 is the usual choice).
        use_checkpointing: Gradient checkpointing of the encoder and decoder (less memory, slower).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: Sequence[int] = (64, 128),
        num_res_layers: int = 2,
        num_res_channels: Sequence[int] | None = None,
        num_embeddings: int = 256,
        embedding_dim: int = 4,
        commitment_cost: float = 0.25,
        decay: float = 0.99,
        use_checkpointing: bool = False,
    ) -> None:
        config = class_config(self, {k: v for k, v in locals().items() if k not in ("self", "__class__")})
        if spatial_dims not in (2, 3):
            raise InputError("model.net.spatial_dims", f"expected 2 or 3, got {spatial_dims}")
        res_channels = tuple(channels if num_res_channels is None else num_res_channels)
        if len(res_channels) != len(channels):
            raise InputError("model.net.num_res_channels", f"needs one entry per level ({len(channels)})")
        if not 0.0 < decay < 1.0:
            raise InputError("model.net.decay", f"expected a fraction in (0, 1), got {decay}")
        super().__init__(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=tuple(channels),
            num_res_layers=num_res_layers,
            num_res_channels=res_channels,
            downsample_parameters=((2, 4, 1, 1),) * len(channels),
            upsample_parameters=((2, 4, 1, 1, 0),) * len(channels),
            num_embeddings=num_embeddings,
            embedding_dim=embedding_dim,
            commitment_cost=commitment_cost,
            decay=decay,
            use_checkpointing=use_checkpointing,
        )
        self.config = config
        self.latent_channels = embedding_dim
        self.factor = 2 ** len(channels)

    def latent_size(self, image_size: Sequence[int]) -> tuple[int, ...]:
        """Spatial size of the latent of an image of ``image_size`` (InputError unless a multiple of ``factor``)."""
        return KLAutoencoder.latent_size(self, image_size)  # type: ignore[arg-type]  # it reads only ``factor``

    def posterior(self, x: torch.Tensor) -> Posterior:
        """The unquantised encoding ``(B, embedding_dim, *latent_size)`` of images, as a point mass (std 0)."""
        z = self.encode(x)
        return Posterior(z, torch.zeros_like(z))

    def quantize_terms(self, z: torch.Tensor) -> Quantized:
        """Nearest codebook vectors of ``z`` ``(B, embedding_dim, *latent_size)``, straight-through, with terms."""
        quantizer = self.quantizer.quantizer
        update = quantizer.training and torch.is_grad_enabled()
        quantizer.train(update)
        try:
            commitment, latent = self.quantizer(z)
        finally:
            quantizer.train(self.training)
        return Quantized(latent, commitment, self.quantizer.perplexity)

    def decode(self, quantizations: torch.Tensor) -> torch.Tensor:
        """Images ``(B, out_channels, *spatial)`` of encodings ``(B, embedding_dim, *latent_size)``.

        Encodings are quantised first (idempotent on codebook vectors): latent models sample unquantised encodings.
        """
        return super().decode(self.quantize_terms(quantizations).latent)

    def reconstruct_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, Quantized]:
        """Reconstructions ``(B, out_channels, *spatial)`` of images through the straight-through codebook."""
        quantized = self.quantize_terms(self.encode(x))
        return super().decode(quantized.latent), quantized


#: A first stage of the latent families: a KL or a VQ autoencoder.
FirstStage = KLAutoencoder | VQAutoencoder
