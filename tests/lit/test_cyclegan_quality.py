"""CycleGAN translation quality, from the committed output of benchmarks/cyclegan_mri_2d.py (no training here).

The benchmark translates the T1 slices of a subject the models saw only in domain b to domain b (T2-like) and
records, per method, the share of outputs a held-out domain classifier calls b, the SSIM of Sobel edge magnitudes
between input and output, and the SSIM to the true remap. CycleGAN must move the domain well beyond the unchanged
input's score and keep the input's edges (with the config's structure term: edge SSIM 0.570; 0.449 without it). The
artifact records the settings it was trained with; they must be the committed config's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
CONFIG = ROOT / "configs" / "quality" / "cyclegan_mri_2d_cyclegan.yaml"
#: CycleGAN's share called b must exceed the identity's by this much.
MIN_DOMAIN_GAIN = 0.5
#: SSIM of Sobel edge magnitudes, input vs CycleGAN output.
MIN_EDGE_SSIM = 0.5


def _mismatches(part: Any, full: Any, where: str = "") -> list[str]:
    """Where ``full`` (a saved config, defaults filled in) disagrees with ``part`` (a config as written)."""
    if isinstance(part, dict):
        if not isinstance(full, dict):
            return [where]
        return [m for k, v in part.items() for m in _mismatches(v, full.get(k), f"{where}.{k}")]
    if isinstance(part, list) and isinstance(full, list) and len(part) == len(full):
        return [m for i, (a, b) in enumerate(zip(part, full, strict=True)) for m in _mismatches(a, b, f"{where}[{i}]")]
    return [] if part == full else [f"{where}: {part!r} != {full!r}"]


def test_mismatches_finds_differences_below_the_written_keys() -> None:
    saved = {"a": {"b": [1, {"c": 2}], "default": 0}}
    assert _mismatches({"a": {"b": [1, {"c": 2}]}}, saved) == []
    assert _mismatches({"a": {"b": [1, {"c": 3}]}}, saved) == [".a.b[1].c: 3 != 2"]


def _report() -> dict[str, Any]:
    """The committed benchmark JSON, after checking that it belongs to the committed config and its judge works."""
    report: dict[str, Any] = json.loads((RESULTS / "cyclegan_mri_2d.json").read_text())
    config = yaml.safe_load(CONFIG.read_text())
    trained = report["cyclegan_config"]
    assert trained["max_steps"] == config["trainer"]["max_steps"]
    assert _mismatches(config["model"], trained["model"]) == []  # the artifact belongs to the committed config
    assert _mismatches(config["data"], trained["data"]) == []
    assert report["classifier_accuracy"]["anatomical T2-like called b"] >= 0.8  # the judge itself works
    assert report["classifier_accuracy"]["anatomical T1 called a"] >= 0.8
    assert (RESULTS / "cyclegan_mri_2d.png").stat().st_size > 1000
    assert "CycleGAN a→b" in (RESULTS / "cyclegan_mri_2d.txt").read_text()
    return report


@pytest.mark.slow
def test_committed_benchmark_shows_cyclegan_moves_the_domain() -> None:
    methods = _report()["methods"]
    identity, cyclegan = methods["identity (input unchanged)"], methods["CycleGAN a→b"]
    assert cyclegan["share_b"] >= identity["share_b"] + MIN_DOMAIN_GAIN
    assert cyclegan["ssim_to_true_remap"] > identity["ssim_to_true_remap"]


@pytest.mark.slow
def test_committed_benchmark_shows_cyclegan_keeps_structure() -> None:
    cyclegan = _report()["methods"]["CycleGAN a→b"]
    assert cyclegan["edge_ssim_to_input"] >= MIN_EDGE_SSIM
