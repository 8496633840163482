"""Image-to-image translation of files: each input image → one output on the input's own grid.

What translates (:func:`make_translator`):

- every :class:`~medgen.models.translation.TranslationModel` (pix2pix, CycleGAN) through ``model.translate``;
- a diffusion or flow model whose net takes a conditioning image (``image_channels > 0``, e.g. mask → CT): the
  input is the conditioning image and the output is a sample drawn under it (seeded per file, ``--steps`` and
  ``--method`` apply);
- a value-conditioned :class:`~medgen.models.flow.FlowModel` without a conditioning image: the MedShift-style
  class swap :meth:`~medgen.models.flow.FlowModel.translate` from ``--source`` to ``--target`` conditions.

Each input goes through the training data module's own steps (:func:`medgen.data.transforms.volume_chain`: RAS,
the training spacing, the intensity preset of the pair inputs' modality; then the training sizing,
:class:`~medgen.data.transforms.SizeTo`). A 2D model given a volume translates it slice by slice along the
training slice axis. The output is mapped back by undoing the sizing (crop the padding, resize back) and
resampling from the RAS/training-spacing grid onto the input's grid (MONAI ``ResampleToMatch``), then written in
stored units as ``medgen generate`` writes samples (:func:`medgen.generation.writers.write_sample`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgen import __version__
from medgen.data.formats import suffix_of
from medgen.data.io import load_image
from medgen.data.presets import IntensityPreset
from medgen.data.transforms import BACKGROUND, ResizeMode, SizeTo, volume_chain
from medgen.errors import InputError, article
from medgen.generation import manifest
from medgen.generation.conditions import ConditionPlan, TrainingChain, make_plan, parse_pairs
from medgen.generation.seeds import sample_generators, sample_seed
from medgen.generation.writers import EXTENSIONS, OutputFormat, write_sample
from medgen.hashing import file_sha256
from medgen.models.base import GenerativeModel, TrainableModel
from medgen.models.flow import FlowModel
from medgen.models.translation import TranslationModel
from medgen.nets.condition import Condition
from medgen.nets.invariance import batch_invariant_kernels, make_batch_invariant
from medgen.progress import progress
from medgen.store.card import ModelCard

#: What ``medgen translate`` takes, for messages refusing a model that only generates.
TRANSLATES = (
    "pix2pix and CycleGAN models, diffusion/flow models conditioned on an image (net image_channels > 0, e.g. "
    "configs/mask2ct_2d.yaml) and class-conditional flow models (--source/--target)"
)

#: ``(B, C, *size)`` inputs in [-1, 1] and one seed per row → ``(B, C_out, *size)`` outputs in [-1, 1].
Run = Callable[[torch.Tensor, list[int]], torch.Tensor]


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
    if int(getattr(model.net, "image_channels", 0)):
        if src:
            raise InputError("--source", "an image-conditioned model's source is the input image; drop --source")
        plan = _plan(model, card, [{**tgt, "image": "input"}], "--target")

        def conditioned(x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
            values = plan.values(0)
            cond = Condition(values=None if values is None else values.expand(len(x), -1), image=x)
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


@dataclass(frozen=True)
class InputGrid:
    """How inputs are prepared for the model, as the training data module prepared its pair inputs.

    Attributes:
        chain: The training chain with the pair inputs' modality (``source_modality``, None = ``modality``).
        size: The model's spatial size.
        slice_axis: RAS axis a 2D model's volumes are sliced along.
        batch_size: Slices per network call.
        masks: The inputs are label maps (a mask-conditioned model such as mask → CT): no intensity preset,
            nearest-neighbour resampling and sizing, padding with label 0, as the data module treats masks.
    """

    chain: TrainingChain
    size: tuple[int, ...]
    slice_axis: int = 2
    batch_size: int = 8
    masks: bool = False

    @property
    def pad_value(self) -> float:
        """What padding holds: background (-1) for images, label 0 for masks."""
        return 0.0 if self.masks else BACKGROUND

    @classmethod
    def from_record(
        cls,
        model: TrainableModel,
        data: dict[str, Any],
        batch_size: int = 8,
        modality: str | None = None,
        masks: bool = False,
    ) -> InputGrid:
        """From the checkpoint's data record.

        Paired training data (``source_modality`` recorded) prepares inputs with ``source_modality`` and
        ``source_intensity``; otherwise with ``modality`` and ``intensity``. ``preprocessing`` gives the spacing
        and resize mode, ``slice_axis`` (where recorded; default axial) the slicing of volumes for a 2D model.
        ``modality`` (``--modality``) overrides the inputs' modality (its default intensity preset applies when
        it differs from the recorded one).

        Raises:
            InputError: The model's image size is unknown.
        """
        if model.image_size is None:
            raise InputError("--checkpoint", "the model's image size is unknown (train it with a data module)")
        source = data.get("source_modality")
        if source:  # paired training data: inputs were normalised as the pairs' sources were
            data = {**data, "modality": source, "intensity": data.get("source_intensity") or data.get("intensity")}
        if modality and modality != data.get("modality"):
            data = {**data, "modality": modality, "intensity": None}
        chain = TrainingChain.from_card(data)
        if modality and chain.modality != modality:
            chain = replace(chain, modality=modality)
        axis = int((data.get("preprocessing") or {}).get("slice_axis", data.get("slice_axis", 2)) or 2)
        return cls(chain, tuple(model.image_size), axis, batch_size, masks)


def translate_image(path: Path, grid: InputGrid, run: Run, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Translate one image file onto its own grid.

    Args:
        path: The input image (any format :func:`medgen.data.io.load_image` reads).
        grid: How inputs are prepared.
        run: The network call (see :data:`Run`).
        seed: The file's seed; slice ``k`` (or the whole image, ``k = 0``) draws from ``sample_seed(seed, k)``.

    Returns:
        ``(C, *input spatial)`` output in [-1, 1] and the input's 4x4 RAS affine.

    Raises:
        InputError: Unreadable input, or a 2D image for a 3D model.
    """
    from monai.data import MetaTensor
    from monai.transforms import Compose

    from medgen.data.datasets import reraise_medgen

    original = load_image(path)
    dims, model_dims = original.ndim - 1, len(grid.size)
    if dims < model_dims:
        raise InputError(path, f"is a {dims}D image but the model translates {model_dims}D volumes")
    spacing = grid.chain.target_spacing
    spacing = spacing if spacing is not None and len(spacing) == dims else None
    # The image is loaded already; a mask rides in the chain's mask slot (the image slot's copy is dropped).
    modality, preset = ("mri", IntensityPreset()) if grid.masks else (grid.chain.modality, grid.chain.preset)
    steps = Compose(volume_chain(dims, modality, preset, spacing)[1:])
    key = "mask" if grid.masks else "image"
    prepared = reraise_medgen(lambda: steps({"image": original.clone(), key: original.clone()})[key])
    x = prepared.as_tensor().float() if isinstance(prepared, MetaTensor) else torch.as_tensor(prepared).float()
    if dims == model_dims:
        y = _translate_stack(x[None], grid, run, seed)[0]
    else:  # a 2D model on a volume: one slice at a time along the training slice axis
        axis = grid.slice_axis + 1
        slices = x.movedim(axis, 1)[0][:, None]  # (n, 1, a, b)
        y = _translate_stack(slices, grid, run, seed).movedim(0, axis)  # (n, C, a, b) -> (C, X, Y, Z)
    back = MetaTensor(y, affine=prepared.affine) if isinstance(prepared, MetaTensor) else y
    return _onto(back, original), np.asarray(original.affine, dtype=np.float64)


