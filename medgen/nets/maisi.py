"""MAISI's networks (NV-Generate-CT/MR) as medgen backbones: the KL autoencoder, the latent UNet, the ControlNet.

Thin adapters over ``monai.apps.generation.maisi.networks``: MONAI builds every layer, so the state-dict names
under ``autoencoder.`` and ``net.unet.`` are exactly those of MAISI's checkpoint files
(:mod:`medgen.interop.maisi` loads them). What the adapters add:

- :class:`MaisiAutoencoder` is a :class:`~medgen.nets.autoencoder.KLAutoencoder` (so latent models take it) whose
  layers are an ``AutoencoderKlMaisi``'s. MAISI's autoencoder works on intensities in ``data_range`` (CT: HU
  -1000..1000 → [0, 1]); medgen models work in [-1, 1], so images are mapped to ``data_range`` before the
  encoder and back after the decoder's last block (a parameter-free module appended to ``decoder.blocks``, so the
  whole and the windowed decode both apply it and no state-dict name changes). 3D only: MAISI's GroupNorm takes
  5-D tensors.
- :class:`MaisiDiffusionUNet` is a :class:`~medgen.nets.protocol.GenerativeNet` over ``DiffusionModelUNetMaisi``
  whose MAISI inputs are medgen condition columns (:func:`maisi_conditions`): ``modality`` (MAISI's class
  label, ``configs/modality_mapping.json``: 0 unknown, 1 CT, 8 MRI, ...), ``spacing_x/y/z`` (mm; MAISI passes
  ``100 · spacing``) and ``top_region``/``bottom_region`` (body region 0 head-neck, 1 chest, 2 abdomen,
  3 lower body; MAISI passes a one-hot vector times 100). A dropped (NaN) modality is MAISI's unconditional
  class 0, as its classifier-free guidance uses; a dropped spacing is ``default_spacing`` and a dropped region
  the zero vector (MAISI never drops them: with guidance, medgen's unconditional branch therefore sees
  ``default_spacing`` where MAISI's keeps the sample's spacing).

- :class:`MaisiControlNet` wraps ``ControlNetMaisi`` around a :class:`MaisiDiffusionUNet`: a label map at image
  size steers the latent UNet (MAISI's mask-to-CT generation).

MAISI's rectified flow (``RFlowScheduler``) trains the UNet to predict ``x0 − noise`` on
``x_t = (1 − t)·x0 + t·noise`` with ``t = timestep / 1000``; medgen's :class:`~medgen.objectives.FlowObjective`
uses the same path and time scale with velocity ``noise − x0``: ``rflow_velocity=True`` negates the output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.apps.generation.maisi.networks.autoencoderkl_maisi import AutoencoderKlMaisi
from monai.apps.generation.maisi.networks.controlnet_maisi import ControlNetMaisi
from monai.apps.generation.maisi.networks.diffusion_model_unet_maisi import DiffusionModelUNetMaisi
from monai.networks.utils import copy_model_state
from torch import nn

from medgen.config import class_config
from medgen.errors import InputError
from medgen.nets.autoencoder import KLAutoencoder
from medgen.nets.condition import Condition
from medgen.nets.conditioning import ConditionSpec
from medgen.nets.levels import check_levels
from medgen.nets.protocol import GenerativeNet

#: MAISI's body regions (the index of the one-hot ``top_region_index`` / ``bottom_region_index`` vectors).
BODY_REGIONS = ("head-neck", "chest", "abdomen", "lower body")
#: MAISI multiplies spacing (mm) and region one-hot vectors by this before its embedding layers.
MAISI_INPUT_SCALE = 100.0
SPACING_COLUMNS = ("spacing_x", "spacing_y", "spacing_z")
MODALITY_CODES = (
    "MAISI modality (configs/modality_mapping.json): 0 unknown, 1 ct, 2 ct_wo_contrast, 3 ct_contrast, 8 mri"
)


class _Affine(nn.Module):
    """``scale · x + shift`` (no parameters: the state dict of the module holding it is unchanged)."""

    def __init__(self, scale: float, shift: float) -> None:
        super().__init__()
        self.scale = scale
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape as ``x``."""
        return x * self.scale + self.shift


