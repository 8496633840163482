"""Real brain slices as the shipped 2D model saw its training data: the training subject and the held-out one.

The shipped brain models train on nilearn's MNI152 T1 only; nibabel's ``anatomical.nii`` is a subject they never
saw. Both volumes are sliced, sized and normalised by :class:`~medgen.data.datamodule.MedicalImageDataModule` with
the 2D model card's settings, and every slice is written as an 8-bit PNG (as generated samples are), one folder
per subject: the real side of the evaluations and the memorization check, and the fine-tuning data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgen.data.datamodule import MedicalImageDataModule
from medgen.demo.stages import Result, rel
from medgen.generation.conditions import TrainingChain
from medgen.generation.writers import write_sample
from medgen.progress import progress
from medgen.visualize import save_grid

#: The demo's two real subjects: (folder name, index in :func:`medgen.demo_data.real_mri_volumes`, role).
SUBJECTS = (("mni152", 0, "training subject of the shipped brain models"),
            ("anatomical", 1, "held-out subject, never trained on by the shipped models"))  # fmt: skip

#: Images shown in a grid.
GRID = 16


def data_module(
    datalist: Path, card: dict[str, Any], batch_size: int, seed: int = 0, resize_mode: str | None = None
) -> MedicalImageDataModule:
    """A data module over ``datalist`` that prepares images as the model of ``card`` was trained on.

    Args:
        datalist: CSV with ``image`` and ``subject`` columns.
        card: The model's card (modality, spatial dims, image size, intensity, preprocessing, slice axis).
        batch_size: Training batch size.
        seed: Shuffling seed.
        resize_mode: ``resize`` or ``pad_crop`` instead of the card's (e.g. a centre crop at the training spacing
            for a model trained on random crops).
    """
    chain = TrainingChain.from_card(card)
    return MedicalImageDataModule(
        str(datalist), modality=chain.modality, spatial_dims=int(card.get("spatial_dims") or 2),
        image_size=list(card["image_size"]), batch_size=batch_size, num_workers=0, val_fraction=0.0, seed=seed,
        target_spacing=None if chain.target_spacing is None else list(chain.target_spacing),
        resize_mode=resize_mode or chain.resize_mode,  # type: ignore[arg-type]
        slice_axis=int(card.get("slice_axis", 2)), mri_percentiles=chain.preset.mri_percentiles,
    )  # fmt: skip


def write_real_slices(out: Path, card: dict[str, Any], max_train_slices: int = 0) -> Result:
    """Write the slices of both subjects under ``out/real/<subject>/`` with a grid picture of each.

    Args:
        out: The demo folder.
        card: The shipped 2D model's card.
        max_train_slices: Slices of the training subject kept, evenly spread (0: all); the held-out subject's
            are all kept.

    Returns:
        Per subject: its datalist, slice folder, slice count, grid picture and role.
    """
    from medgen.demo_data import real_mri_volumes

    volumes = real_mri_volumes()
    subjects: dict[str, Any] = {}
    files: list[str] = []
    for name, index, role in SUBJECTS:
        datalist = write_datalist(out / "real" / f"{name}.csv", volumes[index], name)
        dm = data_module(datalist, card, batch_size=1)
        dm.setup("fit")
        train_set: Any = dm.train_set
        folder = out / "real" / name
        images = []
        kept = list(range(len(train_set)))
        if index == 0 and max_train_slices:
            kept = spread(kept, max_train_slices)
        for i in progress(kept, desc=f"real slices of {name}"):
            image = train_set[i]["image"]
            slice_index = train_set.index[i][1]
            write_sample(image, folder / f"slice_{slice_index:04d}.png", "png", np.eye(4), None)
            images.append(image)
        picture = save_grid(torch.stack(spread(images, GRID)), out / "real" / f"{name}_grid.png", ncol=8)
        subjects[name] = {"datalist": rel(out, datalist), "folder": rel(out, folder), "count": len(images),
                          "grid": rel(out, picture), "role": role, "source": str(volumes[index])}  # fmt: skip
        files += [rel(out, datalist), rel(out, folder), rel(out, picture)]
        print(f"  {name} ({role}): {len(images)} slices -> {folder}")
    return {"subjects": subjects, "files": files}


def write_datalist(path: Path, image: Path, subject: str) -> Path:
    """A one-row CSV datalist (``image``, ``subject``) at ``path``; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"image,subject\n{image.resolve()},{subject}\n", encoding="utf-8")
    return path


def spread(items: list[Any], count: int) -> list[Any]:
    """Up to ``count`` items evenly spread over ``items`` (neighbouring slices look alike)."""
    if len(items) <= count:
        return list(items)
    return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, count).round().astype(int))]
