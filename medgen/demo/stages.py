"""The demo's settings and its stage cache: a finished stage is skipped when nothing it depends on changed.

Each stage writes ``<out>/.stages/<name>.json`` after it finished: its key (what it depends on: the settings,
the sha256 of the checkpoints it uses, medgen's version) and its result (relative paths and numbers that
:mod:`medgen.demo.page` shows). A rerun whose key matches, with every listed file still there, reuses the result.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medgen import __version__
from medgen.data.io import atomic_write

#: What a stage returns and the cache stores: JSON values; ``files`` lists output paths relative to the demo folder.
Result = dict[str, Any]


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run.

    Attributes:
        quick: The test-sized run (``--quick``).
        num_samples: Samples generated from each 2D model (the augmentation set and the fine-tuned model's).
        finetune_steps: Optimizer steps of the fine-tuning.
        finetune_batch: Fine-tuning batch size.
        finetune_lr: Fine-tuning peak learning rate (after a short warm-up).
        bootstrap: Bootstrap subsamples of the evaluation CIs.
        diversity: Also measure the generated sets' diversity (MS-SSIM of random pairs; slow on CPU).
        max_train_slices: Slices of the training subject written (evenly spread; 0: all): the real side of the
            evaluation against it and the memorization search space.
        against_training_subject: Also evaluate the augmentation set against the training subject's slices (the
            quick run evaluates against the held-out subject only: Inception features dominate its time).
        volumes: Volumes generated from the 3D latent model.
        seed: Seed of generation, fine-tuning and evaluation.
    """

    quick: bool = False
    num_samples: int = 64
    finetune_steps: int = 300
    finetune_batch: int = 8
    finetune_lr: float = 1e-4
    bootstrap: int = 100
    diversity: bool = True
    max_train_slices: int = 0
    against_training_subject: bool = True
    volumes: int = 1
    seed: int = 0

    @classmethod
    def make(cls, quick: bool) -> DemoSettings:
        """The full run (about 10 minutes on 2 CPU cores), or the quick one (under 2 minutes)."""
        if quick:
            return cls(
                quick=True,
                num_samples=16,
                finetune_steps=20,
                finetune_batch=4,
                bootstrap=20,
                diversity=False,
                max_train_slices=32,
            )
        return cls()


@dataclass(frozen=True)
class Stage:
    """One step of the demo.

    Attributes:
        name: Short name (the cache file's stem and the page's anchor).
        title: What it does, printed as ``[i/n] title``.
        key: What its outputs depend on (settings, checkpoint digests); a change reruns it.
        run: Does the work in the demo folder, given the results of the stages before it (by name), and returns
            its :data:`Result`.
    """

    name: str
    title: str
    key: dict[str, Any]
    run: Callable[[Path, dict[str, Result]], Result]


def stage_file(out: Path, name: str) -> Path:
    """Where a finished stage's record is kept."""
    return out / ".stages" / f"{name}.json"


def cached(out: Path, stage: Stage) -> Result | None:
    """The stored result of ``stage`` when its key matches and all its files exist, else None."""
    path = stage_file(out, stage.name)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    result: Result = record.get("result", {})
    if record.get("key") != _key(stage) or not all((out / f).exists() for f in result.get("files", [])):
        return None
    return result


def run_stage(out: Path, stage: Stage, position: str, before: dict[str, Result]) -> Result:
    """Run ``stage`` (or reuse its cached result, saying so) and record it.

    Args:
        out: The demo folder.
        stage: The stage.
        position: ``[i/n]`` printed before its title.
        before: Results of the stages run before it, by name.

    Returns:
        Its result, with ``seconds`` (of the run that made it) and ``cached``.
    """
    hit = cached(out, stage)
    if hit is not None:
        print(f"\n{position} {stage.title}: cached, finished by an earlier run with the same settings and checkpoints "
              f"(delete {stage_file(out, stage.name)} to redo it)", flush=True)  # fmt: skip
        return {**hit, "cached": True}
    print(f"\n{position} {stage.title}", flush=True)
    start = time.monotonic()
    result = stage.run(out, before)
    result = {**result, "seconds": round(time.monotonic() - start, 1)}
    record = {"name": stage.name, "title": stage.title, "key": _key(stage), "result": result}
    path = stage_file(out, stage.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(record, indent=2), encoding="utf-8"))
    print(f"  done in {result['seconds']:.0f} s", flush=True)
    return {**result, "cached": False}


def _key(stage: Stage) -> dict[str, Any]:
    """The stage's key as stored (JSON round trip, so tuples compare equal to lists), with medgen's version."""
    return json.loads(json.dumps({**stage.key, "medgen_version": __version__}, default=str))


def settings_key(settings: DemoSettings, *fields: str) -> dict[str, Any]:
    """The named settings as a key (a stage depends only on the settings it uses)."""
    values = asdict(settings)
    return {f: values[f] for f in fields}


def rel(out: Path, path: Path) -> str:
    """``path`` relative to the demo folder, with forward slashes (for the cache and the page's links)."""
    return Path(path).resolve().relative_to(out.resolve()).as_posix()
