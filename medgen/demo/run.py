"""Running the demo: check the shipped checkpoints, run each stage (or reuse it), write ``index.html``."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import time
from pathlib import Path

from medgen.demo.stages import DemoSettings, Result, Stage, run_stage, settings_key
from medgen.errors import InputError

#: The shipped checkpoints the demo uses (issue #17's names).
BRAIN_2D = "mri-brain-2d"
BRAIN_3D = "mri-brain-3d-latent"
TRANSLATION = "mri-t1-to-t2-2d"

#: The evaluations: (label, generated set's stage, real subject, report folder name).
EVALUATIONS = (
    ("augmentation set vs training subject (MNI152)", "augment", "mni152", "base_vs_mni152"),
    ("augmentation set vs held-out subject", "augment", "anatomical", "base_vs_anatomical"),
    ("fine-tuned samples vs held-out subject", "finetuned_set", "anatomical", "finetuned_vs_anatomical"),
)


def checkpoint_digest(name: str, required: bool) -> str | None:
    """The sha256 on the card of the registry model ``name`` (None when absent and not ``required``).

    Raises:
        InputError: ``name`` is required and not in the registry (one line naming it and where it is looked for).
    """
    from medgen.store.registry import read_card, resolve, search_path

    try:
        return str(read_card(resolve(name).path)["sha256"])
    except InputError:
        if not required:
            return None
        where = ", ".join(str(p) for p in search_path()) or "checkpoints/"
        raise InputError(name, f"shipped checkpoint not found (looked in {where}; MEDGEN_CHECKPOINTS adds folders); "
                               "medgen demo needs it") from None  # fmt: skip


def machine() -> str:
    """The CPU architecture, the cores this process may use and torch's threads (and a GPU), in one line."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (
        f"{platform.machine()} CPU, {cores} cores, torch {torch.__version__} ({torch.get_num_threads()} threads){gpu}"
    )


def _emptied(folder: Path) -> Path:
    """``folder`` with an older run's files removed (a stage that reruns never mixes with them)."""
    shutil.rmtree(folder, ignore_errors=True)
    return folder


