"""Cached latents: the folder ``medgen encode`` writes, and the datasets a latent model trains from instead of images.

Layout of an encode output ``DIR``::

    DIR/latents.json                 the manifest (below); ``"complete": true`` once every latent is written
    DIR/train/sample_000000.safetensors, …   one file per training sample (2D: per kept slice), in dataset order
    DIR/train/manifest.jsonl         one row per finished file (index, file, sha256, subject, slice, cond)
    DIR/val/…                        the same for the validation split

A sample file holds ``mean`` and ``std`` of the posterior ``(latent_channels, *latent_size)`` (``store:
posterior``), or one drawn ``latent`` (``store: sample``). Latents are unscaled: the latent model multiplies them by
its ``latent_scale`` exactly as it does encoder outputs. The manifest records the source files with their sha256,
the autoencoder checkpoint's sha256 and its weights' sha256, the data options, the latent shape and the
``scale_factor`` (1 / std of the training latents, for ``latent_scale``).

Training reads the folder through ``data.latents_dir`` (:func:`open_latents`): the data options must be those the
latents were encoded with (they decide the samples), the latent model's autoencoder must be the encoder's, and the
datasets give the same items in the same order as the image datasets, so one training step sees the same tensors.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset

from medgen.data.datalist import Datalist, ImageRecord
from medgen.errors import InputError

MANIFEST = "latents.json"
KIND = "medgen-latents"
FORMAT_VERSION = 1
SPLITS = ("train", "val")
#: Data options that do not change which samples exist or what they hold (not compared with the manifest's).
LOADING_OPTIONS = ("batch_size", "num_workers", "cache", "cache_dir", "latents_dir", "latent_draw")
Draw = Literal["mean", "sample"]


def sample_options(options: dict[str, Any]) -> dict[str, Any]:
    """The data options that decide the samples (every option but :data:`LOADING_OPTIONS`), JSON-plain."""
    kept = {k: v for k, v in sorted(options.items()) if k not in LOADING_OPTIONS and not k.startswith("_")}
    return json.loads(json.dumps(kept))


def read_manifest(folder: str | Path) -> tuple[Path, dict[str, Any]]:
    """``(path, record)`` of a finished encode output's ``latents.json``.

    Raises:
        InputError: Naming the file: absent, not JSON, not a medgen encode manifest, or unfinished.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise InputError(path, "not found: data.latents_dir must be a folder written by medgen encode")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        record = None
    if not isinstance(record, dict) or record.get("kind") != KIND:
        raise InputError(path, f"is not a medgen encode manifest (expected JSON with kind '{KIND}')")
    if record.get("format_version") != FORMAT_VERSION:
        raise InputError(path, f"has format_version {record.get('format_version')}, expected {FORMAT_VERSION}")
    if not record.get("complete"):
        raise InputError(path, "is an unfinished encode: rerun the same medgen encode command to finish it")
    return path, record


@dataclass
class CachedLatents:
    """An encode output opened for training.

    Attributes:
        manifest: Path of ``latents.json``.
        record: Its content.
        datalist: The records of both splits (subjects, conditions, vocabulary) as the encoder's data module had them.
        train: Training samples, in the image dataset's order.
        val: Validation samples (None without a validation split).
        subjects: Subjects of the training split.
    """

    manifest: Path
    record: dict[str, Any]
    datalist: Datalist
    train: LatentDataset
    val: LatentDataset | None
    subjects: list[str]


