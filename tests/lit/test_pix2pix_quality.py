"""Quality that can fail: pix2pix trained on one subject of demo:mri-pairs must translate the held-out subject's T1
slices closer to their T2-like targets than the source itself and than the source histogram-matched to the targets
(the best global monotone mapping), on paired SSIM and PSNR. Checks the committed output of
``benchmarks/pix2pix_mri_2d.py`` (10 minutes of CPU training, too long for the test run)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
CONFIG = ROOT / "configs" / "quality" / "pix2pix_mri_2d_64.yaml"


def _table(text: str) -> dict[str, dict[str, float]]:
    """``{method: {"ssim", "psnr", "mae"}}`` from the benchmark's printed table."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^(pix2pix|identity|histogram_matched)\s+([-\d.]+)\s.*?\]\s+([-\d.]+)\s.*?\]\s+([-\d.]+)\s", line)
        if m:
            rows[m.group(1)] = {"ssim": float(m.group(2)), "psnr": float(m.group(3)), "mae": float(m.group(4))}
    return rows


@pytest.mark.slow
def test_pix2pix_beats_identity_and_histogram_matching_on_the_held_out_subject() -> None:
    text = (RESULTS / "pix2pix_mri_2d.txt").read_text()
    steps = yaml.safe_load(CONFIG.read_text())["trainer"]["max_steps"]
    assert f"pix2pix after {steps} generator updates" in text  # the artifact belongs to the committed config
    table = _table(text)
    assert table.keys() == {"pix2pix", "identity", "histogram_matched"}, text
    ours = table["pix2pix"]
    for baseline in ("identity", "histogram_matched"):
        assert ours["ssim"] > table[baseline]["ssim"], (baseline, table)
        assert ours["psnr"] > table[baseline]["psnr"], (baseline, table)
    assert (RESULTS / "pix2pix_mri_2d.png").stat().st_size > 1000
