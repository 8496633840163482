"""The shipped ``mri-brain-2d`` checkpoint works by name, right after install.

It verifies against its card (fp16 weights, the card's training and data records), generates 16 images by name,
fine-tunes a few steps from the export with ``configs/finetune/default.yaml`` on the held-out subject
(``anatomical.nii``), and (slow) regenerates with the card's sampler to check the card's KID claim again:
below the untrained net's KID and within the card's factor of the real-vs-real split-half KID.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medgen.cli import main

REPO = Path(__file__).resolve().parents[2]
NAME = "mri-brain-2d"
FOLDER = REPO / "checkpoints" / NAME


def _card() -> dict:
    if not (FOLDER / "model_card.json").exists():
        pytest.fail(f"checkpoints/{NAME} is not committed")
    return dict(json.loads((FOLDER / "model_card.json").read_text()))


@pytest.fixture(autouse=True)
def _registry_is_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """The name resolves to the committed ``checkpoints/`` folder (no stand-in from MEDGEN_CHECKPOINTS)."""
    monkeypatch.delenv("MEDGEN_CHECKPOINTS", raising=False)
    monkeypatch.chdir(REPO)


def test_verifies_and_card_says_how_it_was_made() -> None:
    """``medgen checkpoints verify mri-brain-2d`` passes; fp16 weights; the card's training and data records."""
    assert main(["checkpoints", "verify", NAME]) == 0
    card = _card()
    assert card["weights_dtype"] == "float16" and card["family"] == "diffusion" and card["image_size"] == [64, 64]
    assert sum(p.stat().st_size for p in FOLDER.iterdir()) < 5e6
    training = card["training"]
    assert training["command"].startswith("medgen fit --config=configs/shipped/mri_brain_2d.yaml")
    assert training["steps"]["ddpm"] > 0 and training["wall_time_s"]["fit"] > 0 and "cores" in training["machine"]
    assert any("anatomical.nii" in d["name"] and d["role"].startswith("held out") for d in card["data_sources"])
    assert all(d["licence"] for d in card["data_sources"])


def test_generates_16_by_name(tmp_path: Path) -> None:
    """``medgen generate --checkpoint mri-brain-2d --num-samples 16`` (4 steps for speed) writes 16 distinct PNGs."""
    assert main(["generate", "--checkpoint", NAME, "--num-samples", "16", "--out", str(tmp_path), "--steps", "4",
                 "--seed", "0"]) == 0  # fmt: skip
    images = [np.asarray(Image.open(p), dtype=np.float32) for p in sorted(tmp_path.glob("sample_*.png"))]
    assert len(images) == 16 and images[0].shape == (64, 64)
    assert all(x.std() > 0 for x in images) and not np.array_equal(images[0], images[1])


def test_finetunes_on_the_held_out_subject(tmp_path: Path) -> None:
    """Two fine-tuning steps on anatomical.nii's slices start from every shipped tensor (lr 1e-5: still there)."""
    from medgen.demo_data import real_mri_volumes

    held_out = real_mri_volumes()[1]
    assert held_out.name == "anatomical.nii"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / held_out.name).write_bytes(held_out.read_bytes())
    code = main(["fit", "--config", str(FOLDER / "config.yaml"), "--config", str(REPO / "configs" / "finetune" /
                 "default.yaml"), "--pretrained.init_from", NAME, f"--data.data_dir={tmp_path / 'data'}",
                 "--data.modality=mri", "--data.spatial_dims=2", "--data.image_size=64", "--data.batch_size=4",
                 "--data.num_workers=0", "--data.val_fraction=0", "--trainer.max_steps=2",
                 "--trainer.accelerator=cpu", f"--trainer.default_root_dir={tmp_path / 'run'}",
                 "--trainer.enable_progress_bar=false"])  # fmt: skip
    assert code == 0
    from medgen.store.ckpt import read_checkpoint
    from medgen.store.load import load_model

    tuned = read_checkpoint(next((tmp_path / "run").rglob("last.ckpt")))["state_dict"]
    shipped = load_model(NAME).model.state_dict()
    assert all(f"model.{k}" in tuned for k in shipped)  # every shipped tensor is in the run
    assert max(float((tuned[f"model.{k}"] - v).abs().max()) for k, v in shipped.items()) < 1e-3  # started there


@pytest.mark.slow
def test_regenerated_samples_meet_the_card_kid_claim(tmp_path: Path) -> None:
    """Regenerate 16 images with the card's sampler and seed, and evaluate them as the script did (KID, Inception)
    against every other slice of the template: below the card's untrained KID and within its factor of the
    real-vs-real KID (KID is unbiased at any N; 16 images widen its spread, which the factor's margin covers). The
    card's own figures (N = its num_samples, all slices) satisfy the claim too."""
    import sys

    sys.path.insert(0, str(REPO / "scripts" / "shipped"))
    from mri_brain_2d import write_real  # noqa: PLC0415

    kid = _card()["evaluation"]["kid"]
    factor = kid["claim"]["kid_within_factor_of_real_vs_real"]
    assert kid["claim_met"] is True and kid["kid"] < kid["kid_untrained"]
    assert kid["kid"] <= factor * kid["kid_real_vs_real"]
    sampling = kid["sampling"]
    assert main(["generate", "--checkpoint", NAME, "--num-samples", "16", "--out", str(tmp_path / "gen"),
                 "--seed", str(sampling["seed"]), "--sampler", sampling["method"], "--steps",
                 str(sampling["num_steps"]), "--format", "nifti", "--batch-size", "16"]) == 0  # fmt: skip
    real = write_real(tmp_path / "real")
    for k, path in enumerate(sorted(real.glob("*.nii.gz"))):  # every other slice: half the Inception time
        if k % 2:
            path.unlink()
    assert main(["evaluate", "--real", str(real), "--fake", str(tmp_path / "gen"), "--out", str(tmp_path / "eval"),
                 "--window=-1,1", "--metrics", "kid", "--seed", "0", "--bootstrap", "0",
                 "--include-qc-failed"]) == 0  # fmt: skip
    again = json.loads((tmp_path / "eval" / "report.json").read_text())["metrics"]["kid"]
    assert again["value"] < kid["kid_untrained"]
    assert again["value"] <= factor * kid["kid_real_vs_real"], (again, kid)
