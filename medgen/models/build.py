"""Building models from files: the allow-list of classes a checkpoint or exported config may name.

A checkpoint's metadata and an export's ``config.yaml`` name classes as dotted paths. Only subclasses of
:class:`~medgen.models.base.TrainableModel` under ``medgen.models`` are built as models
(:data:`medgen.models.base.MODEL_CLASSES`, passed in by the caller, so this module does not import the models it
builds), and only networks under ``medgen.nets`` and objectives under ``medgen.objectives`` as their parts
(:data:`COMPONENT_CLASSES`), so a file cannot choose which code runs beyond those constructors. Files written before
the models/tasks split are translated by :mod:`medgen.models.legacy`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from medgen.config import Allowed, construct, instantiate, is_class_config, resolve_class
from medgen.errors import InputError
from medgen.models import legacy
from medgen.models.defaults import SamplingDefaults
from medgen.objectives import DiffusionObjective, FlowObjective
from medgen.store.ckpt import model_state
from medgen.store.registry import ModelSource, load_weights, read_config

if TYPE_CHECKING:
    from medgen.models.base import TrainableModel

#: What a model's parts (networks, autoencoders, objectives; nested too) may name.
COMPONENT_CLASSES = (
    Allowed("medgen.nets.", nn.Module),
    Allowed("medgen.objectives.", DiffusionObjective),
    Allowed("medgen.objectives.", FlowObjective),
)


def build_model(
    class_path: str, init_args: dict[str, Any], source: str | Path, allowed: Sequence[Allowed]
) -> TrainableModel:
    """An allow-listed model built from ``init_args`` whose class configs are allow-listed components.

    Args:
        class_path: Dotted path of a :class:`TrainableModel` subclass, or an old ``medgen.lit`` module's.
        init_args: Constructor arguments; ``{"class_path", "init_args"}`` values are built first.
        source: The checkpoint or config file, named in errors.
        allowed: The model classes it may name (:data:`medgen.models.base.MODEL_CLASSES`).

    Raises:
        InputError: A class outside ``allowed`` / :data:`COMPONENT_CLASSES`, or bad arguments.
    """
    translated = legacy.translate(class_path, init_args)
    if translated is not None:
        class_path, init_args = translated
    cls = resolve_class(class_path, allowed, source)
    args = {k: instantiate(v, COMPONENT_CLASSES, source) if is_class_config(v) else v for k, v in init_args.items()}
    if isinstance(args.get("sampling"), dict):
        try:
            args["sampling"] = SamplingDefaults(**args["sampling"])
        except TypeError as exc:
            raise InputError(source, f"bad sampling defaults ({exc})") from None
    model: TrainableModel = construct(cls, args, source)
    return model


def model_from_checkpoint(
    ckpt: dict[str, Any], path: str | Path, allowed: Sequence[Allowed], use_ema: bool = True
) -> TrainableModel:
    """The model of a checkpoint dict (:func:`~medgen.store.ckpt.read_checkpoint`), weights loaded, in eval mode."""
    meta = ckpt["medgen"]
    if isinstance(meta.get("model"), dict):
        class_path, init_args = str(meta["model"]["class_path"]), dict(meta["model"].get("init_args") or {})
    else:  # before the models/tasks split: the Lightning module's class, parts and hyper-parameters
        hparams = {k: v for k, v in (ckpt.get("hyper_parameters") or {}).items() if not k.startswith("_")}
        parts = {k: meta[k] for k in ("net", "objective", "autoencoder") if isinstance(meta.get(k), dict)}
        class_path, init_args = str(meta["module"]), {**hparams, **parts}
    model = build_model(class_path, init_args, path, allowed)
    _load(model, model_state(ckpt, use_ema), path)
    if meta.get("image_size"):
        model.image_size = tuple(meta["image_size"])
    return model.eval()


def model_from_export(source: ModelSource, allowed: Sequence[Allowed]) -> TrainableModel:
    """The model of an exported folder, its files verified against the card first; in eval mode."""
    state = load_weights(source)  # verifies config.yaml, weights and card
    class_path, init_args = read_config(source.path)
    if class_path.startswith("medgen.lit.") and is_class_config(init_args.get("model")):  # a task wrapping the model
        class_path, init_args = str(init_args["model"]["class_path"]), dict(init_args["model"].get("init_args") or {})
    model = build_model(class_path, init_args, source.path / "config.yaml", allowed)
    _load(model, state, source.path)
    return model.eval()


def _load(model: TrainableModel, state: dict[str, Any], source: str | Path) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(source, f"weights do not fit the model's config ({str(exc).splitlines()[0]})") from None
