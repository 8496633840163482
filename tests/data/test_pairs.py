"""Paired data (``source`` column): prepared exactly like ``image``, checked for one grid; the translation demo sets."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medgen.data.datalist import find_records
from medgen.data.datamodule import MedicalImageDataModule
from medgen.errors import InputError


def _volume(seed: int) -> np.ndarray:
    """A smooth blob volume (12, 14, 10) with a background and a brighter core, float32."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in (12, 14, 10)], indexing="ij"))
    r = np.sqrt((grid**2).sum(0))
    return (np.clip(1.2 - r, 0, None) * 100 + rng.uniform(0, 5, r.shape)).astype(np.float32)


def _pairs(
    tmp_path: Path, source_affine: np.ndarray | None = None, source_shape: tuple[int, ...] | None = None
) -> Path:
    """Datalist of two pairs whose source is 3x the target (the same image after percentile scaling)."""
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    rows = []
    for i in range(2):
        target = _volume(i)
        source = 3.0 * target if source_shape is None else np.zeros(source_shape, np.float32)
        nib.save(nib.Nifti1Image(target, affine), tmp_path / f"t{i}.nii.gz")
        nib.save(nib.Nifti1Image(source, affine if source_affine is None else source_affine), tmp_path / f"s{i}.nii.gz")
        rows.append({"image": f"t{i}.nii.gz", "source": f"s{i}.nii.gz", "subject": f"p{i}"})
    path = tmp_path / "pairs.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "source", "subject"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.parametrize(("spatial_dims", "patches"), [(2, False), (3, False), (3, True)])
def test_source_is_prepared_like_the_image(tmp_path: Path, spatial_dims: int, patches: bool) -> None:
    """Source and target share sizing, slices and random patch positions: equal after normalisation."""
    size = 8 if spatial_dims == 3 else 16
    dm = MedicalImageDataModule(
        str(_pairs(tmp_path)), modality="mri", spatial_dims=spatial_dims, image_size=size, batch_size=2,
        num_workers=0, val_fraction=0.0, patches=patches,
    )  # fmt: skip
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["source"].shape == batch["image"].shape == (2, 1) + (size,) * spatial_dims
    assert torch.allclose(batch["source"], batch["image"], atol=1e-5)
    assert float(batch["image"].std()) > 0.1  # not a blank crop
    info = dm.describe()
    assert info["source_modality"] == "mri" and info["source_intensity"]["kind"] == "percentile"


def test_source_modality_normalises_the_source_on_its_own(tmp_path: Path) -> None:
    dm = MedicalImageDataModule(
        str(_pairs(tmp_path)), modality="mri", source_modality="ct", spatial_dims=3, image_size=8, batch_size=2,
        num_workers=0, val_fraction=0.0, ct_window=[0.0, 1000.0],
    )  # fmt: skip
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert not torch.allclose(batch["source"], batch["image"], atol=1e-2)
    assert dm.describe()["source_modality"] == "ct"
    assert dm.describe()["source_intensity"] == {"kind": "window", "low": 0.0, "high": 1000.0, "unit": "HU"}


def test_unpaired_data_has_no_source(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(_volume(0), np.eye(4)), tmp_path / "a.nii.gz")
    dm = MedicalImageDataModule(str(tmp_path), modality="mri", spatial_dims=2, image_size=8, num_workers=0)
    dm.setup("fit")
    assert "source" not in dm.train_set[0] and dm.describe()["source_modality"] is None  # type: ignore[index]


@pytest.mark.parametrize(
    ("what", "affine", "shape"),
    [
        ("shape", None, (12, 14, 9)),
        ("spacing", np.diag([1.5, 1.5, 2.5, 1.0]), None),
        ("origin", np.array([[1.5, 0, 0, 4.0], [0, 1.5, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1]]), None),
        ("direction", np.array([[0, 1.5, 0, 0], [1.5, 0, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1]]), None),
    ],
)
def test_pair_on_another_grid_is_an_input_error_naming_the_source(
    tmp_path: Path, what: str, affine: np.ndarray | None, shape: tuple[int, ...] | None
) -> None:
    dm = MedicalImageDataModule(
        str(_pairs(tmp_path, affine, shape)), modality="mri", spatial_dims=3, image_size=8, num_workers=0,
        val_fraction=0.0, cache="none",
    )  # fmt: skip
    dm.setup("fit")
    with pytest.raises(InputError, match=rf"s0\.nii\.gz: source {what} .* differs from its target image's"):
        dm.train_set[0]  # type: ignore[index]


def test_empty_source_value_is_an_input_error(tmp_path: Path) -> None:
    path = _pairs(tmp_path)
    path.write_text(path.read_text().replace("s1.nii.gz", ""))
    with pytest.raises(InputError, match="row 2: the 'source' value is empty"):
        find_records(path)


def test_demo_pairs_are_a_contrast_change_no_monotone_mapping_undoes() -> None:
    """demo:mri-pairs: the target is the same subject on the same grid with CSF bright and white matter dark."""
    datalist = find_records("demo:mri-pairs")
    assert datalist.paired and sorted(r.subject for r in datalist.records) == ["anatomical", "mni"]
    for record in datalist.records:
        src, tgt = nib.load(record.source or ""), nib.load(record.image)
        assert np.array_equal(src.affine, tgt.affine) and src.shape == tgt.shape  # type: ignore[attr-defined]
        t1 = np.asarray(src.dataobj, dtype=np.float64)  # type: ignore[attr-defined]
        t2 = np.asarray(tgt.dataobj, dtype=np.float64)  # type: ignore[attr-defined]
        lo, hi = np.percentile(t1, [0.5, 99.5])
        u = (t1 - lo) / (hi - lo)
        mean = {name: float(t2[(u > a) & (u < b)].mean()) for name, (a, b) in
                {"dark": (-1, 0.02), "csf": (0.25, 0.35), "wm": (0.9, 1.0)}.items()}  # fmt: skip
        assert mean["csf"] > 2 * mean["wm"] > 2 * mean["dark"], (record.subject, mean)  # rises, then falls


def test_demo_domains_are_unpaired() -> None:
    datalist = find_records("demo:mri-domains")
    assert datalist.vocab == {"domain": ["a", "b"]} and not datalist.paired
    by_domain = {r.conditions["domain"]: r for r in datalist.records}
    assert by_domain[0.0].subject != by_domain[1.0].subject
    assert "t1" in Path(by_domain[0.0].image).name and "t2like" in Path(by_domain[1.0].image).name
