"""``medgen evaluate`` on unpaired sets: Inception features, FID with baseline and CI, PRDC, report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medgen.cli import main


def _pngs(folder: Path, n: int, gamma: float, seed: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:48, :48]
    for i in range(n):
        disc = ((yy - 24 - rng.integers(-4, 5)) ** 2 + (xx - 24) ** 2 < rng.integers(80, 200)).astype(float)
        img = np.clip(0.7 * disc + 0.15 * rng.random((48, 48)), 0, 1) ** gamma
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"img{i}.png")


def test_unpaired_fid_prdc_report(tmp_path: Path) -> None:
    _pngs(tmp_path / "real", 6, 1.0, 0)
    _pngs(tmp_path / "close", 6, 1.0, 1)
    _pngs(tmp_path / "far", 6, 3.0, 2)
    common = [f"--real={tmp_path / 'real'}", "--metrics=fid,prdc", "--bootstrap=4", "--window=0,255"]
    assert main(["evaluate", *common, f"--fake={tmp_path / 'close'}", f"--out={tmp_path / 'a'}"]) == 0
    assert main(["evaluate", *common, f"--fake={tmp_path / 'far'}", f"--out={tmp_path / 'b'}"]) == 0
    close = json.loads((tmp_path / "a" / "report.json").read_text())
    far = json.loads((tmp_path / "b" / "report.json").read_text())
    assert close["metrics"]["fid"]["value"] < far["metrics"]["fid"]["value"]
    assert set(close["metrics"]) == {"fid", "precision", "recall", "density", "coverage"}
    assert "baseline" in close["metrics"]["fid"] and len(close["metrics"]["fid"]["ci95"]) == 2
    assert close["protocol"]["extractor"] == "inception" and len(close["protocol"]["extractor_sha256"]) == 64
    assert close["protocol"]["window"] == [0.0, 255.0] and any("2,000" in w for w in close["warnings"])


def test_unknown_unpaired_metric(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _pngs(tmp_path / "real", 2, 1.0, 0)
    assert (
        main(
            [
                "evaluate",
                f"--real={tmp_path / 'real'}",
                f"--fake={tmp_path / 'real'}",
                f"--out={tmp_path / 'o'}",
                "--metrics=ssim",
            ]
        )
        == 2
    )
    assert "--metrics: unknown unpaired metric(s) ['ssim']" in capsys.readouterr().err
