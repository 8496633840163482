"""Fixtures of the network tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op torch thread for the test: on a CPU shared with other processes, two threads make many tiny
    kernels wait on each other (measured: 20 decodes of a tiny autoencoder in 0.05 s on one thread, 6.6 s on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
