"""Image-to-image translation of files: each input image → one output on the input's own grid.

What translates (:func:`make_translator`):

- every :class:`~medgen.models.translation.TranslationModel` (pix2pix, CycleGAN) through ``model.translate``;
- a diffusion or flow model whose net takes a conditioning image (``image_channels > 0``, e.g. mask → CT; or the
  control image of a ControlNet): the input is the conditioning image and the output is a sample drawn under it
  (seeded per file, ``--steps`` and ``--method`` apply);
- a value-conditioned :class:`~medgen.models.flow.FlowModel` without a conditioning image: the MedShift-style
  class swap :meth:`~medgen.models.flow.FlowModel.translate` from ``--source`` to ``--target`` conditions.

Inputs are prepared and mapped back onto their own grid by :mod:`medgen.generation.translate_grid`; files, the
manifest and resuming are :mod:`medgen.generation.translate_files`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medgen.errors import InputError, article
from medgen.generation.conditions import ConditionPlan, make_plan, parse_pairs
from medgen.generation.seeds import sample_generators
from medgen.generation.translate_grid import Run
from medgen.models.base import GenerativeModel, TrainableModel
from medgen.models.flow import FlowModel
from medgen.models.translation import TranslationModel
from medgen.nets.condition import Condition
from medgen.store.card import ModelCard

#: What ``medgen translate`` takes, for messages refusing a model that only generates.
TRANSLATES = (
    "pix2pix and CycleGAN models, diffusion/flow models conditioned on an image (net image_channels > 0, or a "
    "ControlNet) and class-conditional flow models (--source/--target)"
)


@dataclass(frozen=True)
class Translator:
    """A loaded model's translation, with what the manifest records about it.

    Attributes:
        kind: ``translation`` (a TranslationModel), ``conditioned`` (an image-conditioned generative model) or
            ``class-swap`` (FlowModel.translate between value conditions).
        direction: The direction used (``a2b``/``b2a``).
        sampler: Scheduler/solver used (None where the model draws no samples).
        steps: Sampling/ODE steps used (None where none).
        source: Raw ``--source`` conditions (class swap).
        target: Raw ``--target`` conditions.
        run: The network call.
        from_domain: ``(column, code)`` of the inputs' domain where the model says it (a CycleGAN direction's
            source domain, a class swap's single ``--source`` class): a datalist with that condition column
            contributes only those rows (:func:`list_inputs`).
    """

    kind: str
    direction: str
    sampler: str | None
    steps: int | None
    source: dict[str, str]
    target: dict[str, str]
    run: Run
    from_domain: tuple[str, int] | None = None


def make_translator(
    model: TrainableModel,
    card: ModelCard,
    ref: str,
    direction: str | None = None,
    method: str | None = None,
    steps: int | None = None,
    source: list[str] | None = None,
    target: list[str] | None = None,
) -> Translator:
    """How ``model`` translates, checked against the options.

    Args:
        model: The loaded model.
        card: Its card (condition vocabulary).
        ref: What was loaded (named in errors).
        direction: ``--direction`` (None: the model's first).
        method: ``--method`` (diffusion scheduler / flow solver; None: the model's).
        steps: ``--steps`` (None: the model's).
        source: ``--source KEY=VALUE`` items (class swap).
        target: ``--target KEY=VALUE`` items.

    Raises:
        InputError: A model that does not translate, a direction it lacks, conditions it does not take or
            lacks, or sampling options for a model without sampling.
    """
    src, tgt = parse_pairs(source or []), parse_pairs(target or [])
    if isinstance(model, TranslationModel):
        chosen = model.check_direction(direction)
        _refuse_options(model, method, steps, src, tgt)
        run: Run = lambda x, _: model.translate(x, chosen)  # noqa: E731
        return Translator("translation", chosen, None, None, {}, {}, run, source_domain(model, chosen))
    if not isinstance(model, GenerativeModel):
        raise InputError(ref, f"is {article(card.family)} {card.family} model: it does not translate ({TRANSLATES})")
    if direction not in (None, "a2b"):
        raise InputError(
            "--direction", f"{type(model).__name__} translates a2b only (input to output), not '{direction}'"
        )
    used = model.resolved(method, steps)
    concat = int(getattr(model.net, "image_channels", 0)) > 0
    if concat or int(getattr(model.net, "control_channels", 0)) > 0:
        if src:
            raise InputError("--source", "an image-conditioned model's source is the input image; drop --source")
        plan = _plan(model, card, [{**tgt, "image": "input"}], "--target")

        def conditioned(x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
            values = plan.values(0)
            cond = Condition(
                values=None if values is None else values.expand(len(x), -1),
                image=x if concat else None,
                control=None if concat else x,
            )
            return model.sample(len(x), cond=cond, generator=sample_generators(seeds), method=used.method,
                                num_steps=used.num_steps)  # fmt: skip

        return Translator("conditioned", "a2b", used.method, used.num_steps, {}, tgt, conditioned)
    if isinstance(model, FlowModel) and model.condition_names:
        for flag, given in (("--source", src), ("--target", tgt)):
            if not given:
                names = ", ".join(model.condition_names)
                raise InputError(flag, f"a class-swap flow model needs {flag} KEY=VALUE for its conditions ({names}), "
                                       "e.g. --source scanner=0 --target scanner=1")  # fmt: skip
        plan = _plan(model, card, [src, tgt], "--source/--target")
        before, after = _coded(plan, 0, "--source"), _coded(plan, 1, "--target")
        column = next(iter(src)) if len(src) == 1 else None
        domain = None if column is None else (column, int(before[model.condition_names.index(column)]))

        def swap(x: torch.Tensor, _: list[int]) -> torch.Tensor:
            n = len(x)
            return model.translate(x, Condition(values=before.expand(n, -1)),
                                   Condition(values=after.expand(n, -1)),
                                   method=used.method, num_steps=used.num_steps)  # fmt: skip

        return Translator("class-swap", "a2b", used.method, used.num_steps, src, tgt, swap, domain)
    raise InputError(
        ref,
        f"is {article(card.family)} {card.family} model that generates without an input image: it does not translate "
        f"(medgen translate takes {TRANSLATES}); use medgen generate",
    )


def _plan(model: GenerativeModel, card: ModelCard, rows: list[dict[str, str]], flags: str) -> ConditionPlan:
    """The condition plan of ``rows``; a condition the model does not take is an error naming ``flags``."""
    try:
        return make_plan(model.net, card.vocab, rows, card.raw)
    except InputError as error:
        raise InputError(flags, f"{error.subject}: {error.problem}") from None


def _coded(plan: ConditionPlan, row: int, flag: str) -> torch.Tensor:
    """Row ``row``'s condition values; an unknown value is an error naming ``flag``.

    Raises:
        InputError: Naming ``flag``: a text value outside the vocabulary, a code out of range, not a number.
    """
    try:
        values = plan.values(row)
    except InputError as error:
        raise InputError(flag, f"{error.subject}: {error.problem}") from None
    assert values is not None  # a class-swap model has value conditions
    return values


def _refuse_options(
    model: TrainableModel, method: str | None, steps: int | None, src: dict[str, str], tgt: dict[str, str]
) -> None:
    """A translation network is one forward pass without conditions: refuse options that would be ignored."""
    name = type(model).__name__
    for flag, given in (("--method", method), ("--steps", steps), ("--source", src), ("--target", tgt)):
        if given:
            raise InputError(flag, f"{name} translates in one forward pass: it takes no {flag}")


def source_domain(model: TrainableModel, direction: str) -> tuple[str, int] | None:
    """``(column, code)`` of the domain a two-way model translates from (``a2b``: 0 = a, ``b2a``: 1 = b); else None."""
    column = getattr(model, "domain_column", None)
    if not isinstance(model, TranslationModel) or not isinstance(column, str) or len(model.directions) < 2:
        return None
    return column, 0 if direction == "a2b" else 1
