"""The sampler tables of the shipped 2D checkpoints, as committed by ``benchmarks/sampling.py --record``.

Reads the committed artifacts only (the card's ``sampler_table`` field and
``benchmarks/results/sampling_NAME.txt``): the issue's samplers are there with N >= 256 generated samples
scored against real images, the named fewest-NFE sampler's KID lies inside the reference sampler's 95 % CI and
no scored sampler with fewer NFE does, the goal flag matches the named NFE, and the results file says what the
card says.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from medgen.store.card import card_digest

REPO = Path(__file__).resolve().parents[2]
#: The samplers the issue asks for, per checkpoint; the first is the reference whose KID CI the table uses.
REQUIRED = {
    "mri-brain-2d": ["ddpm-1000", "ddim-50", "dpm++-20", "unipc-10"],
    "ct-2d": ["heun-100", "euler-10", "euler-30", "euler-100", "heun-5", "heun-15"],
}
MIN_SAMPLES = 256
#: The committed tables' references did not finish (CPU-starved on a shared 2-core machine, see each card's
#: sampler_table): the issue's N >= 256 and fewest-NFE requirements are not met yet. Strict, so a completed
#: rerun makes these fail until the marks are removed.
NOT_MET = pytest.mark.xfail(
    strict=True, raises=AssertionError, reason="reference sampler did not finish; rerun benchmarks/sampling.py"
)
PENDING = [pytest.param(name, marks=NOT_MET) for name in sorted(REQUIRED)]
ROW = re.compile(
    r"^(?P<sampler>[a-z+]+-\d+)\s+(?P<steps>\d+)\s+(?P<nfe>\d+)\s+(?P<n>\d+)(?P<interim>\*?)\s+(?P<kid>-?[\d.]+|-)\s"
)
VERDICT = re.compile(
    r"^fewest NFE with KID inside the (\S+) 95% CI .*: (\S+) \((\d+) NFE\); goal <= 20 NFE: (met|NOT met)$"
)


def _table(name: str) -> dict[str, Any]:
    card = json.loads((REPO / "checkpoints" / name / "model_card.json").read_text())
    if "sampler_table" not in card:
        pytest.fail(f"checkpoints/{name}/model_card.json has no sampler_table")
    return dict(card["sampler_table"])


def _verdict(table: dict[str, Any]) -> dict[str, Any]:
    return dict(table[f"fewest_nfe_within_{table['reference'].replace('-', '')}_ci"])


def _scored(table: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows scored on all N samples (not interim)."""
    return [r for r in table["rows"] if r["kid"] is not None and not r["interim"]]


@pytest.mark.parametrize("name", PENDING)
def test_table_has_the_issues_samplers_at_n_256(name: str) -> None:
    """Each required sampler is scored on >= 256 samples, with its CI, NFE and CPU seconds per sample."""
    table = _table(name)
    assert table["reference"] == REQUIRED[name][0]
    rows = {r["sampler"]: r for r in table["rows"]}
    for sampler in REQUIRED[name]:
        row = rows.get(sampler)
        assert row is not None, f"{name}: no {sampler} row"
        assert not row["interim"] and (row["n_fake"] or 0) >= MIN_SAMPLES, f"{name} {sampler}: N={row['n_fake']}"
        lo, hi = row["kid_ci95"]
        assert lo <= row["kid"] <= hi, f"{name} {sampler}: KID outside its own CI"
        assert row["nfe"] >= row["steps"] > 0
        assert row["cpu_s_per_sample"] > 0 and row["wall_s_per_sample"] > 0


@pytest.mark.parametrize("name", PENDING)
def test_named_sampler_is_the_fewest_nfe_inside_the_reference_ci(name: str) -> None:
    """The named sampler's KID is inside the reference's CI; every scored sampler with fewer NFE lies outside."""
    table = _table(name)
    rows = {r["sampler"]: r for r in table["rows"]}
    assert rows[table["reference"]]["kid_ci95"] is not None, f"{name}: {table['reference']} was not scored"
    lo, hi = rows[table["reference"]]["kid_ci95"]
    verdict = _verdict(table)
    named = rows[verdict["sampler"]]
    assert not named["interim"] and named["n_fake"] >= MIN_SAMPLES
    assert lo <= named["kid"] <= hi
    fewer = [r for r in _scored(table) if r["nfe"] < named["nfe"]]
    assert all(not lo <= r["kid"] <= hi for r in fewer), [r["sampler"] for r in fewer]
    assert verdict["nfe"] == named["nfe"]
    assert table["goal_met"] is verdict["goal_met"] is (named["nfe"] <= table["goal_nfe"] == 20)


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_results_file_and_card_agree(name: str) -> None:
    """benchmarks/results/sampling_NAME.txt has the card's rows (sampler, steps, NFE, N, KID) and verdict."""
    card = json.loads((REPO / "checkpoints" / name / "model_card.json").read_text())
    assert card_digest(card) == card["sha256"], "card edited without renewing its digest"
    table = _table(name)
    text = (REPO / "benchmarks" / "results" / f"sampling_{name.replace('-', '_')}.txt").read_text()
    assert text.splitlines()[0] == f"$ {table['command']}"
    found = {m["sampler"]: m for m in map(ROW.match, text.splitlines()) if m}
    assert sorted(found) == sorted(r["sampler"] for r in table["rows"])
    for row in table["rows"]:
        line = found[row["sampler"]]
        assert (int(line["steps"]), int(line["nfe"]), int(line["n"])) == (row["steps"], row["nfe"], row["n_fake"] or 0)
        assert bool(line["interim"]) is row["interim"]
        if row["kid"] is None:
            assert line["kid"] == "-"
        else:
            assert float(line["kid"]) == pytest.approx(row["kid"], abs=6e-5)
    verdict = _verdict(table)
    verdicts = [m for m in map(VERDICT.match, text.splitlines()) if m]
    if not verdict["reference_complete"]:  # nothing may be named against a reference that did not finish
        assert verdicts == [] and verdict["sampler"] is None and table["goal_met"] is None
        assert f"{table['reference']} did not finish: no sampler can be named against its CI" in text
        return
    assert len(verdicts) == 1
    reference, sampler, nfe, met = verdicts[0].groups()
    assert (reference, sampler, int(nfe), met == "met") == (
        table["reference"],
        verdict["sampler"],
        verdict["nfe"],
        verdict["goal_met"],
    )


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_unfinished_samplers_are_labelled(name: str) -> None:
    """A sampler short of N is either unscored or an interim row scored on fewer samples, never a full row."""
    table = _table(name)
    text = (REPO / "benchmarks" / "results" / f"sampling_{name.replace('-', '_')}.txt").read_text()
    for row in table["rows"]:
        if row["n_done"] >= row["n_target"]:
            assert row["n_fake"] == row["n_target"] and not row["interim"]
            continue
        assert f"unfinished: {row['sampler']} has {row['n_done']} of {row['n_target']} samples" in text
        assert row["kid"] is None or (row["interim"] and row["n_fake"] < row["n_target"])
