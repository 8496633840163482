"""Conditions of generated samples: ``--condition KEY=VALUE`` for all, or a CSV with one row per sample.

Value conditions (class labels, scalars) are the net's condition columns; text values are coded with the
training data's vocabulary. A column left out is null (NaN), which a model trained with condition dropout
reads as "unconditional" for that column. Image conditions (``mask=PATH``, ``image=PATH``) feed the net's
conditioning-image channels or its ControlNet; they go through the data module's own steps (RAS, the training
spacing, the modality preset for images but never for masks, the training resize mode), as in training.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from medgen.data.presets import IntensityPreset
from medgen.data.transforms import ResizeMode
from medgen.errors import InputError
from medgen.hashing import file_sha256
from medgen.nets.condition import Condition

#: Keys that name a conditioning image rather than a value.
IMAGE_KEYS = ("mask", "image", "control")


@dataclass(frozen=True)
class ConditionPlan:
    """What each sample is conditioned on.

    Attributes:
        rows: Per sample index, the raw ``key → value`` given (text or number; image paths as text).
        names: The net's value-condition columns, in order.
        vocab: Text values of text columns, in code order.
        image_field: ``image`` or ``control`` when the net takes a conditioning image, else ``None``.
        chain: How the training data module prepared images (conditioning images are prepared the same way).
    """

    rows: list[dict[str, str]]
    names: list[str]
    vocab: dict[str, list[str]]
    image_field: str | None
    chain: TrainingChain = field(default_factory=lambda: TrainingChain())

    def row(self, index: int) -> dict[str, str]:
        """The raw conditions of sample ``index`` (the last row repeats for a single ``--condition`` set)."""
        return self.rows[min(index, len(self.rows) - 1)] if self.rows else {}

    def values(self, index: int) -> torch.Tensor | None:
        """``(K,)`` condition values of sample ``index`` (NaN where not given), or None without value conditions."""
        if not self.names:
            return None
        row = self.row(index)
        return torch.tensor([self._code(name, row.get(name)) for name in self.names], dtype=torch.float32)

    def _code(self, name: str, raw: str | None) -> float:
        if raw is None or raw == "":
            return math.nan
        if name in self.vocab:
            if raw in self.vocab[name]:
                return float(self.vocab[name].index(raw))
            try:
                code = int(raw)
            except ValueError:
                raise InputError(
                    f"condition {name}", f"unknown value '{raw}' (expected one of {', '.join(self.vocab[name])})"
                ) from None
            if not 0 <= code < len(self.vocab[name]):
                raise InputError(f"condition {name}", f"code {code} out of range 0..{len(self.vocab[name]) - 1}")
            return float(code)
        try:
            return float(raw)
        except ValueError:
            raise InputError(f"condition {name}", f"expected a number, got '{raw}'") from None

    def row_digest(self, index: int) -> str:
        """sha256 of sample ``index``'s conditions: the values as given and the content of its images."""
        row = self.row(index)
        h = hashlib.sha256(json.dumps(row, sort_keys=True).encode())
        for key in IMAGE_KEYS:
            if row.get(key):
                h.update(_file_digest(row[key]).encode())
        return h.hexdigest()

    def image_path(self, index: int) -> str | None:
        """The conditioning-image path of sample ``index``."""
        row = self.row(index)
        return next((row[k] for k in IMAGE_KEYS if row.get(k)), None)


def _stamp(path: str) -> tuple[int, int]:
    """(modification time in ns, size) of a file, so that caches keyed by path notice a rewritten file."""
    try:
        stat = Path(path).stat()
    except OSError:
        return (0, -1)
    return (stat.st_mtime_ns, stat.st_size)


def _file_digest(path: str) -> str:
    """sha256 of a conditioning image's file (empty when it is missing: reading it reports that)."""
    return _digest(path, _stamp(path))


@functools.lru_cache(maxsize=256)
def _digest(path: str, stamp: tuple[int, int]) -> str:
    if not Path(path).is_file():
        return ""
    return file_sha256(path)  # hashlib.file_digest needs Python 3.11; medgen supports 3.10


def parse_pairs(pairs: list[str]) -> dict[str, str]:
    """``["label=2", "age=70"]`` → ``{"label": "2", "age": "70"}``.

    Raises:
        InputError: An item without ``=`` or with an empty key.
    """
    out: dict[str, str] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError("condition", f"expected KEY=VALUE, got '{item}'")
        out[key.strip()] = value.strip()
    return out


