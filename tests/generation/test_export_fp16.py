"""``medgen export --dtype float16 --card-extra FILE``: half-size weights that load as float32 everywhere (verify,
generate, fine-tune ``init_from``), and card fields a training script adds (training command, data sources)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medgen.cli import main
from medgen.finetune import load_pretrained
from medgen.models import DiffusionModel, FlowModel
from medgen.store.card import card_digest
from medgen.store.load import load_model
from tests.generation.conftest import CheckpointFactory, tiny_model

EXTRA = {
    "training": {"command": "medgen fit --config configs/x.yaml", "wall_time_s": 12.5, "machine": "2 cores"},
    "data_sources": [{"name": "MNI152 T1 template", "licence": "see nilearn", "role": "training"}],
}


@pytest.mark.parametrize(("spatial_dims", "family"), [(2, "diffusion"), (3, "flow")])
def test_float16_export_loads_as_float32_and_keeps_card_extra(
    tmp_path: Path, make_checkpoint: CheckpointFactory, spatial_dims: int, family: str
) -> None:
    ckpt = make_checkpoint(spatial_dims, family)
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps(EXTRA))
    half, full = tmp_path / "half", tmp_path / "full"
    assert main(["export", str(ckpt), str(half), "--dtype", "float16", "--card-extra", str(extra)]) == 0
    assert main(["export", str(ckpt), str(full)]) == 0
    assert main(["checkpoints", "verify", str(half)]) == 0
    stored = load_file(str(half / "model.safetensors"))
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    size = (half / "model.safetensors").stat().st_size / (full / "model.safetensors").stat().st_size
    assert 0.45 < size < 0.6

    card = json.loads((half / "model_card.json").read_text())
    assert card["weights_dtype"] == "float16" and card["sha256"] == card_digest(card)
    assert json.loads((full / "model_card.json").read_text())["weights_dtype"] == "float32"
    assert card["data_sources"] == EXTRA["data_sources"]
    assert {k: card["training"][k] for k in EXTRA["training"]} == EXTRA["training"]
    assert set(card["training"]) >= {"steps", "epochs"}  # recorded from the checkpoint

    loaded, reference = load_model(half).model, load_model(full).model
    assert load_model(half).card.weights_dtype == "float16"
    state, ref_state = loaded.state_dict(), reference.state_dict()
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float32}
    assert any(not torch.equal(state[k], v) for k, v in ref_state.items())  # really stored in half precision
    for k, v in ref_state.items():
        torch.testing.assert_close(state[k], v.half().float(), rtol=0, atol=0)
    assert isinstance(loaded, (DiffusionModel, FlowModel))
    samples = loaded.sample(2, generator=torch.Generator().manual_seed(0))
    assert samples.dtype == torch.float32 and torch.isfinite(samples).all()

    fresh = tiny_model(spatial_dims, family, seed=1)
    report = load_pretrained(fresh, half, strict=True)
    assert not report.missing and not report.mismatched
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())
    assert main(["generate", "--checkpoint", str(half), "--num-samples", "2", "--out", str(tmp_path / "gen"),
                 "--format", "npy"]) == 0  # fmt: skip
    assert len(list((tmp_path / "gen").glob("sample_*.npy"))) == 2


def test_card_extra_may_not_replace_computed_fields(tmp_path: Path, make_checkpoint: CheckpointFactory) -> None:
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"sha256": "0" * 64, "training": {}}))
    assert main(["export", str(make_checkpoint(2)), str(tmp_path / "out"), "--card-extra", str(extra)]) == 2
    extra.write_text("[1, 2]")
    assert main(["export", str(make_checkpoint(2)), str(tmp_path / "out"), "--card-extra", str(extra)]) == 2
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # refused before writing
