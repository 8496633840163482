"""How ``medgen translate`` prepares an input image for a model and maps the output back onto the input's grid.

Each input goes through the training data module's own steps (:func:`medgen.data.transforms.volume_chain`: RAS,
the training spacing, the intensity preset of the pair inputs' modality; then the training sizing,
:class:`~medgen.data.transforms.SizeTo`). A 2D model given a volume translates it slice by slice along the
training slice axis. The output is mapped back by undoing the sizing (crop the padding, resize back; a
``pad_crop`` model runs in overlapping windows instead) and resampling from the RAS/training-spacing grid onto the
input's grid (MONAI ``ResampleToMatch``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgen.data.io import load_image
from medgen.data.presets import IntensityPreset
from medgen.data.transforms import BACKGROUND, ResizeMode, SizeTo, volume_chain
from medgen.errors import InputError
from medgen.generation.conditions import TrainingChain
from medgen.generation.seeds import sample_seed
from medgen.models.base import TrainableModel

#: ``(B, C, *size)`` inputs in [-1, 1] and one seed per row → ``(B, C_out, *size)`` outputs in [-1, 1].
Run = Callable[[torch.Tensor, list[int]], torch.Tensor]


@dataclass(frozen=True)
class InputGrid:
    """How inputs are prepared for the model, as the training data module prepared its pair inputs.

    Attributes:
        chain: The training chain with the pair inputs' modality (``source_modality``, None = ``modality``).
        size: The model's spatial size.
        slice_axis: RAS axis a 2D model's volumes are sliced along.
        batch_size: Slices per network call.
        masks: The inputs are label maps (a mask-conditioned model such as mask → CT): no intensity preset,
            nearest-neighbour resampling and sizing, padding with label 0, as the data module treats masks.
    """

    chain: TrainingChain
    size: tuple[int, ...]
    slice_axis: int = 2
    batch_size: int = 8
    masks: bool = False

    @property
    def pad_value(self) -> float:
        """What padding holds: background (-1) for images, label 0 for masks."""
        return 0.0 if self.masks else BACKGROUND

    @classmethod
    def from_record(
        cls,
        model: TrainableModel,
        data: dict[str, Any],
        batch_size: int = 8,
        modality: str | None = None,
        masks: bool = False,
    ) -> InputGrid:
        """From the model card's fields (``card.raw``: a checkpoint's data record as ``card_fields`` keeps it).

        Paired training data (``source_modality`` recorded) prepares inputs with ``source_modality`` and
        ``source_intensity``; otherwise with ``modality`` and ``intensity``. ``preprocessing`` gives the spacing
        and resize mode, ``slice_axis`` (where recorded; default axial) the slicing of volumes for a 2D model.
        ``modality`` (``--modality``) overrides the inputs' modality (its default intensity preset applies when
        it differs from the recorded one).

        Raises:
            InputError: The model's image size is unknown.
        """
        if model.image_size is None:
            raise InputError("--checkpoint", "the model's image size is unknown (train it with a data module)")
        source = data.get("source_modality")
        if source:  # paired training data: inputs were normalised as the pairs' sources were
            data = {**data, "modality": source, "intensity": data.get("source_intensity") or data.get("intensity")}
        if modality and modality != data.get("modality"):
            data = {**data, "modality": modality, "intensity": None}
        chain = TrainingChain.from_card(data)
        if modality and chain.modality != modality:
            chain = replace(chain, modality=modality)
        axis = (data.get("preprocessing") or {}).get("slice_axis", data.get("slice_axis"))
        axis = 2 if axis is None else int(axis)
        return cls(chain, tuple(model.image_size), axis, batch_size, masks)


def translate_image(path: Path, grid: InputGrid, run: Run, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Translate one image file onto its own grid.

    Args:
        path: The input image (any format :func:`medgen.data.io.load_image` reads).
        grid: How inputs are prepared.
        run: The network call (see :data:`Run`).
        seed: The file's seed; slice ``k`` (or the whole image, ``k = 0``) draws from ``sample_seed(seed, k)``.

    Returns:
        ``(C, *input spatial)`` output in [-1, 1] and the input's 4x4 RAS affine.

    Raises:
        InputError: Unreadable input, or a 2D image for a 3D model.
    """
    from monai.data import MetaTensor
    from monai.transforms import Compose

    from medgen.data.datasets import reraise_medgen

    original = load_image(path)
    dims, model_dims = original.ndim - 1, len(grid.size)
    if dims < model_dims:
        raise InputError(path, f"is a {dims}D image but the model translates {model_dims}D volumes")
    spacing = grid.chain.target_spacing
    spacing = spacing if spacing is not None and len(spacing) == dims else None
    # The image is loaded already; a mask rides in the chain's mask slot (the image slot's copy is dropped).
    modality, preset = ("mri", IntensityPreset()) if grid.masks else (grid.chain.modality, grid.chain.preset)
    steps = Compose(volume_chain(dims, modality, preset, spacing)[1:])
    key = "mask" if grid.masks else "image"
    prepared = reraise_medgen(lambda: steps({"image": original.clone(), key: original.clone()})[key])
    x = prepared.as_tensor().float() if isinstance(prepared, MetaTensor) else torch.as_tensor(prepared).float()
    if dims == model_dims:
        y = _translate_stack(x[None], grid, run, seed)[0]
    else:  # a 2D model on a volume: one slice at a time along the training slice axis
        axis = grid.slice_axis + 1
        slices = x.movedim(axis, 1)[0][:, None]  # (n, 1, a, b)
        y = _translate_stack(slices, grid, run, seed).movedim(0, axis)  # (n, C, a, b) -> (C, X, Y, Z)
    back = MetaTensor(y, affine=prepared.affine) if isinstance(prepared, MetaTensor) else y
    return _onto(back, original), np.asarray(original.affine, dtype=np.float64)


