"""Generated CT is stored in HU: the training window inverted exactly."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medgen.cli import main
from tests.generation.conftest import CheckpointFactory


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_ct_samples_are_written_in_hu_within_the_window(
    tmp_path: Path, make_checkpoint: CheckpointFactory, spatial_dims: int
) -> None:
    model_units = make_checkpoint(spatial_dims)
    ckpt = torch.load(model_units, weights_only=False)
    ckpt["medgen"]["data"].update(modality="ct", intensity={"kind": "window", "low": -160.0, "high": 240.0,
                                                            "unit": "HU"})  # fmt: skip
    ct = tmp_path / "ct.ckpt"
    torch.save(ckpt, ct)
    written = {}
    for name, path in (("model", model_units), ("ct", ct)):
        out = tmp_path / name
        args = ["generate", "--checkpoint", str(path), "--num-samples", "2", "--out", str(out), "--format", "nifti"]
        assert main([*args, "--steps", "1"]) == 0
        written[name] = [nib.load(out / f"sample_{i:06d}.nii.gz").get_fdata() for i in range(2)]
    row = json.loads((tmp_path / "ct" / "manifest.jsonl").read_text().splitlines()[0])
    assert row["intensity"] == {"stored": "HU", "window": [-160.0, 240.0]}
    for x, hu in zip(written["model"], written["ct"], strict=True):
        assert -160.0 <= hu.min() and hu.max() <= 240.0 and hu.max() - hu.min() > 40.0  # HU, not [-1, 1]
        np.testing.assert_allclose(hu, (np.clip(x, -1, 1) + 1) / 2 * 400.0 - 160.0, atol=1e-3)
