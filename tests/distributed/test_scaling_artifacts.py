"""The committed scaling artifacts agree with themselves and with docs/scaling.md.

``benchmarks/results/ddp_scaling.txt`` (benchmarks/ddp_scaling.py): both process counts measured, and the
efficiency printed is their steps/s ratio. ``benchmarks/results/memory_estimate.txt``
(benchmarks/memory_estimate.py): every full-size config has a row, and the parameter counts in docs/scaling.md's
memory table are the estimate's.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"


def test_ddp_scaling_result_is_complete_and_consistent() -> None:
    text = (RESULTS / "ddp_scaling.txt").read_text()
    assert text.startswith("machine: ")
    rates = {int(n): float(v) for n, v in re.findall(r"gloo (\d) process(?:es)?: ([\d.]+) steps/s", text)}
    assert set(rates) == {1, 2} and all(v > 0 for v in rates.values())
    share = re.search(r"gloo 2 processes: .* all-reduce [\d.]+ ms/step = ([\d.]+)% of the step", text)
    assert share is not None and 0 < float(share.group(1)) < 100
    efficiency = re.search(r"gloo scaling efficiency .*: ([\d.]+)", text)
    assert efficiency is not None
    assert float(efficiency.group(1)) == pytest.approx(rates[2] / rates[1], abs=0.006)
    assert "exited with" not in text  # every fit finished cleanly


def test_memory_table_of_the_docs_is_the_estimate() -> None:
    estimate = (RESULTS / "memory_estimate.txt").read_text()
    names = set(re.findall(r"^\| (\w+) \|", estimate, re.M)) - {"config"}
    assert {p.stem for p in (REPO / "configs").glob("*.yaml")} <= names, "a full-size config has no row"
    # rows with an activation estimate (the others give parameters and states only, with the reason)
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| (\w+) \| [^|]+ \| ([\d.]+) \|", estimate, re.M)}
    assert len(rows) >= len(names) - 3
    docs = (REPO / "docs" / "scaling.md").read_text()
    table = {m.group(1): m.group(2) for m in re.finditer(r"^\| (\w+)(?: ¹)? \| [^|]+ \| ([\d.]+)", docs, re.M)}
    assert set(rows) <= set(table)
    for name, params in rows.items():
        assert table[name] == params, f"docs/scaling.md: {name} has {table[name]} M parameters, the estimate {params}"
    assert "estimated" in docs and "None is measured" in docs
