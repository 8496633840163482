"""Finding and loading trained models: a ``.ckpt``, an exported folder, or a registry name.

The registry is every exported folder (one holding ``model_card.json``) directly under the search path, in
this order: the folders listed in ``MEDGEN_CHECKPOINTS`` (``os.pathsep``-separated), then the ``checkpoints/``
folder of the installed package's source tree. The current directory is never searched, so a ``./checkpoints``
folder cannot take over a name. Loading an exported folder verifies ``config.yaml``, ``model.safetensors`` and
the card against the card's sha256 first, reads the weights with safetensors (which cannot run code) and
builds only allow-listed classes (:data:`medgen.models.base.MODEL_CLASSES`).

Cards written before the card covered ``config.yaml`` (no ``files`` field) still load: their weights are
verified and a warning says that the config is not covered; re-export the model to cover it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medgen.errors import InputError
from medgen.hashing import file_sha256
from medgen.store.card import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, card_digest, card_fields

if TYPE_CHECKING:  # torch is imported when weights are read, not to list or verify cards
    import torch

log = logging.getLogger(__name__)

#: The ``checkpoints/`` folder beside the installed ``medgen`` package (a source checkout or editable install).
PACKAGE_CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"


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
    """Registry folders in lookup order: ``MEDGEN_CHECKPOINTS``, then :data:`PACKAGE_CHECKPOINTS`.

    Existing folders only, without duplicates; never the current directory.
    """
    candidates = [Path(p) for p in os.environ.get("MEDGEN_CHECKPOINTS", "").split(os.pathsep) if p]
    candidates.append(PACKAGE_CHECKPOINTS)
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

    A bare name that is both a registry model and a file or folder in the current directory is refused as
    ambiguous (write ``./NAME`` for the local one), so a local folder cannot stand in for a registry model.

    Raises:
        InputError: Nothing of that name exists, or a bare name is ambiguous.
    """
    path = Path(ref)
    named = [s for s in list_models() if s.name == str(ref)]
    if named and path.exists() and len(path.parts) == 1 and not str(ref).startswith("."):
        raise InputError(ref, f"is both a registry model ({named[0].path}) and a local path; write ./{ref} "
                              "for the local one or give the registry folder's full path")  # fmt: skip
    if path.is_file():
        return ModelSource("checkpoint", path, path.stem)
    if path.is_dir():
        if not (path / CARD_FILE).is_file():
            raise InputError(path, f"not an exported model folder (no {CARD_FILE}); export one with medgen export")
        return ModelSource("export", path, path.name)
    if named:
        return named[0]
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


def model_info(source: ModelSource) -> dict[str, Any]:
    """An export's card as written, or the card fields of a ``.ckpt``'s metadata (torch only for a ``.ckpt``)."""
    if source.kind == "export":
        return read_card(source.path)
    from medgen.store.ckpt import read_checkpoint

    return card_fields(source.name, read_checkpoint(source.path)["medgen"])


def verify(source: ModelSource) -> str:
    """Check an export's files and card against the card's sha256; returns the digest that identifies the model.

    For an export: each file's sha256 must equal the card's ``files`` entry, and the card's ``sha256`` the
    digest of the rest of the card (:func:`~medgen.store.card.card_digest`). For a ``.ckpt``: its file sha256.

    Raises:
        InputError: A file is missing, or a file or the card differs from what the card records.
    """
    if source.kind == "checkpoint":
        from medgen.store.ckpt import read_checkpoint

        read_checkpoint(source.path)  # readable, medgen metadata present
        return file_sha256(source.path)
    card = read_card(source.path)
    files = card.get("files")
    if files is None:  # card written before it covered config.yaml: only the weights are covered
        log.warning("%s: this card's sha256 covers the weights only, not %s; re-export the model to cover it",
                    source.path / CARD_FILE, CONFIG_FILE)  # fmt: skip
        _check_file(source.weights_file, str(card["sha256"]))
        return str(card["sha256"])
    if not isinstance(files, dict) or sorted(files) != sorted((CONFIG_FILE, WEIGHTS_FILE)):
        raise InputError(source.path / CARD_FILE, f"'files' must give the sha256 of {CONFIG_FILE} and {WEIGHTS_FILE}")
    for name, expected in files.items():
        _check_file(source.path / name, str(expected))
    digest = card_digest(card)
    if digest != card["sha256"]:
        raise InputError(
            source.path / CARD_FILE,
            f"card contents hash to {digest[:16]}…, not its sha256 {str(card['sha256'])[:16]}… (edited?)",
        )
    return digest


def _check_file(path: Path, expected: str) -> None:
    """Raise :class:`InputError` unless ``path`` exists and its sha256 is ``expected``."""
    if not path.is_file():
        raise InputError(path, "file is missing from the exported folder")
    digest = file_sha256(path)
    if digest != expected:
        raise InputError(path, f"sha256 {digest[:16]}… does not match the model card's {expected[:16]}… (tampered?)")


def load_weights(source: ModelSource) -> dict[str, torch.Tensor]:
    """The verified state dict of an exported folder (safetensors)."""
    from medgen.weights import read_state

    verify(source)
    return read_state(source.weights_file)


def read_config(folder: Path) -> tuple[str, dict[str, Any]]:
    """``(class_path, init_args)`` of the ``model:`` section of an exported folder's ``config.yaml``.

    Raises:
        InputError: The file is missing or is not a ``model: {class_path, init_args}`` mapping.
    """
    import yaml

    config_file = folder / CONFIG_FILE
    try:
        config = yaml.safe_load(config_file.read_text())["model"]
        return str(config["class_path"]), dict(config.get("init_args") or {})
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise InputError(config_file, f"unreadable model config ({exc})") from None
