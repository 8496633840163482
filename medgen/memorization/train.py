"""Training the structural embedder the DeepSSIM way (arXiv 2509.16582), small enough for a CPU.

Objective: for a pair of training images ``(x_i, x_j)`` the cosine of the embeddings of independently
augmented versions regresses, by mean squared error, onto the SSIM of the *unaugmented* z-scored images::

    L = ( cos(f(A(x_i)), f(A'(x_j))) - SSIM(z(x_i), z(x_j)) )²

SSIM is scikit-image's default (uniform 7×7 window, sample covariance, K1 = 0.01, K2 = 0.03) with the data
range of the pair. The augmentations ``A`` preserve structure (flip, ±10° rotation, gamma 0.5–1.5, small
shift, noise; :func:`~medgen.memorization.augment.training_augment`), so an augmented copy (``i = j``,
target 1) must embed next to its original while genuinely different images keep their SSIM. Pairs are one
third identical, one third hard neighbours (nearest by raw-pixel correlation) and one third random.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from medgen.data.io import atomic_write, load_image
from medgen.errors import InputError
from medgen.evaluation.similarity_core import local_stats, window_1d
from medgen.memorization.augment import training_augment
from medgen.memorization.embedders import EmbedderSpec, StructuralEmbedder, StructuralNet, file_sha256
from medgen.memorization.preprocess import prepare_2d, volume_slices
from medgen.progress import progress


@dataclass
class TrainConfig:
    """Settings of :func:`train_structural`.

    Attributes:
        size: Input side of the network.
        channels: Channels of the four conv stages.
        dim: Embedding dimension.
        steps: Optimiser steps.
        batch_size: Pairs per step.
        lr: AdamW learning rate (cosine decay to zero).
        neighbours: Hard-neighbour pool size per image (nearest by raw-pixel correlation).
        seed: Seed of initialisation, pair sampling and augmentations.
    """

    size: int = 64
    channels: tuple[int, ...] = (8, 16, 32, 64)
    dim: int = 256
    steps: int = 800
    batch_size: int = 32
    lr: float = 2e-3
    neighbours: int = 5
    seed: int = 0


@dataclass
class TrainResult:
    """A trained network and its loss curve (mean loss per 100 steps)."""

    net: StructuralNet
    losses: list[float] = field(default_factory=list)


def ssim_targets(a: Tensor, b: Tensor) -> Tensor:
    """scikit-image-default SSIM (uniform 7, sample covariance) of image pairs with each pair's data range.

    Args:
        a: ``(N, 1, H, W)`` z-scored images.
        b: ``(N, 1, H, W)`` z-scored images.

    Returns:
        ``(N,)`` float32 SSIM values.
    """
    x, y = a.double(), b.double()
    dims = (1, 2, 3)
    data_range = torch.maximum(x.amax(dim=dims), y.amax(dim=dims)) - torch.minimum(x.amin(dim=dims), y.amin(dim=dims))
    c1 = ((0.01 * data_range) ** 2).view(-1, 1, 1, 1)
    c2 = ((0.03 * data_range) ** 2).view(-1, 1, 1, 1)
    s = local_stats(x, y, window_1d("uniform", 7, 1.0), sample_covariance=True)
    ssim_map = (2 * s.mu_x * s.mu_y + c1) * (2 * s.cov + c2) / ((s.mu_x**2 + s.mu_y**2 + c1) * (s.var_x + s.var_y + c2))
    return ssim_map.mean(dim=dims).float()


def pixel_neighbours(images: Tensor, k: int) -> Tensor:
    """``(N, k)`` indices of each image's nearest others by correlation at 32² (hard negatives/positives)."""
    small = torch.nn.functional.interpolate(images, size=(32, 32), mode="area").flatten(1)
    small = torch.nn.functional.normalize(small - small.mean(dim=1, keepdim=True), dim=1)
    sims = small @ small.T
    sims.fill_diagonal_(-2.0)
    return sims.topk(min(k, max(images.shape[0] - 1, 1)), dim=1).indices


def _same_group(groups: Tensor, anchors: Tensor, gen: torch.Generator) -> Tensor:
    """A random image of each anchor's group."""
    out = torch.empty_like(anchors)
    anchor_groups = groups[anchors]
    for g in anchor_groups.unique():
        members = torch.nonzero(groups == g).flatten()
        where = anchor_groups == g
        out[where] = members[torch.randint(0, members.numel(), (int(where.sum()),), generator=gen)]
    return out


def _partners(groups: Tensor, neighbours: Tensor, anchors: Tensor, gen: torch.Generator) -> Tensor:
    kind = torch.randint(0, 3, (anchors.numel(),), generator=gen)
    pick = torch.randint(0, neighbours.shape[1], (anchors.numel(),), generator=gen)
    near = neighbours[anchors, pick]
    return torch.where(kind == 0, anchors, torch.where(kind == 1, near, _same_group(groups, anchors, gen)))


