"""report.json follows the CONTRACT schema; report.html is self-contained and shows the numbers and pictures."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

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
    assert page.count("data:image/png;base64,") == 2  # labelled real/generated grid, histogram
    assert "FID is biased" in page and "sample_000000.nii.gz" in page
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.json"]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_report_grid_tiles_are_large_and_rows_labelled(tmp_path: Path, spatial_dims: int) -> None:
    report = Report(metrics={"fid": MetricValue(1.0)}, n_real=2, n_fake=2, protocol={"spatial_dims": spatial_dims})
    shape = (2, 1) + (16,) * spatial_dims
    real = torch.ones(shape)
    real[..., :8, :] = -1.0  # half black: a sharp edge, which nearest-neighbour upsampling keeps free of greys
    _, html_path = write_report(report, tmp_path, real, torch.ones(shape))
    page = html_path.read_text()
    labels = "real, generated" if spatial_dims == 2 else "real 1, real 2, generated 1, generated 2"
    assert f"alt='rows: {labels}'" in page
    grid = np.asarray(Image.open(io.BytesIO(base64.b64decode(page.split("base64,")[1].split("'")[0]))))
    n_rows, n_cols = (2, 2) if spatial_dims == 2 else (4, 3)
    assert grid.shape[0] >= n_rows * 128 and grid.shape[1] >= n_cols * 128
    tiles = grid[grid.shape[0] - n_rows * 128 :, -128:]  # the last column of tiles (below any column label)
    assert set(np.unique(tiles)) <= {0, 255} and (tiles == 255).mean() > 0.5
    label_strip = grid[:, :30]
    assert 0 < (label_strip > 0).mean() < 0.5  # text left of the tiles
