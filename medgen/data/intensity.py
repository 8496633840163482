"""How the training data's stored intensities map to the model's [-1, 1]: the record checkpoints and cards keep.

The data module builds an :class:`IntensityMapping` (:meth:`medgen.data.datamodule.MedicalImageDataModule.describe`);
checkpoints and model cards store its :meth:`~IntensityMapping.to_dict` form, which is kept key for key and
value for value as it always was (``{"kind": "window", "low", "high", "unit"}`` for CT, ``{"kind": "zscore"}``
and ``{"kind": "percentile", "low", "high"}``), so older checkpoints keep loading through
:meth:`~IntensityMapping.from_dict`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from medgen.errors import InputError

__all__ = ["IntensityKind", "IntensityMapping", "as_intensity"]

IntensityKind = Literal["window", "zscore", "percentile"]
_KINDS = ("window", "zscore", "percentile")
_FIELDS = ("kind", "low", "high", "unit")


@dataclass(frozen=True)
class IntensityMapping:
    """One training intensity mapping.

    Attributes:
        kind: ``window`` (a fixed CT window, linear and invertible to ``unit``), ``zscore`` or ``percentile``
            (per-image MRI/X-ray scalings, not invertible).
        low: Lower window bound (``window``, in ``unit``) or lower percentile (``percentile``); else None.
        high: Upper window bound or upper percentile; else None.
        unit: Unit of a window's bounds (``HU``); None where not recorded (readers assume ``HU``).
        extra: Any further ``(key, value)`` pairs of a stored dict, kept so that it round-trips unchanged.
    """

    kind: IntensityKind
    low: float | None = None
    high: float | None = None
    unit: str | None = None
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def invertible(self) -> bool:
        """Whether samples map back to stored units exactly (a window with both bounds)."""
        return self.kind == "window" and self.low is not None and self.high is not None

    def to_dict(self) -> dict[str, Any]:
        """The stored form: ``kind`` first, then ``low``, ``high``, ``unit`` where set, then any extra keys."""
        out: dict[str, Any] = {"kind": self.kind}
        for key in ("low", "high", "unit"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IntensityMapping:
        """Read the stored form.

        Values are kept as stored, so ``from_dict(d).to_dict() == d`` for every dict the data module writes.

        Raises:
            InputError: ``kind`` is missing or unknown.
        """
        kind = d.get("kind")
        if kind not in _KINDS:
            raise InputError("IntensityMapping.kind", f"expected one of {', '.join(_KINDS)}, got {kind!r}")
        extra = tuple((k, v) for k, v in d.items() if k not in _FIELDS)
        return cls(cast(IntensityKind, kind), d.get("low"), d.get("high"), d.get("unit"), extra)


def as_intensity(value: IntensityMapping | Mapping[str, Any] | None) -> IntensityMapping | None:
    """``value`` as a record, or None.

    A stored dict is read with :meth:`IntensityMapping.from_dict`; ``None`` and an empty dict (a card without a
    mapping) give ``None``.
    """
    if value is None or isinstance(value, IntensityMapping):
        return value
    return IntensityMapping.from_dict(value) if value else None
