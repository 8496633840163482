"""What an image-to-image model is: it maps an input image to an output image of the same grid (no Lightning).

Translation models (pix2pix, CycleGAN) are trained by :class:`~medgen.lit.adversarial.AdversarialTask` and used by
``medgen translate``. They do not draw new images from noise, so ``medgen generate`` refuses them (and
``medgen translate`` refuses models that only generate).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from medgen.errors import InputError
from medgen.models.adversarial import AdversarialModel
from medgen.models.base import TrainableModel


class TranslationModel(AdversarialModel, TrainableModel):
    """Base of image-to-image models.

    Attributes:
        directions: The directions :meth:`translate` accepts (``("a2b",)`` for paired models, ``("a2b", "b2a")``
            for CycleGAN); the first is the default.
    """

    directions: ClassVar[tuple[str, ...]] = ("a2b",)

    def check_direction(self, direction: str | None) -> str:
        """``direction`` (default: the first of :attr:`directions`), checked.

        Raises:
            InputError: The model does not translate in that direction.
        """
        chosen = direction or self.directions[0]
        if chosen not in self.directions:
            raise InputError(
                "--direction", f"{type(self).__name__} translates {', '.join(self.directions)}, not '{chosen}'"
            )
        return chosen

    def translate(self, images: torch.Tensor, direction: str | None = None) -> torch.Tensor:
        """Translated images ``(B, C_out, *spatial)`` from inputs ``(B, C_in, *spatial)`` in the data's range.

        Runs without gradients in eval mode; the spatial size is any size the network accepts.
        """
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Base metadata with the directions."""
        return {**super().describe(), "directions": list(self.directions)}
