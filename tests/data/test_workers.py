"""``data.num_workers`` is a ceiling: the data module uses at most the CPUs it may use, minus one."""

from __future__ import annotations

import os

import pytest

from medgen.data.datamodule import MedicalImageDataModule
from medgen.errors import InputError


@pytest.mark.parametrize(("cpus", "requested", "used"), [(2, 8, 1), (2, 4, 1), (1, 4, 0), (16, 4, 4), (2, 0, 0)])
def test_num_workers_fits_the_machine(cpus: int, requested: int, used: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cpus)), raising=False)
    dm = MedicalImageDataModule("demo:mri", num_workers=requested)
    assert dm.num_workers == used and dm.hparams["num_workers"] == requested  # the request stays in the config


def test_negative_num_workers_is_refused() -> None:
    with pytest.raises(InputError, match=r"data.num_workers: expected 0 or more, got -1"):
        MedicalImageDataModule("demo:mri", num_workers=-1)
