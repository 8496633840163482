"""The demo's single page, ``index.html``: every stage's pictures, numbers and links, self-contained (no scripts).

Images and reports are linked by relative paths inside the demo folder, so the folder can be moved or served as
it is. Values come from the stage results (:mod:`medgen.demo.stages`), never recomputed here.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medgen.data.io import atomic_write
from medgen.demo.stages import Result
from medgen.demo.translation import PANELS

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;line-height:1.4}
h1{margin-bottom:4px} h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
.row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
figure{margin:0} figcaption{font-size:13px;color:#555;max-width:520px}
img{image-rendering:pixelated;background:#000;max-width:100%}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right} th:first-child,td:first-child{text-align:left}
.muted{color:#777;font-size:13px} .note{background:#fff6d5;padding:6px 10px}
"""

#: Metric columns of the evaluation table: (key, heading).
COLUMNS = (("fid", "FID ↓"), ("kid", "KID ↓"), ("precision", "precision ↑"), ("recall", "recall ↑"),
           ("density", "density ↑"), ("coverage", "coverage ↑"))  # fmt: skip


def write_page(out: Path, results: Mapping[str, Result | None], notes: dict[str, str], header: dict[str, Any]) -> Path:
    """Write ``out/index.html`` from the stage results and return its path.

    Args:
        out: The demo folder.
        results: Stage name → its result (None: the stage was skipped; ``notes`` says why).
        notes: Stage name → a note shown in its section (e.g. why it was skipped).
        header: ``mode``, ``seconds`` (this run), ``stage_seconds`` (the stages when run), ``cached`` (stages reused),
            ``machine``, ``checkpoints`` (name → sha256 or None), ``created``.
    """
    parts = [_head(header), _augment(results), _finetune(results), _scores(results), _copies(results),
             _volume(results), _translation(results, notes), _timings(results)]  # fmt: skip
    page = "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>medgen demo</title>" \
           f"<style>{STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"  # fmt: skip
    return atomic_write(out / "index.html", lambda tmp: tmp.write_text(page, encoding="utf-8"))


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _link(path: str, text: str | None = None) -> str:
    return f"<a href='{_e(path)}'>{_e(text or path)}</a>"


def _figure(path: str, caption: str, width: int | None = None) -> str:
    size = f" width='{width}'" if width else ""
    return f"<figure><img src='{_e(path)}' alt='{_e(caption)}'{size}><figcaption>{caption}</figcaption></figure>"


def _head(header: dict[str, Any]) -> str:
    checkpoints = ", ".join(
        f"<code>{_e(name)}</code> ({'sha256 ' + _e(str(sha)[:12]) if sha else 'absent'})"
        for name, sha in header["checkpoints"].items()
    )
    took = f"{header['seconds']:.0f} s"
    if header.get("cached"):
        took = (
            f"stages {header['stage_seconds']:.0f} s when run; this run {header['seconds']:.0f} s with "
            f"{header['cached']} stages reused from the cache"
        )
    return (f"<h1>medgen demo</h1><p class='muted'>{_e(header['mode'])} run ({took}) on "
            f"{_e(header['machine'])}; {_e(header['created'])}. Checkpoints: {checkpoints}.</p>"
            "<p>The shipped checkpoints on embedded data: an augmentation set from the 2D brain model, fine-tuning it "
            "on a subject it never saw, evaluation of both against real slices, a memorization check with that "
            "held-out subject as the null, a 3D volume from the latent model and a T1 &rarr; T2 translation. Every "
            "picture links to its source; each report and manifest is linked in its section.</p>")  # fmt: skip


def _augment(results: Mapping[str, Result | None]) -> str:
    aug, real = results.get("augment"), results.get("real")
    if not aug or not real:
        return ""
    mni = real["subjects"]["mni152"]
    qc = f"{aug['qc_passed']} of {aug['count']} passed quality control"
    return (f"<h2 id='augment'>1. Augmentation set from <code>{_e(aug['checkpoint'])}</code></h2><div class='row'>"
            + _figure(aug["grid"], f"{aug['count']} generated slices ({_e(aug['sampler'])}, {aug['steps']} steps; "
                                   f"{qc})", 520)
            + _figure(mni["grid"], f"real slices of the training subject (MNI152, {mni['count']} slices)", 520)
            + f"</div><p>Files and provenance (seed, sampler, checkpoint sha256 per sample): "
            f"{_link(aug['manifest'])}.</p>")  # fmt: skip


def _finetune(results: Mapping[str, Result | None]) -> str:
    ft, real, tuned = results.get("finetune"), results.get("real"), results.get("finetuned_set")
    if not ft or not real or not tuned:
        return ""
    held = real["subjects"]["anatomical"]
    return (f"<h2 id='finetune'>2. Fine-tuning on the held-out subject</h2><p><code>{_e(ft['base'])}</code> "
            f"fine-tuned for {ft['steps']} steps (batch {ft['batch_size']}, lr {ft['lr']:g}, EMA weights) on "
            f"{held['count']} slices of nibabel's <code>anatomical.nii</code>, a subject it never saw; training loss "
            f"{ft['loss_first']:.4f} &rarr; {ft['loss_last']:.4f} (mean of the first and last 10 steps). "
            f"Exported model: {_link(ft['card'], 'model card')}; samples: {_link(tuned['manifest'])}.</p>"
            "<div class='row'>"
            + _figure(tuned["grid"], f"{tuned['count']} samples after fine-tuning", 520)
            + _figure(held["grid"], f"real slices of the held-out subject ({held['count']} slices)", 520)
            + "</div>")  # fmt: skip


