"""A reusable on-disk memorization index: training embeddings, calibrated threshold and the embedder's spec.

Build it once per training set, then check any number of generated images against it (``medgen generate
--memorization-index DIR`` gates augmentation sets with it)::

    index = build_index("train_slices/", "mem_index/", holdout="holdout_slices/")
    index = MemorizationIndex.load("mem_index/")
    matches = index.check(images)          # images: (B, 1, *spatial)
    keep = [not m.flagged for m in matches]

Folder layout: ``index.json`` (threshold, calibration, embedder spec, training files, spatial_dims),
``embeddings.safetensors`` (``vectors`` ``(M, d)``, ``owner`` ``(M,)``, ``null`` ``(n,)``) and, for a structural
embedder, its weights and spec (``embedder.safetensors`` / ``embedder.json``) so the folder stands alone.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from medgen import __version__
from medgen.data.io import atomic_write
from medgen.errors import InputError
from medgen.memorization.calibrate import Calibration, CalibrationSource, calibrate, subject_split
from medgen.memorization.embedders import (
    CroppedPixelEmbedder,
    Embedded,
    Embedder,
    embed_images,
    get_embedder,
    load_structural,
)
from medgen.memorization.search import Backend, SearchResult, search, union
from medgen.memorization.sources import embed_items, list_items, load_items, load_one, slice_subjects
from medgen.memorization.verified import (
    DEFAULT_TOP_K,
    CandidateImages,
    is_copy,
    null_margins,
    training_baselines,
    verified_calibration,
    verify_all,
    verify_search,
)
from medgen.memorization.verify import Verification

INDEX_JSON, EMBEDDINGS = "index.json", "embeddings.safetensors"


@dataclass
class Match:
    """Nearest training image of one checked image.

    Attributes:
        nearest_train: File of the most similar training image (or volume).
        similarity: Its cosine similarity in the embedding.
        flagged: The decision: verified score above the verified threshold (two-stage index), else
            ``similarity`` above the embedding threshold.
        train_index: Position of ``nearest_train`` in the index's training files.
        neighbours: Top-k ``(file, similarity)``, best first.
        verification: Best pixel-space verification among the top-k (two-stage index), with its transform.
    """

    nearest_train: str
    similarity: float
    flagged: bool
    train_index: int
    neighbours: list[tuple[str, float]]
    verification: Verification | None = None


class MemorizationIndex:
    """Training-set embeddings plus a calibrated threshold.

    Args:
        embedder: The embedder the vectors were made with.
        train: Embeddings of the training images.
        files: One path per training image/volume.
        calibration: Embedding threshold and its null distribution.
        verification: Threshold on the verified score (two stages: retrieval, then pixel verification) and its
            null; None: embedding-only decisions (``--no-verify``).
        images: Training images for verification (default: loaded from ``files`` on first use).
        second: Training embeddings of the second retrieval descriptor (:class:`CroppedPixelEmbedder`);
            candidates are the union of both retrievals. None: the embedder alone.
    """

    def __init__(
        self,
        embedder: Embedder,
        train: Embedded,
        files: Sequence[str],
        calibration: Calibration,
        verification: Calibration | None = None,
        images: CandidateImages | None = None,
        second: Embedded | None = None,
    ) -> None:
        if len(files) != train.count:
            raise InputError("files", f"{len(files)} files for {train.count} embedded training images")
        self.embedder, self.train, self.files, self.calibration = embedder, train, list(files), calibration
        self.verification = verification
        self.images = images or CandidateImages(lambda i: load_one(self.files[i]))
        self.second, self.second_embedder = second, CroppedPixelEmbedder()

    @property
    def threshold(self) -> float:
        """Similarities above this are flagged."""
        return self.calibration.threshold

    @classmethod
    def build(
        cls,
        embedder: Embedder,
        train: Embedded,
        files: Sequence[str],
        subjects: Sequence[str],
        holdout: Embedded | None = None,
        quantile: float = 0.99,
        seed: int = 0,
    ) -> MemorizationIndex:
        """Calibrate on ``holdout`` (nearest-train similarities), else on a by-subject split of ``train``.

        With no holdout, 20 % of the training subjects are held out and matched against the other 80 %; the
        threshold then errs on the low side (fewer reference images, lower nearest-neighbour similarities).
        """
        if holdout is not None:
            null = search(holdout, train, k=1).similarity[:, 0]
            return cls(embedder, train, files, calibrate(null, quantile, "holdout"))
        reference, held = subject_split(subjects, 0.2, seed)
        null = search(train.subset(held), train.subset(reference), k=1).similarity[:, 0]
        calibration = calibrate(null, quantile, "train_split")
        calibration.notes.append(
            f"null: {len(held)} training images of {len(set(subjects[i] for i in held))} held-out subjects "
            f"matched against the other {len(reference)}"
        )
        if len(getattr(embedder, "query_rotations", (0.0,))) > 1:
            calibration.notes.append(
                "the held-out training images were embedded without query rotations: the null is slightly low, "
                "so slightly more samples are flagged than with --holdout"
            )
        if train.spatial_dims == 2 and len(set(subjects)) == len(subjects):
            calibration.notes.append(
                "every 2D file is its own subject: if files are slices of the same patients the null is inflated "
                "(use one folder per patient, a datalist with a 'subject' column, or --holdout)"
            )
        return cls(embedder, train, files, calibration)

    def calibrate_verification(
        self,
        null: Embedded,
        images: Sequence[Tensor],
        n_subjects: int,
        quantile: float = 0.99,
        reference: Sequence[int] | None = None,
        subjects: Sequence[str] | None = None,
        null_subjects: Sequence[str] | None = None,
    ) -> Calibration:
        """Run retrieval + verification on null images and set the threshold on the verified score.

        Args:
            null: Embeddings of the null images (real images the model never saw).
            images: The null images ``(1, *spatial)``, in the same order.
            n_subjects: Independent subjects among them (a warning below 200).
            quantile: Quantile of the verified null scores.
            reference: Training images the null is matched against (a by-subject split: the null's own
                subjects are left out, so no same-subject pair enters the null); None: all of them.
            subjects: Subject of each training image: each training image's baseline (its best verified score
                against other subjects, :func:`~medgen.memorization.verified.training_baselines`) is computed
                first, and the threshold applies to the margin over it. None or a single subject: no baselines.
            null_subjects: Subject of each null image, for the null's share of the baselines
                (:func:`~medgen.memorization.verified.null_margins`, leave one subject out); None: each image
                its own subject.
        """
        baselines = torch.zeros(self.train.count)
        if subjects is not None and len(set(subjects)) > 1:
            baselines = self.training_baselines(subjects)
        database = self.train if reference is None else self.train.subset(reference)
        result = search(null, database, DEFAULT_TOP_K)
        if self.second is not None:
            second = self.second if reference is None else self.second.subset(reference)
            extra = search(embed_images(self.second_embedder, list(images), query=True), second, DEFAULT_TOP_K)
            result = union(result, extra, DEFAULT_TOP_K)
        if reference is not None:
            result = SearchResult(result.similarity, torch.as_tensor(list(reference))[result.index])
        self.images.baselines = None
        everything = verify_all(images, result, self.images, "verify null")
        names = list(null_subjects) if null_subjects is not None else [str(i) for i in range(len(everything))]
        checks, self.images.baselines = null_margins(everything, names, baselines)
        source: CalibrationSource = "holdout" if reference is None else "train_split"
        self.verification = verified_calibration(checks, quantile, source, n_subjects)
        return self.verification

    def training_baselines(self, subjects: Sequence[str]) -> Tensor:
        """``(N,)`` each training image's best verified score against the training images of other subjects."""
        largest = max(Counter(subjects).values())
        k = min(self.train.count, DEFAULT_TOP_K + largest)
        result = self.search_embedded(self.train, self.second, k)
        return training_baselines(self.images, result, subjects)

    def search(self, images: Tensor | Sequence[Tensor], k: int = 5, backend: Backend = "torch") -> SearchResult:
        """Top-k training candidates of ``images`` ``(B, 1, *spatial)`` (or a list of ``(1, *spatial)``)."""
        batch = list(images)
        second = embed_images(self.second_embedder, batch, query=True) if self.second is not None else None
        return self.search_embedded(self.embed(batch), second, k, backend)

    def search_embedded(
        self, first: Embedded, second: Embedded | None, k: int, backend: Backend = "torch"
    ) -> SearchResult:
        """Top-k candidates from query embeddings: the embedder's, united with the second descriptor's if any."""
        result = search(first, self.train, k, backend)
        if second is None or self.second is None:
            return result
        return union(result, search(second, self.second, k, backend), k)

    def embed(self, images: Tensor | Sequence[Tensor]) -> Embedded:
        """Embed images ``(B, 1, *spatial)`` or a list of ``(1, *spatial)`` with the index's embedder."""
        batch = list(images)
        if batch and batch[0].ndim - 1 != self.train.spatial_dims:
            raise InputError(
                "images",
                f"expected (B, 1, *{self.train.spatial_dims} spatial) like the index, got {batch[0].ndim - 1}D",
            )
        return embed_images(self.embedder, batch, query=True)

    def matches(self, result: SearchResult, verified: Sequence[Verification] | None = None) -> list[Match]:
        """Turn a search result (and the verifications of its rows) into flagged :class:`Match` rows."""
        out = []
        for row, (sims, idx) in enumerate(zip(result.similarity.tolist(), result.index.tolist(), strict=True)):
            neighbours = [(self.files[i], s) for i, s in zip(idx, sims, strict=True)]
            if verified is not None and self.verification is not None:
                check = verified[row]
                flagged = is_copy(check, self.verification.threshold)
                out.append(Match(self.files[idx[0]], sims[0], flagged, idx[0], neighbours, check))
            else:
                out.append(Match(self.files[idx[0]], sims[0], sims[0] > self.threshold, idx[0], neighbours))
        return out

    def check(self, images: Tensor | Sequence[Tensor], k: int | None = None) -> list[Match]:
        """Nearest training images of each image and whether it is flagged as a copy.

        With a verified calibration, the top-k retrieved training images of each image are aligned to it in
        pixel space and the best verified score decides (:mod:`.verified`); otherwise the embedding does.

        Args:
            images: ``(B, 1, *spatial)`` (any intensity scale: every image is z-scored) or a list of
                ``(1, *spatial)`` tensors of possibly different sizes.
            k: Neighbours retrieved (and verified) per image (default: 20 when verifying, else 5).

        Returns:
            One :class:`Match` per image, in order.
        """
        batch = list(images)
        k = k or (DEFAULT_TOP_K if self.verification is not None else 5)
        result = self.search(batch, k)
        if self.verification is None:
            return self.matches(result)
        return self.matches(result, verify_search(batch, result, self.images, "verify candidates"))

    def save(self, out_dir: str | Path) -> Path:
        """Write the index folder (see the module docstring) and return it."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        spec = self.embedder.spec.as_dict()
        if spec["name"] == "structural" and spec.get("path"):
            src = Path(str(spec["path"]))
            for suffix in (".safetensors", ".json"):
                target = out / f"embedder{suffix}"
                if src.with_suffix(suffix).resolve() != target.resolve():
                    shutil.copyfile(src.with_suffix(suffix), target)
            spec["path"] = "embedder.safetensors"
        tensors = {"vectors": self.train.vectors.contiguous(), "owner": self.train.owner.contiguous(),
                   "null": self.calibration.null.contiguous()}  # fmt: skip
        if self.verification is not None:
            tensors["verified_null"] = self.verification.null.contiguous()
        if self.images.baselines is not None:
            tensors["verified_baselines"] = self.images.baselines.contiguous()
        if self.second is not None:
            tensors["second_vectors"] = self.second.vectors.contiguous()
            tensors["second_owner"] = self.second.owner.contiguous()
        atomic_write(out / EMBEDDINGS, lambda tmp: save_file(tensors, str(tmp)))
        meta: dict[str, Any] = {
            "medgen_version": __version__,
            "threshold": self.threshold,
            "calibration": self.calibration.as_dict(),
            "verification": self.verification.as_dict() if self.verification is not None else None,
            "embedding": spec,
            "spatial_dims": self.train.spatial_dims,
            "files": self.files,
        }
        atomic_write(out / INDEX_JSON, lambda tmp: tmp.write_text(json.dumps(meta, indent=2)))
        return out

    @classmethod
    def load(cls, index_dir: str | Path, embedder: nn.Module | None = None) -> MemorizationIndex:
        """Load an index folder; the embedder is rebuilt from its spec (sha256-checked) unless given.

        Args:
            index_dir: Folder written by :meth:`save` / :func:`build_index`.
            embedder: The user ``nn.Module`` the index was built with (required for user embedders).

        Raises:
            InputError: Missing/corrupt files, or an embedder whose sha256 differs from the index's.
        """
        root = Path(index_dir)
        try:
            meta = json.loads((root / INDEX_JSON).read_text(encoding="utf-8"))
            tensors = load_file(str(root / EMBEDDINGS))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(root, f"not a memorization index ({type(exc).__name__}: {exc})") from None
        spec = meta["embedding"]
        model = _embedder_for(root, spec, embedder)
        train = Embedded(tensors["vectors"], tensors["owner"], len(meta["files"]), int(meta["spatial_dims"]))
        cal = meta["calibration"]
        calibration = Calibration(
            float(meta["threshold"]), cal["quantile"], cal["source"], tensors["null"], cal["notes"]
        )
        ver = meta.get("verification")
        verification = None
        if ver is not None:
            null = tensors["verified_null"]
            verification = Calibration(float(ver["threshold"]), ver["quantile"], ver["source"], null, ver["notes"])
        second = None
        if "second_vectors" in tensors:
            second = Embedded(tensors["second_vectors"], tensors["second_owner"], train.count, train.spatial_dims)
        index = cls(model, train, meta["files"], calibration, verification, second=second)
        index.images.baselines = tensors.get("verified_baselines")
        return index


def _embedder_for(root: Path, spec: dict[str, Any], embedder: nn.Module | None) -> Embedder:
    if embedder is not None:
        model = get_embedder(embedder)
    elif spec["name"] == "structural":
        model = load_structural(root / str(spec.get("path") or "embedder.safetensors"))
    elif spec["name"] in ("pixel", "inception"):
        model = get_embedder(spec["name"])
    else:
        raise InputError(root, f"index was built with the user embedder {spec['name']!r}: pass it as embedder=")
    if model.spec.sha256 != spec.get("sha256") or model.spec.name != spec["name"]:
        raise InputError(
            root, f"embedder {model.spec.name} (sha256 {model.spec.sha256}) is not the index's "
            f"{spec['name']} (sha256 {spec.get('sha256')})"
        )  # fmt: skip
    return model


def build_index(
    train_source: str | Path,
    out_dir: str | Path | None = None,
    embedder: str | Path | nn.Module = "structural",
    holdout: str | Path | None = None,
    quantile: float = 0.99,
    seed: int = 0,
    verify: bool = True,
) -> MemorizationIndex:
    """Embed a training set, calibrate the thresholds and (when ``out_dir`` is given) save the index.

    2D files directly in one folder are grouped into volumes by file-name stem and slice index
    (:func:`~medgen.memorization.sources.slice_subjects`) before a by-subject split.

    Args:
        train_source: Folder, datalist, ``demo:<kind>`` or manifest of the training images.
        out_dir: Index folder to write (None: keep in memory only).
        embedder: ``"structural"`` (default), ``"pixel"``, ``"inception"``, a ``.safetensors`` file or an ``nn.Module``.
        holdout: Real images not in the training set, for the null distribution (default: a by-subject split).
        quantile: Quantile of the null used as threshold.
        seed: Seed of the by-subject split.
        verify: Calibrate the two-stage decision (retrieval + pixel verification); False: embedding only.
    """
    model = get_embedder(embedder)
    items = list_items(train_source, "--train")
    train = embed_items(model, items, "--train")
    held_items = list_items(holdout, "--holdout") if holdout else []
    held = embed_items(model, held_items, "--holdout", query=True) if holdout else None
    files = [str(item.path) for item in items]
    grouped = slice_subjects(items, single_volume=holdout is not None)
    subjects = grouped if train.spatial_dims == 2 else [i.subject for i in items]
    index = MemorizationIndex.build(model, train, files, subjects, held, quantile, seed)
    if verify:
        index.second = embed_items(index.second_embedder, items, "--train (second descriptor)")
    if verify and held is not None:
        held_grouped = slice_subjects(held_items, single_volume=True)
        held_subjects = held_grouped if held.spatial_dims == 2 else [i.subject for i in held_items]
        n_held = len(set(held_subjects))
        index.calibrate_verification(
            held, load_items(held_items), n_held, quantile, subjects=subjects, null_subjects=held_subjects
        )
    elif verify:
        reference, null = subject_split(subjects, 0.2, seed)
        images = load_items([items[i] for i in null])
        names = [subjects[i] for i in null]
        index.calibrate_verification(train.subset(null), images, len(set(names)), quantile, reference, subjects, names)
    if out_dir is not None:
        index.save(out_dir)
    return index
