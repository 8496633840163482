"""A scripted walk through the README: every command of its ```bash blocks, in README order, at small settings.

The commands are read out of README.md, so the README and this walk cannot drift apart: the fast test
:func:`test_walk_table_matches_the_readme` fails when a README command has no entry in :data:`WALK` (or no generic
rule) or an entry's command is no longer in the README. The slow test :func:`test_readme_walk` runs them, each as a
``python -m medgen ...`` subprocess in one temporary working directory, checks each result, and fails when the output
of any command holds a Python warning or a traceback that medgen did not write itself.

How a README command becomes a small one (:func:`small`), generic where possible:

- ``medgen ...`` runs as ``sys.executable -m medgen ...``; ``configs/`` and ``benchmarks/`` are the repository's
  (linked into the working directory); ``checkpoints/`` is the working directory's own, and ``MEDGEN_CHECKPOINTS``
  names it (the repository's shipped ``checkpoints/`` come after it); conditioned models that the README names as
  the user's runs are trained for 2 steps into ``runs/`` (:func:`walk_models`).
- ``/data/...`` folders become the embedded demo data or files the walk writes (:data:`DATA`).
- ``runs/NAME/.../last.ckpt`` is the newest ``last.ckpt`` that an earlier ``fit`` of the walk wrote under ``runs/NAME``.
- ``medgen fit --config configs/NAME.yaml`` (a full-size GPU config) keeps that file and composes its tiny twin
  ``configs/smoke/NAME.yaml`` and ``configs/trainer/cpu.yaml`` after it (``configs/trainer/gpu.yaml`` becomes
  ``cpu.yaml``), with the full config's run folder; a fit without a smoke twin trains ``--trainer.max_steps 2``;
  ``--data.image_size`` above 16 becomes 16.
- ``--num-samples N`` becomes at most 4.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.demo_run import quick_run

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: A line of a ```bash block is a command when its first word is one of these; other lines are output.
COMMAND_WORDS = ("medgen", "python", "python3", "make", "pip")
#: The largest --num-samples the walk draws.
NUM_SAMPLES = 4
#: The largest --data.image_size a walked ``fit`` trains at.
IMAGE_SIZE = 16


# --------------------------------------------------------------------------------------------------- the README


def readme_commands(text: str) -> list[str]:
    """The commands of ``text``'s ```bash blocks in order: ``\\`` continuations joined, comments and output dropped."""
    commands = []
    for block in re.finditer(r"^[ \t]*```bash[ \t]*\n(.*?)^[ \t]*```", text, re.S | re.M):
        joined = re.sub(r"\\\n", " ", block.group(1))
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] in COMMAND_WORDS:
                commands.append(" ".join(shlex.quote(w) for w in words))
    return commands


def key(command: str) -> str:
    """A README command without comments, whitespace collapsed: the key of :data:`WALK`."""
    return " ".join(shlex.quote(w) for w in shlex.split(command, comments=True))


def test_readme_commands_parser() -> None:
    text = (
        'x\n```bash\nmedgen a --b 1 \\\n    --c 2   # note\n# comment\n{"out": 1}\nmake demo  # more\n```\n'
        "  ```bash\n  python x.py\n  ```\n```python\nmedgen no\n```\n"
    )
    assert readme_commands(text) == ["medgen a --b 1 --c 2", "make demo", "python x.py"]


# ------------------------------------------------------------------------------------------------- the walk


@dataclass
class Walk:
    """The walk's working directory, environment and what earlier steps left."""

    cwd: Path
    env: dict[str, str]
    #: The session's shared quick demo run (:func:`tests.demo_run.quick_run`): its record.
    demo_run: Callable[[], dict[str, Any]]
    times: list[tuple[str, float]] = field(default_factory=list)

    def newest(self, pattern: str) -> Path:
        found = sorted(self.cwd.glob(pattern), key=lambda p: p.stat().st_mtime)
        assert found, f"no {pattern} under {self.cwd}"
        return found[-1]


#: README data folders → what the walk uses (demo data, or folders :func:`world` writes).
DATA = {
    "/data/brain_t1": "demo:mri",
    "/data/my_t1": "demo:mri",
    "/data/ct": "demo:ct",
    "/data/t1_t2_pairs.csv": "demo:mri-pairs",
    "/data/t1_t2_domains.csv": "demo:mri-domains",
    "/data/train_slices": "train_slices/",
    "/data/test_slices": "test_slices/",
}


def _full_config(value: str) -> tuple[Path, str] | None:
    """``configs/NAME.yaml`` with a smoke twin → (the twin, the full config's run folder)."""
    path = Path(value)
    if len(path.parts) != 2 or path.parts[0] != "configs":
        return None
    twin = ROOT / "configs" / "smoke" / path.name
    if not twin.is_file():
        return None
    import yaml

    root = yaml.safe_load((ROOT / path).read_text())["trainer"]["default_root_dir"]
    return twin.relative_to(ROOT), root


