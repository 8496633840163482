"""Evaluation reports: ``report.json`` in the CONTRACT schema and a self-contained ``report.html``.

The page has the metric table with CIs and real-vs-real baselines, real vs generated sample grids and
intensity histograms. Images are embedded as base64 PNGs so the page can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from medgen import __version__
from medgen.data.io import atomic_write
from medgen.visualize import VIEW_NAMES, image_rows, labelled_grid


@dataclass
class MetricValue:
    """One reported number.

    Attributes:
        value: The metric on the full sets.
        ci95: Bootstrap 95 % interval ``[lo, hi]`` when computed.
        baseline: The same metric between two halves of the real set (what "no difference" looks like at this N).
        higher_is_better: Direction, for the HTML table.
    """

    value: float
    ci95: list[float] | None = None
    baseline: float | None = None
    higher_is_better: bool = False


@dataclass
class Report:
    """Everything ``medgen evaluate`` writes.

    Attributes:
        metrics: Metric name → value.
        n_real: Number of real images (or volumes).
        n_fake: Number of generated images (or volumes).
        protocol: Extractor name and sha256, resize mode, window, data_range, spatial_dims, … .
        warnings: Caveats a reader must see (small N, missing baseline …).
        per_image: For paired evaluation, rows of per-image values (``file`` plus one key per metric).
    """

    metrics: dict[str, MetricValue]
    n_real: int
    n_fake: int
    protocol: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    per_image: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``report.json`` object (fields with no value are left out)."""
        metrics = {}
        for name, m in self.metrics.items():
            entry = {k: v for k, v in asdict(m).items() if v is not None and k != "higher_is_better"}
            metrics[name] = entry
        protocol = {"medgen_version": __version__, **self.protocol}
        out: dict[str, Any] = {"metrics": metrics, "n_real": self.n_real, "n_fake": self.n_fake, "protocol": protocol}
        out["warnings"] = list(self.warnings)
        out["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        if self.per_image:
            out["per_image"] = self.per_image
        return out


def write_report(
    report: Report,
    out_dir: str | Path,
    real_examples: torch.Tensor | None = None,
    fake_examples: torch.Tensor | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir`` (atomically) and return their paths.

    Args:
        report: The numbers.
        out_dir: Output folder (created).
        real_examples: ``(N, 1, *spatial)`` real images to show (up to 16 are used).
        fake_examples: ``(N, 1, *spatial)`` generated images to show.
        value_range: Intensities mapped to black and white in the pictures and histograms.
    """
    out = Path(out_dir)
    data = report.to_json()
    json_path = atomic_write(out / "report.json", lambda tmp: tmp.write_text(json.dumps(data, indent=2)))
    page = render_html(report, data, real_examples, fake_examples, value_range)
    html_path = atomic_write(out / "report.html", lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return json_path, html_path


#: CSS shared by medgen's HTML reports.
PAGE_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}td:first-child{text-align:left}"
    ".warn{background:#fff3cd;padding:6px 10px;border-left:4px solid #e0a800}img{image-rendering:pixelated}"
)


def png_b64(array: np.ndarray) -> str:
    """A uint8 ``(H, W)`` or ``(H, W, 3)`` array as base64 PNG text (for ``data:image/png;base64,`` URLs)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def figure_b64(fig: Any) -> str:
    """A matplotlib figure as base64 PNG text; the figure is closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _histogram_png(real: torch.Tensor, fake: torch.Tensor, value_range: tuple[float, float]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
    bins = [float(b) for b in np.linspace(value_range[0], value_range[1], 81)]
    ax.hist(real.flatten().float().numpy(), bins=bins, density=True, alpha=0.5, label="real")
    ax.hist(fake.flatten().float().numpy(), bins=bins, density=True, alpha=0.5, label="generated")
    ax.set_xlabel("intensity")
    ax.set_yscale("log")
    ax.legend()
    return figure_b64(fig)


def _metric_rows(report: Report) -> str:
    rows = []
    for name, m in report.metrics.items():
        ci = f"[{m.ci95[0]:.4g}, {m.ci95[1]:.4g}]" if m.ci95 else "–"
        base = f"{m.baseline:.4g}" if m.baseline is not None else "–"
        arrow = "↑" if m.higher_is_better else "↓"
        rows.append(f"<tr><td>{html.escape(name)} {arrow}</td><td>{m.value:.4g}</td><td>{ci}</td><td>{base}</td></tr>")
    return "\n".join(rows)


def _samples_img(real: torch.Tensor, fake: torch.Tensor, value_range: tuple[float, float]) -> str:
    """One labelled grid: rows of real, then generated images (2D: 16 each; 3D: 4 volumes, three views each)."""
    n = 16 if real.ndim == 4 else 4
    rows = image_rows(real[:n], "real", value_range) + image_rows(fake[:n], "generated", value_range)
    canvas = labelled_grid(rows, VIEW_NAMES if real.ndim == 5 else ())
    alt = "rows: " + ", ".join(row.label for row in rows)
    return f"<img alt='{html.escape(alt)}' style='max-width:100%' src='data:image/png;base64,{png_b64(canvas)}'>"


def render_html(
    report: Report,
    data: dict[str, Any],
    real: torch.Tensor | None,
    fake: torch.Tensor | None,
    value_range: tuple[float, float],
) -> str:
    """The self-contained HTML page."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>medgen evaluation report</title><style>",
        PAGE_STYLE,
        "</style></head><body><h1>medgen evaluation report</h1>",
        f"<p>{report.n_real} real vs {report.n_fake} generated &middot; created {html.escape(data['created'])}</p>",
    ]
    parts += [f"<p class='warn'>{html.escape(w)}</p>" for w in report.warnings]
    parts.append(
        "<h2>Metrics</h2><table><tr><th>metric</th><th>value</th><th>95% CI</th><th>real-vs-real baseline</th></tr>"
    )
    parts.append(_metric_rows(report) + "</table>")
    if real is not None and fake is not None:
        parts.append(f"<h2>Real and generated</h2>{_samples_img(real, fake, value_range)}<h2>Intensity histograms</h2>")
        parts.append(f"<img src='data:image/png;base64,{_histogram_png(real, fake, value_range)}'>")
    if report.per_image:
        keys = list(report.per_image[0])
        parts.append("<h2>Per image</h2><table><tr>" + "".join(f"<th>{html.escape(k)}</th>" for k in keys) + "</tr>")
        for row in report.per_image[:200]:
            cells = "".join(
                f"<td>{v:.4g}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>" for v in row.values()
            )
            parts.append(f"<tr>{cells}</tr>")
        parts.append("</table>")
    protocol = html.escape(json.dumps(data["protocol"], indent=2))
    parts.append(f"<h2>Protocol</h2><pre>{protocol}</pre></body></html>")
    return "\n".join(parts)
