"""Planted-copy self-test: macro-F1 of the structural embedder vs the raw-pixel and Inception baselines.

Same data, same calibration for every embedder (threshold = 0.99 quantile of the held-out null):
2D = real MRI slices (MNI152 + nibabel anatomical; 24 mm slabs as pseudo-subjects, split by subject), 3D = the
same slabs as small volumes, and MR phantom volumes (one subject each; a hard null: phantoms differ little).
Generated = held-out real images + disguised copies of training images (each of rotation ≤ 10°, shift ≤ 5 %,
elastic warp, gamma, noise, JPEG / 7-bit quantisation with probability 1/2). Prints one row per embedder:
recall of copies, fraction of held-out real images flagged, macro-F1 (copy / not copy), the threshold and how
often the copied training image is the nearest neighbour. ``pixel+centre+rot`` is an ablation: the pixel baseline
with the structural embedder's foreground centring and query rotations (what the learned network adds on top).
These "seen" sets share their volumes with the shipped embedder's training data.

``unseen`` (issue 12): the same measurement on images the shipped embedder never saw
(:mod:`medgen.memorization.unseen`: dipy's and nibabel's brain MRI, training / null / held-out real split by
volume, one disguise per copy, unrelated images of other modalities), for each embedder alone and with pixel
verification deciding (``+verify``): recall of copies (and per disguise), false positives on held-out real images
(count, rate and its one-sided 95 % Clopper-Pearson upper bound), AUROC(copies vs unrelated), recall@20 of
retrieval. Thresholds are calibrated on the holdout null at the 0.99 quantile (verified: never below 0.6).
``unseen_b``: the same table on set B (:mod:`medgen.memorization.unseen_b`), a second unseen set built and frozen
before it was scored (after the verification's edge term had been chosen with set A in view): real 2D images and
MR/CT/X-ray phantom subjects of fresh seeds, a null of 28 subjects. It adds the false positives per held-out source
(real images, each phantom family), the score margins (weakest copy, highest held-out image, highest unrelated
image) and whether the threshold came from the null's 0.99 quantile or from the floor 0.6.
``cost``: verification of N samples x 20 candidates at 256², timed and projected to 10,000 samples.

``unseen_c``: the same table on set C (:mod:`medgen.memorization.unseen_c`), the blind set: built and committed
before the current method (background-padded crop margin, wider scale search, two refinement passes, smoothed
intensity ranks) was scored on it, scored once. Sets A and B are development sets since that change (the change
was made in view of their scores).

``unseen_d``: set D (:mod:`medgen.memorization.unseen_d`), built and committed unscored after set C's failure was
analysed and the verification changed (polish, overlap-only score, margins over training baselines). Set C is a
development set since that change. The margins printed are the decision values (margin over the baseline).

    python benchmarks/memorization_f1.py [--sets seen,unseen,unseen_b,unseen_c,unseen_d,cost]
        [--embedders structural,pixel,inception]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections import Counter
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from medgen.memorization.embedders import Embedder, EmbedderSpec, PixelEmbedder, StructuralEmbedder, get_embedder
from medgen.memorization.planted import planted_mri_2d, planted_mri_3d, planted_phantoms_3d, score_planted
from medgen.memorization.unseen import (
    DISGUISES,
    NULL_VOLUMES,
    TRAIN_VOLUMES,
    UnseenScore,
    score_unseen,
    unseen_2d,
    unseen_3d,
)


class CentredPixel(PixelEmbedder):
    """Ablation: the raw-pixel baseline with the structural embedder's foreground centring and query rotations."""

    query_rotations = StructuralEmbedder.query_rotations

    def __init__(self) -> None:
        super().__init__()
        self.spec = EmbedderSpec("pixel+centre+rot", None, self.size**2, "pixel, centred, query rotations")

    def forward(self, images: Tensor) -> Tensor:
        """``(N, 1, H, W)`` → ``(N, size²)``."""
        from medgen.memorization.preprocess import prepare_2d

        return F.normalize(prepare_2d(images, self.size, center=True).flatten(1), dim=1)


def _embedder(name: str) -> Embedder:
    return CentredPixel() if name == "pixel+centre+rot" else get_embedder(name)


