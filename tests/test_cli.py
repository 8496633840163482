"""The ``medgen`` entry points: help, version, exit codes, --debug (the demo: tests/test_demo.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medgen import __version__
from medgen.cli import main

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medgen", *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300
    )


def test_python_dash_m_and_version() -> None:
    res = _run("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"medgen {__version__}"


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("inspect", "dataset", "demo"):
        assert command in out


def test_dataset_help_documents_data_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dataset", "--help"]) == 0
    out = capsys.readouterr().out
    for option in (
        "--data.data_dir",
        "--data.modality",
        "--data.spatial_dims",
        "--data.image_size",
        "--data.batch_size",
        "--data.num_workers",
        "--data.val_fraction",
    ):
        assert option in out


def test_fit_help_and_bad_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--data.data_dir" in out and "--model" in out and "--ckpt_path" in out
    config = Path(__file__).resolve().parents[1] / "configs" / "smoke" / "ddpm_2d.yaml"
    assert main(["fit", f"--config={config}", "--data.batch_size=lots"]) == 2
    assert "data.batch_size" in capsys.readouterr().err


def test_unknown_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_debug_shows_traceback(tmp_path: Path) -> None:
    (tmp_path / "e.nii").write_bytes(b"")
    quiet = _run("inspect", str(tmp_path / "e.nii"))
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    loud = _run("--debug", "dataset", f"--data.data_dir={tmp_path}")
    assert loud.returncode == 2 and "Traceback" in loud.stderr and "empty file" in loud.stderr


def test_dataset_command_summary_and_grid(
    tmp_path: Path, anatomical_nii: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = tmp_path / "grid.png"
    data = tmp_path / "data"
    data.mkdir()
    (data / "anat.nii").write_bytes(anatomical_nii.read_bytes())
    assert (
        main(
            [
                "dataset",
                f"--data.data_dir={data}",
                "--data.modality=mri",
                "--data.image_size=32",
                "--data.num_workers=0",
                "--data.val_fraction=0",
                f"--grid={grid}",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["train_samples"] > 10 and summary["val_samples"] == 0 and summary["image_size"] == [32, 32]
    assert grid.read_bytes().startswith(b"\x89PNG")
