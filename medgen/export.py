"""``medgen export CKPT OUT_DIR``: a self-describing model folder that loads without pickles.

The folder holds ``config.yaml`` (the resolved ``model:`` section, usable as a ``medgen fit --config``),
``model.safetensors`` (EMA weights when the run kept them) and ``model_card.json`` (what the model is, what
it was trained on, the sha256 of both files under ``files``). The card's ``sha256`` is the digest of the card
without that field (:func:`card_digest`), so it covers the weights, the config and the card: one hash
identifies the model. Lightning checkpoints also hold optimizer state and RNG states and are loaded with
``torch.load``; an exported folder is the format to share, and it is self-contained (a ControlNet's base
weights are in ``model.safetensors``; nothing refers to the training files).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from medgen import __version__
from medgen.hashing import file_sha256

CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.yaml", "model.safetensors", "model_card.json"

#: Init arguments that describe how a model was trained rather than what it is (at any nesting level; a
#: ControlNet's ``base_weights`` file is in the exported weights, which is what keeps an export self-contained).
_TRAINING_ONLY = ("init_from", "init_strict", "init_min_match", "freeze", "autoencoder_from", "base_weights")


def model_config(module_path: str, meta: dict[str, Any], hparams: dict[str, Any]) -> dict[str, Any]:
    """The ``model:`` section that rebuilds the module: class path, net, objective and hyper-parameters."""
    from medgen.checkpoints import COMPONENTS  # torch: imported when a model is exported, not for reading cards

    init_args = {k: v for k, v in hparams.items() if not k.startswith("_") and k not in _TRAINING_ONLY}
    init_args.update({k: _what_it_is(meta[k]) for k in COMPONENTS if meta.get(k) is not None})
    if meta.get("image_size"):
        init_args["sample_size"] = list(meta["image_size"])
    return {"model": {"class_path": module_path, "init_args": init_args}}


def _what_it_is(config: Any) -> Any:
    """A component's class config without :data:`_TRAINING_ONLY` arguments, nested configs included."""
    if not isinstance(config, dict) or "class_path" not in config:
        return config
    args = {k: _what_it_is(v) for k, v in (config.get("init_args") or {}).items() if k not in _TRAINING_ONLY}
    return {**config, "init_args": args}


def card_fields(name: str, meta: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint's ``medgen`` block says about the model: identity, data, conditions, sampling."""
    data = meta.get("data") or {}
    net_args = (meta.get("net") or {}).get("init_args", {})
    return {
        "name": name,
        "family": meta.get("family", "unknown"),
        "modality": data.get("modality", "unknown"),
        "spatial_dims": meta.get("spatial_dims"),
        "image_size": meta.get("image_size"),
        "spacing": data.get("spacing"),
        "intensity": data.get("intensity"),
        "preprocessing": data.get("preprocessing") or {},
        "conditions": {
            "values": net_args.get("conditions", []),
            "vocab": data.get("vocab", {}),
            "image_channels": net_args.get("image_channels", 0),
        },
        "sampling": meta.get("sampling", {}),
        "training_data": {k: data.get(k) for k in ("data_dir", "n_train", "n_subjects") if k in data},
    }


def model_card(
    name: str, meta: dict[str, Any], files: dict[str, str], licence: str, source: str, metrics: dict[str, Any] | None
) -> dict[str, Any]:
    """The card: :func:`card_fields` plus metrics, licence, versions, the files' sha256 and its own digest.

    Args:
        name: Model name.
        meta: The checkpoint's ``medgen`` block.
        files: sha256 of each file of the folder (``config.yaml``, ``model.safetensors``).
        licence: Licence of the weights.
        source: The checkpoint it was exported from.
        metrics: Evaluation results to record.
    """
    card = {
        **card_fields(name, meta),
        "metrics": metrics or {},
        "licence": licence,
        "files": dict(files),
        "source_checkpoint": source,
        "medgen_version": __version__,
        "trained_with_medgen": meta.get("version"),
    }
    return {**card, "sha256": card_digest(card)}


def card_digest(card: dict[str, Any]) -> str:
    """sha256 of the card without its ``sha256`` field (canonical JSON: sorted keys, no spaces)."""
    body = {k: v for k, v in card.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def export_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    name: str | None = None,
    use_ema: bool = True,
    licence: str = "unspecified",
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write ``config.yaml``, ``model.safetensors`` and ``model_card.json`` into ``out_dir``.

    Args:
        checkpoint: A ``.ckpt`` written by ``medgen fit``.
        out_dir: Output folder (created; existing files of the same names are replaced atomically).
        name: Model name in the card (default: the folder name).
        use_ema: Export the EMA weights when the run kept them.
        licence: Licence of the weights, recorded in the card.
        metrics: Evaluation results to record (e.g. ``report.json``'s ``metrics``).

    Returns:
        The output folder.
    """
    from safetensors.torch import save_file

    from medgen.checkpoints import module_from_checkpoint, read_checkpoint
    from medgen.data.io import atomic_write

    ckpt = read_checkpoint(checkpoint)
    module = module_from_checkpoint(ckpt, checkpoint, use_ema)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    weights = atomic_write(out / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    meta = ckpt["medgen"]
    config = model_config(str(meta["module"]), meta, dict(ckpt.get("hyper_parameters", {})))
    written = atomic_write(out / CONFIG_FILE, lambda tmp: tmp.write_text(yaml.safe_dump(config, sort_keys=False)))
    files = {CONFIG_FILE: file_sha256(written), WEIGHTS_FILE: file_sha256(weights)}
    card = model_card(name or out.resolve().name, meta, files, licence, str(checkpoint), metrics)
    atomic_write(out / CARD_FILE, lambda tmp: tmp.write_text(json.dumps(card, indent=2) + "\n"))
    return out
