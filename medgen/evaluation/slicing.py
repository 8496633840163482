"""2.5D evaluation of 3D volumes with a 2D extractor (MAISI protocol, Project-MONAI/tutorials generation/maisi).

Every slice along each of the three axes of a ``(C, X, Y, Z)`` volume becomes a 2D image: XY slices (fixed Z)
are ``(C, X, Y)``, YZ slices (fixed X) ``(C, Y, Z)`` and ZX slices (fixed Y) ``(C, X, Z)``. Each plane's stack is
optionally min–max normalised per volume (MAISI's default) or per slice, into medgen's [-1, 1] range that the
extractors expect; the FID is computed per plane and the three are averaged. Geometry handling before slicing
(RAS orientation, 1 mm spacing, padding with −1000 HU, centre crop, HU clipping to [−1000, 1000]) is the
caller's. Slices of one volume are strongly correlated: the effective sample size is far below the slice count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from medgen.errors import InputError
from medgen.evaluation.distribution import FIDResult, fid

Plane = Literal["xy", "yz", "zx"]
Normalize = Literal["none", "stack", "slice"]
PLANES: tuple[Plane, ...] = ("xy", "yz", "zx")
_SLICE_AXIS: dict[Plane, int] = {"xy": 3, "yz": 1, "zx": 2}  # axis of (C, X, Y, Z) held fixed per slice


def slice_volume(volume: Tensor, plane: Plane, normalize: Normalize = "stack") -> Tensor:
    """All 2D slices of one volume in one plane.

    Args:
        volume: ``(C, X, Y, Z)`` volume.
        plane: ``"xy"`` (slices along Z), ``"yz"`` (along X) or ``"zx"`` (along Y).
        normalize: ``"stack"``: min–max of the whole stack (= the volume) to [-1, 1], as MAISI; ``"slice"``:
            min–max per slice; ``"none"``: keep intensities (already in [-1, 1]).

    Returns:
        ``(S, C, a, b)`` slices: ``(Z, C, X, Y)``, ``(X, C, Y, Z)`` or ``(Y, C, X, Z)``.
    """
    if volume.ndim != 4:
        raise InputError("volumes", f"expected (C, X, Y, Z) volumes, got shape {tuple(volume.shape)}")
    if plane not in _SLICE_AXIS or normalize not in ("none", "stack", "slice"):
        raise InputError(
            "plane", f"plane must be one of {PLANES} and normalize none/stack/slice, got {plane}/{normalize}"
        )
    slices = volume.movedim(_SLICE_AXIS[plane], 0).float()
    if normalize == "none":
        return slices
    dims = (1, 2, 3) if normalize == "slice" else (0, 1, 2, 3)
    lo, hi = slices.amin(dim=dims, keepdim=True), slices.amax(dim=dims, keepdim=True)
    return 2 * (slices - lo) / (hi - lo + 1e-10) - 1


def slice_counts(volumes: Iterable[Tensor], plane: Plane) -> list[int]:
    """Number of slices of each ``(C, X, Y, Z)`` volume in ``plane`` (the order :func:`plane_features` uses)."""
    return [int(v.shape[_SLICE_AXIS[plane]]) for v in volumes]


@dataclass(frozen=True)
class PlaneFeatures:
    """Per-plane features ``(S_total, d)`` of a set of volumes (slices of all volumes concatenated)."""

    xy: Tensor
    yz: Tensor
    zx: Tensor


def _volumes(volumes: Tensor | Iterable[Tensor]) -> Iterable[Tensor]:
    if isinstance(volumes, Tensor) and volumes.ndim != 5:
        raise InputError("volumes", f"expected a (B, C, X, Y, Z) tensor, got shape {tuple(volumes.shape)}")
    return volumes  # iterating a 5D tensor yields (C, X, Y, Z) volumes


def plane_features(
    extractor: nn.Module, volumes: Tensor | Iterable[Tensor], normalize: Normalize = "stack", batch_size: int = 64
) -> PlaneFeatures:
    """Extract 2D features of every slice in each plane, one volume at a time, ``batch_size`` slices per call.

    Args:
        extractor: 2D extractor: ``(N, C, H, W)`` in [-1, 1] → ``(N, d)``.
        volumes: ``(B, C, X, Y, Z)`` tensor or an iterable of ``(C, X, Y, Z)`` volumes (shapes may differ).
        normalize: Per-plane intensity normalisation, see :func:`slice_volume`.
        batch_size: Slices per extractor call.
    """
    feats: dict[Plane, list[Tensor]] = {plane: [] for plane in PLANES}
    with torch.no_grad():
        for volume in _volumes(volumes):
            for plane in PLANES:
                slices = slice_volume(volume, plane, normalize)
                feats[plane] += [extractor(chunk).double().cpu() for chunk in slices.split(batch_size)]
    if not feats["xy"]:
        raise InputError("volumes", "no volumes given")
    return PlaneFeatures(torch.cat(feats["xy"]), torch.cat(feats["yz"]), torch.cat(feats["zx"]))


@dataclass(frozen=True)
class FID2p5D:
    """Per-plane FIDs (each with its slice counts) and their mean."""

    xy: FIDResult
    yz: FIDResult
    zx: FIDResult
    mean: float

    def as_dict(self) -> dict[str, float]:
        """``{"xy", "yz", "zx", "mean"}`` values."""
        return {"xy": self.xy.value, "yz": self.yz.value, "zx": self.zx.value, "mean": self.mean}


def fid_2p5d(
    extractor: nn.Module,
    real_volumes: Tensor | Iterable[Tensor],
    fake_volumes: Tensor | Iterable[Tensor],
    normalize: Normalize = "stack",
    batch_size: int = 64,
) -> FID2p5D:
    """MAISI 2.5D FID: FID on XY, YZ and ZX slices separately, and their mean.

    Args:
        extractor: 2D extractor (MAISI uses RadImageNet ResNet-50; any extractor of ``get_extractor`` works).
        real_volumes: ``(B, C, X, Y, Z)`` tensor or iterable of ``(C, X, Y, Z)`` volumes.
        fake_volumes: Same, generated.
        normalize: Per-plane min–max normalisation (``"stack"`` = MAISI).
        batch_size: Slices per extractor call.
    """
    real = plane_features(extractor, real_volumes, normalize, batch_size)
    fake = plane_features(extractor, fake_volumes, normalize, batch_size)
    xy, yz, zx = (fid(getattr(real, p), getattr(fake, p)) for p in PLANES)
    return FID2p5D(xy, yz, zx, (xy.value + yz.value + zx.value) / 3)
