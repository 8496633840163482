"""The conditioning a network receives: values (labels, scalars), a concatenated image, a control image.

One dataclass crosses every boundary (data → model → sampler) so that classifier-free guidance can treat
all kinds of conditioning alike: :meth:`Condition.dropped` is the unconditional input, and
:meth:`Condition.cat` batches conditional and unconditional inputs for one network call.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class Condition:
    """Per-sample conditioning; every field is optional.

    Attributes:
        values: ``(B, K)`` float tensor of K condition columns (class ids as floats, scalars such as age).
            ``NaN`` marks a dropped entry: the network uses a learned null embedding for it.
        image: ``(B, C_img, *spatial)`` image/mask concatenated to the network input along channels
            (paired image-to-image such as MR→CT, mask→image). Dropped = zeros.
        control: ``(B, C_ctrl, *spatial)`` input of a ControlNet. Dropped = zeros.
    """

    values: torch.Tensor | None = None
    image: torch.Tensor | None = None
    control: torch.Tensor | None = None

    @property
    def batch_size(self) -> int | None:
        """Batch size of the first present field (None when empty)."""
        for t in (self.values, self.image, self.control):
            if t is not None:
                return int(t.shape[0])
        return None

    def is_empty(self) -> bool:
        """True when no field is set."""
        return self.values is None and self.image is None and self.control is None

    def dropped(self, mask: torch.Tensor | None = None) -> Condition:
        """The condition with the entries of ``mask`` (``(B,)`` bool; default all) dropped.

        Values become NaN; images and control inputs become zeros.
        """
        return Condition(
            values=_drop(self.values, mask, float("nan")),
            image=_drop(self.image, mask, 0.0),
            control=_drop(self.control, mask, 0.0),
        )

    def cat(self, other: Condition) -> Condition:
        """Concatenate two conditions along the batch (for one guided network call)."""
        return Condition(
            values=_cat(self.values, other.values),
            image=_cat(self.image, other.image),
            control=_cat(self.control, other.control),
        )

    def repeat(self, n: int) -> Condition:
        """Each field repeated ``n`` times along the batch (one condition for ``n`` samples)."""
        return Condition(
            values=None if self.values is None else self.values.repeat_interleave(n, dim=0),
            image=None if self.image is None else self.image.repeat_interleave(n, dim=0),
            control=None if self.control is None else self.control.repeat_interleave(n, dim=0),
        )

    def __getitem__(self, index: slice | int | torch.Tensor) -> Condition:
        """The same rows of every field (``cond[:n]``: the first n samples' conditions)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Condition(
            values=None if self.values is None else self.values[index],
            image=None if self.image is None else self.image[index],
            control=None if self.control is None else self.control[index],
        )

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Condition:
        """Move every field (float fields cast to ``dtype`` when given)."""
        return replace(
            self,
            values=None if self.values is None else self.values.to(device),
            image=None if self.image is None else self.image.to(device, dtype),
            control=None if self.control is None else self.control.to(device, dtype),
        )


def _drop(t: torch.Tensor | None, mask: torch.Tensor | None, fill: float) -> torch.Tensor | None:
    if t is None:
        return None
    if mask is None:
        return torch.full_like(t, fill)
    shape = (-1,) + (1,) * (t.ndim - 1)
    return torch.where(mask.to(t.device).reshape(shape), torch.full_like(t, fill), t)


def _cat(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None and b is None:
        return None
    if a is None or b is None:
        raise ValueError("cannot concatenate a condition with a field set to one without it")
    return torch.cat([a, b], dim=0)
