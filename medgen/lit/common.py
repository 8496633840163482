"""What every medgen training task shares: the model, seeded per-step noise, pictures, checkpoints, prediction.

:class:`ModelTask` is the base of :class:`~medgen.lit.task.GenerativeTask` (single-loss families) and
:class:`~medgen.lit.adversarial.AdversarialTask` (GANs). It holds the model (:mod:`medgen.models`) and draws each
step's noise from a generator seeded by ``(seed, step, stream, rank)``, so a resumed run draws exactly what the
uninterrupted run would have; it saves the validation picture, records the model's metadata and the RNG states
in checkpoints, and restores them.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from medgen.errors import MedgenError
from medgen.lit.options import Conditioning, ValidationPictures
from medgen.models.base import GenerativeModel, TrainableModel
from medgen.nets.condition import Condition
from medgen.visualize import save_grid


class NonFiniteLossError(MedgenError):
    """Training produced a NaN or Inf loss."""


class ModelTask(L.LightningModule):
    """Base of medgen's training tasks (not used directly).

    Args:
        model: The model to train (its state-dict names appear under ``model.`` in checkpoints).
        conditioning: Condition dropping and the conditioning-image key.
        pictures: Validation picture size and frequency.
        seed: Seed of the per-step training noise and of the validation picture.
        compile: ``torch.compile`` the model's network.
    """

    def __init__(
        self,
        model: TrainableModel,
        conditioning: Conditioning = Conditioning(),
        pictures: ValidationPictures = ValidationPictures(),
        seed: int = 0,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.conditioning = conditioning
        self.pictures = pictures
        self.seed = seed
        self.compile_net = compile
        self._val_cond: Condition | None = None

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        """Take the sample size from the data module; compile the network if asked."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if self.model.image_size is None and dm is not None and getattr(dm, "image_size", None) is not None:
            self.model.image_size = tuple(dm.image_size)
        if self.compile_net and stage == "fit":
            compile_networks(self.model.net)

    def step_generator(self, step: int, stream: int = 0, shared: bool = False) -> torch.Generator:
        """A generator on this task's device seeded by ``(seed, step, stream, rank)``.

        With ``shared``, rank 0's on every process (draws made for the whole global batch, :mod:`medgen.lit.sharding`).
        """
        g = torch.Generator(device=self.device)
        rank = 0 if shared else self.global_rank
        g.manual_seed(((self.seed * 1_000_003 + step) * 4 + stream) * 1024 + rank)
        return g

    def condition(self, batch: dict[str, Any]) -> Condition | None:
        """The batch's conditions, as the model reads them."""
        return self.model.condition_from_batch(batch, self.conditioning.image_key)

    def _non_finite_message(self, loss: torch.Tensor) -> str:
        step = self.global_step
        good = last_checkpoint_before(self.trainer, step)
        where = f"last good checkpoint: {good}" if good else f"no checkpoint from before step {step}"
        return (
            f"training stopped: loss is {float(loss.detach())} at step {step}; {where} "
            "(lower the learning rate, enable gradient clipping or use bf16-mixed instead of 16-mixed)"
        )

    def draw_validation_picture(self, batch: dict[str, Any]) -> None:
        """Every ``pictures.every_n_epochs``: the model's preview with fixed noise, saved and logged.

        Called from the first validation batch, while an EMA callback has the averaged weights in place (callbacks'
        ``on_validation_epoch_end`` runs before the module's and swaps them back).
        """
        if self.pictures.num_samples <= 0 or self.trainer.sanity_checking or self.model.image_size is None:
            return
        if (self.current_epoch + 1) % self.pictures.every_n_epochs:
            return
        generator = self.step_generator(0, stream=2)
        picture = self.model.preview_batch(batch, self._val_cond, self.pictures.num_samples, generator)
        self.log_samples(picture.float().cpu())

    def log_samples(self, samples: torch.Tensor) -> Path | None:
        """Save a grid (2D) or mid-slice views (3D) as PNG in the log dir and to TensorBoard when used.

        Rank 0 writes; every process must call it (under DDP the log dir is broadcast from rank 0).
        """
        log_dir = self.trainer.log_dir  # a broadcast from rank 0 under DDP: every process must ask
        if not self.trainer.is_global_zero or log_dir is None:
            return None
        path = Path(log_dir) / "samples" / f"step_{self.global_step:07d}.png"
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
        if not isinstance(self.model, GenerativeModel):
            raise MedgenError(
                f"a {type(self.model).__name__} does not generate images: train a latent model on it "
                "(configs/ldm_2d.yaml with --pretrained.autoencoder_from CKPT)"
            )
        cond = self.condition(batch)
        generator = self.step_generator(batch_idx, stream=3)
        return self.model.sample(batch["image"].shape[0], cond=cond, generator=generator)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the model's metadata (what rebuilding it needs), the data record and the RNG states."""
        checkpoint["medgen"] = self.model.describe()
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
        """Restore the sample size and the RNG states."""
        meta = checkpoint.get("medgen") or {}
        if self.model.image_size is None and meta.get("image_size"):
            self.model.image_size = tuple(meta["image_size"])
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


def compile_networks(net: nn.Module) -> None:
    """``torch.compile`` a model's network in place; each member of a ``ModuleDict`` (CycleGAN's ``a2b``/``b2a``).

    A ``ModuleDict`` is never called itself, so compiling it would change nothing: its members are compiled.
    """
    for module in net.values() if isinstance(net, nn.ModuleDict) else (net,):
        module.compile()
