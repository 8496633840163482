"""One T1 → T2-like translation with the shipped paired translation model (as ``medgen translate`` does).

The input is the held-out subject's T1 (nibabel's ``anatomical.nii``) from
:func:`medgen.demo_data.prepare_translation_data`, which also makes its T2-like target on the same grid; a 2D
model translates the volume slice by slice and the output lands on the input's grid, so the three axial
mid-slices (input, output, target) line up.
"""

from __future__ import annotations

from pathlib import Path

from medgen.demo.stages import Result, rel
from medgen.demo.views import save_view, volume_views

#: The pictures: name → what it shows.
PANELS = {"input": "T1 input (held-out subject)", "translated": "translated", "target": "T2-like target"}


def translate_one(ref: str, out: Path, folder: Path, seed: int) -> Result:
    """Translate the held-out subject's T1 with ``ref`` into ``folder`` and picture the axial mid-slices.

    Returns:
        The output volume, its manifest, and one picture per panel of :data:`PANELS`.
    """
    from medgen.demo_data import prepare_translation_data
    from medgen.generation.job import default_device
    from medgen.generation.translate import make_translator
    from medgen.generation.translate_files import TranslateOptions, list_inputs, translate_files
    from medgen.generation.translate_grid import InputGrid
    from medgen.store.load import load_model

    data = prepare_translation_data(folder / "data", seed=seed)
    source, target = data / "anatomical_t1.nii.gz", data / "anatomical_t2like.nii.gz"
    loaded = load_model(ref)
    translator = make_translator(loaded.model, loaded.card, ref)
    grid = InputGrid.from_record(loaded.model, loaded.card.raw, 8, None, False)
    opts = TranslateOptions(
        inputs=list_inputs(source, translator.from_domain), out_dir=folder / "output", seed=seed,
        checkpoint=str(loaded.source.path.resolve()), checkpoint_sha256=loaded.sha256, modality=loaded.card.modality,
        intensity=loaded.card.intensity,
    )  # fmt: skip
    translate_files(opts, translator, grid, loaded.model, default_device())
    output = next(p for p in (folder / "output").iterdir() if p.name.startswith("anatomical_t1"))
    pictures = {name: save_view(volume_views(path)[0], folder / f"{name}.png")
                for name, path in (("input", source), ("translated", output), ("target", target))}  # fmt: skip
    print(f"  {source.name} -> {output} ({translator.kind}, direction {translator.direction})")
    manifest = folder / "output" / "manifest.jsonl"
    return {"checkpoint": ref, "sha256": loaded.sha256, "output": rel(out, output), "manifest": rel(out, manifest),
            "pictures": {k: rel(out, v) for k, v in pictures.items()},
            "files": [rel(out, output), rel(out, manifest), *(rel(out, v) for v in pictures.values())]}  # fmt: skip
