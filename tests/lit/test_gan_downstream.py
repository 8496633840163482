"""A trained GAN goes everywhere the other families go: export with a ``gan`` card, registry verification, and
fine-tuning with ``--pretrained.init_from`` (generation, the memorization gate and batch-size independence are in
tests/generation, parametrized over families)."""

from __future__ import annotations

import json
from pathlib import Path

from medgen.cli import main
from medgen.models import GANModel
from medgen.store.load import load_model
from tests.helpers import fit_smoke

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "smoke"


def test_gan_exports_verifies_and_fine_tunes_from_its_export(tmp_path: Path) -> None:
    run = fit_smoke(CONFIGS / "gan_2d.yaml", tmp_path / "run")
    export = tmp_path / "gan-export"
    assert main(["export", str(run / "last.ckpt"), str(export)]) == 0
    card = json.loads((export / "model_card.json").read_text())
    assert card["family"] == "gan" and card["spatial_dims"] == 2
    assert main(["checkpoints", "verify", str(export)]) == 0
    # the exported fit config names the adversarial task (a discriminator comes from a config such as gan_2d.yaml)
    assert "class_path: medgen.lit.AdversarialTask" in (export / "config.yaml").read_text()
    exported = GANModel.from_pretrained(export)
    # One fine-tuning step moves each weight by about the learning rate (Adam's first step), so the tuned generator
    # sits within 1e-3 of the export, while a fresh generator of the same seed (another than the export's) is O(0.1)
    # away from it.
    tuned = fit_smoke(CONFIGS / "gan_2d.yaml", tmp_path / "tuned", "--pretrained.init_from", str(export),
                      "--trainer.max_steps", "1", "--seed_everything", "1")  # fmt: skip
    fresh = fit_smoke(CONFIGS / "gan_2d.yaml", tmp_path / "fresh", "--trainer.max_steps", "1", "--seed_everything", "1")
    tuned_state = load_model(tuned / "last.ckpt").model.state_dict()
    fresh_state = load_model(fresh / "last.ckpt").model.state_dict()
    gaps = {name: (tensor - tuned_state[name]).abs().max().item() for name, tensor in exported.state_dict().items()}
    assert max(gaps.values()) < 1e-3, max(gaps.items(), key=lambda kv: kv[1])
    weight = "net.body.linear.weight"
    assert (fresh_state[weight] - exported.state_dict()[weight]).abs().max().item() > 1e-2
