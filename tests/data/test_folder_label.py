"""``data.folder_label``: a condition from each image's subfolder (unpaired a/ b/ folders, one folder per class)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medgen.data.datalist import find_records
from medgen.errors import InputError

ROOT = Path(__file__).resolve().parents[2]


def _domains(tmp_path: Path) -> Path:
    """``tmp_path/unpaired`` with the demo's T1 volume in ``t1/`` and the other subject's T2-like one in ``t2/``."""
    rows = find_records("demo:mri-domains").records
    folder = tmp_path / "unpaired"
    for record, name in zip(rows, ("t1", "t2"), strict=True):
        (folder / name).mkdir(parents=True)
        shutil.copy(record.image, folder / name / Path(record.image).name)
    return folder


def test_subfolders_become_a_sorted_text_condition(tmp_path: Path) -> None:
    datalist = find_records(_domains(tmp_path), folder_label="domain")
    assert datalist.vocab == {"domain": ["t1", "t2"]}
    codes = {Path(r.image).parent.name: r.conditions["domain"] for r in datalist.records}
    assert codes == {"t1": 0.0, "t2": 1.0}
    assert find_records(tmp_path / "unpaired").records[0].conditions == {}  # only when asked


def test_an_image_outside_every_subfolder_is_named(tmp_path: Path) -> None:
    folder = _domains(tmp_path)
    stray = folder / "stray.nii.gz"
    shutil.copy(next((folder / "t1").iterdir()), stray)
    with pytest.raises(InputError, match="stray.nii.gz.*no subfolder"):
        find_records(folder, folder_label="domain")
    with pytest.raises(InputError, match="data.folder_label"):
        find_records(folder, folder_label="subject")


def test_a_datalist_with_folder_label_is_refused(tmp_path: Path) -> None:
    datalist = tmp_path / "list.csv"
    datalist.write_text("image\nx.nii.gz\n")
    with pytest.raises(InputError, match="data.folder_label.*datalist"):
        find_records(datalist, folder_label="domain")


def test_cyclegan_trains_on_two_unpaired_folders(tmp_path: Path) -> None:
    from medgen.store.ckpt import read_checkpoint
    from tests.helpers import fit_smoke

    folder = _domains(tmp_path)
    ckpts = fit_smoke(ROOT / "configs/smoke/cyclegan_2d.yaml", tmp_path / "run", "--trainer.max_steps", "2",
                      "--data.data_dir", str(folder), "--data.folder_label", "domain")  # fmt: skip
    data = read_checkpoint(ckpts / "last.ckpt")["medgen"]["data"]
    assert data["vocab"] == {"domain": ["t1", "t2"]}
