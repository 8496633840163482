"""Sampler overhead and quality vs number of steps, on the small real-MRI models of the quality test.

Overhead: wall time of a whole sampling call divided by (number of network evaluations x the time of one
bare network forward at the same batch size), measured in the same run (target <= 1.02). Quality: the
weight-free feature MMD² to the real slices (medgen.evaluation.quick; lower is better) for
ddpm-1000, ddim-50, dpm++-20, unipc-10, flow Euler-30 and flow Heun-15.

    python benchmarks/sampling.py [--diffusion-ckpt PATH] [--flow-ckpt PATH] [--num-samples 64]

Without checkpoints it first trains both with configs/quality/{ddpm,flow}_mri_2d_32.yaml (a few minutes each)
into runs/bench_sampling/ and reuses them on later runs.

Sampler table of a shipped checkpoint (``--checkpoint``): KID against real images, its 95 % CI and cost per
sampler, and the fewest network evaluations (NFE) whose KID lies inside the CI of the reference sampler
(ddpm-1000 for diffusion; a many-step Heun for flow):

    python benchmarks/sampling.py --checkpoint mri-brain-2d --kid --num-samples 256 \
        --out runs/sampling/mri-brain-2d [--real DIR] [--samplers ddim-50,...] [--shard i/n] [--record]

Each sampler's N samples (seed 0, batches of 32, one torch thread, cheapest sampler first) are drawn by
``medgen generate`` into ``OUT/samples/SAMPLER-STEPS``, which resumes a killed run; ``--shard i/n`` draws shard
i of n only (indices i, i+n, ...; start one process per shard, e.g. two under ``nice -n 19`` with
``OMP_NUM_THREADS=1``) and stops. Without ``--shard`` the missing samples are drawn (none with
``--score-only``), then with ``--kid`` each complete set is scored with ``medgen evaluate --metrics kid``
against ``--real`` (default: the checkpoint script's real set, in the card's window), an unfinished one on its
first ``--interim`` samples (labelled interim), and the table is printed; ``--record`` also writes it to
benchmarks/results/sampling_NAME.txt and to the card's ``sampler_table`` field (the card's digest is renewed;
weights and config.yaml are untouched). ddpm-1000 at N=256 and 64x64 costs about 80 CPU-minutes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from medgen.cli import main as medgen_main
from medgen.data.datamodule import MedicalImageDataModule
from medgen.evaluation.quick import quick_distance
from medgen.models import GenerativeModel

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: benchmarks.* (machine, cli_runs) from the repository
    sys.path.insert(0, str(ROOT))
RUNS = [
    ("diffusion", "ddpm", 1000),
    ("diffusion", "ddim", 50),
    ("diffusion", "dpm++", 20),
    ("diffusion", "unipc", 10),
    ("flow", "euler", 30),
    ("flow", "heun", 15),
]


def train(config: str, root: Path) -> Path:
    assert (
        medgen_main(
            [
                "fit",
                f"--config={ROOT / 'configs' / 'quality' / config}",
                f"--trainer.default_root_dir={root}",
                "--trainer.enable_progress_bar=false",
                "--trainer.enable_model_summary=false",
            ]
        )
        == 0
    )
    return next(root.glob("lightning_logs/version_*/checkpoints/last.ckpt"))


class CountingNet(torch.nn.Module):
    """Wraps a net and counts its forward calls."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.inner = net
        self.calls = 0
        for name in ("spatial_dims", "in_channels", "condition_names", "image_channels", "control_channels", "config"):
            if hasattr(net, name):
                setattr(self, name, getattr(net, name))

    def forward(self, x, t, cond=None):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.inner(x, t, cond)


@torch.no_grad()
def forward_time(net: torch.nn.Module, shape: tuple[int, ...], repeats: int = 20) -> float:
    x = torch.randn(shape)
    t = torch.full((shape[0],), 500.0)
    net(x, t)
    start = time.perf_counter()
    for _ in range(repeats):
        net(x, t)
    return (time.perf_counter() - start) / repeats


