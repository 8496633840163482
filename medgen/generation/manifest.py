"""``manifest.jsonl``: one row per complete sample file, append-only, safe to resume after a crash.

Order of a write: the image goes to a temporary file, is renamed into place, hashed, and only then its row
is appended (one ``write`` of one line, flushed and fsynced). A crash can leave a temp file (removed on the
next run), a finished file without a row (regenerated: the seed makes it identical), or a torn last line
(dropped). On resume, a row counts only if its file exists with the recorded sha256.

Several processes (shards) each append to ``manifest.part-{rank}.jsonl``; the last one to finish merges all
parts into ``manifest.jsonl`` sorted by index.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medgen.data.io import atomic_write
from medgen.hashing import file_sha256

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"


def part_name(rank: int, world_size: int) -> str:
    """The manifest this process appends to."""
    return MANIFEST if world_size == 1 else f"manifest.part-{rank:04d}.jsonl"


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Parsed rows of a manifest; a torn or invalid line (a crash mid-append) is skipped."""
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s:%d: dropping an incomplete row (interrupted write)", path, number)
            continue
        if isinstance(row, dict) and "index" in row and "file" in row and "sha256" in row:
            rows.append(row)
    return rows


def valid_rows(out_dir: Path) -> dict[int, dict[str, Any]]:
    """Rows of every manifest in ``out_dir`` whose file exists with the recorded sha256, by index."""
    found: dict[int, dict[str, Any]] = {}
    for path in sorted(out_dir.glob("manifest*.jsonl")):
        for row in read_rows(path):
            if int(row["index"]) in found:
                continue
            if row["file"] is None and row.get("dropped"):  # a decision, not a file (e.g. a memorized copy)
                found[int(row["index"])] = row
                continue
            file = out_dir / str(row["file"])
            if file.is_file() and file_sha256(file) == row["sha256"]:
                found[int(row["index"])] = row
    return found


def remove_temporaries(out_dir: Path, rank: int = 0, world_size: int = 1) -> int:
    """Delete the temp files of this shard's samples left by an interrupted run; returns how many.

    Only indices ``rank, rank + world_size, …`` are this process's: another rank's temporaries may be files it
    is writing right now.
    """
    stale = [p for p in out_dir.glob(".sample_*.tmp*") if p.is_file() and _owner(p, world_size) == rank]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def _owner(temporary: Path, world_size: int) -> int:
    """The rank that writes a temporary: its sample index modulo ``world_size``; 0 for a name without one.

    ``.sample_000012.png.x1y2.tmp.png`` and ``.sample_000012_mask.png.x1y2.tmp.png`` are sample 12's.
    """
    digits = temporary.name[len(".sample_") :].split(".")[0].split("_")[0]
    return int(digits) % world_size if digits.isdigit() else 0


def rewrite(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Replace a manifest atomically with ``rows`` (used to drop invalid rows and to merge parts)."""
    text = "".join(json.dumps(r, sort_keys=False) + "\n" for r in rows)
    atomic_write(path, lambda tmp: tmp.write_text(text))


class ManifestWriter:
    """Appends rows to one manifest file, each durable before the next sample starts.

    Args:
        path: The manifest file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = path.open("a", encoding="utf-8")

    def append(self, row: dict[str, Any]) -> None:
        """Write one row as one line, flushed and fsynced."""
        self._handle.write(json.dumps(row) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Close the file."""
        self._handle.close()


def prepare(out_dir: Path, rank: int, world_size: int) -> dict[int, dict[str, Any]]:
    """Clean up after an interrupted run and return the samples already done (by index).

    The process's own manifest is rewritten to its valid rows, so a torn line or a row whose file went missing
    never stays behind.
    """
    removed = remove_temporaries(out_dir, rank, world_size)
    if removed:
        log.info("removed %d temporary files of an interrupted run", removed)
    done = valid_rows(out_dir)
    own = out_dir / part_name(rank, world_size)
    if own.is_file():
        keep = [r for r in read_rows(own) if done.get(int(r["index"])) == r]
        rewrite(own, keep)
    return done


def merge_parts(out_dir: Path, total: int) -> bool:
    """Merge shard manifests into ``manifest.jsonl`` once every index ``0..total-1`` is there; True if merged."""
    done = valid_rows(out_dir)
    if any(i not in done for i in range(total)):
        return False
    rewrite(out_dir / MANIFEST, (done[i] for i in sorted(done)))
    for part in out_dir.glob("manifest.part-*.jsonl"):
        part.unlink(missing_ok=True)
    return True
