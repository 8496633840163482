"""Medical feature extractors: RadImageNet ResNet-50 (2D) and MedicalNet ResNet-10/50 (3D), from local weights.

Both follow :mod:`medgen.evaluation.extractors.base`' contract (an ``nn.Module`` mapping images to ``(N, d)``
float64 features, ``.spec`` for the report) and are built by :func:`~medgen.evaluation.extractors.get_extractor`
under the names ``radimagenet_resnet50``, ``medicalnet_resnet10`` and ``medicalnet_resnet50``. No package ships
their weights: a missing file raises :class:`~medgen.errors.InputError` naming it, its source and licence. State
dicts are read by :func:`medgen.weights.read_state`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from monai.networks.nets import resnet10, resnet50
from torch import Tensor, nn

from medgen.errors import InputError
from medgen.evaluation.extractors.base import (
    FrozenExtractor,
    WeightsFile,
    check_images,
    locate_weights,
    verify_weights,
)
from medgen.weights import read_state

_RIN = "huggingface.co/MONAI/checkpoints (PyTorch conversion of the BMEII-AI/RadImageNet Keras ResNet-50)"
_RIN_LICENCE = "RadImageNet terms (CC BY 4.0 per its RSNA AI Atlas card); check before redistribution"
RADIMAGENET_WEIGHTS = WeightsFile("RadImageNet-ResNet50_notop.pth", None, _RIN, _RIN_LICENCE)
_MNET = "Tencent/MedicalNet release (also huggingface.co/TencentMedicalNet/MedicalNet-Resnet{})"
MEDICALNET_WEIGHTS = {d: WeightsFile(f"resnet_{d}_23dataset.pth", None, _MNET.format(d), "MIT") for d in (10, 50)}


class _KerasBottleneck(nn.Module):
    """Keras-layout ResNet-50 bottleneck: stride on the first 1×1 conv, biased convs, BatchNorm eps 1.001e-5."""

    def __init__(self, in_ch: int, planes: int, stride: int, project: bool) -> None:
        super().__init__()
        out_ch = 4 * planes
        self.conv1, self.bn1 = nn.Conv2d(in_ch, planes, 1, stride), nn.BatchNorm2d(planes, eps=1.001e-5)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, padding=1), nn.BatchNorm2d(planes, eps=1.001e-5)
        self.conv3, self.bn3 = nn.Conv2d(planes, out_ch, 1), nn.BatchNorm2d(out_ch, eps=1.001e-5)
        self.downsample = (
            nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride), nn.BatchNorm2d(out_ch, eps=1.001e-5))
            if project
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` → ``(N, 4·planes, H/stride, W/stride)``."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class RadImageNetResNet50(nn.Module):
    """Backbone with the state-dict layout of ``RadImageNet-ResNet50_notop.pth`` (Keras-converted, no top).

    Keys: ``conv1``, ``bn1``, ``layer{1..4}.{i}.{conv,bn}{1,2,3}`` and ``layer{k}.0.downsample.{0,1}``, every conv
    with a bias. MONAI's ``resnet50`` cannot load these weights (bias-free convs, stride on the 3×3 conv), hence
    this small re-implementation from the Keras architecture. Returns the ``(N, 2048, H/32, W/32)`` map.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, padding=3), nn.BatchNorm2d(64, eps=1.001e-5)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        stages, in_ch = [], 64
        for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            rest = [_KerasBottleneck(4 * planes, planes, 1, False) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(_KerasBottleneck(in_ch, planes, stride, True), *rest))
            in_ch = 4 * planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

    def forward(self, x: Tensor) -> Tensor:
        """``(N, 3, H, W)`` → ``(N, 2048, H/32, W/32)``."""
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _load_state(net: nn.Module, path: Path, what: str) -> None:
    """Load a (possibly DataParallel-prefixed, possibly ``{"state_dict": ...}``-wrapped) state dict strictly.

    Args:
        net: Network whose parameters and buffers the file must match exactly (heads aside).
        path: The weights file.
        what: The network in words, for error messages (``"RadImageNet ResNet-50"``).

    Raises:
        InputError: The file is unreadable, not a state dict, or its keys or shapes do not match ``net``.
    """
    try:
        state = read_state(path, strip=("module.",))
    except InputError as err:  # unreadable, or not a name -> tensor mapping
        raise InputError(path, f"not a {what} state dict: {err.problem}") from None
    state = {k: v for k, v in state.items() if not k.startswith(("conv_seg.", "fc."))}  # heads are not features
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise InputError(path, f"not a {what} state dict: {str(err).splitlines()[-1].strip()}") from None
    if missing or unexpected:
        raise InputError(path, f"not a {what} state dict: missing keys {missing[:3]}, unexpected {unexpected[:3]}")


def _weights_spec(info: WeightsFile, weights: str | Path | None, pretrained: bool) -> tuple[Path | None, str | None]:
    if not pretrained:
        return None, None
    path = locate_weights(info, weights)
    return path, verify_weights(path, info)


