"""An augmentation set from a 2D checkpoint, with its provenance manifest, as ``medgen generate`` writes it."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from medgen.data.io import load_image
from medgen.demo.real import GRID, spread
from medgen.demo.stages import Result, rel
from medgen.generation.conditions import make_plan
from medgen.generation.job import default_device, default_format, load_generator, summary_line
from medgen.generation.run import GenerationJob, GenerationOptions, generate
from medgen.visualize import save_grid


def generate_set(ref: str | Path, out: Path, folder: Path, num_samples: int, seed: int) -> Result:
    """Generate ``num_samples`` samples of ``ref`` into ``folder`` (resumable) and save a grid beside it.

    Args:
        ref: Registry name, exported folder or ``.ckpt`` of a 2D or 3D generative model.
        out: The demo folder (results name paths relative to it).
        folder: Output folder of the set (``manifest.jsonl`` and the samples).
        num_samples: Samples to generate.
        seed: Run seed.

    Returns:
        The set's folder, manifest, grid picture (2D only), sample count, sampler, steps and QC passes.
    """
    loaded = load_generator(ref)
    model = loaded.model
    fmt = default_format(model.spatial_dims)
    used = model.resolved(None, None)
    opts = GenerationOptions(
        num_samples=num_samples, out_dir=folder, seed=seed, batch_size=16, fmt=fmt, checkpoint=loaded.checkpoint,
        checkpoint_sha256=loaded.sha256, weights="ema", command=["medgen", "demo"],
    )  # fmt: skip
    plan = make_plan(model.net, loaded.card.vocab, [], loaded.card.raw)
    summary = generate(GenerationJob(model, loaded.card, opts, plan), default_device())
    print("  " + summary_line(summary, folder, "complete"))
    manifest = folder / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    passed = sum(1 for row in rows if (row.get("qc") or {}).get("passed", True))
    result: Result = {
        "checkpoint": str(ref), "sha256": loaded.sha256, "folder": rel(out, folder), "manifest": rel(out, manifest),
        "count": len(rows), "qc_passed": passed, "sampler": used.method, "steps": used.num_steps, "format": fmt,
        "files": [rel(out, manifest)],
    }  # fmt: skip
    if model.spatial_dims == 2:
        files = spread(sorted(folder / str(row["file"]) for row in rows if row.get("file")), GRID)
        stack = torch.stack([torch.as_tensor(load_image(f)) / 127.5 - 1.0 for f in files])
        picture = save_grid(stack, folder.parent / f"{folder.name}_grid.png", ncol=8)
        result |= {"grid": rel(out, picture), "files": [rel(out, manifest), rel(out, picture)]}
    return result


def include_qc_failed(result: Result) -> bool:
    """True when fewer than half of a set's samples passed quality control.

    A barely trained checkpoint (a stand-in, or a short fine-tune) draws samples that fail QC; the evaluation and
    memorization stages then use every sample and the page says so, instead of refusing an empty set. Otherwise
    they skip the failed ones, as ``medgen evaluate`` and ``medgen memorization`` do by default.
    """
    return 2 * int(result["qc_passed"]) < int(result["count"])