def _anchor_weights(groups: Tensor) -> Tensor:
    """Sampling weights that give every group the same share of anchors."""
    counts = torch.bincount(groups).float()
    return 1.0 / counts[groups]


def train_structural(images: Tensor, config: TrainConfig | None = None, groups: Tensor | None = None) -> TrainResult:
    """Train a :class:`StructuralNet` on prepared 2D images.

    Anchors are drawn so that every group (a volume, a modality, a source folder) gets the same share, and the
    "random" partners come from the anchor's own group: cross-group pairs (SSIM ≈ 0) are too easy to teach much.

    Args:
        images: ``(N, 1, S, S)`` z-scored images (:func:`~medgen.memorization.preprocess.prepare_2d`), N ≥ 2.
        config: Settings (defaults: :class:`TrainConfig`).
        groups: ``(N,)`` long group id per image (default: one group).

    Returns:
        The trained network (eval mode) and its loss curve.
    """
    cfg = config or TrainConfig()
    if images.ndim != 4 or images.shape[0] < 2 or tuple(images.shape[2:]) != (cfg.size, cfg.size):
        raise InputError("--train", f"need at least 2 images of shape (1, {cfg.size}, {cfg.size}), got {images.shape}")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = StructuralNet(cfg.size, cfg.channels, cfg.dim)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    neighbours = pixel_neighbours(images, cfg.neighbours)
    groups = torch.zeros(images.shape[0], dtype=torch.long) if groups is None else groups.long()
    weights = _anchor_weights(groups)
    result, running = TrainResult(net), []
    net.train()
    for step in progress(range(cfg.steps), "train-embedder"):
        anchors = torch.multinomial(weights, cfg.batch_size, replacement=True, generator=gen)
        partners = _partners(groups, neighbours, anchors, gen)
        target = ssim_targets(images[anchors], images[partners])
        views = training_augment(torch.cat([images[anchors], images[partners]]), gen)
        emb = net(prepare_2d(views, cfg.size, center=True))
        cos = (emb[: cfg.batch_size] * emb[cfg.batch_size :]).sum(dim=1)
        loss = torch.nn.functional.mse_loss(cos, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running.append(float(loss.detach()))
        if (step + 1) % 100 == 0:
            result.losses.append(sum(running) / len(running))
            running = []
    net.eval()
    return result


def training_images(
    paths: Sequence[str | Path], size: int = 64, axes: Sequence[int] = (0, 1, 2)
) -> tuple[Tensor, Tensor]:
    """Prepared 2D training images from files: 2D images as they are, volumes as informative slices per axis.

    Returns:
        ``(N, 1, size, size)`` z-scored images and ``(N,)`` groups (0 for 2D files, then one per volume).
    """
    out: list[Tensor] = []
    groups: list[Tensor] = []
    for path in progress(list(paths), "load training images"):
        image = load_image(path).as_tensor().float()[:1]
        if image.ndim == 3:
            stack = prepare_2d(image[None], size, center=True)
        else:
            stack = torch.cat([prepare_2d(volume_slices(image, axis, 64), size, center=True) for axis in axes])
        out.append(stack)
        groups.append(torch.full((stack.shape[0],), 0 if image.ndim == 3 else len(groups) + 1))
    if not out:
        raise InputError("--train", "no training images")
    return torch.cat(out), torch.unique(torch.cat(groups), return_inverse=True)[1]


def save_embedder(result: TrainResult, path: str | Path, data: str, config: TrainConfig) -> StructuralEmbedder:
    """Write ``path`` (``.safetensors``) and the spec ``path.json``; return the embedder as it will load.

    Args:
        result: The trained network.
        path: Weights file to write (``.safetensors`` is appended when missing).
        data: What it was trained on, in words (stored in the spec).
        config: The training settings (stored in the spec).
    """
    weights = Path(path)
    weights = weights if weights.suffix == ".safetensors" else weights.with_name(weights.name + ".safetensors")
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in result.net.state_dict().items()}
    atomic_write(weights, lambda tmp: save_file(state, str(tmp)))
    digest = file_sha256(weights)
    meta = {
        "name": "structural",
        "sha256": digest,
        "config": result.net.config(),
        "training": {**asdict(config), "data": data, "final_loss": result.losses[-1:] or None},
        "objective": "MSE(cos(f(aug(x_i)), f(aug(x_j))), SSIM(z(x_i), z(x_j))), skimage-default SSIM",
    }
    atomic_write(weights.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(meta, indent=2)))
    words = f"pad to square, resize {result.net.size}x{result.net.size} (antialiased), z-score; CNN on SSIM targets"
    spec = EmbedderSpec("structural", digest, result.net.dim, words, str(weights))
    return StructuralEmbedder(result.net, spec)