def _translate_stack(x: torch.Tensor, grid: InputGrid, run: Run, seed: int) -> torch.Tensor:
    """``(n, 1, *shape)`` prepared images → ``(n, C, *shape)`` outputs, sized for the model and back, in batches.

    ``resize`` (the model saw whole images resized): each image is sized as in training and the output sized back.
    ``pad_crop`` (the model saw its size at the training voxel size): images larger than that are covered by
    overlapping windows blended with Gaussian weights (MONAI ``sliding_window_inference``), smaller ones padded
    with background, so no part of the input is cropped away.
    """
    shape = tuple(x.shape[2:])
    if grid.chain.resize_mode == "pad_crop":
        return torch.cat([_windows(img[None], grid, run, seed) for img in x])
    sizer = SizeTo(grid.size, grid.chain.resize_mode, "nearest" if grid.masks else "area", grid.pad_value)
    out: list[torch.Tensor] = []
    for start in range(0, len(x), grid.batch_size):
        chunk = torch.stack([sizer(img) for img in x[start : start + grid.batch_size]])
        seeds = [sample_seed(seed, k) for k in range(start, start + len(chunk))]
        y = run(chunk, seeds).float().cpu()
        out.extend(unsize(img, shape, grid.size, grid.chain.resize_mode) for img in y)
    return torch.stack(out)


