"""MONAI dictionary transforms that make up medgen's preprocessing chain.

Chain (dictionary keys ``image`` and optional ``mask`` and ``source``)::

    LoadMedicald → ToRASd → Spacingd (optional) → ModalityIntensityd → sizing → ToSampled

``source`` is the input image of an image-to-image pair (``image`` is its target): it goes through every step the
image does (same grid, same sizing, same slices and patches), normalised with its own modality option.

Loading and checks are medgen's (see :mod:`medgen.data.io`); reorientation, resampling and sizing
are MONAI's own transforms.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (
    MapTransform,
    Orientation,
    Resize,
    ResizeWithPadOrCrop,
    Spacingd,
    Transform,
)

from medgen.data.io import load_image
from medgen.data.presets import IntensityPreset, ModalityIntensityd
from medgen.errors import ImageReadError, InputError

ResizeMode = Literal["resize", "pad_crop"]
#: Intensity of empty space after normalisation (air, background); used for padding.
BACKGROUND = -1.0
#: Largest difference between a pair's affines (spacing, origin in mm; direction cosines) still counted as one grid.
GRID_TOLERANCE = 1e-3


class LoadMedicald(MapTransform):
    """Load ``image`` (and ``mask`` and ``source`` when present) with :func:`medgen.data.io.load_image`.

    Args:
        spatial_rank: Required number of spatial dimensions of the stored image (None: 2 or 3).
        modality: The modality option; an explicit one overrides the header's.
        source_modality: The pair inputs' modality option (None: the same as ``modality``).
    """

    def __init__(
        self, spatial_rank: int | None = None, modality: str = "auto", source_modality: str | None = None
    ) -> None:
        super().__init__(keys=("image", "mask", "source"), allow_missing_keys=True)
        self.spatial_rank = spatial_rank
        self.modality = modality
        self.source_modality = modality if source_modality is None else source_modality

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:  # type: ignore[override]
        """Replace paths by ``MetaTensor`` images of shape ``(1, *spatial)``."""
        d = dict(data)
        image = load_image(d["image"], spatial_dims=self.spatial_rank)
        if self.modality != "auto":
            image.meta["modality"] = self.modality
        d["image"] = image
        if d.get("mask"):
            mask = load_image(d["mask"], spatial_dims=image.ndim - 1)
            if tuple(mask.shape) != tuple(image.shape):
                raise ImageReadError(
                    d["mask"],
                    f"mask shape {tuple(mask.shape[1:])} does not match image shape {tuple(image.shape[1:])}",
                )
            d["mask"] = mask
        else:
            d.pop("mask", None)
        if d.get("source"):
            source = load_image(d["source"], spatial_dims=image.ndim - 1)
            check_same_grid(source, image, d["source"])
            if self.source_modality != "auto":
                source.meta["modality"] = self.source_modality
            d["source"] = source
        else:
            d.pop("source", None)
        return d


def check_same_grid(source: MetaTensor, image: MetaTensor, where: str) -> None:
    """Check that a pair's input lies on its target's grid: same shape, spacing, origin and direction.

    Raises:
        InputError: Naming ``where`` (the source file) and what differs.
    """
    if tuple(source.shape[1:]) != tuple(image.shape[1:]):
        raise InputError(
            where, f"source shape {tuple(source.shape[1:])} differs from its target image's {tuple(image.shape[1:])}"
        )
    a, b = np.asarray(source.affine, dtype=np.float64), np.asarray(image.affine, dtype=np.float64)
    n = a.shape[0] - 1
    spacing_a, spacing_b = np.linalg.norm(a[:n, :n], axis=0), np.linalg.norm(b[:n, :n], axis=0)
    checks = (
        ("spacing", spacing_a, spacing_b),
        ("origin", a[:n, n], b[:n, n]),
        ("direction", a[:n, :n] / spacing_a, b[:n, :n] / spacing_b),
    )
    for name, x, y in checks:
        if not np.allclose(x, y, rtol=0.0, atol=GRID_TOLERANCE):
            raise InputError(
                where,
                f"source {name} {np.round(x, 4).tolist()} differs from its target image's {np.round(y, 4).tolist()} "
                "(a pair must share one grid; resample the source onto the target)",
            )


class ToRASd(MapTransform):
    """Reorient 3D images to RAS (2D images have no meaningful orientation and pass unchanged)."""

    def __init__(self, keys: Sequence[str] = ("image", "mask", "source")) -> None:
        super().__init__(keys, allow_missing_keys=True)
        self._orient = Orientation(axcodes="RAS", labels=None)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:  # type: ignore[override]
        """Reorient each present key."""
        d = dict(data)
        for key in self.key_iterator(d):
            if d[key].ndim == 4:
                d[key] = self._orient(d[key])
        return d


class SizeTo(Transform):
    """Bring an image to ``spatial_size``: keep-aspect resize plus padding, or pad/crop only.

    ``resize`` scales the longest side to the target and pads the rest with background (no distortion);
    ``pad_crop`` keeps the voxel size (use with a target spacing) and centre-pads or crops.

    Args:
        spatial_size: Target size per spatial dimension.
        mode: ``resize`` or ``pad_crop``.
        interpolation: ``area``/``bilinear``/``trilinear`` for images, ``nearest`` for masks.
        pad_value: Value for padded voxels.
    """

    def __init__(
        self,
        spatial_size: Sequence[int],
        mode: ResizeMode = "resize",
        interpolation: str = "area",
        pad_value: float = BACKGROUND,
    ) -> None:
        self.spatial_size = tuple(int(s) for s in spatial_size)
        self.mode = mode
        self._pad = ResizeWithPadOrCrop(self.spatial_size, value=pad_value)
        self._resize = Resize(max(self.spatial_size), size_mode="longest", mode=interpolation, anti_aliasing=False)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``(C, *spatial) -> (C, *spatial_size)``."""
        plain = not isinstance(img, MetaTensor)
        if self.mode == "resize" and tuple(img.shape[1:]) != self.spatial_size:
            img = self._resize(img)
        out = self._pad(img)
        return _plain(out) if plain else out


