"""``medgen generate --memorization-index``: samples that copy indexed training images are redrawn or dropped."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from medgen.cli import main
from tests.generation.conftest import CheckpointFactory


@pytest.mark.parametrize("family", ["diffusion", "gan"])
def test_copies_of_indexed_images_are_redrawn_or_dropped(
    tmp_path: Path, make_checkpoint: CheckpointFactory, family: str
) -> None:
    ckpt = make_checkpoint(2, family)
    base = ["generate", "--checkpoint", str(ckpt), "--num-samples", "6", "--seed", "3"]
    # Pretend a first run's samples were training images: the same command then reproduces exact copies.
    train = tmp_path / "train"
    assert main([*base, "--out", str(train)]) == 0
    index = tmp_path / "index"
    assert main(["memorization", "index", "--train", str(train), "--out", str(index), "--embedder", "pixel"]) == 0
    threshold = json.loads((index / "index.json").read_text())["verification"]["threshold"]
    gated = tmp_path / "gated"
    assert main([*base, "--out", str(gated), "--memorization-index", str(index), "--max-retries", "1"]) == 0
    originals = {hashlib.sha256(p.read_bytes()).hexdigest() for p in train.glob("sample_*.png")}
    rows = [json.loads(line) for line in (gated / "manifest.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(6))
    for row in rows:
        if row.get("dropped"):
            assert row["file"] is None and row["memorization"]["flagged"]
            continue
        assert row["qc"]["attempts"] == 2  # the first draw was a copy
        assert row["sha256"] not in originals
        assert not row["memorization"]["flagged"] and row["memorization"]["verification"]["score"] <= threshold
    # Rerunning the gated command resumes: nothing is redrawn or duplicated.
    assert main([*base, "--out", str(gated), "--memorization-index", str(index), "--max-retries", "1"]) == 0
    assert [json.loads(line) for line in (gated / "manifest.jsonl").read_text().splitlines()] == rows
