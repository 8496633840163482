"""Unconditional GAN quality on real MRI, from the committed output of benchmarks/gan_mri_2d_32.py (no training here).

The benchmark trains configs/quality/gan_mri_2d_32.yaml for 3,000 generator updates on the 138 MNI152 slices at
32x32 and scores 128 samples with ``medgen evaluate`` against the real slices, beside an untrained generator of the
same architecture and the real-vs-real split-half baseline. The claims: KID at least ten times below the untrained
generator's, and FID within four times the real-vs-real FID (at these sizes KID's real-vs-real baseline is near
zero, so a factor on it says little; the FID factor is the stated one).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
#: KID of the untrained generator over the trained one's, at least.
MIN_KID_GAIN = 10.0
#: FID of the trained generator over the real-vs-real split-half FID, at most.
MAX_FID_FACTOR = 4.0


def _scores(line: str) -> tuple[float, float, float, float]:
    """``(kid, kid_real_vs_real, fid, fid_real_vs_real)`` from one line of the benchmark's report."""
    kid = re.search(r"KID ([0-9.e-]+) \(real-vs-real split-half baseline ([0-9.e-]+)\)", line)
    fid = re.search(r"FID ([0-9.e-]+) \(real-vs-real split-half baseline ([0-9.e-]+)\)", line)
    assert kid and fid, line
    return float(kid[1]), float(kid[2]), float(fid[1]), float(fid[2])


@pytest.mark.slow
def test_committed_gan_run_beats_untrained_and_is_within_the_stated_factor_of_real() -> None:
    lines = (RESULTS / "gan_mri_2d_32.txt").read_text().splitlines()
    trained_line = next(line for line in lines if line.startswith("GAN after"))
    untrained_line = next(line for line in lines if line.startswith("untrained generator"))
    updates = int(re.search(r"after (\d+) generator updates", trained_line)[1])  # type: ignore[index]
    assert updates >= 2000  # "a few thousand CPU steps"
    kid, _, fid, fid_real = _scores(trained_line)
    kid_untrained, _, fid_untrained, _ = _scores(untrained_line)
    assert kid * MIN_KID_GAIN <= kid_untrained and fid < fid_untrained
    assert fid <= MAX_FID_FACTOR * fid_real
    for grid in ("gan_mri_2d_32_samples.png", "gan_mri_2d_32_real.png"):
        assert (RESULTS / grid).stat().st_size > 1000
