"""The VQ first stage from the CLI: the VQ autoencoder and a latent diffusion model on its latents train, resume
exactly and generate (2D and 3D smoke configs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medgen.cli import main
from medgen.models import Autoencoder, LatentDiffusionModel
from medgen.nets.vqvae import VQAutoencoder
from medgen.store.load import load_model
from tests.helpers import assert_same_checkpoints, fit_smoke, straight_and_resumed
from tests.nets.conftest import one_thread  # noqa: F401  (the fixture, shared with the network tests)

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "smoke"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_vq_autoencoder_and_latent_diffusion_train_resume_and_generate(tmp_path: Path, spatial_dims: int) -> None:
    """Stage 1 (VQ autoencoder) ends bit-identical when resumed at step 2 of 4 (weights, codebook moving averages,
    EMA, optimizer moments) and its codebook moves; stage 2 (latent diffusion) trains on its weights, keeps them
    frozen (codebook included), and ``medgen generate`` writes its samples. (A latent model's exact resume is the
    KL one's, tests/lit/test_latent.py: stage 2 is not resumed here, for time.)"""
    text = (CONFIGS / f"vqvae_{spatial_dims}d.yaml").read_text()
    (tmp_path / "vq").mkdir()
    straight, resumed = straight_and_resumed(text, tmp_path / "vq", steps=4)
    assert_same_checkpoints(straight / "last.ckpt", resumed / "last.ckpt")
    end = torch.load(straight / "last.ckpt", weights_only=True)["current_model_state"]
    codebook = "model.net.quantizer.quantizer.embedding.weight"
    torch.manual_seed(0)  # the smoke config's seed: the codebook the run started from
    initial = VQAutoencoder(spatial_dims, channels=(8, 16), num_res_layers=1, num_embeddings=16, embedding_dim=4)
    assert not torch.equal(end[codebook], initial.state_dict()["quantizer.quantizer.embedding.weight"])
    assert end["model.net.quantizer.quantizer.ema_cluster_size"].sum() > 0
    stage1 = load_model(straight / "last.ckpt").model
    assert isinstance(stage1, Autoencoder) and isinstance(stage1.net, VQAutoencoder)

    ldm_text = (CONFIGS / f"ldm_vq_{spatial_dims}d.yaml").read_text()
    assert "pretrained: {autoencoder_from: null}" in ldm_text
    ldm_text = ldm_text.replace("autoencoder_from: null", f"autoencoder_from: {straight / 'last.ckpt'}")
    (tmp_path / "ldm.yaml").write_text(ldm_text)
    ldm_run = fit_smoke(tmp_path / "ldm.yaml", tmp_path / "ldm", "--trainer.max_steps", "2")
    ldm_state = torch.load(ldm_run / "last.ckpt", weights_only=True)["current_model_state"]
    exported = torch.load(straight / "last.ckpt", weights_only=True)["state_dict"]  # the EMA weights stage 2 loads
    for key, value in exported.items():
        if key.startswith("model.net."):  # frozen: codebook included (no moving-average update without gradients)
            assert torch.equal(ldm_state[key.replace("model.net.", "model.autoencoder.", 1)], value), key
    ldm = load_model(ldm_run / "last.ckpt").model
    assert isinstance(ldm, LatentDiffusionModel) and isinstance(ldm.autoencoder, VQAutoencoder)
    assert float(ldm.latent_scale) != 1.0  # from the first batch's (unquantised) latents

    out = tmp_path / "generated"
    assert main(["generate", "--checkpoint", str(ldm_run / "last.ckpt"), "--num-samples", "1", "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 1 and len(list(out.glob("sample_000000.*"))) == 1