# ---------------------------------------------------------------------------------------------- sampler table
#: Samplers of the table per model family, ``METHOD-STEPS``; the first is the reference whose KID CI the others
#: are compared with (diffusion: the 1000-step DDPM of the issue; flow: the most accurate solver, Heun, with
#: many steps).
TABLE_SAMPLERS = {
    "diffusion": ["ddpm-1000", "ddim-50", "dpm++-20", "unipc-10", "ddim-20", "dpm++-10", "unipc-5"],
    "flow": ["heun-100", "euler-10", "euler-30", "euler-100", "heun-5", "heun-15", "midpoint-10"],
}
#: The real set each shipped checkpoint's card KID was measured against (written by its script when missing).
REAL_SETS = {"mri-brain-2d": "runs/shipped/mri_brain_2d/real", "ct-2d": "runs/shipped/ct_2d/real"}
GOAL_NFE = 20
SHARED_NOTE = (
    "The machine was shared with other jobs: wall seconds depend on their load; CPU seconds per sample at one "
    "torch thread are the comparable cost."
)


def parse_sampler(spec: str) -> tuple[str, int]:
    """``'dpm++-20'`` -> ``('dpm++', 20)``."""
    method, _, steps = spec.rpartition("-")
    if not method or not steps.isdigit():
        raise SystemExit(f"--samplers: expected METHOD-STEPS such as ddim-50, got '{spec}'")
    return method, int(steps)


@contextmanager
def _invocation(argv: list[str], env: dict[str, str]) -> Iterator[None]:
    """``sys.argv`` and environment variables as a ``medgen`` run in its own process would see them."""
    saved_argv, saved_env = sys.argv, {k: os.environ.get(k) for k in env}
    sys.argv = argv
    os.environ.update(env)
    try:
        yield
    finally:
        sys.argv = saved_argv
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _done(folder: Path, indices: range) -> int:
    """How many of ``indices`` ``medgen generate`` has finished in ``folder`` (valid manifest rows)."""
    from medgen.generation.manifest import valid_rows

    if not folder.is_dir():
        return 0
    rows = valid_rows(folder)
    return sum(1 for i in indices if i in rows)


def draw(name: str, spec: str, n: int, out: Path, shard: tuple[int, int], batch_size: int) -> None:
    """``medgen generate`` of shard ``shard`` of ``spec``'s ``n`` samples (seed 0) in this process, with its cost.

    Runs in-process (``sys.argv``/``RANK``/``WORLD_SIZE`` set as for a separate ``medgen generate``) so that
    ``time.process_time`` sees the sampling only, not an interpreter start. Each finished invocation appends
    its CPU and wall seconds and the samples it wrote to ``OUT/cost/SPEC.jsonl``; an invocation that is killed
    leaves no cost row (its finished samples count as done, not in the cost).
    """
    method, steps = parse_sampler(spec)
    rank, world = shard
    folder = out / "samples" / spec
    mine = range(rank, n, world)
    before = _done(folder, mine)
    if before == len(mine):
        return
    args = ["generate", "--checkpoint", name, "--num-samples", str(n), "--out", str(folder), "--seed", "0",
            "--batch-size", str(batch_size), "--format", "nifti", "--sampler", method, "--steps", str(steps),
            "--max-retries", "0"]  # fmt: skip
    print(f"$ RANK={rank} WORLD_SIZE={world} medgen {shlex.join(args)}  ({before}/{len(mine)} done)", flush=True)
    cpu, wall = time.process_time(), time.perf_counter()
    with _invocation(["medgen", *args], {"RANK": str(rank), "WORLD_SIZE": str(world)}):
        assert medgen_main(args) == 0
    row = {"rank": rank, "world_size": world, "written": _done(folder, mine) - before,
           "cpu_s": round(time.process_time() - cpu, 2), "wall_s": round(time.perf_counter() - wall, 2),
           "torch_threads": torch.get_num_threads(), "nice": os.nice(0), "batch_size": batch_size,
           "load_avg_1min": round(os.getloadavg()[0], 2),
           "finished": dt.datetime.now(dt.timezone.utc).isoformat()}  # fmt: skip
    (out / "cost").mkdir(parents=True, exist_ok=True)
    with (out / "cost" / f"{spec}.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")


