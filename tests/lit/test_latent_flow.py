"""The latent flow family: flow matching on a frozen, trained autoencoder, from the CLI to samples."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import pytest
import torch

from medgen.cli import main
from medgen.errors import InputError
from medgen.models import Autoencoder, LatentFlowModel, SamplingDefaults
from medgen.models.base import MODEL_CLASSES
from medgen.models.build import build_model
from medgen.nets.autoencoder import KLAutoencoder
from medgen.objectives import FlowObjective
from medgen.store.ckpt import read_checkpoint
from medgen.store.load import load_model
from tests.helpers import assert_resumes_exactly_and_generates, tiny_unet

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "smoke"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def _model(**overrides: object) -> LatentFlowModel:
    torch.manual_seed(0)
    ae = KLAutoencoder(2, channels=(8, 16), attention_levels=(False, False), num_res_blocks=1, latent_channels=4,
                       norm_num_groups=8, with_nonlocal_attn=False)  # fmt: skip
    args: dict[str, object] = dict(
        net=tiny_unet(2, in_channels=4, out_channels=4), autoencoder=ae, sampling=SamplingDefaults("euler", 3)
    )
    return LatentFlowModel(**{**args, **overrides}, sample_size=(16, 16))  # type: ignore[arg-type]


def test_latent_flow_model_scale_loss_sampling_and_config() -> None:
    model = _model()
    assert model.family == "latent-flow" and isinstance(model.objective, FlowObjective)
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    note = model.prepare(x, lambda t: t)
    expected = 1 / float(model.autoencoder.posterior(x).mean.std())
    assert note is not None and float(model.latent_scale) == pytest.approx(expected, rel=1e-5)
    assert model.prepare(x * 3, lambda t: t) is None and float(model.latent_scale) == pytest.approx(expected, rel=1e-5)
    assert model.encode(x).shape == (4, 4, 8, 8)
    torch.testing.assert_close(model.encode(x).std(), torch.tensor(1.0), rtol=1e-4, atol=0)  # unit-variance latents
    loss = model.loss(x, None, torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is None for p in model.autoencoder.parameters())  # frozen
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.net.parameters())
    samples = model.sample(2, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (2, 1, 16, 16) and torch.isfinite(samples).all()
    # The config rebuilds the model with the scale it found.
    config = model.config
    assert config["class_path"] == "medgen.models.latent_flow.LatentFlowModel"
    rebuilt = build_model(config["class_path"], config["init_args"], "test", MODEL_CLASSES)
    assert isinstance(rebuilt, LatentFlowModel) and float(rebuilt.latent_scale) == float(model.latent_scale)
    assert rebuilt.sampling == model.sampling and rebuilt.prepare(x, lambda t: t) is None
    with pytest.raises(InputError, match="sampling.method"):
        _model(sampling=SamplingDefaults("ddim", 3))  # a diffusers scheduler is not an ODE solver
    with pytest.raises(InputError, match="latent_channels"):
        _model(net=tiny_unet(2))  # 1 input channel


def _fit(config: str, root: Path, *extra: str) -> Path:
    assert main(["fit", f"--config={CONFIGS / config}", f"--trainer.default_root_dir={root}", *QUIET, *extra]) == 0
    return sorted((root / "lightning_logs").iterdir(), key=lambda p: int(p.name.split("_")[1]))[-1]


@pytest.mark.parametrize("spatial_dims", [2, pytest.param(3, marks=pytest.mark.slow)])  # 3D: over 20 s on 2 cores
def test_latent_flow_on_a_trained_autoencoder_from_the_cli(
    spatial_dims: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Autoencoder (2 steps) → latent flow on its weights (the config's 5 steps) → load the last.ckpt → sample.

    5 steps is the config's checkpoint and validation step, so ``last.ckpt`` holds the trained weights beside the
    EMA ones whichever EMA callback the config names, and the validation picture is drawn.
    """
    ae_ckpt = _fit(f"ae_{spatial_dims}d.yaml", tmp_path / "ae", "--trainer.max_steps=2") / "checkpoints" / "last.ckpt"
    autoencoder = load_model(ae_ckpt).model  # EMA weights: what --pretrained.autoencoder_from reads too
    assert isinstance(autoencoder, Autoencoder)

    with caplog.at_level(logging.INFO):
        run = _fit(f"lflow_{spatial_dims}d.yaml", tmp_path / "lflow", f"--pretrained.autoencoder_from={ae_ckpt}")
    assert (run / "samples" / "step_0000005.png").is_file()  # the validation picture: decoded latent samples
    ckpt_path = run / "checkpoints" / "last.ckpt"
    loaded = load_model(ckpt_path)
    model = loaded.model
    assert isinstance(model, LatentFlowModel) and isinstance(model.objective, FlowObjective)
    assert loaded.card.family == "latent-flow" and read_checkpoint(ckpt_path)["medgen"]["family"] == "latent-flow"
    assert model.sampling == SamplingDefaults("euler", 5, 1.0)
    assert model.image_size == (16,) * spatial_dims and model.spatial_dims == spatial_dims

    # The frozen autoencoder is the trained one: exactly in the trained weights, within float rounding in the EMA.
    trained = autoencoder.net.state_dict()
    raw = load_model(ckpt_path, use_ema=False).model
    assert isinstance(raw, LatentFlowModel)
    assert raw.autoencoder.state_dict().keys() == trained.keys() == model.autoencoder.state_dict().keys()
    for key, value in trained.items():
        assert torch.equal(raw.autoencoder.state_dict()[key], value), key
        torch.testing.assert_close(model.autoencoder.state_dict()[key], value, rtol=0, atol=1e-6)
    assert not any(p.requires_grad for p in model.autoencoder.parameters())

    # latent_scale: 1 / std of the first training batch's latents, kept in the weights and in the model's config.
    scale = float(raw.latent_scale)
    assert math.isfinite(scale) and scale > 0 and scale != 1.0
    notes = re.findall(r"latent_scale = ([0-9.]+) \(1 / std of the first batch's latents\)", caplog.text)
    assert len(notes) == 1 and float(notes[0]) == pytest.approx(scale, abs=1e-4)
    assert raw.config["init_args"]["latent_scale"] == scale
    assert float(model.latent_scale) == pytest.approx(scale, rel=1e-6)  # the EMA copy of a constant

    samples = model.sample(2, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (2, 1, *(16,) * spatial_dims) and torch.isfinite(samples).all()
    again = model.sample(2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(samples, again)
    other = model.sample(2, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(samples, other)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_smoke_config_resumes_exactly_and_generates(spatial_dims: int, tmp_path: Path) -> None:
    """``configs/smoke/lflow_*d.yaml`` (on its untrained autoencoder) resumed at step 2 ends bit-identical to the
    straight 4-step run, latent_scale included, and generates from the CLI."""
    text = (CONFIGS / f"lflow_{spatial_dims}d.yaml").read_text()
    straight = assert_resumes_exactly_and_generates(text, tmp_path)
    model = load_model(straight / "last.ckpt").model
    assert isinstance(model, LatentFlowModel) and model.spatial_dims == spatial_dims