class RadImageNetExtractor(FrozenExtractor):
    """RadImageNet ResNet-50 (2D), preprocessing as MONAI's RadImageNet perceptual loss and MAISI's 2.5D FID.

    [-1, 1] → [0, 1] (a fixed min–max; per-stack min–max is the slicer's job) → grey to 3 channels → RGB to BGR →
    subtract (0.406, 0.456, 0.485) → backbone → spatial mean → ``(N, 2048)``. No resize.

    Args:
        weights: ``RadImageNet-ResNet50_notop.pth`` (or its folder); default ``$MEDGEN_WEIGHTS_DIR``.
        pretrained: False builds a randomly initialised backbone (tests only; ``spec.sha256`` is None).
    """

    num_features = 2048
    bgr_mean: Tensor

    def __init__(self, weights: str | Path | None = None, pretrained: bool = True) -> None:
        super().__init__()
        self.net = RadImageNetResNet50()
        path, digest = _weights_spec(RADIMAGENET_WEIGHTS, weights, pretrained)
        if path is not None:
            _load_state(self.net, path, "RadImageNet ResNet-50")
        self.register_buffer("bgr_mean", torch.tensor([0.406, 0.456, 0.485]).view(1, 3, 1, 1), persistent=False)
        name = "radimagenet_resnet50" + ("" if pretrained else " (random init)")
        mapping = "[-1,1] -> [0,1] -> grey to RGB -> BGR -> minus (0.406, 0.456, 0.485) -> layer4 spatial mean"
        self.spec = RADIMAGENET_WEIGHTS.spec(name, 2048, "none", mapping, digest)
        self._freeze()

    def forward(self, images: Tensor) -> Tensor:
        """``(N, 1 | 3, H, W)`` images in [-1, 1] → ``(N, 2048)`` float64 features."""
        check_images(images, 2, (1, 3))
        x = ((images.float() + 1) / 2).clamp(0, 1).expand(-1, 3, -1, -1)
        x = x.flip(1) - self.bgr_mean
        with torch.no_grad():
            return self.net(x).mean(dim=(2, 3)).double()


def _dilate_like_medicalnet(net: nn.Module) -> None:
    """MedicalNet keeps stride 1 in layer3/layer4 and dilates their 3×3×3 convs by 2/4; MONAI strides by 2."""
    for name, dilation in (("layer3", 2), ("layer4", 4)):
        for conv in getattr(net, name).modules():
            if isinstance(conv, nn.Conv3d):
                conv.stride = (1, 1, 1)
                if conv.kernel_size == (3, 3, 3):
                    conv.dilation, conv.padding = (dilation,) * 3, (dilation,) * 3


class MedicalNetExtractor(FrozenExtractor):
    """MedicalNet ResNet-10/50 (3D, Chen et al. 2019) on MONAI's ``resnet10``/``resnet50``.

    Built as MedicalNet: 1 input channel, 7³ stride-2 stem, shortcut B without bias, layer3/layer4 dilated
    (stride 1); global average pool → ``(N, 512)`` (ResNet-10) or ``(N, 2048)`` (ResNet-50). Input: each volume is
    z-scored, ``(v − mean) / (std + 1e-5)`` over the whole volume (MAISI's MedicalNet normalisation).

    Args:
        depth: 10 or 50.
        weights: ``resnet_{depth}_23dataset.pth`` (or its folder); default ``$MEDGEN_WEIGHTS_DIR``.
        pretrained: False builds a randomly initialised network (tests only; ``spec.sha256`` is None).
    """

    def __init__(self, depth: Literal[10, 50] = 10, weights: str | Path | None = None, pretrained: bool = True) -> None:
        super().__init__()
        if depth not in MEDICALNET_WEIGHTS:
            raise InputError("depth", f"MedicalNet depth must be 10 or 50, got {depth}")
        build = resnet10 if depth == 10 else resnet50
        self.net = build(
            spatial_dims=3, n_input_channels=1, feed_forward=False, conv1_t_stride=2, bias_downsample=False
        )
        _dilate_like_medicalnet(self.net)
        info = MEDICALNET_WEIGHTS[depth]
        path, digest = _weights_spec(info, weights, pretrained)
        if path is not None:
            _load_state(self.net, path, f"MedicalNet ResNet-{depth}")
        self.num_features = 512 if depth == 10 else 2048
        name = f"medicalnet_resnet{depth}" + ("" if pretrained else " (random init)")
        zscore = "per-volume z-score (v-mean)/(std+1e-5) -> 3D ResNet -> global average pool"
        self.spec = info.spec(name, self.num_features, "none", zscore, digest)
        self._freeze()

    def forward(self, volumes: Tensor) -> Tensor:
        """``(N, 1, X, Y, Z)`` volumes (any intensity scale) → ``(N, 512 | 2048)`` float64 features."""
        check_images(volumes, 3, (1,))
        x = volumes.float()
        dims = (1, 2, 3, 4)
        x = (x - x.mean(dim=dims, keepdim=True)) / (x.std(dim=dims, keepdim=True) + 1e-5)
        with torch.no_grad():
            return self.net(x).double()