def cost(out: Path, spec: str) -> dict[str, Any] | None:
    """CPU and wall seconds per sample over the finished invocations of ``spec`` (None: none finished)."""
    path = out / "cost" / f"{spec}.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    written = sum(r["written"] for r in rows)
    if not written:
        return None
    return {"cpu_s_per_sample": sum(r["cpu_s"] for r in rows) / written,
            "wall_s_per_sample": sum(r["wall_s"] for r in rows) / written, "costed_samples": written,
            "cost_rows": rows}  # fmt: skip


def count_nfe(model: GenerativeModel, spec: str) -> int:
    """Network evaluations of one sampling call of ``spec`` (one sample), counted as :class:`CountingNet` does."""
    method, steps = parse_sampler(spec)
    counting = CountingNet(model.net)
    model.net = counting  # type: ignore[assignment]
    try:
        model.sample(1, generator=torch.Generator().manual_seed(0), method=method, num_steps=steps)
    finally:
        model.net = counting.inner  # type: ignore[assignment]
    return counting.calls


def real_set(name: str, real: Path | None, card: dict[str, Any]) -> Path:
    """The real images: ``real``, else the shipped checkpoint's set, written by its script's functions if missing."""
    if real is not None:
        return real
    if name not in REAL_SETS:
        raise SystemExit(f"--real: no default real set for '{name}' (have: {', '.join(REAL_SETS)})")
    folder = ROOT / REAL_SETS[name]
    if list(folder.glob("*.nii.gz")):
        return folder
    sys.path.insert(0, str(ROOT / "scripts" / "shipped"))
    if name == "mri-brain-2d":
        import mri_brain_2d

        return Path(mri_brain_2d.write_real(folder))
    import shipmore_common as common
    from phantom_data import write_set

    datalist = write_set("ct", folder.parent / "data")
    n_real = int(card["evaluation"]["kid"]["n_real"])
    common.write_real_2d(ROOT / "configs" / "shipped" / "ct-2d.yaml", datalist, folder, (-1000.0, 1000.0), n_real)
    return folder


def score(real: Path, fake: Path, out: Path, window: str) -> dict[str, Any]:
    """``medgen evaluate --metrics kid`` of ``fake`` against ``real`` (reused when ``out/report.json`` exists)."""
    from benchmarks.cli_runs import medgen

    if not (out / "report.json").exists():
        medgen(["evaluate", "--real", str(real), "--fake", str(fake), "--out", str(out), f"--window={window}",
                "--metrics", "kid", "--seed", "0", "--include-qc-failed"])  # fmt: skip
    return dict(json.loads((out / "report.json").read_text()))


def interim_set(folder: Path, n: int, into: Path) -> Path:
    """Links in ``into`` (emptied first) to the first ``n`` finished samples of ``folder``, by index."""
    from medgen.generation.manifest import valid_rows

    rows = valid_rows(folder)
    into.mkdir(parents=True, exist_ok=True)
    for old in into.iterdir():
        old.unlink()
    for i in sorted(rows)[:n]:
        (into / rows[i]["file"]).symlink_to((folder / rows[i]["file"]).resolve())
    return into


def table_rows(args: argparse.Namespace, name: str, specs: list[str], real: Path, window: str) -> list[dict[str, Any]]:
    """One row per sampler: NFE, KID with CI and baseline (complete sets; else an interim subset), cost."""
    model = GenerativeModel.from_pretrained(name)
    out: Path = args.out
    rows = []
    for spec in specs:
        method, steps = parse_sampler(spec)
        folder = out / "samples" / spec
        done = _done(folder, range(args.num_samples))
        row: dict[str, Any] = {"sampler": spec, "method": method, "steps": steps, "nfe": count_nfe(model, spec),
                               "n_done": done, "n_target": args.num_samples, "n_fake": None, "kid": None,
                               "kid_ci95": None, "interim": False}  # fmt: skip
        report: dict[str, Any] | None = None
        if not args.kid:  # NFE and cost only
            pass
        elif done == args.num_samples:
            report = score(real, folder, out / "eval" / spec, window)
        elif args.interim and done >= args.interim:  # the first finished samples, scored afresh each time
            tag = f"{spec}-n{args.interim}"
            subset = interim_set(folder, args.interim, out / "interim" / tag)
            (out / "eval" / tag / "report.json").unlink(missing_ok=True)
            report = score(real, subset, out / "eval" / tag, window)
            row["interim"] = True
        if report is not None:
            kid = report["metrics"]["kid"]
            row.update(n_fake=report["n_fake"], n_real=report["n_real"], kid=kid["value"], kid_ci95=kid["ci95"],
                       kid_real_vs_real=kid["baseline"])  # fmt: skip
        row.update(cost(out, spec) or {})
        rows.append(row)
    return rows


