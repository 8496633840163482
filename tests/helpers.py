"""Helpers shared by tests (tiny real components, no mocks)."""

from __future__ import annotations


def tiny_unet(spatial_dims: int, seed: int = 0, **overrides: object):  # type: ignore[no-untyped-def]
    """A seeded tiny :class:`~medgen.nets.unet.DiffusionUNet` whose zero-initialised output layers get weights.

    MONAI zero-initialises output convolutions, so an untrained net returns zeros; tests of conditioning and
    checkpointing need outputs that depend on their inputs.
    """
    import torch

    from medgen.nets.unet import DiffusionUNet

    torch.manual_seed(seed)
    args: dict[str, object] = dict(
        spatial_dims=spatial_dims,
        channels=(8, 16),
        attention_levels=(False, True),
        num_res_blocks=1,
        num_head_channels=8,
        norm_num_groups=8,
    )
    args.update(overrides)
    net = DiffusionUNet(**args)  # type: ignore[arg-type]
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(std=0.05)
    return net
