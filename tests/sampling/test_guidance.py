from __future__ import annotations

import pytest
import torch

from medgen.nets.condition import Condition
from medgen.sampling import guided


class Recorder:
    """A cond-dependent denoiser (dropped values use 0) that records every call's batch size."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, x, t, cond):
        self.batches.append(x.shape[0])
        shift = 0.0 if cond is None or cond.values is None else cond.values.nan_to_num(0.0)[:, 0]
        scale = (t + shift).view(-1, *([1] * (x.ndim - 1)))
        return x * scale + 1.0


def inputs(spatial_dims):
    x = torch.randn(3, 2, *([4] * spatial_dims), generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.1, 0.5, 0.9])
    return x, t, Condition(values=torch.tensor([[1.0], [2.0], [3.0]]))


@pytest.mark.parametrize("guidance", [0.0, 2.5, 7.0])
def test_guided_is_uncond_plus_weighted_difference_in_one_call(spatial_dims, guidance):
    x, t, cond = inputs(spatial_dims)
    reference = Recorder()
    conditional, unconditional = reference(x, t, cond), reference(x, t, cond.dropped())
    recorder = Recorder()
    out = guided(recorder, guidance)(x, t, cond)
    assert recorder.batches == [6]
    expected = unconditional + guidance * (conditional - unconditional)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(out, conditional) or guidance == 1.0


def test_guidance_one_calls_the_plain_model_once(spatial_dims):
    x, t, cond = inputs(spatial_dims)
    recorder = Recorder()
    out = guided(recorder, 1.0)(x, t, cond)
    assert recorder.batches == [3]
    torch.testing.assert_close(out, Recorder()(x, t, cond))


@pytest.mark.parametrize("cond", [None, Condition()])
def test_no_condition_calls_once_even_with_guidance(spatial_dims, cond):
    x, t, _ = inputs(spatial_dims)
    recorder = Recorder()
    out = guided(recorder, 4.0)(x, t, cond)
    assert recorder.batches == [3]
    torch.testing.assert_close(out, Recorder()(x, t, None))
