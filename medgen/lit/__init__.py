"""Lightning modules: one per objective family, with the network and objective injected."""

from medgen.lit.diffusion import DiffusionModule
from medgen.lit.flow import FlowMatchingModule

__all__ = ["DiffusionModule", "FlowMatchingModule"]
