"""``medgen encode``'s work: every training and validation sample through a frozen encoder, once, into a folder.

The folder's layout and manifest are :mod:`medgen.data.latents`'. Writing follows ``medgen generate``'s rules
(:mod:`medgen.generation.manifest`): each latent goes to a temporary file renamed into place, then its row is
appended; a rerun of the same command skips the rows whose file has the recorded sha256 and finishes the rest; a
folder written with other options is refused. ``latents.json`` says ``"complete": true`` only once every sample is
there, and training refuses anything else.

Each sample is encoded alone with batch-invariant CPU kernels, as latent models encode batches during training
(:meth:`~medgen.models.latent.LatentSpace.encode`), so cached and on-the-fly training see the same bits on a CPU.
Images with a side above ``window`` voxels are encoded in overlapping tiles
(:func:`~medgen.nets.windowed.encode_windowed`: the whole-image result within float rounding, at the memory of one
tile).
"""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file
from torch.utils.data import Dataset

from medgen import __version__
from medgen.data.datamodule import MedicalImageDataModule
from medgen.data.io import atomic_write
from medgen.data.latents import FORMAT_VERSION, KIND, MANIFEST, SPLITS, sample_options
from medgen.errors import InputError
from medgen.generation.manifest import MANIFEST as ROWS
from medgen.generation.manifest import ManifestWriter, prepare
from medgen.hashing import file_sha256
from medgen.models.autoencoder import Autoencoder
from medgen.models.latent import LatentSpace, weights_sha256
from medgen.nets.autoencoder import KLAutoencoder, Posterior
from medgen.nets.invariance import batch_invariant_kernels
from medgen.nets.windowed import can_window, encode_windowed
from medgen.progress import progress
from medgen.store.load import LoadedModel

Store = Literal["posterior", "sample"]


@dataclass(frozen=True)
class EncodeOptions:
    """What ``medgen encode`` writes.

    Attributes:
        out_dir: The output folder.
        store: ``posterior`` (mean and std: a latent model may draw a new latent each epoch) or ``sample`` (one
            latent drawn from the posterior with ``seed``).
        seed: Seed of the ``sample`` draws (sample i uses ``seed · 1000003 + i`` within its split).
        window: Images with a side above this many voxels are encoded in tiles of this side (0: never).
    """

    out_dir: Path
    store: Store = "posterior"
    seed: int = 0
    window: int = 128


@dataclass(frozen=True)
class EncodeSummary:
    """What one ``medgen encode`` run did: samples per split, how many were already there, the manifest."""

    counts: dict[str, int]
    reused: int
    manifest: Path


def first_stage(loaded: LoadedModel, ref: str) -> KLAutoencoder:
    """The KL autoencoder of an autoencoder or latent model.

    Raises:
        InputError: The model has no KL autoencoder (names ``ref``).
    """
    model = loaded.model
    if isinstance(model, Autoencoder) and isinstance(model.net, KLAutoencoder):
        return model.net
    if isinstance(model, LatentSpace) and isinstance(model.autoencoder, KLAutoencoder):
        return model.autoencoder
    raise InputError(ref, f"is a {type(model).__name__}: medgen encode needs a KL autoencoder or a latent model on one")


