"""What a generation run needs besides its options, shared by ``medgen generate`` and ``medgen demo``.

A generative model loaded with its provenance, the default output format and device, and the run's one-line
summary.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from medgen.errors import InputError, article
from medgen.generation.run import GenerationSummary
from medgen.generation.writers import OutputFormat
from medgen.models.base import GenerativeModel
from medgen.models.translation import TranslationModel
from medgen.store.card import ModelCard
from medgen.store.load import load_model


@dataclass(frozen=True)
class LoadedGenerator:
    """A generative model ready for :func:`~medgen.generation.run.generate`, with what the manifest records.

    Attributes:
        model: The model in eval mode.
        card: Its model card (vocabulary, intensity mapping, spacing).
        checkpoint: The resolved path it was loaded from (``GenerationOptions.checkpoint``).
        sha256: Its verified sha256 (``GenerationOptions.checkpoint_sha256``).
    """

    model: GenerativeModel
    card: ModelCard
    checkpoint: str
    sha256: str


def load_generator(ref: str | Path, use_ema: bool = True) -> LoadedGenerator:
    """Load a model that generates from a ``.ckpt`` path, an exported folder or a registry name.

    Args:
        ref: What to load (see :func:`~medgen.store.load.load_model`).
        use_ema: From a ``.ckpt``, the EMA weights when the run kept them; False: the raw training weights.

    Raises:
        InputError: Naming ``ref``: nothing there, a file failing verification, an autoencoder or a translation
            model (they do not generate).
    """
    model, source, card, digest = load_model(ref, use_ema=use_ema)
    if isinstance(model, TranslationModel):
        raise InputError(
            ref,
            f"is {article(card.family)} {card.family} model: it translates input images and does not generate; "
            f"use medgen translate --checkpoint {ref} --input SRC --out DIR",
        )
    if not isinstance(model, GenerativeModel):
        raise InputError(
            ref,
            f"is {article(card.family)} {card.family} model: it encodes and decodes but does not generate; "
            "train a latent model on it (medgen fit --config configs/ldm_2d.yaml or ldm_3d.yaml "
            "--pretrained.autoencoder_from CHECKPOINT)",
        )
    return LoadedGenerator(model, card, str(source.path.resolve()), digest)


def default_format(spatial_dims: int) -> OutputFormat:
    """``nifti`` for volumes, ``png`` for 2D images."""
    return "nifti" if spatial_dims == 3 else "png"


def default_device(name: str | None = None) -> torch.device:
    """``name`` as a device; None: ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return torch.device(name or (f"cuda:{local}" if torch.cuda.is_available() else "cpu"))


def summary_line(summary: GenerationSummary, out_dir: str | Path, state: str) -> str:
    """What a run did, in one line: written, resumed, failed quality control, dropped as copies; ``state`` last."""
    return (
        f"generated {summary.written} samples ({summary.skipped} already there, {summary.flagged} failed quality "
        f"control: kept, marked in the manifest, skipped by evaluate/memorization unless --include-qc-failed; "
        f"{summary.dropped} dropped as copies of training images) -> "
        f"{Path(out_dir) / 'manifest.jsonl'} [{state}]"
    )
