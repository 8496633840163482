"""Conditioned training end to end: class/scalar columns from a datalist with CFG, mask → image by channel
concatenation, ControlNet on masks; plus all diffusers schedulers on a trained 3D model, and the NaN stop."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import lightning as L
import pytest
import torch

from medgen.cli import main
from medgen.data.datamodule import MedicalImageDataModule
from medgen.data.phantoms import phantom_family, save_phantom_set
from medgen.lit import Conditioning, GenerativeTask, Optimization, ValidationPictures
from medgen.models import DiffusionModel, FlowModel, GenerativeModel, SamplingDefaults
from medgen.nets.condition import Condition
from medgen.nets.conditioning import ConditionSpec
from medgen.nets.controlnet import ControlNetUNet
from medgen.nets.unet import DiffusionUNet
from medgen.sampling import SAMPLER_ALIASES
from medgen.store.load import load_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "smoke"
TINY = dict(channels=(8, 16), attention_levels=(False, True), num_res_blocks=1, num_head_channels=8, norm_num_groups=8)


def _task(model: GenerativeModel, drop_prob: float = 0.1) -> GenerativeTask:
    """Training without validation pictures, one warm-up step."""
    return GenerativeTask(
        model,
        optimization=Optimization(warmup_steps=1),
        conditioning=Conditioning(drop_prob=drop_prob),
        pictures=ValidationPictures(num_samples=0),
    )


def _trainer(root: Path, steps: int = 3) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )


@pytest.fixture(scope="module")
def labelled_ct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("labelled_ct")
    paths = save_phantom_set(root, phantom_family("ct", 4, (24, 24, 8), seed=3))
    rows = ["image,mask,label,age"] + [
        f"{p.name},{p.name.replace('.nii.gz', '_mask.nii.gz')},{i % 2},{50 + 5 * i}" for i, p in enumerate(paths)
    ]
    (root / "list.csv").write_text("\n".join(rows) + "\n")
    return root / "list.csv"


def _data(datalist: Path, spatial_dims: int) -> MedicalImageDataModule:
    return MedicalImageDataModule(
        str(datalist),
        modality="ct",
        spatial_dims=spatial_dims,
        image_size=16,
        batch_size=2,
        num_workers=0,
        val_fraction=0.0,
        min_foreground=0.0,
    )


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("family", [DiffusionModel, FlowModel])
def test_class_and_scalar_conditions_with_guidance(
    family: type[DiffusionModel] | type[FlowModel], spatial_dims: int, labelled_ct: Path, tmp_path: Path
) -> None:
    specs = [ConditionSpec("label", "class", num_classes=2), ConditionSpec("age", "scalar", mean=60, std=10)]
    net = DiffusionUNet(spatial_dims=spatial_dims, conditions=specs, **TINY)  # type: ignore[arg-type]
    module = family(net=net)
    module.sampling = replace(module.sampling, num_steps=3)  # the family's default method, 3 steps
    _trainer(tmp_path).fit(_task(module, drop_prob=0.5), datamodule=_data(labelled_ct, spatial_dims))
    cond = Condition(values=torch.tensor([[0.0, 55.0], [1.0, 70.0]]))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    plain = module.sample(2, cond=cond, generator=g(), guidance=1.0)
    guided = module.sample(2, cond=cond, generator=g(), guidance=3.0)
    uncond = module.sample(2, cond=None, generator=g(), guidance=1.0)
    assert plain.shape == (2, 1) + (16,) * spatial_dims and torch.isfinite(guided).all()
    assert not torch.allclose(plain, guided) and not torch.allclose(plain, uncond)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_flow_translation_between_classes(spatial_dims: int, labelled_ct: Path, tmp_path: Path) -> None:
    net = DiffusionUNet(spatial_dims=spatial_dims, conditions=[ConditionSpec("label", "class", num_classes=2)], **TINY)  # type: ignore[arg-type]
    module = FlowModel(net=net, sampling=SamplingDefaults("heun", 20))
    dm = _data(labelled_ct, spatial_dims)
    dm.conditions = ["label"]
    _trainer(tmp_path).fit(_task(module), datamodule=dm)
    with torch.no_grad():  # a few steps barely move MONAI's zero-initialised output; make classes matter
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    images = torch.stack([dm.train_set[i]["image"] for i in range(2)])
    a, b = Condition(values=torch.zeros(2, 1)), Condition(values=torch.ones(2, 1))
    same = module.translate(images, a, a, num_steps=50)
    moved = module.translate(images, a, b)
    torch.testing.assert_close(same, images, atol=5e-3, rtol=0)  # invert + integrate under one class is the identity
    assert moved.shape == images.shape and torch.isfinite(moved).all() and not torch.allclose(moved, images, atol=1e-3)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_mask_to_image_by_channel_concatenation(spatial_dims: int, labelled_ct: Path, tmp_path: Path) -> None:
    net = DiffusionUNet(spatial_dims=spatial_dims, image_channels=1, **TINY)  # type: ignore[arg-type]
    module = DiffusionModel(net=net, sampling=SamplingDefaults("ddim", 3))
    dm = _data(labelled_ct, spatial_dims)
    _trainer(tmp_path).fit(_task(module), datamodule=dm)
    masks = torch.stack([dm.train_set[i]["mask"] for i in range(2)])
    out = module.sample(2, cond=Condition(image=masks), generator=torch.Generator().manual_seed(0))
    assert out.shape == masks.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_controlnet_on_masks_trains_only_the_controlnet(spatial_dims: int, labelled_ct: Path, tmp_path: Path) -> None:
    base = DiffusionUNet(spatial_dims=spatial_dims, **TINY)  # type: ignore[arg-type]
    before = {k: v.clone() for k, v in base.state_dict().items()}
    net = ControlNetUNet(base, control_channels=1, embedding_channels=(8,), freeze_base=True)
    module = FlowModel(net=net, sampling=SamplingDefaults("heun", 3))
    dm = _data(labelled_ct, spatial_dims)
    _trainer(tmp_path).fit(_task(module), datamodule=dm)
    for k, v in base.state_dict().items():
        assert torch.equal(v, before[k]), k
    masks = torch.stack([dm.train_set[i]["mask"] for i in range(2)])
    out = module.sample(2, cond=Condition(control=masks), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all()


@pytest.fixture(scope="module")
def trained_3d(tmp_path_factory: pytest.TempPathFactory) -> DiffusionModel:
    root = tmp_path_factory.mktemp("trained_3d")
    assert (
        main(
            [
                "fit",
                f"--config={CONFIGS / 'ddpm_3d.yaml'}",
                f"--trainer.default_root_dir={root}",
                "--trainer.enable_progress_bar=false",
                "--trainer.enable_model_summary=false",
            ]
        )
        == 0
    )
    model = load_model(next(root.glob("lightning_logs/version_0/checkpoints/last.ckpt"))).model
    assert isinstance(model, DiffusionModel)
    return model


@pytest.mark.parametrize("sampler", sorted(set(SAMPLER_ALIASES.values())))
def test_every_scheduler_samples_3d_from_a_trained_model(sampler: str, trained_3d: DiffusionModel) -> None:
    out = trained_3d.sample(2, generator=torch.Generator().manual_seed(0), method=sampler, num_steps=4)
    assert out.shape == (2, 1, 16, 16, 16) and torch.isfinite(out).all()


def test_non_finite_loss_stops_with_step_and_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "fit",
            f"--config={CONFIGS / 'ddpm_2d.yaml'}",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            "--model.optimization.lr=1e6",  # AdamW moves every weight by about lr per step: diverges in steps
            "--model.optimization.warmup_steps=1",
            "--trainer.max_steps=60",
            "--trainer.callbacks+=ModelCheckpoint",
            "--trainer.callbacks.every_n_train_steps=1",
            "--trainer.callbacks.save_top_k=-1",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1
    match = re.search(
        r"training stopped: loss is (nan|inf) at step (\d+); last good checkpoint: (\S+step=(\d+)\.ckpt)", err
    )
    assert match, err
    assert int(match.group(4)) == int(match.group(2)) - 1 and Path(match.group(3)).is_file()
