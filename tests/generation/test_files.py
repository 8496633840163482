"""The files a run writes: modes that follow the umask, and temporaries that belong to one rank each."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from medgen.cli import main
from medgen.data.io import atomic_write
from medgen.generation import manifest
from tests.generation.conftest import CheckpointFactory


@pytest.fixture()
def umask_022() -> Iterator[None]:
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def test_written_files_follow_the_umask(tmp_path: Path, make_checkpoint: CheckpointFactory, umask_022: None) -> None:
    out = tmp_path / "gen"
    args = ["generate", "--checkpoint", str(make_checkpoint(2)), "--num-samples", "2", "--out", str(out)]
    assert main([*args, "--steps", "1"]) == 0
    files = sorted(p for p in out.iterdir() if p.is_file())
    assert {p.name for p in files} >= {"sample_000000.png", "manifest.jsonl", "generation.json"}
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: "0o644" for p in files}
    os.umask(0o027)
    written = atomic_write(tmp_path / "x.npy", lambda tmp: np.save(tmp, np.zeros(2)))
    assert stat.S_IMODE(written.stat().st_mode) == 0o640


def test_a_late_rank_keeps_an_early_ranks_file_in_flight(tmp_path: Path) -> None:
    """Rank 0 is writing sample 0 when rank 1 starts: rank 1 removes its own stale temporary, not rank 0's."""
    stale = tmp_path / ".sample_000003.png.dead.tmp.png"  # rank 1's, from an interrupted run
    stale.write_bytes(b"torn")

    def write_while_rank_1_starts(tmp: Path) -> None:
        tmp.write_bytes(b"first half")
        manifest.prepare(tmp_path, rank=1, world_size=2)
        with tmp.open("ab") as handle:
            handle.write(b", second half")

    atomic_write(tmp_path / "sample_000000.png", write_while_rank_1_starts)
    assert (tmp_path / "sample_000000.png").read_bytes() == b"first half, second half"
    assert not stale.exists()
