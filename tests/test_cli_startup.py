"""Commands that only read arguments or model cards start without torch, Lightning, MONAI or diffusers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "lightning", "monai", "diffusers")


ROOT = Path(__file__).resolve().parents[1]


def _imported(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -X importtime -m medgen ARGS``; the result and the top-level names of every module imported."""
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "medgen", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    names = {line.split("|")[-1].strip().split(".")[0] for line in res.stderr.splitlines() if "import time:" in line}
    return res, names


def _registry(root: Path) -> Path:
    """A registry folder with one exported model: its card and 2 MB of weights."""
    card = {"name": "tiny", "family": "diffusion", "spatial_dims": 2, "modality": "mri", "image_size": [32, 32]}
    (root / "tiny").mkdir(parents=True)
    (root / "tiny" / "model_card.json").write_text(json.dumps({**card, "sha256": "0" * 64}))
    (root / "tiny" / "model.safetensors").write_bytes(b"\0" * 2_000_000)
    return root


@pytest.mark.parametrize(
    "args",
    [["--help"], ["checkpoints", "list"], ["checkpoints", "--help"], ["inspect", "--help"], ["generate", "--bogus"]],
)
def test_light_commands_import_no_heavy_library(args: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "MEDGEN_CHECKPOINTS": str(_registry(tmp_path / "registry"))}
    res, names = _imported(args, env)
    assert res.returncode == (2 if "--bogus" in args else 0), res.stderr[-2000:]
    assert not names & set(HEAVY), f"medgen {' '.join(args)} imported {sorted(names & set(HEAVY))}"


def test_checkpoints_list_has_a_header_and_the_size_on_disk(tmp_path: Path) -> None:
    env = {**os.environ, "MEDGEN_CHECKPOINTS": str(_registry(tmp_path / "registry"))}
    res = subprocess.run(
        [sys.executable, "-m", "medgen", "checkpoints", "list"], capture_output=True, text=True, env=env
    )
    header, *rows = res.stdout.splitlines()  # MEDGEN_CHECKPOINTS' models and the repository's checkpoints/
    assert header.split() == ["name", "family", "dims", "modality", "image_size", "disk", "path"]
    (row,) = [line for line in rows if line.startswith("tiny ")]
    assert all(line.split()[-1].startswith(str(ROOT / "checkpoints")) for line in rows if line != row)
    assert row.split() == ["tiny", "diffusion", "2D", "mri", "32x32", "2.0", "MB", str(tmp_path / "registry" / "tiny")]
