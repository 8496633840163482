"""CycleGAN translation quality, from the committed output of benchmarks/cyclegan_mri_2d.py (no training here).

The benchmark translates the T1 slices of a subject the models saw only in domain b to domain b (T2-like) and
records, per method, the share of outputs a held-out domain classifier calls b, the SSIM of Sobel edge magnitudes
between input and output, and the SSIM to the true remap. CycleGAN must move the domain well beyond the unchanged
input's score and keep the input's edges.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
#: CycleGAN's share called b must exceed the identity's by this much.
MIN_DOMAIN_GAIN = 0.5
#: SSIM of Sobel edge magnitudes, input vs CycleGAN output.
MIN_EDGE_SSIM = 0.5


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="committed run (500 generator updates on 2 CPU cores): CycleGAN share called b 0.40 (identity 0.00), edge "
    "SSIM 0.34 < 0.5; the flow keeps edges (0.65) and moves 0.36. Remove this mark when a longer run passes.",
)
def test_committed_benchmark_shows_cyclegan_moves_the_domain_and_keeps_structure() -> None:
    report = json.loads((RESULTS / "cyclegan_mri_2d.json").read_text())
    methods = report["methods"]
    identity, cyclegan = methods["identity (input unchanged)"], methods["CycleGAN a→b"]
    assert report["classifier_accuracy"]["anatomical T2-like called b"] >= 0.8  # the judge itself works
    assert report["classifier_accuracy"]["anatomical T1 called a"] >= 0.8
    assert cyclegan["share_b"] >= identity["share_b"] + MIN_DOMAIN_GAIN
    assert cyclegan["edge_ssim_to_input"] >= MIN_EDGE_SSIM
    assert cyclegan["ssim_to_true_remap"] > identity["ssim_to_true_remap"]
    assert (RESULTS / "cyclegan_mri_2d.png").stat().st_size > 0
    assert "CycleGAN a→b" in (RESULTS / "cyclegan_mri_2d.txt").read_text()
