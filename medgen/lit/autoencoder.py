"""``AutoencoderModule``: the first stage of a latent model, a KL autoencoder trained on the user's scans."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.losses import SSIMLoss
from torch.nn import functional as F

from medgen.errors import MedgenError
from medgen.lit.base import GenerativeModule, OptimizerFactory, default_optimizer
from medgen.nets.autoencoder import KLAutoencoder
from medgen.nets.condition import Condition
from medgen.sampling.common import Generators


class AutoencoderModule(GenerativeModule):
    """Trains a :class:`~medgen.nets.autoencoder.KLAutoencoder` (2D or 3D, as the net is).

    Loss: ``L1(x̂, x) + ssim_weight · (1 − SSIM(x̂, x)) + kl_weight · KL(q(z|x) ‖ N(0, I)) / B`` with ``x̂``
    decoded from a posterior draw. The SSIM term stands in for the LPIPS perceptual loss of Rombach et al.
    (arXiv 2112.10752), whose ImageNet weights cannot be had offline; an adversarial term is not included
    yet. Validation logs ``val/l1``, ``val/psnr`` and ``val/ssim`` of posterior-mean reconstructions and a
    picture of originals (top rows) above their reconstructions.

    Args:
        net: The autoencoder.
        optimizer: Callable building the optimizer from the parameters.
        warmup_steps: Linear learning-rate warm-up steps.
        kl_weight: Weight of the KL term (small: the latent should stay informative, ~1e-6 in LDMs).
        ssim_weight: Weight of the structural term (0 turns it off).
        val_num_samples: Images shown in the validation picture.
        sample_every_n_epochs: Validation picture frequency.
        sample_size: Image size (default: the data module's).
        seed: Seed of the posterior draws.
        compile: ``torch.compile`` the network.
        init_from: Fine-tuning: copy matching weights (a medgen checkpoint or export, or a bare MONAI
            ``AutoencoderKL`` state dict) before training.
        init_strict: Fail unless every pretrained tensor matches in name and shape.
        freeze: Parameter-name prefixes kept fixed in every fit, resumed too (e.g. ``net.encoder``).
        init_min_match: Smallest share of ``init_from``'s tensors that must match (0 accepts any architecture).
    """

    def __init__(
        self,
        net: KLAutoencoder,
        optimizer: OptimizerFactory = default_optimizer,
        warmup_steps: int = 500,
        kl_weight: float = 1e-6,
        ssim_weight: float = 0.25,
        val_num_samples: int = 8,
        sample_every_n_epochs: int = 1,
        sample_size: Sequence[int] | None = None,
        seed: int = 0,
        compile: bool = False,
        init_from: str | None = None,
        init_strict: bool = False,
        freeze: list[str] | None = None,
        init_min_match: float = 0.5,
    ) -> None:
        super().__init__(
            net, optimizer, warmup_steps, 0.0, "mask", val_num_samples, sample_every_n_epochs, sample_size, seed,
            compile, init_from, init_strict, freeze,
            init_min_match,
        )  # fmt: skip
        self.net: KLAutoencoder = net
        self.kl_weight = kl_weight
        self.ssim_weight = ssim_weight
        self.save_hyperparameters(ignore=["net", "optimizer"])

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoded posterior means of images ``(B, C, *spatial)``; same shape."""
        return self.net.decode(self.net.posterior(x).mean)

    def _loss(self, batch: dict[str, Any], generator: torch.Generator, drop: bool) -> torch.Tensor:
        x = batch["image"]
        posterior = self.net.posterior(x)
        recon = self.net.decode(posterior.sample(generator))
        l1 = (recon - x).abs().mean()
        kl = posterior.kl().mean()
        loss = l1 + self.kl_weight * kl
        stage = "train" if self.training else "val"
        if self.ssim_weight > 0:
            loss = loss + self.ssim_weight * ssim_loss(recon, x)
        self.log_dict({f"{stage}/l1": l1, f"{stage}/kl": kl}, batch_size=x.shape[0], sync_dist=stage == "val")
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Loss with fixed posterior draws; PSNR/SSIM of the mean reconstructions; a picture from batch 0."""
        loss = self._loss(batch, self.step_generator(batch_idx, stream=1), drop=False)
        x = batch["image"]
        recon = self.reconstruct(x).clamp(-1, 1)
        psnr = 10 * torch.log10(4.0 / F.mse_loss(recon, x).clamp_min(1e-10))  # data range 2 ([-1, 1])
        metrics = {"val/loss": loss, "val/psnr": psnr, "val/ssim": 1 - ssim_loss(recon, x)}
        self.log_dict(metrics, prog_bar=True, sync_dist=True, batch_size=x.shape[0])
        if batch_idx == 0 and self.val_num_samples > 0 and not self.trainer.sanity_checking:
            if (self.current_epoch + 1) % self.sample_every_n_epochs == 0:
                n = min(self.val_num_samples, x.shape[0])
                self.log_samples(torch.cat([x[:n], recon[:n]]).float().cpu())
        return loss

    def sample(
        self,
        num_samples: int,
        cond: Condition | None = None,
        generator: Generators = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Not available: an autoencoder encodes and decodes; a latent diffusion model generates."""
        raise MedgenError(
            "an autoencoder does not generate images: train a latent diffusion model on it "
            "(configs/ldm_2d.yaml with --model.autoencoder_from CKPT)"
        )

    def medgen_metadata(self) -> dict[str, Any]:
        """Base metadata with ``family: autoencoder``."""
        meta = super().medgen_metadata()
        meta.update(family="autoencoder", factor=self.net.factor, latent_channels=self.net.latent_channels)
        return meta


def ssim_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``1 − SSIM`` of images in [-1, 1] (MONAI's ``SSIMLoss``; 7-voxel Gaussian window, smaller for tiny images)."""
    side = min(x.shape[2:])
    window = min(7, side if side % 2 else side - 1)
    loss: torch.Tensor = SSIMLoss(x.ndim - 2, data_range=2.0, win_size=window, kernel_sigma=1.5 * window / 7)(x, y)
    return loss
