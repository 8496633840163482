"""Progress reporting: a tqdm bar on a terminal, occasional plain lines otherwise (logs, CI)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, total: int | None = None, every_s: float = 10.0) -> Iterator[T]:
    """Iterate ``items`` with progress shown on stderr.

    On a terminal this is a tqdm bar. Elsewhere (CI logs, pipes) it prints ``desc: i/total`` at most every
    ``every_s`` seconds, and a final line only if the loop took longer than that, so quick loops stay silent.

    Args:
        items: What to iterate over.
        desc: Short description shown before the counts.
        total: Number of items (default ``len(items)`` when available).
        every_s: Minimum seconds between plain lines.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if sys.stderr.isatty():
        yield from tqdm(items, desc=desc, total=total, leave=False)
        return
    start = last = time.monotonic()
    count = 0
    for count, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= every_s:
            print(f"{desc}: {count}/{total if total is not None else '?'}", file=sys.stderr, flush=True)
            last = now
    if time.monotonic() - start >= every_s:
        print(f"{desc}: {count}/{total if total is not None else count} done", file=sys.stderr, flush=True)