def fewest_within(rows: list[dict[str, Any]], reference: str) -> dict[str, Any]:
    """The fewest-NFE complete sampler whose KID lies inside ``reference``'s 95 % CI, and the goal (≤ 20 NFE)."""
    ref = next(r for r in rows if r["sampler"] == reference)
    if ref["kid"] is None or ref["interim"]:
        return {"reference": reference, "reference_complete": False, "sampler": None, "nfe": None, "goal_nfe": GOAL_NFE,
                "goal_met": None}  # fmt: skip
    lo, hi = ref["kid_ci95"]
    inside = [r for r in rows if r["kid"] is not None and not r["interim"] and lo <= r["kid"] <= hi] or [ref]
    best = min(inside, key=lambda r: (r["nfe"], r["sampler"]))
    fewer = [r["sampler"] for r in rows if r["nfe"] < best["nfe"] and r["kid"] is not None]
    return {"reference": reference, "reference_complete": True, "reference_ci95": [lo, hi],
            "sampler": best["sampler"], "nfe": best["nfe"], "kid": best["kid"], "goal_nfe": GOAL_NFE,
            "goal_met": best["nfe"] <= GOAL_NFE, "fewer_nfe_outside": fewer}  # fmt: skip


def _fmt(value: float | None, digits: str = ".4f") -> str:
    return "-" if value is None else format(value, digits)


def render(
    name: str, rows: list[dict[str, Any]], verdict: dict[str, Any], command: str, real: Path, window: str
) -> str:
    """The table as printed and recorded (plain text, one sampler a line, fewest NFE first)."""
    from benchmarks.machine import describe

    ref = verdict["reference"]
    shown = real.relative_to(ROOT) if real.is_relative_to(ROOT) else real
    n_real = next((r["n_real"] for r in rows if r.get("n_real")), "?")
    lines = [f"$ {command}",
             f"{name}: KID (Inception features, window {window}) against {n_real} real images in {shown}",
             f"machine: {describe()}", generation_note(rows), SHARED_NOTE, "",
             f"{'sampler':12} {'steps':>5} {'NFE':>5} {'N':>4} {'KID':>8} {'95% CI':>18} {'real-real':>9} "
             f"{'CPU-s/sample':>12} {'wall-s/sample':>13}  in {ref} CI"]  # fmt: skip
    lo, hi = verdict.get("reference_ci95") or (None, None)
    for r in sorted(rows, key=lambda r: (r["nfe"], r["sampler"])):
        ci = "-" if r["kid_ci95"] is None else f"[{r['kid_ci95'][0]:.4f},{r['kid_ci95'][1]:.4f}]"
        inside = "-"
        if r["kid"] is not None and lo is not None:
            inside = "yes" if lo <= r["kid"] <= hi else ("below" if r["kid"] < lo else "above")
        n = f"{r['n_fake'] or 0}{'*' if r['interim'] else ''}"
        lines.append(f"{r['sampler']:12} {r['steps']:5d} {r['nfe']:5d} {n:>4} {_fmt(r['kid']):>8} {ci:>18} "
                     f"{_fmt(r.get('kid_real_vs_real')):>9} {_fmt(r.get('cpu_s_per_sample'), '.2f'):>12} "
                     f"{_fmt(r.get('wall_s_per_sample'), '.2f'):>13}  {inside}")  # fmt: skip
    if any(r["interim"] for r in rows):
        lines.append("N*: interim, scored on the first finished samples only (generation of all N did not finish)")
    lines += [f"unfinished: {r['sampler']} has {r['n_done']} of {r['n_target']} samples"
              for r in rows if r["n_done"] < r["n_target"]]  # fmt: skip
    lines.append("")
    if not verdict["reference_complete"]:
        lines.append(f"{ref} did not finish: no sampler can be named against its CI")
    else:
        met = "met" if verdict["goal_met"] else "NOT met"
        lines.append(f"fewest NFE with KID inside the {ref} 95% CI [{lo:.4f}, {hi:.4f}]: {verdict['sampler']} "
                     f"({verdict['nfe']} NFE); goal <= {GOAL_NFE} NFE: {met}")  # fmt: skip
    return "\n".join(lines)


