"""``medgen translate``'s files: the inputs of a file, folder or datalist, one output each, and the manifest.

Each output is written atomically (:func:`medgen.generation.writers.write_sample`, in the units ``medgen generate``
writes) and only then recorded in ``manifest.jsonl`` (:mod:`medgen.generation.manifest`), so a rerun skips the
inputs whose output and row exist and match, and an interrupted run leaves no half-written file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgen import __version__
from medgen.data.formats import suffix_of
from medgen.errors import InputError
from medgen.generation import manifest
from medgen.generation.translate import Translator
from medgen.generation.translate_grid import InputGrid, translate_image
from medgen.generation.writers import EXTENSIONS, OutputFormat, write_sample
from medgen.hashing import file_sha256
from medgen.models.base import TrainableModel
from medgen.nets.invariance import batch_invariant_kernels, make_batch_invariant
from medgen.progress import progress


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
IDENTITY = {"checkpoint_sha256": "--checkpoint (its sha256: weights, config or card)", "run_seed": "--seed",
            "direction": "--direction", "sampler": "--method", "steps": "--steps", "source": "--source",
            "target": "--target"}  # fmt: skip


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