def unseen(embedders: list[str]) -> None:
    """The unseen-data table (issue 12)."""
    data = unseen_2d()
    planted = data.planted
    n_copies = int(planted.is_copy.sum())
    real = Counter(name.split(":")[0] for name in data.real_names)
    print(f"# unseen set A (development set: the verification was designed with it in view), 2D MRI, roles split "
          f"by subject (volume): {len(planted.train)} train ({', '.join(TRAIN_VOLUMES)}, "
          f"t1_coronal_slice), {len(planted.holdout)} null from {data.null_subjects} subjects "
          f"({', '.join(NULL_VOLUMES)}), {len(data.real_names)} held-out real from {len(real)} subjects "
          f"({', '.join(f'{k} {v}' for k, v in real.items())}), {n_copies} copies, "
          f"{len(data.unrelated)} unrelated")  # fmt: skip
    print("# FP = held-out real images flagged; FPR<= = one-sided 95 % Clopper-Pearson upper bound; thresholds "
          "from the null only (0.99 quantile; '*': the floor 0.6 decided)")  # fmt: skip
    print(_table_header())
    flagged: list[str] = []
    for name in embedders:
        for verify in (False, True):
            start = time.perf_counter()
            try:
                s = score_unseen(name, data, verify)
            except Exception as exc:  # noqa: BLE001 - an optional embedder (Inception weights) may be missing
                print(f"{name:<20} unavailable: {exc}")
                break
            print(_table_row(s, time.perf_counter() - start), flush=True)
            if verify and s.flagged_real:
                flagged.append(f"# {s.method} flags held-out real: {s.flagged_real}")
    print("\n".join(flagged) or "# no held-out real image is flagged after verification")


class _Recorder:
    """Records, without changing them, the verified null calibration and the verifications of one scoring run.

    ``score_unseen`` returns rates only; the margins and the null's own quantile come from these records
    (``medgen.memorization.index.verified_calibration`` and ``medgen.memorization.verified.verify_search`` are
    wrapped for the duration of a ``with`` block and restored after it).
    """

    def __init__(self) -> None:
        self.calibrations: list[Any] = []
        self.verifications: list[list[Any]] = []

    def __enter__(self) -> _Recorder:
        import medgen.memorization.index as index_module
        import medgen.memorization.verified as verified_module

        self._saved = (index_module.verified_calibration, verified_module.verify_search)
        calibrate, verify = self._saved

        def recorded_calibration(*args: Any, **kwargs: Any) -> Any:
            self.calibrations.append(calibrate(*args, **kwargs))
            return self.calibrations[-1]

        def recorded_verify(*args: Any, **kwargs: Any) -> Any:
            self.verifications.append(verify(*args, **kwargs))
            return self.verifications[-1]

        index_module.verified_calibration = recorded_calibration
        verified_module.verify_search = recorded_verify
        return self

    def __exit__(self, *exc: object) -> None:
        import medgen.memorization.index as index_module
        import medgen.memorization.verified as verified_module

        index_module.verified_calibration, verified_module.verify_search = self._saved


def unseen_b(embedders: list[str]) -> None:
    """Set B's table (frozen before its first scoring; a development set since the method changed after it)."""
    from medgen.memorization.unseen_b import unseen_b as build_b

    _set_table(build_b(), "unseen set B (development set: frozen before its first scoring, the method was changed "
               "after its analysis)", embedders)  # fmt: skip


def unseen_c(embedders: list[str]) -> None:
    """Set C's table: the blind set, frozen before the current method was scored on it, scored once."""
    from medgen.memorization.unseen_c import unseen_c as build_c

    _set_table(build_c(), "unseen set C (development set: scored blind once at commit 5c26b5d's method, which failed; "
               "the method then changed in view of it)", embedders)  # fmt: skip


def unseen_d(embedders: list[str]) -> None:
    """Set D's table: the fourth blind set, frozen (commit 'Memorization set D ... FROZEN UNSCORED') before scoring."""
    from medgen.memorization.unseen_d import unseen_d as build_d

    _set_table(build_d(), "unseen set D (blind: frozen unscored before the current method was scored on it)",
               embedders)  # fmt: skip


