"""``CycleGANModel``: unpaired translation between two domains with two generators (Zhu et al. 2017), 2D or 3D.

Each batch row says its domain in a condition column (``domain_column``, default ``domain``; the data module codes
the text values ``a``/``b`` as 0/1). The generators ``G_ab`` and ``G_ba`` are trained with

- two duels (:class:`~medgen.models.adversarial.Duel`): critic ``"b"`` judges real B against ``G_ab(A)``, critic
  ``"a"`` real A against ``G_ba(B)`` (:class:`~medgen.lit.adversarial.AdversarialTask` makes one discriminator
  per critic name);
- the cycle loss ``|G_ba(G_ab(A)) − A|₁ + |G_ab(G_ba(B)) − B|₁`` weighted by ``cycle_weight`` (λ, 10 in the paper);
- the identity loss ``|G_ba(A) − A|₁ + |G_ab(B) − B|₁`` weighted by ``identity_weight · cycle_weight`` (0.5 λ in
  the paper), which keeps intensities where no change is needed.

A batch with rows of one domain only trains what that domain allows (its cycle and identity terms; no duel lacks
real images of its own domain), so small batches from an unbalanced datalist neither crash nor produce NaN.
Only the generators belong to the model: exports, ``medgen translate`` and ``from_pretrained`` carry them alone.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.losses import LocalNormalizedCrossCorrelationLoss
from torch import nn

from medgen.config import Allowed, instantiate
from medgen.errors import InputError, MedgenError
from medgen.models.adversarial import Duel, Play
from medgen.models.translation import TranslationModel
from medgen.nets.condition import Condition

#: What a copy of the a→b generator may be built as (the net's own class, under ``medgen.nets``).
_NETS = (Allowed("medgen.nets.", nn.Module),)


class CycleGANModel(TranslationModel):
    """Two image-to-image generators, ``a2b`` and ``b2a``, trained with cycle consistency.

    Args:
        net: The a→b generator ``net(images) -> images`` of the same grid, in [-1, 1] (e.g.
            :class:`~medgen.nets.cyclegan.ResnetTranslator`); it declares ``spatial_dims`` and ``config``.
        net_b2a: The b→a generator (None: a freshly initialised network built from ``net``'s config).
        cycle_weight: λ of the cycle loss.
        identity_weight: Weight of the identity loss relative to λ (0: no identity loss).
        domain_column: Condition column holding each row's domain (0 = a, 1 = b).
        sample_size: Spatial size of the training images (None: from the data module).
        structure_weight: Weight of a structure term between each input and its translation (0: none, as in Zhu
            et al.): one minus MONAI's local normalised cross-correlation, squared and so blind to a contrast
            inversion, over ``structure_kernel``-sized windows. Like the structure-constrained CycleGAN of Yang
            et al. 2018 (which used MIND descriptors), it keeps edges where they were while the contrast changes.
        structure_kernel: Window side of that correlation (odd).
    """

    family = "cyclegan"
    directions = ("a2b", "b2a")
    critics = ("a", "b")
    #: The generators by direction: ``net["a2b"]`` and ``net["b2a"]``.
    net: nn.ModuleDict

    def __init__(
        self,
        net: nn.Module,
        net_b2a: nn.Module | None = None,
        cycle_weight: float = 10.0,
        identity_weight: float = 0.5,
        domain_column: str = "domain",
        sample_size: list[int] | None = None,
        structure_weight: float = 0.0,
        structure_kernel: int = 5,
    ) -> None:
        super().__init__(sample_size)
        if cycle_weight < 0 or identity_weight < 0 or structure_weight < 0:
            raise InputError("cycle_weight", "cycle_weight, identity_weight and structure_weight must not be negative")
        if structure_kernel < 1 or structure_kernel % 2 == 0:
            raise InputError("structure_kernel", f"expected an odd positive window side, got {structure_kernel}")
        other = net_b2a if net_b2a is not None else instantiate(_net_config(net), _NETS, "net")
        self.net = nn.ModuleDict({"a2b": net, "b2a": other})
        self.cycle_weight = float(cycle_weight)
        self.identity_weight = float(identity_weight)
        self.domain_column = domain_column
        self.structure_weight = float(structure_weight)
        self.structure_kernel = int(structure_kernel)
        self.structure = LocalNormalizedCrossCorrelationLoss(self.spatial_dims, kernel_size=self.structure_kernel)

    @property
    def data_columns(self) -> tuple[str, ...]:
        """The datalist column the data module must provide (the domain column)."""
        return (self.domain_column,)

    @property
    def spatial_dims(self) -> int:
        """2 or 3, as the generators are."""
        dims: Any = self.net["a2b"].spatial_dims
        return int(dims)

    def init_args(self) -> dict[str, Any]:
        """Both generators, the loss weights and the domain column."""
        return {
            "net": _net_config(self.net["a2b"]),
            "net_b2a": _net_config(self.net["b2a"]),
            "cycle_weight": self.cycle_weight,
            "identity_weight": self.identity_weight,
            "domain_column": self.domain_column,
            "structure_weight": self.structure_weight,
            "structure_kernel": self.structure_kernel,
        }

    def describe(self) -> dict[str, Any]:
        """Translation metadata with the a→b generator's config (read by model cards) and the domain column."""
        return {**super().describe(), "net": _net_config(self.net["a2b"]), "domain_column": self.domain_column}

    def loss_terms(
        self, x0: torch.Tensor, cond: Condition | None, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """Not a single loss: CycleGAN trains against two discriminators."""
        raise MedgenError("a CycleGAN trains with medgen.lit.AdversarialTask (generators and discriminators)")

    # ------------------------------------------------------------------ training
    def is_b(self, batch: dict[str, Any]) -> torch.Tensor:
        """``(B,)`` bool: which rows of ``batch`` are domain b (code 1 in ``batch["cond"][domain_column]``).

        Raises:
            InputError: The batch has no such column, or a code other than 0 and 1.
        """
        column = (batch.get("cond") or {}).get(self.domain_column)
        if column is None:
            have = ", ".join(sorted(batch.get("cond") or {})) or "none"
            raise InputError("domain_column", f"the batch has no condition column '{self.domain_column}' (has: {have})")
        codes = column.reshape(-1).to(batch["image"].device)
        if not bool(((codes == 0) | (codes == 1)).all()):
            raise InputError(self.domain_column, "expected two domains, coded 0 (a) and 1 (b)")
        return codes == 1

    def play(self, batch: dict[str, Any], cond: Condition | None, generator: torch.Generator) -> Play:
        """Duels ``"b"`` (real B vs G_ab(A)) and ``"a"`` (real A vs G_ba(B)), cycle and identity terms.

        A duel needs rows of both domains; the cycle and identity terms of a domain need its own rows. Terms are
        the mean over the rows present; ``terms["loss"]`` is λ·cycle + identity_weight·λ·identity
        + structure_weight·structure. In training mode without gradients (the discriminators' update) only the duels
        are made: the terms would go unread.
        """
        images = batch["image"]
        is_b = self.is_b(batch)
        real = {"a": images[~is_b], "b": images[is_b]}
        nets = {"b": self.net["a2b"], "a": self.net["b2a"]}  # the generator into each domain
        fake = {out: nets[out](real[src]) for src, out in (("a", "b"), ("b", "a")) if real[src].shape[0]}
        duels = [Duel(name, real[name], fake[name]) for name in self.critics if name in fake and real[name].shape[0]]
        if self.training and not torch.is_grad_enabled():
            return Play(duels)  # the discriminators' update: the fakes are all it reads
        cycle, identity = [], []
        for src, out in (("a", "b"), ("b", "a")):
            if out in fake:
                cycle.append((nets[src](fake[out]) - real[src]).abs().flatten(1).mean(1))
                if self.identity_weight:
                    identity.append((nets[src](real[src]) - real[src]).abs().flatten(1).mean(1))
        terms = {"cycle": torch.cat(cycle).mean()}
        loss = self.cycle_weight * terms["cycle"]
        if identity:
            terms["identity"] = torch.cat(identity).mean()
            loss = loss + self.identity_weight * self.cycle_weight * terms["identity"]
        if self.structure_weight:
            # MONAI's loss is minus the mean squared local correlation, in [-1, 0]
            pairs = [(fake[out], real[src]) for src, out in (("a", "b"), ("b", "a")) if out in fake]
            terms["structure"] = torch.stack([1 + self.structure(f, r) for f, r in pairs]).mean()
            loss = loss + self.structure_weight * terms["structure"]
        terms["loss"] = loss
        return Play(duels, terms)

    # ------------------------------------------------------------------ use
    def translate(self, images: torch.Tensor, direction: str | None = None) -> torch.Tensor:
        """``images`` ``(B, C, *spatial)`` of the source domain translated ``a2b`` (default) or ``b2a``.

        Raises:
            InputError: An unknown direction, or a size the generator cannot take.
        """
        chosen = self.check_direction(direction)
        with torch.no_grad(), self.eval_mode():
            return self.net[chosen](images.to(self.device))

    def preview_batch(
        self, batch: dict[str, Any], cond: Condition | None, num: int, generator: torch.Generator
    ) -> torch.Tensor:
        """Rows ``A | A→B | B | B→A`` for up to ``num`` images of each domain (a side the batch lacks is left out).

        Returns:
            ``(N, C, *spatial)``: the rows' images one after another (row i: A_i, A_i→B, B_i, B_i→A when both
            domains are present).
        """
        is_b = self.is_b(batch)
        images = batch["image"]
        a, b = images[~is_b][:num], images[is_b][:num]
        a2b, b2a = self.translate(a, "a2b"), self.translate(b, "b2a")
        n = min(len(a), len(b))
        rows = [torch.stack([a[i], a2b[i], b[i], b2a[i]]) for i in range(n)]
        rows += [torch.stack([a[i], a2b[i]]) for i in range(n, len(a))]
        rows += [torch.stack([b[i], b2a[i]]) for i in range(n, len(b))]
        return torch.cat(rows).to(images.dtype)


def _net_config(net: nn.Module) -> dict[str, Any]:
    """A generator's ``{"class_path", "init_args"}``.

    Raises:
        InputError: The network does not record its config (every ``medgen.nets`` network does).
    """
    config = getattr(net, "config", None)
    if not isinstance(config, dict):
        raise InputError("net", f"{type(net).__name__} records no config; use a medgen.nets generator")
    return config
