"""``medgen evaluate`` prints its headline metrics, with the CI (and baseline where defined), as the demo does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medgen.cli import main
from medgen.commands.evaluate import headline
from medgen.data.io import write_image
from medgen.data.phantoms import ct_phantom


def test_paired_evaluate_prints_each_metric_with_its_ci(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(3):
        real = ct_phantom(shape=(32, 32), seed=i).image.astype(np.float32)
        write_image(real, tmp_path / "real" / f"case{i}.nii.gz")
        write_image(real + np.float32(20 * (i + 1)), tmp_path / "fake" / f"case{i}.nii.gz")
    args = ["evaluate", "--paired", f"--real={tmp_path / 'real'}", f"--fake={tmp_path / 'fake'}",
            f"--out={tmp_path / 'out'}", "--window=-1024,3071", "--metrics=mae,psnr", "--bootstrap=20"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out.splitlines()
    metrics = json.loads((tmp_path / "out" / "report.json").read_text())["metrics"]
    lo, hi = metrics["mae"]["ci95"]
    assert printed[0] == f"mae: {metrics['mae']['value']:.4g} (95% CI {lo:.4g} to {hi:.4g})"
    assert [line.split(":")[0] for line in printed] == ["mae", "psnr"]


def test_headline_gives_the_baseline_of_unpaired_metrics() -> None:
    metrics = {"fid": {"value": 12.345, "ci95": [10.1, 14.6], "baseline": {"value": 3.21}}, "kid": {"value": 0.01}}
    assert headline(metrics) == ["fid: 12.35 (95% CI 10.1 to 14.6; real-vs-real baseline 3.21)", "kid: 0.01"]