class SizeTod(MapTransform):
    """Dictionary version of :class:`SizeTo`: ``area`` for the image and source, ``nearest`` for the mask."""

    def __init__(self, spatial_size: Sequence[int], mode: ResizeMode = "resize") -> None:
        super().__init__(("image", "mask", "source"), allow_missing_keys=True)
        self.image = SizeTo(spatial_size, mode, "area", BACKGROUND)
        self.mask = SizeTo(spatial_size, mode, "nearest", 0.0)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:  # type: ignore[override]
        """Size the image, source and mask."""
        d = dict(data)
        d["image"] = self.image(d["image"])
        if "source" in d:
            d["source"] = self.image(d["source"])
        if "mask" in d:
            d["mask"] = self.mask(d["mask"])
        return d


class ToSampled(Transform):
    """Final step: plain float tensors, condition values as 0-d tensors, geometry kept as ``spacing``."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[str, Any]:  # type: ignore[override]
        """Return ``{"image", ["mask"], ["source"], "subject", "cond"}``."""
        out: dict[str, Any] = {"image": _plain(data["image"]), "subject": str(data.get("subject", ""))}
        for key in ("mask", "source"):
            if key in data:
                out[key] = _plain(data[key])
        out["cond"] = {k: torch.tensor(float(v)) for k, v in dict(data.get("cond") or {}).items()}
        return out


def _plain(t: torch.Tensor) -> torch.Tensor:
    t = t.as_tensor() if isinstance(t, MetaTensor) else torch.as_tensor(t)
    return t.float().contiguous()


def volume_chain(
    spatial_rank: int | None,
    modality: str,
    preset: IntensityPreset,
    target_spacing: Sequence[float] | None,
    source_modality: str | None = None,
) -> list[Any]:
    """The deterministic per-image steps that every dataset shares (load → RAS → spacing → intensity).

    A pair's ``source`` is normalised with ``source_modality`` (None: ``modality``).
    """
    source_option = modality if source_modality is None else source_modality
    chain: list[Any] = [LoadMedicald(spatial_rank, modality, source_option), ToRASd()]
    if target_spacing is not None:
        chain.append(
            Spacingd(
                ("image", "mask", "source"),
                pixdim=tuple(target_spacing),
                mode=("bilinear", "nearest", "bilinear"),
                allow_missing_keys=True,
            )
        )
    chain.append(ModalityIntensityd("image", modality, preset))
    source_intensity = ModalityIntensityd("source", source_option, preset)
    source_intensity.allow_missing_keys = True  # unpaired data has no source
    chain.append(source_intensity)
    return chain
