"""One volume from the shipped 3D latent model, and its axial, coronal and sagittal mid-slices."""

from __future__ import annotations

import json
from pathlib import Path

from medgen.demo.augment import generate_set
from medgen.demo.stages import Result, rel
from medgen.demo.views import save_view, volume_views
from medgen.visualize import VIEW_NAMES


def generate_volume(ref: str, out: Path, folder: Path, count: int, seed: int) -> Result:
    """Generate ``count`` volumes of ``ref`` into ``folder`` (NIfTI + manifest) and save the first one's views.

    Returns:
        The set's fields (:func:`~medgen.demo.augment.generate_set`), the volume file, its shape and spacing, and
        one picture per view (``views``: view name → path).
    """
    result = generate_set(ref, out, folder, count, seed)
    row = json.loads((folder / "manifest.jsonl").read_text(encoding="utf-8").splitlines()[0])
    volume = folder / str(row["file"])
    views = {name: save_view(tile, folder / f"{name}.png")
             for name, tile in zip(VIEW_NAMES, volume_views(volume), strict=True)}  # fmt: skip
    print(f"  {volume.name}: shape {row.get('shape')}, spacing {row.get('spacing')} mm; views -> {folder}")
    return {**result, "volume": rel(out, volume), "shape": row.get("shape"), "spacing": row.get("spacing"),
            "views": {k: rel(out, v) for k, v in views.items()},
            "files": [*result["files"], rel(out, volume), *(rel(out, v) for v in views.values())]}  # fmt: skip
