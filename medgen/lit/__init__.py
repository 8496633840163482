"""Lightning modules: one per objective family, with the network and objective injected."""

from medgen.lit.autoencoder import AutoencoderModule
from medgen.lit.diffusion import DiffusionModule
from medgen.lit.flow import FlowMatchingModule
from medgen.lit.latent import LatentDiffusionModule

__all__ = ["AutoencoderModule", "DiffusionModule", "FlowMatchingModule", "LatentDiffusionModule"]
