"""``medgen evaluate --paired`` end to end: folders and manifests, windows, masks, SynthRAD, errors."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from medgen.cli import main
from medgen.data.io import load_image, write_image
from medgen.data.phantoms import ct_phantom
from medgen.data.presets import ModalityIntensity
from medgen.demo_data import real_mri_volumes
from medgen.errors import InputError
from medgen.evaluation.sources import list_source, load_stack


def _sets(root: Path, spatial_dims: int, n: int = 3) -> dict[str, list[np.ndarray]]:
    shape = (32, 32, 20)[:spatial_dims]
    out: dict[str, list[np.ndarray]] = {"real": [], "fake": []}
    for i in range(n):
        ph = ct_phantom(shape=shape, seed=i)
        real = ph.image.astype(np.float32)
        fake = (real + np.random.default_rng(i).normal(0, 50, shape)).astype(np.float32)
        write_image(real, root / "real" / f"case{i}.nii.gz")
        write_image(fake, root / "fake" / f"case{i}.nii.gz")
        write_image((ph.mask > 0).astype(np.uint8), root / "mask" / f"case{i}.nii.gz")
        out["real"].append(real)
        out["fake"].append(fake)
    return out


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_paired_report_matches_direct_psnr(tmp_path: Path, spatial_dims: int) -> None:
    arrays = _sets(tmp_path, spatial_dims)
    args = [
        "evaluate",
        "--paired",
        f"--real={tmp_path / 'real'}",
        f"--fake={tmp_path / 'fake'}",
        f"--out={tmp_path / 'out'}",
        "--window=-1024,3071",
        "--metrics=psnr,mae,ssim",
        "--bootstrap=50",
    ]
    assert main(args) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    expected = np.mean(
        [
            peak_signal_noise_ratio(np.clip(r, -1024, 3071), np.clip(f, -1024, 3071), data_range=4095)
            for r, f in zip(arrays["real"], arrays["fake"], strict=True)
        ]
    )
    assert report["metrics"]["psnr"]["value"] == pytest.approx(expected, abs=1e-4)
    lo, hi = report["metrics"]["psnr"]["ci95"]
    assert lo <= report["metrics"]["psnr"]["value"] <= hi
    assert report["n_real"] == report["n_fake"] == 3 and len(report["per_image"]) == 3
    assert report["protocol"]["data_range"] == 4095 and report["protocol"]["window"] == [-1024, 3071]
    assert (tmp_path / "out" / "report.html").read_text().count(
        "data:image/png;base64,"
    ) == 2  # labelled grid, histogram


def test_synthrad_protocol_and_manifest_input(tmp_path: Path) -> None:
    _sets(tmp_path, 3)
    lines = [json.dumps({"file": f"fake/case{i}.nii.gz", "index": i}) for i in range(3)]
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    assert (
        main(
            [
                "evaluate",
                "--paired",
                "--protocol=synthrad2025",
                f"--real={tmp_path / 'real'}",
                f"--fake={tmp_path / 'manifest.jsonl'}",
                f"--mask={tmp_path / 'mask'}",
                f"--out={tmp_path / 'out'}",
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "out" / "report.json").read_text())["metrics"]
    assert set(metrics) == {"mae", "psnr", "ms_ssim"}
    assert 30 < metrics["mae"]["value"] < 50 and 0.9 < metrics["ms_ssim"]["value"] <= 1.0


def test_paired_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _sets(tmp_path, 2, n=2)
    base = [
        "evaluate",
        "--paired",
        f"--real={tmp_path / 'real'}",
        f"--fake={tmp_path / 'fake'}",
        f"--out={tmp_path / 'out'}",
    ]
    assert main(base) == 2
    assert "--data-range: required for paired metrics" in capsys.readouterr().err
    assert main([*base, "--data-range=4095", "--protocol=synthrad2023"]) == 2
    assert "--mask: the synthrad2023 protocol needs body masks" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    write_image(np.zeros((8, 8), dtype=np.float32), tmp_path / "other" / "unrelated.nii.gz")
    assert (
        main(
            [
                "evaluate",
                "--paired",
                f"--real={tmp_path / 'real'}",
                f"--fake={tmp_path / 'other'}",
                f"--out={tmp_path / 'out'}",
                "--data-range=1",
            ]
        )
        == 2
    )
    assert "no file name appears in both --real and --fake" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _ras_and_lps(root: Path, shift_mm: float = 0.0) -> None:
    """One CT volume stored RAS under real/ and LPS (flipped x and y, same world positions) under fake/."""
    image = ct_phantom(shape=(24, 20, 12), seed=0).image.astype(np.float32)
    ras = np.diag([1.5, 1.5, 2.0, 1.0])
    ras[:3, 3] = (-10.0, 20.0, 5.0)
    lps = ras @ np.array([[-1, 0, 0, 23], [0, -1, 0, 19], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float64)
    lps[0, 3] += shift_mm
    for folder, data, affine in (("real", image, ras), ("fake", image[::-1, ::-1].copy(), lps)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(data, affine), str(root / folder / "case0.nii.gz"))


def test_paired_reorients_lps_onto_the_ras_reference(tmp_path: Path) -> None:
    _ras_and_lps(tmp_path)
    assert nib.aff2axcodes(nib.load(tmp_path / "fake" / "case0.nii.gz").affine) == ("L", "P", "S")
    out = tmp_path / "out"
    args = ["evaluate", "--paired", f"--real={tmp_path / 'real'}", f"--fake={tmp_path / 'fake'}", f"--out={out}"]
    assert main([*args, "--window=-1024,3071", "--metrics=ssim,mae", "--bootstrap=0"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"]["ssim"]["value"] == pytest.approx(1.0, abs=1e-6)
    assert report["metrics"]["mae"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert (
        "1 generated file(s)" in report["protocol"]["settings"]["geometry"]
        and "LPS vs RAS" in (report["protocol"]["settings"]["geometry"])
    )
    real, fake = list_source(tmp_path / "real"), list_source(tmp_path / "fake")
    assert torch.equal(load_stack(fake), load_stack(real))  # the report's pictures: both in RAS, as `medgen dataset`


def test_paired_refuses_a_shifted_origin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _ras_and_lps(tmp_path, shift_mm=5.0)
    args = ["evaluate", "--paired", f"--real={tmp_path / 'real'}", f"--fake={tmp_path / 'fake'}"]
    assert main([*args, f"--out={tmp_path / 'out'}", "--window=-1024,3071", "--metrics=ssim"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "case0.nii.gz" in err and "origin (-5, 20, 5) vs (-10, 20, 5) mm" in err
    assert not (tmp_path / "out").exists()


def _brain_mri_pngs(folder: Path, n: int = 2) -> None:
    """Axial slices of nibabel's T1 brain MRI saved as 8-bit PNGs (no header says MRI)."""
    volume = nib.load(real_mri_volumes()[-1]).get_fdata()
    folder.mkdir(parents=True)
    for i in range(n):
        image = volume[:, :, volume.shape[2] // 2 + i]
        Image.fromarray(np.round(image / image.max() * 255).astype(np.uint8)).save(folder / f"t1_{i}.png")


def test_a_ct_window_on_8bit_pngs_is_refused_and_an_mri_png_is_not_guessed_xray(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _brain_mri_pngs(tmp_path / "real")
    image = load_image(tmp_path / "real" / "t1_0.png")
    assert image.meta["modality"] == "unknown"  # was "xray"
    base = ["evaluate", f"--real={tmp_path / 'real'}", f"--fake={tmp_path / 'real'}", f"--out={tmp_path / 'o'}"]
    assert main(base) == 2
    assert "modality unknown: give --window LO,HI in the stored values" in capsys.readouterr().err
    assert main([*base, "--window=-1000,1000"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1 and "t1_0.png: 8-bit PNG (values 0..255) cannot be in the units of --window" in err
    )
    with pytest.raises(InputError, match="cannot be in the units of the CT window"):
        ModalityIntensity("ct")(image)  # the training path: --data.modality ct on PNGs
    assert ModalityIntensity("mri")(image).shape == image.shape
