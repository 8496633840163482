"""Tiny real checkpoints for generation, export and fine-tuning tests (built, not trained: fast)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.helpers import tiny_unet

CheckpointFactory = Callable[..., Path]


def write_checkpoint(
    path: Path,
    spatial_dims: int,
    family: str = "diffusion",
    conditions: list[dict] | None = None,
    seed: int = 0,
    image_channels: int = 0,
) -> Path:
    """A Lightning-format checkpoint of a seeded tiny model with the ``medgen`` block a fit run writes."""
    from medgen.lit import DiffusionModule, FlowMatchingModule
    from medgen.objectives import DiffusionObjective

    size = [16, 16] if spatial_dims == 2 else [8, 8, 8]
    net = tiny_unet(spatial_dims, seed=seed, conditions=conditions or [], image_channels=image_channels)
    if family == "latent":
        from medgen.lit import LatentDiffusionModule
        from medgen.nets.autoencoder import KLAutoencoder

        torch.manual_seed(seed)
        autoencoder = KLAutoencoder(spatial_dims, channels=(8, 16), attention_levels=(False, False), num_res_blocks=1,
                                    latent_channels=4, norm_num_groups=8, with_nonlocal_attn=False)  # fmt: skip
        net = tiny_unet(spatial_dims, seed=seed, conditions=conditions or [], in_channels=4, out_channels=4)
        module = LatentDiffusionModule(
            net, autoencoder, latent_scale=0.7, objective=DiffusionObjective(prediction_type="v"), sampler="ddim",
            num_inference_steps=3, sample_size=size,
        )  # fmt: skip
    elif family == "diffusion":
        module = DiffusionModule(
            net, DiffusionObjective(prediction_type="v"), sampler="ddim", num_inference_steps=3, sample_size=size
        )
    else:
        module = FlowMatchingModule(net, solver="euler", num_inference_steps=3, sample_size=size)
    return save_checkpoint(module, path)


def save_checkpoint(module: torch.nn.Module, path: Path) -> Path:
    """``module`` saved as ``medgen fit`` would: state dict, hyper-parameters and the ``medgen`` block."""
    meta = module.medgen_metadata()  # type: ignore[operator]
    meta["data"] = {"data_dir": "demo:mri", "modality": "mri", "spacing": [1.5, 2.0, 2.5][: meta["spatial_dims"]],
                    "intensity": {"kind": "percentile", "low": 0.5, "high": 99.5}, "n_train": 10, "n_subjects": 2,
                    "vocab": {}}  # fmt: skip
    hparams = dict(module.hparams)  # type: ignore[arg-type]
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hparams, "medgen": meta}, path)
    return path


@pytest.fixture()
def make_checkpoint(tmp_path: Path) -> CheckpointFactory:
    """``make_checkpoint(spatial_dims, family=..., conditions=..., image_channels=...)`` → a fresh ``.ckpt``."""

    def make(
        spatial_dims: int, family: str = "diffusion", conditions: list[dict] | None = None, image_channels: int = 0
    ) -> Path:
        name = f"{family}_{spatial_dims}d_{len(conditions or [])}_{image_channels}.ckpt"
        return write_checkpoint(tmp_path / name, spatial_dims, family, conditions, image_channels=image_channels)

    return make
