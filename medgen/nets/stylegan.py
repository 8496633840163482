"""StyleGAN2-lite generator, 2D and 3D, written once for N-d (Karras et al. 2020, StyleGAN2).

MONAI has no StyleGAN (nor any style-based generator), and neither has diffusers, so this module writes one: the
parts that make StyleGAN2 what it is, without its CUDA kernels, progressive growing or path-length regulariser.

- Mapping network: ``z`` (and the embedding of value conditions, :class:`~medgen.nets.conditioning.ConditionSpec`),
  each normalised to unit mean square, through an MLP of equalised-learning-rate linear layers to ``w``.
- Synthesis: a learned constant grid, then stages that double the resolution (interpolation up-sampling followed by
  3×3 convolutions). Every convolution is *modulated* by a per-layer affine style of ``w`` and *demodulated*
  (weights rescaled to unit output variance per sample), implemented for any dimension as one grouped convolution
  with the batch folded into the groups.
- Per-layer noise inputs with a learned strength (initialised at 0). The noise is drawn from a generator seeded by a
  hash of each sample's latent row, so it is a deterministic function of ``z``: a sample does not depend on the
  batch it is drawn in, and ``medgen generate`` with a seed stays reproducible.
- Skip-style outputs: each stage adds its ``toRGB`` (a modulated 1×1 convolution without demodulation) to the
  up-sampled image of the stage before; the sum goes through ``tanh`` (or a clamp) into [-1, 1].

No normalisation uses batch statistics. Equalised learning rate (weights drawn N(0, 1) and scaled at run time by
``1/sqrt(fan_in)``) keeps the effective learning rate of every layer alike under Adam, as in StyleGAN.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from medgen.config import class_config
from medgen.errors import InputError
from medgen.nets.condition import Condition
from medgen.nets.conditioning import ConditionEmbedding, ConditionSpec
from medgen.nets.gan import condition_specs, condition_values, start_grid
from medgen.nets.protocol import GeneratorNet

_CONV = {2: F.conv2d, 3: F.conv3d}
_UPSAMPLE = {2: "bilinear", 3: "trilinear"}
#: Gain of the leaky ReLU that keeps unit activations' variance (StyleGAN's ``lrelu`` gain).
_GAIN = math.sqrt(2.0)


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Rows ``(B, D)`` scaled to unit mean square (StyleGAN's ``normalize_2nd_moment``)."""
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: ``(B, in) → (B, out)``.

    Args:
        in_features: Input width.
        out_features: Output width.
        bias_init: Initial bias (1 for the style affines, so modulation starts at identity).
        lr_multiplier: Learning-rate multiplier (0.01 in the mapping network, as in StyleGAN).
    """

    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0, lr_multiplier: float = 1.0):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)
        nn.init.normal_(self.linear.weight, std=1 / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_multiplier))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in)`` → ``(B, out)``: ``W (g x) + b``.

        The inner ``nn.Linear`` lets :func:`medgen.nets.invariance.make_batch_invariant` make it row-wise for CPU
        generation.
        """
        return self.linear(x * self.weight_gain) + self.bias * self.bias_gain


