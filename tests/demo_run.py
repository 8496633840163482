"""The quick demo run shared by tests/test_demo*.py: run once per test session, across pytest-xdist workers.

A file lock in the session's shared temporary folder lets the first test that needs the run make it; the others
wait and read its record. Where a shipped checkpoint is not in the registry yet, a smoke-trained stand-in of the
same name is exported into a temporary ``MEDGEN_CHECKPOINTS`` folder (never into ``checkpoints/``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from medgen.demo.run import BRAIN_2D, BRAIN_3D, TRANSLATION, checkpoint_digest
from medgen.demo.stages import DemoSettings

ROOT = Path(__file__).resolve().parents[1]
QUICK = DemoSettings.make(quick=True)

#: Stand-ins for shipped checkpoints not yet in the registry: name -> smoke config and its extra arguments.
STAND_INS = {
    BRAIN_2D: ("ddpm_2d.yaml", ("--data.image_size", "32")),
    BRAIN_3D: ("ldm_3d.yaml", ("--data.data_dir", "demo:mri", "--data.modality", "mri")),
    TRANSLATION: ("pix2pix_2d.yaml", ()),
}


def stand_ins(folder: Path) -> dict[str, str]:
    """Export a smoke-trained stand-in into ``folder`` for each shipped checkpoint the registry lacks; the env."""
    from medgen.store.export import export_checkpoint
    from tests.helpers import fit_smoke

    missing = [name for name in STAND_INS if checkpoint_digest(name, required=False) is None]
    for name in missing:
        config, extra = STAND_INS[name]
        ckpts = fit_smoke(ROOT / "configs" / "smoke" / config, folder / "runs" / name, *extra)
        export_checkpoint(ckpts / "last.ckpt", folder / "checkpoints" / name, name=name)
    return {"MEDGEN_CHECKPOINTS": str(folder / "checkpoints")} if missing else {}


def demo(out: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``python -m medgen demo --quick --out OUT`` with ``env`` added; the finished process and its seconds."""
    start = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "medgen", "demo", "--quick", "--out", str(out)], capture_output=True,
                         text=True, env={**os.environ, **env}, timeout=600, cwd=out.parent)  # fmt: skip
    return res, time.monotonic() - start


def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The quick demo run (made by the first caller of the session, read by the others).

    Returns:
        ``out`` (the demo folder), ``stdout``, ``stderr``, ``seconds`` and the ``env`` it ran with.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # xdist: every worker's session folder
    record = shared / "demo_quick.json"
    with FileLock(str(shared / "demo_quick.lock")):
        if not record.is_file():
            env = stand_ins(shared / "demo_stand_ins")
            res, seconds = demo(shared / "demo_out", env)
            assert res.returncode == 0, res.stderr[-3000:]
            data = {"out": str(shared / "demo_out"), "stdout": res.stdout, "stderr": res.stderr, "seconds": seconds,
                    "env": env}  # fmt: skip
            record.write_text(json.dumps(data))
    return dict(json.loads(record.read_text()))
