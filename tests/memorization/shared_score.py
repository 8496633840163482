"""Unseen-set scores shared by every pytest-xdist worker: computed once per test session under a file lock.

Scoring set B or set C takes one to several minutes of CPU; as a module fixture every worker that ran one of
their tests computed it again. The first caller scores the set and writes the record into the session's shared
temporary folder (the parent of the workers' base folders, as in ``tests/demo_run.py``); the others wait on the
lock and read it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import pytest
from filelock import FileLock

from medgen.memorization.unseen import UnseenScore, score_unseen
from medgen.memorization.unseen_b import UnseenSetB


def shared_score(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[], UnseenSetB]
) -> tuple[UnseenScore, dict[str, Any]]:
    """The default decision's score of one set (structural retrieval + verification), computed by the first caller.

    Args:
        tmp_path_factory: pytest's factory (its base folder locates the session's shared folder).
        name: File-name stem of the record (one per set).
        build: Builds the set.

    Returns:
        The score (tuples come back as lists) and facts about the set that the tests need, so that a worker
        reading the record need not build the set: ``real_names``, ``heldout_kind``, ``null_subjects``.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    record = shared / f"memorization_{name}.json"
    with FileLock(str(shared / f"memorization_{name}.lock")):
        if not record.is_file():
            unseen = build()
            score = score_unseen("structural", unseen, verify=True)
            facts = {"real_names": unseen.real_names, "heldout_kind": unseen.heldout_kind}
            facts["null_subjects"] = unseen.null_subjects
            record.write_text(json.dumps({"score": asdict(score), "facts": facts}))
    data = json.loads(record.read_text())
    return UnseenScore(**data["score"]), dict(data["facts"])