def modulated_conv(
    x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True
) -> torch.Tensor:
    """Modulated (and demodulated) convolution of each sample with its own weights, as one grouped convolution.

    Args:
        x: ``(B, I, *spatial)`` input, 2D or 3D.
        weight: ``(O, I, *kernel)`` shared weight (odd kernel; "same" padding).
        styles: ``(B, I)`` per-sample scales of the input channels.
        demodulate: Rescale each sample's weights to unit L2 norm per output channel.

    Returns:
        ``(B, O, *spatial)``.
    """
    batch, in_ch = x.shape[:2]
    ndim = x.ndim - 2
    ones = (1,) * ndim
    w = weight.unsqueeze(0) * styles.view(batch, 1, in_ch, *ones)  # (B, O, I, *k)
    if demodulate:
        w = w * torch.rsqrt(w.pow(2).sum(dim=tuple(range(2, w.ndim)), keepdim=True) + 1e-8)
    out_ch = weight.shape[0]
    grouped = x.reshape(1, batch * in_ch, *x.shape[2:])
    y = _CONV[ndim](grouped, w.reshape(batch * out_ch, in_ch, *weight.shape[2:]).to(x.dtype),
                    padding=weight.shape[-1] // 2, groups=batch)  # fmt: skip
    return y.reshape(batch, out_ch, *y.shape[2:])


class ModulatedConv(nn.Module):
    """A style-modulated convolution with bias, optional noise input and leaky ReLU: ``(B, I, *S) → (B, O, *S)``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: Input channels.
        out_channels: Output channels.
        w_dim: Width of ``w``.
        kernel_size: Odd kernel size (3 for features, 1 for ``toRGB``).
        demodulate: Weight demodulation (off for ``toRGB``).
        activate: Noise and leaky ReLU after the convolution (off for ``toRGB``).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int = 3,
        demodulate: bool = True,
        activate: bool = True,
    ) -> None:
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, *([kernel_size] * spatial_dims)))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**spatial_dims)
        self.demodulate = demodulate
        self.activate = activate
        self.noise_strength = nn.Parameter(torch.zeros(())) if activate else None

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """``x`` ``(B, I, *S)``, ``w`` ``(B, w_dim)``, ``noise`` ``(B, 1, *S)`` or None → ``(B, O, *S)``."""
        styles = self.affine(w)
        if not self.demodulate:
            styles = styles * self.weight_gain  # toRGB: the equalised-lr gain goes on the styles
        y = modulated_conv(x, self.weight * self.weight_gain, styles, self.demodulate)
        if self.noise_strength is not None and noise is not None:
            y = y + noise.to(y.dtype) * self.noise_strength
        y = y + self.bias.to(y.dtype).view(1, -1, *([1] * (y.ndim - 2)))
        return F.leaky_relu(y, 0.2) * _GAIN if self.activate else y


@torch.compiler.disable  # hashes bytes on the host: not traceable, and tiny next to the convolutions
def latent_noise(z: torch.Tensor, shapes: Sequence[tuple[int, ...]]) -> list[torch.Tensor]:
    """Per-layer noise maps ``(B, 1, *shape)``, a deterministic function of each latent row.

    Each sample's noise comes from a generator seeded by a hash of its latent's bytes, so sample i's noise does
    not depend on the rest of the batch (nor on the batch size). Reads ``z`` on the host once per call.
    """
    rows = z.detach().to("cpu", torch.float32).contiguous().numpy()
    maps: list[list[torch.Tensor]] = [[] for _ in shapes]
    for row in rows:
        seed = int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little") & (2**63 - 1)
        g = torch.Generator(device=z.device).manual_seed(seed)
        for k, shape in enumerate(shapes):
            maps[k].append(torch.randn(1, 1, *shape, generator=g, device=z.device))
    return [torch.cat(m) for m in maps]


class StyleGenerator(GeneratorNet):
    """StyleGAN2-lite generator: ``z`` ``(B, latent_dim)`` → images ``(B, out_channels, *image_size)`` in [-1, 1].

    Args:
        spatial_dims: 2 or 3.
        image_size: Size of the generated images; each side must be a multiple of ``2^(len(channels) - 1)``.
        out_channels: Image channels.
        latent_dim: Width of ``z``.
        w_dim: Width of ``w`` (the mapping network's output and hidden width).
        mapping_layers: Linear layers of the mapping network.
        channels: Feature channels from the constant grid up; every stage after the first doubles the resolution.
        noise: Per-layer noise inputs (a deterministic function of ``z``; see :func:`latent_noise`).
        output: ``tanh`` (smooth) or ``clamp`` (StyleGAN's linear output, clipped) into [-1, 1].
        conditions: Value conditions embedded and concatenated to ``z`` before the mapping network.
        condition_dim: Width of the condition embedding.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        image_size: Sequence[int] = (64, 64),
        out_channels: int = 1,
        latent_dim: int = 256,
        w_dim: int = 256,
        mapping_layers: int = 4,
        channels: Sequence[int] = (256, 256, 128, 64, 32),
        noise: bool = True,
        output: Literal["tanh", "clamp"] = "tanh",
        conditions: Sequence[ConditionSpec] = (),
        condition_dim: int = 64,
    ) -> None:
        super().__init__()
        self.config = class_config(self, {k: v for k, v in locals().items() if k not in ("self", "__class__")})
        if len(channels) < 1 or mapping_layers < 1:
            raise InputError("channels", "expected at least one stage and one mapping layer")
        if output not in ("tanh", "clamp"):
            raise InputError("output", f"expected tanh or clamp, got '{output}'")
        start = start_grid(spatial_dims, image_size, len(channels))
        self.spatial_dims = spatial_dims
        self.in_channels = out_channels
        self.latent_dim = latent_dim
        self.image_size = tuple(int(s) for s in image_size)
        self.noise = noise
        self.output = output
        self.conditions = condition_specs(conditions)
        self.embed = ConditionEmbedding(self.conditions, condition_dim) if self.conditions else None
        width = latent_dim + (condition_dim if self.conditions else 0)
        self.mapping = nn.ModuleList(
            [EqualLinear(width if i == 0 else w_dim, w_dim, lr_multiplier=0.01) for i in range(mapping_layers)]
        )
        self.const = nn.Parameter(torch.randn(channels[0], *start))
        self.convs = nn.ModuleList()
        self.to_rgb = nn.ModuleList()
        self._shapes: list[tuple[int, ...]] = []
        previous = channels[0]
        for stage, ch in enumerate(channels):
            shape = tuple(s * 2**stage for s in start)
            for _ in range(1 if stage == 0 else 2):
                self.convs.append(ModulatedConv(spatial_dims, previous, ch, w_dim))
                self._shapes.append(shape)
                previous = ch
            self.to_rgb.append(
                ModulatedConv(spatial_dims, ch, out_channels, w_dim, kernel_size=1, demodulate=False, activate=False)
            )

    @property
    def condition_names(self) -> list[str]:
        """Names of the value conditions, in column order."""
        return [c.name for c in self.conditions]

    def map(self, z: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        """The mapping network: ``z`` ``(B, latent_dim)`` (and conditions) → ``w`` ``(B, w_dim)``."""
        h = normalise(z)
        if self.embed is not None:
            values = condition_values(cond, z.shape[0], len(self.conditions), z.device)
            h = torch.cat([h, normalise(self.embed(values).to(h.dtype))], dim=1)
        for layer in self.mapping:
            h = F.leaky_relu(layer(h), 0.2) * _GAIN
        return h

    def forward(self, z: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        """Images ``(B, out_channels, *image_size)`` in [-1, 1] from ``z`` ``(B, latent_dim)``."""
        w = self.map(z, cond)
        noises: list[torch.Tensor | None] = list(latent_noise(z, self._shapes)) if self.noise else []
        noises += [None] * (len(self._shapes) - len(noises))
        x = self.const.unsqueeze(0).expand(z.shape[0], *self.const.shape)
        mode = _UPSAMPLE[self.spatial_dims]
        image: torch.Tensor | None = None
        layer = 0
        for stage, to_rgb in enumerate(self.to_rgb):
            if stage > 0:
                x = F.interpolate(x, scale_factor=2.0, mode=mode, align_corners=False)
                image = F.interpolate(image, scale_factor=2.0, mode=mode, align_corners=False)  # type: ignore[arg-type]
            for _ in range(1 if stage == 0 else 2):
                x = self.convs[layer](x, w, noises[layer])
                layer += 1
            rgb = to_rgb(x, w, None)
            image = rgb if image is None else image + rgb
        assert image is not None
        return torch.tanh(image) if self.output == "tanh" else image.clamp(-1.0, 1.0)
