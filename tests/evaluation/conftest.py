"""Evaluation tests run torch with one intra-op thread.

Metric code is dominated by small float64 operations; on a 2-core machine shared with another process,
OpenMP spin-waiting makes two threads many times slower than one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
