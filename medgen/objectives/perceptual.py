"""A perceptual loss from MedicalNet ResNet-10 weights the user supplies as a local file (2D and 3D).

MONAI's ``PerceptualLoss`` fetches its networks through ``torch.hub`` (MedicalNet, RadImageNet) or torchvision
(LPIPS), and medgen never downloads. So this term builds MONAI's ``resnet10`` in MedicalNet's layout (Chen et al.
2019, arXiv 1904.00625; weights ``resnet_10_23dataset.pth`` from github.com/Tencent/MedicalNet, MIT licence) and
loads the user's file with ``torch.load(weights_only=True)``. The distance is MONAI's MedicalNet similarity: each
image is z-scored, features after ``layer1``–``layer3`` are normalised over channels, and the squared differences
are summed over channels and averaged over space. 2D images go through the 3D network as one-voxel-thick volumes;
multi-channel images are compared channel by channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from monai.networks.nets import resnet10
from torch import nn

from medgen.errors import InputError

#: What the weights file must be, named in every error.
EXPECTED = (
    "MedicalNet ResNet-10 weights (resnet_10_23dataset.pth from github.com/Tencent/MedicalNet, "
    "a state dict, optionally under 'state_dict' with 'module.' prefixes)"
)


@dataclass(frozen=True)
class Perceptual:
    """The perceptual term of an autoencoder's loss.

    Attributes:
        weights: Local file of MedicalNet ResNet-10 weights (see :data:`EXPECTED`); never downloaded.
        weight: Weight of the term in the loss (MONAI's tutorials use about 1e-3).
    """

    weights: str
    weight: float = 1e-3


class MedicalNetFeatures(nn.Module):
    """Frozen MedicalNet ResNet-10 trunk returning the ``layer1``–``layer3`` features of ``(B, 1, D, H, W)`` volumes."""

    def __init__(self, weights: str | Path) -> None:
        super().__init__()
        self.net = resnet10(
            spatial_dims=3,
            n_input_channels=1,
            conv1_t_size=7,
            conv1_t_stride=2,
            shortcut_type="B",
            bias_downsample=False,
            feed_forward=False,
        )
        self.net.load_state_dict(_read_weights(Path(weights), self.net))
        self.net.eval()
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features ``[(B, 64, ...), (B, 128, ...), (B, 256, ...)]`` of volumes ``(B, 1, D, H, W)``."""
        net = self.net
        h = net.maxpool(net.act(net.bn1(net.conv1(x))))
        features = []
        for layer in (net.layer1, net.layer2, net.layer3):
            h = layer(h)
            features.append(h)
        return features


def perceptual_distance(features: MedicalNetFeatures, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean perceptual distance of images ``x`` and ``y`` ``(B, C, *spatial)`` (2D or 3D; scalar, 0 when equal)."""
    if x.ndim == 4:
        x, y = x.unsqueeze(2), y.unsqueeze(2)
    x, y = _zscore(x.flatten(0, 1).unsqueeze(1)), _zscore(y.flatten(0, 1).unsqueeze(1))
    total = x.new_zeros(())
    for fx, fy in zip(features(x), features(y), strict=True):
        diff = (_unit(fx) - _unit(fy)) ** 2
        total = total + diff.sum(dim=1).mean()
    return total


def _zscore(v: torch.Tensor) -> torch.Tensor:
    dims = tuple(range(1, v.ndim))
    return (v - v.mean(dim=dims, keepdim=True)) / v.std(dim=dims, keepdim=True).clamp_min(1e-6)


def _unit(f: torch.Tensor) -> torch.Tensor:
    return f / torch.sqrt((f**2).sum(dim=1, keepdim=True) + 1e-10)


def _read_weights(path: Path, net: nn.Module) -> dict[str, torch.Tensor]:
    """The file's tensors named as ``net``'s (``module.`` stripped, heads MedicalNet adds dropped)."""
    if not path.is_file():
        raise InputError(path, f"not found: expected {EXPECTED}; medgen never downloads it")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(path, f"cannot be read as {EXPECTED} ({type(exc).__name__})") from None
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict):
        raise InputError(path, f"holds no state dict: expected {EXPECTED}")
    state = {str(k).removeprefix("module."): v for k, v in raw.items()}
    wanted = net.state_dict()
    missing = [k for k in wanted if k not in state]
    wrong = [k for k in wanted if k in state and tuple(state[k].shape) != tuple(wanted[k].shape)]
    if missing or wrong:
        example = (missing or wrong)[0]
        counts = f"{len(missing)} tensors missing and {len(wrong)} of another shape (e.g. '{example}')"
        raise InputError(path, f"{counts}: expected {EXPECTED}")
    return {k: state[k] for k in wanted}
