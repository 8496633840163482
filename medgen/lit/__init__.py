"""Lightning tasks that train :mod:`medgen.models`: one for every single-loss family, one for GANs.

Configs name ``medgen.lit.GenerativeTask`` with the model under ``init_args.model`` and the training options
(:mod:`medgen.lit.options`) beside it.
"""

from medgen.lit.adversarial import Adversarial, AdversarialTask
from medgen.lit.options import Conditioning, Optimization, ValidationPictures
from medgen.lit.task import GenerativeTask

__all__ = ["Adversarial", "AdversarialTask", "Conditioning", "GenerativeTask", "Optimization", "ValidationPictures"]
