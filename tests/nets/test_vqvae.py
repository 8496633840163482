"""The VQ autoencoder net: latent grid, point-mass posterior, codebook terms, when the codebook moves, MONAI names."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import VQVAE

from medgen.errors import InputError
from medgen.models import Autoencoder
from medgen.nets.vqvae import VQAutoencoder

pytestmark = pytest.mark.usefixtures("one_thread")


def _vq(spatial_dims: int) -> VQAutoencoder:
    torch.manual_seed(0)
    return VQAutoencoder(spatial_dims, channels=(8, 16), num_res_layers=1, num_embeddings=16, embedding_dim=4)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_latents_codebook_terms_and_monai_names(spatial_dims: int) -> None:
    vq = _vq(spatial_dims)
    size = (16,) * spatial_dims
    assert vq.factor == 4 and vq.latent_channels == 4 and vq.latent_size(size) == (4,) * spatial_dims
    with pytest.raises(InputError, match="multiple of the autoencoder's downsampling factor 4"):
        vq.latent_size((18,) * spatial_dims)
    x = torch.rand(2, 1, *size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    posterior = vq.posterior(x)
    assert posterior.mean.shape == (2, 4, *(4,) * spatial_dims) and not posterior.std.any()
    assert torch.equal(posterior.sample(torch.Generator().manual_seed(3)), posterior.mean)

    vq.eval()
    with torch.no_grad():
        q = vq.quantize_terms(posterior.mean)
        codes = vq.quantizer.quantizer.embedding.weight
        flat = q.latent.movedim(1, -1).reshape(-1, 4)
        assert all(any(torch.allclose(v, c) for c in codes) for v in flat)  # every vector is a codebook entry
        assert torch.allclose(vq.decode(posterior.mean), vq.decode(q.latent))  # decode quantises
        assert q.commitment > 0 and 1 <= float(q.perplexity) <= 16
        recon, _ = vq.reconstruct_terms(x)
        assert recon.shape == x.shape

    monai = VQVAE(spatial_dims, 1, 1, channels=(8, 16), num_res_layers=1, num_res_channels=(8, 16),
                  downsample_parameters=((2, 4, 1, 1),) * 2, upsample_parameters=((2, 4, 1, 1, 0),) * 2,
                  num_embeddings=16, embedding_dim=4)  # fmt: skip
    vq.load_state_dict(monai.state_dict())  # MONAI's names and shapes: MONAI VQVAE weights load as they are
    with torch.no_grad():
        torch.testing.assert_close(vq.reconstruct_terms(x)[0], monai.eval()(x)[0])


def test_codebook_moves_once_per_step_in_the_pass_with_gradients() -> None:
    """The EMA codebook updates in a training-mode pass with gradients, not in one without (the discriminator pass
    of adversarial training), nor in eval mode; the loss has the commitment term and logs the perplexity."""
    model = Autoencoder(_vq(2), ssim_weight=0.0)
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    codes = model.net.quantizer.quantizer.ema_w
    before = codes.clone()
    with torch.no_grad():
        model.play({"image": x}, None, torch.Generator().manual_seed(0))
    assert torch.equal(codes, before)
    terms = model.loss_terms(x, None, torch.Generator().manual_seed(0))
    assert not torch.equal(codes, before)
    assert set(terms) == {"loss", "l1", "commitment", "perplexity"}
    torch.testing.assert_close(terms["loss"], terms["l1"] + terms["commitment"])
    terms["loss"].backward()
    assert model.net.encoder.blocks[0].conv.weight.grad is not None  # straight-through to the encoder
    moved = codes.clone()
    model.eval()
    model.loss_terms(x, None, torch.Generator().manual_seed(0))
    assert torch.equal(codes, moved) and model.net.quantizer.quantizer.training is False
