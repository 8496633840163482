"""Diffusion Transformer (DiT, Peebles & Xie 2023, arXiv 2212.09748) for 2D and 3D, under medgen's net contract.

Written here because MONAI has no DiT (its generative networks are UNets, autoencoders and ControlNets) and the
diffusers ``DiTTransformer2DModel`` is 2D-only and class-label-only. What this one adds to the paper's design:

- N-d patchify: one ``Conv{2,3}d`` with kernel = stride = ``patch_size`` (MONAI's ``Conv`` factory picks the
  dimension); unpatchify is a linear layer to ``patch_size^d · out_channels`` per token and an N-d reshape.
- Conditioning: the timestep embedding (MONAI's sinusoidal ``get_timestep_embedding``, the one the UNet uses,
  then an MLP) plus :class:`~medgen.nets.conditioning.ConditionEmbedding` of the value conditions (class labels,
  scalars; NaN = the learned null embedding of classifier-free guidance) drives adaLN-zero in every block; a
  conditioning image is concatenated to the input along channels, as in the UNet.
- Fixed N-d sin-cos position embeddings, computed for the token grid of each input, so one network serves any
  input size that is a multiple of ``patch_size``.
- Attention is ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient kernels on GPU);
  optional gradient checkpointing of each block (``torch.utils.checkpoint``, non-reentrant).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from monai.networks.nets.diffusion_model_unet import get_timestep_embedding
from torch import nn
from torch.utils.checkpoint import checkpoint

from medgen.config import class_config
from medgen.errors import InputError
from medgen.nets.condition import Condition
from medgen.nets.conditioning import ConditionEmbedding, ConditionSpec, network_inputs
from medgen.nets.protocol import GenerativeNet


class DiT(GenerativeNet):
    """A Diffusion Transformer over ``patch_size^d`` patches of 2D or 3D images (or latents).

    Args:
        spatial_dims: 2 or 3.
        in_channels: Channels of the generated image or latent.
        out_channels: Output channels (usually ``in_channels``).
        patch_size: Side of the cubic/square patches; every input side must be a multiple of it.
        hidden_size: Token width.
        depth: Transformer blocks.
        num_heads: Attention heads (must divide ``hidden_size``).
        mlp_ratio: Width of each block's MLP relative to ``hidden_size``.
        gradient_checkpointing: Recompute each block's activations in the backward pass (less memory, slower).
        conditions: Condition columns embedded beside the timestep (class labels, scalars).
        image_channels: Channels of a conditioning image concatenated to the input (0 = none).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        patch_size: int = 2,
        hidden_size: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        gradient_checkpointing: bool = False,
        conditions: Sequence[ConditionSpec] = (),
        image_channels: int = 0,
    ) -> None:
        super().__init__()
        self.config = class_config(self, {k: v for k, v in locals().items() if k not in ("self", "__class__")})
        if spatial_dims not in (2, 3):
            raise InputError("model.net.spatial_dims", f"expected 2 or 3, got {spatial_dims}")
        if patch_size < 1 or depth < 1:
            raise InputError("model.net", f"patch_size and depth must be >= 1, got {patch_size} and {depth}")
        if hidden_size % num_heads:
            raise InputError("model.net.num_heads", f"{num_heads} heads do not divide hidden_size {hidden_size}")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.image_channels = image_channels
        self.patch_size = patch_size
        self.hidden_size = hidden_size
        self.gradient_checkpointing = gradient_checkpointing
        self.conditions = [c if isinstance(c, ConditionSpec) else ConditionSpec(**c) for c in conditions]  # type: ignore[arg-type]
        conv = Conv[Conv.CONV, spatial_dims]
        self.patchify = conv(in_channels + image_channels, hidden_size, kernel_size=patch_size, stride=patch_size)
        self.time_embedding = nn.Sequential(
            nn.Linear(hidden_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )
        self.condition_embedding = ConditionEmbedding(self.conditions, hidden_size) if self.conditions else None
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.final = FinalLayer(hidden_size, patch_size**spatial_dims * out_channels)
        self._initialise()

    def _initialise(self) -> None:
        """DiT's initialisation: Xavier linears, patchify like a linear, adaLN and the output layer at zero."""
        own = [*self.time_embedding.modules(), *self.blocks.modules(), *self.final.modules()]  # not conditions'
        for module in own:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.xavier_uniform_(self.patchify.weight.view(self.hidden_size, -1))
        nn.init.zeros_(self.patchify.bias)
        blocks = [b for b in self.blocks if isinstance(b, DiTBlock)]
        zero = [b.modulation[-1] for b in blocks] + [self.final.modulation[-1], self.final.linear]
        for layer in zero:
            assert isinstance(layer, nn.Linear)
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @property
    def condition_names(self) -> list[str]:
        """Names of the value conditions, in column order."""
        return [c.name for c in self.conditions]

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        """Predict from ``x`` ``(B, in_channels, *spatial)`` at timesteps ``t`` ``(B,)``.

        Args:
            x: Noisy images or latents; every side a multiple of ``patch_size``.
            t: Timesteps (integer DDPM steps, or continuous times scaled to a similar range).
            cond: Condition values ``(B, K)`` (NaN = dropped) and/or a conditioning image
                ``(B, image_channels, *spatial)``.

        Returns:
            ``(B, out_channels, *spatial)``.
        """
        spatial = tuple(x.shape[2:])
        if len(spatial) != self.spatial_dims or any(s % self.patch_size for s in spatial):
            raise ValueError(
                f"expected a {self.spatial_dims}D input with sides divisible by patch_size {self.patch_size}, "
                f"got {list(spatial)}"
            )
        x, labels = network_inputs(x, cond, self.image_channels, len(self.conditions))
        tokens = self.patchify(x)  # (B, hidden, *grid)
        grid = tuple(tokens.shape[2:])
        tokens = tokens.flatten(2).transpose(1, 2)  # (B, N, hidden)
        tokens = tokens + sincos_position_embedding(grid, self.hidden_size).to(tokens)
        t = t.to(x.device).reshape(-1).expand(x.shape[0])
        c = self.time_embedding(get_timestep_embedding(t, self.hidden_size).to(tokens.dtype))
        if self.condition_embedding is not None and labels is not None:
            c = c + self.condition_embedding(labels.to(x.device)).to(c.dtype)
        for block in self.blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, c, use_reentrant=False)
            else:
                tokens = block(tokens, c)
        return self.unpatchify(self.final(tokens, c), grid)

    def unpatchify(self, tokens: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
        """``(B, N, p^d · C)`` patch predictions → ``(B, C, *(grid · p))`` image (N = prod(grid))."""
        b, d, p = tokens.shape[0], len(grid), self.patch_size
        x = tokens.reshape(b, *grid, *([p] * d), self.out_channels)
        # (B, g1..gd, p1..pd, C) → (B, C, g1, p1, ..., gd, pd)
        order = [0, 2 * d + 1] + [i for k in range(d) for i in (1 + k, 1 + d + k)]
        return x.permute(*order).reshape(b, self.out_channels, *(g * p for g in grid))


class DiTBlock(nn.Module):
    """Pre-norm transformer block with adaLN-zero: shift, scale and gate of attention and MLP from ``c``.

    Args:
        hidden_size: Token width.
        num_heads: Attention heads.
        mlp_ratio: MLP width relative to ``hidden_size``.
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        width = int(hidden_size * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, width), nn.GELU(approximate="tanh"), nn.Linear(width, hidden_size)
        )
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``(B, N, hidden)`` tokens conditioned on ``(B, hidden)`` → ``(B, N, hidden)``."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).unsqueeze(1).chunk(6, dim=2)
        x = x + gate1 * self.attention(modulate(self.norm1(x), shift1, scale1))
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Multi-head self-attention of ``(B, N, hidden)`` tokens through ``scaled_dot_product_attention``."""
        b, n, width = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, width // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, head_dim)
        return self.proj(out.transpose(1, 2).reshape(b, n, width))


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm and a (zero-initialised) linear map to each token's patch values.

    Args:
        hidden_size: Token width.
        out_features: ``patch_size^d · out_channels``.
    """

    def __init__(self, hidden_size: int, out_features: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.linear = nn.Linear(hidden_size, out_features)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``(B, N, hidden)`` → ``(B, N, out_features)``."""
        shift, scale = self.modulation(c).unsqueeze(1).chunk(2, dim=2)
        return self.linear(modulate(self.norm(x), shift, scale))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x · (1 + scale) + shift`` with ``(B, 1, hidden)`` shift and scale."""
    return x * (1 + scale) + shift


def sincos_position_embedding(grid: Sequence[int], dim: int) -> torch.Tensor:
    """Fixed N-d sine-cosine position embeddings of a token grid, in row-major (flattened) token order.

    Each of the d axes gets ``2 · (dim // (2d))`` channels (half sines, half cosines of the axis index at
    geometrically spaced frequencies, as in MAE/DiT's 2D version); leftover channels are zero.

    Args:
        grid: Tokens per axis ``(g1, ..., gd)``.
        dim: Embedding width.

    Returns:
        ``(1, prod(grid), dim)`` float32 embeddings.
    """
    d = len(grid)
    half = dim // (2 * d)
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / max(half, 1))
    coords = torch.meshgrid(*(torch.arange(g, dtype=torch.float64) for g in grid), indexing="ij")
    parts = []
    for axis in coords:
        angles = axis.reshape(-1, 1) * freqs.reshape(1, -1)
        parts += [torch.sin(angles), torch.cos(angles)]
    emb = torch.cat(parts, dim=1)
    emb = F.pad(emb, (0, dim - emb.shape[1]))
    return emb.float().unsqueeze(0)
