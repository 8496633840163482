"""Lightning tasks that train :mod:`medgen.models`: one task for every single-loss family.

Configs name ``medgen.lit.GenerativeTask`` with the model under ``init_args.model`` and the training options
(:mod:`medgen.lit.options`) beside it.
"""

from medgen.lit.options import Conditioning, Optimization, ValidationPictures
from medgen.lit.task import GenerativeTask

__all__ = ["Conditioning", "GenerativeTask", "Optimization", "ValidationPictures"]
