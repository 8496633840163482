"""Windowed (memory-bounded) decode and encode give the whole-volume result; latent models use it above a size."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from medgen.models import LatentDiffusionModel
from medgen.nets.autoencoder import KLAutoencoder
from medgen.nets.windowed import can_decode_windowed, can_window, decode_windowed, encode_windowed
from tests.helpers import tiny_unet

pytestmark = pytest.mark.usefixtures("one_thread")


def _autoencoder(spatial_dims: int, attention: bool = False) -> KLAutoencoder:
    torch.manual_seed(0)
    return KLAutoencoder(spatial_dims, channels=(8, 16, 16), attention_levels=(False,) * 3, num_res_blocks=1,
                         latent_channels=4, norm_num_groups=8, with_nonlocal_attn=attention).eval()  # fmt: skip


@contextmanager
def _output_sides(ae: KLAutoencoder) -> Iterator[list[int]]:
    """Sides of the inputs of the decoder's last convolution (always windowed) while the block is active."""
    sides: list[int] = []
    handle = ae.decoder.blocks[-1].register_forward_hook(lambda _m, args, _o: sides.append(args[0].shape[-1]))
    try:
        yield sides
    finally:
        handle.remove()


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_windowed_decode_and_encode_equal_the_whole(spatial_dims: int) -> None:
    """Within 1e-3 (measured: ~1e-6) of the whole decode, for every split between blocks run whole and blocks run
    in windows, with or without overlap; the last convolution only ever sees windows. Without the halo (``halo=0``)
    windows differ by far more. Latent 20^2 (2D) and 8^3 (3D: the default split only and no halo check, for time),
    output 80^2 and 32^3, windows of 4 latent voxels."""
    ae = _autoencoder(spatial_dims)
    side = 20 if spatial_dims == 2 else 8
    z = torch.randn(
        2 if spatial_dims == 2 else 1, 4, *([side] * spatial_dims), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        whole = ae.decode(z)
    settings = [(None, 0.0, "gaussian")]
    if spatial_dims == 2:
        settings += [(None, 0.25, "gaussian"), (1, 0.0, "gaussian"), (0, 0.25, "constant"), (0, 0.0, "gaussian")]
    for whole_levels, overlap, mode in settings:
        with _output_sides(ae) as sides:
            windowed = decode_windowed(ae, z, window=4, overlap=overlap, mode=mode, whole_levels=whole_levels)  # type: ignore[arg-type]
        assert windowed.shape == whole.shape
        assert (windowed - whole).abs().max() <= 1e-3, (whole_levels, overlap, mode)
        assert sides and max(sides) < whole.shape[-1], "decoded whole, not in windows"
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


def test_self_attention_runs_whole_and_latent_models_window_above_their_threshold() -> None:
    """Self-attention in the decoder's middle (latent resolution) runs on the whole latent, so the decode is still
    windowed exactly; windowing every block (``whole_levels=0``) is refused."""
    attentive = _autoencoder(2, attention=True)
    assert not can_window(attentive.decoder) and can_window(_autoencoder(2).decoder)
    assert can_decode_windowed(attentive) and not can_decode_windowed(attentive, whole_levels=0)
    z = torch.randn(1, 4, 12, 12, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(decode_windowed(attentive, z, window=4), attentive.decode(z), rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="self-attention"):
        decode_windowed(attentive, z, window=4, whole_levels=0)

    net = tiny_unet(2, in_channels=4, out_channels=4)
    windowed = LatentDiffusionModel(net, _autoencoder(2), latent_scale=0.5, decode_window=4)
    whole = LatentDiffusionModel(net, _autoencoder(2), latent_scale=0.5, decode_window=None)
    assert windowed.init_args()["decode_window"] == 4 and whole.init_args()["decode_window"] is None
    z = torch.randn(1, 4, 20, 20, generator=torch.Generator().manual_seed(1))
    with _output_sides(windowed.autoencoder) as sides:
        torch.testing.assert_close(windowed.decode(z), whole.decode(z), rtol=0, atol=1e-4)
    assert sides and max(sides) < 80  # decoded in windows (with their halo), never whole


@pytest.mark.slow
def test_committed_decode_benchmark_meets_the_targets() -> None:
    """benchmarks/results/decode_memory.txt (160^3, 12^3 windows): memory ratio <= 0.35, max abs <= 1e-3."""
    lines = (Path(__file__).resolve().parents[2] / "benchmarks/results/decode_memory.txt").read_text().splitlines()
    ratio = next(line for line in lines if "ratio" in line and "decode memory" in line)
    difference = next(line for line in lines if "max abs" in line)
    assert float(ratio.rsplit(":", 1)[1]) <= 0.35 and float(difference.rsplit(":", 1)[1]) <= 1e-3


def test_maisi_decoders_are_decoded_whole() -> None:
    """MAISI's decoder (split convolutions) is not exact in windows: latent models decode it whole."""
    from medgen.nets.maisi import MaisiAutoencoder

    torch.manual_seed(0)
    maisi = MaisiAutoencoder(3, channels=(8, 16, 16), num_res_blocks=(1, 1, 1), norm_num_groups=8, num_splits=1)
    assert not can_decode_windowed(maisi) and can_decode_windowed(_autoencoder(3))
    with pytest.raises(ValueError, match="MaisiDecoder"):
        decode_windowed(maisi, torch.zeros(1, 4, 8, 8, 8))
