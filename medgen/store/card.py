"""Model cards: what an exported model is, what it was trained on, and the sha256 that identifies it.

The card is written as JSON (``model_card.json``). Its ``sha256`` is the digest of the card without that field
(:func:`card_digest`), and its ``files`` field holds the sha256 of ``config.yaml`` and ``model.safetensors``, so
one hash covers the weights, the config and the card. :class:`ModelCard` is the typed view readers use; the
digest is always computed on the JSON as written, so cards of older medgen versions verify unchanged.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from medgen import __version__
from medgen.errors import InputError

CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.yaml", "model.safetensors", "model_card.json"


@dataclass(frozen=True)
class ModelCard:
    """Typed view of a model card (or of a ``.ckpt``'s metadata, which has the same fields).

    Attributes:
        name: Model name.
        family: ``diffusion``, ``flow``, ``latent-diffusion``, ``latent-flow`` or ``autoencoder``.
        modality: ``ct``, ``mri``, ``xray`` … or ``unknown``.
        spatial_dims: 2 or 3 (None when unknown).
        image_size: Sample size (None when unknown).
        spacing: Voxel spacing of the training data (mm), None when unknown.
        intensity: The data module's intensity mapping (dict form of :class:`~medgen.data.intensity.IntensityMapping`).
        preprocessing: The data module's preprocessing record.
        conditions: ``{"values": [...], "vocab": {...}, "image_channels": int}``.
        sampling: Default sampling ``{"method", "num_steps", "guidance"}`` (older cards' ``sampler``/``solver``
            are read as ``method``).
        training_data: ``data_dir``, ``n_train``, ``n_subjects`` where known.
        metrics: Evaluation results recorded at export.
        raw: The card as read (what the digest covers).
    """

    name: str
    family: str = "unknown"
    modality: str = "unknown"
    spatial_dims: int | None = None
    image_size: list[int] | None = None
    spacing: list[float] | None = None
    intensity: dict[str, Any] | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)
    conditions: dict[str, Any] = field(default_factory=dict)
    sampling: dict[str, Any] = field(default_factory=dict)
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, card: dict[str, Any]) -> ModelCard:
        """The typed view of a card dict (unknown fields stay in :attr:`raw`)."""
        sampling = dict(card.get("sampling") or {})
        for old in ("sampler", "solver"):
            if old in sampling:
                sampling.setdefault("method", sampling.pop(old))
        return cls(
            name=str(card.get("name", "")),
            family=str(card.get("family") or "unknown"),
            modality=str(card.get("modality") or "unknown"),
            spatial_dims=card.get("spatial_dims"),
            image_size=card.get("image_size"),
            spacing=card.get("spacing"),
            intensity=card.get("intensity"),
            preprocessing=dict(card.get("preprocessing") or {}),
            conditions=dict(card.get("conditions") or {}),
            sampling=sampling,
            training_data=dict(card.get("training_data") or {}),
            metrics=dict(card.get("metrics") or {}),
            raw=dict(card),
        )

    @property
    def vocab(self) -> dict[str, Any]:
        """Condition vocabularies (column → {label: id})."""
        return dict(self.conditions.get("vocab") or {})

    @property
    def weights_dtype(self) -> str:
        """Storage type of the exported weights (``float32`` for cards that do not say; loaded as float32)."""
        return str(self.raw.get("weights_dtype") or "float32")

    @property
    def sha256(self) -> str | None:
        """The card's recorded digest (None for a ``.ckpt``'s metadata)."""
        value = self.raw.get("sha256")
        return None if value is None else str(value)


def card_fields(name: str, meta: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint's ``medgen`` block says about the model: identity, data, conditions, sampling.

    Image-to-image models trained on pairs also carry how the pair inputs were prepared (``source_modality``,
    ``source_intensity``; and ``slice_axis`` where the data record has it), which ``medgen translate`` reads; a
    model conditioned on slice position names that condition in ``slice_position`` (with ``slice_axis``); the keys
    are absent otherwise, so other cards are unchanged.
    """
    data = meta.get("data") or {}
    net_args = (meta.get("net") or {}).get("init_args", {})
    keys = ("source_modality", "source_intensity", "slice_axis", "slice_position")
    inputs = {k: data[k] for k in keys if data.get(k) is not None}
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
        **inputs,
    }


#: Card fields medgen computes; ``extra`` fields (:func:`model_card`) may not replace them.
COMPUTED_FIELDS = (
    *card_fields("", {}),
    "metrics", "licence", "files", "source_checkpoint", "medgen_version", "trained_with_medgen", "weights_dtype",
    "sha256", "source_modality", "source_intensity", "slice_axis", "slice_position",
)  # fmt: skip


def model_card(
    name: str,
    meta: dict[str, Any],
    files: dict[str, str],
    licence: str,
    source: str,
    metrics: dict[str, Any] | None,
    weights_dtype: str = "float32",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The card: :func:`card_fields` plus metrics, licence, versions, the files' sha256 and its own digest.

    Args:
        name: Model name.
        meta: The checkpoint's ``medgen`` block (or a model's :meth:`~medgen.models.base.TrainableModel.describe`).
        files: sha256 of each file of the folder (``config.yaml``, ``model.safetensors``).
        licence: Licence of the weights.
        source: What it was exported from (a checkpoint path, or ``save_pretrained``).
        metrics: Evaluation results to record.
        weights_dtype: Storage type of ``model.safetensors`` (loading upcasts half precision to float32).
        extra: Further fields a training script records, e.g. ``training`` (``command``, ``steps``,
            ``wall_time_s``, ``machine``), ``data_sources`` (name, licence, role of each) and ``evaluation``
            (metrics with their baselines and how they were measured); covered by the digest like the rest.

    Raises:
        InputError: ``extra`` names a field the card computes (:data:`COMPUTED_FIELDS`).
    """
    check_extra(extra)
    card = {
        **card_fields(name, meta),
        "metrics": metrics or {},
        "licence": licence,
        "files": dict(files),
        "source_checkpoint": source,
        "medgen_version": __version__,
        "trained_with_medgen": meta.get("version"),
        "weights_dtype": weights_dtype,
        **(extra or {}),
    }
    return {**card, "sha256": card_digest(card)}


def check_extra(extra: dict[str, Any] | None) -> None:
    """Raise :class:`InputError` when ``extra`` names a field the card computes (:data:`COMPUTED_FIELDS`)."""
    clash = sorted(set(extra or {}) & set(COMPUTED_FIELDS))
    if clash:
        raise InputError("card extra", f"fields {', '.join(clash)} are computed by medgen; use other names")


def card_digest(card: dict[str, Any]) -> str:
    """sha256 of the card without its ``sha256`` field (canonical JSON: sorted keys, no spaces)."""
    body = {k: v for k, v in card.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
