"""``medgen memorization`` reports: ``report.json`` in the CONTRACT schema and a self-contained ``report.html``.

The page shows the summary, the similarity histograms (generated vs the held-out null, with the threshold),
and every flagged sample beside its nearest training images (PNG thumbnails embedded as base64; volumes
show their axial mid-slice).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from medgen import __version__
from medgen.data.io import atomic_write
from medgen.evaluation.report import PAGE_STYLE, figure_b64, png_b64
from medgen.memorization.calibrate import published_comparison
from medgen.memorization.verified import MIN_VERIFIED_SCORE

#: MiFID (Bińkowski-style memorization-informed FID): FID is divided by d when d < EPSILON.
MIFID_EPSILON = 0.1
THUMB = 128


def mifid_term(similarities: Tensor) -> dict[str, float]:
    """MiFID's memorization term in this embedding: d = mean(1 − nearest-train cosine), penalty 1/d below ε."""
    d = float((1 - similarities.double()).mean()) if similarities.numel() else 1.0
    return {"mean_min_cosine_distance": d, "epsilon": MIFID_EPSILON, "penalty": 1 / d if d < MIFID_EPSILON else 1.0}


def histogram(generated: Tensor, null: Tensor, bins: int = 40) -> dict[str, list[float]]:
    """Counts of nearest-train similarities of generated and held-out images on shared bins."""
    both = torch.cat([generated.float(), null.float()])
    lo = math.floor(float(both.min()) * 20) / 20 if both.numel() else 0.0  # zoom on the data, 0.05 steps
    edges = torch.linspace(min(lo, 0.95), 1.0, bins + 1)
    return {
        "edges": edges.tolist(),
        "generated": torch.histogram(generated.float(), edges).hist.tolist(),
        "holdout": torch.histogram(null.float(), edges).hist.tolist(),
    }


