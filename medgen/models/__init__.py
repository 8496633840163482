"""Generative models as plain ``nn.Module`` objects: train with ``loss``, draw with ``sample``, no Lightning.

Each family is one class owning its network, objective, sampling defaults and conditions:

- :class:`DiffusionModel` / :class:`LatentDiffusionModel`: DDPM-family diffusion (any diffusers scheduler);
- :class:`FlowModel` / :class:`LatentFlowModel`: rectified flow matching (Euler, Heun, midpoint);
- :class:`GANModel`: a generator drawing each image in one forward pass (trained adversarially);
- :class:`Autoencoder`: the KL autoencoder latent families work in.

``Model.from_pretrained(folder_or_name)`` loads an exported model, ``model.save_pretrained(folder)`` writes one.
"""

import medgen.nets.controlnet  # noqa: F401  (imported so the CLI lists medgen's networks for ``net``)
import medgen.nets.gan  # noqa: F401
import medgen.nets.unet  # noqa: F401
from medgen.models.autoencoder import Autoencoder
from medgen.models.base import GenerativeModel, TrainableModel
from medgen.models.defaults import SamplingDefaults
from medgen.models.diffusion import DiffusionModel
from medgen.models.flow import FlowModel
from medgen.models.gan import GANModel
from medgen.models.latent import LatentDiffusionModel
from medgen.models.latent_flow import LatentFlowModel

__all__ = [
    "Autoencoder",
    "DiffusionModel",
    "FlowModel",
    "GANModel",
    "GenerativeModel",
    "LatentDiffusionModel",
    "LatentFlowModel",
    "SamplingDefaults",
    "TrainableModel",
]
