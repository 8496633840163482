"""Sanity of FID with the offline Inception network on the real images available offline.

MRI: two different real T1 brains shipped in wheels (the MNI152 template from nilearn, nibabel's
``anatomical.nii``). CT: no CT volume ships offline (only single DICOM slices), so the CT set is the demo's
seeded CT phantoms in HU. Slices are cut and normalised by the training pipeline (axial, foreground-filtered,
64 x 64, modality presets), so this is what the metric sees when it judges a model trained on such data.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medgen.data.datalist import ImageRecord
from medgen.data.datasets import PipelineConfig, SliceDataset
from medgen.demo_data import demo_folder
from medgen.evaluation.distribution import fid
from medgen.evaluation.extractors.inception import InceptionExtractor

N = 12  # slices per set: 36 Inception passes, about 12 s on one free CPU thread

pytestmark = pytest.mark.slow


def _slices(paths: list[Path], modality: str, n: int = N) -> torch.Tensor:
    """``(n, 1, 64, 64)`` axial slices in [-1, 1], evenly spaced over the kept (foreground) slices."""
    config = PipelineConfig(spatial_dims=2, image_size=(64, 64), modality=modality)
    dataset = SliceDataset([ImageRecord(str(p), p.name) for p in paths], config)
    assert len(dataset) >= n, f"only {len(dataset)} slices in {paths}"
    picks = torch.linspace(0, len(dataset) - 1, n).round().long()
    return torch.stack([dataset[int(i)]["image"].as_subclass(torch.Tensor) for i in picks]).float()


def test_fid_ranks_real_mri_against_ct(mni_t1: Path, anatomical_nii: Path) -> None:
    """Two disjoint halves of the real MRI slices are closer to each other than either is to CT; FID(X, X) = 0.

    The halves interleave evenly spaced slices of both brains. Two *different* brains, one per set, are not a
    fair "same distribution": at N = 24 FID(MNI152, anatomical.nii) measured 423 against 347 for MNI152 vs CT,
    because anatomical.nii is 33 x 41 voxels at 2 mm, upsampled and blurred, and Inception weighs sharpness heavily.
    At N = 12 the halves measured about 65 apart and MRI to CT about 360.
    """
    extractor = InceptionExtractor()
    mri = extractor(_slices([mni_t1, anatomical_nii], "mri", 2 * N))
    mri_a, mri_b = mri[0::2], mri[1::2]
    ct = extractor(_slices(sorted(demo_folder("ct").glob("*[0-9].nii.gz"))[:2], "ct"))
    same = fid(mri_a, mri_a.clone()).value
    mri_vs_mri, mri_vs_ct = fid(mri_a, mri_b).value, fid(mri_a, ct).value
    scale = float(mri_a.var(dim=0).sum())  # total feature variance: FID's natural unit
    assert abs(same) < 1e-9 * scale, same
    assert 0 < 2 * mri_vs_mri < mri_vs_ct, (mri_vs_mri, mri_vs_ct)
    assert fid(mri_b, ct).value > 2 * mri_vs_mri  # whichever MRI half is the reference