def sampler_table(args: argparse.Namespace) -> None:
    """``--checkpoint`` mode: draw (a shard of) every sampler's samples; unsharded, score and print the table."""
    torch.set_num_threads(1)
    name: str = args.checkpoint
    folder = ROOT / "checkpoints" / name if (ROOT / "checkpoints" / name).is_dir() else Path(name)
    card_path = folder / "model_card.json"
    card = json.loads(card_path.read_text())
    specs = args.samplers.split(",") if args.samplers else TABLE_SAMPLERS[card["family"]]
    out: Path = args.out or ROOT / "runs" / "sampling" / name
    args.out = out
    order = sorted(specs, key=lambda s: parse_sampler(s)[1])  # cheapest first: the reference has the most steps
    shard = (0, 1)
    if args.shard:
        i, _, n = args.shard.partition("/")
        shard = (int(i), int(n))
    if not args.score_only:
        for spec in order:
            draw(name, spec, args.num_samples, out, shard, args.batch_size)
    if args.shard:
        return
    lo, hi = card["evaluation"]["kid"]["protocol"]["window"]
    window = f"{lo:g},{hi:g}"
    real = real_set(name, args.real, card).resolve()
    rows = table_rows(args, name, specs, real, window)
    verdict = fewest_within(rows, specs[0])
    command = "python benchmarks/sampling.py " + shlex.join(sys.argv[1:])
    text = render(name, rows, verdict, command, real, window)
    print(text)
    if args.record:
        record_table(name, card_path, text, rows, verdict, command, window)


#: The fields of each sampler's row in the card's ``sampler_table``.
CARD_ROW_KEYS = ("sampler", "method", "steps", "nfe", "n_target", "n_done", "n_fake", "n_real", "interim", "kid",
                 "kid_ci95", "kid_real_vs_real", "cpu_s_per_sample", "wall_s_per_sample")  # fmt: skip


def generation_note(rows: list[dict[str, Any]]) -> str:
    """How the samples were drawn: shard processes, priority, threads and batch size, from the cost records."""
    runs = {
        (c["world_size"], c["nice"], c["torch_threads"], c["batch_size"]) for r in rows for c in r.get("cost_rows", [])
    }
    if not runs:
        return "no finished generation invocation recorded"
    parts = [f"{w} process(es) (--shard i/{w}) at nice {n}, {t} torch thread(s), batches of {b}"
             for w, n, t, b in sorted(runs)]  # fmt: skip
    return "generated by " + "; ".join(parts)