def _cell(metric: dict[str, Any] | None) -> str:
    if not metric:
        return "<td>&ndash;</td>"
    text = f"{metric['value']:.4g}"
    if metric.get("ci95"):
        text += f"<br><span class='muted'>[{metric['ci95'][0]:.3g}, {metric['ci95'][1]:.3g}]</span>"
    if metric.get("baseline") is not None:
        text += f"<br><span class='muted'>real-vs-real {metric['baseline']:.3g}</span>"
    return f"<td>{text}</td>"


def _scores(results: Mapping[str, Result | None]) -> str:
    scores = results.get("evaluate")
    if not scores:
        return ""
    rows = []
    for item in scores["evaluations"]:
        qc = "<br><span class='muted'>samples failing QC included</span>" if item["include_qc_failed"] else ""
        rows.append(f"<tr><td>{_e(item['label'])}{qc}<br>{_link(item['report'], 'report')} &middot; "
                    f"{_link(item['json'], 'json')}</td><td>{item['n_fake']} / {item['n_real']}</td>"
                    + "".join(_cell(item["metrics"].get(k)) for k, _ in COLUMNS) + "</tr>")  # fmt: skip
    head = "".join(f"<th>{h}</th>" for _, h in COLUMNS)
    warnings = sorted({w for item in scores["evaluations"] for w in item["warnings"]})
    notes = "".join(f"<p class='muted'>{_e(w)}</p>" for w in warnings)
    return (
        "<h2 id='evaluate'>3. Evaluation against real slices</h2><p>Inception features; 95 % bootstrap CIs in "
        "brackets; the real-vs-real baseline is the same metric between two halves of the real set (what "
        "&ldquo;no difference&rdquo; looks like at this N). Lower FID/KID is better.</p>"
        f"<table><tr><th>generated vs real</th><th>N gen / real</th>{head}</tr>{''.join(rows)}</table>{notes}"
    )


def _copies(results: Mapping[str, Result | None]) -> str:
    mem = results.get("memorization")
    if not mem:
        return ""
    what = ("flagged samples beside the training slice each matched" if mem["pairs_are_flagged"]
            else "no sample was flagged; these are the closest pairs, for comparison")  # fmt: skip
    pairs = "".join(
        _figure(
            p["picture"],
            f"margin {p['score']:.3f}"
            + (f" (verified score {p['verified']:.3f})" if p.get("verified") is not None else "")
            + f"<br>{_e(p['file'])} vs {_e(p['train_file'])}",
        )
        for p in mem["pairs"]
    )
    return (f"<h2 id='memorization'>4. Memorization check</h2><p><b>{mem['n_flagged']} of {mem['n_generated']}</b> "
            f"samples of the augmentation set flagged as copies of the {mem['n_train']} training slices (MNI152), at "
            f"threshold {mem['threshold']:.3f} on the decision value: the 99th percentile of the same value for "
            f"slices of the held-out subject ({_e(mem['null'])}). With pixel verification the decision value is the "
            "margin of a sample's best aligned match over how well independent images match that training slice, "
            f"and a flag also needs a verified score above {mem.get('min_score') or 0:.2f} (see the report). "
            f"Report: {_link(mem['report'], 'report')} &middot; "
            f"{_link(mem['json'], 'json')}.</p><p>{what} (left: generated, right: training slice):</p>"
            f"<div class='row'>{pairs}</div>")  # fmt: skip


def _volume(results: Mapping[str, Result | None]) -> str:
    vol = results.get("volume")
    if not vol:
        return ""
    views = "".join(_figure(path, f"generated: {name}") for name, path in vol["views"].items())
    real = "".join(_figure(path, f"real (MNI152, as trained on): {name}") for name, path in vol["real_views"].items())
    qc = vol.get("qc") or {}
    verdict = "passed" if qc.get("passed", True) else "failed: " + "; ".join(qc.get("issues", []))
    return (f"<h2 id='volume'>5. A volume from <code>{_e(vol['checkpoint'])}</code></h2><p>Shape {vol['shape']}, "
            f"spacing {vol['spacing']} mm, {_e(vol['sampler'])} with {vol['steps']} steps; quality control "
            f"{_e(verdict)}. "
            f"{_link(vol['volume'], 'NIfTI')} &middot; {_link(vol['manifest'], 'manifest')}.</p>"
            f"<div class='row'>{views}</div><div class='row'>{real}</div>")  # fmt: skip


def _translation(results: Mapping[str, Result | None], notes: dict[str, str]) -> str:
    tr = results.get("translation")
    title = "<h2 id='translation'>6. T1 &rarr; T2 translation</h2>"
    if not tr:
        return title + f"<p class='note'>{_e(notes.get('translation', 'skipped'))}</p>"
    panels = "".join(_figure(tr["pictures"][name], caption) for name, caption in PANELS.items())
    return (title + f"<p><code>{_e(tr['checkpoint'])}</code> on the held-out subject's T1 (axial mid-slices). "
            f"{_link(tr['output'], 'output volume')} &middot; {_link(tr['manifest'], 'manifest')}.</p>"
            f"<div class='row'>{panels}</div>")  # fmt: skip


def _timings(results: Mapping[str, Result | None]) -> str:
    rows = []
    for name, result in results.items():
        if result:
            seconds = f"{result.get('seconds', 0):.0f} s"
            shown = f"cached ({seconds} when run)" if result.get("cached") else seconds
            rows.append(f"<tr><td>{_e(name)}</td><td>{shown}</td></tr>")
    return f"<h2 id='timings'>Stages</h2><table><tr><th>stage</th><th>time</th></tr>{''.join(rows)}</table>"
