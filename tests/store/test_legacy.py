"""Checkpoints and exports written by medgen before models and Lightning tasks were split still load and sample.

The files under ``tests/fixtures/legacy/`` were written at commit 071d77c (``medgen.lit.*Module`` classes, loading
in ``medgen.registry``) by ``tests/fixtures/legacy/make_fixtures.py``, with the reference samples that code drew
from them (``expected.npz``; metadata in ``expected.json``). Here the current code loads the same files with
:func:`medgen.store.load.load_model` and must draw the same samples: byte-identical on the CPU model and torch
version that wrote the references, within 1e-4 elsewhere (other CPUs and torch versions may round differently).
Never regenerate the fixtures with the current code: they are the old code's output.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
MAX_FIXTURE_BYTES = 5 * 1024 * 1024

#: Cases that sample or reconstruct (``medgen generate`` is tested separately).
MODEL_CASES = {k: v for k, v in EXPECTED["cases"].items() if v["kind"] in ("ckpt", "export")}
GENERATE_CASES = {k: v for k, v in EXPECTED["cases"].items() if v["kind"] == "generate"}


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "expected.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """``torch.set_num_threads(1)``, as the references were drawn; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")


#: Byte-identical only where the references were drawn: same CPU model and torch version.
SAME_MACHINE = cpu_model() == EXPECTED["cpu_model"] and torch.__version__ == EXPECTED["torch_version"]


def assert_matches(actual: torch.Tensor, expected: np.ndarray, what: str) -> None:
    expected_t = torch.from_numpy(np.asarray(expected, dtype=np.float32))
    actual = actual.detach().cpu()
    assert actual.dtype == torch.float32, f"{what}: dtype {actual.dtype}"
    assert tuple(actual.shape) == tuple(expected_t.shape), f"{what}: shape {tuple(actual.shape)}"
    if SAME_MACHINE:
        if not torch.equal(actual, expected_t):
            diff = float((actual - expected_t).abs().max())
            raise AssertionError(f"{what}: not byte-identical to the legacy reference (max |diff| {diff:.3g})")
    else:
        torch.testing.assert_close(actual, expected_t, atol=1e-4, rtol=1e-4, msg=lambda m: f"{what}: {m}")


def load(case: dict[str, Any]) -> torch.nn.Module:
    from medgen.store.load import load_model

    loaded = load_model(FIXTURES / case["path"])
    model = loaded.model
    assert isinstance(model, torch.nn.Module)
    assert not model.training, "load_model must return the model in eval mode"
    return model


def params(cases: dict[str, dict[str, Any]]) -> list[Any]:
    return [pytest.param(name, id=name) for name in cases]


def test_fixtures_cover_every_family_in_2d_and_3d() -> None:
    """The fixture set this file is parametrized over (so a lost fixture fails loudly)."""
    names = set(EXPECTED["cases"])
    for family in ("diffusion_2d", "flow_2d", "latent_2d", "diffusion_3d", "diffusion_class_2d"):
        assert {f"{family}_ckpt", f"{family}_export"} <= names, family
    assert "autoencoder_2d_ckpt" in names and "generate_diffusion_2d_export" in names
    assert {c["spatial_dims"] for c in MODEL_CASES.values()} == {2, 3}


@pytest.mark.parametrize("name", params(MODEL_CASES))
def test_legacy_model_samples_as_before(name: str, arrays: dict[str, np.ndarray], one_thread: None) -> None:
    from medgen.nets.condition import Condition

    case = MODEL_CASES[name]
    model = load(case)
    with torch.no_grad():
        if case["family"] == "autoencoder":
            x = torch.from_numpy(arrays[f"{name}/input"])
            assert_matches(model.reconstruct(x), arrays[f"{name}/reconstruction"], f"{name} reconstruction")
            return
        seed = EXPECTED["seed"]
        kw: dict[str, Any] = {}
        if "condition_values" in case:
            kw["cond"] = Condition(values=torch.tensor(case["condition_values"], dtype=torch.float32))
        default = model.sample(2, generator=torch.Generator().manual_seed(seed), **kw)
        assert_matches(default, arrays[f"{name}/default"], f"{name} default sampling")
        explicit_kw = EXPECTED["explicit_kwargs_new_names"][case["family"]]
        explicit = model.sample(2, generator=torch.Generator().manual_seed(seed), **kw, **explicit_kw)
        assert_matches(explicit, arrays[f"{name}/explicit"], f"{name} sampling with {explicit_kw}")


@pytest.mark.parametrize("name", params(GENERATE_CASES))
def test_legacy_export_generates_as_before(
    name: str, arrays: dict[str, np.ndarray], one_thread: None, tmp_path: Path
) -> None:
    from medgen.cli import main

    case = GENERATE_CASES[name]
    out = tmp_path / "generated"
    argv = [a.format(export=str(FIXTURES / case["path"]), out=str(out)) for a in case["argv"]]
    assert main(argv) == 0
    for file in case["files"]:
        actual = np.load(out / file)
        assert str(actual.dtype) == case["dtypes"][file], file
        assert_matches(torch.from_numpy(actual), arrays[f"{name}/{Path(file).stem}"], f"{name} {file}")
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line.strip()]
    seeds = {r["file"]: r["seed"] for r in manifest}
    assert seeds == {r["file"]: r["seed"] for r in case["manifest"]}, "per-sample seeds changed"


def test_fixture_folder_stays_small() -> None:
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert total < MAX_FIXTURE_BYTES, f"tests/fixtures/legacy holds {total / 2**20:.2f} MiB (limit 5 MiB)"
