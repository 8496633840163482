"""Medical extractors: RadImageNet ResNet-50 (Keras layout) and MedicalNet ResNet (3D) loaders and preprocessing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medgen.errors import InputError
from medgen.evaluation.extractors import get_extractor
from medgen.evaluation.extractors.medical import MedicalNetExtractor, RadImageNetExtractor
from medgen.hashing import file_sha256


def test_radimagenet_missing_weights_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDGEN_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(InputError) as err:
        get_extractor("radimagenet_resnet50")
    msg = str(err.value)
    assert msg.startswith("RadImageNet-ResNet50_notop.pth:") and "not pinned" in msg
    assert "MONAI/checkpoints" in msg and "licence" in msg and "never downloads" in msg


def test_radimagenet_layout_preprocessing_and_loader(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = RadImageNetExtractor(pretrained=False)
    keys = source.net.state_dict().keys()
    assert {"conv1.bias", "layer1.0.downsample.0.bias", "layer2.0.conv1.bias", "layer4.2.conv3.bias"} <= keys
    assert source.net.layer2[0].conv1.stride == (2, 2) and source.net.layer2[0].conv2.stride == (1, 1)  # Keras layout
    grey = torch.rand(2, 1, 32, 32) * 2 - 1
    feats = source(grey)
    assert feats.shape == (2, 2048) and feats.dtype == torch.float64 and source.spec.sha256 is None
    torch.testing.assert_close(source(grey.repeat(1, 3, 1, 1)), feats)
    # BGR order and mean: the backbone sees (x+1)/2 flipped to BGR minus (0.406, 0.456, 0.485).
    rgb = torch.rand(1, 3, 32, 32) * 2 - 1
    bgr = ((rgb + 1) / 2).flip(1) - torch.tensor([0.406, 0.456, 0.485]).view(1, 3, 1, 1)
    torch.testing.assert_close(source(rgb), source.net(bgr).mean(dim=(2, 3)).double())
    path = tmp_path / "RadImageNet-ResNet50_notop.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.net.state_dict().items()}}, path)
    loaded = RadImageNetExtractor(tmp_path)  # a folder holding the file
    torch.testing.assert_close(loaded(grey), feats)
    assert loaded.spec.sha256 == file_sha256(path) and loaded.spec.name == "radimagenet_resnet50"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(InputError, match="not a RadImageNet ResNet-50 state dict"):
        RadImageNetExtractor(path)


def test_medicalnet_architecture_zscore_and_loader(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = MedicalNetExtractor(10, pretrained=False)
    assert net.net.layer4[0].conv1.dilation == (4, 4, 4) and net.net.layer4[0].conv1.stride == (1, 1, 1)
    assert net.net.conv1.stride == (2, 2, 2)
    vol = torch.rand(2, 1, 16, 16, 16)
    feats = net(vol)
    assert feats.shape == (2, 512) and feats.dtype == torch.float64 and net.spec.dim == 512
    torch.testing.assert_close(net(300 * vol - 1000), feats, atol=1e-4, rtol=1e-4)  # z-scored input
    state = {f"module.{k}": v for k, v in net.net.state_dict().items()}
    state["module.conv_seg.0.weight"] = torch.zeros(3)  # MedicalNet's segmentation head is dropped
    torch.save({"state_dict": state}, tmp_path / "resnet_10_23dataset.pth")
    loaded = get_extractor("medicalnet_resnet10", weights=tmp_path)
    torch.testing.assert_close(loaded.module(vol), feats)
    assert loaded.spec.sha256 == file_sha256(tmp_path / "resnet_10_23dataset.pth")
    with pytest.raises(InputError, match=r"resnet_50_23dataset\.pth: weights file not found.*Tencent/MedicalNet"):
        MedicalNetExtractor(50, weights=tmp_path)


def test_extractors_stay_in_eval_mode() -> None:
    net = MedicalNetExtractor(10, pretrained=False)
    net.train()
    assert not net.training and not net.net.bn1.training
    assert not any(p.requires_grad for p in net.parameters())


def test_unreadable_or_non_state_dict_weights_name_the_file(tmp_path: Path) -> None:
    """Weights are read by medgen.weights.read_state: no unpickling, and every failure is an InputError on the file."""
    path = tmp_path / "RadImageNet-ResNet50_notop.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(InputError, match=r"notop\.pth: not a RadImageNet ResNet-50 state dict: expected a state dict"):
        RadImageNetExtractor(path)
    path.write_bytes(b"not a torch file")
    with pytest.raises(InputError, match=r"notop\.pth: not a RadImageNet ResNet-50 state dict: cannot read weights"):
        RadImageNetExtractor(path)
