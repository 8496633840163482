"""``medgen export CKPT OUT_DIR``: a self-describing model folder that loads without pickles.

The folder holds ``config.yaml`` (a ``medgen fit`` config whose ``model`` is the trained model), ``model.safetensors``
(EMA weights when the run kept them) and ``model_card.json`` (what the model is, what it was trained on, the sha256
of both files under ``files``); see :meth:`medgen.models.base.TrainableModel.save_pretrained`. Lightning
checkpoints also hold optimizer and RNG states and are read with ``torch.load``; an exported folder is the format
to share, and it is self-contained (a ControlNet's base weights are in ``model.safetensors``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medgen.models.base import MODEL_CLASSES
from medgen.models.build import model_from_checkpoint
from medgen.store.ckpt import read_checkpoint
from medgen.weights import WeightsDtype


def export_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    name: str | None = None,
    use_ema: bool = True,
    licence: str = "unspecified",
    metrics: dict[str, Any] | None = None,
    dtype: WeightsDtype = "float32",
    card_extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``config.yaml``, ``model.safetensors`` and ``model_card.json`` of a checkpoint's model into ``out_dir``.

    The card's ``training`` field gets the checkpoint's optimizer ``steps`` and ``epochs`` (kept where
    ``card_extra["training"]`` states them).

    Args:
        checkpoint: A ``.ckpt`` written by ``medgen fit`` (any medgen version).
        out_dir: Output folder (created; existing files of the same names are replaced atomically).
        name: Model name in the card (default: the folder name).
        use_ema: Export the EMA weights when the run kept them.
        licence: Licence of the weights, recorded in the card.
        metrics: Evaluation results to record (e.g. ``report.json``'s ``metrics``).
        dtype: Storage type of the weights (``float16`` halves the folder; loading upcasts to float32).
        card_extra: Further card fields (training command, data sources and licences, wall time, machine,
            baselines; see :func:`medgen.store.card.model_card`).

    Returns:
        The output folder.

    Raises:
        InputError: ``card_extra`` names a field the card computes, or ``dtype`` is unknown.
    """
    ckpt = read_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt, checkpoint, MODEL_CLASSES, use_ema)
    meta = dict(ckpt["medgen"])
    if "model" not in meta:  # an older checkpoint: describe the model as it is now, with the run's data record
        meta = {**model.describe(), "data": meta.get("data"), "version": meta.get("version")}
    extra = dict(card_extra or {})
    training = extra.get("training")
    steps = {"steps": ckpt.get("global_step"), "epochs": ckpt.get("epoch")}
    extra["training"] = {**steps, **training} if isinstance(training, dict) else steps
    return model.save_pretrained(out_dir, name, licence, str(checkpoint), metrics, meta, dtype, extra)
