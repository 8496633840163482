import json
import shutil

import pytest
import torch
from torch import nn

from medgen.errors import InputError
from medgen.memorization.embedders import (
    DEFAULT_WEIGHTS,
    ModuleEmbedder,
    embed_images,
    file_sha256,
    get_embedder,
    load_structural,
)


def test_shipped_embedder_is_small_and_verified():
    assert DEFAULT_WEIGHTS.stat().st_size < 2_000_000
    embedder = get_embedder("structural")
    spec = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert embedder.spec.sha256 == spec["sha256"] == file_sha256(DEFAULT_WEIGHTS)


def test_tampered_weights_are_refused(tmp_path):
    weights = tmp_path / "e.safetensors"
    shutil.copyfile(DEFAULT_WEIGHTS, weights)
    meta = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    meta["sha256"] = "0" * 64
    weights.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="sha256 mismatch"):
        load_structural(weights)
    with pytest.raises(InputError, match="unknown embedder"):
        get_embedder("nope")


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_embeddings_are_unit_vectors_with_owners(planted_sets, spatial_dims):
    images = planted_sets[spatial_dims].train[:3]
    embedded = embed_images(get_embedder("structural"), images)
    assert embedded.count == 3 and embedded.spatial_dims == spatial_dims
    torch.testing.assert_close(embedded.vectors.norm(dim=1), torch.ones(embedded.vectors.shape[0]))
    assert embedded.owner.unique().tolist() == [0, 1, 2]
    if spatial_dims == 3:
        assert embedded.vectors.shape[0] > 3  # slices per volume
    assert torch.equal(embedded.subset([2]).owner.unique(), torch.tensor([0]))


def test_intensity_scale_does_not_matter(planted_2d):
    embedder = get_embedder("structural")
    image = planted_2d.train[0]
    a, b = embed_images(embedder, [image]), embed_images(embedder, [image * 40 - 1000])
    assert float(a.vectors @ b.vectors.T) > 0.999


class Tiny(nn.Module):
    input_size = 32

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.AvgPool2d(4), nn.Flatten(), nn.Linear(64, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_user_module_is_wrapped_with_a_parameter_hash(planted_2d):
    torch.manual_seed(0)
    embedder = get_embedder(Tiny())
    assert isinstance(embedder, ModuleEmbedder) and embedder.spec.name == "Tiny"
    assert len(embedder.spec.sha256 or "") == 64
    assert embed_images(embedder, planted_2d.train[:2]).vectors.shape == (2, 8)
