"""The ``medgen memorization`` pipeline: embed, search, calibrate, confirm, report (EVALUATION.md §8).

1. Embed the training set (or load a prebuilt :class:`~medgen.memorization.index.MemorizationIndex`), the
   generated set and the held-out real set with the same embedder.
2. Exact top-k search of every generated sample among the training images (volumes: slice-wise, per volume).
3. Verification (default): every sample is aligned to each of its top-k candidates in pixel space
   (:mod:`~medgen.memorization.verify`) and the best verified margin over the training image's baseline decides
   (:mod:`~medgen.memorization.verified`), at a threshold calibrated by running the same two stages on the
   held-out null (else a by-subject split of the training set).
   ``verify=False`` (``--no-verify``): the embedding similarity decides, and flagged samples are confirmed
   in pixel space afterwards.
4. ``report.json`` and ``report.html``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from medgen.data.io import load_image
from medgen.errors import InputError
from medgen.memorization.confirm import confirm
from medgen.memorization.index import MemorizationIndex, build_index
from medgen.memorization.report import build_report, sample_rows, write_report
from medgen.memorization.sources import LazyImages, embed_items, list_items
from medgen.memorization.verified import DEFAULT_TOP_K, verify_search
from medgen.progress import progress

#: Flagged samples shown with pictures in the HTML page (all are in report.json).
MAX_PICTURES = 100
NEIGHBOURS_SHOWN = 3


#: The report's ``decision`` with verification.
VERIFIED_DECISION = "verified margin over each training image's baseline (retrieval top-k, then pixel verification)"


def _image(path: str | Path) -> Tensor:
    return load_image(path).as_tensor().float()[:1]


def detect_memorization(
    train: str | Path | None,
    generated: str | Path,
    out_dir: str | Path,
    holdout: str | Path | None = None,
    embedder: str | Path | nn.Module = "structural",
    quantile: float = 0.99,
    top_k: int | None = None,
    index_dir: str | Path | None = None,
    verify: bool = True,
    include_qc_failed: bool = False,
) -> dict[str, Any]:
    """Check a generated set against a training set and write the report.

    Args:
        train: Training images (folder, datalist, ``demo:<kind>`` or manifest); unused with ``index_dir``.
        generated: Generated images (folder or ``manifest.jsonl``).
        out_dir: Report folder.
        holdout: Held-out real images for calibration (default: a by-subject split of ``train``).
        embedder: ``"structural"``, ``"pixel"``, ``"inception"``, a ``.safetensors`` file or an ``nn.Module``.
        quantile: Quantile of the null used as threshold.
        top_k: Training candidates retrieved (and verified) per sample (default: 20 with verification, else 5).
        index_dir: A prebuilt index folder instead of ``train``/``holdout``/``embedder``/``quantile``.
        verify: Two stages (retrieval, then pixel verification decides); False: the embedding decides.
        include_qc_failed: Check generated samples that failed quality control too (skipped by default).

    Returns:
        The ``report.json`` object (also written, with ``report.html``, into ``out_dir``).

    Raises:
        InputError: Naming ``generated``, ``top_k`` or ``index_dir`` (an index built without verification while
            ``verify`` is on); errors about the training set, hold-out set and embedder come from
            :func:`~medgen.memorization.index.build_index`.
    """
    if index_dir is not None:
        index = MemorizationIndex.load(index_dir)
        if verify and index.verification is None:
            raise InputError("index_dir", f"{index_dir} was built with verify=False: rebuild it, or pass verify=False")
    else:
        assert train is not None
        index = build_index(train, None, embedder, holdout, quantile, verify=verify)
    if not verify:
        index.verification = None
    top_k = top_k or (DEFAULT_TOP_K if verify else 5)
    items = list_items(generated, "generated", include_qc_failed)
    second = embed_items(index.second_embedder, items, "generated", query=True) if index.second else None
    result = index.search_embedded(embed_items(index.embedder, items, "generated", query=True), second, top_k)
    verified = verify_search(LazyImages(items), result, index.images, "verify candidates") if verify else None
    matches = index.matches(result, verified)
    confirmations: dict[int, dict[str, Any]] = {}
    pictures: dict[str, tuple[Tensor, list[Tensor]]] = {}
    flagged = [i for i, m in enumerate(matches) if m.flagged]
    for i in progress(flagged, "confirm flagged" if not verify else "pictures of flagged"):
        if verify and len(pictures) >= MAX_PICTURES:
            break  # with verification this loop only reads images for the report's pictures
        image = _image(items[i].path)
        if not verify:
            neighbours = [(j, _image(index.files[j])) for j in result.index[i].tolist()]
            best = confirm(image, neighbours)
            confirmations[i] = {**best.as_dict(), "train_file": index.files[best.train_index]}
        else:
            shown = result.index[i].tolist()[:NEIGHBOURS_SHOWN]
            neighbours = [(j, _image(index.files[j])) for j in shown]
        if len(pictures) < MAX_PICTURES:
            pictures[str(items[i].path)] = (image, [n for _, n in neighbours[:NEIGHBOURS_SHOWN]])
    samples = sample_rows([str(item.path) for item in items], matches, confirmations, index.files)
    extra = {
        "spatial_dims": index.train.spatial_dims,
        "search": {"top_k": top_k, "method": "exact cosine (torch chunked matmul)",
                   "volumes": "mean over slices of the best slice match per training volume"},
        "decision": VERIFIED_DECISION if verify else "embedding similarity",
        "verification": index.verification.as_dict() if index.verification is not None else None,
        "confirmation": None if verify else "NCC and SSIM after flip/rotation/shift alignment, top-k of flagged only",
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
