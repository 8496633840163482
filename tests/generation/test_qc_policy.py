"""Samples that fail quality control stay in the manifest, marked, and evaluate/memorization skip them by default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medgen.cli import main
from medgen.evaluation.sources import list_source
from medgen.memorization.sources import list_items
from tests.generation.conftest import CheckpointFactory

FAILED = {1, 3}


def _generated_with_failures(tmp_path: Path, make_checkpoint: CheckpointFactory) -> Path:
    """Four generated samples, of which those in ``FAILED`` are marked as failing quality control."""
    out = tmp_path / "gen"
    args = ["generate", "--checkpoint", str(make_checkpoint(2)), "--num-samples", "4", "--out", str(out)]
    assert main([*args, "--steps", "1"]) == 0
    manifest = out / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for row in rows:
        row["qc"] = {"passed": row["index"] not in FAILED, "issues": ["blank"] * (row["index"] in FAILED)}
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def test_readers_skip_failed_samples_unless_asked(tmp_path: Path, make_checkpoint: CheckpointFactory) -> None:
    out = _generated_with_failures(tmp_path, make_checkpoint)
    kept = [f"sample_{i:06d}" for i in range(4) if i not in FAILED]
    for source in (out, out / "manifest.jsonl"):  # the folder is read through its manifest
        assert [item.key for item in list_source(source)] == kept
        assert [Path(item.name).stem for item in list_items(source, "--generated")] == kept
        assert len(list_source(source, include_qc_failed=True)) == 4
        assert len(list_items(source, "--generated", include_qc_failed=True)) == 4


def test_evaluate_skips_failed_samples(
    tmp_path: Path, make_checkpoint: CheckpointFactory, caplog: pytest.LogCaptureFixture
) -> None:
    out = _generated_with_failures(tmp_path, make_checkpoint)
    base = ["evaluate", "--real", str(out), "--fake", str(out), "--paired", "--metrics", "psnr", "--data-range", "2",
            "--bootstrap", "0"]  # fmt: skip
    assert main([*base, "--out", str(tmp_path / "default")]) == 0
    assert "skipping 2 samples that failed quality control" in caplog.text
    assert main([*base, "--out", str(tmp_path / "all"), "--include-qc-failed"]) == 0
    default = json.loads((tmp_path / "default" / "report.json").read_text())
    everything = json.loads((tmp_path / "all" / "report.json").read_text())
    assert len(default["per_image"]) == 2 and len(everything["per_image"]) == 4


def test_generate_states_the_policy(
    tmp_path: Path, make_checkpoint: CheckpointFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gen"
    args = ["generate", "--checkpoint", str(make_checkpoint(2)), "--num-samples", "1", "--out", str(out)]
    assert main([*args, "--steps", "1"]) == 0
    assert "--include-qc-failed" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    assert "marked qc.passed false in the manifest" in " ".join(capsys.readouterr().out.split())
