"""Calibration without --holdout groups 2D slices by volume, so adjacent slices never enter the null."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medgen.data.io import load_image
from medgen.demo_data import real_mri_volumes
from medgen.memorization.index import build_index
from medgen.memorization.sources import SourceItem, slice_subjects


def _three_volumes() -> list[torch.Tensor]:
    """Three 10-slice axial slabs of the MNI152 T1 (far apart: independent 'volumes'), at 64 x 76."""
    volume = load_image(real_mri_volumes()[0]).as_tensor().float()[:1]
    small = F.interpolate(volume[None], size=(64, 76, 62), mode="trilinear", align_corners=False)[0, 0]
    return [small[:, :, start : start + 10] for start in (14, 28, 42)]


def _write(volumes: list[torch.Tensor], root: Path, layout: str) -> Path:
    for v, volume in enumerate(volumes):
        for z in range(volume.shape[-1]):
            name = {"flat": f"vol{v}_slice{z:03d}.npy", "nested": f"vol{v}/slice{z:03d}.npy",
                    "ungrouped": f"x{v}{z:03d}y.npy"}[layout]  # fmt: skip
            path = root / layout / name
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, volume[:, :, z].numpy())
    return root / layout


def test_slice_subjects_from_stems():
    items = [SourceItem(Path(f"/d/{n}"), n, n) for n in ("a_slice001.png", "a_slice002.png", "b-12.png")]
    assert slice_subjects(items) == ["a", "a", "b"]
    single = [SourceItem(Path(f"/d/{n}"), n, n) for n in ("train_0001.npy", "train_0002.npy")]
    assert slice_subjects(single) == ["train_0001.npy", "train_0002.npy"]  # one group: nothing to split
    folders = [SourceItem(Path("/d/p1/a_1.png"), "p1", "p1/a_1.png")]
    assert slice_subjects(folders) == ["p1"]


@pytest.mark.skipif(not real_mri_volumes(), reason="needs nilearn's MNI152 or nibabel's anatomical.nii")
def test_one_folder_of_slices_calibrates_like_per_volume_folders(tmp_path):
    volumes = _three_volumes()
    indexes = {layout: build_index(_write(volumes, tmp_path, layout)) for layout in ("flat", "nested", "ungrouped")}
    flat, nested, ungrouped = indexes["flat"], indexes["nested"], indexes["ungrouped"]
    assert flat.verification is not None and nested.verification is not None and ungrouped.verification
    assert flat.threshold == pytest.approx(nested.threshold, abs=0.01)
    assert flat.verification.threshold == pytest.approx(nested.verification.threshold, abs=0.01)
    raw = {k: float(torch.quantile(i.verification.null, 0.99)) for k, i in indexes.items()}
    assert raw["flat"] == pytest.approx(raw["nested"], abs=0.01)
    # Per-file subjects put neighbouring slices of one volume on both sides of every comparison: each slice's
    # "other subjects" include its neighbours, so the baselines (what independent images reach) are inflated.
    baselines = {k: float(i.images.baselines.mean()) for k, i in indexes.items() if i.images.baselines is not None}
    assert baselines["ungrouped"] > baselines["flat"] + 0.1, (baselines, raw)
    assert any("from 1 independent subjects" in note for note in flat.verification.notes)
