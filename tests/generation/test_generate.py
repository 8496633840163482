"""``medgen generate``: determinism, batch-size invariance, resume after kill -9, geometry, conditions, errors."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medgen.cli import main
from medgen.nets.invariance import batch_invariant_kernels
from tests.generation.conftest import CheckpointFactory


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def _hashes(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("sample_*"))}


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("family", ["diffusion", "flow", "latent", "gan"])
def test_same_files_for_any_batch_size_and_rerun(
    tmp_path: Path, make_checkpoint: CheckpointFactory, spatial_dims: int, family: str
) -> None:
    ckpt = make_checkpoint(spatial_dims, family)
    fmt = "npy"  # float32 values: any difference in the computation shows
    runs = {}
    for name, batch in (("b1", 1), ("b4", 4), ("b4_again", 4), ("b3", 3)):
        out = tmp_path / name
        args = ["generate", "--checkpoint", str(ckpt), "--num-samples", "5", "--out", str(out)]
        assert main([*args, "--batch-size", str(batch), "--format", fmt, "--seed", "7"]) == 0
        runs[name] = _hashes(out)
    assert len(runs["b1"]) == 5
    assert runs["b1"] == runs["b4"] == runs["b4_again"] == runs["b3"]
    rows = _rows(tmp_path / "b4")
    assert [r["index"] for r in rows] == list(range(5))
    assert len({r["seed"] for r in rows}) == 5
    for row in rows:
        assert row["sha256"] == runs["b4"][row["file"]]
        for key in ("checkpoint", "checkpoint_sha256", "sampler", "steps", "guidance", "condition", "shape",
                    "spacing", "created"):  # fmt: skip
            assert key in row
    # A different seed gives different files.
    out = tmp_path / "other_seed"
    assert main(["generate", "--checkpoint", str(ckpt), "--num-samples", "2", "--out", str(out), "--format", fmt]) == 0
    assert set(_hashes(out).values()).isdisjoint(runs["b1"].values())


def test_cpu_sampling_runs_on_one_intra_op_thread() -> None:
    """The batch-invariant block pins the thread count (a split reduction's order depends on it) and restores it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with batch_invariant_kernels("cpu"):
            assert torch.get_num_threads() == 1 and not torch.backends.mkldnn.enabled
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize(("spatial_dims", "family"), [(2, "diffusion"), (3, "flow"), (3, "diffusion")])
def test_same_files_for_one_and_two_intra_op_threads(
    tmp_path: Path, make_checkpoint: CheckpointFactory, spatial_dims: int, family: str
) -> None:
    ckpt = make_checkpoint(spatial_dims, family)
    threads, hashes = torch.get_num_threads(), []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out = tmp_path / f"threads_{n}"
            args = ["generate", "--checkpoint", str(ckpt), "--num-samples", "3", "--out", str(out), "--format", "npy"]
            assert main([*args, "--batch-size", "2"]) == 0
            hashes.append(_hashes(out))
    finally:
        torch.set_num_threads(threads)
    assert len(hashes[0]) == 3 and hashes[0] == hashes[1]


def test_subset_regenerates_identically(tmp_path: Path, make_checkpoint: CheckpointFactory) -> None:
    """Deleting a sample file, then rerunning, brings back the same bytes (seeds depend on the index)."""
    ckpt = make_checkpoint(2)
    out = tmp_path / "gen"
    args = ["generate", "--checkpoint", str(ckpt), "--num-samples", "4", "--out", str(out), "--batch-size", "2"]
    assert main(args) == 0
    before = _hashes(out)
    (out / "sample_000002.png").unlink()
    assert main(args) == 0
    assert _hashes(out) == before
    assert sorted(r["index"] for r in _rows(out)) == [0, 1, 2, 3]
    # Growing the set keeps the first four samples and adds two.
    assert main([*args[:4], "6", *args[5:]]) == 0
    grown = _hashes(out)
    assert len(grown) == 6 and {k: grown[k] for k in before} == before
    assert [r["index"] for r in _rows(out)] == list(range(6))


def test_kill_9_then_rerun_completes_without_duplicates(tmp_path: Path, make_checkpoint: CheckpointFactory) -> None:
    ckpt = make_checkpoint(2)
    out = tmp_path / "gen"
    n = 12
    cmd = [sys.executable, "-m", "medgen", "generate", "--checkpoint", str(ckpt), "--num-samples", str(n),
           "--out", str(out), "--batch-size", "1", "--steps", "40"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.is_file() and len(manifest.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "generation finished before it could be interrupted; raise n or --steps"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted = len(manifest.read_text().splitlines())
    assert 3 <= interrupted < n
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = _rows(out)
    assert sorted(r["index"] for r in rows) == list(range(n))
    files = sorted(p.name for p in out.iterdir() if p.name.startswith("sample_"))
    assert files == [f"sample_{i:06d}.png" for i in range(n)]
    hashes = _hashes(out)
    assert all(hashes[r["file"]] == r["sha256"] for r in rows)
    assert not [p for p in out.iterdir() if p.name.startswith(".") or "tmp" in p.name]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_nifti_outputs_carry_the_training_grid(
    tmp_path: Path, make_checkpoint: CheckpointFactory, spatial_dims: int
) -> None:
    ckpt = make_checkpoint(spatial_dims)
    out = tmp_path / "gen"
    args = ["generate", "--checkpoint", str(ckpt), "--num-samples", "2", "--out", str(out)]
    assert main([*args, "--format", "nifti"]) == 0
    spacing = [1.5, 2.0, 2.5][:spatial_dims]
    size = (16, 16) if spatial_dims == 2 else (8, 8, 8)
    for row in _rows(out):
        img = nib.load(out / row["file"])
        assert img.shape == size
        np.testing.assert_allclose(img.header.get_zooms()[:spatial_dims], spacing)
        np.testing.assert_allclose(np.abs(np.diag(img.affine))[:spatial_dims], spacing)
        assert row["spacing"] == spacing
        assert row["shape"] == list(size)
        assert np.isfinite(img.get_fdata()).all() and np.abs(img.get_fdata()).max() <= 1.0


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_reference_image_sets_the_geometry(
    tmp_path: Path, make_checkpoint: CheckpointFactory, spatial_dims: int
) -> None:
    ckpt = make_checkpoint(spatial_dims)
    ref_shape = (32, 32) if spatial_dims == 2 else (16, 16, 16)
    ref_affine = np.diag([0.5, 0.7, 0.9, 1.0])
    ref_affine[:3, 3] = [10.0, -20.0, 30.0]
    nib.save(nib.Nifti1Image(np.zeros(ref_shape, np.float32), ref_affine), tmp_path / "ref.nii.gz")
    out = tmp_path / "gen"
    args = ["generate", "--checkpoint", str(ckpt), "--num-samples", "1", "--out", str(out), "--format", "nifti"]
    assert main([*args, "--reference", str(tmp_path / "ref.nii.gz")]) == 0
    img = nib.load(out / "sample_000000.nii.gz")
    # The reference's field of view on the (twice coarser) sample grid: the outer voxel edges stay in place,
    # so the first voxel centre moves by half a reference voxel.
    np.testing.assert_allclose(img.header.get_zooms()[:spatial_dims], np.diag(ref_affine)[:spatial_dims] * 2)
    origin = ref_affine[:3, 3] + np.r_[np.diag(ref_affine)[:spatial_dims] / 2, np.zeros(3 - spatial_dims)]
    np.testing.assert_allclose(img.affine[:3, 3], origin)


def _corners(shape: tuple[int, ...], to_world: Callable[[tuple[float, ...]], np.ndarray]) -> np.ndarray:
    """World (RAS) positions of the corner voxel centres, sorted so that two grids can be compared as sets."""
    points = np.array([to_world(c) for c in itertools.product(*[(0, n - 1) for n in shape])])
    return points[np.lexsort(points.T[::-1])]


@pytest.mark.parametrize("codes", ["LPS", "LAS"])
def test_a_non_ras_reference_keeps_world_positions(
    tmp_path: Path, make_checkpoint: CheckpointFactory, codes: str
) -> None:
    """The samples are RAS-ordered: an LPS/LAS reference must place them, not flip them, and the corner voxels
    of a same-sized grid sit where the reference's do (read back with nibabel and with SimpleITK)."""
    import SimpleITK as sitk

    ckpt = make_checkpoint(3)
    signs = [1.0 if c in "RAS" else -1.0 for c in codes]
    ref_affine = np.diag([*(s * v for s, v in zip(signs, (0.5, 0.7, 0.9), strict=True)), 1.0])
    ref_affine[:3, 3] = [10.0, -20.0, 30.0]
    ref_path = tmp_path / "ref.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), ref_affine), ref_path)
    assert nib.aff2axcodes(ref_affine) == tuple(codes)
    out = tmp_path / "gen"
    args = ["generate", "--checkpoint", str(ckpt), "--num-samples", "1", "--out", str(out), "--format", "nifti"]
    assert main([*args, "--reference", str(ref_path)]) == 0
    sample = out / "sample_000000.nii.gz"
    img = nib.load(sample)
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")  # RAS-ordered voxels, RAS axes: no flip

    def nib_world(path: Path) -> Callable[[tuple[float, ...]], np.ndarray]:
        affine = nib.load(path).affine
        return lambda ijk: nib.affines.apply_affine(affine, ijk)

    def sitk_world(path: Path) -> Callable[[tuple[float, ...]], np.ndarray]:
        image = sitk.ReadImage(str(path))
        return lambda ijk: np.array(image.TransformContinuousIndexToPhysicalPoint(ijk)) * [-1, -1, 1]  # LPS->RAS

    expected = _corners((8, 8, 8), nib_world(ref_path))
    np.testing.assert_allclose(_corners((8, 8, 8), nib_world(sample)), expected, atol=1e-5)
    np.testing.assert_allclose(_corners((8, 8, 8), sitk_world(sample)), expected, atol=1e-5)
    np.testing.assert_allclose(_corners((8, 8, 8), sitk_world(ref_path)), expected, atol=1e-5)


def test_conditions_from_options_and_csv(tmp_path: Path, make_checkpoint: CheckpointFactory) -> None:
    ckpt = make_checkpoint(2, conditions=[{"name": "label", "kind": "class", "num_classes": 3},
                                          {"name": "age", "kind": "scalar", "mean": 50.0, "std": 10.0}])  # fmt: skip
    out = tmp_path / "one"
    base = ["generate", "--checkpoint", str(ckpt), "--num-samples", "2"]
    assert main([*base, "--out", str(out), "--condition", "label=2", "--condition", "age=70"]) == 0
    assert [r["condition"] for r in _rows(out)] == [{"label": "2", "age": "70"}] * 2
    sweep = tmp_path / "sweep.csv"
    sweep.write_text("label,age\n0,30\n1,\n2,80\n")
    out2 = tmp_path / "sweep"
    assert main([*base[:-1], "3", "--out", str(out2), "--conditions-csv", str(sweep)]) == 0
    assert [r["condition"] for r in _rows(out2)] == [{"label": "0", "age": "30"}, {"label": "1", "age": ""},
                                                     {"label": "2", "age": "80"}]  # fmt: skip
    # Different labels with the same seed give different images: the condition reaches the net.
    out3 = tmp_path / "label0"
    assert main([*base, "--out", str(out3), "--condition", "label=0", "--condition", "age=70"]) == 0
    assert _hashes(out3) != _hashes(out)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_mask_conditioned_model_writes_image_and_mask_pairs(
    tmp_path: Path, make_checkpoint: CheckpointFactory, spatial_dims: int
) -> None:
    ckpt = make_checkpoint(spatial_dims, image_channels=1)
    big = (32, 32) if spatial_dims == 2 else (16, 16, 16)
    labels = np.zeros(big, np.float32)
    labels[4:20, 6:24] = 1.0
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(labels, np.eye(4)), mask)
    out = tmp_path / "gen"
    args = ["generate", "--checkpoint", str(ckpt), "--num-samples", "2", "--out", str(out), "--format", "nifti"]
    assert main([*args, "--condition", f"mask={mask}"]) == 0
    for row in _rows(out):
        written = nib.load(out / row["mask_file"])
        sample = nib.load(out / row["file"])
        assert written.shape == sample.shape == tuple(n // 2 for n in big)
        np.testing.assert_allclose(written.affine, sample.affine)
        assert set(np.unique(written.get_fdata())) == {0.0, 1.0}
        assert row["mask_sha256"] == hashlib.sha256((out / row["mask_file"]).read_bytes()).hexdigest()
    # Without the mask the model cannot run: one-line error naming the option.
    assert main(["generate", "--checkpoint", str(ckpt), "--num-samples", "1", "--out", str(tmp_path / "x")]) == 2


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--condition", "colour=red"], "condition colour"),
        (["--condition", "label"], "expected KEY=VALUE"),
        (["--format", "png", "--checkpoint-3d"], "png is for 2D"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    tmp_path: Path,
    make_checkpoint: CheckpointFactory,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    needle: str,
) -> None:
    three_d = "--checkpoint-3d" in extra
    ckpt = make_checkpoint(3 if three_d else 2)
    extra = [e for e in extra if e != "--checkpoint-3d"]
    args = ["generate", "--checkpoint", str(ckpt), "--num-samples", "1", "--out", str(tmp_path / "o"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_missing_checkpoint_and_changed_options(
    tmp_path: Path, make_checkpoint: CheckpointFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", "--checkpoint", str(tmp_path / "nope.ckpt"), "--num-samples", "1", "--out", "o"]) == 2
    assert "nope.ckpt" in capsys.readouterr().err
    ckpt = make_checkpoint(2)
    out = tmp_path / "gen"
    assert main(["generate", "--checkpoint", str(ckpt), "--num-samples", "1", "--out", str(out)]) == 0
    assert main(["generate", "--checkpoint", str(ckpt), "--num-samples", "1", "--out", str(out), "--seed", "3"]) == 2
    err = capsys.readouterr().err
    assert "seed" in err and str(out) in err
    assert len(_rows(out)) == 1


def test_shards_merge_into_one_manifest(
    tmp_path: Path, make_checkpoint: CheckpointFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes' shards (RANK/WORLD_SIZE) write the same files as one process, and one merged manifest."""
    ckpt = make_checkpoint(2)
    single = tmp_path / "single"
    args = ["generate", "--checkpoint", str(ckpt), "--num-samples", "5", "--format", "npy"]
    assert main([*args, "--out", str(single)]) == 0
    sharded = tmp_path / "sharded"
    for rank in (1, 0):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert main([*args, "--out", str(sharded)]) == 0
    assert _hashes(sharded) == _hashes(single)
    assert [r["index"] for r in _rows(sharded)] == list(range(5))
    assert not list(sharded.glob("manifest.part-*"))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_lightning_predict_with_ddp_matches_one_process(
    tmp_path: Path, make_checkpoint: CheckpointFactory, spatial_dims: int
) -> None:
    """``--devices 2``: Trainer.predict with DDP (two CPU processes, gloo) writes one process's files and one
    merged manifest, and records the two processes."""
    ckpt = make_checkpoint(spatial_dims)
    args = ["generate", "--checkpoint", str(ckpt), "--num-samples", "5", "--format", "npy", "--batch-size", "2"]
    single = tmp_path / "single"
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the DDP children below run on one thread each: the files must not differ
    try:
        assert main([*args, "--out", str(single)]) == 0
    finally:
        torch.set_num_threads(threads)
    ddp = tmp_path / "ddp"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "medgen", *args, "--out", str(ddp), "--devices", "2", "--accelerator", "cpu"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "shard 1/2 done" in done.stderr and "[complete]" in done.stderr
    assert _hashes(ddp) == _hashes(single)
    rows = _rows(ddp)
    assert [r["index"] for r in rows] == list(range(5))
    size = [16, 16] if spatial_dims == 2 else [8, 8, 8]
    assert all(r["shape"] == size for r in rows)  # rank 1 drew 1 and 3, rank 0 drew 0, 2 and 4
    assert all(hashlib.sha256((ddp / r["file"]).read_bytes()).hexdigest() == r["sha256"] for r in rows)
    assert not list(ddp.glob("manifest.part-*"))
    record = json.loads((ddp / "generation.json").read_text())
    assert record["options"]["world_size"] == 2 and record["complete"] is True