def record_table(
    name: str,
    card_path: Path,
    text: str,
    rows: list[dict[str, Any]],
    verdict: dict[str, Any],
    command: str,
    window: str,
) -> None:
    """Write ``benchmarks/results/sampling_NAME.txt`` and the card's ``sampler_table`` field (digest renewed)."""
    from benchmarks.machine import describe
    from medgen.store.card import card_digest

    (ROOT / "benchmarks" / "results" / f"sampling_{name.replace('-', '_')}.txt").write_text(text + "\n")
    ref = verdict["reference"]
    table = {
        "command": command,
        "protocol": f"each sampler: medgen generate --seed 0 --max-retries 0 --format nifti of N samples; medgen "
                    f"evaluate --metrics kid --window={window} --include-qc-failed --seed 0 against the card's real "
                    "set (Inception features; 95 % CI by subsampling; real-vs-real split-half baseline). NFE: network "
                    "forwards of one sampling call. CPU-s/sample: time.process_time of the generating process at "
                    "one torch thread over its finished invocations, divided by the samples they wrote.",
        "machine": describe(),
        "note": SHARED_NOTE,
        "reference": ref,
        "generation": generation_note(rows),
        "rows": [{k: r.get(k) for k in CARD_ROW_KEYS} for r in rows],
        f"fewest_nfe_within_{ref.replace('-', '')}_ci": verdict,
        "goal_nfe": GOAL_NFE,
        "goal_met": verdict["goal_met"],
    }  # fmt: skip
    card = json.loads(card_path.read_text())
    body = {k: v for k, v in card.items() if k not in ("sampler_table", "sha256")}
    body["sampler_table"] = table
    card_path.write_text(json.dumps({**body, "sha256": card_digest(body)}, indent=2) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--diffusion-ckpt")
    p.add_argument("--flow-ckpt")
    p.add_argument("--num-samples", type=int, default=32)
    p.add_argument("--checkpoint", help="sampler table of this shipped name or exported folder (see above)")
    p.add_argument(
        "--kid",
        action="store_true",
        help="--checkpoint: score with medgen evaluate --metrics kid (else NFE and cost only)",
    )
    p.add_argument("--real", type=Path, help="real images (default: the checkpoint script's real set)")
    p.add_argument("--out", type=Path, help="samples, reports and costs (default: runs/sampling/NAME)")
    p.add_argument("--samplers", help="comma list of METHOD-STEPS (default: the family's table)")
    p.add_argument("--shard", help="i/n: draw shard i of n of every sampler's samples, then stop")
    p.add_argument("--batch-size", type=int, default=32, help="samples per network call (default: 32)")
    p.add_argument(
        "--interim",
        type=int,
        default=128,
        help="score an unfinished sampler on its first this many samples, labelled interim (0: never)",
    )
    p.add_argument("--score-only", action="store_true", help="draw nothing: score what is there")
    p.add_argument("--record", action="store_true", help="write benchmarks/results/sampling_NAME.txt and the card")
    args = p.parse_args()
    if args.checkpoint:
        sampler_table(args)
        return
    runs = ROOT / "runs" / "bench_sampling"
    ckpts = {
        "diffusion": Path(args.diffusion_ckpt) if args.diffusion_ckpt else train("ddpm_mri_2d_32.yaml", runs / "ddpm"),
        "flow": Path(args.flow_ckpt) if args.flow_ckpt else train("flow_mri_2d_32.yaml", runs / "flow"),
    }
    models = {k: GenerativeModel.from_pretrained(v) for k, v in ckpts.items()}
    dm = MedicalImageDataModule(
        "demo:mri", modality="mri", spatial_dims=2, image_size=32, num_workers=0, val_fraction=0.0
    )
    dm.setup("fit")
    train_set = dm.train_set
    assert train_set is not None
    real = torch.stack([train_set[i]["image"] for i in range(len(train_set))])  # type: ignore[arg-type]
    n = args.num_samples
    print(f"{len(real)} real slices, {n} samples per sampler, torch threads {torch.get_num_threads()}")
    print(f"{'model':10} {'sampler':8} {'steps':>5} {'NFE':>5} {'wall s':>8} {'overhead':>9} {'MMD² to real':>13}")
    for family, sampler, steps in RUNS:
        model = models[family]
        counting = CountingNet(model.net)
        model.net = counting  # type: ignore[assignment]
        t_fwd = forward_time(counting.inner, (n, 1, 32, 32))
        start = time.perf_counter()
        samples = model.sample(n, generator=torch.Generator().manual_seed(0), method=sampler, num_steps=steps)
        wall = time.perf_counter() - start
        model.net = counting.inner  # type: ignore[assignment]
        overhead = wall / (counting.calls * t_fwd)
        print(
            f"{family:10} {sampler:8} {steps:5d} {counting.calls:5d} {wall:8.2f} {overhead:9.3f} "
            f"{quick_distance(samples, real):13.4f}"
        )
    half = real[torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[:n]]
    print(f"reference: {n} real slices vs all real slices, MMD² {quick_distance(half, real):.4f}")


if __name__ == "__main__":
    main()
