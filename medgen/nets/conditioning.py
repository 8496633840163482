"""Embeddings of per-sample condition values (class labels and scalars) for the timestep pathway.

MONAI's ``DiffusionModelUNet`` adds a class embedding to the timestep embedding; medgen generalises that
one ``nn.Embedding`` to any mix of categorical and scalar columns, each with a learned *null* embedding
used when the value is dropped (NaN) — the unconditional branch of classifier-free guidance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from medgen.errors import InputError
from medgen.nets.condition import Condition


@dataclass(frozen=True)
class ConditionSpec:
    """One condition column.

    Attributes:
        name: Column name in the datalist (and key of ``batch["cond"]``).
        kind: ``class`` (integer ids 0..num_classes−1) or ``scalar`` (a real number).
        num_classes: Number of classes (``class`` only).
        mean: Scalars are standardised as (value − mean) / std before embedding.
        std: See ``mean``.
        description: What the column means (written to model cards), e.g. "0 = T1, 1 = T2".
    """

    name: str
    kind: Literal["class", "scalar"] = "class"
    num_classes: int = 0
    mean: float = 0.0
    std: float = 1.0
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("class", "scalar"):
            raise InputError(f"conditions.{self.name}.kind", f"expected class or scalar, got '{self.kind}'")
        if self.kind == "class" and self.num_classes < 1:
            raise InputError(f"conditions.{self.name}.num_classes", "a class condition needs num_classes >= 1")
        if self.kind == "scalar" and self.std <= 0:
            raise InputError(f"conditions.{self.name}.std", f"expected a positive value, got {self.std}")


class ConditionEmbedding(nn.Module):
    """Sum of per-column embeddings of a ``(B, K)`` value tensor; NaN entries use the column's null embedding.

    Args:
        specs: The K columns, in the order of the value tensor's columns.
        dim: Embedding width (the network's timestep-embedding width).
    """

    def __init__(self, specs: Sequence[ConditionSpec], dim: int) -> None:
        super().__init__()
        self.specs = list(specs)
        self.embeddings = nn.ModuleDict()
        for spec in self.specs:
            if spec.kind == "class":  # index num_classes is the null class
                self.embeddings[spec.name] = nn.Embedding(spec.num_classes + 1, dim)
            else:
                self.embeddings[spec.name] = nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.null = nn.ParameterDict({s.name: nn.Parameter(torch.zeros(dim)) for s in self.specs if s.kind == "scalar"})

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` values → ``(B, dim)`` embedding."""
        if values.ndim != 2 or values.shape[1] != len(self.specs):
            raise ValueError(f"expected condition values of shape (B, {len(self.specs)}), got {tuple(values.shape)}")
        out: torch.Tensor | None = None
        for k, spec in enumerate(self.specs):
            column = values[:, k]
            dropped = torch.isnan(column)
            if spec.kind == "class":
                ids = torch.where(dropped, torch.full_like(column, spec.num_classes), column).long()
                if bool(((ids < 0) | (ids > spec.num_classes)).any()):
                    raise ValueError(f"condition '{spec.name}' has class ids outside 0..{spec.num_classes - 1}")
                emb = self.embeddings[spec.name](ids)
            else:
                z = ((torch.nan_to_num(column) - spec.mean) / spec.std).unsqueeze(1)
                emb = self.embeddings[spec.name](z.to(self.null[spec.name].dtype))
                emb = torch.where(dropped.unsqueeze(1), self.null[spec.name].expand_as(emb), emb)
            out = emb if out is None else out + emb
        assert out is not None, "ConditionEmbedding needs at least one condition"
        return out


def network_inputs(
    x: torch.Tensor, cond: Condition | None, image_channels: int, num_conditions: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A network's input and value labels from a :class:`Condition` (shared by the UNet and the DiT).

    Args:
        x: ``(B, C, *spatial)`` noisy images or latents.
        cond: The conditioning (None: unconditional).
        image_channels: Channels of the conditioning image to concatenate (0: none).
        num_conditions: Value columns the network embeds (0: none).

    Returns:
        ``x`` with ``cond.image`` concatenated along channels ``(B, C + image_channels, *spatial)``, and the
        ``(B, num_conditions)`` values (all NaN, i.e. the null condition, when ``cond`` has none), or None
        when the network embeds no values.

    Raises:
        ValueError: The network needs a conditioning image and ``cond`` has none.
    """
    cond = cond or Condition()
    if image_channels:
        if cond.image is None:
            raise ValueError(f"this network needs a conditioning image with {image_channels} channel(s)")
        x = torch.cat([x, cond.image.to(x.dtype)], dim=1)
    labels = None
    if num_conditions:
        nan = torch.full((x.shape[0], num_conditions), float("nan"), device=x.device)
        labels = cond.values if cond.values is not None else nan
    return x, labels
