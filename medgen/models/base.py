"""What every medgen model is: a plain ``nn.Module`` that owns its net, objective, sampling defaults and conditions.

Models train with one call (:meth:`TrainableModel.loss`), sample with one vocabulary for every family
(:meth:`GenerativeModel.sample` with ``method``, ``num_steps``, ``guidance``), and save and load themselves as a
folder (:meth:`TrainableModel.save_pretrained` / :meth:`TrainableModel.from_pretrained`), as a diffusers
pipeline does. Nothing here imports Lightning: :mod:`medgen.lit` tasks train models; they are not the model.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch
from torch import nn

from medgen import __version__
from medgen.config import Allowed
from medgen.errors import InputError, MedgenError, article
from medgen.models.defaults import SamplingDefaults
from medgen.nets.condition import Condition
from medgen.nets.protocol import ConditionedNet
from medgen.sampling.common import Generators

if TYPE_CHECKING:
    from medgen.weights import WeightsDtype

M = TypeVar("M", bound="TrainableModel")

#: ``reduce(t)``: the mean of a scalar tensor over all training processes (identity on one process).
Reduce = Callable[[torch.Tensor], torch.Tensor]

#: Class path a model's exported ``config.yaml`` names for the task that trains it (a string: no import).
TASK_CLASS_PATH = "medgen.lit.GenerativeTask"


class TrainableModel(nn.Module):
    """Base of medgen models: something a :mod:`medgen.lit` task trains by minimising :meth:`loss`.

    Args:
        sample_size: Spatial size of images (None: set from the data module when training starts).
    """

    #: Family name recorded in checkpoints and model cards.
    family: ClassVar[str] = "unknown"
    #: The task an exported ``config.yaml`` names (a string: no import).
    task_class_path: ClassVar[str] = TASK_CLASS_PATH
    #: The trained network (every model has one; ``torch.compile`` and fine-tuning prefixes address it).
    net: nn.Module

    def __init__(self, sample_size: Collection[int] | None = None) -> None:
        super().__init__()
        self.image_size: tuple[int, ...] | None = None if sample_size is None else tuple(int(s) for s in sample_size)

    # ------------------------------------------------------------------ what subclasses provide
    @property
    def spatial_dims(self) -> int:
        """2 or 3."""
        raise NotImplementedError

    def loss(self, x0: torch.Tensor, cond: Condition | None, generator: torch.Generator) -> torch.Tensor:
        """Scalar training loss of images ``x0`` ``(B, C, *spatial)`` in the data's range, noise from ``generator``."""
        return self.loss_terms(x0, cond, generator)["loss"]

    def loss_terms(
        self, x0: torch.Tensor, cond: Condition | None, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """``{"loss": total, ...}``: the loss and any terms worth logging (scalar tensors)."""
        raise NotImplementedError

    def init_args(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this model (nets and objectives as class configs)."""
        raise NotImplementedError

    def preview(self, x0: torch.Tensor, cond: Condition | None, num: int, generator: torch.Generator) -> torch.Tensor:
        """Images ``(N, C, *spatial)`` for the validation picture, from a validation batch ``x0``."""
        raise NotImplementedError

    def preview_batch(
        self, batch: dict[str, Any], cond: Condition | None, num: int, generator: torch.Generator
    ) -> torch.Tensor:
        """Images for the validation picture from a whole validation batch (default: :meth:`preview` of its images).

        Models that need more than the images (a translation model's source images) override this.
        """
        return self.preview(batch["image"], cond, num, generator)

    def validation_metrics(self, x0: torch.Tensor) -> dict[str, torch.Tensor]:
        """Extra scalar metrics of a validation batch (logged as ``val/<name>``); none by default."""
        return {}

    def prepare(self, x0: torch.Tensor, reduce: Reduce) -> str | None:
        """Hook on the first training batch of a fresh run (e.g. a latent scale); returns a line to print."""
        return None

    def pretrained_loaded(self, names: Collection[str]) -> None:
        """Hook after fine-tuning copied the tensors ``names`` into this model."""

    def condition_from_batch(self, batch: dict[str, Any], image_key: str = "mask") -> Condition | None:
        """The :class:`Condition` this model needs, from a data-module batch (None: unconditional)."""
        return None

    # ------------------------------------------------------------------ shared
    @property
    def device(self) -> torch.device:
        """Device of the first parameter or buffer (CPU for a model without tensors)."""
        tensor = next(itertools.chain(self.parameters(), self.buffers()), None)
        return torch.device("cpu") if tensor is None else tensor.device

    @contextmanager
    def eval_mode(self) -> Iterator[None]:
        """Eval mode for the block; the previous mode is restored afterwards."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    @property
    def config(self) -> dict[str, Any]:
        """``{"class_path", "init_args"}`` that rebuilds this model (allow-listed by :mod:`medgen.models.build`)."""
        args = self.init_args()
        args["sample_size"] = None if self.image_size is None else list(self.image_size)
        cls = type(self)
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": args}

    def describe(self) -> dict[str, Any]:
        """The checkpoint metadata block (``medgen``) describing this model: class config, family, size, sampling."""
        return {
            "version": __version__,
            "format": 2,
            "model": self.config,
            "family": self.family,
            "image_size": None if self.image_size is None else list(self.image_size),
            "spatial_dims": self.spatial_dims,
        }

    # ------------------------------------------------------------------ files
    def save_pretrained(
        self,
        out_dir: str | Path,
        name: str | None = None,
        licence: str = "unspecified",
        source: str = "save_pretrained",
        metrics: dict[str, Any] | None = None,
        describe: dict[str, Any] | None = None,
        dtype: WeightsDtype = "float32",
        extra: dict[str, Any] | None = None,
    ) -> Path:
        """Write ``config.yaml``, ``model.safetensors`` and ``model_card.json`` into ``out_dir`` (the export format).

        ``config.yaml`` is a ``medgen fit`` config (the model inside :attr:`task_class_path`), so an exported model
        can be fine-tuned with ``--config OUT_DIR/config.yaml`` (adversarial families: after a config that names
        the discriminator, e.g. ``configs/gan_2d.yaml``). Files are replaced atomically.

        Args:
            out_dir: Output folder (created).
            name: Model name in the card (default: the folder name).
            licence: Licence of the weights.
            source: What the weights come from (a checkpoint path), recorded.
            metrics: Evaluation results to record.
            describe: Metadata to record instead of :meth:`describe` (a checkpoint's, with its data record).
            dtype: Storage type of the floating-point weights: ``float32``, or ``float16``/``bfloat16`` (half the
                size; the card records it as ``weights_dtype`` and every loader upcasts to float32).
            extra: Further card fields (training command, data sources, wall time …; see
                :func:`medgen.store.card.model_card`), which must not name a field the card computes.

        Returns:
            The folder.
        """
        import yaml
        from safetensors.torch import save_file

        from medgen.data.io import atomic_write
        from medgen.hashing import file_sha256
        from medgen.store.card import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, check_extra, model_card
        from medgen.weights import stored

        check_extra(extra)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: stored(v.detach().cpu(), dtype).contiguous() for k, v in self.state_dict().items()}
        weights = atomic_write(out / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
        config = {"model": {"class_path": self.task_class_path, "init_args": {"model": self.config}}}
        written = atomic_write(out / CONFIG_FILE, lambda tmp: tmp.write_text(yaml.safe_dump(config, sort_keys=False)))
        files = {CONFIG_FILE: file_sha256(written), WEIGHTS_FILE: file_sha256(weights)}
        meta = describe if describe is not None else self.describe()
        card = model_card(name or out.resolve().name, meta, files, licence, source, metrics, dtype, extra)
        atomic_write(out / CARD_FILE, lambda tmp: tmp.write_text(json.dumps(card, indent=2) + "\n"))
        return out

    @classmethod
    def from_pretrained(cls: type[M], ref: str | Path, use_ema: bool = True) -> M:
        """Load a model from an exported folder, a registry name or a ``medgen fit`` checkpoint, in eval mode.

        Exported folders are verified against their card's sha256 first; weights are read with safetensors or
        ``torch.load(weights_only=True)``; only allow-listed classes are built (:mod:`medgen.models.build`).

        Args:
            ref: Exported folder, registry name (``medgen checkpoints list``) or ``.ckpt`` file.
            use_ema: From a ``.ckpt``, the EMA weights when the run kept them.

        Raises:
            InputError: Nothing loadable at ``ref``, a file fails verification, or the model is not a ``cls``.
        """
        from medgen.models.build import model_from_checkpoint, model_from_export
        from medgen.store.ckpt import read_checkpoint
        from medgen.store.registry import resolve

        source = resolve(ref)
        if source.kind == "checkpoint":
            model = model_from_checkpoint(read_checkpoint(source.path), source.path, MODEL_CLASSES, use_ema)
        else:
            model = model_from_export(source, MODEL_CLASSES)
        if not isinstance(model, cls):
            have, want = type(model).__name__, cls.__name__
            raise InputError(ref, f"holds {article(have)} {have}, not {article(want)} {want}")
        return model


#: What a checkpoint's or an export's model ``class_path`` may name (see :mod:`medgen.models.build`).
MODEL_CLASSES = (Allowed("medgen.models.", TrainableModel),)


class GenerativeModel(TrainableModel):
    """A model that draws new images: a network driven by an objective's sampler, with conditions.

    Args:
        net: The network (:class:`~medgen.nets.protocol.GenerativeNet` ``net(x, t, cond)`` for diffusion and flow,
            :class:`~medgen.nets.protocol.GeneratorNet` ``net(z, cond)`` for GANs).
        sampling: Default sampling method, steps and guidance.
        sample_size: Spatial size of samples (None: from the data module when training starts).
    """

    net: ConditionedNet

    def __init__(self, net: ConditionedNet, sampling: SamplingDefaults, sample_size: Collection[int] | None) -> None:
        super().__init__(sample_size)
        self.net = net
        self.sampling = sampling

    @property
    def spatial_dims(self) -> int:
        """2 or 3, as the network is."""
        return int(self.net.spatial_dims)

    @property
    def condition_names(self) -> list[str]:
        """The value-condition columns the network embeds, in order."""
        return list(self.net.condition_names)

    def resolved(
        self, method: str | None = None, num_steps: int | None = None, guidance: float | None = None
    ) -> SamplingDefaults:
        """The sampling actually used: each given option, else this model's default."""
        return SamplingDefaults(
            method=method or self.sampling.method,
            num_steps=int(num_steps or self.sampling.num_steps),
            guidance=float(self.sampling.guidance if guidance is None else guidance),
        )

    def describe(self) -> dict[str, Any]:
        """Base metadata with the network's config (read by model cards) and the sampling defaults."""
        return {**super().describe(), "net": self.net.config, "sampling": asdict(self.sampling)}

    # ------------------------------------------------------------------ spaces
    def encode(self, x0: torch.Tensor) -> torch.Tensor:
        """The space the objective works in, from images (pixel models: the images themselves)."""
        return x0

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images from the objective's space (pixel models: unchanged)."""
        return z

    def space_shape(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(C, *spatial)`` of the objective's space for images of spatial shape ``image_shape``."""
        return (int(self.net.in_channels), *image_shape)

    def sample_shape(self, num_samples: int) -> tuple[int, ...]:
        """Shape of a batch of draws in the objective's space ``(B, C, *spatial)``."""
        if self.image_size is None:
            raise MedgenError("the sample size is unknown: set the model's sample_size or train it with a data module")
        return (num_samples, *self.space_shape(self.image_size))

    # ------------------------------------------------------------------ conditions
    def condition_from_batch(self, batch: dict[str, Any], image_key: str = "mask") -> Condition | None:
        """Values from ``batch["cond"]`` (the net's condition columns) and the image under ``image_key``.

        Raises:
            MedgenError: The batch lacks a condition column or the conditioning/control image the net needs.
        """
        names = self.condition_names
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
        needs = ((self.net.image_channels, "a conditioning image"), (self.net.control_channels, "a control image"))
        for channels, what in needs:
            if channels and image_key not in batch:
                raise MedgenError(f"the net needs {what} but the batch has no '{image_key}'")
        if self.net.image_channels:
            image = batch[image_key]
        if self.net.control_channels:
            control = batch[image_key]
        result = Condition(values=values, image=image, control=control)
        return None if result.is_empty() else result

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        num_samples: int,
        cond: Condition | None = None,
        generator: Generators = None,
        *,
        method: str | None = None,
        num_steps: int | None = None,
        guidance: float | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Draw ``(B, C, *image_size)`` samples in the data's intensity range.

        Args:
            num_samples: Batch size B.
            cond: Conditions of the B samples (None: unconditional).
            generator: One seeded generator, or one per sample (then row i depends only on generator i).
            method: Scheduler (diffusion) or ODE solver (flow); default :attr:`sampling`'s.
            num_steps: Sampling steps; default :attr:`sampling`'s.
            guidance: Classifier-free guidance scale; default :attr:`sampling`'s.
            progress: Show a progress bar.
        """
        with torch.no_grad(), self.eval_mode():
            drawn = self.draw(
                self.sample_shape(num_samples),
                None if cond is None else cond.to(self.device),
                generator,
                self.resolved(method, num_steps, guidance),
                progress,
            )
            return self.decode(drawn)

    def draw(
        self,
        shape: tuple[int, ...],
        cond: Condition | None,
        generator: Generators,
        sampling: SamplingDefaults,
        progress: bool,
    ) -> torch.Tensor:
        """Run the objective's sampler in its own space: ``shape`` ``(B, C, *spatial)`` → same shape."""
        raise NotImplementedError

    def preview(self, x0: torch.Tensor, cond: Condition | None, num: int, generator: torch.Generator) -> torch.Tensor:
        """``num`` samples with the batch's first ``num`` conditions (fixed noise from ``generator``)."""
        n = num if cond is None else int(cond.batch_size or 0)
        return self.sample(n, cond=cond, generator=generator)


class ObjectiveModel(GenerativeModel):
    """A generative model trained by an objective on its network's prediction (diffusion and flow families).

    Subclasses set ``objective`` and define :meth:`predict` (the network in the objective's parametrisation) and
    :meth:`~GenerativeModel.draw`.
    """

    objective: Any

    def init_args(self) -> dict[str, Any]:
        """Network, objective and sampling defaults."""
        return {"net": self.net.config, "objective": self.objective.config, "sampling": asdict(self.sampling)}

    def describe(self) -> dict[str, Any]:
        """Metadata with the objective's config."""
        return {**super().describe(), "objective": self.objective.config}

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: Condition | None) -> torch.Tensor:
        """The network's prediction ``(B, C, *spatial)`` for a training example, in the objective's terms."""
        raise NotImplementedError

    def loss_terms(
        self, x0: torch.Tensor, cond: Condition | None, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """The objective's loss on a training example drawn from ``encode(x0)``."""
        target = self.objective.training_target(self.encode(x0), generator)
        return {"loss": self.objective.loss(self.predict(target.x_t, target.t, cond), target)}
