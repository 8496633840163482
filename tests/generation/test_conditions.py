"""Conditioning images at generation are prepared by the data module's own chain, exactly as in training."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medgen.cli import main
from medgen.data.datalist import ImageRecord
from medgen.data.datasets import PipelineConfig, SampleDataset
from tests.generation.conftest import CheckpointFactory


@pytest.mark.parametrize(
    ("spatial_dims", "preprocessing"),
    [(2, {}), (3, {}), (3, {"target_spacing": [1.6, 1.6, 1.6], "resize_mode": "pad_crop"})],
)
def test_a_non_square_lps_mask_conditions_as_in_training(
    tmp_path: Path, make_checkpoint: CheckpointFactory, spatial_dims: int, preprocessing: dict
) -> None:
    shape = (24, 12) if spatial_dims == 2 else (12, 8, 6)
    size = (16, 16) if spatial_dims == 2 else (8, 8, 8)
    labels = np.zeros(shape, np.float32)
    labels[2:9, 1:5] = 1.0  # off-centre and asymmetric: a flip, a stretch or a shift shows
    labels[10:, 6:] = 2.0
    lps = np.diag([-0.8, -1.1, 1.3, 1.0])
    mask, image = tmp_path / "mask.nii.gz", tmp_path / "image.nii.gz"
    nib.save(nib.Nifti1Image(labels, lps), mask)
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=shape).astype(np.float32), lps), image)
    # What the data module presents to the net in training.
    spacing = preprocessing.get("target_spacing")
    config = PipelineConfig(spatial_dims=spatial_dims, image_size=size, modality="mri",
                            target_spacing=tuple(spacing) if spacing else None,
                            resize_mode=preprocessing.get("resize_mode", "resize"))  # fmt: skip
    trained_on = SampleDataset([ImageRecord(str(image), "s", str(mask))], config, cache="none")[0]["mask"][0]
    assert len(np.unique(trained_on.numpy())) == 3
    ckpt = make_checkpoint(spatial_dims, image_channels=1)
    if preprocessing:  # a model trained on resampled, padded/cropped volumes (its card says so)
        saved = torch.load(ckpt, weights_only=False)
        saved["medgen"]["data"]["preprocessing"] = preprocessing
        torch.save(saved, ckpt)
    out = tmp_path / "gen"
    args = ["generate", "--checkpoint", str(ckpt), "--num-samples", "1", "--out", str(out), "--format", "nifti"]
    assert main([*args, "--steps", "1", "--condition", f"mask={mask}"]) == 0
    generated_with = nib.load(out / "sample_000000_mask.nii.gz").get_fdata()
    np.testing.assert_array_equal(generated_with, trained_on.numpy())


def test_condition_errors_name_the_condition_not_a_flag() -> None:
    """The library names the condition (the CLI's ``--condition`` is the command's business)."""
    from types import SimpleNamespace

    from medgen.errors import InputError
    from medgen.generation.conditions import make_plan, parse_pairs

    net = SimpleNamespace(condition_names=["label", "age"], image_channels=0, control_channels=0)
    cases = [
        (lambda: parse_pairs(["label"]), "condition"),
        (lambda: make_plan(net, {}, [{"colour": "red"}]), "condition colour"),
        (lambda: make_plan(net, {"label": ["a", "b"]}, [{"label": "c"}]).values(0), "condition label"),
        (lambda: make_plan(net, {"label": ["a", "b"]}, [{"label": "5"}]).values(0), "condition label"),
        (lambda: make_plan(net, {}, [{"age": "old"}]).values(0), "condition age"),
        (lambda: make_plan(SimpleNamespace(image_channels=1), {}, []), "conditions"),
    ]
    for call, subject in cases:
        with pytest.raises(InputError) as info:
            call()
        assert info.value.subject == subject and "--" not in str(info.value)
