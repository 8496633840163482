"""Tiny real checkpoints for generation, export and fine-tuning tests (built, not trained: fast)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.helpers import tiny_unet

CheckpointFactory = Callable[..., Path]

#: ``write_checkpoint`` family → the card's family.
CARD_FAMILY = {"latent": "latent-diffusion", "latent-flow": "latent-flow"}


def tiny_autoencoder(spatial_dims: int, seed: int = 0) -> torch.nn.Module:
    """A seeded tiny KL autoencoder (4 latent channels, downsampling by 2)."""
    from medgen.nets.autoencoder import KLAutoencoder

    torch.manual_seed(seed)
    return KLAutoencoder(spatial_dims, channels=(8, 16), attention_levels=(False, False), num_res_blocks=1,
                         latent_channels=4, norm_num_groups=8, with_nonlocal_attn=False)  # fmt: skip


def tiny_model(
    spatial_dims: int,
    family: str = "diffusion",
    conditions: list[dict] | None = None,
    seed: int = 0,
    image_channels: int = 0,
) -> torch.nn.Module:
    """A seeded tiny model of ``family`` (``diffusion``, ``flow``, ``latent``, ``latent-flow``: 3 sampling steps;
    ``gan``: an up-sampling generator)."""
    from medgen.models import (
        DiffusionModel,
        FlowModel,
        GANModel,
        LatentDiffusionModel,
        LatentFlowModel,
        SamplingDefaults,
    )
    from medgen.nets.gan import UpsamplingGenerator
    from medgen.objectives import DiffusionObjective

    size = [16, 16] if spatial_dims == 2 else [8, 8, 8]
    if family == "gan":
        torch.manual_seed(seed)
        channels = (16, 8, 8) if spatial_dims == 2 else (16, 8)
        return GANModel(UpsamplingGenerator(spatial_dims, size, latent_dim=8, channels=channels,
                                            conditions=conditions or []))  # fmt: skip
    if family in ("latent", "latent-flow"):
        autoencoder = tiny_autoencoder(spatial_dims, seed)
        net = tiny_unet(spatial_dims, seed=seed, conditions=conditions or [], in_channels=4, out_channels=4)
        if family == "latent":
            objective = DiffusionObjective(prediction_type="v")
            return LatentDiffusionModel(net, autoencoder, latent_scale=0.7, objective=objective,
                                        sampling=SamplingDefaults("ddim", 3), sample_size=size)  # fmt: skip
        return LatentFlowModel(net, autoencoder, latent_scale=0.7, sampling=SamplingDefaults("euler", 3),
                               sample_size=size)  # fmt: skip
    net = tiny_unet(spatial_dims, seed=seed, conditions=conditions or [], image_channels=image_channels)
    if family == "diffusion":
        return DiffusionModel(net, DiffusionObjective(prediction_type="v"), SamplingDefaults("ddim", 3), size)
    if family == "flow":
        return FlowModel(net, sampling=SamplingDefaults("euler", 3), sample_size=size)
    raise ValueError(family)


def write_checkpoint(
    path: Path,
    spatial_dims: int,
    family: str = "diffusion",
    conditions: list[dict] | None = None,
    seed: int = 0,
    image_channels: int = 0,
) -> Path:
    """A Lightning-format checkpoint of a seeded tiny model with the ``medgen`` block a fit run writes."""
    return save_checkpoint(tiny_model(spatial_dims, family, conditions, seed, image_channels), path)


def save_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """``model`` saved as ``medgen fit`` would: the task's state dict and hyper-parameters, the ``medgen`` block."""
    from medgen.lit import GenerativeTask

    task = GenerativeTask(model)  # type: ignore[arg-type]
    ckpt = {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}
    task.on_save_checkpoint(ckpt)  # the medgen block (and RNG states), as Lightning calls it
    meta = ckpt["medgen"]
    meta["data"] = {"data_dir": "demo:mri", "modality": "mri", "spacing": [1.5, 2.0, 2.5][: meta["spatial_dims"]],
                    "intensity": {"kind": "percentile", "low": 0.5, "high": 99.5}, "n_train": 10, "n_subjects": 2,
                    "vocab": {}}  # fmt: skip
    torch.save(ckpt, path)
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


def legacy_checkpoint(ckpt: Path, path: Path, module: str = "medgen.lit.diffusion.DiffusionModule") -> Path:
    """A diffusion ``ckpt`` rewritten as medgen before the models/tasks split wrote it: the Lightning module's class in
    ``medgen.module``, its arguments in ``hyper_parameters``, the model's tensors without the task's ``model.``."""
    new = torch.load(ckpt, weights_only=True)
    meta, args = new["medgen"], new["medgen"]["model"]["init_args"]
    sampling = args["sampling"]
    old_meta = {"version": "0.1.0", "module": module, "net": meta["net"], "objective": meta["objective"],
                "family": meta["family"], "image_size": meta["image_size"], "spatial_dims": meta["spatial_dims"],
                "sampling": {"sampler": sampling["method"], "num_steps": sampling["num_steps"],
                             "guidance": sampling["guidance"]},
                "data": meta["data"]}  # fmt: skip
    hparams = {"warmup_steps": 500, "cond_drop_prob": 0.1, "image_condition_key": "mask",
               "sampler": sampling["method"], "num_inference_steps": sampling["num_steps"],
               "guidance": sampling["guidance"], "val_num_samples": 8, "sample_every_n_epochs": 1,
               "sample_size": args["sample_size"], "seed": 0, "compile": False, "init_from": None,
               "init_strict": False, "freeze": None, "init_min_match": 0.5}  # fmt: skip
    state = {k.removeprefix("model."): v for k, v in new["state_dict"].items()}
    torch.save({"state_dict": state, "hyper_parameters": hparams, "medgen": old_meta}, path)
    return path
