"""Writing generated samples: physical units where the training mapping is invertible, geometry, atomic files.

Models work in [-1, 1]. A CT model trained with a HU window maps back to HU exactly (the window is linear);
MRI percentile scaling and X-ray percentile scaling are per-image and cannot be inverted, so those samples
keep the model's [-1, 1] values and the manifest says so. PNG is 8-bit over [-1, 1] (for CT: the training
window), written so that :func:`medgen.data.io.load_image` reads back the array in the same orientation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from medgen.data.intensity import IntensityMapping, as_intensity
from medgen.data.io import atomic_write, load_image, write_image
from medgen.errors import InputError

OutputFormat = Literal["nifti", "mha", "nrrd", "npy", "png"]
EXTENSIONS: dict[str, str] = {"nifti": "nii.gz", "mha": "mha", "nrrd": "nrrd", "npy": "npy", "png": "png"}


def to_output_units(
    sample: torch.Tensor, intensity: IntensityMapping | dict[str, Any] | None
) -> tuple[torch.Tensor, str]:
    """Map a ``(C, *spatial)`` sample from [-1, 1] to stored units; returns the array and the unit's name.

    ``intensity`` is the training mapping, or the dict a model card stores (read with
    :meth:`IntensityMapping.from_dict`).
    """
    x = sample.clamp(-1.0, 1.0)
    mapping = as_intensity(intensity)
    if mapping is not None and mapping.kind == "window" and mapping.low is not None and mapping.high is not None:
        lo, hi = float(mapping.low), float(mapping.high)
        return (x + 1.0) * 0.5 * (hi - lo) + lo, mapping.unit or "HU"
    return x, "model [-1, 1]"


def grid_affine(spacing: list[float] | None, spatial_dims: int) -> np.ndarray:
    """A 4x4 RAS affine with the training grid's spacing (identity spacing when unknown)."""
    affine = np.eye(4)
    for axis, s in enumerate((spacing or [1.0] * spatial_dims)[:spatial_dims]):
        affine[axis, axis] = float(s)
    return affine


def reference_affine(path: str | Path, size: tuple[int, ...]) -> np.ndarray:
    """The RAS affine of a ``size`` grid that covers a reference image's field of view.

    Samples are RAS-ordered (the data module reorients training volumes to RAS), so a 3D reference is
    reoriented to RAS first: an LPS or LAS reference gives the same world positions, not a flipped volume.
    Rescaling keeps the outer voxel edges in place, so the first voxel centre moves by half the change of
    voxel size (the corner voxels of a same-sized grid are the reference's).

    Raises:
        InputError: The reference has a different number of spatial dimensions.
    """
    from monai.transforms import Orientation

    ref = load_image(path)
    shape = tuple(ref.shape[1:])
    if len(shape) != len(size):
        raise InputError(path, f"reference is {len(shape)}D but the samples are {len(size)}D")
    if len(shape) == 3:
        ref = Orientation(axcodes="RAS", labels=None)(ref)  # type: ignore[assignment]  # a MetaTensor in, one out
        shape = tuple(ref.shape[1:])
    source = np.asarray(ref.affine, dtype=np.float64)
    affine = source.copy()
    for axis, (n_ref, n_out) in enumerate(zip(shape, size, strict=True)):
        scale = n_ref / n_out
        affine[:3, axis] = source[:3, axis] * scale
        affine[:3, 3] += source[:3, axis] * (scale - 1.0) / 2.0
    return affine


def write_sample(
    sample: torch.Tensor,
    path: Path,
    fmt: OutputFormat,
    affine: np.ndarray,
    intensity: IntensityMapping | dict[str, Any] | None,
) -> Path:
    """Write one ``(C, *spatial)`` sample atomically (temp file + rename).

    Args:
        sample: The sample in the model's [-1, 1] range.
        path: Final path.
        fmt: ``nifti``, ``mha`` or ``nrrd`` (with ``affine``), ``npy`` (both in output units, see
            :func:`to_output_units`) or ``png`` (2D only, 8-bit over [-1, 1], i.e. the training window for CT).
        affine: 4x4 RAS affine.
        intensity: The training data's intensity mapping (the model card's ``intensity``).
    """
    data = sample.detach().cpu().float()
    if fmt == "png":
        if data.ndim != 3 or data.shape[0] != 1:
            raise InputError("fmt", f"png takes single-channel 2D samples, got shape {tuple(data.shape)}")
        return _write_png(np.rint((data[0].clamp(-1, 1).numpy() + 1.0) * 127.5).astype(np.uint8), path)
    values = to_output_units(data, intensity)[0].numpy()
    if fmt == "npy":
        return atomic_write(path, lambda tmp: np.save(tmp, values))
    return write_image(values, path, affine=affine)


def write_mask(mask: torch.Tensor, path: Path, fmt: OutputFormat, affine: np.ndarray) -> Path:
    """Write a ``(1, *spatial)`` label map atomically as integers (PNG: the labels as 8-bit levels)."""
    labels = mask.detach().cpu().round().to(torch.int16)
    if fmt == "png":
        return _write_png(labels[0].numpy().clip(0, 255).astype(np.uint8), path)
    if fmt == "npy":
        return atomic_write(path, lambda tmp: np.save(tmp, labels.numpy()))
    return write_image(labels.numpy(), path, affine=affine)


def _write_png(levels: np.ndarray, path: Path) -> Path:
    """An 8-bit ``(X, Y)`` array as PNG, transposed so :func:`medgen.data.io.load_image` reads back ``levels``."""
    return atomic_write(path, lambda tmp: Image.fromarray(np.ascontiguousarray(levels.T)).save(tmp, format="PNG"))
