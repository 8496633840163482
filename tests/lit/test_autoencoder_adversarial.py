"""The autoencoder's adversarial term (AdversarialTask with a warm-up) and its MedicalNet perceptual term from a
local weights file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.networks.nets import resnet10

from medgen.errors import InputError
from medgen.models import Autoencoder
from medgen.nets.autoencoder import KLAutoencoder
from medgen.objectives.perceptual import MedicalNetFeatures, Perceptual, perceptual_distance
from medgen.store.load import load_model
from tests.helpers import assert_same_checkpoints, straight_and_resumed

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "smoke"


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_smoke_config_warms_up_then_plays_and_resumes_exactly(tmp_path: Path, spatial_dims: int) -> None:
    """The smoke config warms up 2 steps (the discriminator's optimizer untouched), then plays; a run resumed at
    step 2 ends bit-identical to the straight run, and the loaded model is the autoencoder alone."""
    text = (CONFIGS / f"ae_{spatial_dims}d.yaml").read_text()
    assert "medgen.lit.AdversarialTask" in text and "warmup_steps: 2" in text
    straight, resumed = straight_and_resumed(text, tmp_path, steps=4)
    assert_same_checkpoints(straight / "last.ckpt", resumed / "last.ckpt")
    middle = torch.load(next(straight.glob("*-step=2.ckpt")), weights_only=True)
    end = torch.load(straight / "last.ckpt", weights_only=True)
    assert middle["optimizer_states"][1]["state"] == {}, "the discriminator trained during the warm-up"
    assert end["optimizer_states"][1]["state"], "the discriminator never trained after the warm-up"
    d_weights = [k for k in end["state_dict"] if k.startswith("discriminators.image.")]
    assert d_weights and not torch.equal(middle["state_dict"][d_weights[0]], end["state_dict"][d_weights[0]])
    model = load_model(straight / "last.ckpt").model
    assert isinstance(model, Autoencoder)
    assert not any(k.startswith("discriminator") for k in model.state_dict())


def _medicalnet_file(path: Path, seed: int = 0) -> Path:
    """Random weights in MedicalNet's file layout: under ``state_dict``, ``module.`` prefixes, a segmentation head."""
    torch.manual_seed(seed)
    net = resnet10(spatial_dims=3, n_input_channels=1, conv1_t_stride=2, bias_downsample=False, feed_forward=False)
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    state["module.conv_seg.0.weight"] = torch.zeros(2)
    torch.save({"state_dict": state}, path)
    return path


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_perceptual_distance_from_a_local_medicalnet_file(tmp_path: Path, spatial_dims: int) -> None:
    features = MedicalNetFeatures(_medicalnet_file(tmp_path / "resnet_10_23dataset.pth"))
    x = torch.rand(2, 1, *([16] * spatial_dims)) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).requires_grad_(True)
    assert perceptual_distance(features, x, x).item() == pytest.approx(0.0, abs=1e-6)
    far = perceptual_distance(features, x, y)
    near = perceptual_distance(features, x, x + 0.03 * (y.detach() - x) / 0.3)
    assert far.item() > near.item() > 0
    far.backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in features.parameters())


def test_autoencoder_perceptual_term_is_trained_not_saved(tmp_path: Path) -> None:
    weights = _medicalnet_file(tmp_path / "medicalnet.pth")
    net = KLAutoencoder(2, channels=(8, 16), attention_levels=(False, False), num_res_blocks=1, norm_num_groups=8)
    model = Autoencoder(net, perceptual=Perceptual(str(weights), weight=0.5))
    terms = model.loss_terms(torch.rand(2, 1, 16, 16) * 2 - 1, None, torch.Generator().manual_seed(0))
    assert terms["perceptual"].item() > 0
    assert not any("perceptual" in k or "_features" in k for k in model.state_dict())
    assert model.config["init_args"]["perceptual"] == {"weights": str(weights), "weight": 0.5}


def test_missing_or_wrong_weights_name_the_file_and_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nowhere\.pth.*not found.*MedicalNet ResNet-10.*never downloads"):
        MedicalNetFeatures(tmp_path / "nowhere.pth")
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3)}, other)
    with pytest.raises(InputError, match=r"other\.pth.*tensors missing.*expected MedicalNet"):
        MedicalNetFeatures(other)
