"""Running ``medgen`` commands from a benchmark, each in a fresh process, and finding what ``fit`` wrote."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def medgen(args: list[str]) -> float:
    """Run one ``medgen`` command in a fresh process from the repository root; return its wall time in seconds."""
    print("$ medgen " + " ".join(args), flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "medgen", *args], check=True, cwd=REPO)
    return time.perf_counter() - start


def last_checkpoint(root: Path) -> Path:
    """The ``last.ckpt`` of the newest Lightning version under ``root``."""
    found = sorted(root.glob("lightning_logs/version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no last.ckpt under {root}")
    return found[-1]
