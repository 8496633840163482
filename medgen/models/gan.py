"""``GANModel``: a generator that draws each image in one forward pass (2D or 3D, conditional or not).

The discriminator is not part of the model: it only exists to train the generator, so it lives in the task
(:class:`~medgen.lit.adversarial.AdversarialTask`), and exports, model cards and ``medgen generate`` carry the
generator alone. Latents are drawn per sample from its own generator, so on the CPU a sample does not depend on the
batch it is drawn in.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict
from typing import Any

import torch

from medgen.errors import InputError, MedgenError
from medgen.models.adversarial import AdversarialModel, Duel, Play
from medgen.models.base import GenerativeModel
from medgen.models.defaults import SamplingDefaults
from medgen.nets.condition import Condition
from medgen.nets.protocol import GeneratorNet
from medgen.sampling.common import Generators

#: The one sampling method of a GAN.
FORWARD = "forward"


class GANModel(AdversarialModel, GenerativeModel):
    """Generative adversarial network's generator, with the sampling vocabulary of every medgen family.

    Args:
        net: The generator ``net(z, cond)`` (:class:`~medgen.nets.protocol.GeneratorNet`).
        sampling: ``method`` is ``forward`` (one pass; ``num_steps`` and ``guidance`` do not apply).
        sample_size: Image size (default and only allowed value: the generator's ``image_size``).
    """

    family = "gan"
    net: GeneratorNet

    def __init__(
        self,
        net: GeneratorNet,
        sampling: SamplingDefaults | None = None,
        sample_size: Collection[int] | None = None,
    ) -> None:
        super().__init__(net, sampling or SamplingDefaults(FORWARD, 1, 1.0), sample_size or net.image_size)
        if tuple(self.image_size or ()) != tuple(net.image_size):
            raise InputError(
                "sample_size", f"a GAN generator draws {list(net.image_size)}, not {list(sample_size or [])}"
            )
        _check_method(self.sampling.method)

    def init_args(self) -> dict[str, Any]:
        """The generator and the sampling defaults."""
        return {"net": self.net.config, "sampling": asdict(self.sampling)}

    def loss_terms(
        self, x0: torch.Tensor, cond: Condition | None, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """Not a single loss: a GAN trains against a discriminator."""
        raise MedgenError("a GAN trains with medgen.lit.AdversarialTask (generator and discriminator losses)")

    def play(self, batch: dict[str, Any], cond: Condition | None, generator: torch.Generator) -> Play:
        """Real images against as many drawn from fresh latents (one duel, no supervised terms)."""
        x = batch["image"]
        return Play([Duel("image", x, self.net(self.latents(x.shape[0], generator), cond), cond)])

    def latents(self, num: int, generator: Generators) -> torch.Tensor:
        """``(num, latent_dim)`` standard-normal latents: row i from ``generator[i]`` when one is given per sample."""
        dim = self.net.latent_dim
        if isinstance(generator, list):
            if len(generator) != num:
                raise InputError("generator", f"expected {num} generators (one per sample), got {len(generator)}")
            rows = [torch.randn(1, dim, generator=g, device=g.device) for g in generator]
            return torch.cat([r.to(self.device) for r in rows])
        device = generator.device if generator is not None else self.device
        return torch.randn(num, dim, generator=generator, device=device).to(self.device)

    def draw(
        self,
        shape: tuple[int, ...],
        cond: Condition | None,
        generator: Generators,
        sampling: SamplingDefaults,
        progress: bool,
    ) -> torch.Tensor:
        """One generator pass on fresh latents: ``(B, C, *image_size)``."""
        _check_method(sampling.method)
        return self.net(self.latents(shape[0], generator), cond)


def _check_method(method: str) -> None:
    if method != FORWARD:
        raise InputError("method", f"a GAN samples in one forward pass (method '{FORWARD}'), not '{method}'")
