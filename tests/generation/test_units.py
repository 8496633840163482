"""Generated CT is stored in HU: the training window inverted exactly."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medgen.cli import main
from medgen.data.datamodule import MedicalImageDataModule
from medgen.data.intensity import IntensityMapping, as_intensity
from medgen.errors import InputError
from medgen.generation.run import _unit
from medgen.generation.writers import to_output_units
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


@pytest.mark.parametrize(
    ("options", "stored"),
    [
        ({"modality": "ct"}, '{"kind": "window", "low": -1024.0, "high": 3071.0, "unit": "HU"}'),
        (
            {"modality": "ct", "ct_window": [-160, 240]},
            '{"kind": "window", "low": -160.0, "high": 240.0, "unit": "HU"}',
        ),
        ({"modality": "mri"}, '{"kind": "percentile", "low": 0.5, "high": 99.5}'),
        ({"modality": "mri", "mri_zscore": True}, '{"kind": "zscore"}'),
        ({"modality": "xray", "xray_percentiles": (1.0, 99.0)}, '{"kind": "percentile", "low": 1.0, "high": 99.0}'),
    ],
)
def test_intensity_record_stores_the_same_dict_as_before(tmp_path: Path, options: dict, stored: str) -> None:
    """Checkpoints and cards keep the dict form key for key: old checkpoints load, new ones read the same."""
    mapping = MedicalImageDataModule(str(tmp_path), **options)._intensity(options["modality"])
    assert isinstance(mapping, IntensityMapping)
    assert json.dumps(mapping.to_dict()) == stored
    assert IntensityMapping.from_dict(json.loads(stored)) == mapping
    assert json.dumps(IntensityMapping.from_dict(json.loads(stored)).to_dict()) == stored


def test_intensity_record_reads_old_and_odd_dicts() -> None:
    no_unit = {"kind": "window", "low": -160, "high": 240}  # an int window and no unit round-trip as stored
    assert IntensityMapping.from_dict(no_unit).to_dict() == no_unit and as_intensity(no_unit).unit is None  # type: ignore[union-attr]
    extra = {"kind": "percentile", "low": 0.5, "high": 99.5, "note": "x"}
    assert json.dumps(IntensityMapping.from_dict(extra).to_dict()) == json.dumps(extra)
    assert as_intensity(None) is None and as_intensity({}) is None
    with pytest.raises(InputError, match="IntensityMapping.kind"):
        IntensityMapping.from_dict({"kind": "gamma"})


@pytest.mark.parametrize("fmt", ["png", "nifti"])
@pytest.mark.parametrize(
    "stored",
    [{"kind": "window", "low": -160.0, "high": 240.0, "unit": "HU"}, {"kind": "zscore"}, {}, None],
)
def test_manifest_unit_is_the_same_for_the_dict_and_the_record(fmt: str, stored: dict | None) -> None:
    expected = {
        "png": {"stored": "uint8", "maps_to": [-1.0, 1.0], "of": stored or {}},
        "nifti": {"stored": "HU", "window": [-160.0, 240.0]}
        if stored and stored.get("kind") == "window"
        else {"stored": "model [-1, 1]", "of": stored or {}},
    }[fmt]
    assert _unit(fmt, stored) == expected
    assert _unit(fmt, as_intensity(stored)) == expected
    x = torch.linspace(-1, 1, 5).view(1, 5)
    values, unit = to_output_units(x, stored)
    assert unit == ("HU" if stored and stored.get("kind") == "window" else "model [-1, 1]")
    torch.testing.assert_close(values, to_output_units(x, as_intensity(stored))[0])