def build_report(
    samples: list[dict[str, Any]],
    generated_sims: Tensor,
    calibration: dict[str, Any],
    null: Tensor,
    embedding: dict[str, Any],
    n_train: int,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The ``report.json`` object.

    Args:
        samples: One row per generated file (``file``, ``nearest_train``, ``similarity``, ``flagged``,
            ``confirmation``, ``neighbours``).
        generated_sims: ``(n,)`` nearest-train similarity of each generated file.
        calibration: :meth:`Calibration.as_dict`.
        null: ``(m,)`` nearest-train similarities of the null images.
        embedding: The embedder spec.
        n_train: Number of training images/volumes.
        extra: More top-level fields (search settings, spatial_dims, …).
    """
    flagged = [s for s in samples if s["flagged"]]
    matched = {s["nearest_train"] for s in flagged}
    return {
        "threshold": calibration["threshold"],
        "calibration": calibration,
        "embedding": {"name": embedding["name"], "sha256": embedding["sha256"], **embedding},
        "n_generated": len(samples),
        "n_train": n_train,
        "n_flagged": len(flagged),
        "fraction_flagged": len(flagged) / max(len(samples), 1),
        "n_train_matched": len(matched),
        "fraction_train_matched": len(matched) / max(n_train, 1),
        "mifid": mifid_term(generated_sims),
        "published_thresholds": published_comparison(generated_sims),
        "histograms": histogram(generated_sims, null),
        **extra,
        "medgen_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "samples": samples,
    }


def thumbnail(image: Tensor, side: int = THUMB) -> np.ndarray:
    """``(1, *spatial)`` → uint8 ``(H, W)`` display image: volumes' axial mid-slice, 1–99 % window, side ``side``."""
    x = image[0].float()
    if x.ndim == 3:
        x = x[:, :, x.shape[2] // 2]
    x = torch.flip(x.T, dims=(0,))  # x to the right, y up (as medgen.visualize)
    lo, hi = torch.quantile(x.flatten(), torch.tensor([0.01, 0.99])).tolist()
    arr = ((x.clamp(lo, hi) - lo) / max(hi - lo, 1e-6) * 255).round().to(torch.uint8).numpy()
    h, w = arr.shape
    scale = side / max(h, w)
    return np.asarray(
        Image.fromarray(arr).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
    )


def _histogram_b64(report: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = report["histograms"]
    edges = np.asarray(hist["edges"])
    fig, ax = plt.subplots(figsize=(7, 3), dpi=100)
    for key, label in (("holdout", "held-out real (null)"), ("generated", "generated")):
        counts = np.asarray(hist[key], dtype=float)
        ax.stairs(counts / max(counts.sum(), 1), edges, fill=True, alpha=0.45, label=label)
    ax.axvline(report["threshold"], color="crimson", linestyle="--", label=f"threshold {report['threshold']:.3f}")
    ax.set_xlabel("nearest-train cosine similarity")
    ax.set_ylabel("fraction")
    ax.legend(loc="upper left")
    return figure_b64(fig)


def _img(array: np.ndarray, caption: str) -> str:
    return (
        f"<figure style='display:inline-block;margin:4px;text-align:center'><img src='data:image/png;base64,"
        f"{png_b64(array)}'><figcaption style='font-size:12px;max-width:{THUMB}px'>{html.escape(caption)}"
        "</figcaption></figure>"
    )


def _flagged_rows(report: dict[str, Any], pictures: dict[str, tuple[Tensor, list[Tensor]]]) -> list[str]:
    parts = []
    for row in report["samples"]:
        if not row["flagged"] or row["file"] not in pictures:
            continue
        generated, neighbours = pictures[row["file"]]
        conf = row.get("verification") or row.get("confirmation") or {}
        words = f"NCC {conf['ncc']:.3f}, SSIM {conf['ssim']:.3f}" if conf else "not confirmed"
        if row.get("verification"):
            words = (f"verified {conf['score']:.3f}, {words}, rotation {conf['angle_deg']:.1f}°, "
                     f"scale {conf['scale']:.2f}{', flipped' if conf['flip'] else ''}")  # fmt: skip
        cells = [_img(thumbnail(generated), f"generated {Path(row['file']).name} ({words})")]
        cells += [
            _img(thumbnail(image), f"{Path(n['file']).name}: {n['similarity']:.3f}")
            for image, n in zip(neighbours, row["neighbours"], strict=False)
        ]
        parts.append("<div style='border-bottom:1px solid #ddd;padding:6px 0'>" + "".join(cells) + "</div>")
    return parts


def render_html(report: dict[str, Any], pictures: dict[str, tuple[Tensor, list[Tensor]]]) -> str:
    """The page; ``pictures`` maps a flagged sample's file to its image and its nearest training images."""
    emb = report["embedding"]
    summary = [
        ("flagged", f"{report['n_flagged']} of {report['n_generated']} ({100 * report['fraction_flagged']:.1f} %)"),
        ("threshold", f"{report['threshold']:.4f} ({report['calibration']['source']}, quantile "
                      f"{report['calibration']['quantile']}, n_null {report['calibration']['n_null']})"),
        ("training images matched", f"{report['n_train_matched']} of {report['n_train']} "
                                    f"({100 * report['fraction_train_matched']:.1f} %)"),
        ("MiFID term d (penalty)", f"{report['mifid']['mean_min_cosine_distance']:.4f} "
                                   f"({report['mifid']['penalty']:.3g})"),
        ("embedding", f"{emb['name']} (sha256 {emb['sha256'] or 'none'})"),
    ]  # fmt: skip
    verification = report.get("verification")
    if verification:
        decision = (
            f"verified margin over the training image's baseline > {verification['threshold']:.4f} and verified "
            f"score > {MIN_VERIFIED_SCORE} ({verification['source']}, quantile {verification['quantile']}, "
            f"n_null {verification['n_null']})"
        )
        summary.insert(1, ("decision", decision))
        summary[2] = ("embedding threshold", summary[2][1] + " (retrieval only)")  # fmt: skip
    notes = report["calibration"]["notes"] + (verification["notes"] if verification else [])
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>medgen memorization report</title><style>",
        PAGE_STYLE,
        "</style></head><body><h1>medgen memorization report</h1>",
        f"<p>created {html.escape(report['created'])}</p><table>",
        *[f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in summary],
        "</table>",
        *[f"<p class='warn'>{html.escape(n)}</p>" for n in notes],
        "<h2>Nearest-train similarity</h2>",
        f"<img src='data:image/png;base64,{_histogram_b64(report)}'>",
        "<h2>Flagged samples and their nearest training images</h2>",
    ]
    rows = _flagged_rows(report, pictures)
    parts += rows or ["<p>No generated sample is above the threshold.</p>"]
    parts.append("<h2>Published fixed thresholds (other embeddings; for scale only)</h2><table>")
    parts.append("<tr><th>method</th><th>threshold</th><th>meaning</th><th>fraction of ours above</th></tr>")
    for entry in report["published_thresholds"]:
        parts.append(
            f"<tr><td>{html.escape(entry['method'])}</td><td>{entry['threshold']}</td>"
            f"<td>{html.escape(entry['meaning'])}</td><td>{entry['fraction_above']:.3f}</td></tr>"
        )
    parts.append("</table></body></html>")
    return "\n".join(parts)


def write_report(
    report: dict[str, Any], out_dir: str | Path, pictures: dict[str, tuple[Tensor, list[Tensor]]]
) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` (atomically) and return their paths."""
    out = Path(out_dir)
    json_path = atomic_write(out / "report.json", lambda tmp: tmp.write_text(json.dumps(report, indent=2)))
    page = render_html(report, pictures)
    html_path = atomic_write(out / "report.html", lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return json_path, html_path


def _verification(match: Any, files: Sequence[str]) -> dict[str, Any] | None:
    if match.verification is None:
        return None
    return {**match.verification.as_dict(), "train_file": files[match.verification.train_index]}


def sample_rows(
    names: Sequence[str], matches: Sequence[Any], confirmations: dict[int, dict[str, Any]], files: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """CONTRACT rows from :class:`~medgen.memorization.index.Match` objects and confirmations by row.

    ``similarity`` is the embedding score of the nearest training image; ``verification`` (two-stage
    decisions) the best pixel-space match among the top-k: its ``score``, NCC, SSIM, the transform found
    (flip, angle, scale, shift) and its training file.
    """
    return [
        {
            "file": name,
            "nearest_train": m.nearest_train,
            "similarity": m.similarity,
            "verified_score": round(m.verification.score, 4) if m.verification is not None else None,
            "flagged": m.flagged,
            "verification": _verification(m, files),
            "confirmation": confirmations.get(i),
            "neighbours": [{"file": f, "similarity": s} for f, s in m.neighbours],
        }
        for i, (name, m) in enumerate(zip(names, matches, strict=True))
    ]