class MaisiAutoencoder(KLAutoencoder):
    """MAISI's KL autoencoder (``AutoencoderKlMaisi``) behind medgen's autoencoder interface, 3D.

    Args:
        spatial_dims: Must be 3 (MAISI's GroupNorm is 3-D only).
        in_channels: Image channels.
        out_channels: Reconstructed channels.
        channels: Feature channels per level (MAISI's ``num_channels``).
        attention_levels: Self-attention per level.
        num_res_blocks: Residual blocks per level.
        latent_channels: Latent channels.
        norm_num_groups: GroupNorm groups.
        norm_eps: GroupNorm epsilon.
        with_encoder_nonlocal_attn: Attention in the encoder's middle block.
        with_decoder_nonlocal_attn: Attention in the decoder's middle block.
        use_checkpointing: Gradient checkpointing.
        use_convtranspose: Transposed convolutions for upsampling.
        norm_float16: MAISI's float16 GroupNorm output (a memory option for autocast on a GPU; same weights).
        num_splits: Pieces MAISI's convolutions split the volume into (memory; same weights).
        dim_split: Axis of that split.
        data_range: Intensity range the network was trained on; medgen's [-1, 1] is mapped onto it.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: Sequence[int] = (64, 128, 256),
        attention_levels: Sequence[bool] = (False, False, False),
        num_res_blocks: Sequence[int] = (2, 2, 2),
        latent_channels: int = 4,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-6,
        with_encoder_nonlocal_attn: bool = False,
        with_decoder_nonlocal_attn: bool = False,
        use_checkpointing: bool = False,
        use_convtranspose: bool = False,
        norm_float16: bool = False,
        num_splits: int = 4,
        dim_split: int = 1,
        data_range: Sequence[float] = (0.0, 1.0),
    ) -> None:
        config = class_config(self, {k: v for k, v in locals().items() if k not in ("self", "__class__")})
        if spatial_dims != 3:
            raise InputError("model.autoencoder.spatial_dims", f"MAISI's autoencoder is 3D only, got {spatial_dims}")
        check_levels("model.autoencoder", spatial_dims, channels, attention_levels, norm_num_groups)
        if len(num_res_blocks) != len(channels):
            raise InputError("model.autoencoder.num_res_blocks", f"needs one entry per level ({len(channels)})")
        low, high = (float(v) for v in data_range)
        if not high > low:
            raise InputError("model.autoencoder.data_range", f"expected (low, high) with low < high, got {data_range}")
        # MONAI builds the network; its layers become this module's children under the same names (MAISI's own
        # constructor is AutoencoderKL's followed by encoder/decoder replacement, so KLAutoencoder's is skipped).
        maisi = AutoencoderKlMaisi(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            num_res_blocks=tuple(num_res_blocks),
            num_channels=tuple(channels),
            attention_levels=tuple(attention_levels),
            latent_channels=latent_channels,
            norm_num_groups=norm_num_groups,
            norm_eps=norm_eps,
            with_encoder_nonlocal_attn=with_encoder_nonlocal_attn,
            with_decoder_nonlocal_attn=with_decoder_nonlocal_attn,
            use_checkpointing=use_checkpointing,
            use_convtranspose=use_convtranspose,
            norm_float16=norm_float16,
            num_splits=num_splits,
            dim_split=dim_split,
            save_mem=False,
        )
        nn.Module.__init__(self)
        for name, child in maisi.named_children():
            self.add_module(name, child)
        self.latent_channels = latent_channels
        self.use_checkpoint = use_checkpointing
        self.config = config
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.factor = 2 ** (len(channels) - 1)
        self.data_range = (low, high)
        half = (high - low) / 2
        self.to_data = _Affine(half, low + half)  # [-1, 1] → data_range
        blocks = self.decoder.blocks
        assert isinstance(blocks, nn.ModuleList)
        blocks.append(_Affine(1 / half, -(low + half) / half))  # data_range → [-1, 1]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and std ``(B, latent_channels, *latent_size)`` of images ``(B, C, *spatial)`` in [-1, 1]."""
        return super().encode(self.to_data(x))


