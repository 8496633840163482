"""``LatentDiffusionModule``: diffusion in the latent space of a frozen, trained KL autoencoder.

Rombach et al. 2022 (arXiv 2112.10752): images are encoded once per step by the frozen encoder (posterior
mean), multiplied by ``latent_scale`` so the latents have unit variance, and the denoiser learns the
latents with the same objective, schedulers and conditioning as pixel-space :class:`DiffusionModule`.
Samples are decoded. The autoencoder lives inside the module, so checkpoints, exports and ``medgen
generate`` need nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from medgen.errors import InputError
from medgen.finetune import LoadReport, load_submodule
from medgen.lit.base import OptimizerFactory, default_optimizer
from medgen.lit.diffusion import DiffusionModule
from medgen.nets.autoencoder import KLAutoencoder
from medgen.nets.condition import Condition
from medgen.objectives.common import TrainingTarget
from medgen.objectives.diffusion import DiffusionObjective
from medgen.sampling.common import Generators


class LatentDiffusionModule(DiffusionModule):
    """Latent diffusion model (2D or 3D, as the nets are).

    Args:
        net: Denoising network on latents (``in_channels`` = the autoencoder's ``latent_channels``).
        autoencoder: The autoencoder's architecture (its weights come from ``autoencoder_from``, or from this
            module's checkpoint when it is reloaded).
        autoencoder_from: Trained autoencoder: a medgen ``AutoencoderModule`` checkpoint, exported folder or
            registry name, or a bare MONAI ``AutoencoderKL`` state dict (``.pt``/``.safetensors``). Loaded
            when training starts (not when resuming). None trains on an untrained autoencoder's latents:
            only for smoke tests.
        latent_scale: Multiplier of the latents (None: ``1 / std`` of the first training batch's latents).
        objective: Noise schedule, prediction type and loss weighting.
        optimizer: Callable building the optimizer from the parameters.
        warmup_steps: Linear learning-rate warm-up steps.
        cond_drop_prob: Probability of dropping conditions in training (classifier-free guidance).
        sampler: Default sampler (diffusers scheduler class name or alias).
        num_inference_steps: Default number of sampling steps.
        guidance: Default classifier-free guidance scale.
        val_num_samples: Samples drawn for the validation picture.
        sample_every_n_epochs: Validation picture frequency.
        sample_size: Image size of the samples (default: the data module's image_size).
        seed: Seed of training noise and validation sampling.
        compile: ``torch.compile`` the denoiser.
        init_from: Fine-tuning: copy matching weights before training.
        init_strict: Fail unless every pretrained tensor matches in name and shape.
        freeze: Parameter-name prefixes kept fixed in every fit, resumed too.
        init_min_match: Smallest share of ``init_from``'s tensors that must match (0 accepts any architecture).
    """

    def __init__(
        self,
        net: nn.Module,
        autoencoder: KLAutoencoder,
        autoencoder_from: str | None = None,
        latent_scale: float | None = None,
        objective: DiffusionObjective | None = None,
        optimizer: OptimizerFactory = default_optimizer,
        warmup_steps: int = 500,
        cond_drop_prob: float = 0.1,
        sampler: str = "dpm++",
        num_inference_steps: int = 25,
        guidance: float = 1.0,
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
        if getattr(net, "image_channels", 0) or getattr(net, "control_channels", 0):
            raise InputError("model.net", "image and ControlNet conditioning are not available in latent space yet")
        if getattr(net, "in_channels", autoencoder.latent_channels) != autoencoder.latent_channels:
            raise InputError(
                "model.net.in_channels",
                f"must equal the autoencoder's latent_channels ({autoencoder.latent_channels}), "
                f"got {getattr(net, 'in_channels', None)}",
            )
        super().__init__(
            net, objective, optimizer, warmup_steps, cond_drop_prob, "mask", sampler, num_inference_steps, guidance,
            val_num_samples, sample_every_n_epochs, sample_size, seed, compile, init_from, init_strict, freeze,
            init_min_match,
        )  # fmt: skip
        self.autoencoder = autoencoder.requires_grad_(False)  # no dropout or batch norm: train mode is harmless
        self.autoencoder_from = autoencoder_from
        self.fixed_scale = latent_scale is not None
        self.latent_scale: torch.Tensor
        self.register_buffer("latent_scale", torch.tensor(1.0 if latent_scale is None else float(latent_scale)))
        self.save_hyperparameters(ignore=["net", "objective", "optimizer", "autoencoder"])
        self.remove_ignored_hparams(["image_condition_key"])  # saved by DiffusionModule; not an argument here

    # ------------------------------------------------------------------ latents
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled posterior-mean latents ``(B, latent_channels, *latent_size)`` of images ``(B, C, *spatial)``."""
        with torch.no_grad():
            return self.autoencoder.posterior(x).mean * self.latent_scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, *spatial)`` of scaled latents."""
        with torch.no_grad():
            return self.autoencoder.decode(z / self.latent_scale)

    def sample_shape(self, num_samples: int) -> tuple[int, ...]:
        """Shape of a batch of latents."""
        image = super().sample_shape(num_samples)
        return (num_samples, self.autoencoder.latent_channels, *self.autoencoder.latent_size(image[2:]))

    # ------------------------------------------------------------------ training
    def setup(self, stage: str) -> None:
        """Load the trained autoencoder (``autoencoder_from``) before training, unless resuming."""
        super().setup(stage)
        if stage != "fit" or (self._trainer is not None and self.trainer.ckpt_path is not None):
            return
        if self.autoencoder_from:
            load_submodule(self.autoencoder, self.autoencoder_from, "model.autoencoder_from")
            rank_zero_info(f"autoencoder weights from {self.autoencoder_from}")
        elif not self.init_from:  # fine-tuning brings the autoencoder with the rest
            rank_zero_warn("model.autoencoder_from is not set: training on an untrained autoencoder (smoke test?)")

    def load_pretrained(self) -> LoadReport:
        """Fine-tuning: a pretrained latent model brings its ``latent_scale``, which is then kept."""
        report = super().load_pretrained()
        self.fixed_scale = self.fixed_scale or "latent_scale" in report.loaded
        return report

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Set ``latent_scale`` from the first batch (all processes' latents), then the diffusion step."""
        if not self.fixed_scale and self.global_step == 0 and batch_idx == 0:
            latents = self.autoencoder.posterior(batch["image"]).mean.detach().float()
            std = self.trainer.strategy.reduce(latents.std(), reduce_op="mean")
            self.latent_scale.fill_(1.0 / float(std.clamp_min(1e-6)))
            rank_zero_info(f"latent_scale = {float(self.latent_scale):.4f} (1 / std of the first batch's latents)")
        return super().training_step(batch, batch_idx)

    def training_target(self, x0: torch.Tensor, generator: torch.Generator) -> TrainingTarget:
        """Noised latent, timestep and target."""
        return self.objective.training_target(self.encode(x0), generator)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        cond: Condition | None = None,
        generator: Generators = None,
        progress: bool = False,
        sampler: str | None = None,
        num_steps: int | None = None,
        guidance: float | None = None,
    ) -> torch.Tensor:
        """Latents drawn like :meth:`DiffusionModule.sample`, decoded: ``(B, C, *image_size)``."""
        latents = super().sample(num_samples, cond, generator, progress, sampler, num_steps, guidance)
        return self.decode(latents)

    def medgen_metadata(self) -> dict[str, Any]:
        """Diffusion metadata with the autoencoder's architecture and ``family: latent-diffusion``."""
        meta = super().medgen_metadata()
        meta.update(family="latent-diffusion", autoencoder=self.autoencoder.config)
        return meta
