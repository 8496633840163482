"""The latent family: KL autoencoder, its training module, weight import, and latent diffusion on top."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from medgen.cli import main
from medgen.errors import InputError
from medgen.finetune import load_submodule
from medgen.models import Autoencoder, LatentDiffusionModel
from medgen.nets.autoencoder import KLAutoencoder, Posterior
from medgen.store.ckpt import read_checkpoint
from medgen.store.load import load_model
from tests.helpers import tiny_unet

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "smoke"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
TINY = dict(channels=(8, 16), attention_levels=(False, False), num_res_blocks=1, latent_channels=4, norm_num_groups=8)


def _autoencoder(spatial_dims: int, seed: int = 0) -> KLAutoencoder:
    torch.manual_seed(seed)
    return KLAutoencoder(spatial_dims, with_nonlocal_attn=False, **TINY)  # type: ignore[arg-type]


def _fit(config: str, root: Path, *extra: str) -> Path:
    assert main(["fit", f"--config={CONFIGS / config}", f"--trainer.default_root_dir={root}", *QUIET, *extra]) == 0
    return sorted((root / "lightning_logs").iterdir(), key=lambda p: int(p.name.split("_")[1]))[-1]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_autoencoder_shapes_posterior_and_kl(spatial_dims: int) -> None:
    ae = _autoencoder(spatial_dims)
    size = (16,) * spatial_dims
    assert ae.factor == 2 and ae.latent_size(size) == (8,) * spatial_dims
    x = torch.rand(2, 1, *size) * 2 - 1
    posterior = ae.posterior(x)
    assert posterior.mean.shape == (2, 4, *(8,) * spatial_dims) and (posterior.std > 0).all()
    a = posterior.sample(torch.Generator().manual_seed(1))
    b = posterior.sample(torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, posterior.sample(torch.Generator().manual_seed(2)))
    assert ae.decode(a).shape == x.shape
    assert (posterior.kl() >= 0).all()
    standard = Posterior(torch.zeros(1, 4, 3), torch.ones(1, 4, 3))
    assert float(standard.kl()) == 0.0
    shifted = Posterior(torch.ones(1, 4, 3), torch.ones(1, 4, 3))
    assert math.isclose(float(shifted.kl()), 0.5 * 12)  # ½ Σ μ²
    with pytest.raises(InputError, match="multiple of the autoencoder's downsampling factor 2"):
        ae.latent_size((15,) * spatial_dims)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_monai_autoencoderkl_state_dict_imports(tmp_path: Path, spatial_dims: int) -> None:
    """A bare MONAI ``AutoencoderKL`` state dict (model-zoo style) loads by architecture arguments."""
    from monai.networks.nets import AutoencoderKL

    torch.manual_seed(5)
    monai_ae = AutoencoderKL(spatial_dims, channels=(8, 16), attention_levels=(False, False), num_res_blocks=(1, 1),
                             latent_channels=4, norm_num_groups=8, with_encoder_nonlocal_attn=False,
                             with_decoder_nonlocal_attn=False)  # fmt: skip
    torch.save(monai_ae.state_dict(), tmp_path / "autoencoder.pt")
    ours = _autoencoder(spatial_dims, seed=6)
    load_submodule(ours, tmp_path / "autoencoder.pt", "pretrained.autoencoder_from")
    x = torch.rand(1, 1, *(16,) * spatial_dims)
    torch.testing.assert_close(ours.posterior(x).mean, monai_ae.encode(x)[0])
    wider = KLAutoencoder(spatial_dims, channels=(8, 24), attention_levels=(False, False), num_res_blocks=1,
                          latent_channels=4, norm_num_groups=8, with_nonlocal_attn=False)  # fmt: skip
    with pytest.raises(InputError, match="does not fit this autoencoder"):
        load_submodule(wider, tmp_path / "autoencoder.pt", "pretrained.autoencoder_from")


def test_latent_model_checks_channels() -> None:
    with pytest.raises(InputError, match="latent_channels"):
        LatentDiffusionModel(tiny_unet(2), _autoencoder(2))  # the tiny UNet has 1 input channel
    with pytest.raises(InputError, match="not available in latent space"):
        LatentDiffusionModel(tiny_unet(2, in_channels=4, out_channels=4, image_channels=1), _autoencoder(2))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_autoencoder_then_latent_diffusion_from_the_cli(
    tmp_path: Path, spatial_dims: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stage 1 (autoencoder) → stage 2 (latent diffusion on its weights) → resume → sample; generate refuses stage 1."""
    ae_run = _fit(f"ae_{spatial_dims}d.yaml", tmp_path / "ae")
    ae_ckpt = ae_run / "checkpoints" / "last.ckpt"
    assert (ae_run / "samples" / "step_0000005.png").is_file()  # originals above reconstructions
    ae_state = read_checkpoint(ae_ckpt)["state_dict"]
    trained_ae = {k.removeprefix("model.net."): v for k, v in ae_state.items() if k.startswith("model.net.")}
    assert trained_ae and len(trained_ae) == len(_autoencoder(spatial_dims).state_dict())
    model = load_model(ae_ckpt).model
    assert isinstance(model, Autoencoder)
    x = torch.rand(2, 1, *(16,) * spatial_dims) * 2 - 1
    assert model.reconstruct(x).shape == x.shape
    assert main(["generate", "--checkpoint", str(ae_ckpt), "--num-samples", "1", "--out", str(tmp_path / "g")]) == 2
    refused = capsys.readouterr().err.strip().splitlines()[-1]
    assert "autoencoder model: it encodes and decodes but does not generate" in refused
    assert "--pretrained.autoencoder_from" in refused

    ldm_run = _fit(f"ldm_{spatial_dims}d.yaml", tmp_path / "ldm", f"--pretrained.autoencoder_from={ae_ckpt}")
    ldm_ckpt = read_checkpoint(ldm_run / "checkpoints" / "last.ckpt")
    for key, value in trained_ae.items():  # the frozen autoencoder is the trained one, untouched by training
        assert torch.equal(ldm_ckpt["current_model_state"][f"model.autoencoder.{key}"], value), key
        # The EMA copy of a constant drifts by float rounding only.
        torch.testing.assert_close(ldm_ckpt["state_dict"][f"model.autoencoder.{key}"], value, rtol=0, atol=1e-6)
    scale = float(ldm_ckpt["state_dict"]["model.latent_scale"])
    assert math.isfinite(scale) and scale != 1.0  # set from the first batch's latents
    assert ldm_ckpt["medgen"]["family"] == "latent-diffusion"

    resumed = _fit(
        f"ldm_{spatial_dims}d.yaml", tmp_path / "ldm", f"--pretrained.autoencoder_from={ae_ckpt}",
        "--trainer.max_steps=7", f"--ckpt_path={ldm_run / 'checkpoints' / 'last.ckpt'}",
    )  # fmt: skip
    again = read_checkpoint(resumed / "checkpoints" / "last.ckpt")
    assert again["global_step"] == 7 and float(again["state_dict"]["model.latent_scale"]) == scale
    ldm = load_model(resumed / "checkpoints" / "last.ckpt").model
    assert isinstance(ldm, LatentDiffusionModel) and float(ldm.latent_scale) == scale
    samples = ldm.sample(2, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (2, 1, *(16,) * spatial_dims) and torch.isfinite(samples).all()
