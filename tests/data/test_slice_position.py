"""``data.slice_position``: each 2D slice's position along its volume as a scalar condition a model can be asked for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medgen.data.datamodule import MedicalImageDataModule
from medgen.errors import InputError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small volumes of 9 and 13 slices along each axis whose first and last two slices are empty."""
    import nibabel as nib
    import numpy as np

    folder = tmp_path_factory.mktemp("volumes")
    rng = np.random.default_rng(0)
    for name, n in (("a", 9), ("b", 13)):
        data = np.zeros((n, n, n), np.float32)
        data[2:-2, 2:-2, 2:-2] = 100 + rng.random((n - 4,) * 3, np.float32) * 50
        nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), folder / f"{name}.nii.gz")
    return folder


def _module(data: Path, spatial_dims: int = 2, **options: object) -> MedicalImageDataModule:
    args: dict[str, object] = {"modality": "mri", "spatial_dims": spatial_dims, "image_size": 8, "num_workers": 0,
                               "val_fraction": 0.0, "slice_position": "level", **options}  # fmt: skip
    return MedicalImageDataModule(str(data), **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("axis", [1, 2])
def test_positions_run_from_0_to_1_along_each_volume(volumes: Path, axis: int) -> None:
    dm = _module(volumes, slice_axis=axis, min_foreground=0.0)  # every slice kept: the first is 0, the last is 1
    dm.setup("fit")
    items = [dm.train_set[i] for i in range(len(dm.train_set))]  # type: ignore[arg-type]
    for subject in {item["subject"] for item in items}:
        rows = sorted((int(it["slice"]), float(it["cond"]["level"])) for it in items if it["subject"] == subject)
        positions = [p for _, p in rows]
        assert positions[0] == 0.0 and positions[-1] == 1.0
        assert all(b > a for a, b in zip(positions, positions[1:], strict=False))
        n = rows[-1][0] + 1
        assert n == {"a": 9, "b": 13}[subject]
        assert all(p == pytest.approx(s / (n - 1)) for s, p in rows)
    assert dm.describe()["slice_position"] == "level"


def test_the_foreground_filter_keeps_each_slice_its_position_in_the_whole_volume(volumes: Path) -> None:
    every, kept = _module(volumes, min_foreground=0.0), _module(volumes)
    every.setup("fit")
    kept.setup("fit")
    by_slice = {(it["subject"], int(it["slice"])): float(it["cond"]["level"]) for it in every.train_set}  # type: ignore[attr-defined]
    filtered = [kept.train_set[i] for i in range(len(kept.train_set))]  # type: ignore[arg-type]
    assert len(filtered) < len(by_slice)  # the filter dropped the empty edge slices
    assert min(float(it["cond"]["level"]) for it in filtered) > 0.0
    assert all(float(it["cond"]["level"]) == by_slice[(it["subject"], int(it["slice"]))] for it in filtered)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_slice_position_is_refused_where_there_are_no_slices(volumes: Path, spatial_dims: int) -> None:
    if spatial_dims == 2:  # 2D from cached latents: the latents carry no slice index
        with pytest.raises(InputError, match="data.slice_position"):
            _module(volumes, latents_dir="latents/")
    else:
        with pytest.raises(InputError, match="data.slice_position.*2D slices"):
            _module(volumes, spatial_dims=3)


def test_a_datalist_column_of_the_same_name_is_refused(volumes: Path, tmp_path: Path) -> None:
    datalist = tmp_path / "list.csv"
    datalist.write_text(f"image,level\n{volumes / 'a.nii.gz'},3\n")
    dm = MedicalImageDataModule(str(datalist), modality="mri", image_size=16, num_workers=0, val_fraction=0.0,
                                slice_position="level")  # fmt: skip
    with pytest.raises(InputError, match="data.slice_position.*already a column"):
        dm.setup("fit")


def test_a_model_trained_on_slice_positions_generates_the_level_asked_for(tmp_path: Path) -> None:
    from medgen.cli import main
    from medgen.store.ckpt import read_checkpoint
    from tests.helpers import fit_smoke

    condition = '[{"name": "level", "kind": "scalar", "mean": 0.5, "std": 0.3}]'
    # 10 steps: the UNet's output convolution starts at zero, so a 2-step model ignores every input
    ckpts = fit_smoke(ROOT / "configs/smoke/ddpm_2d.yaml", tmp_path / "run", "--trainer.max_steps", "10",
                      "--data.slice_position", "level",
                      "--model.init_args.model.init_args.net.init_args.conditions", condition)  # fmt: skip
    assert read_checkpoint(ckpts / "last.ckpt")["medgen"]["data"]["slice_position"] == "level"
    export = tmp_path / "export"
    assert main(["export", str(ckpts / "last.ckpt"), str(export)]) == 0
    card = json.loads((export / "model_card.json").read_text())
    assert card["slice_position"] == "level" and card["conditions"]["values"][0]["name"] == "level"
    hashes = {}
    for level in ("0.25", "0.75"):
        out = tmp_path / f"gen_{level}"
        code = main(["generate", "--checkpoint", str(export), "--num-samples", "2", "--out", str(out),
                     "--batch-size", "2", "--condition", f"level={level}", "--steps", "2"])  # fmt: skip
        assert code == 0
        rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
        assert [r["condition"] for r in rows] == [{"level": level}] * 2
        hashes[level] = [r["sha256"] for r in rows]
    assert hashes["0.25"] != hashes["0.75"]  # same seeds: the level reached the network
