"""Wall time of the commands a user types first: ``medgen --help``, ``checkpoints list`` and an argument error.

Each command runs as a fresh ``python -m medgen`` process (as a user runs it) several times; the median is
printed beside the target (1 s) and the ``--version`` floor (interpreter start-up plus medgen's own import).
``checkpoints list`` lists a temporary registry (``MEDGEN_CHECKPOINTS``) of 20 model cards.

    .venv/bin/python benchmarks/cli_startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe

TARGET_S = 1.0
COMMANDS = {
    "--version": ["--version"],
    "--help": ["--help"],
    "checkpoints list": ["checkpoints", "list"],
    "inspect --help": ["inspect", "--help"],
    "bad argument": ["generate", "--no-such-option"],
}


def wall_time(args: list[str], env: dict[str, str]) -> float:
    """Seconds of one ``python -m medgen ARGS`` run."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "medgen", *args], capture_output=True, check=False, env=env)
    return time.perf_counter() - start


def registry(root: Path, n: int = 20) -> Path:
    """``n`` exported-model folders, each a model card and 1 MB of weights (listing reads cards only)."""
    for i in range(n):
        folder = root / f"model-{i:02d}"
        folder.mkdir(parents=True)
        card = {"name": folder.name, "family": "diffusion", "spatial_dims": 2, "modality": "mri", "sha256": "0" * 64}
        (folder / "model_card.json").write_text(json.dumps({**card, "image_size": [64, 64]}))
        (folder / "model.safetensors").write_bytes(b"\0" * 1_000_000)
    return root


def main() -> None:
    """Print the median wall time of each command."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per command (default: 7)")
    runs = parser.parse_args().runs
    print(f"machine: {describe()}; median of {runs} runs per command, target <= {TARGET_S:.1f} s")
    tmp = tempfile.TemporaryDirectory()
    env = {**os.environ, "MEDGEN_CHECKPOINTS": str(registry(Path(tmp.name)))}
    for name, args in COMMANDS.items():
        times = [wall_time(args, env) for _ in range(runs)]
        median = statistics.median(times)
        verdict = "" if name == "--version" else ("  ok" if median <= TARGET_S else "  SLOWER THAN TARGET")
        print(f"medgen {name:<18} {median:6.3f} s  (min {min(times):.3f}, max {max(times):.3f}){verdict}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
