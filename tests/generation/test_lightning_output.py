"""Lightning's tips and banners are hidden narrowly: no log level changes for the process (``medgen fit``'s output
is checked in ``test_finetune.py::test_fit_init_from_prints_the_report``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from medgen.generation.conditions import make_plan
from medgen.generation.predict import generate_with_trainer
from medgen.generation.run import GenerationJob, GenerationOptions
from medgen.store.load import load_model
from tests.generation.conftest import CheckpointFactory

LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero")


def _logging_state() -> dict[str, tuple[int, list[logging.Filter]]]:
    return {n: (logging.getLogger(n).level, list(logging.getLogger(n).filters)) for n in LIGHTNING_LOGGERS}


def test_generate_with_trainer_leaves_lightning_logging_as_it_was(
    tmp_path: Path, make_checkpoint: CheckpointFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    loaded = load_model(make_checkpoint(2))
    before = _logging_state()
    opts = GenerationOptions(num_samples=1, out_dir=tmp_path / "out", batch_size=1, fmt="npy")
    job = GenerationJob(loaded.model, loaded.card, opts, make_plan(loaded.model.net, {}, []))
    summary, rank = generate_with_trainer(job, accelerator="cpu")
    assert summary.written == 1 and rank == 0
    assert _logging_state() == before
    out = capfd.readouterr()
    assert "Tip:" not in out.out + out.err and "GPU available" not in out.out + out.err
