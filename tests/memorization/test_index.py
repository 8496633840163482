from pathlib import Path

import pytest
import torch

from medgen.errors import InputError
from medgen.memorization.index import Match, MemorizationIndex, build_index
from tests.memorization.conftest import write_planted


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_index_round_trip_and_check(planted_sets, spatial_dims, tmp_path):
    planted = planted_sets[spatial_dims]
    folders = write_planted(planted, tmp_path / "data", n_train=12)
    built = build_index(folders["train"], tmp_path / "index", holdout=folders["holdout"])
    assert {p.name for p in (tmp_path / "index").iterdir()} >= {"index.json", "embeddings.safetensors",
                                                                 "embedder.safetensors", "embedder.json"}  # fmt: skip
    index = MemorizationIndex.load(tmp_path / "index")
    assert index.threshold == pytest.approx(built.threshold)
    assert index.calibration.source == "holdout"
    copies = [int(i) for i in torch.nonzero(planted.is_copy & (planted.copy_of < 12)).flatten()]
    images = [planted.generated[i] for i in copies] + planted.generated[:2]
    matches = index.check(images, k=3)
    assert all(isinstance(m, Match) for m in matches) and len(matches) == len(images)
    for m, i in zip(matches, copies, strict=False):
        assert m.verification is not None
        assert Path(m.nearest_train).name.startswith(f"train_{int(planted.copy_of[i]):04d}.")
        # The 3D set's "subjects" are slabs of the same two brains, so another slab matches each training slab
        # at 0.51-0.83 (its baseline): a copy is flagged when it clearly beats that (measured: 7 of 8; the copy of
        # slab 0 scores 0.78 against a baseline of 0.72, margin 0.23 < threshold 0.43).
        assert m.flagged or m.verification.score - m.verification.baseline < 0.1, m.verification
    assert sum(m.flagged for m in matches[: len(copies)]) >= len(copies) - 1
    assert len(matches[0].neighbours) == 3
    # issue 12: noise, blank and constant images are never flagged by the two-stage decision (the gate's too)
    shape = planted.train[0].shape
    gen = torch.Generator().manual_seed(5)
    junk = [torch.randn(shape, generator=gen), torch.zeros(shape), torch.full(shape, 3.0), torch.rand(shape) * 500]
    assert not any(m.flagged for m in index.check(junk, k=3))


def test_batch_tensor_input_and_wrong_dims(planted_2d, tmp_path):
    folders = write_planted(planted_2d, tmp_path / "data", n_train=8)
    index = build_index(folders["train"])  # calibrated on a by-subject split of the training files
    assert index.calibration.source == "train_split"
    assert any("own subject" in note for note in index.calibration.notes)
    batch = torch.stack([planted_2d.train[0], planted_2d.train[1]])
    assert [m.train_index for m in index.check(batch)] == [0, 1]
    with pytest.raises(InputError, match="like the index"):
        index.check(torch.zeros(1, 1, 8, 8, 8))


def test_load_refuses_a_missing_index(tmp_path):
    with pytest.raises(InputError, match="not a memorization index"):
        MemorizationIndex.load(tmp_path)
