"""MONAI dictionary transforms that make up medgen's preprocessing chain.

Chain (dictionary keys ``image`` and optional ``mask``)::

    LoadMedicald → ToRASd → Spacingd (optional) → ModalityIntensityd → sizing → ToSampled

Loading and checks are medgen's (see :mod:`medgen.data.io`); reorientation, resampling and sizing
are MONAI's own transforms.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

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
from medgen.errors import ImageReadError

ResizeMode = Literal["resize", "pad_crop"]
#: Intensity of empty space after normalisation (air, background); used for padding.
BACKGROUND = -1.0


class LoadMedicald(MapTransform):
    """Load ``image`` (and ``mask`` when present) with :func:`medgen.data.io.load_image`.

    Args:
        spatial_rank: Required number of spatial dimensions of the stored image (None: 2 or 3).
        modality: The modality option; an explicit one overrides the header's.
    """

    def __init__(self, spatial_rank: int | None = None, modality: str = "auto") -> None:
        super().__init__(keys=("image", "mask"), allow_missing_keys=True)
        self.spatial_rank = spatial_rank
        self.modality = modality

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
        return d


class ToRASd(MapTransform):
    """Reorient 3D images to RAS (2D images have no meaningful orientation and pass unchanged)."""

    def __init__(self, keys: Sequence[str] = ("image", "mask")) -> None:
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
    """Dictionary version of :class:`SizeTo`: ``area`` for the image, ``nearest`` for the mask."""

    def __init__(self, spatial_size: Sequence[int], mode: ResizeMode = "resize") -> None:
        super().__init__(("image", "mask"), allow_missing_keys=True)
        self.image = SizeTo(spatial_size, mode, "area", BACKGROUND)
        self.mask = SizeTo(spatial_size, mode, "nearest", 0.0)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:  # type: ignore[override]
        """Size the image and mask."""
        d = dict(data)
        d["image"] = self.image(d["image"])
        if "mask" in d:
            d["mask"] = self.mask(d["mask"])
        return d


class ToSampled(Transform):
    """Final step: plain float tensors, condition values as 0-d tensors, geometry kept as ``spacing``."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[str, Any]:  # type: ignore[override]
        """Return ``{"image", ["mask"], "subject", "cond"}``."""
        out: dict[str, Any] = {"image": _plain(data["image"]), "subject": str(data.get("subject", ""))}
        if "mask" in data:
            out["mask"] = _plain(data["mask"])
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
) -> list[Any]:
    """The deterministic per-image steps that every dataset shares (load → RAS → spacing → intensity)."""
    chain: list[Any] = [LoadMedicald(spatial_rank, modality), ToRASd()]
    if target_spacing is not None:
        chain.append(
            Spacingd(
                ("image", "mask"),
                pixdim=tuple(target_spacing),
                mode=("bilinear", "nearest"),
                allow_missing_keys=True,
            )
        )
    chain.append(ModalityIntensityd("image", modality, preset))
    return chain
