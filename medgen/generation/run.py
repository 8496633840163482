"""The generation loop: batches of sample indices → seeded, quality-checked, written, recorded samples.

Every sample ``i`` is drawn with its own generator seeded from ``(seed, i, attempt)`` and the network runs
batch-invariant (:mod:`medgen.nets.invariance`), so on the CPU the files do not depend on ``batch_size`` or
on how indices are sharded over processes. Shards take indices ``rank, rank + world_size, …``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import platform
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from medgen import __version__
from medgen.data.intensity import IntensityMapping, as_intensity
from medgen.data.io import atomic_write
from medgen.errors import InputError
from medgen.generation import manifest
from medgen.generation.conditions import ConditionPlan, batch_condition, load_condition_image
from medgen.generation.gate import GateResult, MemorizationGate
from medgen.generation.qc import QualityControl
from medgen.generation.seeds import sample_generators, sample_seed
from medgen.generation.writers import (
    EXTENSIONS,
    OutputFormat,
    grid_affine,
    reference_affine,
    write_mask,
    write_sample,
)
from medgen.hashing import file_sha256
from medgen.models.base import GenerativeModel
from medgen.nets.invariance import batch_invariant_kernels, make_batch_invariant
from medgen.progress import progress
from medgen.store.card import ModelCard

log = logging.getLogger(__name__)


@dataclass
class GenerationOptions:
    """One generation run.

    Attributes:
        num_samples: Total samples N (indices ``0..N-1``) over all shards.
        out_dir: Output folder.
        seed: Run seed; sample ``i`` uses a seed derived from ``(seed, i)``.
        batch_size: Samples per network call (does not change the files on the CPU).
        sampler: Diffusers scheduler / alias (diffusion) or ODE solver (flow); None: the model's default.
        steps: Sampling steps; None: the model's default.
        guidance: Classifier-free guidance scale; None: the model's default.
        fmt: Output format.
        reference: Image whose geometry (rescaled to the sample grid) the outputs take.
        max_retries: Quality-control retries per sample (each with a new derived seed).
        qc: Quality-control thresholds.
        weights: ``ema`` (the EMA weights when the run kept them) or ``raw`` (the training weights), as loaded.
        rank: This process's shard.
        world_size: Number of shards.
        checkpoint: The resolved path the model was loaded from (recorded).
        checkpoint_sha256: The model's verified sha256: an export card's digest, or the ``.ckpt`` file's (recorded).
        command: The command line (recorded).
    """

    num_samples: int
    out_dir: Path
    seed: int = 0
    batch_size: int = 8
    sampler: str | None = None
    steps: int | None = None
    guidance: float | None = None
    fmt: OutputFormat = "png"
    reference: str | None = None
    max_retries: int = 2
    qc: QualityControl = field(default_factory=QualityControl)
    weights: Literal["ema", "raw"] = "ema"
    rank: int = 0
    world_size: int = 1
    checkpoint: str = ""
    checkpoint_sha256: str = ""
    command: list[str] = field(default_factory=list)

    def identity(self) -> dict[str, Any]:
        """The options that determine the files; a rerun into the same folder must repeat them."""
        return {k: v for k, v in asdict(self).items() if k in _IDENTITY}


#: Options that change the files, with the flag that sets each. ``num_samples`` is not one: sample i does not
#: depend on N, so a set can grow. :func:`run_identity` adds the memorization index; the conditions are checked
#: per sample (:func:`_check_conditions`), so a set conditioned by a CSV can grow with the CSV.
_IDENTITY = {
    "seed": "--seed", "sampler": "--sampler", "steps": "--steps", "guidance": "--guidance", "fmt": "--format",
    "reference": "--reference", "max_retries": "--max-retries", "qc": "quality-control thresholds",
    "weights": "--raw-weights", "checkpoint_sha256": "--checkpoint (its sha256: weights, config or card)",
    "memorization_index": "--memorization-index",
}  # fmt: skip


def run_identity(opts: GenerationOptions, gate: MemorizationGate | None) -> dict[str, Any]:
    """What determines every file of a run: :meth:`GenerationOptions.identity` and the memorization index."""
    index = str(Path(gate.path).resolve()) if gate else None
    return {**opts.identity(), "memorization_index": index}


def _check_conditions(out_dir: Path, done: dict[int, dict[str, Any]], plan: ConditionPlan, num_samples: int) -> None:
    """Refuse to count a sample as done when it was drawn with other conditions than this run gives it.

    Raises:
        InputError: A done sample's ``condition_sha256`` (values and conditioning-image contents) differs.
    """
    for index in sorted(i for i in done if i < num_samples):
        recorded = done[index].get("condition_sha256")
        if recorded is not None and recorded != plan.row_digest(index):
            raise InputError(
                out_dir,
                f"holds samples generated with other options (--condition/--conditions-csv differ, from sample "
                f"{index}); use a new --out folder",
            )


@dataclass
class GenerationSummary:
    """What a run did: written now, already there (resumed), flagged by quality control, dropped as copies."""

    written: int = 0
    skipped: int = 0
    flagged: int = 0
    dropped: int = 0
    merged: bool = False


@dataclass(frozen=True)
class GenerationJob:
    """What a generation run draws from and records, passed as one record through the loop and its Lightning twin.

    Attributes:
        model: The trained generative model (its image size and sampling defaults are read).
        card: Its model card (``intensity`` and ``spacing`` of the training data are used).
        opts: The run; ``opts.rank``/``opts.world_size`` choose the shard.
        plan: Conditions per sample index.
        gate: Memorization gate: samples copying training images are redrawn, and dropped if they still copy.
    """

    model: GenerativeModel
    card: ModelCard
    opts: GenerationOptions
    plan: ConditionPlan
    gate: MemorizationGate | None = None

    def on_shard(self, rank: int, world_size: int) -> GenerationJob:
        """The same job for shard ``rank`` of ``world_size``."""
        return replace(self, opts=replace(self.opts, rank=rank, world_size=world_size))


def resolved_sampling(model: GenerativeModel, opts: GenerationOptions) -> tuple[str, int, float]:
    """(sampler, steps, guidance) actually used: the options, else the model's defaults."""
    used = model.resolved(opts.sampler, opts.steps, opts.guidance)
    return used.method, used.num_steps, used.guidance


