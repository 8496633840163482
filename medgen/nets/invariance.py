"""Batch-invariant inference: sample ``i`` comes out bit-identical whatever batch, process or thread count.

Two CPU kernels make a network's output for one row depend on the batch size:

- ``nn.Linear`` on ``(B, C)`` inputs (time and condition embeddings): the GEMM kernel, and with it the
  summation order, changes with ``B`` (a batch of 1 takes a GEMV path);
- oneDNN (mkldnn) convolutions pick a different algorithm for a batch of 1 than for larger batches.

:func:`make_batch_invariant` swaps every ``nn.Linear`` for :class:`RowwiseLinear`, which reduces each row on
its own for 2-D inputs (tokens of 3-D inputs already are), and :func:`batch_invariant_kernels` turns oneDNN
off for the block so convolutions run per image (im2col + GEMM). Together they make CPU generation
independent of ``--batch-size``.

A third dependence is the intra-op thread count: how a reduction (a BLAS GEMM, a norm, an attention block)
is split over threads can change its summation order (reported for 3D models on one machine: files differing
by up to 6e-8 between ``OMP_NUM_THREADS=1`` and ``2``, and so between one process and Lightning's DDP
children, which get ``cores // processes`` threads). :func:`batch_invariant_kernels` therefore runs the block
on one intra-op thread; CPU throughput comes from processes (``--devices N --accelerator cpu``).

On CUDA, cuDNN may still choose algorithms by batch size; GPU results are reproducible for a fixed batch size
and device, which medgen records in the manifest. Nothing in torch or MONAI offers a batch-invariant mode,
hence this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RowwiseLinear(nn.Linear):
    """``nn.Linear`` whose 2-D inputs are reduced row by row, in an order that does not depend on ``B``.

    It shares the parameters (and so the state-dict keys) of the layer it replaces.
    """

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in)`` → ``(B, out)`` as an elementwise product and a last-axis sum; other ranks as usual."""
        if x.ndim != 2:
            return F.linear(x, self.weight, self.bias)
        y = (x.unsqueeze(1) * self.weight).sum(-1)
        return y if self.bias is None else y + self.bias

    @classmethod
    def wrap(cls, layer: nn.Linear) -> RowwiseLinear:
        """A :class:`RowwiseLinear` holding ``layer``'s own weight and bias tensors."""
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.in_features, new.out_features = layer.in_features, layer.out_features
        new.weight = layer.weight
        new.bias = layer.bias
        return new


def make_batch_invariant(module: nn.Module) -> nn.Module:
    """Replace every ``nn.Linear`` inside ``module`` by a :class:`RowwiseLinear` in place; returns ``module``."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, RowwiseLinear.wrap(child))
    return module


@contextmanager
def batch_invariant_kernels(device: torch.device | str) -> Iterator[None]:
    """Inside the block, CPU kernels avoid oneDNN and run on one intra-op thread.

    oneDNN picks its algorithm by batch size; the summation order of a reduction split over threads depends
    on the thread count. Both settings are restored on exit.
    """
    if torch.device(device).type != "cpu":
        yield
        return
    before, threads = torch.backends.mkldnn.enabled, torch.get_num_threads()
    torch.backends.mkldnn.enabled = False  # type: ignore[assignment]
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before  # type: ignore[assignment]
        torch.set_num_threads(threads)
