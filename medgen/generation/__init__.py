"""Augmentation-set generation: per-sample seeds, conditions, writers with geometry, a resumable manifest."""

from medgen.generation.run import GenerationOptions, generate

__all__ = ["GenerationOptions", "generate"]
