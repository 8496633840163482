"""Memorization detection of the augmentation set, with a held-out subject as the calibration null.

Through :func:`medgen.memorization.detect.detect_memorization` (the API behind ``medgen memorization``): every
sample's nearest training slices (MNI152, what the shipped model trained on) are retrieved and verified in pixel
space; the threshold is the 99th percentile of the same score for slices of a subject the model never saw
(``anatomical.nii``), so a flag means "closer to a training slice than a new subject's slice ever is".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medgen.data.io import load_image
from medgen.demo.stages import Result, rel
from medgen.demo.views import save_view
from medgen.visualize import grid, image_rows

#: Pairs shown in the page's picture.
SHOWN = 6


def detect_copies(train: Path, holdout: Path, generated: Path, out: Path, include_qc_failed: bool) -> Result:
    """Check ``generated`` against ``train`` calibrated on ``holdout``; write the report and a picture of pairs.

    Args:
        train: Folder of training slices.
        holdout: Folder of a held-out subject's slices.
        generated: The generated set's folder (with ``manifest.jsonl``).
        out: The demo folder.
        include_qc_failed: Check samples that failed quality control too.

    Returns:
        The report's paths, counts, threshold, and pictures of the flagged pairs (else of the closest ones).
    """
    from medgen.memorization.detect import detect_memorization

    folder = out / "memorization"
    report = detect_memorization(train, generated / "manifest.jsonl", folder, holdout=holdout,
                                 include_qc_failed=include_qc_failed)  # fmt: skip
    decision = report.get("verification") or report["calibration"]
    samples = report["samples"]
    flagged = [s for s in samples if s["flagged"]]
    shown = flagged or sorted(samples, key=_score, reverse=True)
    pairs = pair_pictures(shown[:SHOWN], folder)
    print(f"  {len(flagged)} of {len(samples)} samples flagged as copies of training slices "
          f"(threshold {decision['threshold']:.3f} from the held-out subject)")  # fmt: skip
    files = [folder / "report.html", folder / "report.json", *(p["picture"] for p in pairs)]
    pairs = [{**p, "picture": rel(out, p["picture"])} for p in pairs]
    return {"report": rel(out, files[0]), "json": rel(out, files[1]), "pairs": pairs,
            "pairs_are_flagged": bool(flagged), "n_flagged": len(flagged), "n_generated": len(samples),
            "n_train": report["n_train"], "threshold": decision["threshold"], "min_score": _min_score(report),
            "null": str(decision.get("source", "held-out subject")), "files": [rel(out, f) for f in files]}  # fmt: skip


def _min_score(report: dict[str, Any]) -> float | None:
    """The raw verified score a flagged sample also needs (None without verification)."""
    from medgen.memorization.verified import MIN_VERIFIED_SCORE

    return float(MIN_VERIFIED_SCORE) if report.get("verification") else None


def _score(sample: dict[str, Any]) -> float:
    """The value the decision compares with the threshold: the verified margin, else the embedding similarity."""
    verification = sample.get("verification") or {}
    margin = verification.get("margin")
    return float(margin if margin is not None else sample["similarity"])


def _train_file(sample: dict[str, Any]) -> str:
    verification = sample.get("verification") or {}
    return str(verification.get("train_file") or sample["nearest_train"])


def pair_pictures(samples: list[dict[str, Any]], folder: Path) -> list[dict[str, Any]]:
    """One picture per sample: the generated slice beside the training slice it matched best (display orientation).

    Returns:
        Per sample: ``picture`` (its path), ``score`` (the decision value), ``verified`` (the raw verified score,
        None without verification), ``file`` and ``train_file`` (names only).
    """
    shown = []
    for k, sample in enumerate(samples, start=1):
        pair = torch.stack([_png(sample["file"]), _png(_train_file(sample))])
        picture = save_view(grid(image_rows(pair, "", ncol=2)[0].tiles, ncol=2), folder / f"pair_{k}.png", 128)
        shown.append({"picture": picture, "score": _score(sample), "verified": sample.get("verified_score"),
                      "file": Path(sample["file"]).name,
                      "train_file": Path(_train_file(sample)).name})  # fmt: skip
    return shown


def _png(path: str) -> torch.Tensor:
    """An 8-bit PNG as ``(1, X, Y)`` in [-1, 1]."""
    return torch.as_tensor(load_image(path)).float()[:1] / 127.5 - 1.0
