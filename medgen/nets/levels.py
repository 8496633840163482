"""Checks of the per-level architecture arguments shared by MONAI's UNet and autoencoder."""

from __future__ import annotations

from collections.abc import Sequence

from medgen.errors import InputError


def check_levels(
    field: str, spatial_dims: int, channels: Sequence[int], attention_levels: Sequence[bool], norm_num_groups: int
) -> None:
    """Raise a one-line :class:`InputError` naming ``field.<argument>`` for arguments MONAI would reject later.

    Args:
        field: Config path of the network, e.g. ``model.net``.
        spatial_dims: Must be 2 or 3.
        channels: Feature channels per level; each divisible by ``norm_num_groups``.
        attention_levels: One entry per level.
        norm_num_groups: GroupNorm groups.
    """
    if spatial_dims not in (2, 3):
        raise InputError(f"{field}.spatial_dims", f"expected 2 or 3, got {spatial_dims}")
    if len(channels) != len(attention_levels):
        raise InputError(
            f"{field}.attention_levels", f"needs one entry per level ({len(channels)}), got {len(attention_levels)}"
        )
    bad = [c for c in channels if c % norm_num_groups]
    if bad:
        raise InputError(f"{field}.channels", f"{bad} not divisible by norm_num_groups={norm_num_groups}")
