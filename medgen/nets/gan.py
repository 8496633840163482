"""GAN networks, 2D and 3D: an up-sampling generator and patch discriminators, all over MONAI's networks.

- :class:`UpsamplingGenerator`: MONAI's ``Generator`` (a linear layer to a small start grid, then stages of a
  stride-2 transposed convolution and residual units) with a ``tanh`` output, so images are in [-1, 1] like every
  medgen model's. Value conditions (class labels, scalars; :class:`~medgen.nets.conditioning.ConditionSpec`) are
  embedded and concatenated to the latent vector.
- :class:`PatchCritic`: MONAI's ``PatchDiscriminator`` (PatchGAN), optionally with spectral normalisation of every
  convolution, and a projection term for value conditions (Miyato & Koyama 2018): the logits of each patch get
  ``⟨embed(y), mean of the last features⟩``.
- :class:`MultiScalePatchCritic`: MONAI's ``MultiScalePatchDiscriminator`` (pix2pixHD: PatchGANs of growing depth),
  with the same options; its per-scale logits are flattened and concatenated, ``(B, N)``.

(The StyleGAN2-lite generator is in :mod:`medgen.nets.stylegan`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.nets import Generator, MultiScalePatchDiscriminator, PatchDiscriminator
from torch import nn

from medgen.config import class_config
from medgen.errors import InputError
from medgen.nets.condition import Condition
from medgen.nets.conditioning import ConditionEmbedding, ConditionSpec
from medgen.nets.protocol import GeneratorNet


class UpsamplingGenerator(GeneratorNet):
    """DCGAN-style generator: ``z`` ``(B, latent_dim)`` → images ``(B, out_channels, *image_size)`` in [-1, 1].

    Args:
        spatial_dims: 2 or 3.
        image_size: Size of the generated images; each side must be a multiple of ``2^(len(channels) - 1)``.
        out_channels: Image channels.
        latent_dim: Width of the latent vector.
        channels: Feature channels from the start grid up; every stage after the first doubles the resolution.
        num_res_units: Residual units per stage.
        norm: MONAI norm of the stages (``INSTANCE``, ``BATCH``, ``GROUP`` …); per-image norms keep generation
            independent of the batch size.
        conditions: Value conditions embedded and concatenated to ``z``.
        condition_dim: Width of the condition embedding.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        image_size: Sequence[int] = (64, 64),
        out_channels: int = 1,
        latent_dim: int = 128,
        channels: Sequence[int] = (256, 128, 64, 32),
        num_res_units: int = 1,
        norm: str = "INSTANCE",
        conditions: Sequence[ConditionSpec] = (),
        condition_dim: int = 64,
    ) -> None:
        super().__init__()
        self.config = class_config(self, {k: v for k, v in locals().items() if k not in ("self", "__class__")})
        if len(channels) < 2:
            raise InputError("channels", "expected at least two stages")
        start = start_grid(spatial_dims, image_size, len(channels))
        self.spatial_dims = spatial_dims
        self.in_channels = out_channels
        self.latent_dim = latent_dim
        self.image_size = tuple(int(s) for s in image_size)
        self.conditions = condition_specs(conditions)
        self.embed = ConditionEmbedding(self.conditions, condition_dim) if self.conditions else None
        self.body = Generator(
            latent_shape=(latent_dim + (condition_dim if self.conditions else 0),),
            start_shape=(channels[0], *start),
            channels=(*channels[1:], out_channels),
            strides=(2,) * (len(channels) - 1) + (1,),
            num_res_units=num_res_units,
            norm=norm,
        )

    @property
    def condition_names(self) -> list[str]:
        """Names of the value conditions, in column order."""
        return [c.name for c in self.conditions]

    def forward(self, z: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        """Images ``(B, out_channels, *image_size)`` in [-1, 1] from ``z`` ``(B, latent_dim)``."""
        if self.embed is not None:
            values = condition_values(cond, z.shape[0], len(self.conditions), z.device)
            z = torch.cat([z, self.embed(values).to(z.dtype)], dim=1)
        return torch.tanh(self.body(z))


class PatchCritic(nn.Module):
    """PatchGAN discriminator: images ``(B, C, *spatial)`` → patch logits ``(B, 1, *patches)``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: Image channels.
        channels: Feature channels of the first layer (doubled at each following layer, as MONAI does).
        num_layers: Strided layers.
        norm: MONAI norm (``INSTANCE`` by default: batch norm breaks gradient penalties).
        spectral_norm: Spectral normalisation of every convolution (Miyato et al. 2018).
        conditions: Value conditions, used through a projection term.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        channels: int = 64,
        num_layers: int = 3,
        norm: str = "INSTANCE",
        spectral_norm: bool = False,
        conditions: Sequence[ConditionSpec] = (),
    ) -> None:
        super().__init__()
        self.config = class_config(self, {k: v for k, v in locals().items() if k not in ("self", "__class__")})
        self.spatial_dims = spatial_dims
        self.body = PatchDiscriminator(
            spatial_dims=spatial_dims, channels=channels, in_channels=in_channels, num_layers_d=num_layers, norm=norm
        )
        if spectral_norm:
            _spectral_norm(self.body)
        self.conditions = condition_specs(conditions)
        features = self._feature_channels(in_channels)
        self.project = ConditionEmbedding(self.conditions, features) if self.conditions else None

    def _feature_channels(self, in_channels: int) -> int:
        """Channels of the features before the last convolution (one dry run on a small input)."""
        return _feature_channels(self.body, in_channels, self.spatial_dims)

    def forward(self, x: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        """Patch logits ``(B, 1, *patches)``; with conditions, plus the projection of their embedding."""
        outs: Any = self.body(x)
        logits: torch.Tensor = outs[-1]
        if self.project is not None:
            values = condition_values(cond, x.shape[0], len(self.conditions), x.device)
            logits = logits + _projection(self.project, values, outs[-2], logits.ndim)
        return logits


class MultiScalePatchCritic(nn.Module):
    """Multi-scale PatchGAN discriminator (pix2pixHD): images ``(B, C, *spatial)`` → logits ``(B, N)``.

    MONAI's ``MultiScalePatchDiscriminator`` runs ``num_d`` PatchGAN discriminators on the same image, the k-th
    with ``num_layers · k`` strided layers: deeper ones judge fewer, larger patches (MONAI grows the depth instead of
    down-sampling the input as pix2pixHD does). The per-scale patch logits are
    flattened and concatenated along dim 1, ``(B, N₁ + … + N_num_d)``: the adversarial losses of
    :mod:`medgen.objectives.adversarial` (means over all entries) then apply unchanged, each patch of each scale
    weighing the same, and R1 or the gradient penalty take the gradient of their sum.

    Args:
        spatial_dims: 2 or 3.
        in_channels: Image channels.
        channels: Feature channels of the first layer of each discriminator (doubled at each following layer, as
            MONAI does: keep ``num_layers · num_d`` small).
        num_layers: Strided layers of the first discriminator.
        num_d: Number of discriminators (scales).
        min_image_size: Smallest image side the discriminators must accept (MONAI checks the deepest one's output
            keeps at least one patch).
        norm: MONAI norm (``INSTANCE`` by default: batch norm breaks gradient penalties).
        spectral_norm: Spectral normalisation of every convolution (Miyato et al. 2018).
        conditions: Value conditions, used through a projection term per scale (as :class:`PatchCritic`).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        channels: int = 32,
        num_layers: int = 2,
        num_d: int = 2,
        min_image_size: int = 64,
        norm: str = "INSTANCE",
        spectral_norm: bool = False,
        conditions: Sequence[ConditionSpec] = (),
    ) -> None:
        super().__init__()
        self.config = class_config(self, {k: v for k, v in locals().items() if k not in ("self", "__class__")})
        self.spatial_dims = spatial_dims
        try:
            self.body = MultiScalePatchDiscriminator(
                num_d=num_d, num_layers_d=num_layers, spatial_dims=spatial_dims, channels=channels,
                in_channels=in_channels, norm=norm, minimum_size_im=min_image_size,
            )  # fmt: skip
        except AssertionError as err:
            raise InputError("num_d", f"too deep for min_image_size {min_image_size}: {err}") from err
        if spectral_norm:
            _spectral_norm(self.body)
        self.conditions = condition_specs(conditions)
        self.project = nn.ModuleList(
            [ConditionEmbedding(self.conditions, _feature_channels(d, in_channels, spatial_dims)) for d in self.body]
            if self.conditions
            else []
        )

    def forward(self, x: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        """Logits ``(B, N)``: every scale's patch logits flattened and concatenated (plus their projection terms)."""
        logits, features = self.body(x)
        values = condition_values(cond, x.shape[0], len(self.conditions), x.device) if self.conditions else None
        out = []
        for k, scale in enumerate(logits):
            if values is not None:
                scale = scale + _projection(self.project[k], values, features[k][-1], scale.ndim)
            out.append(scale.flatten(1))
        return torch.cat(out, dim=1)


def start_grid(spatial_dims: int, image_size: Sequence[int], stages: int) -> tuple[int, ...]:
    """The grid a generator of ``stages`` resolution stages (each after the first doubling it) starts from.

    Raises:
        InputError: ``image_size`` does not have ``spatial_dims`` (2 or 3) sides, each a multiple of
            ``2^(stages - 1)``.
    """
    if spatial_dims not in (2, 3) or len(image_size) != spatial_dims:
        raise InputError("image_size", f"expected {spatial_dims} sides for spatial_dims {spatial_dims}")
    factor = 2 ** (stages - 1)
    if any(s % factor for s in image_size):
        raise InputError("image_size", f"{list(image_size)} must be a multiple of 2^(stages - 1) = {factor}")
    return tuple(int(s) // factor for s in image_size)


def condition_specs(conditions: Sequence[ConditionSpec | dict[str, Any]]) -> list[ConditionSpec]:
    """Condition specs from a config (dicts) or from code (specs)."""
    return [c if isinstance(c, ConditionSpec) else ConditionSpec(**c) for c in conditions]


def condition_values(cond: Condition | None, batch: int, columns: int, device: torch.device) -> torch.Tensor:
    """The condition values ``(B, K)`` on ``device``; all NaN (dropped: null embeddings) when none are given."""
    values = cond.values if cond is not None else None
    if values is None:
        return torch.full((batch, columns), float("nan"), device=device)
    return values.to(device)


def _spectral_norm(body: nn.Module) -> None:
    """Spectral normalisation of every convolution of ``body``, in place."""
    for module in list(body.modules()):
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            nn.utils.parametrizations.spectral_norm(module)


def _feature_channels(body: nn.Module, in_channels: int, spatial_dims: int) -> int:
    """Channels of a PatchGAN's features before its last convolution (one dry run on a small input)."""
    side = 2 ** (len(body) + 2)  # type: ignore[arg-type]
    with torch.no_grad():
        outs = body(torch.zeros(1, in_channels, *([side] * spatial_dims)))
    return int(outs[-2].shape[1])


def _projection(embed: nn.Module, values: torch.Tensor, features: torch.Tensor, ndim: int) -> torch.Tensor:
    """Projection term ``⟨embed(y), spatial mean of features⟩`` ``(B, 1, …)`` broadcastable to ``ndim``-d logits."""
    pooled = features.mean(dim=tuple(range(2, features.ndim)))
    projection = (embed(values).to(pooled.dtype) * pooled).sum(dim=1)
    return projection.view(-1, *([1] * (ndim - 1)))
