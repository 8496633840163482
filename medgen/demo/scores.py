"""FID, KID, PRDC and diversity of generated sets against real slices, with baselines and CIs.

Through the API behind ``medgen evaluate`` (:func:`~medgen.evaluation.unpaired.unpaired_features` and
:func:`~medgen.evaluation.unpaired.write_unpaired`): Inception features, bootstrap 95 % CIs and a split-half
real-vs-real baseline (what "no difference" looks like at this N). Each set's features are extracted once and
shared by the evaluations that use it. Both sides are 8-bit PNGs of the same preparation
(:mod:`medgen.demo.real`), so the window is 0-255.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from medgen.commands.evaluate import headline
from medgen.demo.stages import Result, rel

#: Metrics shown in the page's tables (all are in each report).
SHOWN = ("fid", "kid", "precision", "recall", "density", "coverage", "diversity_ms_ssim")


@dataclass(frozen=True)
class Evaluation:
    """One generated set against one real set.

    Attributes:
        label: What is compared (shown in the page).
        real: Folder of real slices.
        generated: A ``medgen generate`` folder (with ``manifest.jsonl``).
        report: Report folder (``report.json``, ``report.html``).
        include_qc_failed: Evaluate generated samples that failed quality control too.
    """

    label: str
    real: Path
    generated: Path
    report: Path
    include_qc_failed: bool = False


def evaluate_sets(evaluations: list[Evaluation], out: Path, bootstrap: int, diversity: bool, seed: int) -> Result:
    """Write the report of each evaluation, extracting each distinct set's features once.

    Args:
        evaluations: What to compare.
        out: The demo folder (results name paths relative to it).
        bootstrap: Bootstrap subsamples for the CIs.
        diversity: Also measure MS-SSIM diversity.
        seed: Seed of the baselines and subsamples.

    Returns:
        ``evaluations``: per evaluation its label, report paths, :data:`SHOWN` metrics (value, ci95, baseline),
        N of each side and warnings; ``files``: the reports.
    """
    from medgen.evaluation.sources import list_source
    from medgen.evaluation.unpaired import UNPAIRED, UnpairedOptions, unpaired_features, write_unpaired

    metrics = tuple(m for m in UNPAIRED if diversity or m != "diversity")
    features: dict[str, Any] = {}  # set key -> UnitFeatures, and "_any" -> one UnpairedFeatures
    done: dict[int, Result] = {}
    while len(done) < len(evaluations):
        i = _next(evaluations, done, features)
        ev = evaluations[i]
        real, fake = list_source(ev.real), list_source(ev.generated, ev.include_qc_failed)
        options = UnpairedOptions(ev.report, metrics=metrics, window=(0.0, 255.0), bootstrap=bootstrap, seed=seed)
        keys = _keys(ev)
        print(f"  {ev.label}:")
        if keys[0] in features and keys[1] in features:
            both = replace(features["_any"], real=features[keys[0]], fake=features[keys[1]])
        else:
            both = unpaired_features(real, fake, options)
            features |= {keys[0]: both.real, keys[1]: both.fake, "_any": both}
        json_path, html_path = write_unpaired(both, real, fake, options)
        done[i] = _summary(ev, json_path, html_path, out)
    items = [done[i] for i in range(len(evaluations))]
    return {"evaluations": items, "files": [f for item in items for f in item["files"]]}


def _keys(ev: Evaluation) -> tuple[str, str]:
    """Keys of the two sets of ``ev`` in the feature cache."""
    return str(ev.real), f"{ev.generated}:{ev.include_qc_failed}"


def _next(evaluations: list[Evaluation], done: dict[int, Result], features: dict[str, Any]) -> int:
    """The next evaluation: one whose sets are both extracted, else one with neither (two new sets per pass)."""
    left = [i for i in range(len(evaluations)) if i not in done]
    rank = {2: 0, 0: 1, 1: 2}  # sets already extracted -> priority
    return min(left, key=lambda i: rank[sum(k in features for k in _keys(evaluations[i]))])


def _summary(ev: Evaluation, json_path: Path, html_path: Path, out: Path) -> Result:
    data: dict[str, Any] = json.loads(json_path.read_text(encoding="utf-8"))
    metrics = {k: v for k, v in data["metrics"].items() if k in SHOWN}
    for line in headline(metrics):
        print("    " + line)
    return {"label": ev.label, "report": rel(out, html_path), "json": rel(out, json_path), "metrics": metrics,
            "n_real": data["n_real"], "n_fake": data["n_fake"], "warnings": data.get("warnings", []),
            "include_qc_failed": ev.include_qc_failed, "files": [rel(out, html_path), rel(out, json_path)]}  # fmt: skip