def _translate_stack(x: torch.Tensor, grid: InputGrid, run: Run, seed: int) -> torch.Tensor:
    """``(n, 1, *shape)`` prepared images → ``(n, C, *shape)`` outputs, sized for the model and back, in batches.

    ``resize`` (the model saw whole images resized): each image is sized as in training and the output sized back.
    ``pad_crop`` (the model saw its size at the training voxel size): images larger than that are covered by
    overlapping windows blended with Gaussian weights (MONAI ``sliding_window_inference``), smaller ones padded
    with background, so no part of the input is cropped away.
    """
    shape = tuple(x.shape[2:])
    if grid.chain.resize_mode == "pad_crop":
        return torch.cat([_windows(img[None], grid, run, seed) for img in x])
    sizer = SizeTo(grid.size, grid.chain.resize_mode, "nearest" if grid.masks else "area", grid.pad_value)
    out: list[torch.Tensor] = []
    for start in range(0, len(x), grid.batch_size):
        chunk = torch.stack([sizer(img) for img in x[start : start + grid.batch_size]])
        seeds = [sample_seed(seed, k) for k in range(start, start + len(chunk))]
        y = run(chunk, seeds).float().cpu()
        out.extend(unsize(img, shape, grid.size, grid.chain.resize_mode) for img in y)
    return torch.stack(out)


def _windows(x: torch.Tensor, grid: InputGrid, run: Run, seed: int) -> torch.Tensor:
    """``(1, 1, *shape)`` → ``(1, C, *shape)`` through windows of the model's size.

    Window ``k`` draws from ``sample_seed(seed, k)`` (MONAI visits the windows in a fixed order).
    """
    from monai.inferers import sliding_window_inference

    count = [0]

    def predictor(windows: torch.Tensor) -> torch.Tensor:
        seeds = [sample_seed(seed, k) for k in range(count[0], count[0] + len(windows))]
        count[0] += len(windows)
        return run(windows, seeds).float().cpu()

    out = sliding_window_inference(x, grid.size, grid.batch_size, predictor, overlap=0.25, mode="gaussian",
                                   cval=grid.pad_value)  # fmt: skip
    assert isinstance(out, torch.Tensor)
    return torch.as_tensor(out).float()


def unsize(y: torch.Tensor, shape: tuple[int, ...], size: tuple[int, ...], mode: ResizeMode) -> torch.Tensor:
    """Undo :class:`~medgen.data.transforms.SizeTo`: ``(C, *size)`` → ``(C, *shape)`` on the unsized grid.

    ``pad_crop`` is undone by the opposite centred pad/crop; ``resize`` by cropping the padding (the resized
    shape as MONAI's ``Resize(size_mode="longest")`` computes it) and resizing back (bilinear/trilinear).
    """
    from monai.transforms import ResizeWithPadOrCrop

    inner = shape
    if mode == "resize" and shape != size:
        scale = max(size) / max(shape)
        inner = tuple(int(round(s * scale)) for s in shape)
    out = ResizeWithPadOrCrop(inner)(y)
    out = torch.as_tensor(out.as_tensor() if hasattr(out, "as_tensor") else out)
    if inner != shape:
        interp = "bilinear" if len(shape) == 2 else "trilinear"
        out = torch.nn.functional.interpolate(out[None], size=shape, mode=interp, align_corners=False)[0]
    return out.float().contiguous()


def _onto(y: torch.Tensor, original: Any) -> torch.Tensor:
    """``y`` (a MetaTensor on the prepared RAS grid) resampled onto ``original``'s grid; plain ``(C, *spatial)``."""
    from monai.data import MetaTensor
    from monai.transforms import ResampleToMatch

    same_shape = tuple(y.shape[1:]) == tuple(original.shape[1:])
    if not isinstance(y, MetaTensor):
        return y.float()
    if same_shape and np.allclose(np.asarray(y.affine), np.asarray(original.affine), atol=1e-6):
        return y.as_tensor().float()
    dst = MetaTensor(torch.zeros((1, *original.shape[1:])), affine=original.affine)
    out = ResampleToMatch(mode="bilinear", padding_mode="border", align_corners=True)(y, dst)
    return torch.as_tensor(out.as_tensor() if isinstance(out, MetaTensor) else out).float()
