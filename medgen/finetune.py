"""Starting a run from pretrained weights: the :class:`Pretrained` callback, and the loading it does.

``medgen fit --pretrained.init_from PATH_OR_NAME`` copies the weights (never the optimizer state) of a ``.ckpt``, an
exported folder, a registry name or a MONAI model-zoo style state dict (``DiffusionModelUNet`` / ``ControlNet`` /
``AutoencoderKL`` weights saved with ``torch.save(net.state_dict())`` or as safetensors) into the new model.
Weights in MONAI Generative's pre-merge names are renamed first (:mod:`medgen.interop.monai_generative`; the report
lists each rename and why). Tensors whose name and shape match are copied; new ones (an added condition embedding,
extra input channels) keep their fresh initialisation; the report lists exactly which.
``--pretrained.autoencoder_from`` loads a latent model's first stage, ``--pretrained.freeze`` keeps parameters
fixed. Lightning's own ``load_from_checkpoint`` needs the same config and loads all-or-nothing, hence this module.
It sits above :mod:`medgen.store` and :mod:`medgen.lit`, so neither the tasks nor the models know where weights
come from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from medgen.errors import InputError
from medgen.interop.monai_generative import upgrade_for
from medgen.models.base import TrainableModel
from medgen.models.latent import LatentSpace
from medgen.weights import WEIGHT_SUFFIXES, align_prefix, best_prefix, read_state

#: Where the tensors of a bare MONAI network sit inside medgen models, tried in order.
_BARE_PREFIXES = ("net.", "net.unet.", "net.base.unet.", "net.controlnet.", "autoencoder.")


@dataclass
class LoadReport:
    """What :func:`load_pretrained` copied.

    Attributes:
        source: What was loaded.
        loaded: Keys copied from the source.
        missing: Keys of the module the source lacks (kept as initialised: the new parts).
        unexpected: Keys of the source the module lacks (ignored).
        mismatched: Keys present in both with different shapes (kept as initialised).
        frozen: Parameter names frozen afterwards.
        renamed: Report lines of tensors renamed from MONAI Generative names (or filled), each with why.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A readable multi-line report."""
        lines = [
            f"init_from {self.source}: loaded {len(self.loaded)} tensors, {len(self.missing)} new (initialised "
            f"fresh), {len(self.unexpected)} unused, {len(self.mismatched)} shape mismatches, "
            f"{len(self.frozen)} parameters frozen"
        ]
        for title, keys in (("new", self.missing), ("unused", self.unexpected), ("shape mismatch", self.mismatched)):
            lines += [f"  {title}: {k}" for k in keys]
        return "\n".join(lines + self.renamed)


def read_pretrained(ref: str | Path, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """The pretrained tensors behind ``ref``, named as in a model's ``state_dict`` (verified where a card has a sha256).

    Args:
        ref: A ``.ckpt``, exported folder or registry name, a bare ``.pt``/``.pth``/``.bin``/``.safetensors``, or
            ``maisi:PATH`` (a MAISI UNet or autoencoder file, :func:`medgen.interop.maisi.maisi_model_state`).
        use_ema: From a ``.ckpt``, the EMA weights when the run kept them.
    """
    from medgen.store.ckpt import model_state, read_checkpoint
    from medgen.store.registry import load_weights, resolve

    if str(ref).startswith("maisi:"):  # a MAISI UNet or autoencoder file, named as in a medgen latent model
        from medgen.interop.maisi import maisi_model_state

        return maisi_model_state(str(ref).removeprefix("maisi:"))
    path = Path(ref)
    if path.is_file() and path.suffix in WEIGHT_SUFFIXES and path.suffix != ".ckpt":
        return read_state(path)
    source = resolve(ref)
    if source.kind == "export":
        return load_weights(source)
    return model_state(read_checkpoint(source.path), use_ema)


def load_pretrained(
    module: nn.Module,
    ref: str | Path,
    strict: bool = False,
    freeze: Sequence[str] = (),
    use_ema: bool = True,
    min_match: float = 0.5,
) -> LoadReport:
    """Copy matching pretrained tensors into ``module`` and freeze parameters by name prefix.

    Args:
        module: The freshly built model (e.g. a :class:`~medgen.models.DiffusionModel`).
        ref: ``.ckpt``, exported folder, registry name, or a bare ``.pt``/``.pth``/``.safetensors`` state dict.
        strict: Fail unless every key matches in name and shape.
        freeze: Parameter-name prefixes to freeze (``requires_grad = False``), e.g. ``net.unet.down_blocks``.
        use_ema: From a ``.ckpt``, take the EMA weights when it has them.
        min_match: Smallest share of the smaller of the two state dicts (the source's or the module's) that
            must load by name and shape; below it the architectures differ and loading fails. 0 accepts any.

    Returns:
        The :class:`LoadReport`.

    Raises:
        InputError: ``strict`` and some keys differ, fewer than ``min_match`` of the tensors match, or a freeze
            prefix matches no parameter.
    """
    target = module.state_dict()
    upgrade, prefix = upgrade_for(read_pretrained(ref, use_ema), target, _BARE_PREFIXES)  # old MONAI Generative names
    state = align_prefix(upgrade.state, target, _BARE_PREFIXES)
    report = LoadReport(str(ref), renamed=upgrade.lines(prefix))
    copy: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in target:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(target[key].shape):
            report.mismatched.append(key)
        else:
            copy[key] = value
    report.loaded = sorted(copy)
    report.missing = sorted(k for k in target if k not in copy and k not in report.mismatched)
    report.unexpected.sort()
    report.mismatched.sort()
    if strict and (report.missing or report.unexpected or report.mismatched):
        raise InputError("pretrained.init_from", f"strict loading failed:\n{report.summary()}")
    _check_match(report, len(state), len(target), min_match)
    module.load_state_dict(copy, strict=False)
    report.frozen = freeze_parameters(module, freeze)
    return report


def _check_match(report: LoadReport, num_source: int, num_target: int, min_match: float) -> None:
    """Refuse a source whose tensors mostly do not fit the module (another architecture, not a fine-tune)."""
    smaller = max(1, min(num_source, num_target))
    if len(report.loaded) >= min_match * smaller:
        return
    first = (report.mismatched + report.unexpected)[:1]
    example = f"; first unmatched: {first[0]}" if first else ""
    raise InputError(
        "pretrained.init_from",
        f"{report.source} does not fit this model's architecture: {len(report.loaded)} of {smaller} tensors match "
        f"by name and shape (need {min_match:.0%}, pretrained.min_match){example}; check the net's arguments "
        "against the pretrained model's config, or pass --pretrained.min_match 0 to accept it",
    )


def freeze_parameters(module: nn.Module, prefixes: Sequence[str]) -> list[str]:
    """Set ``requires_grad = False`` on every parameter whose name starts with one of ``prefixes``.

    Args:
        module: The model (names as in ``named_parameters``).
        prefixes: Parameter-name prefixes, e.g. ``net.unet.down_blocks``.

    Returns:
        The names frozen, in ``named_parameters`` order.

    Raises:
        InputError: A prefix matches no parameter.
    """
    params = dict(module.named_parameters())
    for prefix in prefixes:
        if not any(n.startswith(prefix) for n in params):
            raise InputError("pretrained.freeze", f"no parameter name starts with '{prefix}'")
    names = [n for n in params if any(n.startswith(prefix) for prefix in prefixes)]
    for n in names:
        params[n].requires_grad_(False)
    return names


def load_submodule(target: nn.Module, ref: str | Path, field_name: str) -> None:
    """Load every tensor of ``target`` (e.g. a latent model's autoencoder) from ``ref``, strictly.

    ``ref`` is anything :func:`read_pretrained` reads: a medgen checkpoint or export whose module holds the
    network under some prefix (``net.`` for an autoencoder, ``autoencoder.`` for a latent model), or
    a bare MONAI state dict. The prefix that names the most of ``target``'s tensors is used.

    Raises:
        InputError: Some tensor of ``target`` is missing from ``ref`` or has another shape (names ``field_name``).
    """
    want = target.state_dict()
    upgrade, _ = upgrade_for(read_pretrained(ref), want, ("",))  # old MONAI Generative names
    state = upgrade.state
    if upgrade.renamed:
        rank_zero_info("\n".join([f"{field_name} {ref}:", *upgrade.lines()]))
    best = best_prefix(("", "net.", "autoencoder."), want, state)
    found = {k: state[f"{best}{k}"] for k in want if f"{best}{k}" in state}
    missing = [k for k in want if k not in found]
    mismatched = [k for k, v in found.items() if tuple(v.shape) != tuple(want[k].shape)]
    if missing or mismatched:
        raise InputError(
            field_name,
            f"{ref} does not fit this autoencoder: {len(missing)} tensors missing, {len(mismatched)} of another "
            f"shape (first: {(missing + mismatched)[0]}); check the architecture arguments",
        )
    target.load_state_dict(found)


class Pretrained(L.Callback):
    """Where a run's first weights come from: fine-tuning, a latent model's autoencoder, frozen parameters.

    Runs in ``setup`` of every fit, before the optimizer is built, so frozen parameters never move. ``init_from`` is
    read at every fit (a resumed run's checkpoint then replaces these weights); ``autoencoder_from`` only when not
    resuming. Configured under ``pretrained:`` in YAML (``--pretrained.init_from NAME``).

    Args:
        init_from: Copy matching weights from a ``.ckpt``, exported folder, registry name or bare state dict; new
            tensors stay freshly initialised.
        strict: Fail unless every pretrained tensor matches in name and shape.
        min_match: Smallest share of tensors ``init_from`` must match by name and shape (of the smaller of the two
            state dicts); below it the run stops with an architecture-mismatch error. 0 accepts any.
        freeze: Parameter-name prefixes of the model to keep fixed (e.g. ``net.unet.down_blocks``).
        autoencoder_from: A latent model's trained autoencoder: a medgen autoencoder checkpoint, exported folder or
            registry name, or a bare MONAI ``AutoencoderKL`` state dict. Without it (and without ``init_from``)
            a latent model trains on an untrained autoencoder's latents: only for smoke tests.
    """

    def __init__(
        self,
        init_from: str | None = None,
        strict: bool = False,
        min_match: float = 0.5,
        freeze: list[str] | None = None,
        autoencoder_from: str | None = None,
    ) -> None:
        if not 0.0 <= min_match <= 1.0:
            raise InputError("pretrained.min_match", f"expected a fraction in [0, 1], got {min_match}")
        self.init_from = init_from
        self.strict = strict
        self.min_match = min_match
        self.freeze = list(freeze or [])
        self.autoencoder_from = autoencoder_from

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Load, then freeze, before the strategy wraps the task and the optimizer is built."""
        if stage != "fit":
            return
        model = pl_module.model
        if not isinstance(model, TrainableModel):
            raise InputError("pretrained", f"needs a medgen task with a model, got {type(pl_module).__name__}")
        if self.init_from:
            report = load_pretrained(
                model, self.init_from, strict=self.strict, freeze=self.freeze, min_match=self.min_match
            )
            model.pretrained_loaded(report.loaded)
            rank_zero_info(report.summary())
        elif self.freeze:
            frozen = freeze_parameters(model, self.freeze)
            rank_zero_info(f"freeze: {len(frozen)} parameters frozen ({', '.join(self.freeze)})")
        if not isinstance(model, LatentSpace):
            if self.autoencoder_from:
                raise InputError("pretrained.autoencoder_from", f"a {type(model).__name__} has no autoencoder")
            return
        if trainer.ckpt_path is not None:  # resuming: the checkpoint brings the autoencoder
            return
        if self.autoencoder_from:
            load_submodule(model.autoencoder, self.autoencoder_from, "pretrained.autoencoder_from")
            rank_zero_info(f"autoencoder weights from {self.autoencoder_from}")
        elif not self.init_from:  # fine-tuning brings the autoencoder with the rest
            rank_zero_warn("pretrained.autoencoder_from is not set: training on an untrained autoencoder (smoke test?)")
