import json

import pytest

from medgen.cli import main
from medgen.memorization.verified import MIN_VERIFIED_SCORE
from tests.memorization.conftest import write_planted

CONTRACT_KEYS = {"threshold", "calibration", "embedding", "n_flagged", "fraction_flagged", "samples"}
SAMPLE_KEYS = {"file", "nearest_train", "similarity", "verified_score", "flagged", "verification", "confirmation"}
TRANSFORM_KEYS = {"score", "ncc", "ssim", "flip", "angle_deg", "scale", "shift", "baseline", "margin", "train_file"}


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_cli_writes_the_contract_report(planted_sets, spatial_dims, tmp_path, capsys):
    folders = write_planted(planted_sets[spatial_dims], tmp_path / "data", n_train=10)
    out = tmp_path / "report"
    argv = ["memorization", "--train", str(folders["train"]), "--generated", str(folders["generated"]),
            "--out", str(out), "--holdout", str(folders["holdout"]), "--top-k", "3"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert CONTRACT_KEYS <= set(report) and {"name", "sha256"} <= set(report["embedding"])
    assert report["calibration"]["source"] == "holdout" and report["calibration"]["quantile"] == 0.99
    assert {"fraction_train_matched", "mifid", "histograms", "published_thresholds"} <= set(report)
    rows = report["samples"]
    assert len(rows) == len(list(folders["generated"].iterdir())) and all(SAMPLE_KEYS <= set(r) for r in rows)
    threshold = report["verification"]["threshold"]
    assert report["decision"].startswith("verified") and report["verification"]["source"] == "holdout"
    false_positives = missed = 0
    for row in rows:
        is_copy = "copy_" in row["file"]
        assert TRANSFORM_KEYS <= set(row["verification"]) and row["verified_score"] == row["verification"]["score"]
        # the decision: margin over the training image's baseline above the threshold, score above the floor
        decided = row["verification"]["margin"] > threshold and row["verified_score"] > MIN_VERIFIED_SCORE
        assert row["flagged"] == decided
        false_positives += row["flagged"] and not is_copy
        if is_copy:
            # another slab of the same brain (a separate "subject" here) matches each training slab at 0.5-0.8 (its
            # baseline): a copy that barely beats it is not flagged (3D: the copy of slab 0, 0.78 vs 0.72)
            assert row["flagged"] or row["verified_score"] - row["verification"]["baseline"] < 0.1, row
            missed += not row["flagged"]
            source = row["file"].split("_of_")[1][:4]
            assert f"train_{source}" in row["verification"]["train_file"]
    # Pseudo-subjects are slabs of the same two brains and the null has 5-20 images: one held-out slab may pass.
    assert false_positives <= 1 and missed <= 1
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 1 + 2 * report["n_flagged"]
    assert "flagged" in capsys.readouterr().err


def test_no_verify_keeps_the_embedding_decision(planted_2d, tmp_path, capsys):
    folders = write_planted(planted_2d, tmp_path / "data", n_train=10)
    out = tmp_path / "report"
    assert main(["memorization", "--train", str(folders["train"]), "--generated", str(folders["generated"]),
                 "--out", f"{out}/", "--holdout", str(folders["holdout"]), "--no-verify"]) == 0  # fmt: skip
    assert f"report: {out / 'report.json'}\n" in capsys.readouterr().err  # no "report//report.json"
    report = json.loads((out / "report.json").read_text())
    assert report["verification"] is None and report["decision"] == "embedding similarity"
    for row in report["samples"]:
        assert row["verification"] is None and row["flagged"] == (row["similarity"] > report["threshold"])
        assert (row["confirmation"] is not None) == row["flagged"]


def test_index_and_train_embedder_actions(planted_2d, tmp_path):
    folders = write_planted(planted_2d, tmp_path / "data", n_train=6)
    weights = tmp_path / "mine.safetensors"
    assert main(["memorization", "train-embedder", "--train", str(folders["train"]), "--out", str(weights),
                 "--steps", "2"]) == 0  # fmt: skip
    assert weights.is_file() and json.loads(weights.with_suffix(".json").read_text())["sha256"]
    index_dir = tmp_path / "index"
    assert main(["memorization", "index", "--train", str(folders["train"]), "--out", str(index_dir),
                 "--embedder", str(weights), "--holdout", str(folders["holdout"])]) == 0  # fmt: skip
    out = tmp_path / "report"
    assert main(["memorization", "--index", str(index_dir), "--generated", str(folders["generated"]),
                 "--out", str(out)]) == 0  # fmt: skip
    assert (
        json.loads((out / "report.json").read_text())["embedding"]["sha256"]
        == json.loads(weights.with_suffix(".json").read_text())["sha256"]
    )


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--generated", "/nonexistent/gen"], "--generated: '/nonexistent/gen' does not exist"),
        ([], "--generated: required"),
        (["--generated", "G", "--quantile", "1.5"], "argument --quantile: expected a number in (0, 1)"),
        (["--generated", "G", "--embedder", "nope"], "--embedder: unknown embedder 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(planted_2d, tmp_path, capsys, extra, needle):
    folders = write_planted(planted_2d, tmp_path / "data", n_train=4)
    extra = [str(folders["generated"]) if a == "G" else a for a in extra]
    try:
        code = main(["memorization", "--train", str(folders["train"]), "--out", str(tmp_path / "o"), *extra])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and needle in err, err


def test_library_names_its_parameters_and_the_command_the_flags(planted_2d, tmp_path, capsys):
    from medgen.errors import InputError
    from medgen.memorization.detect import detect_memorization

    folders = write_planted(planted_2d, tmp_path / "data", n_train=4)
    index_dir = tmp_path / "index"
    assert main(["memorization", "index", "--train", str(folders["train"]), "--out", str(index_dir),
                 "--no-verify"]) == 0  # fmt: skip
    with pytest.raises(InputError) as info:
        detect_memorization(None, folders["generated"], tmp_path / "o", index_dir=index_dir)
    assert info.value.subject == "index_dir" and "verify=False" in info.value.problem
    capsys.readouterr()
    argv = ["memorization", "--index", str(index_dir), "--generated", str(folders["generated"]), "--out"]
    assert main([*argv, str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.endswith("was built with --no-verify: rebuild it, or pass --no-verify")
    assert "--index: " in err