def encode_data(
    dm: MedicalImageDataModule, loaded: LoadedModel, ref: str, opts: EncodeOptions, device: torch.device
) -> EncodeSummary:
    """Encode ``dm``'s training and validation samples with ``loaded``'s autoencoder into ``opts.out_dir``.

    Raises:
        InputError: Random patches (``data.patches``), a cached-latents data module, tiles off the latent grid, or
            an output folder holding latents of other options.
    """
    if dm.config.patches:
        raise InputError("data.patches", "random patches change every epoch: encode whole volumes (patches: false)")
    if dm.latents_dir is not None:
        raise InputError("data.latents_dir", "medgen encode reads images: leave data.latents_dir unset")
    autoencoder = first_stage(loaded, ref).to(device).eval()
    identity = {
        "checkpoint_sha256": loaded.sha256,
        "weights_sha256": weights_sha256(autoencoder),
        "data_options": sample_options(dict(dm.hparams)),
        "store": opts.store,
        "seed": opts.seed,
        "window": opts.window,
    }
    out = opts.out_dir
    _check_folder(out, identity)
    dm.setup("fit")
    record = _record(dm, autoencoder, loaded, ref, identity)
    atomic_write(out / MANIFEST, lambda tmp: tmp.write_text(json.dumps(record, indent=2)))
    datasets = {"train": dm.train_set, "val": dm.val_set}
    counts, reused, moments = {}, 0, torch.zeros(3, dtype=torch.float64)
    for split in SPLITS:
        dataset = datasets[split]
        rows, done = _encode_split(
            dataset, autoencoder, out / split, opts, device, moments if split == "train" else None
        )
        counts[split], reused = len(rows), reused + done
        record["splits"][split]["count"] = len(rows)
    n, total, squares = (float(v) for v in moments)
    std = ((squares - total * total / n) / max(n - 1.0, 1.0)) ** 0.5 if n else 0.0
    record["scale_factor"] = None if std <= 0 else 1.0 / std
    record["complete"] = True
    atomic_write(out / MANIFEST, lambda tmp: tmp.write_text(json.dumps(record, indent=2)))
    return EncodeSummary(counts, reused, out / MANIFEST)


def _check_folder(out: Path, identity: dict[str, Any]) -> None:
    """Refuse an output folder that holds other files, or latents written with other options."""
    path = out / MANIFEST
    if path.is_file():
        changed = sorted(k for k, v in identity.items() if _identity_of(path).get(k) != v)
        if changed:
            listed = ", ".join(changed)
            raise InputError(out, f"holds latents encoded with other options ({listed} differ); use a new --out folder")
    elif out.is_dir() and any(out.iterdir()):
        raise InputError(out, "is not empty and holds no latents.json: use a new --out folder")