def _set_table(data: Any, title: str, embedders: list[str]) -> None:
    """A set-B-like table (:class:`~medgen.memorization.unseen_b.UnseenSetB`): margins, the threshold's origin."""
    from medgen.memorization.unseen import clopper_pearson_upper
    from medgen.memorization.unseen_b import subject_of
    from medgen.memorization.verified import MIN_VERIFIED_SCORE

    planted = data.planted
    n_copies = int(planted.is_copy.sum())
    roles = data.subjects_by_role
    held = Counter(data.heldout_kind)
    held_subjects = Counter(
        kind for kind, name in dict.fromkeys(zip(data.heldout_kind, map(subject_of, data.real_names), strict=True))
    )
    null = Counter(data.null_kind)
    print(f"# {title}, roles split by subject: {len(planted.train)} train from "
          f"{len(roles['train'])} subjects, {len(planted.holdout)} null from {data.null_subjects} subjects "
          f"({', '.join(f'{k} {v}' for k, v in null.items())}), {len(data.real_names)} held-out from "
          f"{len(roles['heldout'])} subjects ({', '.join(f'{k} {held[k]}/{held_subjects[k]} subj.' for k in held)}), "
          f"{n_copies} copies, {len(data.unrelated)} unrelated")  # fmt: skip
    print("# FP = held-out images flagged (real images and phantom subjects); FPR<= = one-sided 95 % Clopper-Pearson "
          "upper bound; thresholds from the null only (0.99 quantile; '*': the floor 0.6 decided)")  # fmt: skip
    print(_table_header())
    notes: list[str] = []
    kind_of = dict(zip(data.real_names, data.heldout_kind, strict=True))
    n_gen = len(planted.generated)
    for name in embedders:
        for verify in (False, True):
            start = time.perf_counter()
            try:
                with _Recorder() as record:
                    s = score_unseen(name, data, verify)
            except Exception as exc:  # noqa: BLE001 - an optional embedder (Inception weights) may be missing
                print(f"{name:<20} unavailable: {exc}")
                break
            print(_table_row(s, time.perf_counter() - start), flush=True)
            if not verify:
                continue
            flagged_kind = Counter(kind_of[n] for n, _ in s.flagged_real)
            per_kind = ", ".join(
                f"{k} {flagged_kind[k]}/{held[k]} (<= {clopper_pearson_upper(flagged_kind[k], held[k]):.3f})"
                for k in held
            )
            notes.append(f"# {s.method}: FP by held-out source: {per_kind}")
            if s.flagged_real:
                notes.append(f"# {s.method} flags held-out: {s.flagged_real}")
            calibration = record.calibrations[-1]
            quantile = float(torch.quantile(calibration.null.double(), 0.99))
            origin = (
                f"the floor {MIN_VERIFIED_SCORE} (the null's 0.99 quantile {quantile:.3f} is below it)"
                if s.floor_decided
                else f"the null's 0.99 quantile ({quantile:.3f}, above the floor {MIN_VERIFIED_SCORE})"
            )
            notes.append(f"# {s.method}: threshold {s.threshold:.3f} comes from {origin}; null of "
                         f"{calibration.null.numel()} images from {data.null_subjects} subjects, max "
                         f"{float(calibration.null.max()):.3f}")  # fmt: skip
            scores = torch.tensor([v.margin for v in record.verifications[-1]])  # the decision value
            copy = planted.is_copy
            real = scores[:n_gen][~copy]
            weakest = int(torch.argmin(torch.where(copy, scores[:n_gen], torch.inf)))
            top_real = [
                f"{k} {float(real[[i for i, x in enumerate(data.heldout_kind) if x == k]].max()):.3f}" for k in held
            ]
            notes.append(f"# {s.method} margins: weakest copy {float(scores[weakest]):.3f} "
                         f"({data.disguise[weakest]} of {data.copy_sources[weakest - len(data.real_names)]}); "
                         f"highest held-out {', '.join(top_real)}; highest unrelated "
                         f"{float(scores[n_gen:].max()):.3f}")  # fmt: skip
    print("\n".join(notes))


def unseen_volumes() -> None:
    """3D: copies of unseen volumes rotated 8°, shifted 8 % and resampled 0.8x, plus exact copies."""
    data = unseen_3d()
    for verify in (False, True):
        s = score_unseen("structural", data, verify, k=len(data.planted.train))
        print(f"# unseen 3D volumes ({len(data.planted.train)} train, {len(data.planted.holdout)} null, "
              f"{len(data.planted.generated)} copies, {len(data.unrelated)} unrelated) {s.method}: "
              f"recall {s.recall:.3f} "
              f"{s.recall_by_disguise}, unrelated flagged {s.unrelated_flagged:.3f}, AUROC {s.auroc:.3f}")  # fmt: skip


