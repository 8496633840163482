"""Training callbacks: distribution metrics of generated samples against a fixed validation subset.

Use from YAML (or ``--trainer.callbacks+=medgen.lit.callbacks.DistributionMetrics``)::

    trainer:
      callbacks:
        - class_path: medgen.lit.callbacks.DistributionMetrics
          init_args: {num_samples: 64, every_n_epochs: 5}
"""

from __future__ import annotations

from collections.abc import Sized
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import move_data_to_device, rank_zero_warn
from torch import Tensor, nn
from torch.utils.data import DataLoader

from medgen.errors import InputError
from medgen.evaluation.distribution import fid
from medgen.evaluation.extractors import get_extractor
from medgen.evaluation.kid import kid
from medgen.evaluation.slicing import PLANES, Normalize, plane_features
from medgen.evaluation.statistics import SMALL_N
from medgen.lit.common import ModelTask
from medgen.models.base import GenerativeModel
from medgen.nets.condition import Condition


@dataclass(frozen=True)
class DistributionScores:
    """What one evaluation measured.

    Attributes:
        kid: KID mean over subsets (unbiased at any N, so comparable across runs of the same N).
        fid: FID, or None when ``num_samples`` is below the callback's ``fid_min_samples``.
        num_samples: Real images (volumes) and generated samples compared, each.
    """

    kid: float
    fid: float | None
    num_samples: int


def distribution_scores(
    real: Tensor, fake: Tensor, num_samples: int, fid_min_samples: int = SMALL_N, kid_subsets: int = 100, seed: int = 0
) -> DistributionScores:
    """KID (always) and FID (when ``num_samples ≥ fid_min_samples``) of ``(N_r, d)`` vs ``(N_f, d)`` features.

    Args:
        real: ``(N_r, d)`` real features (for 3D: slices of every plane of ``num_samples`` volumes).
        fake: ``(N_f, d)`` generated features.
        num_samples: Images or volumes behind the features (slices of one volume are not independent, so the
            FID threshold counts volumes).
        fid_min_samples: Smallest ``num_samples`` at which FID is reported.
        kid_subsets: KID subsets (of ``min(1000, N)`` rows).
        seed: Seed of the KID subsets.
    """
    value = kid(real, fake, num_subsets=kid_subsets, seed=seed).mean
    fid_value = fid(real, fake).value if num_samples >= fid_min_samples else None
    return DistributionScores(value, fid_value, num_samples)


