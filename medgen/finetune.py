"""Fine-tuning: start a run from pretrained weights, into a possibly different model config.

``medgen fit --model.init_from PATH_OR_NAME`` copies the weights (never the optimizer state) of a ``.ckpt``, an
exported folder, a registry name or a MONAI model-zoo style state dict (``DiffusionModelUNet`` /
``ControlNet`` / ``AutoencoderKL`` weights saved with ``torch.save(net.state_dict())`` or as safetensors)
into the new module.
Tensors whose name and shape match are copied; new ones (an added condition embedding, extra input
channels) keep their fresh initialisation; the report lists exactly which. Lightning's own
``load_from_checkpoint`` needs the same config and loads optimizer-free but all-or-nothing, hence this module.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from medgen.errors import InputError

#: Where the tensors of a bare MONAI network sit inside medgen modules, tried in order.
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
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A readable multi-line report."""
        lines = [
            f"init_from {self.source}: loaded {len(self.loaded)} tensors, {len(self.missing)} new (initialised "
            f"fresh), {len(self.unexpected)} unused, {len(self.mismatched)} shape mismatches, "
            f"{len(self.frozen)} parameters frozen"
        ]
        for title, keys in (("new", self.missing), ("unused", self.unexpected), ("shape mismatch", self.mismatched)):
            lines += [f"  {title}: {k}" for k in keys]
        return "\n".join(lines)


def read_state(ref: str | Path, use_ema: bool = True) -> dict[str, torch.Tensor]:
    """The pretrained state dict behind ``ref`` (verified where a card gives a sha256; never unpickled)."""
    from medgen import registry
    from medgen.checkpoints import read_checkpoint

    path = Path(ref)
    if path.is_file() and path.suffix in (".pt", ".pth", ".bin", ".safetensors"):
        return _bare_state(path)
    source = registry.resolve(ref)
    if source.kind == "export":
        return registry.load_weights(source)
    ckpt = read_checkpoint(source.path)
    key = "state_dict" if use_ema else "current_model_state"
    return dict(ckpt.get(key) or ckpt["state_dict"])


def _bare_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0][:120] if str(exc) else ""
        raise InputError(path, f"cannot read weights ({type(exc).__name__}: {first})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(path, "expected a state dict (name → tensor)")
    return state


def _align_prefix(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Prefix a bare network's keys so they land in the module (the prefix matching most keys wins)."""
    if any(k in target for k in state):
        return state
    best = _best_prefix(_BARE_PREFIXES, state, target)
    return {f"{best}{k}": v for k, v in state.items()}


def _best_prefix(prefixes: Sequence[str], names: Iterable[str], pool: Container[str]) -> str:
    """The prefix that, put before ``names``, finds the most of them in ``pool``."""
    names = list(names)
    return max(prefixes, key=lambda p: sum(f"{p}{k}" in pool for k in names))


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
        module: The freshly built module (e.g. a ``DiffusionModule``).
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
    state = _align_prefix(read_state(ref, use_ema), target)
    report = LoadReport(str(ref))
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
        raise InputError("model.init_from", f"strict loading failed:\n{report.summary()}")
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
        "model.init_from",
        f"{report.source} does not fit this model's architecture: {len(report.loaded)} of {smaller} tensors match "
        f"by name and shape (need {min_match:.0%}, model.init_min_match){example}; check the net's arguments "
        "against the pretrained model's config, or pass --model.init_min_match 0 to accept it",
    )


def freeze_parameters(module: nn.Module, prefixes: Sequence[str]) -> list[str]:
    """Set ``requires_grad = False`` on every parameter whose name starts with one of ``prefixes``.

    Args:
        module: The module (e.g. a ``DiffusionModule``; names as in ``named_parameters``).
        prefixes: Parameter-name prefixes, e.g. ``net.unet.down_blocks``.

    Returns:
        The names frozen, in ``named_parameters`` order.

    Raises:
        InputError: A prefix matches no parameter.
    """
    params = dict(module.named_parameters())
    for prefix in prefixes:
        if not any(n.startswith(prefix) for n in params):
            raise InputError("model.freeze", f"no parameter name starts with '{prefix}'")
    names = [n for n in params if any(n.startswith(prefix) for prefix in prefixes)]
    for n in names:
        params[n].requires_grad_(False)
    return names


def load_submodule(target: nn.Module, ref: str | Path, field_name: str) -> None:
    """Load every tensor of ``target`` (e.g. a latent model's autoencoder) from ``ref``, strictly.

    ``ref`` is anything :func:`read_state` reads: a medgen checkpoint or export whose module holds the
    network under some prefix (``net.`` for an ``AutoencoderModule``, ``autoencoder.`` for a latent model), or
    a bare MONAI state dict. The prefix that names the most of ``target``'s tensors is used.

    Raises:
        InputError: Some tensor of ``target`` is missing from ``ref`` or has another shape (names ``field_name``).
    """
    want = target.state_dict()
    state = read_state(ref)
    best = _best_prefix(("", "net.", "autoencoder."), want, state)
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