def _windows(x: torch.Tensor, grid: InputGrid, run: Run, seed: int) -> torch.Tensor:
    """``(1, 1, *shape)`` → ``(1, C, *shape)`` through windows of the model's size.

    Window ``k`` draws from ``sample_seed(seed, k)`` (MONAI visits the windows in a fixed order).
    """
    from monai.inferers import sliding_window_inference

    count = [0]

    def predictor(windows: torch.Tensor) -> torch.Tensor:
        seeds = [sample_seed(seed, k) for k in range(count[0], count[0] + len(windows))]
        count[0] += len(windows)
        return run(windows, seeds).float().cpu()

    out = sliding_window_inference(x, grid.size, grid.batch_size, predictor, overlap=0.25, mode="gaussian",
                                   cval=grid.pad_value)  # fmt: skip
    assert isinstance(out, torch.Tensor)
    return torch.as_tensor(out).float()


def unsize(y: torch.Tensor, shape: tuple[int, ...], size: tuple[int, ...], mode: ResizeMode) -> torch.Tensor:
    """Undo :class:`~medgen.data.transforms.SizeTo`: ``(C, *size)`` → ``(C, *shape)`` on the unsized grid.

    ``pad_crop`` is undone by the opposite centred pad/crop; ``resize`` by cropping the padding (the resized
    shape as MONAI's ``Resize(size_mode="longest")`` computes it) and resizing back (bilinear/trilinear).
    """
    from monai.transforms import ResizeWithPadOrCrop

    inner = shape
    if mode == "resize" and shape != size:
        scale = max(size) / max(shape)
        inner = tuple(int(round(s * scale)) for s in shape)
    out = ResizeWithPadOrCrop(inner)(y)
    out = torch.as_tensor(out.as_tensor() if hasattr(out, "as_tensor") else out)
    if inner != shape:
        interp = "bilinear" if len(shape) == 2 else "trilinear"
        out = torch.nn.functional.interpolate(out[None], size=shape, mode=interp, align_corners=False)[0]
    return out.float().contiguous()


def _onto(y: torch.Tensor, original: Any) -> torch.Tensor:
    """``y`` (a MetaTensor on the prepared RAS grid) resampled onto ``original``'s grid; plain ``(C, *spatial)``."""
    from monai.data import MetaTensor
    from monai.transforms import ResampleToMatch

    same_shape = tuple(y.shape[1:]) == tuple(original.shape[1:])
    if not isinstance(y, MetaTensor):
        return y.float()
    if same_shape and np.allclose(np.asarray(y.affine), np.asarray(original.affine), atol=1e-6):
        return y.as_tensor().float()
    dst = MetaTensor(torch.zeros((1, *original.shape[1:])), affine=original.affine)
    out = ResampleToMatch(mode="bilinear", padding_mode="border", align_corners=True)(y, dst)
    return torch.as_tensor(out.as_tensor() if isinstance(out, MetaTensor) else out).float()


