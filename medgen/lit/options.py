"""Option groups of the training tasks, nested in YAML under ``model.init_args`` (jsonargparse reads dataclasses).

.. code-block:: yaml

    model:
      class_path: medgen.lit.GenerativeTask
      init_args:
        model: {class_path: medgen.models.DiffusionModel, init_args: {...}}
        optimization: {lr: 1.0e-4, warmup_steps: 1000, schedule: cosine}
        conditioning: {drop_prob: 0.1, image_key: mask}
        pictures: {num_samples: 16, every_n_epochs: 1}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from medgen.errors import InputError

Schedule = Literal["constant", "cosine", "linear"]


@dataclass(frozen=True)
class Optimization:
    """AdamW with a linear warm-up, then a constant, cosine or linear learning rate, stepped every training step.

    Attributes:
        lr: Peak learning rate (after warm-up).
        weight_decay: AdamW's decoupled weight decay.
        betas: AdamW's moment coefficients.
        eps: AdamW's epsilon.
        warmup_steps: Steps of linear warm-up from ``lr / warmup_steps`` to ``lr``.
        schedule: After warm-up: ``constant``, or ``cosine`` / ``linear`` decay to ``min_lr_ratio · lr`` at the
            trainer's ``max_steps``.
        min_lr_ratio: Final learning rate of a decaying schedule, as a fraction of ``lr``.
    """

    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 500
    schedule: Schedule = "constant"
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise InputError("optimization.lr", f"expected a positive learning rate, got {self.lr}")
        if self.warmup_steps < 0:
            raise InputError("optimization.warmup_steps", f"expected >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise InputError("optimization.min_lr_ratio", f"expected a fraction in [0, 1], got {self.min_lr_ratio}")

    def factor(self, step: int, total_steps: int | None) -> float:
        """Multiplier of ``lr`` at optimizer step ``step`` (0-based) of ``total_steps`` (None: unknown)."""
        warmup = max(1, self.warmup_steps)
        if step < warmup or self.schedule == "constant" or not total_steps:
            return min(1.0, (step + 1) / warmup)
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if self.schedule == "cosine" else 1 - progress
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * shape

    def describe(self) -> str:
        """One line for the start of training, e.g. ``AdamW lr 1e-04, warm-up 500 steps, then cosine to 0``."""
        after = "constant" if self.schedule == "constant" else f"{self.schedule} decay to {self.min_lr_ratio:g}·lr"
        decay = f"weight decay {self.weight_decay:g}"
        return f"AdamW lr {self.lr:g} ({decay}), warm-up {self.warmup_steps} steps, then {after}"


@dataclass(frozen=True)
class Conditioning:
    """How batches become conditions in training.

    Attributes:
        drop_prob: Probability of dropping a sample's conditions (classifier-free guidance).
        image_key: Batch key of the conditioning image or ControlNet input.
    """

    drop_prob: float = 0.1
    image_key: str = "mask"

    def __post_init__(self) -> None:
        if not 0.0 <= self.drop_prob <= 1.0:
            raise InputError("conditioning.drop_prob", f"expected a probability in [0, 1], got {self.drop_prob}")


@dataclass(frozen=True)
class ValidationPictures:
    """The picture drawn at validation (samples; originals over reconstructions for an autoencoder).

    Attributes:
        num_samples: Images in the picture (0 disables it).
        every_n_epochs: Draw it every n validation epochs.
    """

    num_samples: int = 8
    every_n_epochs: int = 1
