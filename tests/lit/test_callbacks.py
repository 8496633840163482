"""DistributionMetrics: KID/FID of samples against a fixed validation subset, in 2D and 3D, from Python and YAML."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from medgen.cli import main
from medgen.data.datamodule import MedicalImageDataModule
from medgen.data.phantoms import phantom_family, save_phantom_set
from medgen.errors import InputError
from medgen.evaluation.kid import polynomial_kernel
from medgen.lit import GenerativeTask, Optimization, ValidationPictures
from medgen.lit.callbacks import DistributionMetrics, distribution_scores
from medgen.models import DiffusionModel, SamplingDefaults
from medgen.nets.conditioning import ConditionSpec
from medgen.nets.unet import DiffusionUNet
from tests.helpers import tiny_unet

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "smoke"


class PooledIntensities(nn.Module):
    """Deterministic, weight-free 2D extractor: 4 x 4 average-pooled intensities (16 features)."""

    num_features = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x.mean(dim=1, keepdim=True), 4).flatten(1)


@pytest.fixture(scope="module")
def ct_volumes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small CT phantoms with a label column (half for validation: three subjects)."""
    root = tmp_path_factory.mktemp("ct_volumes")
    paths = save_phantom_set(root, phantom_family("ct", 6, (24, 24, 16), seed=7))
    rows = ["image,label"] + [f"{p.name},{i % 2}" for i, p in enumerate(paths)]
    (root / "list.csv").write_text("\n".join(rows) + "\n")
    return root


def _data(root: Path, spatial_dims: int, conditions: list[str] | None = None) -> MedicalImageDataModule:
    return MedicalImageDataModule(
        str(root / "list.csv"),
        modality="ct",
        spatial_dims=spatial_dims,
        image_size=16,
        batch_size=2,
        num_workers=0,
        val_fraction=0.5,
        min_foreground=0.0,
        conditions=conditions,
    )


def _task(net: DiffusionUNet, num_steps: int) -> GenerativeTask:
    """A diffusion model sampling with DDIM in ``num_steps`` steps; no validation picture, one warm-up step."""
    model = DiffusionModel(net, sampling=SamplingDefaults("ddim", num_steps))
    return GenerativeTask(model, optimization=Optimization(warmup_steps=1), pictures=ValidationPictures(num_samples=0))


def _trainer(root: Path, callback: DistributionMetrics) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        limit_train_batches=1,
        limit_val_batches=1,
        num_sanity_val_steps=1,
        logger=L.pytorch.loggers.CSVLogger(root),
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )


def _logged(trainer: L.Trainer) -> list[dict[str, str]]:
    assert trainer.log_dir is not None
    with open(Path(trainer.log_dir) / "metrics.csv") as fh:
        return [row for row in csv.DictReader(fh) if row.get("val/kid")]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_logs_kid_and_fid_every_n_epochs_deterministically(spatial_dims: int, ct_volumes: Path, tmp_path: Path) -> None:
    module = _task(tiny_unet(spatial_dims), num_steps=3)
    callback = DistributionMetrics(
        num_samples=3, every_n_epochs=2, extractor=PooledIntensities(), fid_min_samples=3, batch_size=2
    )
    trainer = _trainer(tmp_path, callback)
    trainer.fit(module, datamodule=_data(ct_volumes, spatial_dims))
    rows = _logged(trainer)
    assert [int(r["epoch"]) for r in rows] == [1]  # epoch 0 skipped (every 2nd), sanity check skipped
    kid_value, fid_value = float(rows[0]["val/kid"]), float(rows[0]["val/fid"])
    assert math.isfinite(kid_value) and math.isfinite(fid_value) and fid_value > 0
    assert float(rows[0]["val/dist_num_samples"]) == 3
    assert callback.last is not None and callback.last.kid == pytest.approx(kid_value)
    # The real subset is fixed and the sampling generator seeded: the same weights give the same numbers.
    assert callback.evaluate(trainer, module) == callback.last
    slices = 3 * 16 if spatial_dims == 3 else 1  # 2.5D: every slice of the three planes of each volume
    assert callback.real_features is not None and callback.real_features.shape == (3 * slices, 16)


