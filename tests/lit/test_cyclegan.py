"""CycleGAN: the smoke configs (2D and 3D) through the CLI with exact resume, one discriminator per domain, both
translation directions, and batches holding one domain only."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from medgen.cli import main
from medgen.data.datamodule import MedicalImageDataModule
from medgen.data.phantoms import phantom_family, save_phantom_set
from medgen.errors import InputError
from medgen.lit import AdversarialTask, ValidationPictures
from medgen.lit.image_pool import ImagePool
from medgen.models.cyclegan import CycleGANModel
from medgen.nets.cyclegan import ResnetTranslator
from medgen.nets.gan import PatchCritic
from medgen.store.load import load_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "smoke"


def _fit(config: Path, root: Path, *extra: str) -> Path:
    code = main(["fit", "--config", str(config), "--trainer.default_root_dir", str(root),
                 "--trainer.enable_progress_bar", "false", *extra])  # fmt: skip
    assert code == 0
    return root / "lightning_logs" / "version_0" / "checkpoints"


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_smoke_config_trains_resumes_exactly_and_translates(tmp_path: Path, spatial_dims: int) -> None:
    """4 steps in one run equal the same run resumed from its step-2 checkpoint (both generators, both
    discriminators, EMA, both optimizers, both image pools, bit-identical on the CPU); the two discriminators
    differ; the loaded model translates both ways keeping the shape."""
    text = (CONFIGS / f"cyclegan_{spatial_dims}d.yaml").read_text()
    config = tmp_path / "cyclegan.yaml"
    config.write_text(text.replace("every_n_train_steps: 5}", "every_n_train_steps: 2, save_top_k: -1}"))
    straight_dir = _fit(config, tmp_path / "straight", "--trainer.max_steps", "4")
    resumed_dir = _fit(config, tmp_path / "resumed", "--trainer.max_steps", "4",
                       "--ckpt_path", str(next(straight_dir.glob("*-step=2.ckpt"))))  # fmt: skip
    a = torch.load(straight_dir / "last.ckpt", weights_only=True)
    b = torch.load(resumed_dir / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 4
    assert a["medgen"]["adversarial_iteration"] == b["medgen"]["adversarial_iteration"] == 4
    for key in ("current_model_state", "state_dict"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}[{name}] differs after resume"
    assert a["image_pools"].keys() == {"a", "b"}
    for name, pool in a["image_pools"].items():
        assert pool.shape[0] == 3 and torch.equal(pool, b["image_pools"][name])  # full, and restored on resume
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        for state_a, state_b in zip(opt_a["state"].values(), opt_b["state"].values(), strict=True):
            assert torch.equal(state_a["exp_avg"], state_b["exp_avg"])
    state = a["current_model_state"]
    critics = {c: {k.split(".", 2)[2]: v for k, v in state.items() if k.startswith(f"discriminators.{c}.")}
               for c in ("a", "b")}  # fmt: skip
    assert critics["a"] and critics["a"].keys() == critics["b"].keys()
    assert any(not torch.equal(critics["a"][k], critics["b"][k]) for k in critics["a"])
    first = torch.load(next(straight_dir.glob("*-step=2.ckpt")), weights_only=True)["current_model_state"]
    for direction in ("a2b", "b2a"):
        trained = [k for k in state if k.startswith(f"model.net.{direction}.")]
        assert trained and any(not torch.equal(first[k], state[k]) for k in trained)

    model = load_model(straight_dir / "last.ckpt").model
    assert isinstance(model, CycleGANModel) and model.family == "cyclegan"
    assert not any(k.startswith("discriminator") for k in model.state_dict())
    images = torch.rand(2, 1, *(16,) * spatial_dims) * 2 - 1
    a2b, b2a = model.translate(images, "a2b"), model.translate(images, "b2a")
    assert a2b.shape == b2a.shape == images.shape and not torch.equal(a2b, b2a)
    assert torch.isfinite(a2b).all() and a2b.abs().max() <= 1
    with pytest.raises(InputError, match="a2b, b2a"):
        model.translate(images, "b2c")


@pytest.fixture(scope="module")
def one_domain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A datalist whose rows are all domain ``a``: every batch holds one domain."""
    root = tmp_path_factory.mktemp("one_domain")
    paths = save_phantom_set(root, phantom_family("mri", 3, (16, 16, 8), seed=5))
    (root / "list.csv").write_text("image,domain\n" + "".join(f"{p.name},a\n" for p in paths))
    return root / "list.csv"


