"""``medgen evaluate`` on unpaired 3D volumes through the CLI: the 2.5D path, per-plane FIDs, the report schema.

The extractor is RadImageNet ResNet-50 (MAISI's 2.5D protocol) loaded from a weights file in its published
layout, here randomly initialised: no package ships the real weights, and ResNet-50 on 20 x 16 slices is fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medgen.cli import main
from medgen.data.io import load_image, write_image
from medgen.data.phantoms import phantom_family
from medgen.evaluation.distribution import fid
from medgen.evaluation.extractors.medical import RadImageNetExtractor, RadImageNetResNet50
from medgen.evaluation.slicing import PLANES, plane_features
from medgen.hashing import file_sha256

WINDOW = (-1024.0, 3071.0)
SHAPE = (20, 16, 12)


def _volumes(folder: Path, variant: str, seed: int) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for i, ph in enumerate(phantom_family("ct", 3, SHAPE, seed=seed, variant=variant)):
        paths.append(write_image(ph.image.astype(np.float32), folder / f"vol{i}.nii.gz"))
    return paths


def _windowed(path: Path) -> torch.Tensor:
    """``(1, X, Y, Z)`` in [-1, 1]: the full CT window mapped linearly, as the report's protocol says."""
    lo, hi = WINDOW
    return ((load_image(path).as_tensor().float().clamp(lo, hi) - lo) / (hi - lo) * 2 - 1).float()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "RadImageNet-ResNet50_notop.pth"
    torch.save(RadImageNetResNet50().state_dict(), path)
    return path


def test_unpaired_3d_report_per_plane_and_schema(tmp_path: Path, weights: Path) -> None:
    real = _volumes(tmp_path / "real", "a", seed=0)
    fake = _volumes(tmp_path / "fake", "b", seed=1)  # noisier, lower contrast
    args = [
        "evaluate",
        f"--real={tmp_path / 'real'}",
        f"--fake={tmp_path / 'fake'}",
        f"--out={tmp_path / 'out'}",
        "--extractor=radimagenet_resnet50",
        f"--weights={weights}",
        "--bootstrap=5",
    ]
    assert main(args) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())

    # CONTRACT.md: metrics {name: {value, ci95?, baseline?}}, n_real, n_fake, protocol.
    assert {"metrics", "n_real", "n_fake", "protocol"} <= set(report)
    assert report["n_real"] == report["n_fake"] == 3  # volumes, not slices
    metrics = report["metrics"]
    assert set(metrics) == {"fid", "kid", "fid_xy", "fid_yz", "fid_zx", "precision", "recall", "density", "coverage"}
    assert all(isinstance(m["value"], float) and np.isfinite(m["value"]) for m in metrics.values())
    for name in ("fid", "kid"):
        lo, hi = metrics[name]["ci95"]
        assert lo <= hi and np.isfinite(metrics[name]["baseline"])
    protocol = report["protocol"]
    assert protocol["extractor"] == "radimagenet_resnet50" and protocol["extractor_sha256"] == file_sha256(weights)
    assert protocol["spatial_dims"] == 3 and protocol["slicing"] == "2.5D (xy, yz, zx)"
    # No --window: the CT phantoms (guessed CT from their HU) get the CT preset, and the protocol says which.
    assert protocol["window"] is None and protocol["modality"] == "ct" and protocol["modality_source"] == "guess"
    assert protocol["intensity_mapping"] == "ct preset: window full [-1024, 3071] HU, clipped, linear to [-1, 1]"
    assert protocol["data_range"] == 2.0 and protocol["resize"] == "none"
    assert protocol["medgen_version"] and protocol["bootstrap"] == 5
    assert any("2,000" in w and "N = 3 volumes" in w for w in report["warnings"])  # counts volumes, not slices
    assert protocol["sampling_unit"] == "volume" and "mean of the per-plane" in protocol["headline"]
    assert "without replacement" in protocol["ci95"]

    # Per-plane FIDs (and the pooled FID) recomputed from the volumes: every slice of each plane.
    extractor = RadImageNetExtractor(weights)
    real_f = plane_features(extractor, [_windowed(p) for p in real])
    fake_f = plane_features(extractor, [_windowed(p) for p in fake])
    assert real_f.xy.shape[0] == 3 * SHAPE[2] and real_f.yz.shape[0] == 3 * SHAPE[0]
    for plane in PLANES:
        expected = fid(getattr(real_f, plane), getattr(fake_f, plane)).value
        assert metrics[f"fid_{plane}"]["value"] == pytest.approx(expected, rel=1e-6)
    per_plane = [metrics[f"fid_{plane}"]["value"] for plane in PLANES]
    assert metrics["fid"]["value"] == pytest.approx(np.mean(per_plane), rel=1e-9)  # the headline: MAISI's mean
    lo, hi = metrics["fid"]["ci95"]
    assert lo <= metrics["fid"]["value"] <= hi
    assert (tmp_path / "out" / "report.html").read_text().count("data:image/png;base64,") >= 1
