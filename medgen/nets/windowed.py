"""Memory-bounded decode and encode of large volumes by overlapping windows that give the whole-volume result.

MONAI's ``sliding_window_inference`` lays out the windows, calls the network on each and blends the outputs
(gaussian or constant weights); it maps latent windows to the larger decoded output (and image windows to the
smaller latent) through its zoom-scale support. Two things keep a window's output equal to the whole decode
instead of an approximation, which is why this module exists beside it:

- **Context (halo).** The predictor decodes each window with ``halo`` extra latent voxels on every side (cut at
  the volume's border, where the whole decode pads the same way) and returns only the window's own part. The
  default halo is the decoder's receptive-field radius, summed from its convolutions (:func:`receptive_radius`).
- **Global GroupNorm statistics.** GroupNorm normalises with the mean and variance over the *whole* activation;
  a window alone sees other statistics (errors of 1e-2–1e-1 in the data range). Before the blended pass, the
  statistics of each GroupNorm layer, in execution order, are accumulated over a non-overlapping tiling (one
  pass per layer, stopping at that layer), so every window is normalised with the whole volume's statistics.
  This trades time (about half a decode per GroupNorm layer) for memory: peak memory is that of one window.
- **Low resolutions whole.** The decoder's blocks below the output's resolution run once on the whole latent (by
  default): their activations are a fraction of the output's, and windows then need only the receptive field and
  the GroupNorm passes of the blocks at the output's resolution (memory and time measured in
  ``benchmarks/results/decode_memory.txt``). Their self-attention (the middle block's) is then no obstacle.

Exact windows need no overlap (the default is none); ``overlap > 0`` blends rounding differences only.
Blocks with global self-attention cannot be windowed exactly; :func:`can_window` says so and the latent models
then decode whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import product
from typing import Literal, TypeGuard

import torch
from monai.inferers import sliding_window_inference
from monai.networks.nets.autoencoderkl import Decoder
from torch import nn

from medgen.nets.autoencoder import KLAutoencoder, Posterior

Blend = Literal["gaussian", "constant"]
#: ``[batch, channel, *spatial]`` slices of a window, as ``sliding_window_inference`` passes them.
Coords = Sequence[Sequence[slice]]


def can_window(module: nn.Module) -> bool:
    """True when ``module`` (an encoder or decoder) has no self-attention, so that windows can be exact."""
    return not any("attention" in type(m).__name__.lower() for m in module.modules())


def can_decode_windowed(autoencoder: nn.Module, whole_levels: int | None = None) -> TypeGuard[KLAutoencoder]:
    """True for a KL autoencoder with MONAI's decoder whose windowed blocks have no self-attention.

    Other decoders are decoded whole. MAISI's (``MaisiDecoder``, which splits its convolutions itself to save
    memory) is not exact in windows (measured: off by 0.27 in the data range, cause not found) and its split
    convolutions fail on small inputs.
    """
    if not isinstance(autoencoder, KLAutoencoder) or type(autoencoder.decoder) is not Decoder:
        return False
    return can_window(_decoder_parts(autoencoder, whole_levels)[1])


def decode_windowed(
    autoencoder: KLAutoencoder,
    z: torch.Tensor,
    window: int | Sequence[int] = 32,
    overlap: float = 0.0,
    mode: Blend = "gaussian",
    halo: int | None = None,
    whole_levels: int | None = None,
) -> torch.Tensor:
    """Decode latents window by window; equal to ``autoencoder.decode(z)`` up to float rounding.

    The decoder's blocks at its ``whole_levels`` lowest resolutions run once on the whole latent (at half the
    output's side or less, their activations have ``2^d`` times fewer voxels or less); the blocks after them run
    in windows, so the halo covers only their receptive field and only their GroupNorms need whole-volume
    statistics passes. Windows are exact, so they need not overlap: ``overlap > 0`` only blends rounding.

    Args:
        autoencoder: A KL autoencoder whose decoder has no self-attention above the ``whole_levels``.
        z: ``(B, latent_channels, *latent_size)`` unscaled latents.
        window: Window side(s) in latent voxels (cut to the latent size).
        overlap: Fraction of a window shared with its neighbour (MONAI's ``overlap``).
        mode: Blending weights of overlapping windows (MONAI's ``mode``).
        halo: Extra latent voxels of context around each window (None: the windowed blocks' receptive-field radius).
        whole_levels: Resolution levels run whole, from the latent's (None: all but the output's; 0: none).

    Returns:
        ``(B, out_channels, *(latent_size · factor))`` images.
    """
    if type(autoencoder.decoder) is not Decoder:
        name = type(autoencoder.decoder).__name__
        raise ValueError(f"windows are exact for MONAI's AutoencoderKL decoder, not {name}")
    prefix, suffix = _decoder_parts(autoencoder, whole_levels)
    if not can_window(suffix):
        raise ValueError("a decoder with self-attention cannot be decoded in exact windows")
    with torch.no_grad():
        h = prefix(z)
    scale = h.shape[2] // z.shape[2]
    sides = [window] * (z.ndim - 2) if isinstance(window, int) else list(window)
    radius = halo * scale if halo is not None else receptive_radius(suffix, suffix, h.shape[1], z.ndim - 2, 4)
    return _windowed(suffix, suffix, h, [int(w) * scale for w in sides], 1, math.ceil(radius), overlap, mode)


def _decoder_parts(autoencoder: KLAutoencoder, whole_levels: int | None) -> tuple[nn.Sequential, nn.Sequential]:
    """The decoder's blocks (after ``post_quant_conv``) run whole, and those run in windows."""
    decoder_blocks: nn.ModuleList = autoencoder.decoder.blocks  # type: ignore[assignment]
    blocks = [autoencoder.post_quant_conv, *decoder_blocks]
    levels = []  # resolution level of each block's output (0: the latent's, k: after k doublings), from a probe
    param = next(autoencoder.decoder.parameters())
    probe = torch.zeros(1, autoencoder.latent_channels, *([4] * autoencoder.spatial_dims), device=param.device)
    with torch.no_grad():
        for block in blocks:
            probe = block(probe.to(param.dtype))
            levels.append(round(math.log2(probe.shape[2] / 4)))
    keep = levels[-1] if whole_levels is None else whole_levels
    split = next((i for i, level in enumerate(levels) if level >= keep), len(blocks))
    return nn.Sequential(*blocks[:split]), nn.Sequential(*blocks[split:])


def encode_windowed(
    autoencoder: KLAutoencoder,
    x: torch.Tensor,
    window: int | Sequence[int] = 128,
    overlap: float = 0.25,
    mode: Blend = "gaussian",
    halo: int | None = None,
) -> Posterior:
    """Encode images window by window (tiled encode); equal to ``autoencoder.posterior(x)`` up to rounding.

    Args:
        autoencoder: A KL autoencoder whose encoder has no self-attention.
        x: ``(B, in_channels, *spatial)`` images, every side a multiple of the downsampling factor.
        window: Window side(s) in image voxels, multiples of the factor (cut to the image size).
        overlap: Fraction of a window shared with its neighbour; ``overlap · window`` should be a multiple of the
            factor so that windows start on the latent grid.
        mode: Blending weights of overlapping windows.
        halo: Extra image voxels of context around each window (None: the encoder's receptive-field radius).

    Returns:
        The posterior ``(B, latent_channels, *latent_size)``.
    """
    if not can_window(autoencoder.encoder):
        raise ValueError("an encoder with self-attention cannot be encoded in exact windows")
    autoencoder.latent_size(x.shape[2:])  # checks the sides
    factor = autoencoder.factor
    for side, size in zip([window] * (x.ndim - 2) if isinstance(window, int) else window, x.shape[2:], strict=True):
        roi = min(int(side), size)
        if roi % factor or (roi < size and int(roi * (1 - overlap)) % factor):
            raise ValueError(f"windows of {roi} voxels with overlap {overlap} do not start on the latent grid")

    def both(images: torch.Tensor) -> torch.Tensor:
        mean, std = autoencoder.encode(images)
        return torch.cat([mean, std], dim=1)

    radius = receptive_radius(both, autoencoder.encoder, x.shape[1], x.ndim - 2, 2 * factor) if halo is None else halo
    halo_aligned = factor * math.ceil(radius / factor)
    out = _windowed(both, autoencoder.encoder, x, window, factor, halo_aligned, overlap, mode)
    mean, std = out.chunk(2, dim=1)
    return Posterior(mean, std)


def receptive_radius(
    fn: Callable[[torch.Tensor], torch.Tensor], root: nn.Module, channels: int, spatial_dims: int, size: int
) -> float:
    """Upper bound of the receptive-field radius of ``fn`` in input voxels, from the convolutions under ``root``.

    Each convolution of kernel ``k`` and dilation ``d`` that sees its input at ``r`` times the input resolution
    widens the field by ``(k // 2) · d / r`` input voxels each side, and each resampling (a strided convolution,
    or nearest-neighbour upsampling before a convolution) by up to ``1 / r``. For a decoder of channels (8, 16, 16)
    this gives 6.25 latent voxels; measured, a halo of 5 leaves errors of ~2e-2 and 6 gives the whole decode.
    Found by running ``fn`` once on a zero input of side ``size``.
    """
    radius = 0.0
    handles = []

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal radius
        assert isinstance(module, nn.Conv2d | nn.Conv3d)
        ratio = args[0].shape[2] / size
        radius += (module.kernel_size[0] // 2) * module.dilation[0] / ratio
        if module.stride[0] > 1:
            radius += 1.0 / ratio

    def upsample_hook(_module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal radius
        radius += 1.0 / (out.shape[2] / size)

    for m in root.modules():
        if isinstance(m, nn.Conv2d | nn.Conv3d):
            handles.append(m.register_forward_hook(hook))
        elif isinstance(m, nn.Upsample):
            handles.append(m.register_forward_hook(upsample_hook))
    param = next(root.parameters())
    probe = torch.zeros(1, channels, *([size] * spatial_dims), device=param.device, dtype=param.dtype)
    try:
        with torch.no_grad():
            fn(probe)
    finally:
        for h in handles:
            h.remove()
    return radius


def _windowed(
    fn: Callable[[torch.Tensor], torch.Tensor],
    norm_root: nn.Module,
    x: torch.Tensor,
    window: int | Sequence[int],
    align: int,
    halo: int,
    overlap: float,
    mode: Blend,
) -> torch.Tensor:
    """``fn(x)`` through halo-padded windows with ``norm_root``'s GroupNorms on whole-input statistics."""
    spatial = tuple(x.shape[2:])
    sides = [window] * len(spatial) if isinstance(window, int) else list(window)
    roi = tuple(min(int(w), s) for w, s in zip(sides, spatial, strict=True))
    with torch.no_grad():
        parts = [_windowed_item(fn, norm_root, x[b : b + 1], roi, align, halo, overlap, mode) for b in range(len(x))]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)


def _windowed_item(
    fn: Callable[[torch.Tensor], torch.Tensor],
    norm_root: nn.Module,
    item: torch.Tensor,
    roi: tuple[int, ...],
    align: int,
    halo: int,
    overlap: float,
    mode: Blend,
) -> torch.Tensor:
    """:func:`_windowed` of one ``(1, C, *spatial)`` input: statistics passes, then MONAI's blended windows."""
    spatial = tuple(item.shape[2:])

    def run(tile: Sequence[slice]) -> tuple[torch.Tensor, tuple[slice, ...]]:
        outer = _expand(tile, halo, spatial, align)
        return fn(item[(slice(None), slice(None)) + outer]), outer

    with _global_group_norms(norm_root) as norms:
        tiles = [
            tuple(slice(lo, min(lo + r, s)) for lo, r, s in zip(start, roi, spatial, strict=True))
            for start in product(*(range(0, s, r) for s, r in zip(spatial, roi, strict=True)))
        ]
        while norms.collect_next():
            for tile in tiles:
                outer = _expand(tile, halo, spatial, align)
                norms.core = [
                    ((t.start - o.start) / (o.stop - o.start), (t.stop - o.start) / (o.stop - o.start))
                    for t, o in zip(tile, outer, strict=True)
                ]
                try:
                    run(tile)
                except _Collected:
                    pass
            norms.finish()

        def predictor(_window: torch.Tensor, coords: Coords) -> torch.Tensor:
            tile = tuple(coords[0][2:])
            out, outer = run(tile)
            scale = [o / (w.stop - w.start) for o, w in zip(out.shape[2:], outer, strict=True)]
            crop = tuple(
                slice(round((t.start - w.start) * f), round((t.stop - w.start) * f))
                for t, w, f in zip(tile, outer, scale, strict=True)
            )
            return out[(slice(None), slice(None)) + crop]

        blended = sliding_window_inference(
            item, roi, 1, predictor, overlap=overlap, mode=mode, with_coord=True, progress=False
        )
    assert isinstance(blended, torch.Tensor)
    return blended.as_tensor() if hasattr(blended, "as_tensor") else blended


def _expand(tile: Sequence[slice], halo: int, spatial: Sequence[int], align: int) -> tuple[slice, ...]:
    """``tile`` widened by ``halo`` on each side, cut at the border and snapped outwards to multiples of ``align``."""
    return tuple(
        slice(max(0, (t.start - halo) // align * align), min(s, -(-(t.stop + halo) // align) * align))
        for t, s in zip(tile, spatial, strict=True)
    )


class _Collected(Exception):
    """Raised by the GroupNorm whose statistics a pass collects, once it has them (ends the pass early)."""


class _GlobalNorms:
    """The GroupNorm layers under a module, normalising with statistics accumulated over the whole input.

    ``collect_next`` starts a pass for the first layer (in execution order) without statistics; during that
    pass the layer accumulates sums over each window's ``core`` (fractions of the window per axis) and stops
    the forward; ``finish`` turns the sums into mean and variance.
    """

    def __init__(self, norms: list[nn.GroupNorm]) -> None:
        self.norms = norms
        self.stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.collecting: int | None = None
        self.sums: list[torch.Tensor] = []
        self.core: list[tuple[float, float]] = []
        self.passes = 0

    def collect_next(self) -> bool:
        """Arm the next collection pass; False when every layer has its statistics."""
        self.collecting = None
        self.sums = []
        self.passes += 1
        return len(self.stats) < len(self.norms)

    def finish(self) -> None:
        """Mean and (biased) variance of the collected layer."""
        if self.collecting is None:  # a GroupNorm that never runs: leave it to its own statistics
            self.stats.update({id(n): (torch.empty(0), torch.empty(0)) for n in self.norms if id(n) not in self.stats})
            return
        total, total_sq, count = self.sums
        mean = total / count
        self.stats[self.collecting] = (mean, (total_sq / count - mean.square()).clamp_min(0))

    def forward(self, norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        """The layer's output with whole-input statistics, or collection of them."""
        key = id(norm)
        g = norm.num_groups
        grouped = x.reshape(x.shape[0], g, -1, *x.shape[2:])
        if key not in self.stats:
            self.collecting = key
            crop = tuple(
                slice(round(lo * n), round(hi * n)) for (lo, hi), n in zip(self.core, x.shape[2:], strict=True)
            )
            core = grouped[(slice(None), slice(None), slice(None)) + crop].flatten(2)
            part = [core.sum(2).double(), core.square().sum(2).double(), torch.tensor(float(core.shape[2])).double()]
            self.sums = part if not self.sums else [a + b for a, b in zip(self.sums, part, strict=True)]
            raise _Collected
        mean, var = self.stats[key]
        if mean.numel() == 0:
            return nn.functional.group_norm(x, g, norm.weight, norm.bias, norm.eps)
        shape = (*mean.shape, *([1] * (grouped.ndim - 2)))
        out = (grouped - mean.to(x.dtype).reshape(shape)).mul_(torch.rsqrt(var + norm.eps).to(x.dtype).reshape(shape))
        out = out.reshape(x.shape)
        if norm.affine:
            affine = (1, -1, *([1] * (x.ndim - 2)))
            out = out.mul_(norm.weight.reshape(affine)).add_(norm.bias.reshape(affine))
        return out


@contextmanager
def _global_group_norms(root: nn.Module) -> Iterator[_GlobalNorms]:
    """Route every ``nn.GroupNorm`` under ``root`` through a :class:`_GlobalNorms` for the duration."""
    norms = [m for m in root.modules() if isinstance(m, nn.GroupNorm)]
    state = _GlobalNorms(norms)
    for norm in norms:
        norm.forward = (lambda n: lambda x: state.forward(n, x))(norm)  # type: ignore[method-assign]
    try:
        yield state
    finally:
        for norm in norms:
            del norm.forward
