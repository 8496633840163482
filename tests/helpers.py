"""Helpers shared by tests (tiny real components, no mocks)."""

from __future__ import annotations


def tiny_unet(spatial_dims: int, seed: int = 0, **overrides: object):  # type: ignore[no-untyped-def]
    """A seeded tiny :class:`~medgen.nets.unet.DiffusionUNet` whose zero-initialised output layers get weights.

    MONAI zero-initialises output convolutions, so an untrained net returns zeros; tests of conditioning and
    checkpointing need outputs that depend on their inputs.
    """
    import torch

    from medgen.nets.unet import DiffusionUNet

    torch.manual_seed(seed)
    args: dict[str, object] = dict(
        spatial_dims=spatial_dims,
        channels=(8, 16),
        attention_levels=(False, True),
        num_res_blocks=1,
        num_head_channels=8,
        norm_num_groups=8,
    )
    args.update(overrides)
    net = DiffusionUNet(**args)  # type: ignore[arg-type]
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(std=0.05)
    return net


def fit_smoke(config, root, *extra: str):  # type: ignore[no-untyped-def]
    """Run ``medgen fit --config config`` under ``root`` (no progress bar); the checkpoints folder."""
    from medgen.cli import main

    code = main(["fit", "--config", str(config), "--trainer.default_root_dir", str(root),
                 "--trainer.enable_progress_bar", "false", *extra])  # fmt: skip
    assert code == 0
    return root / "lightning_logs" / "version_0" / "checkpoints"


def straight_and_resumed(config_text: str, tmp_path, steps: int = 4):  # type: ignore[no-untyped-def]
    """Train a smoke config ``steps`` steps straight and again resumed from its step ``steps // 2`` checkpoint.

    ``config_text`` must hold ``every_n_train_steps: 5}`` (the smoke configs' checkpoint interval); it is rewritten
    to keep a checkpoint every ``steps // 2`` steps. Returns ``(straight checkpoints folder, resumed one)``.
    """
    half = steps // 2
    assert "every_n_train_steps: 5}" in config_text
    config = tmp_path / "smoke.yaml"
    config.write_text(config_text.replace("every_n_train_steps: 5}", f"every_n_train_steps: {half}, save_top_k: -1}}"))
    straight = fit_smoke(config, tmp_path / "straight", "--trainer.max_steps", str(steps))
    middle = next(straight.glob(f"*-step={half}.ckpt"))
    resumed = fit_smoke(config, tmp_path / "resumed", "--trainer.max_steps", str(steps), "--ckpt_path", str(middle))
    return straight, resumed


def assert_same_checkpoints(a_path, b_path) -> None:  # type: ignore[no-untyped-def]
    """Two ``.ckpt`` files hold bit-identical weights, EMA weights and optimizer moments, at the same step."""
    import torch

    a = torch.load(a_path, weights_only=True)
    b = torch.load(b_path, weights_only=True)
    assert a["global_step"] == b["global_step"]
    for key in ("current_model_state", "state_dict"):
        if key not in a:
            continue
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}[{name}] differs after resume"
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        assert opt_a["state"].keys() == opt_b["state"].keys()
        for state_a, state_b in zip(opt_a["state"].values(), opt_b["state"].values(), strict=True):
            for moment in ("exp_avg", "exp_avg_sq"):
                assert torch.equal(state_a[moment], state_b[moment])


def assert_resumes_exactly_and_generates(config_text: str, tmp_path):  # type: ignore[no-untyped-def]
    """A smoke config resumed at step 2 ends bit-identical to its straight 4-step run, and ``medgen generate`` draws
    one sample from the checkpoint with a manifest row. Returns the straight run's checkpoints folder."""
    from medgen.cli import main

    straight, resumed = straight_and_resumed(config_text, tmp_path, steps=4)
    assert_same_checkpoints(straight / "last.ckpt", resumed / "last.ckpt")
    out = tmp_path / "samples"
    args = ["generate", "--checkpoint", str(straight / "last.ckpt"), "--num-samples", "1", "--out", str(out)]
    assert main([*args, "--steps", "2", "--format", "npy"]) == 0
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 1
    (sample,) = out.glob("sample_000000.*")
    assert sample.stat().st_size > 0
    return straight


def assert_generation_is_batch_independent(export, tmp_path, num: int, batch: int) -> None:  # type: ignore[no-untyped-def]
    """``medgen generate`` from ``export`` draws byte-identical ``.npy`` samples alone and ``batch`` at a time (CPU),
    and different samples differ."""
    import numpy as np

    from medgen.cli import main

    files = {}
    for size in (1, batch):
        out = tmp_path / f"b{size}"
        assert main(["generate", "--checkpoint", str(export), "--num-samples", str(num), "--out", str(out),
                     "--format", "npy", "--batch-size", str(size), "--max-retries", "0"]) == 0  # fmt: skip
        files[size] = [np.load(p) for p in sorted(out.glob("sample_*.npy"))]
    assert len(files[1]) == num
    for alone, batched in zip(files[1], files[batch], strict=True):
        assert np.array_equal(alone, batched)
    assert not np.array_equal(files[1][0], files[1][1])
