"""Training objectives: what a network is trained to predict, and how the loss is weighted.

Math only: nothing here imports Lightning.
"""

from medgen.objectives.diffusion import DiffusionObjective, TrainingTarget
from medgen.objectives.flow import FlowObjective

__all__ = ["DiffusionObjective", "FlowObjective", "TrainingTarget"]
