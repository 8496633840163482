"""``medgen fit`` on two CPU processes (gloo) trains what one process trains at twice the batch, and resumes exactly.

The two processes are forked from the test process by Lightning's DDP launcher (``start_method: fork`` on the
``configs/trainer/ddp.yaml`` preset), so they start in a fraction of a second with everything imported; the
rendezvous port is a free one. Diffusion and flow models draw their noise for the global batch
(:mod:`medgen.lit.sharding`) and the sampler deals the same global order out to the processes, so the only
difference from one process is the float rounding of the gradient's sum over 4 + 4 rows instead of 8: after 5
AdamW steps the weights agree to ``ATOL`` (observed: about 1.5e-8), while training moved them by far more.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from medgen.cli import main
from medgen.errors import InputError
from medgen.lit.sharding import BatchShard, sharded_loss_terms
from medgen.lit.strategies import MedgenFSDP, block_classes
from medgen.models.diffusion import DiffusionModel
from medgen.objectives.diffusion import DiffusionObjective
from tests.helpers import assert_same_checkpoints, fit_smoke, tiny_unet

pytestmark = pytest.mark.ddp

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
#: Absolute tolerance on weights after 5 steps: the gradient summed in another order (two processes of 4 rows).
ATOL = 1e-6
QUICK = ["--trainer.enable_model_summary", "false"]
NO_VALIDATION = ["--trainer.limit_val_batches", "0", "--model.pictures.num_samples", "0"]


@pytest.fixture
def rendezvous(monkeypatch: pytest.MonkeyPatch) -> None:
    """A free local port for the processes' rendezvous; no launcher variables from outside; one thread each."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _two_processes(*extra: str) -> list[str]:
    """Options that turn a smoke run into a 2-process DDP run through the ddp preset, on CPU."""
    return [
        "--config", str(CONFIGS / "trainer" / "ddp.yaml"), "--trainer.accelerator", "cpu",
        "--trainer.precision", "32-true", "--trainer.devices", "2",
        "--trainer.strategy.init_args.start_method", "fork", *extra,
    ]  # fmt: skip


def _record(folder: Path) -> list[str]:
    return ["--trainer.callbacks+=tests.distributed.ranks.RankRecord", f"--trainer.callbacks.folder={folder}"]


