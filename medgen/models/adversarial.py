"""What a model trained against discriminators provides: one "play" per step (no Lightning here).

:class:`~medgen.lit.adversarial.AdversarialTask` trains every model with this mixin the same way: it asks the
model for a :class:`Play` (the pairs of real and generated images each discriminator judges, plus the model's own
supervised loss terms), updates the discriminators on the pairs, then updates the model on its supervised loss
plus the adversarial loss of its generated images. The families differ only in what they put in the play:

- :class:`~medgen.models.gan.GANModel`: one duel, real images vs images drawn from noise; no supervised terms.
- :class:`~medgen.models.autoencoder.Autoencoder`: one duel, real images vs their reconstructions; the
  reconstruction terms (L1, SSIM, KL) as supervised terms.
- Translation models (pix2pix, CycleGAN; :mod:`medgen.models.translation`): one duel per output domain, with
  the L1, cycle and identity terms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from medgen.nets.condition import Condition

#: Name of the discriminator of a model with a single one.
IMAGE_CRITIC = "image"


@dataclass
class Duel:
    """Real and generated images for one discriminator.

    Attributes:
        critic: Which discriminator judges them (a key of :attr:`AdversarialModel.critics`).
        real: ``(B, C, *spatial)`` real images, as the discriminator sees them (for a conditional discriminator,
            with the conditioning channels already concatenated).
        fake: ``(B', C, *spatial)`` generated images, the same way; they carry the generator's graph when the play
            was made with gradients.
        cond: Value conditions the discriminator projects (None: none).
    """

    critic: str
    real: torch.Tensor
    fake: torch.Tensor
    cond: Condition | None = None


@dataclass
class Play:
    """Everything one training step needs from the model.

    Attributes:
        duels: The pairs the discriminators judge (one or more).
        terms: Supervised loss terms (scalars). ``terms["loss"]``, when present, is their weighted total and is
            added to the generator's adversarial loss; every term is logged as ``train/<name>``.
    """

    duels: list[Duel]
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


class AdversarialModel:
    """Mixin of models trained by :class:`~medgen.lit.adversarial.AdversarialTask`.

    Attributes:
        critics: Names of the discriminators the model needs (the task gives each its own copy of the configured
            discriminator).
    """

    critics: ClassVar[tuple[str, ...]] = (IMAGE_CRITIC,)
    task_class_path: ClassVar[str] = "medgen.lit.AdversarialTask"

    def play(self, batch: dict[str, Any], cond: Condition | None, generator: torch.Generator) -> Play:
        """The duels and supervised terms of one training step, noise from ``generator``.

        Args:
            batch: A data-module batch (``image`` ``(B, C, *spatial)``, and ``source``/``cond``/``mask`` as present).
            cond: The batch's conditions as the model reads them.
            generator: The step's seeded generator (latents, posterior draws).
        """
        raise NotImplementedError
