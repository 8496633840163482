"""``Pix2PixModel``: paired image-to-image translation (Isola et al. 2017), 2D or 3D (no Lightning here).

A generator ``G`` (e.g. :class:`~medgen.nets.translation.TranslationUNet`) maps a source image to its target. It
trains in :class:`~medgen.lit.adversarial.AdversarialTask` against a *conditional* PatchGAN discriminator, which
judges pairs: real = ``cat(source, target)``, fake = ``cat(source, G(source))`` along the channels (so the
discriminator's ``in_channels`` is source channels + target channels), plus an L1 term ``l1_weight · |G(source) -
target|`` (100 in the paper) that keeps the output on the target's intensities while the adversarial term keeps it
sharp. Data: a datalist with a ``source`` column (:class:`~medgen.data.datamodule.MedicalImageDataModule`); batches
carry ``source`` and ``image`` (the target). Trained models translate with :meth:`Pix2PixModel.translate` (and
``medgen translate``).
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

import torch
from torch import nn

from medgen.errors import InputError, MedgenError
from medgen.models.adversarial import IMAGE_CRITIC, Duel, Play
from medgen.models.autoencoder import ssim_loss
from medgen.models.translation import TranslationModel
from medgen.nets.condition import Condition

#: Value range of medgen images ([-1, 1]) for PSNR and SSIM.
DATA_RANGE = 2.0


class Pix2PixModel(TranslationModel):
    """Paired translation: ``G(source) ≈ target``, trained with L1 plus a conditional PatchGAN.

    Args:
        net: The generator ``net(source) -> target`` ``(B, C_in, *spatial) -> (B, C_out, *spatial)`` in [-1, 1]
            (a :class:`~medgen.nets.translation.TranslationUNet`; needs ``spatial_dims`` and ``config``).
        l1_weight: Weight of the L1 term in the generator's supervised loss (``terms["loss"]``).
        sample_size: Image size of the training data (set from the data module when None).
    """

    family = "pix2pix"
    directions: ClassVar[tuple[str, ...]] = ("a2b",)
    critics: ClassVar[tuple[str, ...]] = (IMAGE_CRITIC,)
    #: Datalist columns the model trains on (checked by the data module before training).
    data_columns: ClassVar[tuple[str, ...]] = ("source",)

    def __init__(self, net: nn.Module, l1_weight: float = 100.0, sample_size: Any = None) -> None:
        super().__init__(sample_size)
        if l1_weight < 0:
            raise InputError("l1_weight", f"expected 0 or more, got {l1_weight}")
        self.net = net
        self.l1_weight = float(l1_weight)

    @property
    def spatial_dims(self) -> int:
        """2 or 3 (the generator's)."""
        return int(getattr(self.net, "spatial_dims", 2))

    def init_args(self) -> dict[str, Any]:
        """The generator's class config and the L1 weight."""
        return {"net": cast(dict[str, Any], self.net.config), "l1_weight": self.l1_weight}

    def loss_terms(
        self, x0: torch.Tensor, cond: Condition | None, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """Not a single loss: pix2pix trains on pairs against a discriminator."""
        raise MedgenError("pix2pix trains with medgen.lit.AdversarialTask on paired data (a 'source' column)")

    def play(self, batch: dict[str, Any], cond: Condition | None, generator: torch.Generator) -> Play:
        """The conditional duel (pairs along channels) and the L1 terms; in eval mode also PSNR and SSIM.

        Args:
            batch: ``source`` ``(B, C_in, *spatial)`` and ``image`` (the target) ``(B, C_out, *spatial)``.
            cond: Unused (pix2pix is conditioned on the source image only).
            generator: Unused (the generator is deterministic).

        Returns:
            One duel, real ``cat(source, target)`` vs fake ``cat(source, G(source))``; terms ``l1`` and ``loss`` (=
            ``l1_weight · l1``), plus ``psnr`` and ``ssim`` of ``G(source)`` vs the target when not training.
        """
        source, target = _source(batch), batch["image"]
        fake = self.net(source)
        l1 = (fake - target).abs().mean()
        terms = {"l1": l1, "loss": self.l1_weight * l1}
        if not self.training:
            terms.update(similarity(fake.detach(), target))
        return Play([Duel(IMAGE_CRITIC, torch.cat([source, target], 1), torch.cat([source, fake], 1))], terms)

    def translate(self, images: torch.Tensor, direction: str | None = None) -> torch.Tensor:
        """Targets ``(B, C_out, *spatial)`` in [-1, 1] for sources ``(B, C_in, *spatial)`` normalised like training's.

        Runs in eval mode without gradients, on the model's device; any spatial size (the U-Net pads and crops).
        """
        self.check_direction(direction)
        with self.eval_mode(), torch.no_grad():
            return self.net(images.to(self.device, torch.float32))

    def preview_batch(
        self, batch: dict[str, Any], cond: Condition | None, num: int, generator: torch.Generator
    ) -> torch.Tensor:
        """Source | translated | target of the first ``num`` pairs.

        Returns:
            2D: ``(N, C, 3·X + 4, Y)``, each tile the three images side by side (2-pixel background gaps). 3D:
            ``(3N, C, *spatial)`` interleaved (source, translated, target of pair 1, then of pair 2 …), so a grid
            of mid-slices shows one image per row.
        """
        source, target = _source(batch)[:num], batch["image"][:num]
        translated = self.translate(source).to(target.device, target.dtype)
        if self.spatial_dims == 3:
            return torch.stack([source, translated, target], 1).flatten(0, 1)
        gap = torch.full_like(target[:, :, :2], -1.0)
        return torch.cat([source, gap, translated, gap, target], 2)


def similarity(fake: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"psnr", "ssim"}`` of translated images against their targets, both in [-1, 1] (batch means).

    Computed here, as the autoencoder's are (:func:`~medgen.models.autoencoder.ssim_loss`: MONAI's SSIM with a
    7-voxel Gaussian window), because models sit below :mod:`medgen.evaluation` in the layering; ``medgen evaluate
    --paired`` gives the reported figures.
    """
    fake, target = fake.float(), target.float()
    mse = ((fake - target) ** 2).flatten(1).mean(dim=1).clamp_min(1e-10)
    return {"psnr": (10 * torch.log10(DATA_RANGE**2 / mse)).mean(), "ssim": 1 - ssim_loss(fake, target)}


def _source(batch: dict[str, Any]) -> torch.Tensor:
    if "source" not in batch:
        raise InputError(
            "data.data_dir", "pix2pix trains on image pairs: the datalist needs a 'source' column (each pair's input)"
        )
    source: torch.Tensor = batch["source"]
    return source
