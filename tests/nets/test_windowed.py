"""Windowed (memory-bounded) decode and encode give the whole-volume result; latent models use it above a size."""

from __future__ import annotations

import pytest
import torch

from medgen.models import LatentDiffusionModel
from medgen.nets.autoencoder import KLAutoencoder
from medgen.nets.windowed import can_window, decode_windowed, encode_windowed
from tests.helpers import tiny_unet

pytestmark = pytest.mark.usefixtures("one_thread")


def _autoencoder(spatial_dims: int, attention: bool = False) -> KLAutoencoder:
    torch.manual_seed(0)
    return KLAutoencoder(spatial_dims, channels=(8, 16, 16), attention_levels=(False,) * 3, num_res_blocks=1,
                         latent_channels=4, norm_num_groups=8, with_nonlocal_attn=attention).eval()  # fmt: skip


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_windowed_decode_and_encode_equal_the_whole(spatial_dims: int) -> None:
    """Within 1e-3 (measured: ~1e-5) of the whole decode; without the halo and whole-volume GroupNorm statistics
    (``halo=0``) windows differ by far more. The decoder's receptive field is 6 latent voxels, so only the 2D latent
    (20^2) is large enough for windows (4 + 2 x 7 halo) smaller than it; the 3D one (6^3) checks the N-d path."""
    ae = _autoencoder(spatial_dims)
    side = 20 if spatial_dims == 2 else 6
    z = torch.randn(2, 4, *([side] * spatial_dims), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = ae.decode(z)
    sizes: list[int] = []
    handle = ae.decoder.register_forward_hook(lambda _m, args, _o: sizes.append(args[0].shape[-1]))
    for mode in ("gaussian", "constant") if spatial_dims == 2 else ("gaussian",):
        windowed = decode_windowed(ae, z, window=4, overlap=0.25, mode=mode)  # type: ignore[arg-type]
        assert windowed.shape == whole.shape
        assert (windowed - whole).abs().max() <= 1e-3
    handle.remove()
    assert max(sizes) < side or spatial_dims == 3  # windows, never the whole latent
    if spatial_dims == 2:
        assert (decode_windowed(ae, z, window=4, halo=0) - whole).abs().max() > 0.05

    x = whole[:1].clamp(-1, 1)
    with torch.no_grad():
        posterior = ae.posterior(x)
    tiled = encode_windowed(ae, x, window=16 if spatial_dims == 3 else 32)
    torch.testing.assert_close(tiled.mean, posterior.mean, rtol=0, atol=1e-4)
    torch.testing.assert_close(tiled.std, posterior.std, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="latent grid"):
        encode_windowed(ae, torch.zeros(1, 1, *([40] * spatial_dims)), window=10)


def test_self_attention_is_refused_and_latent_models_window_above_their_threshold() -> None:
    attentive = _autoencoder(2, attention=True)
    assert not can_window(attentive.decoder) and can_window(_autoencoder(2).decoder)
    with pytest.raises(ValueError, match="self-attention"):
        decode_windowed(attentive, torch.randn(1, 4, 8, 8), window=4)

    net = tiny_unet(2, in_channels=4, out_channels=4)
    windowed = LatentDiffusionModel(net, _autoencoder(2), latent_scale=0.5, decode_window=4)
    whole = LatentDiffusionModel(net, _autoencoder(2), latent_scale=0.5, decode_window=None)
    assert windowed.init_args()["decode_window"] == 4 and whole.init_args()["decode_window"] is None
    z = torch.randn(1, 4, 20, 20, generator=torch.Generator().manual_seed(1))
    calls: list[int] = []
    handle = windowed.autoencoder.decoder.register_forward_hook(lambda _m, args, _o: calls.append(args[0].shape[-1]))
    torch.testing.assert_close(windowed.decode(z), whole.decode(z), rtol=0, atol=1e-4)
    handle.remove()
    assert calls and max(calls) < 20  # decoded in windows (with their halo), never whole
