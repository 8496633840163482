"""A folder holds one run: every option that changes the files must match on a rerun, or the rerun is refused."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medgen.cli import main
from medgen.errors import InputError
from medgen.generation.conditions import make_plan
from medgen.generation.qc import QualityControl
from medgen.generation.run import GenerationJob, GenerationOptions, generate
from medgen.store.load import load_model
from tests.generation.conftest import CheckpointFactory

LABEL = [{"name": "label", "kind": "class", "num_classes": 3}]


def _base(ckpt: Path, out: Path) -> list[str]:
    return ["generate", "--checkpoint", str(ckpt), "--num-samples", "2", "--out", str(out), "--steps", "1"]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (["--condition", "label=2"], "--condition/--conditions-csv"),
        (["--conditions-csv", "CSV"], "--condition/--conditions-csv"),
        (["--condition", "label=0", "--raw-weights"], "--raw-weights"),
        (["--condition", "label=0", "--memorization-index", "INDEX"], "--memorization-index"),
    ],
)
def test_changing_an_option_of_the_files_is_refused(
    tmp_path: Path,
    make_checkpoint: CheckpointFactory,
    capsys: pytest.CaptureFixture[str],
    change: list[str],
    named: str,
) -> None:
    ckpt = make_checkpoint(2, conditions=LABEL)
    out = tmp_path / "gen"
    assert main([*_base(ckpt, out), "--condition", "label=0"]) == 0
    csv = tmp_path / "c.csv"
    csv.write_text("label\n1\n1\n")
    index = tmp_path / "index"
    if "INDEX" in change:
        train = ["memorization", "index", "--train", str(out), "--out", str(index), "--embedder", "pixel"]
        assert main(train) == 0
    change = [str(csv) if c == "CSV" else str(index) if c == "INDEX" else c for c in change]
    rows = (out / "manifest.jsonl").read_text()
    capsys.readouterr()
    assert main([*_base(ckpt, out), *change]) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and str(out) in err and len(err.splitlines()) == 1
    assert (out / "manifest.jsonl").read_text() == rows  # nothing was counted as done or added


def test_weights_are_recorded(tmp_path: Path, make_checkpoint: CheckpointFactory) -> None:
    ckpt = make_checkpoint(2)
    out = tmp_path / "raw"
    assert main([*_base(ckpt, out), "--raw-weights"]) == 0
    record = json.loads((out / "generation.json").read_text())
    assert record["options"]["weights"] == "raw"
    assert record["options"]["memorization_index"] is None
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {r["weights"] for r in rows} == {"raw"}


def test_a_csv_conditioned_set_grows_with_its_csv(tmp_path: Path, make_checkpoint: CheckpointFactory) -> None:
    ckpt = make_checkpoint(2, conditions=LABEL)
    out, csv = tmp_path / "gen", tmp_path / "c.csv"
    csv.write_text("label\n0\n1\n")
    assert main([*_base(ckpt, out), "--conditions-csv", str(csv)]) == 0
    csv.write_text("label\n0\n1\n2\n")  # the same first rows, one more
    assert main([*_base(ckpt, out)[:4], "3", *_base(ckpt, out)[5:], "--conditions-csv", str(csv)]) == 0
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["condition"] for r in rows] == [{"label": "0"}, {"label": "1"}, {"label": "2"}]
    csv.write_text("label\n0\n2\n2\n")  # sample 1 would now mean another label
    assert main([*_base(ckpt, out)[:4], "3", *_base(ckpt, out)[5:], "--conditions-csv", str(csv)]) == 2


def test_a_changed_conditioning_image_is_refused(
    tmp_path: Path, make_checkpoint: CheckpointFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same ``mask=PATH`` with other contents is another condition."""
    ckpt = make_checkpoint(2, image_channels=1)
    mask = tmp_path / "mask.npy"
    labels = np.zeros((16, 16), np.float32)
    labels[2:6, 3:9] = 1.0
    np.save(mask, labels)
    out = tmp_path / "gen"
    assert main([*_base(ckpt, out), "--condition", f"mask={mask}"]) == 0
    np.save(mask, labels.T)
    capsys.readouterr()
    assert main([*_base(ckpt, out), "--condition", f"mask={mask}"]) == 2
    assert "--condition/--conditions-csv" in capsys.readouterr().err


def test_changed_qc_thresholds_are_refused(tmp_path: Path, make_checkpoint: CheckpointFactory) -> None:
    model, _, card, digest = load_model(make_checkpoint(2))
    plan = make_plan(model.net, {}, [])
    opts = GenerationOptions(num_samples=1, out_dir=tmp_path / "gen", steps=1, checkpoint_sha256=digest)
    generate(GenerationJob(model, card, opts, plan), torch.device("cpu"))
    stricter = dataclasses.replace(opts, qc=QualityControl(min_std=0.5))
    with pytest.raises(InputError, match="quality-control thresholds"):
        generate(GenerationJob(model, card, stricter, plan), torch.device("cpu"))
    generate(GenerationJob(model, card, opts, plan), torch.device("cpu"))  # the same thresholds resume


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"options": 3}'])
def test_a_corrupt_run_record_is_refused(
    tmp_path: Path, make_checkpoint: CheckpointFactory, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    ckpt = make_checkpoint(2)
    out = tmp_path / "gen"
    assert main(_base(ckpt, out)) == 0
    (out / "generation.json").write_text(content)
    capsys.readouterr()
    assert main(_base(ckpt, out)) == 2
    err = capsys.readouterr().err.strip()
    assert "generation.json" in err and len(err.splitlines()) == 1
