"""``medgen evaluate --devices 2`` and ``medgen memorization --devices 2`` (two CPU processes, gloo) equal one process.

Each process extracts the features (embeddings) of its batches; all are gathered in file order, so the metrics
are computed from the same rows as in one process. Batches are composed differently (4 images per process
instead of one batch of 8), so the rows may differ by float rounding of the batched network calls: the
reports are compared to a relative tolerance of 1e-6 (FID, KID and their CIs and baselines, PRDC) and the
memorization similarities to 1e-5 absolute, with identical flags and nearest training files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medgen.cli import main
from medgen.data.io import write_image
from medgen.data.phantoms import phantom_family
from medgen.memorization.planted import PlantedSet
from tests.evaluation.conftest import _one_thread  # noqa: F401  (autouse: one torch thread per module)
from tests.evaluation.test_evaluate_unpaired_3d import weights  # noqa: F401  (RadImageNet, random weights)
from tests.memorization.conftest import planted_3d, write_planted  # noqa: F401

pytestmark = pytest.mark.ddp

#: Relative tolerance of the report values: differently batched float32 convolutions, float64 metrics.
RTOL = 1e-6
SHAPES = {2: (24, 20), 3: (10, 8, 6)}


def _two_processes(args: list[str], cwd: Path) -> None:
    """Run ``medgen ARGS --devices 2 --accelerator cpu`` (Lightning starts the second process)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "medgen", *args, "--devices", "2", "--accelerator", "cpu"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]


def _phantoms(folder: Path, spatial_dims: int, n: int, variant: str, seed: int) -> None:
    folder.mkdir(parents=True)
    for i, ph in enumerate(phantom_family("ct", n, SHAPES[spatial_dims], seed=seed, variant=variant)):
        write_image(ph.image.astype(np.float32), folder / f"img{i:02d}.nii.gz")


def _values(report: dict) -> dict[str, float]:
    """Every number of the report's metrics: value, CI bounds and baseline."""
    out = {}
    for name, metric in report["metrics"].items():
        out[name] = metric["value"]
        for i, bound in enumerate(metric.get("ci95") or []):
            out[f"{name}.ci{i}"] = bound
        if isinstance(metric.get("baseline"), (int, float)):
            out[f"{name}.baseline"] = metric["baseline"]
    return out


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_evaluate_on_two_processes_equals_one(tmp_path: Path, weights: Path, spatial_dims: int) -> None:  # noqa: F811
    n = 8 if spatial_dims == 2 else 3  # 2D: 4 images per process; 3D: volumes 0, 2 on rank 0 and 1 on rank 1
    _phantoms(tmp_path / "real", spatial_dims, n, "a", seed=0)
    _phantoms(tmp_path / "fake", spatial_dims, n, "b", seed=1)
    args = ["evaluate", f"--real={tmp_path / 'real'}", f"--fake={tmp_path / 'fake'}", f"--weights={weights}",
            "--extractor=radimagenet_resnet50", "--bootstrap=5", "--metrics=fid,kid,prdc"]  # fmt: skip
    assert main([*args, f"--out={tmp_path / 'one'}"]) == 0
    _two_processes([*args, f"--out={tmp_path / 'two'}"], tmp_path)
    one = json.loads((tmp_path / "one" / "report.json").read_text())
    two = json.loads((tmp_path / "two" / "report.json").read_text())
    assert two["n_real"] == two["n_fake"] == n
    expected = {"fid", "kid", "precision", "recall", "density", "coverage"}
    assert expected | ({"fid_xy", "fid_yz", "fid_zx"} if spatial_dims == 3 else set()) == set(two["metrics"])
    a, b = _values(one), _values(two)
    assert a.keys() == b.keys() and len(a) >= 10
    assert a["fid"] > 0  # different sets: a value that a gather of the wrong rows would change
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=RTOL, abs=1e-9), key
    assert one["protocol"] == two["protocol"]


def test_memorization_on_two_processes_equals_one(tmp_path: Path, planted_3d: PlantedSet) -> None:  # noqa: F811
    """3D only: 2D images go through the same sharded ``embed_items`` batches (one vector per file), and volumes
    also check that each process's slice vectors keep their owners (file indices offset by the batch start).
    Each memorization run on two processes costs about a minute on this shared machine."""
    folders = write_planted(planted_3d, tmp_path / "data", n_train=6)
    args = ["memorization", "--train", str(folders["train"]), "--generated", str(folders["generated"]),
            "--holdout", str(folders["holdout"]), "--no-verify", "--top-k", "3"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    _two_processes([*args, "--out", str(tmp_path / "two")], tmp_path)
    one = json.loads((tmp_path / "one" / "report.json").read_text())
    two = json.loads((tmp_path / "two" / "report.json").read_text())
    assert two["threshold"] == pytest.approx(one["threshold"], abs=1e-5)
    assert len(one["samples"]) == len(two["samples"]) > 2
    assert any(row["flagged"] for row in one["samples"])  # the planted copies
    for x, y in zip(one["samples"], two["samples"], strict=True):
        assert (x["file"], x["nearest_train"], x["flagged"]) == (y["file"], y["nearest_train"], y["flagged"])
        assert y["similarity"] == pytest.approx(x["similarity"], abs=1e-5)


def test_one_process_inside_a_torchrun_job_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --devices, each of torchrun's processes would compute and write the whole report."""
    _phantoms(tmp_path / "real", 2, 2, "a", seed=0)
    monkeypatch.setenv("WORLD_SIZE", "4")
    args = ["evaluate", f"--real={tmp_path / 'real'}", f"--fake={tmp_path / 'real'}", f"--out={tmp_path / 'o'}"]
    assert main(args) == 2
    assert "--devices: torchrun started 4 processes" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
