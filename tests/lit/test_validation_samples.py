"""The validation picture is drawn with the EMA weights (what checkpoints and generation use)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint

from medgen.data.datamodule import MedicalImageDataModule
from medgen.lit import GenerativeTask, Optimization, ValidationPictures
from medgen.models import DiffusionModel, SamplingDefaults
from tests.helpers import tiny_unet


class _Recording(GenerativeTask):
    """Remembers the weights in place when the validation picture is drawn."""

    drawn_with: dict[str, torch.Tensor] | None = None

    def draw_validation_picture(self, x0: torch.Tensor) -> None:
        if not self.trainer.sanity_checking:
            self.drawn_with = {k: v.detach().clone() for k, v in self.model.net.state_dict().items()}
        super().draw_validation_picture(x0)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_validation_picture_uses_ema_weights(tmp_path: Path, spatial_dims: int) -> None:
    L.seed_everything(0, verbose=False)
    size = 16 if spatial_dims == 2 else 8
    dm = MedicalImageDataModule("demo:mri", modality="mri", spatial_dims=spatial_dims, image_size=size, batch_size=2,
                                num_workers=0, val_fraction=0.5)  # fmt: skip
    model = DiffusionModel(tiny_unet(spatial_dims), sampling=SamplingDefaults("ddim", 2))
    module = _Recording(model, optimization=Optimization(lr=0.05, warmup_steps=1),
                        pictures=ValidationPictures(num_samples=2))  # fmt: skip
    trainer = L.Trainer(accelerator="cpu", max_steps=4, val_check_interval=4, check_val_every_n_epoch=None,
                        limit_val_batches=1, num_sanity_val_steps=0, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[EMAWeightAveraging(decay=0.5),
                                   ModelCheckpoint(tmp_path, every_n_train_steps=4)])  # fmt: skip
    trainer.fit(module, datamodule=dm)
    # Written at step 4 just before that step's validation: EMA ("state_dict") and raw weights of that moment.
    ckpt = torch.load(next(tmp_path.glob("*step=4.ckpt")), weights_only=True)
    ema, raw = ({k.removeprefix("model.net."): v for k, v in ckpt[part].items() if k.startswith("model.net.")}
                for part in ("state_dict", "current_model_state"))  # fmt: skip
    assert module.drawn_with is not None and module.drawn_with.keys() == ema.keys()
    assert any(not torch.equal(ema[k], raw[k]) for k in ema), "EMA and raw weights should differ after 4 AdamW steps"
    for key, value in module.drawn_with.items():
        assert torch.equal(value, ema[key]), key
