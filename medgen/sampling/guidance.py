"""Classifier-free guidance as a wrapper around a denoise function.

Ho & Salimans, "Classifier-Free Diffusion Guidance", 2022 (arXiv:2207.12598), Eq. 6: with the conditional
and unconditional predictions of one network trained with condition dropout,

    guided = uncond + w * (cond - uncond),

``w = 1`` being the plain conditional model. The same rule applies to noise, ``v``, ``x0`` and flow
velocity predictions, since each is an affine function of the score at a fixed ``(x, t)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from medgen.nets.condition import Condition
from medgen.sampling.common import DenoiseFn


def guided(denoise: DenoiseFn, guidance: float) -> DenoiseFn:
    """Wrap ``denoise`` with classifier-free guidance of weight ``guidance``.

    The conditional and unconditional inputs go through the network in one batched call of ``2B``
    samples: ``x`` and ``t`` duplicated, the condition as ``cond.cat(cond.dropped())``.

    Args:
        denoise: ``denoise(x, t, cond)`` with ``x`` of shape ``(B, C, *spatial)`` and ``t`` of shape ``(B,)``.
        guidance: Guidance weight ``w``; ``1`` (or no/empty condition at call time) calls ``denoise`` once
            on the inputs as given.

    Returns:
        A denoise function with the same contract: ``(B, C, *spatial)`` guided prediction.
    """
    if guidance == 1.0:
        return denoise

    def guided_denoise(x: Tensor, t: Tensor, cond: Condition | None) -> Tensor:
        if cond is None or cond.is_empty():
            return denoise(x, t, cond)
        both = denoise(torch.cat([x, x]), torch.cat([t, t]), cond.cat(cond.dropped()))
        conditional, unconditional = both.chunk(2)
        return unconditional + guidance * (conditional - unconditional)

    return guided_denoise
