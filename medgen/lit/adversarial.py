"""``AdversarialTask``: trains a model against discriminators (GANs, translation, autoencoders; 2D or 3D).

Every model with :class:`~medgen.models.adversarial.AdversarialModel` trains here. Each step asks the model for a
:class:`~medgen.models.adversarial.Play`: the real/generated pairs each discriminator judges, plus the model's own
supervised terms (an autoencoder's reconstruction loss, pix2pix's L1, CycleGAN's cycle and identity losses). Each
step is one discriminator update and, every ``n_critic`` steps, one generator update of
``terms["loss"] + weight · adversarial loss``, each network with its own AdamW optimizer and learning-rate
schedule (:class:`~medgen.lit.options.Optimization`). For ``warmup_steps`` generator updates the discriminators
rest and the model trains on its supervised terms alone (an autoencoder's usual warm-up). The losses are those of
:mod:`medgen.objectives.adversarial` (non-saturating, hinge, least squares, Wasserstein with gradient penalty),
with an optional lazy R1 penalty and differentiable augmentation (:mod:`medgen.objectives.diffaugment`) for small
data. The noise of step ``i`` comes from a generator seeded by ``(seed, i, rank)``, and the step counter is saved
in checkpoints with every optimizer and the RNG states, so a resumed run continues exactly. The model's weights are
averaged by the EMA callback of the config (``medgen.lit.ema.EMA``), which checkpoints, ``medgen export`` and
``medgen generate`` use.

A model needing several discriminators (CycleGAN: one per domain) names them in ``critics``; each gets its own
copy of the configured discriminator, re-initialised.

``trainer.max_steps`` counts generator updates: the discriminators' optimizer is stepped directly, so Lightning's
step counter (and with it ``max_steps``, ``val_check_interval`` and checkpoint intervals) advances once per
generator update.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from medgen.errors import InputError
from medgen.lit.common import ModelTask, NonFiniteLossError
from medgen.lit.image_pool import ImagePool
from medgen.lit.options import Conditioning, Optimization, ValidationPictures
from medgen.models.adversarial import AdversarialModel, Duel, Play
from medgen.models.base import TrainableModel
from medgen.models.gan import GANModel
from medgen.nets.condition import Condition
from medgen.objectives.adversarial import (
    LOSSES,
    AdversarialLoss,
    discriminator_accuracy,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    r1_penalty,
)
from medgen.objectives.diffaugment import POLICIES, diff_augment


@dataclass(frozen=True)
class Adversarial:
    """How the generator and the discriminator play.

    Attributes:
        loss: ``non_saturating``, ``hinge``, ``least_squares`` or ``wasserstein`` (with ``gradient_penalty``).
        n_critic: Discriminator updates per generator update.
        gradient_penalty: Weight of WGAN-GP's penalty (``wasserstein`` only).
        r1_gamma: γ of the R1 penalty on real images (0: off).
        r1_every: Apply R1 every k discriminator updates, scaled by k (lazy regularisation).
        augment: DiffAugment policies applied to real and generated images before the discriminator
            (``brightness``, ``contrast``, ``translation``, ``cutout``; empty: none).
        clip_grad_norm: Clip each network's gradient norm (None: no clipping; ``trainer.gradient_clip_val`` does
            not apply to manual optimisation).
        weight: Weight of the adversarial loss in the generator's loss (beside the model's supervised terms).
        warmup_steps: Generator updates on the supervised terms alone before the discriminators play.
        pool_size: Fake images each discriminator keeps in an :class:`~medgen.lit.image_pool.ImagePool` (CycleGAN:
            50) and judges in place of half of the new ones (0: only the newest fakes); unconditional duels only.
    """

    loss: AdversarialLoss = "non_saturating"
    n_critic: int = 1
    gradient_penalty: float = 10.0
    r1_gamma: float = 0.0
    r1_every: int = 16
    augment: tuple[str, ...] = ()
    clip_grad_norm: float | None = None
    weight: float = 1.0
    warmup_steps: int = 0
    pool_size: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise InputError("adversarial.loss", f"expected one of {', '.join(LOSSES)}, got '{self.loss}'")
        if self.n_critic < 1 or self.r1_every < 1:
            raise InputError("adversarial.n_critic", "n_critic and r1_every must be at least 1")
        if self.warmup_steps < 0 or self.weight < 0:
            raise InputError("adversarial.warmup_steps", "warmup_steps and weight must not be negative")
        if self.pool_size < 0:
            raise InputError("adversarial.pool_size", f"expected 0 or more images, got {self.pool_size}")
        unknown = [p for p in self.augment if p not in POLICIES]
        if unknown:
            raise InputError(
                "adversarial.augment", f"unknown policies {unknown}; expected some of {', '.join(POLICIES)}"
            )


class AdversarialTask(ModelTask):
    """Trains an :class:`~medgen.models.adversarial.AdversarialModel` against ``discriminator``.

    Args:
        model: The model (a GAN's generator, a translation model, an autoencoder); only it is exported and sampled.
        discriminator: ``discriminator(images, cond) -> logits`` (e.g. :class:`~medgen.nets.gan.PatchCritic`); a
            model with several critics gets one re-initialised copy per critic.
        adversarial: Losses, update ratio, penalties, augmentation, weight and warm-up.
        optimization: The generator's optimizer and schedule (GAN default: lr 2e-4, betas (0.5, 0.999), no warm-up).
        discriminator_optimization: The discriminators'.
        conditioning: The conditioning-image key (conditions are never dropped: a GAN has no guidance).
        pictures: Validation picture size and frequency.
        seed: Seed of the latents and augmentations of each step, and of the validation picture.
        compile: ``torch.compile`` the generator.
    """

    def __init__(
        self,
        model: TrainableModel,
        discriminator: nn.Module,
        adversarial: Adversarial = Adversarial(),
        optimization: Optimization = Optimization(lr=2e-4, betas=(0.5, 0.999), warmup_steps=0),
        discriminator_optimization: Optimization = Optimization(lr=2e-4, betas=(0.5, 0.999), warmup_steps=0),
        conditioning: Conditioning = Conditioning(drop_prob=0.0),
        pictures: ValidationPictures = ValidationPictures(),
        seed: int = 0,
        compile: bool = False,
    ) -> None:
        if not isinstance(model, AdversarialModel):
            raise InputError(
                "model", f"{type(model).__name__} does not train adversarially; use medgen.lit.GenerativeTask"
            )
        super().__init__(model, conditioning, pictures, seed, compile)
        self.player: AdversarialModel = model
        self.discriminators = nn.ModuleDict({name: discriminator for name in model.critics[:1]})
        for name in model.critics[1:]:
            self.discriminators[name] = _reinitialised(discriminator)
        self.adversarial = adversarial
        self.pools = {name: ImagePool(adversarial.pool_size) for name in model.critics}
        self.optimization = optimization
        self.discriminator_optimization = discriminator_optimization
        self.iteration = 0
        self.automatic_optimization = False
        self.save_hyperparameters(
            ignore=["model", "discriminator", "adversarial", "optimization", "discriminator_optimization",
                    "conditioning", "pictures"]
        )  # fmt: skip

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        """Check the data's image size against a GAN generator's, and settings manual optimisation cannot honour."""
        super().setup(stage)
        if stage != "fit" or self._trainer is None:
            return
        dm = getattr(self.trainer, "datamodule", None)
        size = getattr(dm, "image_size", None)
        if isinstance(self.model, GANModel) and size is not None and tuple(size) != tuple(self.model.image_size or ()):
            raise InputError(
                "data.image_size",
                f"{list(size)} differs from the generator's image_size {list(self.model.image_size or ())}",
            )
        if self.trainer.gradient_clip_val:
            raise InputError(
                "trainer.gradient_clip_val", "use model.adversarial.clip_grad_norm for adversarial training"
            )
        if str(self.trainer.precision) == "16-mixed":
            raise InputError(
                "trainer.precision",
                "adversarial training runs in 32-true or bf16-mixed (16-mixed needs a loss scaler per network)",
            )

    @property
    def discriminator(self) -> nn.Module:
        """The first (for most models, the only) discriminator."""
        return self.discriminators[self.player.critics[0]]

    def judge(self, duel: Duel, images: torch.Tensor) -> torch.Tensor:
        """Logits of ``duel``'s discriminator on ``images`` with the duel's conditions."""
        return self.discriminators[duel.critic](images, duel.cond)

    def _augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return diff_augment(x, self.adversarial.augment, generator) if self.adversarial.augment else x

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """One discriminator update (after the warm-up) and, every ``n_critic`` steps, one generator update."""
        opt_g, opt_d = self.optimizers()  # type: ignore[misc,attr-defined]
        sched_g, sched_d = self.lr_schedulers()  # type: ignore[misc,attr-defined]
        adv = self.adversarial
        size = batch["image"].shape[0]
        cond = self.condition(batch)
        g = self.step_generator(self.iteration)
        playing = self.iteration >= adv.warmup_steps
        logs: dict[str, torch.Tensor] = {}
        if playing:
            logs.update(self._discriminator_step(batch, cond, g, opt_d, sched_d))

        if not playing or (self.iteration + 1) % adv.n_critic == 0:
            self.toggle_optimizer(opt_g)
            play = self.player.play(batch, cond, g)
            loss_g = play.terms.get("loss", torch.zeros((), device=self.device))
            if playing:
                adversarial = sum(
                    (generator_loss(adv.loss, self.judge(d, self._augment(d.fake, g))) for d in play.duels),
                    torch.zeros((), device=self.device),
                )
                loss_g = loss_g + adv.weight * adversarial
                logs["train/g_adversarial"] = adversarial.detach()
            self._check_finite(loss_g, "generator")
            opt_g.zero_grad()
            self.manual_backward(loss_g)
            logs["train/g_grad_norm"] = self._clip(self.model.parameters())
            opt_g.step()
            sched_g.step()
            self.untoggle_optimizer(opt_g)
            logs["train/g_loss"] = loss_g.detach()
            logs.update({f"train/{k}": v.detach() for k, v in play.terms.items() if k != "loss"})
        self.iteration += 1
        shown: dict[str, torch.Tensor] = {k: logs.pop(k) for k in ("train/d_loss", "train/g_loss") if k in logs}
        self.log_dict(shown, prog_bar=True, batch_size=size)
        self.log_dict(logs, prog_bar=False, batch_size=size)

    def _discriminator_step(
        self, batch: dict[str, Any], cond: Condition | None, g: torch.Generator, opt_d: Any, sched_d: Any
    ) -> dict[str, torch.Tensor]:
        """Update every discriminator on a play made without gradients; the logs (none when the play has no duel)."""
        adv = self.adversarial
        with torch.no_grad():
            play = self.player.play(batch, cond, g)
        if not play.duels:  # e.g. a CycleGAN batch from one domain: no discriminator has both real and fake images
            return {}
        self.toggle_optimizer(opt_d)
        loss_d = torch.zeros((), device=self.device)
        accuracies, penalties, r1s = [], [], []
        for duel in play.duels:
            real_in, fake_in = self._augment(duel.real, g), self._augment(self._pooled(duel, g), g)
            d_real, d_fake = self.judge(duel, real_in), self.judge(duel, fake_in)
            loss_d = loss_d + discriminator_loss(adv.loss, d_real, d_fake)
            accuracies.append(discriminator_accuracy(d_real, d_fake).detach())
            critic = self._critic(duel)
            if adv.loss == "wasserstein":
                penalty = gradient_penalty(critic, real_in, fake_in, g)
                loss_d = loss_d + adv.gradient_penalty * penalty
                penalties.append(penalty.detach())
            if adv.r1_gamma > 0 and self.iteration % adv.r1_every == 0:
                r1 = r1_penalty(critic, real_in)
                loss_d = loss_d + adv.r1_gamma / 2 * adv.r1_every * r1
                r1s.append(r1.detach())
        logs = {"train/d_loss": loss_d.detach(), "train/d_accuracy": torch.stack(accuracies).mean()}
        if penalties:
            logs["train/gradient_penalty"] = torch.stack(penalties).mean()
        if r1s:
            logs["train/r1"] = torch.stack(r1s).mean()
        self._check_finite(loss_d, "discriminator")
        opt_d.zero_grad()
        self.manual_backward(loss_d)
        logs["train/d_grad_norm"] = self._clip(self.discriminators.parameters())
        opt_d.optimizer.step()  # the raw optimizer: Lightning's step counter counts generator updates only
        sched_d.step()
        self.untoggle_optimizer(opt_d)
        return logs

    def _pooled(self, duel: Duel, g: torch.Generator) -> torch.Tensor:
        """The fakes the duel's discriminator judges: the new ones, or some from its image pool when it has one."""
        if self.adversarial.pool_size and duel.cond is not None:
            raise InputError("adversarial.pool_size", "an image pool holds unconditional fakes only; set it to 0")
        return self.pools[duel.critic].query(duel.fake, g)

    def _critic(self, duel: Duel) -> Any:
        """``images -> logits`` of the duel's discriminator with its conditions bound (for the penalties)."""
        return lambda images: self.judge(duel, images)

    def _clip(self, params: Any) -> torch.Tensor:
        """The gradient norm (clipped to ``clip_grad_norm`` when set)."""
        trainable = [p for p in params if p.grad is not None]
        if not trainable:
            return torch.zeros((), device=self.device)
        limit = self.adversarial.clip_grad_norm or float("inf")
        return torch.nn.utils.clip_grad_norm_(trainable, limit).detach()

    def _check_finite(self, loss: torch.Tensor, which: str) -> None:
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"{which} " + self._non_finite_message(loss))

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Discriminator accuracy and supervised terms on a batch (fixed noise per batch index); the picture."""
        x = batch["image"]
        cond = self.condition(batch)
        play: Play = self.player.play(batch, cond, self.step_generator(batch_idx, stream=1))
        accuracies = [discriminator_accuracy(self.judge(d, d.real), self.judge(d, d.fake)) for d in play.duels]
        accuracy = torch.stack(accuracies).mean() if accuracies else torch.full((), float("nan"), device=self.device)
        metrics = {f"val/{k}": v for k, v in play.terms.items()}
        if accuracies:  # a play may have no duel (a CycleGAN batch from one domain)
            metrics["val/d_accuracy"] = accuracy
        metrics.update({f"val/{k}": v for k, v in self.model.validation_metrics(x).items()})
        self.log_dict(metrics, prog_bar=True, sync_dist=True, batch_size=x.shape[0])
        if batch_idx == 0:
            self._val_cond = None if cond is None else cond[: self.pictures.num_samples]
            self.draw_validation_picture(batch)
        return accuracy

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        """AdamW for the model and for the discriminators, each with its schedule (stepped in ``training_step``)."""
        total = int(self.trainer.max_steps) if self._trainer is not None and self.trainer.max_steps > 0 else None
        pairs = []
        networks = ((self.optimization, self.model), (self.discriminator_optimization, self.discriminators))
        for options, network in networks:
            params = network.parameters()
            trainable = [p for p in params if p.requires_grad]
            optimizer = torch.optim.AdamW(
                trainable, lr=options.lr, betas=options.betas, eps=options.eps, weight_decay=options.weight_decay
            )
            steps = None if options.schedule == "constant" else total
            schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _factor(options, steps))
            pairs.append((optimizer, schedule))
        rank_zero_info(
            f"generator: {self.optimization.describe()}; discriminator: {self.discriminator_optimization.describe()}"
        )
        return [p[0] for p in pairs], [p[1] for p in pairs]

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Base metadata and RNG states, the step counter of the latents and augmentations, the image pools."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["medgen"]["adversarial_iteration"] = self.iteration
        if self.adversarial.pool_size:
            checkpoint["image_pools"] = {name: pool.state() for name, pool in self.pools.items()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the base state and the step counter."""
        super().on_load_checkpoint(checkpoint)
        self.iteration = int((checkpoint.get("medgen") or {}).get("adversarial_iteration", 0))
        for name, images in (checkpoint.get("image_pools") or {}).items():
            if name in self.pools:
                self.pools[name].load_state(images)


def _factor(options: Optimization, total: int | None) -> Any:
    """``step -> lr multiplier`` as a function (LambdaLR saves no state for functions, so checkpoints stay plain)."""
    return lambda step: options.factor(step, total)


def _reinitialised(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with fresh weights (every submodule with ``reset_parameters`` re-drawn)."""
    fresh = copy.deepcopy(module)
    for sub in fresh.modules():
        reset = getattr(sub, "reset_parameters", None)
        if callable(reset):
            reset()
    return fresh
