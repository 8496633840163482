"""The ``medgen memorization`` pipeline: embed, search, calibrate, confirm, report (EVALUATION.md §8).

1. Embed the training set (or load a prebuilt :class:`~medgen.memorization.index.MemorizationIndex`), the
   generated set and the held-out real set with the same embedder.
2. Exact top-k search of every generated sample among the training images (volumes: slice-wise, per volume).
3. Threshold = quantile of the held-out null (else of a by-subject split of the training set).
4. Flagged samples are confirmed in pixel space against their top-k neighbours only.
5. ``report.json`` and ``report.html``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from medgen.data.io import load_image
from medgen.memorization.confirm import confirm
from medgen.memorization.index import MemorizationIndex, build_index
from medgen.memorization.report import build_report, sample_rows, write_report
from medgen.memorization.search import search
from medgen.memorization.sources import embed_items, list_items
from medgen.progress import progress

#: Flagged samples shown with pictures in the HTML page (all are in report.json).
MAX_PICTURES = 100
NEIGHBOURS_SHOWN = 3


def _image(path: str | Path) -> Tensor:
    return load_image(path).as_tensor().float()[:1]


def detect_memorization(
    train: str | Path | None,
    generated: str | Path,
    out_dir: str | Path,
    holdout: str | Path | None = None,
    embedder: str | Path | nn.Module = "structural",
    quantile: float = 0.99,
    top_k: int = 5,
    index_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Check a generated set against a training set and write the report.

    Args:
        train: Training images (folder, datalist, ``demo:<kind>`` or manifest); unused with ``index_dir``.
        generated: Generated images (folder or ``manifest.jsonl``).
        out_dir: Report folder.
        holdout: Held-out real images for calibration (default: a by-subject split of ``train``).
        embedder: ``"structural"``, ``"pixel"``, ``"inception"``, a ``.safetensors`` file or an ``nn.Module``.
        quantile: Quantile of the null used as threshold.
        top_k: Training neighbours searched (and confirmed) per generated sample.
        index_dir: A prebuilt index folder instead of ``train``/``holdout``/``embedder``/``quantile``.

    Returns:
        The ``report.json`` object (also written, with ``report.html``, into ``out_dir``).
    """
    if index_dir is not None:
        index = MemorizationIndex.load(index_dir)
    else:
        assert train is not None
        index = build_index(train, None, embedder, holdout, quantile)
    items = list_items(generated, "--generated")
    result = search(embed_items(index.embedder, items, "--generated", query=True), index.train, top_k)
    matches = index.matches(result)
    confirmations: dict[int, dict[str, Any]] = {}
    pictures: dict[str, tuple[Tensor, list[Tensor]]] = {}
    flagged = [i for i, m in enumerate(matches) if m.flagged]
    for i in progress(flagged, "confirm flagged"):
        image = _image(items[i].path)
        neighbours = [(j, _image(index.files[j])) for j in result.index[i].tolist()]
        best = confirm(image, neighbours)
        confirmations[i] = {**best.as_dict(), "train_file": index.files[best.train_index]}
        if len(pictures) < MAX_PICTURES:
            pictures[str(items[i].path)] = (image, [n for _, n in neighbours[:NEIGHBOURS_SHOWN]])
    samples = sample_rows([str(item.path) for item in items], matches, confirmations)
    extra = {
        "spatial_dims": index.train.spatial_dims,
        "search": {"top_k": top_k, "method": "exact cosine (torch chunked matmul)",
                   "volumes": "mean over slices of the best slice match per training volume"},
        "confirmation": "NCC and SSIM after flip/rotation/shift alignment, top-k of flagged samples only",
    }  # fmt: skip
    report = build_report(
        samples,
        result.similarity[:, 0],
        index.calibration.as_dict(),
        index.calibration.null,
        index.embedder.spec.as_dict(),
        index.train.count,
        extra,
    )
    write_report(report, out_dir, pictures)
    return report