# ---------------------------------------------------------------------------------------------- files and manifest
@dataclass(frozen=True)
class InputFile:
    """One input and the name of its output.

    Attributes:
        path: The image file (or DICOM series folder) to translate.
        name: Its output's name without extension: the input's own (:func:`input_stem`), or in a paired datalist
            the pair's target (``image`` column), so ``medgen evaluate --paired`` matches outputs and targets.
        target: The pair's target image (paired datalists only).
    """

    path: Path
    name: str
    target: Path | None = None


def list_inputs(src: str | Path, domain: tuple[str, int] | None = None) -> list[InputFile]:
    """The input images of ``src``: one image file, a folder of images, a CSV/JSON datalist or ``demo:NAME``.

    A datalist with a ``source`` column (image-to-image pairs) translates each pair's source and names the output
    after the pair's target (``image``); otherwise each ``image`` is an input named after itself.

    Args:
        src: What to translate.
        domain: ``(column, code)``: of a datalist with that condition column, only the rows of that domain (the
            source domain of a CycleGAN direction, :func:`source_domain`); other inputs are not filtered.

    Raises:
        InputError: Nothing at ``src``, no images in it, or two inputs whose outputs would share a name.
    """
    from medgen.data.datalist import find_records
    from medgen.data.formats import is_dicom_dir

    path = Path(src)
    if not str(src).startswith("demo:"):
        if not path.exists():
            raise InputError(path, "input does not exist (expected an image file, a folder of images or a datalist)")
        if path.is_file() and path.suffix.lower() not in (".csv", ".json") or is_dicom_dir(path):
            return [InputFile(path, input_stem(path))]
    records = find_records(src).records
    if domain is not None and any(domain[0] in r.conditions for r in records):
        column, code = domain
        records = [r for r in records if r.conditions.get(column) == code]
        if not records:
            raise InputError(src, f"has no rows of domain {code} (column '{column}') to translate from")
    files = [
        InputFile(Path(r.source), input_stem(Path(r.image)), Path(r.image))
        if r.source
        else InputFile(Path(r.image), input_stem(Path(r.image)))
        for r in records
    ]
    if not files:
        raise InputError(path, "has no images")
    seen: dict[str, Path] = {}
    for item in files:
        if item.name in seen:
            raise InputError(item.path, f"has the same output name as {seen[item.name]} ({item.name})")
        seen[item.name] = item.path
    return files


def source_domain(model: TrainableModel, direction: str) -> tuple[str, int] | None:
    """``(column, code)`` of the domain a two-way model translates from (``a2b``: 0 = a, ``b2a``: 1 = b); else None."""
    column = getattr(model, "domain_column", None)
    if not isinstance(model, TranslationModel) or not isinstance(column, str) or len(model.directions) < 2:
        return None
    return column, 0 if direction == "a2b" else 1


def input_stem(path: Path) -> str:
    """The name of an input without its image suffix (``ct_001.nii.gz`` → ``ct_001``; a DICOM folder's name)."""
    suffix = suffix_of(path)
    return path.name[: -len(suffix)] if suffix and path.is_file() else path.name


