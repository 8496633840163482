"""Quality that can fail: a small diffusion model trained on real brain-MRI slices must sample images
closer to the real slices than an untrained network does, by a clear margin, on a feature-statistics
distance (:func:`medgen.evaluation.quick.quick_distance`, until the KID of the evaluation suite lands)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medgen.cli import main
from medgen.data.datamodule import MedicalImageDataModule
from medgen.evaluation.quick import quick_distance
from medgen.models import Autoencoder, DiffusionModel
from medgen.store.load import load_model

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "quality" / "ddpm_mri_2d_32.yaml"


@pytest.mark.slow
def test_trained_model_beats_untrained_on_real_mri(tmp_path: Path) -> None:
    assert (
        main(
            [
                "fit",
                f"--config={CONFIG}",
                f"--trainer.default_root_dir={tmp_path}",
                "--trainer.enable_progress_bar=false",
                "--trainer.enable_model_summary=false",
            ]
        )
        == 0
    )
    ckpt = next((tmp_path / "lightning_logs").glob("version_*/checkpoints/last.ckpt"))
    trained = load_model(ckpt).model
    untrained = load_model(ckpt).model
    assert isinstance(trained, DiffusionModel) and isinstance(untrained, DiffusionModel)
    for p in untrained.net.parameters():  # same architecture, fresh weights
        torch.nn.init.normal_(p, std=0.02)

    dm = MedicalImageDataModule(
        "demo:mri", modality="mri", spatial_dims=2, image_size=32, num_workers=0, val_fraction=0.0
    )
    dm.setup("fit")
    real = torch.stack([dm.train_set[i]["image"] for i in range(len(dm.train_set))])
    n = 64
    fake = trained.sample(n, generator=torch.Generator().manual_seed(0))
    junk = untrained.sample(n, generator=torch.Generator().manual_seed(0))
    d_trained = quick_distance(fake, real)
    d_untrained = quick_distance(junk, real)
    half = real[torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[:n]]
    d_real = quick_distance(half, real)
    print(f"MMD² to real slices: trained {d_trained:.4f}, untrained {d_untrained:.4f}, real subset {d_real:.4f}")
    assert torch.isfinite(fake).all()
    # The distance itself must work: real slices against the whole real set score near zero, far below junk.
    assert abs(d_real) < 0.05 * d_untrained
    # The trained model closes at least 75 % of the gap between junk and real data (measured from the real baseline).
    assert d_trained - d_real < 0.25 * (d_untrained - d_real)


@pytest.mark.slow
def test_autoencoder_beats_bilinear_at_equal_size_on_real_mri(tmp_path: Path) -> None:
    """Latent stage 1 on real MRI: 32x32 slices -> 4 x 8 x 8 latents (256 numbers) must reconstruct them better
    than bilinear resizing through 16 x 16 (the same 256 numbers), in PSNR."""
    config = CONFIG.parent / "ae_mri_2d_64.yaml"
    args = ["fit", f"--config={config}", f"--trainer.default_root_dir={tmp_path}", "--data.image_size=32",
            "--data.val_fraction=0.0", "--trainer.limit_val_batches=0", "--trainer.max_steps=600",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]  # fmt: skip
    assert main(args) == 0
    model = load_model(next((tmp_path / "lightning_logs").glob("version_*/checkpoints/last.ckpt"))).model
    assert isinstance(model, Autoencoder)
    dm = MedicalImageDataModule("demo:mri", modality="mri", spatial_dims=2, image_size=32, num_workers=0,
                                val_fraction=0.0)  # fmt: skip
    dm.setup("fit")
    real = torch.stack([dm.train_set[i]["image"] for i in range(len(dm.train_set))])
    with torch.no_grad():
        recon = model.reconstruct(real).clamp(-1, 1)
    small = torch.nn.functional.interpolate(real, size=(16, 16), mode="bilinear", antialias=True)
    resized = torch.nn.functional.interpolate(small, size=(32, 32), mode="bilinear").clamp(-1, 1)

    def psnr(x: torch.Tensor) -> float:
        return float(10 * torch.log10(4.0 / ((x - real) ** 2).mean()))

    print(f"PSNR on {len(real)} real slices: autoencoder {psnr(recon):.2f} dB, bilinear 16x16 {psnr(resized):.2f} dB")
    assert psnr(recon) > psnr(resized)