class DistributionMetrics(L.Callback):
    """KID, and FID where N allows, between a fixed validation subset and as many samples of the module.

    The real set is the validation dataset's first ``num_samples`` items in index order (the same on every rank
    and at every evaluation); their features are computed once. Each evaluation draws the same number of samples
    with the model's ``sample`` from a CPU generator seeded with ``seed``, in chunks of ``batch_size`` that take the
    real chunk's conditions (``condition_from_batch``) when the module is conditional, so the numbers of two
    epochs differ only through the weights. 2D images go through the extractor; 3D volumes are sliced along the
    three axes (2.5D, as ``medgen evaluate``) and the slice features of all planes are scored together. Both sets
    are clamped to [-1, 1].

    It runs once per validation epoch, after its first batch: inside the epoch, so that with
    ``EMAWeightAveraging`` the averaged weights are evaluated whatever the order of the callbacks. Every rank
    computes the same numbers. Logged: ``{prefix}/kid``, ``{prefix}/dist_num_samples`` and ``{prefix}/fid``, the
    latter only when ``num_samples ≥ fid_min_samples`` (FID is biased upward at small N: two draws of one
    distribution gave 39 at N = 96; KID is unbiased).

    Args:
        num_samples: Real images (volumes) and generated samples per evaluation (fewer if the validation set is
            smaller; at least 2).
        every_n_epochs: Evaluate in validation epochs whose ``current_epoch + 1`` is a multiple of this.
        extractor: Name for :func:`~medgen.evaluation.features.get_extractor` (``inception``, ...) or a 2D
            ``nn.Module`` mapping ``(N, C, H, W)`` in [-1, 1] to ``(N, d)``.
        weights: Weights file or folder of a named extractor (default: the installed / ``$MEDGEN_WEIGHTS_DIR`` one).
        fid_min_samples: Smallest ``num_samples`` at which FID is logged.
        batch_size: Samples per ``sample`` call and images (volumes) per extractor call.
        normalize: 3D only: per-plane intensity normalisation of the slices (``none`` keeps the [-1, 1] data
            range, ``stack`` is MAISI's per-volume min-max, see :func:`~medgen.evaluation.slicing.slice_volume`).
        kid_subsets: Number of KID subsets.
        seed: Seed of the sampling generator and of the KID subsets.
        prefix: Prefix of the logged keys.
    """

    def __init__(
        self,
        num_samples: int = 64,
        every_n_epochs: int = 1,
        extractor: str | nn.Module = "inception",
        weights: str | None = None,
        fid_min_samples: int = SMALL_N,
        batch_size: int = 16,
        normalize: Normalize = "none",
        kid_subsets: int = 100,
        seed: int = 0,
        prefix: str = "val",
    ) -> None:
        super().__init__()
        if num_samples < 2 or every_n_epochs < 1 or batch_size < 1 or kid_subsets < 1:
            raise InputError(
                "DistributionMetrics",
                "need num_samples >= 2 and every_n_epochs, batch_size, kid_subsets >= 1, got "
                f"{num_samples}, {every_n_epochs}, {batch_size}, {kid_subsets}",
            )
        self.num_samples, self.every_n_epochs, self.batch_size = num_samples, every_n_epochs, batch_size
        self.extractor_spec, self.weights = extractor, weights
        self.fid_min_samples, self.normalize, self.kid_subsets = fid_min_samples, normalize, kid_subsets
        self.seed, self.prefix = seed, prefix
        self.last: DistributionScores | None = None
        self._extractor: nn.Module | None = None
        self._real: Tensor | None = None
        self._conditions: list[Condition | None] = []
        self._sizes: list[int] = []

    @property
    def real_features(self) -> Tensor | None:
        """``(N_rows, d)`` features of the real subset (rows: images, or slices of all planes), once computed."""
        return self._real

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """After the first validation batch of every ``every_n_epochs``-th epoch: evaluate and log."""
        if batch_idx != 0 or dataloader_idx != 0 or trainer.sanity_checking:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        scores = self.evaluate(trainer, pl_module)
        log = {"kid": scores.kid, "dist_num_samples": float(scores.num_samples)}
        if scores.fid is not None:
            log["fid"] = scores.fid
        for key, value in log.items():
            pl_module.log(f"{self.prefix}/{key}", value, on_step=False, on_epoch=True, batch_size=1)

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> DistributionScores:
        """Sample, extract features and score against the (cached) real subset.

        Returns:
            The :class:`DistributionScores`, also kept as ``self.last``.
        """
        if not isinstance(pl_module, ModelTask) or not isinstance(pl_module.model, GenerativeModel):
            raise InputError("DistributionMetrics", f"needs a medgen generative model, got {type(pl_module).__name__}")
        model = pl_module.model
        extractor = self._extractor_on(pl_module.device)
        if self._real is None:
            self._real = self._real_features(trainer, pl_module, extractor)
        generator = torch.Generator().manual_seed(self.seed)
        fake = [
            self._features(extractor, model.sample(n, cond=cond, generator=generator))
            for cond, n in zip(self._conditions, self._sizes, strict=True)
        ]
        n = sum(self._sizes)
        self.last = distribution_scores(
            self._real, torch.cat(fake), n, self.fid_min_samples, self.kid_subsets, self.seed
        )
        return self.last

    def _extractor_on(self, device: torch.device) -> nn.Module:
        if self._extractor is None:
            self._extractor = get_extractor(self.extractor_spec, self.weights).module
        return self._extractor.to(device)

    def _real_features(self, trainer: L.Trainer, pl_module: ModelTask, extractor: nn.Module) -> Tensor:
        """Features of the first ``num_samples`` validation items; stores their chunk sizes and conditions."""
        loaders = trainer.val_dataloaders
        loader = loaders[0] if isinstance(loaders, list | tuple) and loaders else loaders
        dataset = loader.dataset if isinstance(loader, DataLoader) else None
        if not isinstance(loader, DataLoader) or not isinstance(dataset, Sized) or len(dataset) < 2:
            raise InputError("DistributionMetrics", "needs a validation DataLoader over a dataset of at least 2 items")
        n = min(self.num_samples, len(dataset))
        if n < self.num_samples:
            rank_zero_warn(f"DistributionMetrics: the validation set has {n} items; using {n}, not {self.num_samples}")
        feats = []
        for start in range(0, n, self.batch_size):
            items = [dataset[i] for i in range(start, min(start + self.batch_size, n))]
            batch = move_data_to_device(loader.collate_fn(items), pl_module.device)
            self._conditions.append(pl_module.condition(batch))
            self._sizes.append(len(items))
            feats.append(self._features(extractor, batch["image"]))
        return torch.cat(feats)

    def _features(self, extractor: nn.Module, images: Tensor) -> Tensor:
        """``(B, C, *spatial)`` images → ``(B, d)`` (2D) or ``(3 · slices, d)`` (3D) float64 CPU features."""
        images = images.as_subclass(Tensor).float().clamp(-1, 1)  # a MONAI MetaTensor as a plain tensor
        with torch.no_grad():
            if images.ndim == 5:
                planes = plane_features(extractor, images, self.normalize, batch_size=64)
                return torch.cat([getattr(planes, p) for p in PLANES])
            return torch.cat([extractor(chunk).double().cpu() for chunk in images.split(64)])
