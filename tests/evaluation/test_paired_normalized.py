"""``medgen evaluate --paired --normalize-real``: raw real targets against outputs in the model's [-1, 1]."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medgen.cli import main
from medgen.data.io import write_image


def _mri_like(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A raw MRI-like image: a bright smooth blob (hundreds to ~2000) on dark noisy background."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    radius = np.sqrt(sum(g**2 for g in grids))
    tissue = 1500 * np.clip(1.2 - radius, 0, 1) + 300 * np.sin(4 * grids[0] + seed)
    return np.clip(tissue + rng.normal(0, 20, shape), 0, None).astype(np.float32)


def _trained(raw: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """The training mapping written out independently: percentiles of the image to -1/1, clipped."""
    lo, hi = np.percentile(raw, [low, high])
    return np.clip((raw - lo) / (hi - lo) * 2 - 1, -1, 1).astype(np.float32)


def _evaluate(real: Path | str, fake: Path, out: Path, *extra: str) -> dict[str, float]:
    args = ["evaluate", "--paired", f"--real={real}", f"--fake={fake}", f"--out={out}", "--bootstrap=0",
            "--metrics=ssim,mae", *extra]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "report.json").read_text())["metrics"]
    return {name: metrics[name]["value"] for name in ("ssim", "mae")}


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_normalised_real_matches_its_trained_version(tmp_path: Path, spatial_dims: int) -> None:
    shape = (40, 36, 24)[:spatial_dims]
    rows = ["image,source"]
    for i in range(2):
        raw = _mri_like(shape, i)
        write_image(raw, tmp_path / "targets" / f"case{i}.nii.gz")
        write_image(raw[::-1].copy(), tmp_path / "sources" / f"case{i}_t1.nii.gz")
        write_image(_trained(raw), tmp_path / "fake" / f"case{i}.nii.gz")
        rows.append(f"{tmp_path / 'targets' / f'case{i}.nii.gz'},{tmp_path / 'sources' / f'case{i}_t1.nii.gz'}")
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    # The fake's manifest (as medgen translate writes it) records the modality that "auto" reads.
    (tmp_path / "fake" / "manifest.jsonl").write_text(
        "".join(json.dumps({"file": f"case{i}.nii.gz", "modality": "mri"}) + "\n" for i in range(2))
    )
    fake = tmp_path / "fake"
    for name, real, option in (("folder", tmp_path / "targets", "mri"), ("datalist", tmp_path / "pairs.csv", "auto")):
        normalised = _evaluate(real, fake, tmp_path / name, f"--normalize-real={option}")
        assert normalised["ssim"] > 0.999 and normalised["mae"] < 1e-4, (name, normalised)
    stored = _evaluate(tmp_path / "targets", fake, tmp_path / "stored", "--data-range=2")
    assert stored["ssim"] < 0.5 and stored["mae"] > 100, stored
    report = json.loads((tmp_path / "datalist" / "report.json").read_text())
    assert report["protocol"]["normalize_real"] == "mri" and report["protocol"]["data_range"] == 2.0
    assert "percentiles [0.5, 99.5]" in report["protocol"]["settings"]["intensity_mapping"]


def test_ct_outputs_in_hu_are_mapped_through_the_window(tmp_path: Path) -> None:
    raw = np.linspace(-1500, 2500, 48 * 40, dtype=np.float32).reshape(48, 40)
    write_image(raw, tmp_path / "real" / "ct.nii.gz")
    write_image(np.clip(raw, -1000, 1000), tmp_path / "fake" / "ct.nii.gz")  # how translate writes CT: window, HU
    result = _evaluate(tmp_path / "real", tmp_path / "fake", tmp_path / "out", "--normalize-real=ct",
                       "--window=-1000,1000")  # fmt: skip
    assert result["ssim"] > 0.999 and result["mae"] < 1e-5, result
    full = _evaluate(tmp_path / "real", tmp_path / "fake", tmp_path / "full", "--normalize-real=ct")
    assert full["mae"] > 0.05, full  # the full window does not clip what the fake's narrower window did


def test_bad_values_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = _mri_like((24, 20), 0)
    write_image(raw, tmp_path / "real" / "a.nii.gz")
    write_image(raw, tmp_path / "fake" / "a.nii.gz")
    base = ["evaluate", "--paired", f"--real={tmp_path / 'real'}", f"--fake={tmp_path / 'fake'}",
            f"--out={tmp_path / 'out'}"]  # fmt: skip
    for extra, expected in (
        (["--normalize-real=pet"], "--normalize-real: expected one of ct, mri, xray, auto, got 'pet'"),
        (["--normalize-real=auto"], "--normalize-real: auto reads the modality from the generated set's manifest"),
        (["--normalize-real=mri", "--window=0,100"], "--window: the mri training preset scales percentiles"),
        (["--normalize-real=mri", "--data-range=255"], "--data-range: is 2 when real images are normalised"),
        (["--normalize-real=ct", "--protocol=synthrad2023"], "--normalize-real: the synthrad2023 protocol compares"),
        (["--normalize-real=mri"], "outside the model's [-1, 1] in which medgen writes mri samples"),
    ):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