def open_latents(
    folder: str | Path, options: dict[str, Any], draw: Draw, seed: int, model: object | None
) -> CachedLatents:
    """Open ``folder`` for a data module built with ``options``, and switch ``model`` to cached latents.

    Args:
        folder: The encode output.
        options: The data module's init arguments.
        draw: ``mean``: the posterior mean (what on-the-fly encoding trains on); ``sample``: ``mean + std · ε`` with
            ``ε`` drawn anew each epoch from ``(seed, epoch, index)`` (needs latents stored as ``posterior``).
        seed: Seed of those draws.
        model: The latent model that trains (None outside a trainer).

    Raises:
        InputError: Naming the manifest: other data options, a model that is not a latent model, or ``draw:
            sample`` on latents stored as one sample. (Other autoencoder weights: at the first batch, see
            :meth:`~medgen.models.latent.LatentSpace.use_cached_latents`.)
    """
    path, record = read_manifest(folder)
    differ = [k for k, v in sample_options(options).items() if record["data"]["options"].get(k) != v]
    if differ:
        raise InputError(
            path,
            f"latents were encoded with other data options ({', '.join(differ)} differ); "
            "pass the options they were encoded with, or encode again",
        )
    if draw == "sample" and record["store"] != "posterior":
        raise InputError(path, "holds one sampled latent per image: data.latent_draw sample needs --store posterior")
    if model is not None:
        _attach(model, path, record)
    splits = record["splits"]
    records = {s: [ImageRecord(**r) for r in splits[s]["records"]] for s in SPLITS}
    datalist = Datalist(records["train"] + records["val"], dict(record["data"]["vocab"]), str(folder))
    train = LatentDataset(Path(folder) / "train", records["train"], record["store"], draw, seed)
    val = LatentDataset(Path(folder) / "val", records["val"], record["store"], "mean", seed) if records["val"] else None
    return CachedLatents(path, record, datalist, train, val, sorted({r.subject for r in records["train"]}))


def _attach(model: object, path: Path, record: dict[str, Any]) -> None:
    """Switch a latent model to cached latents (its autoencoder's weights are checked at the first batch).

    Architecture options that leave the weights as they are (``use_flash_attention``, ``use_checkpoint``) may differ.
    The model is recognised by its ``use_cached_latents`` method (the data layer does not import the models').
    """
    use_cached_latents = getattr(model, "use_cached_latents", None)
    if not callable(use_cached_latents):
        raise InputError(
            "data.latents_dir",
            f"cached latents train latent models (LatentDiffusionModel, LatentFlowModel), not {type(model).__name__}",
        )
    use_cached_latents(str(path), record["autoencoder"]["weights_sha256"])


def _rows(split_dir: Path) -> list[dict[str, Any]]:
    """The rows of a finished encode's ``manifest.jsonl`` (the generation manifest's format), by index."""
    path = split_dir / "manifest.jsonl"
    if not path.is_file():
        return []
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as err:
        raise InputError(path, f"is not valid JSON lines ({err}): the encode output is damaged") from err
    return sorted(rows, key=lambda r: int(r["index"]))


class LatentDataset(Dataset):
    """Samples of one split of an encode output: ``{"image": (latent_channels, *latent_size), "subject", "cond"}``.

    ``image`` is the unscaled latent (the posterior mean, one draw from the posterior, or the stored sample); 2D
    samples also carry the ``slice`` they were cut from, like :class:`~medgen.data.datasets.SliceDataset`'s.

    Args:
        split_dir: ``DIR/train`` or ``DIR/val``.
        records: The split's image records.
        store: ``posterior`` (files hold ``mean`` and ``std``) or ``sample`` (files hold ``latent``).
        draw: ``mean`` or ``sample`` (see :func:`open_latents`).
        seed: Seed of the posterior draws.
    """

    def __init__(self, split_dir: Path, records: Sequence[ImageRecord], store: str, draw: Draw, seed: int) -> None:
        self.split_dir = split_dir
        self.records = list(records)
        self.rows = _rows(split_dir)
        if [int(r["index"]) for r in self.rows] != list(range(len(self.rows))):
            raise InputError(split_dir / "manifest.jsonl", "does not list samples 0..n-1: the encode output is damaged")
        self.store = store
        self.seed = seed
        #: Keys from the sampler are ``epoch · len + index`` when draws change per epoch.
        self.random_draws = draw == "sample"

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int) -> dict[str, Any]:
        """The sample ``key % len`` (``key`` is ``epoch · len + index`` when drawing from the posterior)."""
        row = self.rows[key % len(self.rows)]
        tensors = load_file(str(self.split_dir / str(row["file"])))
        if self.store == "sample":
            latent = tensors["latent"]
        elif self.random_draws:
            generator = torch.Generator().manual_seed((self.seed * 1_000_003 + key) % 2**63)
            eps = torch.randn(tensors["mean"].shape, generator=generator, dtype=tensors["mean"].dtype)
            latent = tensors["mean"] + tensors["std"] * eps
        else:
            latent = tensors["mean"]
        out: dict[str, Any] = {"image": latent, "subject": row["subject"]}
        out["cond"] = {k: torch.tensor(float(v)) for k, v in row["cond"].items()}
        if row.get("slice") is not None:
            out["slice"] = int(row["slice"])
        return out
