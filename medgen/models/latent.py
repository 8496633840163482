"""Latent models: a diffusion or flow model in the latent space of a frozen, trained KL autoencoder.

Rombach et al. 2022 (arXiv 2112.10752): images are encoded by the frozen encoder (posterior mean) and multiplied
by ``latent_scale`` so the latents have unit variance; the objective, samplers and conditioning are the pixel
family's, and samples are decoded. :class:`LatentSpace` is that latent space, shared by every latent family:
a latent family is the pixel family with ``LatentSpace`` first in its bases.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from typing import Any

import torch

from medgen.errors import InputError
from medgen.models.base import GenerativeModel, Reduce
from medgen.models.defaults import SamplingDefaults
from medgen.models.diffusion import DiffusionModel
from medgen.nets.invariance import batch_invariant_kernels
from medgen.nets.maisi import MaisiControlNet
from medgen.nets.protocol import GenerativeNet
from medgen.nets.vqvae import FirstStage
from medgen.nets.windowed import can_decode_windowed, decode_windowed
from medgen.objectives.diffusion import DiffusionObjective

#: Default latent side above which latent models decode in windows (32 latent voxels: 128 image voxels at factor 4).
DECODE_WINDOW = 32


class LatentSpace(GenerativeModel):
    """The latent space of a frozen autoencoder, for a generative family listed after it in a class's bases.

    Holds ``autoencoder`` and the ``latent_scale`` buffer (state-dict names ``autoencoder.*`` and ``latent_scale``).
    """

    autoencoder: FirstStage
    latent_scale: torch.Tensor

    def _init_latent(
        self, net: GenerativeNet, autoencoder: FirstStage, latent_scale: float | None, decode_window: int | None
    ) -> None:
        """Check the net against the autoencoder; register the frozen autoencoder, the scale and the decode window."""
        if net.image_channels or (net.control_channels and not isinstance(net, MaisiControlNet)):
            raise InputError(
                "net", "image and ControlNet conditioning are not available in latent space yet (but MaisiControlNet)"
            )
        if net.in_channels != autoencoder.latent_channels:
            raise InputError(
                "net.in_channels",
                f"must equal the autoencoder's latent_channels ({autoencoder.latent_channels}), got {net.in_channels}",
            )
        if decode_window is not None and decode_window < 1:
            raise InputError(
                "decode_window", f"expected a positive number of latent voxels or null, got {decode_window}"
            )
        self.decode_window = decode_window
        self.autoencoder = autoencoder.requires_grad_(False)  # no dropout or batch norm: train mode is harmless
        self.fixed_scale = latent_scale is not None
        self.register_buffer("latent_scale", torch.tensor(1.0 if latent_scale is None else float(latent_scale)))
        self._cached: tuple[str, str] | None = None  # (manifest, weights sha256) while training on cached latents

    def latent_args(self) -> dict[str, Any]:
        """The autoencoder's architecture, the scale and the decode window, as constructor arguments."""
        scale = float(self.latent_scale) if self.fixed_scale else None
        return {"autoencoder": self.autoencoder.config, "latent_scale": scale, "decode_window": self.decode_window}

    def describe(self) -> dict[str, Any]:
        """Metadata with the autoencoder's architecture."""
        return {**super().describe(), "autoencoder": self.autoencoder.config}

    def encode(self, x0: torch.Tensor) -> torch.Tensor:
        """Scaled posterior-mean latents ``(B, latent_channels, *latent_size)`` of images ``(B, C, *spatial)``.

        On the CPU the encoder runs batch-invariantly (:func:`~medgen.nets.invariance.batch_invariant_kernels`): row
        i is the latent of image i alone, which ``medgen encode`` caches, so training on cached latents
        (:meth:`use_cached_latents`) sees bit-identical tensors.
        """
        with torch.no_grad():
            return self.unscaled_latents(x0) * self.latent_scale

    def unscaled_latents(self, x0: torch.Tensor) -> torch.Tensor:
        """Posterior means ``(B, latent_channels, *latent_size)`` of images, or the cached latents themselves."""
        if self._cached is not None:
            return self._checked_cache(x0)
        with torch.no_grad(), batch_invariant_kernels(x0.device):
            return self.autoencoder.posterior(x0).mean

    def use_cached_latents(self, manifest: str, weights_sha256: str) -> None:
        """Train on latents written by ``medgen encode``: batches then hold unscaled latents, not images.

        Args:
            manifest: The encode output's ``latents.json`` (named in errors).
            weights_sha256: :func:`weights_sha256` of the autoencoder that encoded them; the model's own autoencoder
                must have the same weights (checked at the first batch, once the weights are loaded).
        """
        self._cached = (manifest, weights_sha256)

    def _checked_cache(self, z: torch.Tensor) -> torch.Tensor:
        manifest, expected = self._cached or ("", "")
        if z.shape[1] != self.autoencoder.latent_channels:
            raise InputError(manifest, f"holds {z.shape[1]}-channel latents, the model's autoencoder makes "
                             f"{self.autoencoder.latent_channels}")  # fmt: skip
        if expected:
            found = weights_sha256(self.autoencoder)
            if found != expected:
                raise InputError(
                    manifest,
                    f"was encoded by other autoencoder weights (sha256 {expected[:12]}) than the latent model's first "
                    f"stage ({found[:12]}): train with --pretrained.autoencoder_from set to the encoder's checkpoint",
                )
            self._cached = (manifest, "")  # checked
        return z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, *spatial)`` of scaled latents ``(B, latent_channels, *latent_size)``.

        A latent with a side above ``decode_window`` is decoded in overlapping windows of that side
        (:func:`~medgen.nets.windowed.decode_windowed`: the same images within float rounding, at the memory of one
        window) unless the decoder has self-attention at its output's resolution or is a VQ decoder.
        """
        z = z / self.latent_scale
        window = self.decode_window
        with torch.no_grad():
            ae = self.autoencoder
            if window is not None and max(z.shape[2:]) > window and can_decode_windowed(ae):
                return decode_windowed(ae, z, window)
            return self.autoencoder.decode(z)

    def space_shape(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(latent_channels, *latent_size)``."""
        return (self.autoencoder.latent_channels, *self.autoencoder.latent_size(image_shape))

    def prepare(self, x0: torch.Tensor, reduce: Reduce) -> str | None:
        """Unless the scale is fixed: ``latent_scale = 1 / std`` of the first batch's latents (all processes)."""
        if self.fixed_scale:
            return None
        latents = self.unscaled_latents(x0).detach().float()
        std = reduce(latents.std())
        self.latent_scale.fill_(1.0 / float(std.clamp_min(1e-6)))
        self.fixed_scale = True
        return f"latent_scale = {float(self.latent_scale):.4f} (1 / std of the first batch's latents)"

    def pretrained_loaded(self, names: Collection[str]) -> None:
        """A pretrained latent model brings its ``latent_scale``, which is then kept."""
        self.fixed_scale = self.fixed_scale or "latent_scale" in names