def small(words: list[str], walk: Walk) -> list[str]:
    """The README command ``words`` at small settings (see the module docstring); ``medgen`` → this interpreter."""
    out: list[str] = []
    fit = words[:2] == ["medgen", "fit"]
    # encode takes fit's data options: its --config is composed with the smoke twin as fit's is
    compose = fit or words[:2] == ["medgen", "encode"]
    roots, smoke = [], False
    i = 0
    while i < len(words):
        w = words[i]
        nxt = words[i + 1] if i + 1 < len(words) else None
        if w in DATA:
            w = DATA[w]
        elif w.startswith("/data/"):
            raise AssertionError(f"README data folder {w} has no substitute in DATA")
        elif "/.../" in w:
            w = str(walk.newest(w.replace("/.../", "/**/")).relative_to(walk.cwd))
        if w == "--num-samples" and nxt is not None:
            out += [w, str(min(int(nxt), NUM_SAMPLES))]
            i += 2
            continue
        if fit and w == "--data.image_size" and nxt is not None and nxt.isdigit():
            out += [w, str(min(int(nxt), IMAGE_SIZE))]
            i += 2
            continue
        if compose and w == "--config" and nxt is not None:
            full = _full_config(nxt)
            if nxt == "configs/trainer/gpu.yaml":
                out += [w, "configs/trainer/cpu.yaml"]
            elif full is not None:
                out += [w, nxt, w, str(full[0]), w, "configs/trainer/cpu.yaml"]
                roots.append(full[1])
            else:
                out += [w, nxt]
            smoke = smoke or nxt.startswith("configs/smoke/") or full is not None
            i += 2
            continue
        out.append(w)
        i += 1
    if fit and roots:
        out += ["--trainer.default_root_dir", roots[-1]]
    if fit and not smoke:
        out += ["--trainer.max_steps", "2", "--trainer.accelerator", "cpu"]
    if out[0] == "medgen":
        out = [sys.executable, "-m", "medgen", *out[1:]]
    elif out[0] in ("python", "python3"):
        out = [sys.executable, *out[1:]]
    return out


@dataclass(frozen=True)
class Step:
    """How one README command is walked.

    Attributes:
        how: What the walk runs, in words (the report); empty for the generic rule alone.
        check: Checks the result (the working directory and the command's output); exit code 0 is always checked.
        argv: Replaces :func:`small` for this command (the README words → the argv); None: :func:`small`.
        skip: Why the command is not run.
        prepare: Writes what the command reads just before it runs.
    """

    how: str = ""
    check: Callable[[Walk, str], None] | None = None
    argv: Callable[[list[str], Walk], list[str]] | None = None
    skip: str | None = None
    prepare: Callable[[Walk], None] | None = None


# ------------------------------------------------------------------------------------------------ data it writes


