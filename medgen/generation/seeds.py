"""Per-sample seeds: sample ``i`` of a run seeded ``s`` always gets the same noise.

The seed of a sample depends on ``(seed, index, attempt)`` only, not on the batch it is drawn in or on the
process that draws it, so any subset of an augmentation set can be regenerated identically and sharding
over processes does not change the images. Hashing (rather than ``seed + index``) keeps neighbouring
runs' streams unrelated: run 0's sample 1 is not run 1's sample 0.
"""

from __future__ import annotations

import hashlib

import torch


def sample_seed(seed: int, index: int, attempt: int = 0) -> int:
    """A 63-bit seed for sample ``index`` of a run seeded ``seed`` (``attempt`` > 0 for quality-control retries)."""
    digest = hashlib.sha256(f"medgen-sample:{seed}:{index}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def sample_generators(seeds: list[int]) -> list[torch.Generator]:
    """One CPU generator per sample (noise is drawn on the CPU, so a seed gives the same noise on any device)."""
    return [torch.Generator().manual_seed(s) for s in seeds]