def test_one_domain_batches_train_without_duels(one_domain: Path, tmp_path: Path) -> None:
    """Batches of domain a only: no duel (no real B), finite cycle and identity terms, the a→b→a cycle trains
    both generators, the discriminators rest; training and validation run through."""
    torch.manual_seed(0)
    model = CycleGANModel(ResnetTranslator(2, channels=(8, 16), num_res_blocks=1))
    images = torch.rand(3, 1, 16, 16) * 2 - 1
    play = model.play({"image": images, "cond": {"domain": torch.zeros(3)}}, None, torch.Generator())
    assert play.duels == [] and all(torch.isfinite(v) for v in play.terms.values())
    play = model.play({"image": images, "cond": {"domain": torch.tensor([0, 1, 1])}}, None, torch.Generator())
    assert [(d.critic, d.real.shape[0], d.fake.shape[0]) for d in play.duels] == [("a", 1, 2), ("b", 2, 1)]

    task = AdversarialTask(model, PatchCritic(2, channels=8, num_layers=2), pictures=ValidationPictures(num_samples=2))
    before = {k: v.clone() for k, v in task.state_dict().items()}
    data = MedicalImageDataModule(str(one_domain), modality="mri", spatial_dims=2, image_size=16, batch_size=2,
                                  num_workers=0, val_fraction=0.34)  # fmt: skip
    trainer = L.Trainer(accelerator="cpu", max_steps=2, limit_val_batches=1, val_check_interval=2,
                        num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(task, datamodule=data)
    after = task.state_dict()
    changed = {k.split(".")[0] + "." + k.split(".")[1] for k in after if not torch.equal(before[k], after[k])}
    assert {"model.net"} <= changed and not any(k.startswith("discriminators") for k in changed)
    assert torch.isfinite(trainer.callback_metrics["val/cycle"]) and "val/d_accuracy" not in trainer.callback_metrics


def test_bad_domain_column_is_an_input_error() -> None:
    model = CycleGANModel(ResnetTranslator(2, channels=(8,), num_res_blocks=0), domain_column="site")
    images = torch.zeros(2, 1, 8, 8)
    with pytest.raises(InputError, match="no condition column 'site'"):
        model.play({"image": images, "cond": {"domain": torch.zeros(2)}}, None, torch.Generator())
    with pytest.raises(InputError, match="coded 0"):
        model.play({"image": images, "cond": {"site": torch.tensor([0, 2])}}, None, torch.Generator())


def test_image_pool_fills_then_swaps_half_and_is_seeded() -> None:
    """While filling, fakes pass through and are stored; once full, a fake is either returned itself or swapped
    for a stored one (which it replaces); the same generator seed gives the same choices; size 0 passes through."""
    pool = ImagePool(4)
    first = torch.arange(3.0).view(3, 1, 1, 1)
    assert torch.equal(pool.query(first, torch.Generator().manual_seed(0)), first) and len(pool) == 3
    second = torch.arange(10.0, 16.0).view(6, 1, 1, 1)
    out = pool.query(second, torch.Generator().manual_seed(0))
    assert len(pool) == 4 and out[0] == 10.0  # the 4th slot was free: stored and returned
    stored_before = {0.0, 1.0, 2.0, 10.0} | set(range(11, 16))
    assert set(out.flatten().tolist()) <= stored_before
    older = [v for v in out[1:].flatten().tolist() if v < 10]
    assert older, "with seed 0 at least one of five full-pool queries returns an older image"
    assert set(pool.images.flatten().tolist()) | set(out.flatten().tolist()) == stored_before  # nothing lost
    again = ImagePool(4)
    again.query(first, torch.Generator().manual_seed(0))
    assert torch.equal(again.query(second, torch.Generator().manual_seed(0)), out)
    assert torch.equal(ImagePool(0).query(second, torch.Generator()), second)
    with pytest.raises(InputError, match="pool_size"):
        ImagePool(-1)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_structure_term_is_blind_to_contrast_inversion_and_trains(spatial_dims: int) -> None:
    """The structure term is 0 for a contrast-inverted copy, near 1 for unrelated noise, absent at weight 0, and
    its gradient reaches the generators."""
    torch.manual_seed(0)
    net = ResnetTranslator(spatial_dims, channels=(4,), num_res_blocks=0)
    model = CycleGANModel(net, structure_weight=2.0, structure_kernel=3)
    x = torch.rand(2, 1, *(12,) * spatial_dims)
    assert float(1 + model.structure(-x, x)) == pytest.approx(0.0, abs=1e-5)
    assert float(1 + model.structure(torch.rand_like(x), x)) > 0.5
    batch = {"image": x * 2 - 1, "cond": {"domain": torch.tensor([0, 1])}}
    play = model.play(batch, None, torch.Generator())
    assert 0 < float(play.terms["structure"]) <= 1
    play.terms["loss"].backward()
    assert all(p.grad is not None for p in model.net.parameters())
    assert "structure" not in CycleGANModel(net).play(batch, None, torch.Generator()).terms
    with pytest.raises(InputError, match="structure_kernel"):
        CycleGANModel(net, structure_kernel=4)