def world(cwd: Path) -> None:
    """Files and folders the README names, written from medgen's demo data and phantoms."""
    import nibabel as nib
    import numpy as np
    from PIL import Image

    from medgen.data.phantoms import (
        phantom_family,
        save_phantom_set,
        write_dicom_image,
        write_dicom_series,
    )
    from medgen.demo_data import real_mri_volumes

    for name in ("configs", "benchmarks"):
        (cwd / name).symlink_to(ROOT / name)
    mni, anatomical = real_mri_volumes()
    nib.save(nib.load(anatomical), cwd / "scan.nii.gz")
    ct = phantom_family("ct", 1, (32, 32, 8), seed=5)[0]
    write_dicom_series(cwd / "series_folder", ct.image.astype(np.int16), ct.spacing)
    xray = phantom_family("xray", 1, (64, 64), seed=5)[0]
    inverted = xray.image.max() - xray.image
    pixels = np.round(inverted / max(float(inverted.max()), 1e-6) * 4095).astype(np.uint16)
    write_dicom_image(cwd / "chest_cr.dcm", pixels, modality="CR", spacing=None, photometric="MONOCHROME1")
    volume = np.asarray(nib.load(anatomical).dataobj, dtype=np.float32)
    Image.fromarray(_uint8(volume[:, :, volume.shape[2] // 2])).save(cwd / "slice.png")
    (cwd / "volumes").mkdir()
    for src in (mni, anatomical):
        shutil.copyfile(src, cwd / "volumes" / src.name)
    save_phantom_set(cwd / "ct", phantom_family("ct", 3, (32, 32, 16), seed=7))
    # memorization: 2D training slices in one folder per subject (the real MNI brain, two MR phantoms), held-out
    # slices of another real subject (nibabel's anatomical.nii)
    subjects = {"mni": np.asarray(nib.load(mni).dataobj, dtype=np.float32)}
    for i, ph in enumerate(phantom_family("mri", 2, (32, 32, 16), seed=11)):
        subjects[f"phantom_{i}"] = ph.image.astype(np.float32)
    for name, vol in subjects.items():
        _write_slices(vol, cwd / "train_slices" / name, 8)
    _write_slices(volume, cwd / "test_slices" / "anatomical", 8)
    (cwd / "balanced.csv").write_text("label\n" + "".join(f"{'ab'[i % 2]}\n" for i in range(NUM_SAMPLES)))
    nib.save(nib.Nifti1Image(ct.mask.astype(np.uint8), np.diag([*ct.spacing, 1.0])), cwd / "liver_mask.nii.gz")


def _uint8(image) -> object:  # type: ignore[no-untyped-def]
    import numpy as np

    lo, hi = np.percentile(image, [0.5, 99.5])
    return (np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8).T


def _write_slices(volume, folder: Path, n: int) -> None:  # type: ignore[no-untyped-def]
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    z = volume.shape[2]
    for k in np.linspace(z * 0.3, z * 0.7, n).astype(int):
        Image.fromarray(_uint8(volume[:, :, k])).resize((32, 32)).save(folder / f"slice_{k:03d}.png")


def walk_models(cwd: Path) -> None:
    """Tiny conditioned models the README's generate commands name as the user's own runs, trained for 2 steps.

    ``runs/ddpm_contrast``: 2D MRI diffusion conditioned on a ``contrast`` column (T1/T2 text → class codes) of a
    datalist of the demo MRI; ``runs/flow_ct_label_3d``: 3D CT flow matching conditioned on a ``label`` column
    (``a``/``b``) of a datalist of CT phantoms; ``runs/mask2ct_3d``: 3D CT diffusion conditioned on the phantoms' masks
    by channel concatenation. Each is saved as Lightning lays out a run
    (``runs/NAME/lightning_logs/version_0/checkpoints/last.ckpt``), so ``runs/NAME/.../last.ckpt`` finds it.
    """
    import lightning as L

    from medgen.data.datamodule import MedicalImageDataModule
    from medgen.data.phantoms import phantom_family, save_phantom_set
    from medgen.demo_data import demo_folder
    from medgen.lit import Conditioning, GenerativeTask, Optimization, ValidationPictures
    from medgen.lit.quiet import quiet_lightning
    from medgen.models import DiffusionModel, FlowModel, SamplingDefaults
    from medgen.nets.conditioning import ConditionSpec
    from medgen.nets.unet import DiffusionUNet

    work = cwd.parent / "walk_models_data"
    tiny = dict(channels=(8, 16), attention_levels=(False, False), num_res_blocks=1, num_head_channels=8,
                norm_num_groups=8)  # fmt: skip

    def train(
        name: str,
        model: object,
        datalist: Path,
        spatial_dims: int,
        modality: str,
        conditions: list,
        run: str | None = None,
    ) -> None:
        dm = MedicalImageDataModule(str(datalist), modality=modality, spatial_dims=spatial_dims, image_size=16,
                                    batch_size=2, num_workers=0, val_fraction=0.0, conditions=conditions)  # fmt: skip
        options = dict(optimization=Optimization(warmup_steps=1), conditioning=Conditioning(drop_prob=0.2),
                       pictures=ValidationPictures(num_samples=0))  # fmt: skip
        task = GenerativeTask(model, **options)  # type: ignore[arg-type]
        trainer = L.Trainer(accelerator="cpu", max_steps=2, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            default_root_dir=work)  # fmt: skip
        trainer.fit(task, datamodule=dm)
        trainer.save_checkpoint(work / f"{name}.ckpt")
        if run is not None:
            checkpoints = cwd / "runs" / run / "lightning_logs" / "version_0" / "checkpoints"
            checkpoints.mkdir(parents=True)
            shutil.copy(work / f"{name}.ckpt", checkpoints / "last.ckpt")

    work.mkdir()
    with quiet_lightning():
        mri = sorted(demo_folder("mri").iterdir())
        (work / "contrast.csv").write_text(
            "image,contrast\n" + "".join(f"{p},{c}\n" for p, c in zip(mri, ("T1", "T2"), strict=True))
        )
        net = DiffusionUNet(spatial_dims=2, conditions=[ConditionSpec("contrast", "class", num_classes=2)], **tiny)  # type: ignore[arg-type]
        model = DiffusionModel(net=net, sampling=SamplingDefaults("ddim", 3), sample_size=[16, 16])
        train("mri-contrast", model, work / "contrast.csv", 2, "mri", ["contrast"], "ddpm_contrast")
        paths = save_phantom_set(work / "ct", phantom_family("ct", 4, (24, 24, 16), seed=1))
        rows = [f"{p},{str(p).replace('.nii.gz', '_mask.nii.gz')},{'ab'[i % 2]}" for i, p in enumerate(paths)]
        (work / "ct.csv").write_text("image,mask,label\n" + "\n".join(rows) + "\n")
        net = DiffusionUNet(spatial_dims=3, conditions=[ConditionSpec("label", "class", num_classes=2)], **tiny)  # type: ignore[arg-type]
        train(
            "ct-flow-3d",
            FlowModel(net=net, sampling=SamplingDefaults("euler", 3), sample_size=[16] * 3),
            work / "ct.csv",
            3,
            "ct",
            ["label"],
            "flow_ct_label_3d",
        )
        net = DiffusionUNet(spatial_dims=3, image_channels=1, **tiny)  # type: ignore[arg-type]
        model = DiffusionModel(net=net, sampling=SamplingDefaults("ddim", 3), sample_size=[16] * 3)
        train("mask2ct", model, work / "ct.csv", 3, "ct", [], "mask2ct_3d")
        net = DiffusionUNet(spatial_dims=2, **tiny)  # type: ignore[arg-type]
        model = DiffusionModel(net=net, sampling=SamplingDefaults("ddim", 3), sample_size=[16, 16])
        train("ct-2d", model, work / "ct.csv", 2, "ct", [])


# ------------------------------------------------------------------------------------------------------ checks


def _rows(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]


def fit_wrote(root: str, steps: int | None = None) -> Callable[[Walk, str], None]:
    """The fit printed its run folder and left ``last.ckpt`` (after ``steps`` steps) under ``runs/ROOT``."""

    def check(walk: Walk, output: str) -> None:
        assert "medgen fit: run folder" in output
        ckpt = walk.newest(f"{root}/**/last.ckpt")
        if steps is not None:
            import torch

            assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == steps

    return check


def generated(out: str, n: int = NUM_SAMPLES, **row: object) -> Callable[[Walk, str], None]:
    """``out`` holds ``n`` manifest rows whose files exist (with ``row``'s items), and ``generation.json``."""

    def check(walk: Walk, output: str) -> None:
        rows = _rows(walk.cwd / out / "manifest.jsonl")
        assert len(rows) == n, rows
        assert (walk.cwd / out / "generation.json").is_file()
        for r in rows:
            assert (walk.cwd / out / r["file"]).is_file()
            for k, v in row.items():
                assert r.get(k) == v or (isinstance(v, dict) and v.items() <= (r.get(k) or {}).items()), (k, r)

    return check


def report(out: str) -> Callable[[Walk, str], None]:
    """``out`` holds ``report.json`` (with metrics or samples) and ``report.html``."""

    def check(walk: Walk, output: str) -> None:
        data = json.loads((walk.cwd / out / "report.json").read_text())
        assert data, out
        assert (walk.cwd / out / "report.html").is_file()

    return check


def files(*paths: str) -> Callable[[Walk, str], None]:
    def check(walk: Walk, output: str) -> None:
        for p in paths:
            assert (walk.cwd / p).exists(), p

    return check


def inspect_lines(walk: Walk, output: str) -> None:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert [Path(x["path"]).name for x in lines] == ["scan.nii.gz", "series_folder", "chest_cr.dcm", "slice.png"]
    assert {x["format"] for x in lines} >= {"nifti", "png"} and all(len(x["shape"]) >= 2 for x in lines)
    assert lines[2]["spacing"] is None  # a CR radiograph without PixelSpacing: spacing unknown


def listed(*names: str) -> Callable[[Walk, str], None]:
    def check(walk: Walk, output: str) -> None:
        for name in names:
            assert re.search(rf"^{re.escape(name)}\s", output, re.M), output

    return check


def card(folder: str, **items: object) -> Callable[[Walk, str], None]:
    def check(walk: Walk, output: str) -> None:
        data = json.loads((walk.cwd / folder / "model_card.json").read_text())
        for k, v in items.items():
            assert data.get(k) == v, (k, data.get(k))
        assert (walk.cwd / folder / "model.safetensors").is_file() and (walk.cwd / folder / "config.yaml").is_file()

    return check


pair_masks = tuple(f"pairs/sample_{i:06d}_mask.nii.gz" for i in range(NUM_SAMPLES))


def reused_all(walk: Walk, output: str) -> None:
    """The demo printed that every stage came from the cache (a second ``make demo`` reuses the first's work)."""
    found = re.search(r"\((\d+) of (\d+) stages reused from the cache\)", output)
    assert found and found[1] == found[2], f"the second demo run recomputed stages:\n{output[-2000:]}"


def both(*checks: Callable[[Walk, str], None]) -> Callable[[Walk, str], None]:
    def check(walk: Walk, output: str) -> None:
        for c in checks:
            c(walk, output)

    return check


def replaced(old: str, new: str, extra: tuple[str, ...] = ()) -> Callable[[list[str], Walk], list[str]]:
    """:func:`small`, then the word ``old`` → ``new`` and ``extra`` appended."""

    def argv(words: list[str], walk: Walk) -> list[str]:
        return [new if w == old else w for w in small(words, walk)] + list(extra)

    return argv


def paired_real(walk: Walk) -> None:
    """``ct/`` and ``masks/`` get a CT phantom and its mask on the grid of each ``synth_ct/`` sample, same name."""
    import nibabel as nib
    import numpy as np

    from medgen.data.phantoms import phantom_family

    (walk.cwd / "masks").mkdir(exist_ok=True)
    for i, fake in enumerate(sorted((walk.cwd / "synth_ct").glob("sample_*.nii.gz"))):
        img = nib.load(fake)
        ph = phantom_family("ct", 1, img.shape, seed=100 + i)[0]
        nib.save(nib.Nifti1Image(ph.image.astype(np.int16), img.affine), walk.cwd / "ct" / fake.name)
        nib.save(nib.Nifti1Image(ph.mask.astype(np.uint8), img.affine), walk.cwd / "masks" / fake.name)


def ct_2d_sets(walk: Walk) -> None:
    """The README's CT-windowed unpaired evaluation reads 2D CT in HU, which no README command writes:
    ``real_slices/`` gets mid-slices of CT phantoms (2D NIfTI in HU), ``generated/`` the samples of a 2D CT diffusion
    model trained for 2 steps (:func:`walk_models`), written as NIfTI in HU by ``medgen generate`` in this process."""
    import nibabel as nib
    import numpy as np

    from medgen.cli import main
    from medgen.data.phantoms import phantom_family

    (walk.cwd / "real_slices").mkdir()
    for i, ph in enumerate(phantom_family("ct", 2 * NUM_SAMPLES, (32, 32, 16), seed=21)):
        image = ph.image[:, :, 8].astype(np.int16)
        nib.save(
            nib.Nifti1Image(image, np.diag([*ph.spacing[:2], 1.0, 1.0])), walk.cwd / "real_slices" / f"ct_{i}.nii.gz"
        )
    ckpt = walk.cwd.parent / "walk_models_data" / "ct-2d.ckpt"
    args = ["generate", "--checkpoint", str(ckpt), "--num-samples", str(NUM_SAMPLES), "--format", "nifti"]
    assert main([*args, "--out", str(walk.cwd / "generated")]) == 0


def benchmark(script: str, why: str) -> Step:
    """A benchmark the walk does not run; :func:`test_benchmark_scripts_import` checks that it still imports."""
    return Step(how=f"not run: {why}; test_benchmark_scripts_import checks {script}'s medgen imports", skip=why)


def check_imports(script: Path) -> None:
    """Every ``from medgen... import NAME`` of ``script`` (and of the benchmarks it imports) resolves."""
    import ast
    import importlib

    assert script.is_file(), script
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            local = script.parent / f"{node.module}.py"
            if local.is_file():
                check_imports(local)
            elif node.module.split(".")[0] == "medgen":
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name) or importlib.util.find_spec(f"{node.module}.{alias.name}"), (
                        f"{script.name}: from {node.module} import {alias.name}"
                    )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "medgen":
                    importlib.import_module(alias.name)


# ------------------------------------------------------------------------------------------------- the table

#: Appended to the evaluations of ``synth_ct/``: ``runs/flow_ct_label_3d`` is trained for 2 steps, so its samples
#: fail quality control (out of range) and would be skipped.
QC_FAILED = ("--include-qc-failed",)
#: ``make demo`` runs ``medgen demo --out demo_out``; the walk runs its quick settings (a shorter fine-tuning, fewer
#: samples: :class:`medgen.demo.stages.DemoSettings`).
DEMO = ("demo", "--quick", "--out", "demo_out")

#: README command (its :func:`key`) → how the walk runs and checks it. Commands are run in README order.
WALK: dict[str, Step] = {
    "make demo": Step(
        how="medgen demo --quick --out demo_out (the Makefile's target runs the full demo; the venv set-up it adds is "
        "this test's environment) in a copy of the session's quick demo folder (tests/demo_run.py), so it is the "
        "second run: every stage must come from the cache",
        prepare=lambda walk: shutil.copytree(walk.demo_run()["out"], walk.cwd / "demo_out"),
        argv=lambda words, walk: [sys.executable, "-m", "medgen", *DEMO],
        check=both(
            reused_all,
            files(
                "demo_out/index.html",
                "demo_out/augment/manifest.jsonl",
                "demo_out/evaluation/base_vs_anatomical/report.html",
                "demo_out/memorization/report.html",
                "demo_out/volume3d/axial.png",
            ),
            generated("demo_out/augment", 16),
        ),
    ),
    "make test": Step(how="not run: it is this test suite", skip="make test runs this test suite"),
    "medgen inspect scan.nii.gz series_folder/ chest_cr.dcm slice.png": Step(
        how="as written, on nibabel's anatomical.nii saved as scan.nii.gz, a CT phantom DICOM series, a CR phantom "
        "(MONOCHROME1, no PixelSpacing) and a PNG slice",
        check=inspect_lines,
    ),
    "medgen dataset --data.data_dir volumes/ --data.modality mri --data.spatial_dims 2 --data.image_size 128 "
    "--grid preview.png": Step(
        how="as written; volumes/ = the two real T1 volumes of the demo data", check=files("preview.png")
    ),
    "medgen dataset --config configs/data/ct_3d_volumes.yaml --data.data_dir ct/ --grid ct.png": Step(
        how="as written; ct/ = three 32x32x16 CT phantoms with masks", check=files("ct.png")
    ),
    "medgen fit --config configs/ddpm_2d.yaml --data.data_dir /data/brain_t1 --data.modality mri": Step(
        check=fit_wrote("runs/ddpm_2d")
    ),
    "medgen fit --config configs/flow_3d.yaml --config configs/trainer/gpu.yaml --data.data_dir /data/ct": Step(
        check=fit_wrote("runs/flow_3d")
    ),
    "medgen fit --config configs/smoke/ddpm_2d.yaml": Step(how="as written", check=fit_wrote("runs/smoke_ddpm_2d", 5)),
    "medgen fit --config configs/smoke/ddpm_2d.yaml --trainer.max_steps 10 "
    "--ckpt_path runs/smoke_ddpm_2d/lightning_logs/version_0/checkpoints/last.ckpt": Step(
        how="as written (resumes the previous fit)", check=fit_wrote("runs/smoke_ddpm_2d", 10)
    ),
    "medgen fit --config configs/ae_2d.yaml --data.data_dir /data/brain_t1": Step(check=fit_wrote("runs/ae_2d")),
    "medgen fit --config configs/ldm_2d.yaml --data.data_dir /data/brain_t1 "
    "--pretrained.autoencoder_from runs/ae_2d/lightning_logs/version_0/checkpoints/last.ckpt": Step(
        check=fit_wrote("runs/ldm_2d")
    ),
    "medgen generate --checkpoint runs/ddpm_2d/.../last.ckpt --num-samples 5000 --out synth/ --batch-size 64": Step(
        check=generated("synth")
    ),
    "medgen generate --checkpoint mri-brain-2d --num-samples 100 --out synth_brain/": Step(
        how="the shipped checkpoint, by name", check=generated("synth_brain")
    ),
    "medgen generate --checkpoint runs/ddpm_contrast/.../last.ckpt --num-samples 100 --out synth_t2/ "
    "--condition contrast=T2 --guidance 3": Step(
        how="runs/ddpm_contrast: contrast-conditioned, 2 steps (see walk_models)",
        check=generated("synth_t2", condition={"contrast": "T2"}, guidance=3.0),
    ),
    "medgen generate --checkpoint runs/flow_ct_label_3d/.../last.ckpt --num-samples 200 --out synth_ct/ "
    "--conditions-csv balanced.csv --format nifti": Step(
        how="runs/flow_ct_label_3d: label-conditioned, 2 steps; balanced.csv: label a/b",
        check=generated("synth_ct"),
    ),
    "medgen generate --checkpoint runs/mask2ct_3d/.../last.ckpt --num-samples 10 --out pairs/ "
    "--condition mask=liver_mask.nii.gz": Step(
        how="runs/mask2ct_3d: mask channel, 2 steps; liver_mask.nii.gz = a CT phantom's label mask",
        check=both(generated("pairs", condition={"mask": "liver_mask.nii.gz"}), files(*pair_masks)),
    ),
    "medgen export runs/ddpm_2d/.../last.ckpt checkpoints/my-mri-ddpm --licence CC-BY-4.0 "
    "--metrics eval/report.json": Step(
        how="eval/report.json is written later in the README (evaluate); the walk gives the demo's report",
        argv=replaced("eval/report.json", "demo_out/evaluation/base_vs_mni152/report.json"),
        check=card("checkpoints/my-mri-ddpm", licence="CC-BY-4.0", family="diffusion"),
    ),
    "medgen checkpoints list": Step(how="as written", check=listed("my-mri-ddpm", "mri-brain-2d")),
    "medgen checkpoints verify my-mri-ddpm": Step(how="as written (the export above, found first)"),
    "medgen export my-mri-ddpm bundles/my-mri-ddpm --format monai-bundle --sampler ddim --steps 50": Step(
        how="as written",
        check=files("bundles/my-mri-ddpm/configs/inference.json", "bundles/my-mri-ddpm/models/model.pt"),
    ),
    "medgen fit --config checkpoints/my-mri-ddpm/config.yaml --config configs/finetune/default.yaml "
    "--pretrained.init_from my-mri-ddpm --data.data_dir /data/my_t1 --data.image_size 256": Step(
        check=fit_wrote("runs/finetune", 2)
    ),
    "medgen evaluate --real real_slices/ --fake generated/manifest.jsonl --out eval/ --window=-1024,3071": Step(
        how="as written; real_slices/ = 8 CT phantom slices (2D NIfTI, HU), generated/ = 4 samples of a 2D CT model "
        "trained for 2 steps (NIfTI, HU): see ct_2d_sets",
        prepare=ct_2d_sets,
        check=report("eval"),
    ),
    "medgen evaluate --paired --real ct/ --fake synth_ct/ --mask masks/ --window=-1024,3071 --out eval_paired/": Step(
        how="ct/ and masks/ get a CT phantom and its mask on each synth_ct sample's grid, by name",
        prepare=paired_real,
        argv=lambda words, walk: small(words, walk) + list(QC_FAILED),
        check=report("eval_paired"),
    ),
    "medgen evaluate --paired --protocol synthrad2025 --real ct/ --fake synth_ct/ --mask masks/ --out eval_sr/": Step(
        how="as the paired evaluation above",
        argv=lambda words, walk: small(words, walk) + list(QC_FAILED),
        check=report("eval_sr"),
    ),
    "medgen memorization --train /data/train_slices --generated synth/manifest.jsonl --holdout /data/test_slices "
    "--out mem/": Step(check=report("mem")),
    "medgen memorization index --train /data/train_slices --out mem_index/": Step(check=files("mem_index")),
    "medgen generate --checkpoint my-mri-ddpm --num-samples 1000 --out synth_gated/ "
    "--memorization-index mem_index/": Step(how="my-mri-ddpm = the export above", check=generated("synth_gated")),
    "medgen memorization train-embedder --train /data/train_slices --out my_embedder.safetensors": Step(
        how="with --steps 5 (default 800: minutes)",
        argv=lambda words, walk: small(words, walk) + ["--steps", "5"],
        check=files("my_embedder.safetensors"),
    ),
    "medgen encode --checkpoint runs/ae_2d/lightning_logs/version_0/checkpoints/last.ckpt --config configs/ldm_2d.yaml "
    "--data.data_dir /data/brain_t1 --out latents/brain_t1": Step(
        how="configs/ldm_2d.yaml composed with its smoke twin, as fit's", check=files("latents/brain_t1/latents.json")
    ),
    "medgen fit --config configs/ldm_2d.yaml --data.data_dir /data/brain_t1 --data.latents_dir latents/brain_t1 "
    "--pretrained.autoencoder_from runs/ae_2d/lightning_logs/version_0/checkpoints/last.ckpt": Step(
        check=fit_wrote("runs/ldm_2d")
    ),
    "python benchmarks/ddp_scaling.py": benchmark(
        "benchmarks/ddp_scaling.py", "minutes of 1- and 2-process training; results/ddp_scaling.txt"
    ),
    "python benchmarks/memory_estimate.py": benchmark(
        "benchmarks/memory_estimate.py", "every full-size config on the meta device; results/memory_estimate.txt"
    ),
    "python benchmarks/train_step.py": benchmark("benchmarks/train_step.py", "minutes; results/train_step.txt"),
    "python benchmarks/data_pipeline.py": benchmark(
        "benchmarks/data_pipeline.py", "minutes; results/data_pipeline.txt"
    ),
    "python benchmarks/latent_mri_2d_64.py": benchmark(
        "benchmarks/latent_mri_2d_64.py", "18 minutes; results/latent_mri_2d_64.txt"
    ),
    "python benchmarks/latent_mri_3d.py": benchmark(
        "benchmarks/latent_mri_3d.py", "about 35 minutes; results/latent_mri_3d.txt"
    ),
    "python benchmarks/sampling.py": benchmark("benchmarks/sampling.py", "minutes of sampling"),
    "python benchmarks/gan_throughput.py": benchmark(
        "benchmarks/gan_throughput.py", "about 17 minutes on busy cores; results/gan_throughput.txt"
    ),
    "python benchmarks/pix2pix_mri_2d.py": benchmark(
        "benchmarks/pix2pix_mri_2d.py", "about 10 minutes of training; results/pix2pix_mri_2d.txt"
    ),
    "python benchmarks/cyclegan_mri_2d.py": benchmark(
        "benchmarks/cyclegan_mri_2d.py", "about 20 minutes of training; results/cyclegan_mri_2d.txt"
    ),
    "python benchmarks/decode_memory.py": benchmark(
        "benchmarks/decode_memory.py", "1-4 minutes of decoding; results/decode_memory.txt"
    ),
    "python benchmarks/gan_mri_2d_32.py": benchmark(
        "benchmarks/gan_mri_2d_32.py", "3.5 minutes; results/gan_mri_2d_32.txt"
    ),
    "python benchmarks/fid_throughput.py": benchmark("benchmarks/fid_throughput.py", "minutes of Inception passes"),
    "python benchmarks/memorization_search.py": benchmark(
        "benchmarks/memorization_search.py", "minutes (10,000 x 100,000 search)"
    ),
    "python benchmarks/memorization_f1.py": benchmark(
        "benchmarks/memorization_f1.py", "minutes; results/memorization_f1_unseen.txt"
    ),
    "python benchmarks/cli_startup.py": Step(
        how="with --runs 1 (default 7)",
        argv=lambda words, walk: small(words, walk) + ["--runs", "1"],
        check=lambda walk, output: (
            None if re.search(r"^medgen --help\s+[\d.]+ s", output, re.M) else pytest.fail(output)
        ),
    ),
}

#: Lines medgen prints on purpose that the warning check would otherwise take for Python warnings.
ALLOWED_LINES: tuple[str, ...] = ()

#: A Python warning or traceback in a command's output.
PROBLEM = re.compile(r"\b\w*Warning\b:|warnings\.warn|Traceback \(most recent call last\)|^\S+\.py:\d+: ", re.M)


def problems(output: str) -> list[str]:
    """Lines of ``output`` that are Python warnings or tracebacks not written by medgen on purpose."""
    return [line for line in output.splitlines() if PROBLEM.search(line) and line.strip() not in ALLOWED_LINES]


def test_problem_lines() -> None:
    assert problems("x/y.py:21: `isinstance(treespec, LeafSpec)` is deprecated\nok") == [
        "x/y.py:21: `isinstance(treespec, LeafSpec)` is deprecated"
    ]
    assert problems("a UserWarning: b\nTraceback (most recent call last):\nfine: warning: small N") == [
        "a UserWarning: b",
        "Traceback (most recent call last):",
    ]


def test_walk_table_matches_the_readme() -> None:
    """Every README command has an entry and every entry is a README command: the README and the walk agree."""
    commands = [key(c) for c in readme_commands(README.read_text(encoding="utf-8"))]
    missing = [c for c in commands if c not in WALK and not c.startswith("medgen ")]  # medgen: the generic rule
    stale = [k for k in WALK if k not in commands]
    assert not missing, "README commands without a walk entry in tests/test_readme_walk.py:\n" + "\n".join(missing)
    assert not stale, "walk entries whose command is no longer in README.md:\n" + "\n".join(stale)
    assert len(set(commands)) == len(commands), "a README command appears twice; the walk keys would collide"
    # the walk runs `make demo` as `medgen demo` with small settings: the target must still be that command
    recipe = re.search(r"^demo:.*\n\t(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert recipe and "/medgen demo --out demo_out" in recipe.group(1), "the Makefile's demo target changed"


BROKEN_BENCHMARKS: dict[str, str] = {}


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(s, marks=pytest.mark.xfail(reason=BROKEN_BENCHMARKS[s], strict=True))
        if s in BROKEN_BENCHMARKS
        else s
        for s in sorted(w.split()[1] for k, w in ((k, k) for k in WALK) if k.startswith("python benchmarks/"))
    ],
)
def test_benchmark_scripts_import(script: str) -> None:
    """The README's benchmark commands are not walked (minutes each): their medgen imports must still exist."""
    check_imports(ROOT / script)


def run_step(walk: Walk, command: str) -> str | None:
    """Run one README command as the walk does; the combined output (None when skipped)."""
    words = shlex.split(command, comments=True)
    step = WALK.get(key(command), Step())
    if step.skip:
        return None
    if step.prepare:
        step.prepare(walk)
    argv = (step.argv or small)(words, walk)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=walk.cwd, env=walk.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=900, check=False)  # fmt: skip
    walk.times.append((command, time.perf_counter() - start))
    output = done.stdout
    shown = " ".join(shlex.quote(a) for a in argv)
    assert done.returncode == 0, f"README command\n  {command}\nran as\n  {shown}\nexit {done.returncode}:\n{output}"
    bad = problems(output)
    assert not bad, f"README command\n  {command}\nprinted warnings or tracebacks:\n" + "\n".join(bad)
    if step.check:
        step.check(walk, output)
    return output


def make_walk(cwd: Path, demo_run: Callable[[], dict[str, Any]]) -> Walk:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["MEDGEN_CHECKPOINTS"] = str(cwd / "checkpoints")
    env.setdefault("MEDGEN_CACHE", str(cwd.parent / "cache"))
    env["HF_HUB_OFFLINE"] = "1"
    return Walk(cwd, env, demo_run)


@pytest.mark.slow
def test_readme_walk(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every README command in README order at small settings, each checked; no foreign warnings or tracebacks."""
    start = time.perf_counter()
    cwd = tmp_path / "work"
    cwd.mkdir()
    walk = make_walk(cwd, lambda: quick_run(tmp_path_factory))
    world(cwd)
    walk_models(cwd)
    walk.times.append(("(walk data and conditioned models)", time.perf_counter() - start))
    for command in readme_commands(README.read_text(encoding="utf-8")):
        run_step(walk, command)
    print(f"README walk: {time.perf_counter() - start:.0f} s")
    for command, seconds in walk.times:
        print(f"  {seconds:6.1f} s  {command}")
