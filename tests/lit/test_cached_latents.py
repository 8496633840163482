"""A latent model trained on cached latents (``medgen encode``, ``data.latents_dir``) instead of encoding each step."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from medgen.cli import main
from medgen.store.ckpt import read_checkpoint
from tests.helpers import assert_same_checkpoints, fit_smoke, straight_and_resumed

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke"


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny networks on a shared 2-core machine run faster on one intra-op thread (see tests/nets/conftest.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def save_autoencoder(spatial_dims: int, out: Path, seed: int) -> Path:
    """An exported untrained autoencoder with the smoke latent models' architecture (random weights from ``seed``)."""
    from medgen.models.autoencoder import Autoencoder
    from medgen.nets.autoencoder import KLAutoencoder

    torch.manual_seed(seed)
    net = KLAutoencoder(spatial_dims=spatial_dims, channels=(8, 16), attention_levels=(False, False),
                        num_res_blocks=1, latent_channels=4, norm_num_groups=8, with_nonlocal_attn=False)  # fmt: skip
    return Autoencoder(net).save_pretrained(out)


def cached_config(spatial_dims: int, autoencoder: Path, latents: Path | None) -> str:
    """configs/smoke/ldm_{2,3}d_cached.yaml with its autoencoder and latents folder (None: on-the-fly encoding)."""
    text = (SMOKE / f"ldm_{spatial_dims}d_cached.yaml").read_text()
    text = text.replace(
        f"runs/smoke_ae_{spatial_dims}d/lightning_logs/version_0/checkpoints/last.ckpt", str(autoencoder)
    )
    line = f"  latents_dir: runs/smoke_latents_{spatial_dims}d\n"
    assert line in text and str(autoencoder) in text
    text = text.replace("  val_fraction:", "  min_foreground: 0.3\n  val_fraction:")  # fewer 2D slices: faster
    return text.replace(line, "" if latents is None else f"  latents_dir: {latents}\n")


def encode(autoencoder: Path, config: Path, out: Path, *extra: str) -> int:
    return main(["encode", "--checkpoint", str(autoencoder), "--config", str(config), "--out", str(out), *extra])


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], tuple[Path, Path, Path]]:
    """``(autoencoder export, latents folder, on-the-fly config)`` per spatial_dims, encoded once per module."""
    done: dict[int, tuple[Path, Path, Path]] = {}

    def get(spatial_dims: int) -> tuple[Path, Path, Path]:
        if spatial_dims not in done:
            root = tmp_path_factory.mktemp(f"encoded_{spatial_dims}d")
            autoencoder = save_autoencoder(spatial_dims, root / "ae", seed=1)
            config = root / "on_the_fly.yaml"
            config.write_text(cached_config(spatial_dims, autoencoder, None))
            assert encode(autoencoder, config, root / "latents") == 0
            done[spatial_dims] = (autoencoder, root / "latents", config)
        return done[spatial_dims]

    return get


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_cached_latents_train_bit_identically_resume_and_generate(
    spatial_dims: int, tmp_path: Path, encoded: Callable[[int], tuple[Path, Path, Path]]
) -> None:
    """Four steps on cached latents give the checkpoint of four steps encoding each batch (weights, EMA, Adam
    moments, bit for bit on the CPU); the cached run resumes exactly and its checkpoint generates from the CLI."""
    autoencoder, latents, _ = encoded(spatial_dims)
    text = cached_config(spatial_dims, autoencoder, latents)
    (tmp_path / "cached").mkdir()
    straight, resumed = straight_and_resumed(text, tmp_path / "cached", steps=4)
    assert_same_checkpoints(straight / "last.ckpt", resumed / "last.ckpt")

    on_the_fly = tmp_path / "on_the_fly.yaml"
    on_the_fly.write_text((tmp_path / "cached" / "smoke.yaml").read_text().replace(f"  latents_dir: {latents}\n", ""))
    direct = fit_smoke(on_the_fly, tmp_path / "direct", "--trainer.max_steps", "4")
    assert_same_checkpoints(straight / "last.ckpt", direct / "last.ckpt")
    cached_record = read_checkpoint(straight / "last.ckpt")["medgen"]["data"]
    direct_record = read_checkpoint(direct / "last.ckpt")["medgen"]["data"]
    assert cached_record.pop("latents_dir") == str(latents)
    assert cached_record == direct_record  # generation reads the images' record, not the latents'

    out = tmp_path / "samples"
    assert main(["generate", "--checkpoint", str(straight / "last.ckpt"), "--num-samples", "2", "--out", str(out),
                 "--format", "npy", "--max-retries", "0"]) == 0  # fmt: skip
    samples = [np.load(p) for p in sorted(out.glob("sample_*.npy"))]
    assert len(samples) == 2 and samples[0].shape[-spatial_dims:] == (16,) * spatial_dims


def test_bad_latents_folders_are_one_line_errors(
    tmp_path: Path, encoded: Callable[[int], tuple[Path, Path, Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder that is no encode output, other data options and another autoencoder's latents name the file."""
    _, latents, config = encoded(2)
    empty = tmp_path / "empty"
    empty.mkdir()
    manifest = latents / "latents.json"
    other = save_autoencoder(2, tmp_path / "other_ae", seed=2)
    cases = [
        (["--data.latents_dir", str(empty)], f"{empty / 'latents.json'}: not found"),
        (["--data.latents_dir", str(latents), "--data.val_fraction", "0.5"], f"{manifest}: latents were encoded with "
         "other data options (val_fraction differ)"),
        (["--data.latents_dir", str(latents), "--pretrained.autoencoder_from", str(other)], f"{manifest}: was encoded"
         " by other autoencoder weights"),
    ]  # fmt: skip
    for extra, message in cases:
        capsys.readouterr()
        code = main(["fit", "--config", str(config), "--trainer.default_root_dir", str(tmp_path / "run"),
                     "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "1", *extra])  # fmt: skip
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, err
        assert err[-1].startswith(f"medgen fit: error: {message}"), err[-1]