class LatentDiffusionModel(LatentSpace, DiffusionModel):
    """Latent diffusion model.

    Args:
        net: Denoising network on latents (``in_channels`` = the autoencoder's ``latent_channels``).
        autoencoder: The (KL or VQ) autoencoder's architecture; its weights come from ``--pretrained.autoencoder_from``
            when training starts, or with the rest of the model when it is loaded.
        latent_scale: Multiplier of the latents (None: ``1 / std`` of the first training batch's latents).
        decode_window: Latents with a side above this many voxels are decoded in overlapping windows of this side
            (memory-bounded, same images; None: always whole).
        objective: Noise schedule, prediction type and loss weighting.
        sampling: Default scheduler, steps and guidance.
        sample_size: Image size of the samples (None: from the data module).
    """

    family = "latent-diffusion"

    def __init__(
        self,
        net: GenerativeNet,
        autoencoder: FirstStage,
        latent_scale: float | None = None,
        objective: DiffusionObjective | None = None,
        sampling: SamplingDefaults | None = None,
        sample_size: Collection[int] | None = None,
        decode_window: int | None = DECODE_WINDOW,
    ) -> None:
        DiffusionModel.__init__(self, net, objective, sampling, sample_size)
        self._init_latent(net, autoencoder, latent_scale, decode_window)

    def init_args(self) -> dict[str, Any]:
        """The diffusion model's arguments with the autoencoder and the scale."""
        return {**DiffusionModel.init_args(self), **self.latent_args()}


def weights_sha256(module: torch.nn.Module) -> str:
    """sha256 of a module's state dict (names, dtypes, shapes and bytes, in name order): which weights encoded."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