def demo_stages(settings: DemoSettings, digests: dict[str, str | None]) -> list[Stage]:
    """The demo's stages in order, each keyed by what its outputs depend on (upstream keys included)."""
    from medgen.demo.augment import generate_set, include_qc_failed
    from medgen.demo.copies import detect_copies
    from medgen.demo.finetune import finetune
    from medgen.demo.real import write_real_slices
    from medgen.demo.scores import Evaluation, evaluate_sets
    from medgen.demo.translation import translate_one
    from medgen.demo.volume import generate_volume
    from medgen.store.registry import read_card, resolve

    s = settings
    seed = settings_key(s, "seed")
    brain = {"checkpoint": digests[BRAIN_2D]}
    real_key = {**brain, **settings_key(s, "max_train_slices")}
    aug_key = {**brain, **seed, **settings_key(s, "num_samples")}
    ft_key = {**brain, **seed, **settings_key(s, "finetune_steps", "finetune_batch", "finetune_lr")}
    ft_set_key = {"finetune": ft_key, **settings_key(s, "num_samples")}

    def real(o: Path, _: dict[str, Result]) -> Result:
        return write_real_slices(o, read_card(resolve(BRAIN_2D).path), s.max_train_slices)

    def augment(o: Path, _: dict[str, Result]) -> Result:
        return generate_set(BRAIN_2D, o, _emptied(o / "augment"), s.num_samples, s.seed)

    def tune(o: Path, _: dict[str, Result]) -> Result:
        _emptied(o / "finetuned")
        return finetune(BRAIN_2D, o / "real" / "anatomical.csv", o, s)

    def tuned_set(o: Path, done: dict[str, Result]) -> Result:
        return generate_set(o / done["finetune"]["model"], o, _emptied(o / "finetuned" / "samples"), s.num_samples,
                            s.seed)  # fmt: skip

    def evaluate(o: Path, done: dict[str, Result]) -> Result:
        plan = [Evaluation(label, o / "real" / subject, o / done[stage]["folder"], _emptied(o / "evaluation" / name),
                           include_qc_failed(done[stage]))
                for label, stage, subject, name in EVALUATIONS
                if subject != "mni152" or s.against_training_subject]  # fmt: skip
        return evaluate_sets(plan, o, s.bootstrap, s.diversity, s.seed)

    def copies(o: Path, done: dict[str, Result]) -> Result:
        return detect_copies(o / "real" / "mni152", o / "real" / "anatomical", o / "augment", o,
                             include_qc_failed(done["augment"]))  # fmt: skip

    def volume(o: Path, _: dict[str, Result]) -> Result:
        return generate_volume(BRAIN_3D, o, _emptied(o / "volume3d"), s.volumes, s.seed)

    def translation(o: Path, _: dict[str, Result]) -> Result:
        return translate_one(TRANSLATION, o, _emptied(o / "translation"), s.seed)

    stages = [
        Stage("real", "real slices: the training subject (MNI152) and the held-out subject (anatomical.nii)",
              real_key, real),
        Stage("augment", f"augmentation set from {BRAIN_2D}: {s.num_samples} samples with the manifest", aug_key,
              augment),
        Stage("finetune", f"fine-tuning {BRAIN_2D} on the held-out subject ({s.finetune_steps} steps)", ft_key, tune),
        Stage("finetuned_set", f"{s.num_samples} samples from the fine-tuned model", ft_set_key, tuned_set),
        Stage("evaluate", "evaluation against real slices: FID/KID/PRDC with baselines and 95% CIs",
              {"augment": aug_key, "finetuned": ft_set_key, "real": real_key,
               **settings_key(s, "bootstrap", "diversity", "against_training_subject")}, evaluate),
        Stage("memorization", "memorization check of the augmentation set (the held-out subject as the null)",
              {"augment": aug_key, "real": real_key}, copies),
        Stage("volume", f"a 3D volume from {BRAIN_3D} and its mid-slices",
              {"checkpoint": digests[BRAIN_3D], **seed, **settings_key(s, "volumes")}, volume),
    ]  # fmt: skip
    if digests.get(TRANSLATION):
        key = {"checkpoint": digests[TRANSLATION], **seed}
        stages.append(Stage("translation", f"one T1 -> T2 translation with {TRANSLATION}", key, translation))
    return stages


def run_demo(out: str | Path, quick: bool = False) -> Path:
    """Run every stage into ``out`` (reusing the ones an earlier run finished) and write ``out/index.html``.

    Args:
        out: The demo folder.
        quick: The test-sized run (fewer samples, steps and bootstrap subsamples).

    Returns:
        The path of ``index.html``.

    Raises:
        InputError: A required shipped checkpoint (``mri-brain-2d``, ``mri-brain-3d-latent``) is missing.
    """
    from medgen.demo.page import write_page

    start = time.monotonic()
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    settings = DemoSettings.make(quick)
    digests = {BRAIN_2D: checkpoint_digest(BRAIN_2D, True), BRAIN_3D: checkpoint_digest(BRAIN_3D, True),
               TRANSLATION: checkpoint_digest(TRANSLATION, False)}  # fmt: skip
    notes = {}
    if digests[TRANSLATION] is None:
        notes["translation"] = f"skipped: the translation checkpoint {TRANSLATION} is not installed"
        print(f"note: {notes['translation']}")
    stages = demo_stages(settings, digests)
    results: dict[str, Result] = {}
    for i, stage in enumerate(stages, start=1):
        results[stage.name] = run_stage(folder, stage, f"[{i}/{len(stages)}]", results)
    seconds = time.monotonic() - start
    cached = sum(1 for r in results.values() if r.get("cached"))
    header = {"mode": "quick" if quick else "full", "seconds": seconds, "machine": machine(), "checkpoints": digests,
              "stage_seconds": sum(float(r.get("seconds", 0.0)) for r in results.values()), "cached": cached,
              "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
    page = write_page(folder, dict(results), notes, header)
    reused = f" ({cached} of {len(stages)} stages reused from the cache)" if cached else ""
    print(f"\ndone in {seconds:.0f} s{reused}.\n{page.resolve()}")
    return page