def input_seed(seed: int, stem: str) -> int:
    """The seed of the input named ``stem`` in a run seeded ``seed``: depends on the name, not on the file order.

    A folder that gains files keeps every other file's seed (``medgen generate`` seeds by index instead,
    :func:`medgen.generation.seeds.sample_seed`; slices of one file draw from ``sample_seed(input_seed, k)``).
    """
    digest = hashlib.sha256(f"medgen-translate:{seed}:{stem}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def default_format(path: Path, spatial_dims: int) -> OutputFormat:
    """The input's own format where medgen writes it (NIfTI, MHA, NRRD, NPY, PNG), else NIfTI (3D) or PNG (2D)."""
    from medgen.data.formats import detect_format

    fmt = str(detect_format(path)) if path.is_file() else "dicom"
    if fmt in EXTENSIONS and (fmt != "png" or spatial_dims == 2):
        return fmt  # type: ignore[return-value]
    return "nifti" if spatial_dims == 3 else "png"


@dataclass
class TranslateOptions:
    """One translation run.

    Attributes:
        inputs: The input image files and their output names.
        out_dir: Output folder (resumable).
        seed: Run seed (per file: :func:`input_seed`).
        fmt: Output format (None: each input's own, see :func:`default_format`).
        checkpoint: The resolved model path (recorded).
        checkpoint_sha256: The model's sha256 (recorded).
        modality: The outputs' modality (the model card's).
        intensity: The training intensity mapping of the outputs (the card's), for stored units.
    """

    inputs: list[InputFile]
    out_dir: Path
    seed: int = 0
    fmt: OutputFormat | None = None
    checkpoint: str = ""
    checkpoint_sha256: str = ""
    modality: str = "unknown"
    intensity: dict[str, Any] | None = None


@dataclass
class TranslateSummary:
    """What a run did: outputs written now, and inputs already translated (resumed)."""

    written: int = 0
    skipped: int = 0
    files: list[Path] = field(default_factory=list)


#: Manifest fields that must match for an output to count as this run's: option → the flag that sets it.
IDENTITY = {"checkpoint_sha256": "--checkpoint (its weights)", "run_seed": "--seed", "direction": "--direction",
            "sampler": "--method", "steps": "--steps", "source": "--source", "target": "--target"}  # fmt: skip


def identity(opts: TranslateOptions, translator: Translator) -> dict[str, Any]:
    """The manifest values of :data:`IDENTITY` for this run."""
    return {"checkpoint_sha256": opts.checkpoint_sha256, "run_seed": opts.seed, "direction": translator.direction,
            "sampler": translator.sampler, "steps": translator.steps, "source": translator.source,
            "target": translator.target}  # fmt: skip


def _done(out: Path, wanted: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Rows of ``out``'s manifest whose file exists with its sha256, by input path; the manifest is rewritten to them.

    Raises:
        InputError: A row translated with other options (the folder belongs to another run).
    """
    path = out / manifest.MANIFEST
    lines = [line for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    rows = [r for r in manifest.read_rows(path) if r.get("file") and (out / str(r["file"])).is_file()]
    rows = [r for r in rows if file_sha256(out / str(r["file"])) == r["sha256"]]
    for row in rows:
        changed = [flag for key, flag in IDENTITY.items() if row.get(key) != wanted[key]]
        if changed:
            raise InputError(out, f"holds outputs translated with other options ({', '.join(changed)} differ); "
                                  "use a new --out folder")  # fmt: skip
    if len(rows) != len(lines):  # torn lines or rows whose file is gone or damaged: drop them
        manifest.rewrite(path, rows)
    return {str(r["input"]): r for r in rows}


def _remove_temporaries(out: Path, names: list[str]) -> None:
    """Delete temporary files an interrupted run left for these outputs (see :func:`medgen.data.io.atomic_write`)."""
    for name in names:
        for tmp in out.glob(f".{name}.*.tmp*"):
            tmp.unlink(missing_ok=True)


def translate_files(
    opts: TranslateOptions, translator: Translator, grid: InputGrid, model: TrainableModel, device: torch.device
) -> TranslateSummary:
    """Translate every input that has no valid output yet into ``opts.out_dir`` and record it in the manifest.

    Each output is written atomically and only then its manifest row appended (as ``medgen generate`` does), so an
    interrupted run leaves no half-written file, and a rerun skips the inputs whose output and row exist and match
    (same input sha256, same options); an input whose content changed is translated again.

    Raises:
        InputError: An unreadable input, a 3D input written as PNG, or a folder holding another run's outputs.
    """
    out = Path(opts.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wanted = identity(opts, translator)
    done = _done(out, wanted)
    summary = TranslateSummary()
    model.to(device)
    if device.type == "cpu":  # outputs independent of --batch-size, as generate's (medgen.nets.invariance)
        make_batch_invariant(model)
    writer = manifest.ManifestWriter(out / manifest.MANIFEST)
    try:
        for index, item in enumerate(progress(opts.inputs, desc="translating", total=len(opts.inputs))):
            path = item.path
            key = str(path.resolve())
            digest = _input_digest(path)
            row = done.get(key)
            if row is not None and row.get("input_sha256") == digest:
                summary.skipped += 1
                continue
            summary.files.append(_translate_one(item, index, digest, opts, translator, grid, device, out, writer))
            summary.written += 1
    finally:
        writer.close()
    if summary.written:
        _drop_superseded(out)
    return summary


def _input_digest(path: Path) -> str:
    """sha256 of an input file; of a DICOM series folder, of its files' digests in name order."""
    if path.is_file():
        return file_sha256(path)
    if not path.is_dir():
        raise InputError(path, "input does not exist")
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(file_sha256(file).encode())
    return h.hexdigest()


def _translate_one(
    item: InputFile,
    index: int,
    digest: str,
    opts: TranslateOptions,
    translator: Translator,
    grid: InputGrid,
    device: torch.device,
    out: Path,
    writer: manifest.ManifestWriter,
) -> Path:
    """Translate, write and record one input; returns the output path."""
    path, stem = item.path, item.name
    seed = input_seed(opts.seed, stem)
    with batch_invariant_kernels(device):
        image, affine = translate_image(path, grid, translator.run, seed)
    dims = image.ndim - 1
    fmt: OutputFormat = opts.fmt or default_format(path, dims)
    if fmt == "png" and dims == 3:
        raise InputError("--format", f"png is for 2D images but {path} is a volume; use nifti, mha, nrrd or npy")
    output = out / f"{stem}.{EXTENSIONS[fmt]}"
    _remove_temporaries(out, [output.name])
    write_sample(torch.nan_to_num(image), output, fmt, affine, opts.intensity)
    spacing = [round(float(v), 6) for v in np.linalg.norm(affine[:3, : image.ndim - 1], axis=0)]
    writer.append({
        "index": index, "file": output.name, "sha256": file_sha256(output), "input": str(path.resolve()),
        "input_sha256": digest, "target_image": None if item.target is None else str(item.target.resolve()),
        "checkpoint": opts.checkpoint, "checkpoint_sha256": opts.checkpoint_sha256,
        "seed": seed, "run_seed": opts.seed, "direction": translator.direction, "kind": translator.kind,
        "sampler": translator.sampler, "steps": translator.steps, "source": translator.source,
        "target": translator.target, "shape": list(image.shape[1:]), "spacing": spacing, "format": fmt,
        "modality": opts.modality, "medgen_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    })  # fmt: skip
    return output


def _drop_superseded(out: Path) -> None:
    """Keep one manifest row per input and per file: the last (a changed input or a reused name was redone)."""
    path = out / manifest.MANIFEST
    rows = manifest.read_rows(path)
    by_input = {str(r["input"]): i for i, r in enumerate(rows)}
    by_file = {str(r["file"]): i for i, r in enumerate(rows)}
    keep = [r for i, r in enumerate(rows) if by_input[str(r["input"])] == i and by_file[str(r["file"])] == i]
    if len(keep) != len(rows):
        manifest.rewrite(path, keep)


def data_record(source_kind: str, path: Path, card: ModelCard) -> dict[str, Any]:
    """What the model's training data was: the card's fields, with a checkpoint's whole ``data`` block over them.

    The block adds what a card does not carry (``source_modality``, ``slice_axis``). Reading it reads the
    checkpoint file a second time (tensors are loaded ``weights_only``; nothing is built).
    """
    record = dict(card.raw)
    if source_kind == "checkpoint":
        from medgen.store.ckpt import read_checkpoint

        data = read_checkpoint(path).get("medgen", {}).get("data") or {}
        record.update({k: v for k, v in data.items() if v is not None})
    return record
