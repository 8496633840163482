"""medgen: generative models of medical images on MONAI, diffusers and Lightning."""

__version__ = "0.1.0"

__all__ = ["__version__"]
