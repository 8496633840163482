"""The machine a benchmark ran on, in one line (every benchmark prints it beside its figures)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def describe() -> str:
    """CPU model, the cores this process may use and torch's intra-op thread count, e.g.
    ``AMD EPYC 7B13, 2 cores, torch 2.13.0+cpu with 2 threads``."""
    model = platform.processor() or platform.machine() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{model}, {cores} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name()}"
    return text
