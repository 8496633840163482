"""Drop Lightning's advertising and known-harmless noise from medgen's output, and nothing else.

Lightning prints product tips ("💡 Tip: ... litlogger"), a note on every checkpoint it saves ("`weights_only`
was not set", about saving the full training state) and, with recent PyTorch, a deprecation warning about
``LeafSpec`` from its own code; ``medgen fit`` and ``medgen generate`` hide exactly those messages (and a few
more each names). The log levels stay as they are, so every other message of Lightning still shows, and the
filters are removed when the block ends.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

#: Log records dropped always: Lightning's product tips, and its note that a checkpoint it saves holds the full
#: training state (``weights_only=False`` when saving: optimizer, loops, callbacks, which exact resume needs). That
#: is about what is written, not about loading: medgen reads checkpoints with ``torch.load(weights_only=True)``.
TIPS = ("💡 Tip:", "`weights_only` was not set, defaulting to `False`")
#: Log records ``generate`` also drops: device and process-group banners (it prints its own progress).
BANNERS = ("GPU available:", "TPU available:", "HPU available:", "Initializing distributed:", "distributed_backend=")
#: Warnings ignored always (regular expressions matched against the start of the message).
NOISE = (r".*isinstance\(treespec, LeafSpec\)",)
#: Where Lightning logs the records above (``rank_zero_info`` and the process-group setup).
_SOURCES = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning.fabric.utilities.distributed",
    "lightning.pytorch.trainer.connectors.checkpoint_connector",
)


class DropMessages(logging.Filter):
    """A logging filter that drops records whose message contains one of ``fragments``.

    Args:
        fragments: Substrings of the messages to drop.
    """

    def __init__(self, fragments: Sequence[str]) -> None:
        super().__init__()
        self.fragments = tuple(fragments)

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a record to drop."""
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


@contextmanager
def quiet_lightning(warning_patterns: Sequence[str] = (), banners: bool = False) -> Iterator[None]:
    """Hide Lightning's tips and the ``LeafSpec`` warning (plus ``warning_patterns``, and ``banners``) in the block.

    Args:
        warning_patterns: More warning-message regular expressions to ignore.
        banners: Also drop Lightning's device and process-group banners (:data:`BANNERS`).
    """
    drop = DropMessages(TIPS + (BANNERS if banners else ()))
    loggers = [logging.getLogger(name) for name in _SOURCES]
    for logger in loggers:
        logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            for pattern in (*NOISE, *warning_patterns):
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)
