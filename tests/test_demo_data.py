"""Embedded demo data: every shipped volume is there, or a one-line error names the command that installs it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from medgen import demo_data
from medgen.errors import InputError


def test_mri_volumes_include_mni152_from_the_demo_extra() -> None:
    names = [p.name for p in demo_data.real_mri_volumes()]
    assert names == ["mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz", "anatomical.nii"]


def test_missing_nilearn_is_an_error_not_a_smaller_data_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_lookup = demo_data._package_file
    monkeypatch.setattr(
        demo_data, "_package_file", lambda pkg, *parts: None if pkg == "nilearn" else real_lookup(pkg, *parts)
    )
    with pytest.raises(InputError) as err:
        demo_data.prepare_demo_data(tmp_path)
    message = str(err.value)
    assert (
        "\n" not in message and "nilearn's mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz is not installed" in message
    )
    assert f"{sys.executable} -m pip install 'nilearn>=0.10' (medgen's `demo` extra)" in message


def test_cache_dir_honours_medgen_cache_then_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDGEN_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert demo_data.cache_dir() == Path.home() / ".cache" / "medgen"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert demo_data.cache_dir() == tmp_path / "xdg" / "medgen"
    monkeypatch.setenv("MEDGEN_CACHE", str(tmp_path / "mine"))
    assert demo_data.cache_dir() == tmp_path / "mine"
