"""Issue 12 acceptance: memorization detection on images the shipped embedder never saw.

Data: :mod:`medgen.memorization.unseen` (dipy's and nibabel's brain MRI, disjoint from the embedder's training
data, training / null / held-out real split by volume; unrelated images of other modalities). Thresholds are
calibrated on the holdout null, never on these sets. The figures are printed by
``python benchmarks/memorization_f1.py --sets unseen``.
"""

import importlib.util

import pytest

from medgen.memorization.unseen import score_unseen, unseen_2d, unseen_3d

needs_dipy = pytest.mark.skipif(importlib.util.find_spec("dipy") is None, reason="needs dipy's test data (test extra)")


@pytest.fixture(scope="module")
def unseen_scores():
    """The 2D unseen set scored by the structural embedder with and without verification (computed once)."""
    data = unseen_2d()
    verified = score_unseen("structural", data, verify=True)
    alone = score_unseen("structural", data, verify=False)
    print(f"\nunseen 2D: {verified}\n           {alone}")
    return data, verified, alone


@pytest.mark.slow
@needs_dipy
def test_verification_finds_every_disguised_copy_of_unseen_images(unseen_scores):
    data, verified, alone = unseen_scores
    assert {"exact", "rotation", "translation", "elastic", "border", "contrast"} <= set(data.disguise)
    # held-out real images: subjects (volumes) disjoint from training and from the null, a few hundred slices
    assert len(data.real_names) >= 200 and verified.n_real == len(data.real_names)
    train_volumes = {s.split(":")[0] for s in data.planted.subjects}
    assert not train_volumes & {name.split(":")[0] for name in data.real_names}
    assert verified.recall == 1.0, verified.recall_by_disguise
    assert verified.auroc >= 0.99
    assert verified.unrelated_flagged == 0.0
    assert verified.recall_at_k == 1.0  # the union with the cropped-pixel descriptor finds every source
    assert alone.recall < verified.recall  # the embedding alone misses some disguised copies of unseen anatomy
    assert verified.false_positives < alone.false_positives


@pytest.mark.slow
@needs_dipy
def test_false_positives_on_held_out_subjects_at_most_one_percent(unseen_scores):
    _, verified, _ = unseen_scores
    assert verified.false_positive_rate <= 0.01, (verified.false_positives, verified.n_real, verified.flagged_real)


@pytest.mark.slow
@needs_dipy
def test_rotated_shifted_resampled_copies_of_unseen_volumes_are_flagged():
    data = unseen_3d()
    score = score_unseen("structural", data, verify=True, k=2)
    print(f"\nunseen 3D: {score}")
    assert score.recall == 1.0 and score.recall_by_disguise["rotation+shift+resample"] == 1.0
    assert score.unrelated_flagged == 0.0 and score.auroc >= 0.99


@pytest.mark.slow
@needs_dipy
def test_issue_scenario_one_folder_of_slices_without_holdout(tmp_path):
    """The issue's run: slices of two volumes plus a 2D slice in one folder, no --holdout, default settings."""
    import json

    import numpy as np
    import torch

    from medgen.cli import main
    from medgen.memorization.unseen import DISGUISES, disguise, unrelated_images, unseen_slices

    train, generated = tmp_path / "train", tmp_path / "generated"
    train.mkdir()
    generated.mkdir()
    slices = [(s, subject) for s, subject in unseen_slices() if subject.split(":")[0] in ("example4d", "aniso_vox")]
    slices += [(s, subject) for s, subject in unseen_slices() if subject == "t1_coronal_slice"]
    for i, (image, subject) in enumerate(slices):
        np.save(train / f"{subject.split(':')[0]}_slice{i:03d}.npy", image[0].numpy())
    gen = torch.Generator().manual_seed(3)
    picks = list(range(0, len(slices), max(1, len(slices) // 12)))
    for n, i in enumerate(picks):
        copy = disguise(slices[i][0], DISGUISES[n % len(DISGUISES)], gen)
        np.save(generated / f"copy_{n:02d}.npy", copy[0].numpy())
    for n, image in enumerate(unrelated_images()):
        np.save(generated / f"unrelated_{n:02d}.npy", image[0].numpy())
    out = tmp_path / "report"
    assert main(["memorization", "--train", str(train), "--generated", str(generated), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["verification"]["source"] == "train_split"
    print(f"\nissue scenario: {report['n_flagged']} of {report['n_generated']} flagged, {report['verification']}")
    rows = {r["file"].rsplit("/", 1)[-1]: r for r in report["samples"]}
    missed = [name for name, r in rows.items() if name.startswith("copy_") and not r["flagged"]]
    wrong = [name for name, r in rows.items() if name.startswith("unrelated_") and r["flagged"]]
    assert not missed and not wrong, (missed, wrong, {n: r["verified_score"] for n, r in rows.items()})
