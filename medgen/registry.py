"""Finding and loading trained models: a ``.ckpt``, an exported folder, or a registry name.

The registry is every exported folder (one holding ``model_card.json``) directly under the search path:
``./checkpoints``, the ``checkpoints/`` folder of a source checkout, and the folders listed in
``MEDGEN_CHECKPOINTS`` (``os.pathsep``-separated). Loading an exported folder verifies the weights' sha256
against the card first, and reads them with safetensors, which cannot run code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file

from medgen.checkpoints import module_from_checkpoint, read_checkpoint
from medgen.config import instantiate
from medgen.errors import InputError
from medgen.evaluation.features import file_sha256
from medgen.export import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, card_fields
from medgen.lit.base import GenerativeModule


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from.

    Attributes:
        kind: ``checkpoint`` (Lightning ``.ckpt``) or ``export`` (folder written by ``medgen export``).
        path: The ``.ckpt`` file or the exported folder.
        name: Registry or card name (the file stem for a ``.ckpt``).
    """

    kind: str
    path: Path
    name: str

    @property
    def weights_file(self) -> Path:
        """The file whose sha256 identifies the model."""
        return self.path if self.kind == "checkpoint" else self.path / WEIGHTS_FILE


def search_path() -> list[Path]:
    """Registry folders, in lookup order (existing ones only, no duplicates)."""
    candidates = [Path.cwd() / "checkpoints", Path(__file__).resolve().parents[1] / "checkpoints"]
    candidates += [Path(p) for p in os.environ.get("MEDGEN_CHECKPOINTS", "").split(os.pathsep) if p]
    seen: list[Path] = []
    for c in candidates:
        if c.is_dir() and c.resolve() not in seen:
            seen.append(c.resolve())
    return seen


def list_models() -> list[ModelSource]:
    """Every exported model in the registry folders, sorted by name (the first folder wins on a clash)."""
    found: dict[str, ModelSource] = {}
    for folder in search_path():
        for card in sorted(folder.glob(f"*/{CARD_FILE}")):
            found.setdefault(card.parent.name, ModelSource("export", card.parent, card.parent.name))
    return [found[k] for k in sorted(found)]


def resolve(ref: str | Path) -> ModelSource:
    """Turn a ``.ckpt`` path, an exported folder or a registry name into a :class:`ModelSource`.

    Raises:
        InputError: Nothing of that name exists.
    """
    path = Path(ref)
    if path.is_file():
        return ModelSource("checkpoint", path, path.stem)
    if path.is_dir():
        if not (path / CARD_FILE).is_file():
            raise InputError(path, f"not an exported model folder (no {CARD_FILE}); export one with medgen export")
        return ModelSource("export", path, path.name)
    for source in list_models():
        if source.name == str(ref):
            return source
    names = ", ".join(s.name for s in list_models()) or "none"
    raise InputError(ref, f"no such checkpoint file, exported folder or registry name (registry has: {names})")


def read_card(folder: Path) -> dict[str, Any]:
    """The parsed ``model_card.json`` of an exported folder."""
    try:
        card = json.loads((folder / CARD_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(folder / CARD_FILE, f"unreadable model card ({exc})") from None
    if not isinstance(card, dict) or "sha256" not in card:
        raise InputError(folder / CARD_FILE, "model card has no 'sha256' field")
    return card


def verify(source: ModelSource) -> str:
    """Check the weights' sha256 against the card; returns the digest.

    Raises:
        InputError: The weights file is missing or its sha256 differs from the card's.
    """
    if source.kind == "checkpoint":
        read_checkpoint(source.path)  # readable, medgen metadata present
        return file_sha256(source.path)
    card = read_card(source.path)
    weights = source.weights_file
    if not weights.is_file():
        raise InputError(weights, "weights file is missing")
    digest = file_sha256(weights)
    if digest != card["sha256"]:
        raise InputError(
            weights, f"sha256 {digest[:16]}… does not match the model card's {str(card['sha256'])[:16]}… (tampered?)"
        )
    return digest


def load_weights(source: ModelSource) -> dict[str, torch.Tensor]:
    """The verified state dict of an exported folder (safetensors)."""
    verify(source)
    try:
        return load_file(str(source.weights_file))
    except (SafetensorError, OSError) as exc:
        raise InputError(source.weights_file, f"cannot read safetensors weights ({exc})") from None


def load_exported(folder: str | Path) -> GenerativeModule:
    """Rebuild a module from an exported folder, weights verified; in eval mode."""
    source = ModelSource("export", Path(folder), Path(folder).name)
    state = load_weights(source)
    try:
        config = yaml.safe_load((source.path / CONFIG_FILE).read_text())["model"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise InputError(source.path / CONFIG_FILE, f"unreadable model config ({exc})") from None
    try:
        module: GenerativeModule = instantiate(config)  # builds the nested net and objective too
    except ValueError as exc:  # a class outside medgen
        raise InputError(source.path / CONFIG_FILE, str(exc)) from None
    module.load_state_dict(state)
    return module.eval()


class LoadedModel(NamedTuple):
    """A model ready to sample, with where it came from.

    Attributes:
        module: The module in eval mode.
        source: Where it was loaded from.
        card: Its model card (for a ``.ckpt``: the card fields of its metadata, see :func:`model_info`).
        sha256: sha256 of the weights file (verified against the card for exports).
    """

    module: GenerativeModule
    source: ModelSource
    card: dict[str, Any]
    sha256: str


def load_model(ref: str | Path, use_ema: bool = True) -> LoadedModel:
    """Load a model to sample from, from any :func:`resolve`-able reference (each file is read once)."""
    source = resolve(ref)
    if source.kind == "checkpoint":
        ckpt = read_checkpoint(source.path)
        module = module_from_checkpoint(ckpt, source.path, use_ema)
        return LoadedModel(module, source, card_fields(source.name, ckpt["medgen"]), file_sha256(source.path))
    module = load_exported(source.path)
    return LoadedModel(module, source, read_card(source.path), verify(source))


def model_info(source: ModelSource) -> dict[str, Any]:
    """The card of an export, or the card fields of a ``.ckpt``'s metadata."""
    if source.kind == "export":
        return read_card(source.path)
    return card_fields(source.name, read_checkpoint(source.path)["medgen"])
