"""Loading a model to use from any reference: a ``.ckpt``, an exported folder or a registry name.

:func:`load_model` returns the model with where it came from, its card and the sha256 that identifies it, which
generation records. Exports are verified against their card before anything is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from medgen.hashing import file_sha256
from medgen.models.base import MODEL_CLASSES, TrainableModel
from medgen.models.build import model_from_checkpoint, model_from_export
from medgen.store.card import ModelCard, card_fields
from medgen.store.ckpt import read_checkpoint
from medgen.store.registry import ModelSource, read_card, resolve, verify


class LoadedModel(NamedTuple):
    """A model ready to use, with where it came from.

    Attributes:
        model: The model in eval mode.
        source: Where it was loaded from.
        card: Its model card (for a ``.ckpt``: the card fields of its metadata).
        sha256: An export card's verified digest, or the ``.ckpt`` file's sha256.
    """

    model: TrainableModel
    source: ModelSource
    card: ModelCard
    sha256: str


def load_model(ref: str | Path, use_ema: bool = True) -> LoadedModel:
    """Load a model from a ``.ckpt`` path, an exported folder or a registry name (each file is read once).

    Args:
        ref: What to load (see :func:`~medgen.store.registry.resolve`).
        use_ema: From a ``.ckpt``, the EMA weights when the run kept them; False: the raw training weights.

    Raises:
        InputError: Nothing at ``ref``, a file fails verification, or a class outside the allow-list.
    """
    source = resolve(ref)
    if source.kind == "checkpoint":
        ckpt = read_checkpoint(source.path)
        model = model_from_checkpoint(ckpt, source.path, MODEL_CLASSES, use_ema)
        card = ModelCard.from_dict(card_fields(source.name, ckpt["medgen"]))
        return LoadedModel(model, source, card, file_sha256(source.path))
    model = model_from_export(source, MODEL_CLASSES)
    return LoadedModel(model, source, ModelCard.from_dict(read_card(source.path)), verify(source))
