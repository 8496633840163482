"""report.json follows the CONTRACT schema; report.html is self-contained and shows the numbers and pictures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medgen import __version__
from medgen.evaluation.report import MetricValue, Report, write_report


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_report_json_and_html(tmp_path: Path, spatial_dims: int) -> None:
    report = Report(
        metrics={"fid": MetricValue(12.5, [10.0, 15.0], 4.25), "ssim": MetricValue(0.91, higher_is_better=True)},
        n_real=40,
        n_fake=32,
        protocol={"extractor": "inception", "sha256": "7ff4a85c", "spatial_dims": spatial_dims},
        warnings=["N = 32 < 2000: FID is biased at this size; compare with the real-vs-real baseline"],
        per_image=[{"file": "sample_000000.nii.gz", "ssim": 0.9}],
    )
    shape = (8, 1) + (16,) * spatial_dims
    json_path, html_path = write_report(report, tmp_path / "out", torch.rand(shape) * 2 - 1, torch.rand(shape) * 2 - 1)
    data = json.loads(json_path.read_text())
    assert data["metrics"]["fid"] == {"value": 12.5, "ci95": [10.0, 15.0], "baseline": 4.25}
    assert data["metrics"]["ssim"] == {"value": 0.91}
    assert (data["n_real"], data["n_fake"]) == (40, 32)
    assert data["protocol"]["medgen_version"] == __version__ and data["protocol"]["sha256"] == "7ff4a85c"
    assert data["warnings"] and data["per_image"][0]["file"] == "sample_000000.nii.gz"
    page = html_path.read_text()
    assert "<td>fid ↓</td><td>12.5</td><td>[10, 15]</td><td>4.25</td>" in page
    assert page.count("data:image/png;base64,") == 3  # real grid, fake grid, histogram
    assert "FID is biased" in page and "sample_000000.nii.gz" in page
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.json"]
