"""The evaluation library takes typed options and names its parameters; ``medgen evaluate`` names the flags."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from medgen.commands.evaluate import paired_options, unpaired_options, with_flags
from medgen.errors import InputError
from medgen.evaluation.paired import PairedOptions, evaluate_paired
from medgen.evaluation.sources import ImageItem
from medgen.evaluation.unpaired import UnpairedOptions, evaluate_unpaired


def _items(tmp_path: Path, *keys: str) -> list[ImageItem]:
    return [ImageItem(key, tmp_path / f"{key}.png") for key in keys]


def test_options_are_frozen_records() -> None:
    options = UnpairedOptions("out")
    assert options.metrics == ("fid", "kid", "prdc", "diversity") and options.window is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.bootstrap = 0  # type: ignore[misc]
    assert PairedOptions("out").metrics == ("ssim", "ms_ssim", "psnr", "mae")


def test_library_errors_name_the_parameter(tmp_path: Path) -> None:
    items = _items(tmp_path, "a", "b")
    with pytest.raises(InputError) as info:
        evaluate_unpaired(items, items, UnpairedOptions(tmp_path, metrics=("fid", "ssim")))
    assert info.value.subject == "metrics" and "['ssim']" in info.value.problem and "--" not in str(info.value)
    with pytest.raises(InputError) as info:
        evaluate_paired(items, items, PairedOptions(tmp_path))
    assert info.value.subject == "data_range" and "window=(LO, HI)" in info.value.problem


def test_the_command_names_the_flags() -> None:
    flagged = with_flags(InputError("data_range", "required for paired metrics, or give window=(LO, HI)"))
    assert str(flagged) == "--data-range: required for paired metrics, or give --window LO,HI"
    flagged = with_flags(InputError("metrics", "unknown; paired ones: medgen.evaluation.paired.evaluate_paired"))
    assert str(flagged) == "--metrics: unknown; paired ones need --paired"
    assert str(with_flags(InputError("masks", "no mask named like 'a'"))) == "--mask: no mask named like 'a'"
    untouched = InputError("/data/a.png", "cannot be read")
    assert with_flags(untouched) is untouched


def test_options_from_the_command_line() -> None:
    args = argparse.Namespace(
        out="o", metrics="fid, kid,", window=(0.0, 255.0), extractor="inception", weights=None, bootstrap=5, seed=3,
        data_range=None, protocol="default", mask=None, normalize_real=None,
    )  # fmt: skip
    assert unpaired_options(args) == UnpairedOptions("o", ("fid", "kid"), (0.0, 255.0), "inception", None, 5, 3)
    args.metrics = None
    assert paired_options(args) == PairedOptions("o", window=(0.0, 255.0), bootstrap=5)
