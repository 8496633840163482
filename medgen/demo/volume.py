"""One volume from the shipped 3D latent model, and its axial, coronal and sagittal mid-slices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medgen.demo.augment import generate_set
from medgen.demo.real import data_module, write_datalist
from medgen.demo.stages import Result, rel
from medgen.demo.views import save_view, volume_views
from medgen.store.registry import read_card, resolve
from medgen.visualize import VIEW_NAMES, mid_slices, to_display


def generate_volume(ref: str, out: Path, folder: Path, count: int, seed: int) -> Result:
    """Generate ``count`` volumes of ``ref`` into ``folder`` (NIfTI + manifest) and save the first one's views.

    Beside them, the same views of the training subject (MNI152) as the model's training data module prepares it,
    centre-cropped at the training spacing (the model trains on crops of that size).

    Returns:
        The set's fields (:func:`~medgen.demo.augment.generate_set`), the volume file, its shape and spacing, one
        picture per view (``views``: view name → path) and the real subject's (``real_views``).
    """
    result = generate_set(ref, out, folder, count, seed)
    row = json.loads((folder / "manifest.jsonl").read_text(encoding="utf-8").splitlines()[0])
    volume = folder / str(row["file"])
    views = {name: save_view(tile, folder / f"{name}.png")
             for name, tile in zip(VIEW_NAMES, volume_views(volume), strict=True)}  # fmt: skip
    real = real_views(folder, read_card(resolve(ref).path))
    print(f"  {volume.name}: shape {row.get('shape')}, spacing {row.get('spacing')} mm; views -> {folder}")
    pictures = [*views.values(), *real.values()]
    return {**result, "volume": rel(out, volume), "shape": row.get("shape"), "spacing": row.get("spacing"),
            "qc": row.get("qc") or {}, "views": {k: rel(out, v) for k, v in views.items()},
            "real_views": {k: rel(out, v) for k, v in real.items()},
            "files": [*result["files"], rel(out, volume), *(rel(out, v) for v in pictures)]}  # fmt: skip


def real_views(folder: Path, card: dict[str, Any]) -> dict[str, Path]:
    """The three mid-slices of MNI152 prepared as the 3D model's training data, saved as ``folder/real_<view>.png``."""
    from medgen.demo_data import real_mri_volumes

    dm = data_module(write_datalist(folder / "mni152.csv", real_mri_volumes()[0], "mni152"), card, 1,
                     resize_mode="pad_crop")  # fmt: skip
    dm.setup("fit")
    image = dm.train_set[0]["image"]  # type: ignore[index]
    tiles = [to_display(view) for view in mid_slices(image)]
    return {name: save_view(tile, folder / f"real_{name}.png") for name, tile in zip(VIEW_NAMES, tiles, strict=True)}
