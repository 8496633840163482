"""``Autoencoder``: the first stage of latent models, a KL autoencoder trained on the user's scans.

It is trained like every model (:meth:`~medgen.models.base.TrainableModel.loss`) but does not generate: it
encodes and decodes, and a latent family (:mod:`medgen.models.latent`) generates in its latent space.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict
from typing import Any

import torch
from monai.losses import SSIMLoss
from torch.nn import functional as F

from medgen.models.adversarial import AdversarialModel, Duel, Play
from medgen.models.base import TrainableModel
from medgen.nets.condition import Condition
from medgen.nets.vqvae import FirstStage, VQAutoencoder
from medgen.objectives.perceptual import MedicalNetFeatures, Perceptual, perceptual_distance


class Autoencoder(AdversarialModel, TrainableModel):
    """A :class:`~medgen.nets.autoencoder.KLAutoencoder` with its training loss (2D or 3D, as the net is).

    Loss: ``L1(x̂, x) + ssim_weight · (1 − SSIM(x̂, x)) + kl_weight · KL(q(z|x) ‖ N(0, I)) / B`` with ``x̂``
    decoded from a posterior draw. The SSIM term stands in for the LPIPS perceptual loss of Rombach et al.
    (arXiv 2112.10752), whose ImageNet weights cannot be had offline. Trained by ``medgen.lit.AdversarialTask``
    (:meth:`play`), a patch discriminator adds the adversarial term of Esser et al. (arXiv 2012.09841) after
    ``adversarial.warmup_steps``; trained by ``medgen.lit.GenerativeTask``, the loss is the reconstruction alone.
    With a :class:`~medgen.nets.vqvae.VQAutoencoder` the KL term is replaced by the codebook's commitment loss
    (``x̂`` decoded from the straight-through quantised encoding; the codebook perplexity is logged).

    Args:
        net: The autoencoder (KL or VQ).
        kl_weight: Weight of the KL term (small: the latent should stay informative, ~1e-6 in LDMs; unused by VQ).
        ssim_weight: Weight of the structural term (0 turns it off).
        perceptual: A MedicalNet perceptual term from weights in a local file (:mod:`medgen.objectives.perceptual`;
            None: off). The file is read at the first training step, never at inference, and is not saved.
        sample_size: Image size (None: from the data module).
    """

    family = "autoencoder"
    #: An exported autoencoder fine-tunes on its reconstruction loss alone, without a discriminator to configure.
    task_class_path = "medgen.lit.GenerativeTask"
    net: FirstStage

    def __init__(
        self,
        net: FirstStage,
        kl_weight: float = 1e-6,
        ssim_weight: float = 0.25,
        perceptual: Perceptual | None = None,
        sample_size: Collection[int] | None = None,
    ) -> None:
        super().__init__(sample_size)
        self.net = net
        self.kl_weight = kl_weight
        self.ssim_weight = ssim_weight
        self.perceptual = perceptual
        self._features: list[MedicalNetFeatures] = []  # a list: the frozen trunk is not part of the state dict

    @property
    def spatial_dims(self) -> int:
        """2 or 3, as the network is."""
        return int(self.net.spatial_dims)

    def init_args(self) -> dict[str, Any]:
        """Network and loss weights."""
        return {
            "net": self.net.config,
            "kl_weight": self.kl_weight,
            "ssim_weight": self.ssim_weight,
            "perceptual": None if self.perceptual is None else asdict(self.perceptual),
        }

    def describe(self) -> dict[str, Any]:
        """Metadata with the network, the downsampling factor and the latent channels."""
        return {
            **super().describe(),
            "net": self.net.config,
            "factor": self.net.factor,
            "latent_channels": self.net.latent_channels,
        }

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoded posterior means of images ``(B, C, *spatial)``; same shape."""
        return self.net.decode(self.net.posterior(x).mean)

    def loss_terms(
        self, x0: torch.Tensor, cond: Condition | None, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """Total loss with its ``l1`` and ``kl`` (VQ: ``commitment``, ``perplexity``) terms."""
        return self._terms(x0, *self._reconstruct(x0, generator))

    def play(self, batch: dict[str, Any], cond: Condition | None, generator: torch.Generator) -> Play:
        """Real images against their reconstructions from a posterior draw; the reconstruction terms as supervised."""
        x0 = batch["image"]
        recon, regulariser, logged = self._reconstruct(x0, generator)
        return Play([Duel("image", x0, recon)], self._terms(x0, recon, regulariser, logged))

    def _reconstruct(
        self, x0: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Reconstruction, weighted regulariser and its logged terms: KL of a posterior draw, or VQ commitment."""
        if isinstance(self.net, VQAutoencoder):
            recon, quantized = self.net.reconstruct_terms(x0)
            return recon, quantized.commitment, {"commitment": quantized.commitment, "perplexity": quantized.perplexity}
        posterior = self.net.posterior(x0)
        kl = posterior.kl().mean()
        return self.net.decode(posterior.sample(generator)), self.kl_weight * kl, {"kl": kl}

    def _terms(
        self, x0: torch.Tensor, recon: torch.Tensor, regulariser: torch.Tensor, logged: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        l1 = (recon - x0).abs().mean()
        loss = l1 + regulariser
        terms = {"l1": l1, **logged}
        if self.ssim_weight > 0:
            loss = loss + self.ssim_weight * ssim_loss(recon, x0)
        if self.perceptual is not None:
            terms["perceptual"] = perceptual_distance(self._perceptual_features(recon.device), recon, x0)
            loss = loss + self.perceptual.weight * terms["perceptual"]
        return {"loss": loss, **terms}

    def _perceptual_features(self, device: torch.device) -> MedicalNetFeatures:
        """The frozen MedicalNet trunk on ``device``, read from the weights file on first use."""
        if not self._features:
            assert self.perceptual is not None
            self._features.append(MedicalNetFeatures(self.perceptual.weights))
        self._features[0].to(device)
        return self._features[0]

    def validation_metrics(self, x0: torch.Tensor) -> dict[str, torch.Tensor]:
        """PSNR and SSIM of the posterior-mean reconstructions (data range 2: images in [-1, 1])."""
        recon = self.reconstruct(x0).clamp(-1, 1)
        psnr = 10 * torch.log10(4.0 / F.mse_loss(recon, x0).clamp_min(1e-10))
        return {"psnr": psnr, "ssim": 1 - ssim_loss(recon, x0)}

    def preview(self, x0: torch.Tensor, cond: Condition | None, num: int, generator: torch.Generator) -> torch.Tensor:
        """Originals (first rows) above their reconstructions."""
        n = min(num, x0.shape[0])
        with torch.no_grad():
            return torch.cat([x0[:n], self.reconstruct(x0[:n]).clamp(-1, 1)])


def ssim_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``1 − SSIM`` of images in [-1, 1] (MONAI's ``SSIMLoss``; 7-voxel Gaussian window, smaller for tiny images)."""
    side = min(x.shape[2:])
    window = min(7, side if side % 2 else side - 1)
    loss: torch.Tensor = SSIMLoss(x.ndim - 2, data_range=2.0, win_size=window, kernel_sigma=1.5 * window / 7)(x, y)
    return loss