def _check_run(out_dir: Path, identity: dict[str, Any]) -> None:
    """Refuse to mix samples of different options in one folder, or to resume one whose record is unreadable.

    Raises:
        InputError: ``generation.json`` is not a JSON record, or an option of :func:`run_identity` differs.
    """
    path = out_dir / "generation.json"
    if not path.is_file():
        return
    try:
        before = json.loads(path.read_text()).get("options")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        before = None
    if not isinstance(before, dict):
        raise InputError(path, "is not a readable run record (expected JSON with 'options'); use a new --out folder")
    changed = [_IDENTITY.get(k, k) for k, v in identity.items() if k in before and before[k] != v]
    if changed:
        raise InputError(
            out_dir,
            f"holds samples generated with other options ({', '.join(changed)} differ); use a new --out folder",
        )


def _write_run_record(
    out_dir: Path, opts: GenerationOptions, identity: dict[str, Any], device: torch.device, extra: dict[str, Any]
) -> None:
    import diffusers
    import monai

    record = {
        "command": opts.command,
        "options": {**identity, "num_samples": opts.num_samples, "batch_size": opts.batch_size,
                    "world_size": opts.world_size},
        "checkpoint": opts.checkpoint,
        "checkpoint_sha256": opts.checkpoint_sha256,
        "versions": {"medgen": __version__, "torch": torch.__version__, "monai": monai.__version__,
                     "diffusers": diffusers.__version__, "python": sys.version.split()[0]},
        "device": {"type": device.type, "name": _device_name(device), "platform": platform.platform()},
        **extra,
    }  # fmt: skip
    atomic_write(out_dir / "generation.json", lambda tmp: tmp.write_text(json.dumps(record, indent=2)))


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class Drawn:
    """One drawn sample, after its quality-control and memorization redraws.

    Attributes:
        index: The sample's index in the run.
        sample: ``(C, *spatial)`` sample in the model's [-1, 1] range (float32, CPU).
        attempts: Draws it took (1 + redraws); the last attempt's seed made ``sample``.
        issues: Quality-control issues of the kept draw (empty: passed).
        verdict: The memorization gate's result of the kept draw (None without a gate).
    """

    index: int
    sample: torch.Tensor
    attempts: int
    issues: list[str]
    verdict: GateResult | None