def cost(n_samples: int, k: int = 20) -> None:
    """Time verification of ``n_samples`` x ``k`` candidates at 256² and project it to 10,000 samples."""
    from medgen.memorization.search import SearchResult
    from medgen.memorization.verified import CandidateImages, verify_search

    planted = unseen_2d().planted

    def big(x: Tensor) -> Tensor:
        return F.interpolate(x[None], size=(256, 256), mode="bilinear", align_corners=False)[0]

    train = [big(x) for x in planted.train]
    samples = [big(planted.generated[i % len(planted.generated)]) for i in range(n_samples)]
    gen = torch.Generator().manual_seed(0)
    index = torch.stack([torch.randperm(len(train), generator=gen)[:k] for _ in range(n_samples)])
    candidates = CandidateImages(lambda i: train[i])
    start = time.perf_counter()
    verify_search(samples, SearchResult(torch.zeros(index.shape), index), candidates)
    seconds = time.perf_counter() - start
    minutes = seconds * 10_000 / n_samples / 60
    print(f"# verification cost at 256², k={k}: {n_samples} samples in {seconds:.1f} s "
          f"({1000 * seconds / n_samples:.1f} ms/sample; projected 10,000 samples: {minutes:.1f} min)")  # fmt: skip


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedders", default="structural,pixel,pixel+centre+rot,inception")
    parser.add_argument(
        "--sets", default="seen,unseen,cost", help="seen, unseen, unseen_b, unseen_c, unseen_d, cost (comma-separated)"
    )
    parser.add_argument("--cost-samples", type=int, default=500, help="samples timed for the cost projection")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    chosen = args.sets.split(",")
    print(f"# CPU: {_cpu_model()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}")  # fmt: skip
    if "unseen" in chosen:
        unseen([e for e in args.embedders.split(",") if e != "pixel+centre+rot"])
        unseen_volumes()
    if "unseen_b" in chosen:
        unseen_b([e for e in args.embedders.split(",") if e != "pixel+centre+rot"])
    if "unseen_c" in chosen:
        unseen_c([e for e in args.embedders.split(",") if e != "pixel+centre+rot"])
    if "unseen_d" in chosen:
        unseen_d([e for e in args.embedders.split(",") if e != "pixel+centre+rot"])
    if "cost" in chosen:
        cost(args.cost_samples)
    if "seen" not in chosen:
        return
    sets = {
        "2D real MRI slices": planted_mri_2d(),
        "3D real MRI slabs": planted_mri_3d(),
        "3D MR phantoms": planted_phantoms_3d(),
    }
    print(f"{'set':<20} {'embedder':<16} {'recall':>6} {'real flagged':>12} {'macro-F1':>8} {'threshold':>9} "
          f"{'source NN':>9} {'seconds':>7}")  # fmt: skip
    for set_name, planted in sets.items():
        n_copies = int(planted.is_copy.sum())
        print(f"# {set_name}: {len(planted.train)} train, {len(planted.holdout)} holdout, "
              f"{len(planted.generated) - n_copies} real + {n_copies} copies generated")  # fmt: skip
        for name in args.embedders.split(","):
            start = time.perf_counter()
            score = score_planted(_embedder(name), planted)
            print(
                f"{set_name:<20} {name:<16} {score.recall:6.3f} {score.false_positive_rate:12.3f} "
                f"{score.macro_f1:8.3f} {score.threshold:9.4f} {score.source_found:9.3f} "
                f"{time.perf_counter() - start:7.1f}",
                flush=True,
            )


def _table_header() -> str:
    """The header of the unseen-set tables."""
    return (f"{'method':<20} {'recall':>6} {'FP':>7} {'FPR':>5} {'FPR<=':>6} {'AUROC':>6} {'R@20':>5} {'thresh':>7} "
            + " ".join(f"{k[:6]:>6}" for k in DISGUISES) + f" {'seconds':>7}")  # fmt: skip


def _table_row(s: UnseenScore, seconds: float) -> str:
    """One method's row of the unseen-set tables (``*`` after the threshold: the 0.6 floor decided)."""
    threshold = f"{s.threshold:6.3f}{'*' if s.floor_decided else ' '}"
    return (f"{s.method:<20} {s.recall:6.3f} {f'{s.false_positives}/{s.n_real}':>7} "
            f"{s.false_positive_rate:5.3f} {s.fpr_upper:6.3f} {s.auroc:6.3f} {s.recall_at_k:5.3f} {threshold} "
            + " ".join(f"{s.recall_by_disguise[k]:6.2f}" for k in DISGUISES) + f" {seconds:7.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