def maisi_conditions(
    num_class_embeds: int | None, include_spacing_input: bool, include_top: bool, include_bottom: bool
) -> list[ConditionSpec]:
    """The medgen condition columns of a MAISI UNet with these architecture arguments, in column order."""
    specs: list[ConditionSpec] = []
    if num_class_embeds is not None:
        specs.append(ConditionSpec("modality", "class", num_classes=num_class_embeds, description=MODALITY_CODES))
    if include_spacing_input:
        specs += [ConditionSpec(c, "scalar", description="voxel spacing (mm)") for c in SPACING_COLUMNS]
    regions = ", ".join(f"{i} {r}" for i, r in enumerate(BODY_REGIONS))
    if include_top:
        specs.append(ConditionSpec("top_region", "class", num_classes=4, description=f"top body region: {regions}"))
    if include_bottom:
        specs.append(
            ConditionSpec("bottom_region", "class", num_classes=4, description=f"bottom body region: {regions}")
        )
    return specs


class MaisiDiffusionUNet(GenerativeNet):
    """MAISI's latent UNet (``DiffusionModelUNetMaisi``) with its inputs as medgen conditions (2D or 3D).

    Args:
        spatial_dims: 2 or 3.
        in_channels: Latent channels.
        out_channels: Output channels.
        channels: Feature channels per level (MAISI's ``num_channels``).
        attention_levels: Self-attention per level.
        num_head_channels: Channels per attention head, per level (0 where there is no attention).
        num_res_blocks: Residual blocks per level.
        norm_num_groups: GroupNorm groups.
        norm_eps: GroupNorm epsilon.
        resblock_updown: Residual blocks for up/down-sampling.
        include_fc: Linear layers around attention.
        use_flash_attention: SDPA kernels; MONAI refuses them without CUDA, so they are used only where CUDA is
            available (same weights).
        num_class_embeds: Size of the modality embedding (None: no modality input).
        include_spacing_input: Spacing input (columns ``spacing_x/y/z``, mm).
        include_top_region_index_input: Top body-region input (column ``top_region``).
        include_bottom_region_index_input: Bottom body-region input (column ``bottom_region``).
        default_spacing: Spacing (mm) used where the spacing columns are dropped (NaN) or not given.
        rflow_velocity: The UNet predicts MAISI's rectified-flow velocity ``x0 − noise``; the output is negated
            to medgen's ``noise − x0``. False for MAISI's DDPM UNets.
    """

    default_spacing: torch.Tensor

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 4,
        out_channels: int = 4,
        channels: Sequence[int] = (64, 128, 256, 512),
        attention_levels: Sequence[bool] = (False, False, True, True),
        num_head_channels: int | Sequence[int] = (0, 0, 32, 32),
        num_res_blocks: int | Sequence[int] = 2,
        norm_num_groups: int = 32,
        norm_eps: float = 1e-6,
        resblock_updown: bool = True,
        include_fc: bool = True,
        use_flash_attention: bool = True,
        num_class_embeds: int | None = 128,
        include_spacing_input: bool = True,
        include_top_region_index_input: bool = False,
        include_bottom_region_index_input: bool = False,
        default_spacing: Sequence[float] = (1.5, 1.5, 2.0),
        rflow_velocity: bool = True,
    ) -> None:
        super().__init__()
        self.config = class_config(self, {k: v for k, v in locals().items() if k not in ("self", "__class__")})
        check_levels("model.net", spatial_dims, channels, attention_levels, norm_num_groups)
        if len(default_spacing) != 3:
            raise InputError("model.net.default_spacing", f"expected 3 values (mm), got {list(default_spacing)}")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.conditions = maisi_conditions(
            num_class_embeds,
            include_spacing_input,
            include_top_region_index_input,
            include_bottom_region_index_input,
        )
        self.register_buffer("default_spacing", torch.tensor([float(s) for s in default_spacing]), persistent=False)
        self.rflow_velocity = rflow_velocity
        try:
            self.unet = DiffusionModelUNetMaisi(
                spatial_dims=spatial_dims,
                in_channels=in_channels,
                out_channels=out_channels,
                num_res_blocks=num_res_blocks,
                num_channels=tuple(channels),
                attention_levels=tuple(attention_levels),
                norm_num_groups=norm_num_groups,
                norm_eps=norm_eps,
                resblock_updown=resblock_updown,
                num_head_channels=num_head_channels,
                num_class_embeds=num_class_embeds,
                include_fc=include_fc,
                use_flash_attention=use_flash_attention and torch.cuda.is_available(),
                include_top_region_index_input=include_top_region_index_input,
                include_bottom_region_index_input=include_bottom_region_index_input,
                include_spacing_input=include_spacing_input,
            )
        except ValueError as err:  # MONAI's own argument checks
            raise InputError("model.net", str(err)) from None

    @property
    def condition_names(self) -> list[str]:
        """``modality``, ``spacing_x/y/z``, ``top_region``, ``bottom_region`` where the architecture takes them."""
        return [c.name for c in self.conditions]

    def maisi_inputs(self, values: torch.Tensor | None, batch: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """The UNet's keyword inputs from ``(B, K)`` condition values (NaN or None: dropped; see the module doc)."""
        device = self.default_spacing.device
        if values is None:
            values = torch.full((batch, len(self.conditions)), float("nan"), device=device)
        columns = {spec.name: values[:, k] for k, spec in enumerate(self.conditions)}
        for spec in self.conditions:  # class ids outside the embedding would fail deep inside torch
            ids = torch.nan_to_num(columns[spec.name], nan=0.0)
            if spec.kind == "class" and bool(((ids < 0) | (ids >= spec.num_classes) | (ids != ids.round())).any()):
                raise ValueError(f"condition '{spec.name}' needs class ids 0..{spec.num_classes - 1}")
        inputs: dict[str, torch.Tensor] = {}
        if "modality" in columns:
            inputs["class_labels"] = torch.nan_to_num(columns["modality"], nan=0.0).long()
        if "spacing_x" in columns:
            spacing = torch.stack([columns[c] for c in SPACING_COLUMNS], dim=1)
            spacing = torch.where(torch.isnan(spacing), self.default_spacing.to(spacing), spacing)
            inputs["spacing_tensor"] = (spacing * MAISI_INPUT_SCALE).to(dtype)
        for name, key in (("top_region", "top_region_index_tensor"), ("bottom_region", "bottom_region_index_tensor")):
            if name in columns:
                column = columns[name]
                index = torch.nan_to_num(column, nan=0.0).long()
                one_hot = nn.functional.one_hot(index, len(BODY_REGIONS)).to(dtype) * MAISI_INPUT_SCALE
                inputs[key] = torch.where(torch.isnan(column).unsqueeze(1), torch.zeros_like(one_hot), one_hot)
        return inputs

    def forward(  # type: ignore[override]  # extra ControlNet residuals
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: Condition | None = None,
        down_residuals: Sequence[torch.Tensor] | None = None,
        mid_residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Velocity (or MAISI's DDPM output) ``(B, out_channels, *spatial)`` for latents ``x`` at timesteps ``t``.

        Args:
            x: ``(B, in_channels, *spatial)`` noisy latents.
            t: ``(B,)`` timesteps in MAISI's 0..1000 range.
            cond: Condition values ``(B, K)`` in :attr:`condition_names` order (None: all dropped).
            down_residuals: ControlNet residuals added to the skip connections.
            mid_residual: ControlNet residual added to the middle block.
        """
        values = None if cond is None else cond.values
        out = self.unet(
            x,
            t,
            down_block_additional_residuals=None if down_residuals is None else tuple(down_residuals),
            mid_block_additional_residual=mid_residual,
            **self.maisi_inputs(values, x.shape[0], x.dtype),
        )
        return -out if self.rflow_velocity else out


def binarize_labels(labels: torch.Tensor, bits: int) -> torch.Tensor:
    """MAISI's ControlNet input: the ``bits`` binary digits of an integer label map, as channels.

    Args:
        labels: ``(B, 1, *spatial)`` label ids (0..2^bits − 1; floats are rounded).
        bits: Binary digits kept.

    Returns:
        ``(B, bits, *spatial)`` floats, channel k the k-th bit (NV-Generate-CTMR ``scripts/utils.binarize_labels``).
    """
    ids = labels.round().long().clamp(0, 2**bits - 1)
    powers = (2 ** torch.arange(bits, device=labels.device)).view(1, bits, *([1] * (labels.ndim - 2)))
    return (ids.bitwise_and(powers) != 0).float()


class MaisiControlNet(GenerativeNet):
    """A :class:`MaisiDiffusionUNet` steered by MAISI's ControlNet (``ControlNetMaisi``) on a label map.

    ``cond.control`` is the label map at image resolution ``(B, 1, *image_size)`` (e.g. ``--condition mask=PATH``
    or a datalist's ``mask``); it is binarised to ``bits`` channels as MAISI does, and the ControlNet's
    conditioning embedding brings it down to the latent grid (so ``embedding_channels`` needs one entry more than
    the autoencoder has downsamplings). The ControlNet takes the modality label but not the spacing.
    State-dict names: ``controlnet.*`` (MAISI's ``controlnet_state_dict``) and ``base.unet.*`` (the UNet's); as
    in MAISI's training, the ControlNet starts as a copy of the base UNet's encoder.

    Args:
        base: The base MAISI UNet.
        bits: Binary channels of the label map (MAISI: 8, for label ids up to 255).
        embedding_channels: MAISI's ``conditioning_embedding_num_channels``.
        conditioning_scale: Multiplier of the ControlNet residuals.
        freeze_base: Train only the ControlNet.
        use_checkpointing: Gradient checkpointing of the conditioning embedding.
    """

    def __init__(
        self,
        base: MaisiDiffusionUNet,
        bits: int = 8,
        embedding_channels: Sequence[int] = (8, 32, 64),
        conditioning_scale: float = 1.0,
        freeze_base: bool = True,
        use_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.config = class_config(self, {k: v for k, v in locals().items() if k not in ("self", "__class__")})
        self.config["init_args"]["base"] = base.config
        args = base.config["init_args"]
        self.base = base
        self.controlnet = ControlNetMaisi(
            spatial_dims=base.spatial_dims,
            in_channels=base.in_channels,
            num_res_blocks=args["num_res_blocks"],
            num_channels=tuple(args["channels"]),
            attention_levels=tuple(args["attention_levels"]),
            norm_num_groups=args["norm_num_groups"],
            norm_eps=args["norm_eps"],
            resblock_updown=args["resblock_updown"],
            num_head_channels=args["num_head_channels"],
            num_class_embeds=args["num_class_embeds"],
            conditioning_embedding_in_channels=bits,
            conditioning_embedding_num_channels=tuple(embedding_channels),
            use_checkpointing=use_checkpointing,
            include_fc=args["include_fc"],
            use_flash_attention=bool(args["use_flash_attention"]) and torch.cuda.is_available(),
        )
        copy_model_state(self.controlnet, base.unet.state_dict())
        self.base.requires_grad_(not freeze_base)
        self.bits = bits
        self.conditioning_scale = conditioning_scale
        self.spatial_dims = base.spatial_dims
        self.in_channels = base.in_channels
        self.control_channels = 1
        self.control_downsampling = 2 ** (len(embedding_channels) - 1)

    @property
    def condition_names(self) -> list[str]:
        """The base UNet's condition columns."""
        return self.base.condition_names

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Condition | None = None) -> torch.Tensor:
        """``(B, C, *latent)`` prediction; ``cond.control`` is the ``(B, 1, *image)`` label map."""
        if cond is None or cond.control is None:
            raise ValueError("this network needs a label map as its control image (--condition mask=PATH)")
        expected = [side * self.control_downsampling for side in x.shape[2:]]
        if list(cond.control.shape[2:]) != expected:
            raise ValueError(
                f"the label map is {list(cond.control.shape[2:])} but the ControlNet's embedding makes it "
                f"1/{self.control_downsampling} of that, and the latent is {list(x.shape[2:])}: embedding_channels "
                "needs one entry more than the autoencoder has downsamplings"
            )
        inputs = self.base.maisi_inputs(cond.values, x.shape[0], x.dtype)
        labels = inputs.get("class_labels")
        down, mid = self.controlnet(
            x,
            t,
            controlnet_cond=binarize_labels(cond.control, self.bits).to(x.dtype),
            conditioning_scale=self.conditioning_scale,
            class_labels=labels,
        )
        return self.base(x, t, cond, down_residuals=down, mid_residual=mid)
