"""``LatentFlowModel``: flow matching in the latent space of a frozen autoencoder (the whole family is this file)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from medgen.models.defaults import SamplingDefaults
from medgen.models.flow import FlowModel
from medgen.models.latent import DECODE_WINDOW, LatentSpace
from medgen.nets.protocol import GenerativeNet
from medgen.nets.vqvae import FirstStage
from medgen.objectives.flow import FlowObjective


class LatentFlowModel(LatentSpace, FlowModel):
    """Latent flow-matching model (rectified flow on scaled autoencoder latents; samples are decoded).

    Args:
        net: Velocity network on latents (``in_channels`` = the autoencoder's ``latent_channels``).
        autoencoder: The (KL or VQ) autoencoder's architecture; its weights come from ``--pretrained.autoencoder_from``.
        latent_scale: Multiplier of the latents (None: ``1 / std`` of the first training batch's latents).
        decode_window: Latents with a side above this many voxels are decoded in overlapping windows of this side
            (memory-bounded, same images; None: always whole).
        objective: Time sampling and resolution shift (the shift follows the latent size).
        sampling: Default ODE solver, steps and guidance.
        sample_size: Image size of the samples (None: from the data module).
    """

    family = "latent-flow"

    def __init__(
        self,
        net: GenerativeNet,
        autoencoder: FirstStage,
        latent_scale: float | None = None,
        objective: FlowObjective | None = None,
        sampling: SamplingDefaults | None = None,
        sample_size: Collection[int] | None = None,
        decode_window: int | None = DECODE_WINDOW,
    ) -> None:
        FlowModel.__init__(self, net, objective, sampling, sample_size)
        self._init_latent(net, autoencoder, latent_scale, decode_window)

    def init_args(self) -> dict[str, Any]:
        """The flow model's arguments with the autoencoder and the scale."""
        return {**FlowModel.init_args(self), **self.latent_args()}