@pytest.mark.parametrize("name", ["ddpm_2d", "flow_2d"])
def test_two_processes_train_what_one_does_at_twice_the_batch(tmp_path: Path, rendezvous: None, name: str) -> None:
    """5 steps: 2 processes x batch 2 == 1 process x batch 4 (weights, EMA); the processes agree with each other."""
    config = CONFIGS / "smoke" / f"{name}.yaml"
    validate = name == "ddpm_2d"  # the synced metric and the picture are checked once (flow: no validation)
    one = fit_smoke(config, tmp_path / "one", *QUICK, *NO_VALIDATION, "--data.batch_size", "4",
                    "--trainer.gradient_clip_val", "1.0", *_record(tmp_path / "one_ranks"))  # fmt: skip
    two = fit_smoke(config, tmp_path / "two", *QUICK, *([] if validate else NO_VALIDATION), "--data.batch_size", "2",
                    *_two_processes(), *_record(tmp_path / "two_ranks"))  # fmt: skip
    a = torch.load(one / "last.ckpt", weights_only=True)
    b = torch.load(two / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 5
    for key in ("current_model_state", "state_dict"):  # trained weights, EMA weights
        for k in a[key]:
            torch.testing.assert_close(b[key][k], a[key][k], rtol=0, atol=ATOL, msg=f"{key}[{k}]")
    moved = max((a["current_model_state"][k] - a["state_dict"][k]).abs().max() for k in a["state_dict"])
    assert moved > 100 * ATOL  # the weights did change: the tolerance is far below what training does

    single = torch.load(tmp_path / "one_ranks" / "rank_0.pt", weights_only=True)
    ranks = [torch.load(tmp_path / "two_ranks" / f"rank_{r}.pt", weights_only=True) for r in (0, 1)]
    for part in ("weights", "ema"):  # DDP keeps every process's weights and EMA identical
        for k, v in ranks[0][part].items():
            assert torch.equal(v, ranks[1][part][k]), f"{part}[{k}] differs between ranks"
    steps = zip(ranks[0]["batches"], ranks[1]["batches"], single["batches"], strict=True)
    for step, (own0, own1, whole) in enumerate(steps):
        assert not set(own0) & set(own1), f"step {step}: both processes trained on the same image"
        assert sorted(own0 + own1) == sorted(whole), f"step {step}: not the global batch of one process"
    if validate:
        assert ranks[0]["metrics"]["val/loss"] == ranks[1]["metrics"]["val/loss"]  # synced over the processes
    assert ranks[0]["picture"] is not None and ranks[1]["picture"] is None  # pictures from rank 0 only


def _losses(run: Path) -> dict[int, str]:
    """``train/loss`` by step from a CSVLogger run, as written (text: compared bit for bit)."""
    with open(next(run.glob("**/metrics.csv"))) as fh:
        return {int(r["step"]): r["train/loss"] for r in csv.DictReader(fh) if r.get("train/loss")}


def test_a_signalled_run_checkpoints_and_resumes_exactly(tmp_path: Path, rendezvous: None) -> None:
    """SIGUSR1 to both processes (as SLURM's --signal=USR1): hpc_ckpt_1 at step 1, stop; resumed == uninterrupted.

    The signal is sent as soon as the processes exist; they hold it back (signal mask inherited from this process)
    until :class:`~medgen.lit.preemption.Preemption` takes it over when training starts, so the stop is at step 1.
    """
    config = CONFIGS / "smoke" / "ddpm_2d.yaml"
    common = [*QUICK, *NO_VALIDATION, "--data.batch_size", "2", "--trainer.max_steps", "3", "--trainer.logger",
              "CSVLogger", *_two_processes("--trainer.callbacks+=medgen.lit.preemption.Preemption")]  # fmt: skip
    straight_root = tmp_path / "straight"
    straight = fit_smoke(config, straight_root, *common, "--trainer.logger.save_dir", str(straight_root))

    signalled: list[int] = []
    main_thread = threading.get_native_id()

    def signal_both() -> None:  # SIGUSR1 to the two forked processes as soon as they exist
        children = Path(f"/proc/{os.getpid()}/task/{main_thread}/children")
        deadline = time.monotonic() + 120
        while len(signalled) < 2 and time.monotonic() < deadline:
            for pid in [int(p) for p in children.read_text().split()]:
                if pid not in signalled:
                    os.kill(pid, signal.SIGUSR1)
                    signalled.append(pid)
            time.sleep(0.02)

    # held back by the processes (they inherit the mask) until Preemption handles it at the start of training
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    watcher = threading.Thread(target=signal_both, daemon=True)
    watcher.start()
    try:
        stopped = tmp_path / "stopped"
        fit_smoke(config, stopped, *common, "--trainer.logger.save_dir", str(stopped))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        watcher.join(timeout=5)
    assert len(signalled) == 2
    hpc = stopped / "hpc_ckpt_1.ckpt"
    assert torch.load(hpc, weights_only=True)["global_step"] == 1
    resumed = fit_smoke(config, tmp_path / "resumed", *common, "--trainer.logger.save_dir", str(tmp_path / "resumed"),
                        "--ckpt_path", str(hpc))  # fmt: skip
    assert_same_checkpoints(straight / "last.ckpt", resumed / "last.ckpt")
    before, after, whole = _losses(stopped), _losses(tmp_path / "resumed"), _losses(tmp_path / "straight")
    assert sorted(whole) == [0, 1, 2]
    assert {**before, **after} == whole  # every step's loss, bit for bit (as logged)


def test_sharded_draws_are_those_of_one_global_batch() -> None:
    """Each process's rows of the objective's draw are the global batch's rows: the mean loss over 2 shards == 1."""
    torch.manual_seed(0)
    model = DiffusionModel(tiny_unet(2), DiffusionObjective(prediction_type="v"))
    x0 = torch.randn(4, 1, 8, 8)
    whole = model.loss_terms(x0, None, torch.Generator().manual_seed(7))["loss"]
    halves = [
        sharded_loss_terms(model, x0[r::2], None, torch.Generator().manual_seed(7), BatchShard(r, 2))["loss"]
        for r in (0, 1)
    ]
    torch.testing.assert_close((halves[0] + halves[1]) / 2, whole, rtol=1e-6, atol=0)
    assert halves[0] != halves[1]  # the processes' noise differs (different rows of one draw)
    full = torch.arange(6.0)
    assert BatchShard(1, 2).rows(full).tolist() == [1.0, 3.0, 5.0]
    assert torch.equal(BatchShard(1, 2).spread(torch.tensor([1.0, 3.0, 5.0])), torch.tensor([0, 1, 0, 3, 0, 5.0]))


def test_fsdp_preset_resolves_to_allow_listed_blocks(capsys: pytest.CaptureFixture[str]) -> None:
    """configs/trainer/fsdp.yaml resolves through ``medgen fit`` and builds MedgenFSDP with the UNet and DiT block
    classes; other names are refused. (FSDP itself needs CUDA: torch refuses a CPU-only FSDP run.)"""
    args = [
        "fit",
        "--config",
        str(CONFIGS / "smoke" / "ddpm_2d.yaml"),
        "--config",
        str(CONFIGS / "trainer" / "fsdp.yaml"),
    ]
    try:
        code = main([*args, "--print_config"])
    except SystemExit as stop:
        code = stop.code
    assert code == 0
    preset = yaml.safe_load(capsys.readouterr().out)["trainer"]
    assert preset["strategy"]["class_path"] == "medgen.lit.strategies.MedgenFSDP"
    strategy = MedgenFSDP(**preset["strategy"]["init_args"])
    policy = strategy.kwargs["auto_wrap_policy"]  # Lightning's ModuleWrapPolicy over the named classes
    names = {cls.__name__ for cls in policy._module_classes}
    assert names == {"DiTBlock", "DiffusionUNetResnetBlock", "SpatialTransformer"}
    assert strategy._state_dict_type == "sharded"
    assert preset["precision"] == "bf16-mixed"
    with pytest.raises(InputError, match="os.system"):
        block_classes(["os.system"], "strategy.wrap_blocks")


@pytest.mark.slow
def test_a_two_process_checkpoint_resumes_on_one_process_at_twice_the_batch(tmp_path: Path, rendezvous: None) -> None:
    """Step 2 of a 2-process run (batch 2 each), resumed on 1 process at batch 4: step 4 as the 2-process run.

    The data position counts the samples of all processes and the noise is drawn for the global batch, so the
    world size may change on resume as long as the global batch stays the same (weights within ``ATOL``).
    """
    text = (CONFIGS / "smoke" / "ddpm_2d.yaml").read_text()
    config = tmp_path / "smoke.yaml"
    config.write_text(text.replace("every_n_train_steps: 5}", "every_n_train_steps: 2, save_top_k: -1}"))
    common = [*QUICK, *NO_VALIDATION, "--trainer.max_steps", "4"]
    two = fit_smoke(config, tmp_path / "two", *common, "--data.batch_size", "2", *_two_processes())
    middle = next(two.glob("*-step=2.ckpt"))
    one = fit_smoke(config, tmp_path / "one", *common, "--data.batch_size", "4", "--trainer.gradient_clip_val", "1.0",
                    "--ckpt_path", str(middle))  # fmt: skip
    a = torch.load(two / "last.ckpt", weights_only=True)
    b = torch.load(one / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 4
    for key in ("current_model_state", "state_dict"):
        for k in a[key]:
            torch.testing.assert_close(b[key][k], a[key][k], rtol=0, atol=ATOL, msg=f"{key}[{k}]")
