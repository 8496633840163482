"""``medgen demo --quick``: every stage from the shipped checkpoints into one ``index.html``, and the cache.

The quick run is shared with tests/test_demo_browser.py (:mod:`tests.demo_run`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from medgen.demo.run import checkpoint_digest
from medgen.demo.stages import Result, Stage, run_stage
from medgen.errors import InputError
from tests.demo_run import QUICK, demo, quick_run


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The session's quick demo run (:func:`tests.demo_run.quick_run`)."""
    return quick_run(tmp_path_factory)


def _links(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    return re.findall(r"(?:src|href)='([^']+)'", text)


@pytest.mark.slow
def test_demo_quick_writes_one_page_linking_every_stage(quick_demo: dict[str, Any]) -> None:
    out = Path(quick_demo["out"])
    page = out / "index.html"
    stdout = quick_demo["stdout"]
    assert stdout.strip().splitlines()[-1] == str(page.resolve())
    n = int(re.findall(r"^\[1/(\d+)\] ", stdout, flags=re.MULTILINE)[0])
    assert n in (7, 8)  # 7: no translation checkpoint, skipped with a note
    for i in range(1, n + 1):
        assert f"[{i}/{n}] " in stdout
    assert "cached" not in quick_demo["stdout"]
    links = _links(page)
    assert len([x for x in links if x.endswith(".png")]) >= 10
    for link in links:
        assert (out / link).exists(), f"index.html links to a missing {link}"
    for linked in ("augment/manifest.jsonl", "finetuned/samples/manifest.jsonl", "memorization/report.html",
                   "evaluation/base_vs_anatomical/report.html", "volume3d/manifest.jsonl"):  # fmt: skip
        assert linked in links
    rows = [json.loads(r) for r in (out / "augment" / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == QUICK.num_samples and all(r["sha256"] and r["checkpoint_sha256"] for r in rows)
    for name in ("base_vs_anatomical", "finetuned_vs_anatomical"):  # --quick leaves out base_vs_mni152
        report = json.loads((out / "evaluation" / name / "report.json").read_text())
        for metric in ("fid", "kid"):
            assert len(report["metrics"][metric]["ci95"]) == 2 and "baseline" in report["metrics"][metric]
        assert "precision" in report["metrics"] and report["n_real"] > 10
    memorization = json.loads((out / "memorization" / "report.json").read_text())
    assert memorization["n_generated"] > 0 and memorization["calibration"]["n_null"] > 0
    views = [out / "volume3d" / f"{v}.png" for v in ("axial", "coronal", "sagittal")]
    assert all(v.stat().st_size > 500 for v in views)
    translated = "translation/translated.png" in links
    assert translated == (n == 8) and translated != ("skipped: the translation checkpoint" in page.read_text())


@pytest.mark.slow
def test_demo_finetunes_the_shipped_weights(quick_demo: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The fine-tuned export is the shipped model's architecture with changed weights."""
    from safetensors.torch import load_file

    from medgen.demo.run import BRAIN_2D
    from medgen.store.registry import resolve

    out = Path(quick_demo["out"])
    for name, value in quick_demo["env"].items():
        monkeypatch.setenv(name, value)
    base = resolve(BRAIN_2D).path
    before, after = load_file(base / "model.safetensors"), load_file(out / "finetuned" / "model" / "model.safetensors")
    assert before.keys() == after.keys()
    assert any(not (before[k].float() == after[k].float()).all() for k in before)
    card = json.loads((out / "finetuned" / "model" / "model_card.json").read_text())
    assert card["family"] == json.loads((base / "model_card.json").read_text())["family"]


@pytest.mark.slow
def test_demo_second_run_reuses_every_stage(quick_demo: dict[str, Any]) -> None:
    out = Path(quick_demo["out"])
    res, seconds = demo(out, quick_demo["env"])
    assert res.returncode == 0, res.stderr[-3000:]
    stages = re.findall(r"^\[\d+/(\d+)\] .*$", res.stdout, flags=re.MULTILINE)
    assert stages and all(": cached, finished by an earlier run" in line for line in
                          re.findall(r"^\[\d+/\d+\] .*$", res.stdout, flags=re.MULTILINE))  # fmt: skip
    assert f"({stages[0]} of {stages[0]} stages reused from the cache)" in res.stdout
    assert seconds < quick_demo["seconds"] / 2
    assert res.stdout.strip().splitlines()[-1] == str((out / "index.html").resolve())


def test_stage_cache_reruns_when_its_key_or_files_change(tmp_path: Path) -> None:
    calls: list[int] = []

    def work(out: Path, _: dict[str, Result]) -> Result:
        calls.append(1)
        (out / "a.txt").write_text(str(len(calls)))
        return {"value": len(calls), "files": ["a.txt"]}

    def stage(key: int) -> Stage:
        return Stage("s", "a stage", {"k": key}, work)

    assert run_stage(tmp_path, stage(1), "[1/1]", {})["value"] == 1
    again = run_stage(tmp_path, stage(1), "[1/1]", {})
    assert again["cached"] and again["value"] == 1 and len(calls) == 1
    assert run_stage(tmp_path, stage(2), "[1/1]", {})["value"] == 2  # another key
    (tmp_path / "a.txt").unlink()
    assert run_stage(tmp_path, stage(2), "[1/1]", {})["value"] == 3  # a listed file is gone


def test_missing_checkpoint_is_one_line_naming_it() -> None:
    with pytest.raises(InputError) as info:
        checkpoint_digest("no-such-shipped-model", required=True)
    assert info.value.subject == "no-such-shipped-model" and "\n" not in str(info.value)
    assert checkpoint_digest("no-such-shipped-model", required=False) is None