def _identity_of(path: Path) -> dict[str, Any]:
    """The ``identity`` of an earlier run's ``latents.json`` (an unreadable one is refused)."""
    try:
        found = json.loads(path.read_text())["identity"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        found = None
    if isinstance(found, dict):
        return found
    raise InputError(path, "is not a readable medgen encode manifest; use a new --out folder")


def _record(
    dm: MedicalImageDataModule, autoencoder: KLAutoencoder, loaded: LoadedModel, ref: str, identity: dict[str, Any]
) -> dict[str, Any]:
    """The manifest before any latent is written (``complete`` false, split counts 0)."""
    import monai

    assert dm.datalist is not None
    splits = {
        split: {"count": 0, "records": [_plain_record(r) for r in getattr(dataset, "records", [])]}
        for split, dataset in (("train", dm.train_set), ("val", dm.val_set))
    }
    size = tuple(dm.image_size)
    return {
        "kind": KIND,
        "format_version": FORMAT_VERSION,
        "complete": False,
        "identity": identity,
        "autoencoder": {
            "checkpoint": ref,
            "checkpoint_sha256": loaded.sha256,
            "weights_sha256": identity["weights_sha256"],
            "config": json.loads(json.dumps(autoencoder.config)),
            "factor": autoencoder.factor,
            "latent_channels": autoencoder.latent_channels,
        },
        "data": {
            "options": identity["data_options"],
            "record": json.loads(json.dumps(dm.describe())),
            "vocab": dm.condition_vocab,
        },
        "sources": _sources(dm),
        "splits": splits,
        "store": identity["store"],
        "seed": identity["seed"],
        "image_size": list(size),
        "latent_shape": [autoencoder.latent_channels, *autoencoder.latent_size(size)],
        "scale_factor": None,
        "versions": {"medgen": __version__, "torch": torch.__version__, "monai": monai.__version__,
                     "python": sys.version.split()[0], "platform": platform.platform()},
    }  # fmt: skip


def _plain_record(r: Any) -> dict[str, Any]:
    return {
        "image": r.image,
        "subject": r.subject,
        "mask": r.mask,
        "conditions": dict(r.conditions),
        "source": r.source,
    }


def _sources(dm: MedicalImageDataModule) -> list[dict[str, Any]]:
    """Every file the samples come from: sha256 of files; size and modification time of folders (DICOM series)."""
    assert dm.datalist is not None
    paths = sorted({p for r in dm.datalist.records for p in (r.image, r.mask, r.source) if p})
    out: list[dict[str, Any]] = []
    for p in paths:
        path = Path(p)
        if path.is_file():
            out.append({"file": p, "sha256": file_sha256(path)})
        else:
            files = [f for f in path.rglob("*") if f.is_file()]
            stats = [f.stat() for f in files]
            out.append({"file": p, "files": len(files), "size": sum(s.st_size for s in stats),
                        "mtime": max((s.st_mtime for s in stats), default=0.0)})  # fmt: skip
    return out


def _encode_split(
    dataset: Dataset | None,
    autoencoder: KLAutoencoder,
    split_dir: Path,
    opts: EncodeOptions,
    device: torch.device,
    moments: torch.Tensor | None,
) -> tuple[list[int], int]:
    """Write the latents of one split that are missing; ``(indices, how many were already there)``.

    ``moments`` (count, sum, sum of squares of the stored latents, float64) accumulates over every sample.
    """
    n = 0 if dataset is None else len(dataset)  # type: ignore[arg-type]
    split_dir.mkdir(parents=True, exist_ok=True)
    done = prepare(split_dir, 0, 1)
    writer = ManifestWriter(split_dir / ROWS)
    try:
        for index in progress(range(n), f"encoding {split_dir.name}") if n else []:
            assert dataset is not None
            if index in done:
                tensors = _load(split_dir / str(done[index]["file"]))
            else:
                item = dataset[index]
                tensors = encode_image(autoencoder, item["image"], opts, index, device)
                name = f"sample_{index:06d}.safetensors"
                atomic_write(split_dir / name, partial(_save, tensors))
                writer.append({
                    "index": index, "file": name, "sha256": file_sha256(split_dir / name),
                    "subject": str(item["subject"]), "slice": item.get("slice"),
                    "cond": {k: float(v) for k, v in item.get("cond", {}).items()},
                })  # fmt: skip
            if moments is not None:
                z = (tensors["mean"] if "mean" in tensors else tensors["latent"]).double()
                moments += torch.stack([torch.tensor(float(z.numel()), dtype=torch.float64), z.sum(), z.square().sum()])
    finally:
        writer.close()
    return list(range(n)), sum(1 for i in done if i < n)


def _save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file(tensors, str(path))


def _load(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def encode_image(
    autoencoder: KLAutoencoder, image: torch.Tensor, opts: EncodeOptions, index: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """``{"mean", "std"}`` or ``{"latent"}`` ``(latent_channels, *latent_size)`` of one image ``(C, *spatial)``."""
    x = image.unsqueeze(0).to(device)
    with torch.no_grad(), batch_invariant_kernels(device):
        if opts.window and max(x.shape[2:]) > opts.window and can_window(autoencoder.encoder):
            try:
                posterior = encode_windowed(autoencoder, x, opts.window)
            except ValueError as exc:
                raise InputError("--window", str(exc)) from None
        else:
            posterior = autoencoder.posterior(x)
    mean, std = posterior.mean[0].float().cpu().contiguous(), posterior.std[0].float().cpu().contiguous()
    if opts.store == "posterior":
        return {"mean": mean, "std": std}
    generator = torch.Generator().manual_seed(opts.seed * 1_000_003 + index)
    return {"latent": Posterior(mean, std).sample(generator).contiguous()}
