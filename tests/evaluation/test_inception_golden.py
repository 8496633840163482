"""The offline Inception pipeline reproduces committed features of 20 fixed images.

``data/inception_golden.npz`` holds 20 phantom images as uint8 and their pool3 features (float32), written by
``data/make_inception_golden.py``. A change of weights, 8-bit rounding, resize filter, channel handling, input
scaling or TorchScript runtime shows up here as features that moved.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medgen.evaluation.extractors.inception import InceptionExtractor

GOLDEN = Path(__file__).parent / "data" / "inception_golden.npz"
# Features are >= 0 with max 3.6 and mean 0.26 on these images. Recomputing them in batches of 1 or 5 instead of
# 20 moved them by at most 2.9e-6 (float32 kernels); CPUs with other vector units or oneDNN builds may add a few
# times that. Making every input pixel one 8-bit level brighter moves them by 0.036, and an antialiased torch
# resize instead of TF1's by 0.30. An absolute 1e-4 (3e-5 of the largest feature) sits 35x above the numerical
# noise and 360x below the smallest real change.
ATOL = 1e-4


def test_inception_features_match_golden() -> None:
    golden = np.load(GOLDEN)
    extractor = InceptionExtractor()
    assert extractor.spec.sha256 == str(golden["weights_sha256"])
    images = torch.from_numpy(golden["images"]).float()[:, None] / 127.5 - 1  # exact 8-bit levels in [-1, 1]
    assert images.shape == (20, 1, 64, 64)
    features = extractor(images).numpy()
    np.testing.assert_allclose(features, golden["features"], rtol=0, atol=ATOL)
    brighter = extractor((images[:2] + 1 / 127.5).clamp(-1, 1)).numpy()  # the tolerance does see a small change
    assert np.abs(brighter - golden["features"][:2]).max() > 100 * ATOL
