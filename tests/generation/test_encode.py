"""``medgen encode``: the manifest, resuming an interrupted run, refusing mixed options, tiles, posterior draws."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medgen.data.latents import open_latents
from medgen.errors import InputError
from medgen.generation.encode import EncodeOptions, encode_image
from medgen.hashing import file_sha256
from medgen.models.latent import weights_sha256
from medgen.store.load import load_model
from tests.lit.test_cached_latents import cached_config, encode, one_torch_thread, save_autoencoder

__all__ = ["one_torch_thread"]  # the autouse fixture, shared


@pytest.fixture(scope="module")
def setup_3d(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """``(autoencoder export, data config, its latents)`` of the 3D smoke latent model (demo:ct at 16^3)."""
    root = tmp_path_factory.mktemp("encode_3d")
    autoencoder = save_autoencoder(3, root / "ae", seed=1)
    config = root / "data.yaml"
    config.write_text(cached_config(3, autoencoder, None))
    assert encode(autoencoder, config, root / "latents") == 0
    return autoencoder, config, root / "latents"


def test_manifest_records_sources_autoencoder_options_and_shapes(setup_3d: tuple[Path, Path, Path]) -> None:
    autoencoder, _, out = setup_3d
    record = json.loads((out / "latents.json").read_text())
    assert record["complete"] and record["store"] == "posterior"
    assert record["autoencoder"]["checkpoint_sha256"] == load_model(autoencoder).sha256
    assert record["autoencoder"]["weights_sha256"] == weights_sha256(load_model(autoencoder).model.net)
    assert record["latent_shape"] == [4, 8, 8, 8] and record["image_size"] == [16, 16, 16]
    assert record["data"]["options"]["data_dir"] == "demo:ct" and "batch_size" not in record["data"]["options"]
    for source in record["sources"]:
        assert file_sha256(source["file"]) == source["sha256"]
    train = sorted((out / "train").glob("sample_*.safetensors"))
    assert len(train) == record["splits"]["train"]["count"] == len(record["splits"]["train"]["records"]) > 0
    tensors = load_file(str(train[0]))
    assert tensors["mean"].shape == tensors["std"].shape == (4, 8, 8, 8) and bool((tensors["std"] > 0).all())
    means = torch.stack([load_file(str(p))["mean"] for p in train]).double()
    assert record["scale_factor"] == pytest.approx(1 / float(means.std()), rel=1e-6)


def test_rerun_finishes_an_interrupted_encode_and_refuses_other_options(
    setup_3d: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    autoencoder, config, done = setup_3d
    out = tmp_path / "latents"
    shutil.copytree(done, out)
    first = out / "train" / "sample_000001.safetensors"
    before = first.read_bytes()
    first.unlink()  # a crash after the rename, before the row: and a temporary left behind
    (out / "train" / ".sample_000002.safetensors.abc.tmp.safetensors").write_bytes(b"half")
    manifest = json.loads((out / "latents.json").read_text())
    (out / "latents.json").write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(InputError, match="unfinished encode"):
        open_latents(out, {}, "mean", 0, None)
    capsys.readouterr()
    assert encode(autoencoder, config, out) == 0
    n = manifest["splits"]["train"]["count"] + manifest["splits"]["val"]["count"]
    assert f"({n - 1} already there)" in capsys.readouterr().err
    assert first.read_bytes() == before
    assert not list((out / "train").glob(".*.tmp*"))
    assert json.loads((out / "latents.json").read_text())["complete"]
    assert encode(autoencoder, config, out, "--store", "sample") == 2
    assert f"{out}: holds latents encoded with other options (store differ)" in capsys.readouterr().err


def test_tiled_encode_matches_whole_encode(setup_3d: tuple[Path, Path, Path]) -> None:
    """A volume above --window is encoded in tiles: the same latents within float rounding, not bit for bit."""
    autoencoder = load_model(setup_3d[0]).model.net
    image = torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    whole = encode_image(autoencoder, image, EncodeOptions(Path("unused"), window=0), 0, torch.device("cpu"))
    tiled = encode_image(autoencoder, image, EncodeOptions(Path("unused"), window=8), 0, torch.device("cpu"))
    for key in ("mean", "std"):
        assert torch.allclose(whole[key], tiled[key], atol=1e-5), (key, float((whole[key] - tiled[key]).abs().max()))
    assert not torch.equal(whole["mean"], tiled["mean"])  # really tiled
    with pytest.raises(InputError, match="^--window: windows of 5 voxels"):  # tiles off the latent grid
        encode_image(autoencoder, image, EncodeOptions(Path("unused"), window=5), 0, torch.device("cpu"))


def test_posterior_draws_change_per_epoch_and_stored_samples_are_fixed(
    setup_3d: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    autoencoder, config, posterior = setup_3d
    options = json.loads((posterior / "latents.json").read_text())["data"]["options"]
    drawn = open_latents(posterior, options, "sample", 7, None).train
    mean = open_latents(posterior, options, "mean", 7, None).train
    n = len(drawn)
    assert drawn.random_draws and not mean.random_draws
    assert torch.equal(drawn[0]["image"], drawn[0]["image"])  # seeded by (seed, epoch, index)
    assert not torch.equal(drawn[0]["image"], drawn[n]["image"])  # the next epoch draws anew
    assert not torch.equal(drawn[0]["image"], mean[0]["image"]) and torch.equal(mean[0]["image"], mean[n]["image"])
    assert encode(autoencoder, config, tmp_path / "sample", "--store", "sample", "--seed", "3") == 0
    stored = open_latents(tmp_path / "sample", options, "mean", 0, None).train
    assert stored[0]["image"].shape == mean[0]["image"].shape and not torch.equal(stored[0]["image"], mean[0]["image"])
    with pytest.raises(InputError, match="needs --store posterior"):
        open_latents(tmp_path / "sample", options, "sample", 0, None)


def test_encode_refuses_patches_bad_configs_and_models_without_an_autoencoder(
    setup_3d: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medgen.models.diffusion import DiffusionModel
    from tests.helpers import tiny_unet

    autoencoder, config, _ = setup_3d
    assert encode(autoencoder, config, tmp_path / "p", "--data.patches", "true") == 2
    assert "data.patches: random patches change every epoch" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("not: [a, fit, config")
    assert encode(autoencoder, broken, tmp_path / "b") == 2
    assert f"{broken}: cannot be read as YAML" in capsys.readouterr().err
    diffusion = DiffusionModel(tiny_unet(3)).save_pretrained(tmp_path / "ddpm")
    assert encode(diffusion, config, tmp_path / "d") == 2
    assert f"{diffusion}: is a DiffusionModel: medgen encode needs a KL autoencoder or a latent model on one" in (
        capsys.readouterr().err
    )