class ShardRun:
    """One process's share of a generation run: the indices left to draw, and the recording of drawn samples.

    Opening it cleans up after an interrupted run (temporary files, torn manifest lines) and records the run
    (``generation.json``, rank 0); :meth:`record` writes each sample atomically and then appends its manifest
    row; :meth:`finish` merges the shard manifests once every index is done. The plain loop
    (:func:`generate`) and Lightning's ``Trainer.predict`` (:mod:`medgen.generation.predict`) both drive it.

    Args:
        job: The model, its card, the run's options, conditions and memorization gate.
        device: Where samples are drawn (recorded).
    """

    def __init__(self, job: GenerationJob, device: torch.device) -> None:
        opts, plan, card, gate, model = job.opts, job.plan, job.card, job.gate, job.model
        self.opts, self.plan, self.card, self.device, self.gate = opts, plan, card, device, gate
        self.out = Path(opts.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.identity = run_identity(opts, gate)
        _check_run(self.out, self.identity)
        done = manifest.prepare(self.out, opts.rank, opts.world_size)
        _check_conditions(self.out, done, plan, opts.num_samples)
        mine = range(opts.rank, opts.num_samples, opts.world_size)
        self.todo = [i for i in mine if i not in done]
        self.summary = GenerationSummary(skipped=len(mine) - len(self.todo))
        if opts.rank == 0:
            _write_run_record(self.out, opts, self.identity, device, {"started": _now()})
        self.size = tuple(model.image_size or ())
        ref = opts.reference
        self.affine = reference_affine(ref, self.size) if ref else grid_affine(card.spacing, len(self.size))
        norms = torch.linalg.norm(torch.as_tensor(self.affine[:3, : len(self.size)]), dim=0)
        self.spacing = [round(float(v), 6) for v in norms]
        self.sampling = resolved_sampling(model, opts)
        self.writer = manifest.ManifestWriter(self.out / manifest.part_name(opts.rank, opts.world_size))
        self.bar = progress(range(len(self.todo)), desc="generating", total=len(self.todo))

    def batches(self) -> list[list[int]]:
        """The indices left to draw, in batches of ``opts.batch_size``."""
        size = self.opts.batch_size
        return [self.todo[i : i + size] for i in range(0, len(self.todo), size)]

    def record(self, drawn: list[Drawn]) -> None:
        """Write the drawn samples (and masks) and append their manifest rows; copies are recorded as dropped."""
        opts, out, gate = self.opts, self.out, self.gate
        sampler, steps, guidance = self.sampling
        for item in drawn:
            index, sample, attempts, issues, verdict = item.index, item.sample, item.attempts, item.issues, item.verdict
            row: dict[str, Any] = {"index": index}
            if verdict is not None and verdict.flagged:  # still a copy after every retry: not written
                record = {**verdict.as_dict(), "index": gate.path if gate else None}
                row.update(file=None, sha256=None, dropped="memorization", memorization=record,
                           condition=self.plan.row(index), condition_sha256=self.plan.row_digest(index))  # fmt: skip
                self.writer.append(row)
                self.summary.dropped += 1
                next(self.bar, None)
                continue
            path = out / f"sample_{index:06d}.{EXTENSIONS[opts.fmt]}"
            write_sample(torch.nan_to_num(sample), path, opts.fmt, self.affine, self.card.intensity)
            row.update(_sample_row(path, index, sample, attempts, issues, opts, self.plan, self.card, self.spacing))
            row.update(sampler=sampler, steps=steps, guidance=guidance)
            if verdict is not None:
                row["memorization"] = {**verdict.as_dict(), "index": gate.path if gate else None}
            mask = self.plan.row(index).get("mask")
            if mask:  # paired output: the conditioning mask on the sample's grid and geometry
                mask_path = out / f"sample_{index:06d}_mask.{EXTENSIONS[opts.fmt]}"
                labels = load_condition_image(mask, self.size, True, self.plan.chain)
                write_mask(labels, mask_path, opts.fmt, self.affine)
                row.update(mask_file=mask_path.name, mask_sha256=file_sha256(mask_path))
            self.writer.append(row)
            self.summary.written += 1
            self.summary.flagged += bool(issues)
            next(self.bar, None)

    def close(self) -> None:
        """Close this shard's manifest part."""
        self.writer.close()

    def finish(self, merge: bool = True) -> GenerationSummary:
        """Merge the shard manifests if every index is done (``merge``), record the run's end; the summary."""
        self.summary.merged = merge and manifest.merge_parts(self.out, self.opts.num_samples)
        if self.opts.rank == 0 or self.summary.merged:
            end = {"finished": _now(), "complete": self.summary.merged}
            _write_run_record(self.out, self.opts, self.identity, self.device, end)
        return self.summary


def generate(job: GenerationJob, device: torch.device) -> GenerationSummary:
    """Generate this shard's missing samples into ``job.opts.out_dir`` and record them, in this process.

    Args:
        job: The model, its card, the run's options, conditions and memorization gate.
        device: Where to sample.

    Returns:
        The run's :class:`GenerationSummary`.
    """
    shard = ShardRun(job, device)
    model = job.model.to(device)
    batch_invariant_on_cpu(model, device)
    try:
        for batch in shard.batches():
            shard.record(draw(job, batch, device))
    finally:
        shard.close()
    return shard.finish()


def _sample_row(
    path: Path,
    index: int,
    sample: torch.Tensor,
    attempts: int,
    issues: list[str],
    opts: GenerationOptions,
    plan: ConditionPlan,
    card: ModelCard,
    spacing: list[float],
) -> dict[str, Any]:
    """The manifest fields of a written sample (sampler, steps and guidance are added by the caller)."""
    return {
        "file": path.name,
        "sha256": file_sha256(path),
        "index": index,
        "seed": sample_seed(opts.seed, index, attempts - 1),
        "checkpoint": opts.checkpoint,
        "checkpoint_sha256": opts.checkpoint_sha256,
        "condition": plan.row(index),
        "condition_sha256": plan.row_digest(index),
        "shape": list(sample.shape[1:]),
        "spacing": spacing,
        "intensity": _unit(opts.fmt, card.intensity),
        "modality": card.modality,
        "qc": {"passed": not issues, "issues": issues, "attempts": attempts},
        "weights": opts.weights,
        "created": _now(),
    }


def batch_invariant_on_cpu(model: GenerativeModel, device: torch.device) -> None:
    """On the CPU, make ``model``'s output rows independent of the batch size (:mod:`medgen.nets.invariance`).

    On CUDA, cuDNN picks algorithms by batch size anyway: the fast GEMMs are kept.
    """
    if device.type == "cpu":
        make_batch_invariant(model)


def draw(job: GenerationJob, indices: list[int], device: torch.device) -> list[Drawn]:
    """Samples of ``indices``, redrawing failed ones (QC or copies) with the next attempt's seed; in index order."""
    model, opts, plan, gate = job.model, job.opts, job.plan, job.gate
    size = tuple(model.image_size or ())
    results: dict[int, Drawn] = {}
    pending = list(indices)
    for attempt in range(opts.max_retries + 1):
        if not pending:
            break
        cond = batch_condition(plan, pending, size)
        generators = sample_generators([sample_seed(opts.seed, i, attempt) for i in pending])
        with batch_invariant_kernels(device):
            samples = model.sample(
                len(pending), cond=cond, generator=generators, method=opts.sampler, num_steps=opts.steps,
                guidance=opts.guidance,
            )  # fmt: skip
        samples = samples.float().cpu()
        verdicts: list[GateResult | None] = list(gate.check(samples)) if gate else [None] * len(pending)
        retry = []
        for i, sample, verdict in zip(pending, samples, verdicts, strict=True):
            issues = opts.qc.issues(sample)
            results[i] = Drawn(i, sample, attempt + 1, issues, verdict)
            if (issues or (verdict is not None and verdict.flagged)) and attempt < opts.max_retries:
                retry.append(i)
        pending = retry
    return [results[i] for i in indices]


def _unit(fmt: str, intensity: IntensityMapping | dict[str, Any] | None) -> dict[str, Any]:
    """The manifest's ``intensity`` field: what a written sample's values are, given the training mapping.

    ``intensity`` may still be the card's stored dict (read with :meth:`IntensityMapping.from_dict`).
    """
    mapping = as_intensity(intensity)
    of = mapping.to_dict() if mapping is not None else {}
    if fmt == "png":
        return {"stored": "uint8", "maps_to": [-1.0, 1.0], "of": of}
    if mapping is not None and mapping.kind == "window":
        return {"stored": mapping.unit or "HU", "window": [mapping.low, mapping.high]}
    return {"stored": "model [-1, 1]", "of": of}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
