"""Machinery every generative LightningModule shares.

Subclasses (:class:`~medgen.lit.diffusion.DiffusionModule`, :class:`~medgen.lit.flow.FlowMatchingModule`)
supply the objective and the sampler; this base turns batches into :class:`~medgen.nets.condition.Condition`
objects, draws each step's noise from a generator seeded by ``(seed, step, rank)`` (so a resumed run draws
exactly what the uninterrupted run would have), drops conditions for classifier-free guidance, logs
losses and sample grids, stops on a non-finite loss, and stores what generation needs in checkpoints.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from medgen import __version__
from medgen.errors import InputError, MedgenError
from medgen.finetune import LoadReport, freeze_parameters
from medgen.nets.condition import Condition
from medgen.sampling.common import Generators
from medgen.visualize import save_grid

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


def default_optimizer(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """AdamW, lr 1e-4, no weight decay: the usual choice for diffusion and flow UNets."""
    return torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)


class NonFiniteLossError(MedgenError):
    """Training produced a NaN or Inf loss."""


class GenerativeModule(L.LightningModule):
    """Base of medgen's generative LightningModules (not used directly).

    Args:
        net: Network with the ``net(x, t, cond)`` contract (e.g. :class:`~medgen.nets.unet.DiffusionUNet`).
        optimizer: Callable building the optimizer from the parameters.
        warmup_steps: Linear learning-rate warm-up steps (then constant).
        cond_drop_prob: Probability of dropping a sample's conditions in training (classifier-free guidance).
        image_condition_key: Batch key of the conditioning image (``image_channels``) or ControlNet input.
        val_num_samples: Samples drawn for the validation picture (0 disables).
        sample_every_n_epochs: Draw the validation picture every n validation epochs.
        sample_size: Spatial size of generated samples (default: the data module's ``image_size``).
        seed: Seed of the per-step noise and of validation sampling.
        compile: ``torch.compile`` the network.
        init_from: Fine-tuning: copy matching weights from a ``.ckpt``, exported folder, registry name or bare
            state dict before training (a resumed run's checkpoint replaces them); new tensors stay freshly
            initialised.
        init_strict: Fail unless every pretrained tensor matches in name and shape.
        freeze: Parameter-name prefixes to keep fixed during training (e.g. ``net.unet.down_blocks``): applied at
            the start of every fit (fresh, fine-tuned or resumed), so frozen tensors never change.
        init_min_match: Smallest share of tensors ``init_from`` must match by name and shape (of the smaller of
            the two state dicts); below it the run stops with an architecture-mismatch error. 0 accepts any.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory = default_optimizer,
        warmup_steps: int = 500,
        cond_drop_prob: float = 0.1,
        image_condition_key: str = "mask",
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
        super().__init__()
        if not 0.0 <= init_min_match <= 1.0:
            raise InputError("model.init_min_match", f"expected a fraction in [0, 1], got {init_min_match}")
        self.net = net
        self.optimizer_factory = optimizer
        self.warmup_steps = warmup_steps
        self.cond_drop_prob = cond_drop_prob
        self.image_condition_key = image_condition_key
        self.val_num_samples = val_num_samples
        self.sample_every_n_epochs = sample_every_n_epochs
        self.image_size = None if sample_size is None else tuple(int(s) for s in sample_size)
        self.seed = seed
        self.compile_net = compile
        self.init_from = init_from
        self.init_strict = init_strict
        self.init_min_match = init_min_match
        self.freeze_prefixes = list(freeze or [])  # not self.freeze: LightningModule.freeze() is a method
        self._val_cond: Condition | None = None

    # ------------------------------------------------------------------ subclass interface
    def training_target(self, x0: torch.Tensor, generator: torch.Generator) -> Any:
        """Objective-specific training example (``TrainingTarget``)."""
        raise NotImplementedError

    def predict_target(self, x_t: torch.Tensor, t: torch.Tensor, cond: Condition | None) -> torch.Tensor:
        """Network prediction for a training example."""
        raise NotImplementedError

    def objective_loss(self, pred: torch.Tensor, target: Any) -> torch.Tensor:
        """Scalar loss."""
        raise NotImplementedError

    def sample(
        self,
        num_samples: int,
        cond: Condition | None = None,
        generator: Generators = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """``(num_samples, C, *image_size)`` samples in the data's intensity range."""
        raise NotImplementedError

    @contextmanager
    def eval_mode(self) -> Iterator[None]:
        """Put the network in eval mode for the block and restore its previous mode afterwards."""
        was_training = self.net.training
        self.net.eval()
        try:
            yield
        finally:
            self.net.train(was_training)

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        """Take the sample size from the data module, load ``init_from`` weights, freeze, compile if asked.

        Freezing happens at every fit, resumed or not, before the strategy wraps the module and the optimizer is
        built: frozen parameters get no gradient, so the optimizer never moves them. ``init_from`` is read at every
        fit too (Lightning knows ``ckpt_path`` only after ``setup``; LightningCLI brings ``init_from`` back from a
        checkpoint's hyper-parameters), and a resumed run's checkpoint then replaces these weights.
        """
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if self.image_size is None and dm is not None and hasattr(dm, "image_size"):
            self.image_size = tuple(dm.image_size)
        if stage == "fit":
            if self.init_from:
                self.load_pretrained()
            elif self.freeze_prefixes:
                frozen = freeze_parameters(self, self.freeze_prefixes)
                rank_zero_info(f"freeze: {len(frozen)} parameters frozen ({', '.join(self.freeze_prefixes)})")
        if self.compile_net and stage == "fit":
            self.net.compile()

    def load_pretrained(self) -> LoadReport:
        """Copy ``init_from``'s matching weights in, freeze the ``freeze`` prefixes, and print the loading report."""
        from medgen.finetune import load_pretrained

        report = load_pretrained(
            self,
            str(self.init_from),
            strict=self.init_strict,
            freeze=self.freeze_prefixes,
            min_match=self.init_min_match,
        )
        rank_zero_info(report.summary())
        return report

    @property
    def spatial_dims(self) -> int:
        """2 or 3."""
        return int(getattr(self.net, "spatial_dims", len(self.image_size or (0, 0))))

    def sample_shape(self, num_samples: int) -> tuple[int, ...]:
        """Shape of a batch of samples."""
        if self.image_size is None:
            raise MedgenError("image_size is unknown: pass model.image_size or train with a data module first")
        return (num_samples, int(getattr(self.net, "in_channels", 1)), *self.image_size)

    # ------------------------------------------------------------------ batches
    def condition_from_batch(self, batch: dict[str, Any]) -> Condition | None:
        """The :class:`Condition` the net needs, from a data-module batch."""
        names: list[str] = list(getattr(self.net, "condition_names", []))
        values = image = control = None
        if names:
            cond = batch.get("cond") or {}
            missing = [n for n in names if n not in cond]
            if missing:
                have = ", ".join(sorted(cond)) or "none"
                raise MedgenError(
                    f"the batch has no condition column(s) {', '.join(missing)} (has: {have}); check the datalist"
                )
            values = torch.stack([cond[n].float() for n in names], dim=1)
        if getattr(self.net, "image_channels", 0):
            if self.image_condition_key not in batch:
                raise MedgenError(
                    f"the net needs a conditioning image but the batch has no '{self.image_condition_key}'"
                )
            image = batch[self.image_condition_key]
        if getattr(self.net, "control_channels", 0):
            if self.image_condition_key not in batch:
                raise MedgenError(
                    f"the ControlNet needs a control image but the batch has no '{self.image_condition_key}'"
                )
            control = batch[self.image_condition_key]
        result = Condition(values=values, image=image, control=control)
        return None if result.is_empty() else result

    def step_generator(self, step: int, stream: int = 0) -> torch.Generator:
        """A generator on this module's device seeded by ``(seed, step, stream, rank)``."""
        g = torch.Generator(device=self.device)
        g.manual_seed(((self.seed * 1_000_003 + step) * 4 + stream) * 1024 + self.global_rank)
        return g

    def _loss(self, batch: dict[str, Any], generator: torch.Generator, drop: bool) -> torch.Tensor:
        x0 = batch["image"]
        cond = self.condition_from_batch(batch)
        target = self.training_target(x0, generator)
        if cond is not None and drop and self.cond_drop_prob > 0:
            mask = torch.rand(x0.shape[0], generator=generator, device=x0.device) < self.cond_drop_prob
            cond = cond.dropped(mask)
        return self.objective_loss(self.predict_target(target.x_t, target.t, cond), target)

    # ------------------------------------------------------------------ training and validation
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """One optimisation step's loss; stops training on a non-finite loss."""
        loss = self._loss(batch, self.step_generator(self.global_step), drop=True)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(self._non_finite_message(loss))
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def _non_finite_message(self, loss: torch.Tensor) -> str:
        step = self.global_step
        good = last_checkpoint_before(self.trainer, step)
        where = f"last good checkpoint: {good}" if good else f"no checkpoint from before step {step}"
        return (
            f"training stopped: loss is {float(loss)} at step {step}; {where} "
            "(lower the learning rate, enable gradient clipping or use bf16-mixed instead of 16-mixed)"
        )

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Validation loss with noise fixed per batch index (comparable across epochs)."""
        loss = self._loss(batch, self.step_generator(batch_idx, stream=1), drop=False)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=batch["image"].shape[0])
        if batch_idx == 0:
            cond = self.condition_from_batch(batch)
            self._val_cond = None if cond is None else _first(cond, self.val_num_samples)
            self.draw_validation_samples()
        return loss

    def draw_validation_samples(self) -> None:
        """Every ``sample_every_n_epochs``: sample with fixed noise and log a picture.

        Called from the first validation batch, while ``EMAWeightAveraging`` has the averaged weights in
        place (callbacks' ``on_validation_epoch_end`` runs before the module's and swaps them back).
        """
        if self.val_num_samples <= 0 or self.trainer.sanity_checking or self.image_size is None:
            return
        if (self.current_epoch + 1) % self.sample_every_n_epochs:
            return
        n = self.val_num_samples if self._val_cond is None else int(self._val_cond.batch_size or 0)
        samples = self.sample(n, cond=self._val_cond, generator=self.step_generator(0, stream=2))
        self.log_samples(samples.float().cpu())

    def log_samples(self, samples: torch.Tensor) -> Path | None:
        """Save a grid (2D) or mid-slice views (3D) as PNG in the log dir and to TensorBoard when used."""
        if not self.trainer.is_global_zero or self.trainer.log_dir is None:
            return None
        path = Path(self.trainer.log_dir) / "samples" / f"step_{self.global_step:07d}.png"
        save_grid(samples, path)
        for logger in self.loggers:
            experiment: Any = getattr(logger, "experiment", None)
            if experiment is not None and hasattr(experiment, "add_image"):
                from PIL import Image

                arr = np.asarray(Image.open(path))
                experiment.add_image("samples", arr, self.global_step, dataformats="HW")
        return path

    # ------------------------------------------------------------------ prediction
    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Samples for a batch: one per item, with the item's conditions; seeded by batch index."""
        cond = self.condition_from_batch(batch)
        return self.sample(batch["image"].shape[0], cond=cond, generator=self.step_generator(batch_idx, stream=3))

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        """The optimizer with a linear warm-up, stepped every training step."""
        optimizer = self.optimizer_factory(self.parameters())
        warmup = max(1, self.warmup_steps)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ------------------------------------------------------------------ checkpoints
    def medgen_metadata(self) -> dict[str, Any]:
        """What rebuilding and sampling this model needs (written into every checkpoint)."""
        return {
            "version": __version__,
            "module": f"{type(self).__module__}.{type(self).__qualname__}",
            "net": getattr(self.net, "config", None),
            "image_size": list(self.image_size) if self.image_size else None,
            "spatial_dims": self.spatial_dims,
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add medgen metadata and the RNG states."""
        checkpoint["medgen"] = self.medgen_metadata()
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None and hasattr(dm, "describe"):
            checkpoint["medgen"]["data"] = dm.describe()
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "numpy": _numpy_state_to_plain(np.random.get_state()),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore image size and RNG states."""
        meta = checkpoint.get("medgen") or {}
        if self.image_size is None and meta.get("image_size"):
            self.image_size = tuple(meta["image_size"])
        rng = checkpoint.get("rng_states")
        if rng:
            torch.set_rng_state(rng["torch"])
            np.random.set_state(_numpy_state_from_plain(rng["numpy"]))
            random.setstate(rng["python"])
            if rng.get("cuda") and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])


def last_checkpoint_before(trainer: L.Trainer, step: int) -> str | None:
    """The newest ``*step=N*.ckpt`` with N < ``step`` in any ModelCheckpoint folder.

    A checkpoint written at global step N holds the weights that produced the loss at step N, so only
    checkpoints from before the failing step are known to be good.
    """
    best: tuple[int, str] | None = None
    for callback in trainer.checkpoint_callbacks:
        folder = getattr(callback, "dirpath", None)
        if not folder or not Path(folder).is_dir():
            continue
        for path in Path(folder).glob("*.ckpt"):
            match = re.search(r"step=(\d+)", path.name)
            if match and int(match.group(1)) < step and (best is None or int(match.group(1)) > best[0]):
                best = (int(match.group(1)), str(path))
    return None if best is None else best[1]


def _numpy_state_to_plain(state: Any) -> list[Any]:
    """NumPy's RNG state with its array as a list (checkpoints load with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = state
    return [name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]


def _numpy_state_from_plain(state: Sequence[Any]) -> tuple[Any, ...]:
    name, keys, pos, has_gauss, cached = state
    return (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)


def _first(cond: Condition, n: int) -> Condition:
    """The first ``n`` entries of every field."""
    return Condition(
        values=None if cond.values is None else cond.values[:n],
        image=None if cond.image is None else cond.image[:n],
        control=None if cond.control is None else cond.control[:n],
    )