def read_sweep(path: str | Path) -> list[dict[str, str]]:
    """Rows of a condition CSV (header = condition keys; one row per sample, in index order)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "condition CSV does not exist")
    with p.open(newline="") as handle:
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(handle)]
    if not rows:
        raise InputError(p, "condition CSV has a header but no rows")
    return rows


@dataclass(frozen=True)
class TrainingChain:
    """The data module's preparation of training images, as a model card records it.

    Attributes:
        modality: ``ct``, ``mri``, ``xray`` or ``auto``.
        preset: The intensity preset (images only; masks are never normalised).
        target_spacing: The spacing images were resampled to before sizing (None: the file's grid).
        resize_mode: ``resize`` (keep aspect, pad) or ``pad_crop`` (keep voxel size).
    """

    modality: str = "auto"
    preset: IntensityPreset = field(default_factory=IntensityPreset)
    target_spacing: tuple[float, ...] | None = None
    resize_mode: ResizeMode = "resize"

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> TrainingChain:
        """From a card's ``modality``, ``intensity`` and ``preprocessing`` (older cards: the defaults)."""
        prep = card.get("preprocessing") or {}
        spacing = prep.get("target_spacing")
        geometry: dict[str, Any] = {"target_spacing": None if spacing is None else tuple(float(v) for v in spacing),
                                    "resize_mode": prep.get("resize_mode") or "resize"}  # fmt: skip
        intensity, modality = card.get("intensity") or {}, str(card.get("modality") or "auto")
        kind = intensity.get("kind") if modality in ("ct", "mri", "xray") else None
        if kind == "window":
            preset = IntensityPreset(ct_window=(float(intensity["low"]), float(intensity["high"])))
        elif kind == "zscore":
            preset = IntensityPreset(mri_zscore=True)
        elif kind == "percentile":
            pct = (float(intensity["low"]), float(intensity["high"]))
            preset = IntensityPreset(mri_percentiles=pct, xray_percentiles=pct)
        else:
            return cls(**geometry)
        return cls(modality, preset, **geometry)


def make_plan(
    net: Any, vocab: dict[str, list[str]], rows: list[dict[str, str]], card: dict[str, Any] | None = None
) -> ConditionPlan:
    """Check the given keys against what ``net`` takes and build the plan.

    Args:
        net: The network (its ``condition_names``, ``image_channels`` and ``control_channels`` are read).
        vocab: Text values of text columns, in code order.
        rows: Conditions per sample index.
        card: Model card: conditioning images are prepared as its :class:`TrainingChain` says.

    Raises:
        InputError: A key the net does not take, or a conditioning image the net needs but was not given.
    """
    names = list(getattr(net, "condition_names", []))
    image_field = (
        "image" if getattr(net, "image_channels", 0) else "control" if getattr(net, "control_channels", 0) else None
    )
    allowed = set(names) | (set(IMAGE_KEYS) if image_field else set())
    for row in rows:
        unknown = sorted(set(row) - allowed)
        if unknown:
            takes = ", ".join(sorted(allowed)) or "no conditions"
            raise InputError(f"condition {unknown[0]}", f"the model does not take this condition (it takes: {takes})")
        if image_field and not any(row.get(k) for k in IMAGE_KEYS):
            raise InputError("conditions", "the model needs a conditioning image: pass mask=PATH or image=PATH")
    if image_field and not rows:
        raise InputError("conditions", "the model needs a conditioning image: pass mask=PATH or image=PATH")
    return ConditionPlan(rows, names, vocab, image_field, TrainingChain.from_card(card or {}))


def load_condition_image(
    path: str, size: tuple[int, ...], is_mask: bool, chain: TrainingChain | None = None
) -> torch.Tensor:
    """A conditioning image as the data module presents it in training: ``(1, *size)``.

    The data module's own steps (:func:`medgen.data.transforms.volume_chain` and
    :class:`~medgen.data.transforms.SizeTod`) with the training ``chain``: read, a volume reoriented to RAS,
    resampled to the target spacing, the intensity preset for images (never for masks), sized by the
    training resize mode (nearest and background 0 for masks). Cached by path and file stamp: one
    ``--condition mask=PATH`` serves every sample, every retry and the paired mask output, and a rewritten file
    is read again. Callers must not modify the returned tensor.
    """
    return _prepared(path, _stamp(path), size, is_mask, chain or TrainingChain())


@functools.lru_cache(maxsize=64)
def _prepared(
    path: str, stamp: tuple[int, int], size: tuple[int, ...], is_mask: bool, chain: TrainingChain
) -> torch.Tensor:
    from monai.transforms import Compose

    from medgen.data.datasets import reraise_medgen
    from medgen.data.transforms import SizeTod, ToSampled, volume_chain

    modality, preset = (chain.modality, chain.preset) if not is_mask else ("mri", IntensityPreset())
    spacing = chain.target_spacing if chain.target_spacing and len(chain.target_spacing) == len(size) else None
    # A mask rides in the chain's mask slot; the image slot's copy (any fixed preset serves) is dropped.
    steps = Compose([*volume_chain(len(size), modality, preset, spacing), SizeTod(size, chain.resize_mode)])
    data = {"image": path, "mask": path} if is_mask else {"image": path}
    out = reraise_medgen(lambda: ToSampled()(steps(data)))
    return out["mask" if is_mask else "image"]


def batch_condition(plan: ConditionPlan, indices: list[int], size: tuple[int, ...]) -> Condition | None:
    """The :class:`Condition` of a batch of sample indices (``None`` when the model is unconditional)."""
    values = None
    if plan.names:
        values = torch.stack([plan.values(i) for i in indices])  # type: ignore[misc]
    image = None
    if plan.image_field:
        tensors = []
        for i in indices:
            row = plan.row(i)
            path = plan.image_path(i)
            assert path is not None
            tensors.append(load_condition_image(path, size, bool(row.get("mask")), plan.chain))
        image = torch.stack(tensors)
    cond = Condition(values=values, image=image if plan.image_field == "image" else None,
                     control=image if plan.image_field == "control" else None)  # fmt: skip
    return None if cond.is_empty() else cond