def test_scores_of_identical_sets_are_zero_and_fid_waits_for_n() -> None:
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(40, 8, generator=gen, dtype=torch.float64)
    shifted = real + 0.5 * torch.rand(40, 8, generator=gen, dtype=torch.float64)
    same = distribution_scores(real, real.clone(), num_samples=40, fid_min_samples=40)
    far = distribution_scores(real, shifted, num_samples=40, fid_min_samples=40)
    assert same.fid is not None and far.fid is not None
    assert abs(same.fid) < 1e-9 < far.fid
    # KID of a set with itself is not exactly 0: the cross term keeps the diagonal k(x, x) that the within terms
    # leave out, giving -2 (mean k(x, x) - mean k(x, y != x)) / N, a small negative number.
    k = polynomial_kernel(real, real)
    off_diagonal = (k.sum() - k.diagonal().sum()) / (40 * 39)
    assert same.kid == pytest.approx(float(-2 * (k.diagonal().mean() - off_diagonal) / 40), rel=1e-9)
    assert abs(same.kid) < 0.1 * far.kid
    small = distribution_scores(real, shifted, num_samples=39, fid_min_samples=40)
    assert small.fid is None and small.kid == far.kid and small.num_samples == 39


def test_conditional_module_samples_with_the_real_conditions(ct_volumes: Path, tmp_path: Path) -> None:
    net = tiny_unet(2, conditions=[ConditionSpec("label", "class", num_classes=2)])
    module = _task(net, num_steps=2)
    callback = DistributionMetrics(num_samples=3, extractor=PooledIntensities(), batch_size=3, kid_subsets=5)
    data = _data(ct_volumes, 2, conditions=["label"])
    trainer = _trainer(tmp_path, callback)
    trainer.fit(module, datamodule=data)
    assert data.val_set is not None
    batch = torch.utils.data.default_collate([data.val_set[i] for i in range(3)])
    cond = module.condition(batch)
    assert cond is not None and cond.values is not None and cond.values.shape == (3, 1)
    extractor = PooledIntensities()
    fake = module.model.sample(3, cond=cond, generator=torch.Generator().manual_seed(0))
    expected = distribution_scores(
        extractor(batch["image"].clamp(-1, 1)), extractor(fake.clamp(-1, 1)), 3, kid_subsets=5
    )
    assert callback.evaluate(trainer, module) == expected


def test_bad_arguments() -> None:
    with pytest.raises(InputError, match="num_samples >= 2"):
        DistributionMetrics(num_samples=1)
    with pytest.raises(InputError, match="every_n_epochs"):
        DistributionMetrics(every_n_epochs=0)


def test_yaml_callback_with_inception_through_the_cli(tmp_path: Path) -> None:
    """``--trainer.callbacks+=`` on a smoke config (with EMA), Inception features, FID allowed at N = 4."""
    args = [
        "fit",
        f"--config={CONFIGS / 'ddpm_2d.yaml'}",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.logger=CSVLogger",
        f"--trainer.logger.save_dir={tmp_path}",
        "--trainer.max_steps=2",
        "--trainer.val_check_interval=2",
        "--model.pictures.num_samples=0",
        "--trainer.callbacks+=medgen.lit.callbacks.DistributionMetrics",
        "--trainer.callbacks.num_samples=4",
        "--trainer.callbacks.fid_min_samples=4",
        "--trainer.callbacks.kid_subsets=10",
    ]
    assert main(args) == 0
    run = next((tmp_path / "lightning_logs").iterdir())
    with open(run / "metrics.csv") as fh:
        rows = [row for row in csv.DictReader(fh) if row.get("val/kid")]
    assert len(rows) == 1 and float(rows[0]["val/dist_num_samples"]) == 4
    assert math.isfinite(float(rows[0]["val/kid"])) and float(rows[0]["val/fid"]) > 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    entry = next(c for c in saved["trainer"]["callbacks"] if c["class_path"].endswith("DistributionMetrics"))
    assert entry["init_args"]["num_samples"] == 4 and entry["init_args"]["extractor"] == "inception"
