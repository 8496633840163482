"""Running ``medgen`` commands from a benchmark, each in a fresh process, and finding what ``fit`` wrote."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import torch

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


def save_upscaled_grid(tiles: torch.Tensor, path: Path, ncol: int, zoom: int = 3) -> Path:
    """``tiles`` ``(N, C, H, W)`` in [-1, 1] as a grid of ``ncol`` columns, upsampled ``zoom`` times (nearest)."""
    from PIL import Image

    from medgen.visualize import save_grid

    saved = save_grid(tiles, path, ncol=ncol)
    image = Image.open(saved)
    image.resize((image.width * zoom, image.height * zoom), Image.NEAREST).save(saved)
    return saved


def print_report(lines: list[str], path: Path | None) -> None:
    """Print a benchmark's figures and, when ``path`` is given, write them there too."""
    text = "\n".join(lines)
    print("\n" + text)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
