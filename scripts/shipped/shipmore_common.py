"""Steps shared by the scripts that train four shipped checkpoints (3D latent MRI, CT, X-ray, T1 -> T2).

The checkpoints are ``mri-brain-3d-latent``, ``ct-2d``, ``xray-2d`` and ``mri-t1-to-t2-2d``; the steps: fit,
export, untrained baseline, KID against real images, sample pictures and the card's training record. Every model
step runs the ``medgen`` CLI in a fresh process (``benchmarks/cli_runs.py``).

Training runs with one torch thread (``OMP_NUM_THREADS=1``): on 2 shared cores a second thread spin-waits.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch starts its thread pool

import torch  # noqa: E402
import yaml  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
for _path in (REPO, REPO / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from benchmarks.cli_runs import last_checkpoint, medgen, save_upscaled_grid  # noqa: E402
from benchmarks.machine import describe  # noqa: E402

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
CHECKPOINTS = REPO / "checkpoints"


def fit(config: Path, root: Path, extra: list[str], reuse: bool) -> tuple[Path, float, list[str]]:
    """``medgen fit --config CONFIG`` into ``root`` (skipped when ``reuse`` and a ``last.ckpt`` exists).

    Returns:
        The run's ``last.ckpt``, the fit's wall time in seconds (reused: from the start of the run, its
        ``hparams.yaml``, to the last write of ``last.ckpt``) and the command as run.
    """
    args = ["fit", f"--config={config.relative_to(REPO)}", *extra, f"--trainer.default_root_dir={root}", *QUIET]
    if reuse and list(root.glob("lightning_logs/*/checkpoints/last.ckpt")):
        ckpt = last_checkpoint(root)
        return ckpt, ckpt.stat().st_mtime - (ckpt.parents[1] / "hparams.yaml").stat().st_mtime, ["medgen", *args]
    seconds = medgen(args)
    return last_checkpoint(root), seconds, ["medgen", *args]


def trained_steps(ckpt: Path) -> int:
    """The optimizer steps recorded in a Lightning checkpoint (``global_step``)."""
    from medgen.store.ckpt import read_checkpoint

    return int(read_checkpoint(ckpt).get("global_step", 0))


def export(
    ckpt: Path, out: Path, dtype: str | None, extra: dict[str, Any] | None = None, metrics: Path | None = None
) -> Path:
    """``medgen export CKPT OUT`` (EMA weights, licence Apache-2.0; ``--dtype``, ``--card-extra``, ``--metrics``)."""
    args = ["export", str(ckpt), str(out), "--name", out.name, "--licence", "Apache-2.0"]
    if dtype:
        args += ["--dtype", dtype]
    if metrics is not None:
        args += ["--metrics", str(metrics)]
    with tempfile.TemporaryDirectory() as tmp:
        if extra is not None:
            extra_file = Path(tmp) / "card_extra.json"
            extra_file.write_text(json.dumps(extra, indent=1))
            args += ["--card-extra", str(extra_file)]
        medgen(args)
    repo_relative_card(out)
    return out


def repo_relative_card(folder: Path) -> dict[str, Any]:
    """Rewrite ``folder``'s card with paths under the repository made relative to it, and its digest renewed.

    The scripts run with absolute paths (``--out`` defaults under the repository); a shipped card should name
    ``runs/shipped/...`` as a rerun on any machine writes it, not this machine's checkout.
    """
    from medgen.store.card import card_digest

    path = folder / "model_card.json"
    text = path.read_text().replace(json.dumps(str(REPO) + "/")[1:-1], "")
    card = json.loads(text)
    card["sha256"] = card_digest(card)
    path.write_text(json.dumps(card, indent=2) + "\n")
    return card


def untrained_export(ckpt: Path, config: Path, out: Path) -> Path:
    """The checkpoint's model with its generating network re-initialised (seed 0), exported to ``out``.

    The trained parts that are not the generator (a latent model's autoencoder and scale) stay trained, so the
    baseline isolates what training the generator bought.
    """
    from medgen.models.base import MODEL_CLASSES
    from medgen.models.build import model_from_checkpoint
    from medgen.store.ckpt import read_checkpoint

    ckpt_data = read_checkpoint(ckpt)
    model = model_from_checkpoint(ckpt_data, ckpt, MODEL_CLASSES, True)
    net_args = yaml.safe_load(config.read_text())["model"]["init_args"]["model"]["init_args"]["net"]["init_args"]
    torch.manual_seed(0)
    fresh = type(model.net)(**net_args)  # type: ignore[union-attr]
    model.net.load_state_dict(fresh.state_dict())  # type: ignore[union-attr]
    return model.save_pretrained(out, name=f"untrained-{out.name}", describe=dict(ckpt_data["medgen"]))


def generate(model: Path | str, out: Path, n: int, seed: int = 0) -> float:
    """``medgen generate`` of ``n`` NIfTI samples into ``out``; the wall time."""
    return medgen(["generate", "--checkpoint", str(model), "--num-samples", str(n), "--out", str(out),
                   "--seed", str(seed), "--batch-size", "16", "--format", "nifti"])  # fmt: skip


def evaluate_kid(real: Path, fake: Path, out: Path, window: str, reuse: bool = False) -> dict[str, Any]:
    """``medgen evaluate --metrics kid`` of ``fake`` against ``real`` (both clipped to ``window``); the report.

    With ``reuse``, an existing ``out/report.json`` is read instead (the samples are reused as well: generation
    resumes and skips finished files).
    """
    if not (reuse and (out / "report.json").exists()):
        medgen(["evaluate", "--real", str(real), "--fake", str(fake), "--out", str(out), f"--window={window}",
                "--metrics", "kid", "--seed", "0", "--include-qc-failed"])  # fmt: skip
    return dict(json.loads((out / "report.json").read_text()))


def kid_record(trained: dict[str, Any], untrained: dict[str, Any], factor: float) -> dict[str, Any]:
    """The card's KID block: trained (value, CI), untrained, real-vs-real, and the claim the slow test checks."""
    kid, base = trained["metrics"]["kid"], untrained["metrics"]["kid"]
    return {
        "kid": kid["value"], "kid_ci95": kid.get("ci95"), "kid_untrained": base["value"],
        "kid_untrained_ci95": base.get("ci95"), "kid_real_vs_real": kid["baseline"],
        "n_fake": trained["n_fake"], "n_real": trained["n_real"], "extractor": trained["protocol"]["extractor"],
        "protocol": {k: trained["protocol"].get(k) for k in ("slicing", "window", "sampling_unit", "ci95")},
        "claim": {"kid_below_untrained": True, "kid_within_factor_of_real_vs_real": factor},
        "claim_met": bool(kid["value"] < base["value"] and kid["value"] <= factor * max(kid["baseline"], 1e-4)),
    }  # fmt: skip


def read_images(folder: Path, n: int) -> list[torch.Tensor]:
    """The first ``n`` NIfTI images of ``folder`` (sorted), float tensors of their stored shape without unit axes."""
    import nibabel as nib
    import numpy as np

    paths = sorted(folder.rglob("*.nii.gz"))[:n]
    return [torch.as_tensor(np.asarray(nib.load(p).dataobj), dtype=torch.float32).squeeze() for p in paths]


def picture_2d(rows: dict[str, list[torch.Tensor]], path: Path, window: tuple[float, float]) -> Path:
    """One row per set (e.g. real, samples, untrained) of 2D images ``(X, Y)`` shown with ``window`` to [-1, 1]."""
    lo, hi = window
    tiles = []
    for images in rows.values():
        for image in images:
            shown = (image.clamp(lo, hi) - lo) / (hi - lo) * 2 - 1
            tiles.append(shown[None])  # save_grid shows RAS (x, y) with anterior up
    ncol = len(next(iter(rows.values())))
    return save_upscaled_grid(torch.stack(tiles), path, ncol=ncol, zoom=2)


def training_record(command: list[str], steps: dict[str, int], seconds: dict[str, float]) -> dict[str, Any]:
    """The card's ``training`` field: command, config, script, steps, wall time (s) of each stage, the machine."""
    return {
        "command": " ".join(shlex.quote(c) for c in command),
        "config": next(c.split("=", 1)[1] for c in command if c.startswith("--config=")),
        "script": str(Path(sys.argv[0]).resolve().relative_to(REPO)),
        "steps": steps,
        "wall_time_s": {k: round(v, 1) for k, v in seconds.items()},
        "machine": describe(),
        "date": time.strftime("%Y-%m-%d"),
    }


def card_sha256(folder: Path) -> str:
    """The digest recorded in ``folder``'s ``model_card.json``."""
    return str(json.loads((folder / "model_card.json").read_text())["sha256"])


def folder_mb(folder: Path) -> float:
    """Size of the files of ``folder`` in MB."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def write_real_2d(
    config: Path, data_dir: Path, out: Path, hu_window: tuple[float, float] | None, max_images: int | None = None
) -> int:
    """The training images of ``config``'s data section (on ``data_dir``) as ``medgen fit`` prepares them, as NIfTI.

    Written in [-1, 1], or mapped back to HU through ``hu_window`` for CT (generated CT is written in HU). With
    ``max_images``, a seeded random subset of that many (Inception features on 2 CPU cores cost ~0.1 s an image).

    Returns:
        The number of images written.
    """
    import numpy as np

    from medgen.data.datamodule import MedicalImageDataModule
    from medgen.generation.writers import write_sample

    data = dict(yaml.safe_load(config.read_text())["data"])
    dm = MedicalImageDataModule(**{**data, "data_dir": str(data_dir)})
    dm.setup("fit")
    train = dm.train_set
    assert train is not None
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0)).tolist()  # type: ignore[arg-type]
    keep = sorted(order[:max_images] if max_images is not None else order)
    units = None if hu_window is None else {"kind": "window", "low": hu_window[0], "high": hu_window[1], "unit": "HU"}
    for k in keep:
        write_sample(train[k]["image"], out / f"real_{k:04d}.nii.gz", "nifti", np.eye(4), units)
    return len(keep)


def run_unpaired_2d(
    name: str, kind: str, data: list[dict[str, str]], factor: float, argv: list[str] | None = None
) -> None:
    """Write the phantom set, fit, export, evaluate (KID vs real; untrained and real-vs-real) and card ``name``.

    Args:
        name: Checkpoint name (``ct-2d``, ``xray-2d``); its config is ``configs/shipped/NAME.yaml``.
        kind: Data set of ``scripts/shipped/phantom_data.py`` (``ct`` or ``xray``).
        data: The card's ``data_sources`` (``name``, ``licence``, ``role`` of each: what is real, what phantom).
        factor: The card's claim: KID at most ``factor`` times the real-vs-real KID (and below untrained).
        argv: Command-line arguments (default: ``sys.argv``).
    """
    import argparse

    from phantom_data import write_set

    config = REPO / "configs" / "shipped" / f"{name}.yaml"
    parser = argparse.ArgumentParser(description=f"Train, export, evaluate and card the shipped {name} checkpoint")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "shipped" / name.replace("-", "_"))
    parser.add_argument("--export-to", type=Path, default=CHECKPOINTS / name)
    parser.add_argument("--num-samples", type=int, default=64, help="images generated (trained and untrained)")
    parser.add_argument("--num-real", type=int, default=96, help="real training images KID compares with")
    parser.add_argument("--dtype", default="float16", help="export dtype (empty: float32)")
    parser.add_argument("--reuse", action="store_true", help="reuse a finished fit, samples and reports under --out")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    start = time.perf_counter()
    datalist = write_set(kind, out / "data")
    ckpt, fit_s, command = fit(config, out, [f"--data.data_dir={datalist}"], args.reuse)
    folder = export(ckpt, args.export_to, args.dtype or None)
    untrained = untrained_export(ckpt, config, out / "untrained_model")
    generate(folder, out / "generated", args.num_samples)
    generate(untrained, out / "untrained", args.num_samples)
    hu = (-1000.0, 1000.0) if kind == "ct" else None
    if not (args.reuse and (out / "real").exists()):
        write_real_2d(config, datalist, out / "real", hu, args.num_real)
    window = f"{hu[0]:g},{hu[1]:g}" if hu else "-1,1"
    trained_report = evaluate_kid(out / "real", out / "generated", out / "eval_trained", window, args.reuse)
    untrained_report = evaluate_kid(out / "real", out / "untrained", out / "eval_untrained", window, args.reuse)
    kid = kid_record(trained_report, untrained_report, factor)
    shown = 8
    rows = {"real": read_images(out / "real", shown), "samples": read_images(out / "generated", shown),
            "untrained": read_images(out / "untrained", shown)}  # fmt: skip
    picture_2d(rows, folder / "samples.png", hu or (-1.0, 1.0))
    seconds = {"fit": fit_s, "total": time.perf_counter() - start}
    record = training_record(command, {"flow": trained_steps(ckpt)}, seconds)
    extra = {"training": record, "data_sources": data, "evaluation": {"kid": kid},
             "picture": "samples.png: rows real | samples | untrained"}  # fmt: skip
    export(ckpt, folder, args.dtype or None, extra, out / "eval_trained" / "report.json")
    print(f"{name}: KID {kid['kid']:.4g} {kid['kid_ci95']} untrained {kid['kid_untrained']:.4g} real-vs-real "
          f"{kid['kid_real_vs_real']:.4g} claim met {kid['claim_met']}; {folder_mb(folder):.2f} MB; sha256 "
          f"{card_sha256(folder)}; {describe()}")  # fmt: skip
