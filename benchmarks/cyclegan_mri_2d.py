"""CycleGAN vs MedShift-style flow translation between the unpaired MRI domains of ``demo:mri-domains`` (32x32).

``demo:mri-domains``: domain a is the MNI152 T1, domain b a T2-like remap of nibabel's ``anatomical.nii``; no
subject is in both, so the data is unpaired. Both configs resample to 2 mm and centre-crop to 32x32 (57 a and 25 b
axial slices), so that the domains differ in contrast, not in framing.

1. ``medgen fit`` of ``configs/quality/cyclegan_mri_2d_cyclegan.yaml`` (CycleGAN) and of
   ``configs/quality/cyclegan_mri_2d_flow.yaml`` (a flow conditioned on the ``domain`` class), each timed;
2. inputs: the T1 slices of ``anatomical`` from ``demo:mri-pairs`` (a subject the models saw only in domain b,
   never as a T1), whose true T2-like remap (the pair's ``image``) is known;
3. a domain classifier (:class:`DomainJudge`: MONAI ``Classifier``, 2-fold) trained on ``demo:mri-pairs`` slices in
   both contrasts (T1 = a, T2-like = b) of both subjects, so only the contrast tells the classes apart; every
   anatomical slice is judged by the fold that left it out (a classifier trained on MNI alone did not transfer
   to anatomical's field of view); its accuracy on the left-out real T1 and T2-like slices is printed;
4. per method (identity, CycleGAN a→b, flow a→b, and the true remap as a reference): the share of outputs the
   classifier calls b (domain moved), the SSIM of Sobel edge magnitudes between input and output (structure kept)
   and the SSIM to the true remap (which neither model saw paired with its input);
5. a picture of 8 inputs: input | CycleGAN | flow | true remap, one row each.

Prints the machine, a table and wall times; writes the figures as JSON too, with the settings the CycleGAN was trained
with (read from the config Lightning saved beside its checkpoint), so a test can tie the figures to the committed
config. About 15-20 minutes on 2 CPU cores with ``OMP_NUM_THREADS=1``, most of it the flow (several torch threads on
a busy 2-core machine were many times slower); ``--reuse`` keeps trained runs under ``--out``, and
``--cyclegan-config`` trains another CycleGAN config for comparison.

    python benchmarks/cyclegan_mri_2d.py [--out runs/bench_cyclegan_mri_2d] [--report FILE] [--json FILE]
        [--picture FILE] [--reuse] [--cyclegan-config FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from cli_runs import REPO, last_checkpoint, medgen
from machine import describe

CONFIGS = {
    "cyclegan": REPO / "configs" / "quality" / "cyclegan_mri_2d_cyclegan.yaml",
    "flow": REPO / "configs" / "quality" / "cyclegan_mri_2d_flow.yaml",
}
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def children_cpu() -> float:
    """CPU seconds (user + system) used so far by finished child processes (a fit's cost, whatever the load)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pair_slices() -> dict[str, dict[str, torch.Tensor]]:
    """``{subject: {"t1": (N, 1, H, W), "t2": (N, 1, H, W)}}`` from ``demo:mri-pairs``, prepared as the CycleGAN
    config prepares ``demo:mri-domains`` (size, spacing, resize mode)."""
    import yaml

    from medgen.data.datamodule import MedicalImageDataModule

    data = yaml.safe_load(CONFIGS["cyclegan"].read_text())["data"]
    dm = MedicalImageDataModule("demo:mri-pairs", modality="mri", spatial_dims=2, image_size=data["image_size"],
                                num_workers=0, val_fraction=0.0, target_spacing=data["target_spacing"],
                                resize_mode=data["resize_mode"])  # fmt: skip
    dm.setup("fit")
    train = dm.train_set
    assert train is not None
    found: dict[str, dict[str, list[torch.Tensor]]] = {}
    for i in range(len(train)):  # type: ignore[arg-type]
        item = train[i]
        subject = train.records[train.index[i][0]].subject  # type: ignore[attr-defined]
        slot = found.setdefault(subject, {"t1": [], "t2": []})
        slot["t1"].append(item["source"])
        slot["t2"].append(item["image"])
    return {s: {k: torch.stack(v) for k, v in d.items()} for s, d in found.items()}


def train_classifier(a: torch.Tensor, b: torch.Tensor, steps: int = 300) -> torch.nn.Module:
    """A small CNN telling ``a`` (label 0) from ``b`` (label 1), with flips and gamma jitter, seed 0."""
    from monai.networks.nets import Classifier

    torch.manual_seed(0)
    net = Classifier(in_shape=tuple(a.shape[1:]), classes=2, channels=(8, 16, 32), strides=(2, 2, 2))
    images, labels = torch.cat([a, b]), torch.cat([torch.zeros(len(a)), torch.ones(len(b))]).long()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(len(images), (32,), generator=g)
        x = images[idx]
        flip = torch.rand(len(x), generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        gamma = torch.exp(0.3 * torch.randn(len(x), 1, 1, 1, generator=g))
        x = ((x + 1) / 2).clamp(0, 1) ** gamma * 2 - 1
        loss = F.cross_entropy(net(x), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


class DomainJudge:
    """Two classifiers (2-fold over the test subject's slices), so that no slice is judged by one that saw it.

    Each is trained on every MNI slice in both contrasts (T1 = a, T2-like = b) plus the test subject's slices of
    the other fold (even or odd index) in both contrasts: the label is the contrast, never the subject.
    """

    def __init__(self, slices: dict[str, dict[str, torch.Tensor]], test: str = "anatomical") -> None:
        n = len(slices[test]["t1"])
        self.folds = [torch.arange(n) % 2 == k for k in (0, 1)]
        self.nets = [
            train_classifier(
                torch.cat([s["t1"] if name != test else s["t1"][~held] for name, s in slices.items()]),
                torch.cat([s["t2"] if name != test else s["t2"][~held] for name, s in slices.items()]),
            )
            for held in self.folds
        ]

    def share_b(self, images: torch.Tensor) -> float:
        """Share of ``images`` (the test subject's slices, in order) called b by the fold that left them out."""
        called = torch.zeros(len(images), dtype=torch.bool)
        with torch.no_grad():
            for held, net in zip(self.folds, self.nets, strict=True):
                called[held] = net(images[held]).argmax(1) == 1
        return float(called.float().mean())


def sobel(images: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W)`` Sobel gradient magnitudes (replicate padding)."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernels = torch.stack([kx, kx.T])[:, None]
    grad = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernels)
    return grad.pow(2).sum(1, keepdim=True).sqrt()


def ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean SSIM over images (torchmetrics, 7-pixel Gaussian window), data range of ``y``."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    value = structural_similarity_index_measure(
        x, y, data_range=float(y.max() - y.min()), kernel_size=7, reduction="elementwise_mean"
    )
    return float(value if isinstance(value, torch.Tensor) else value[0])


def picture(rows: list[torch.Tensor], path: Path) -> Path:
    """Rows of images ``(K, 1, H, W)`` (one column per method) as a PNG grid, upsampled 4x (nearest)."""
    from PIL import Image

    from medgen.visualize import save_grid

    saved = save_grid(torch.cat(rows), path, ncol=int(rows[0].shape[0]))
    image = Image.open(saved)
    image.resize((image.width * 4, image.height * 4), Image.NEAREST).save(saved)
    return saved


def trained_config(checkpoint: Path) -> dict[str, object]:
    """``trainer.max_steps``, ``model`` and ``data`` of the config Lightning saved beside ``checkpoint``'s run (all
    defaults filled in), so the JSON says which settings produced the figures."""
    import yaml

    saved = yaml.safe_load((checkpoint.parents[1] / "config.yaml").read_text())
    return {"max_steps": saved["trainer"]["max_steps"], "model": saved["model"], "data": saved["data"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_cyclegan_mri_2d")
    parser.add_argument("--report", type=Path, default=None, help="also write the printed figures to this file")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON to this file")
    parser.add_argument("--picture", type=Path, default=None, help="grid path (default: OUT/translations.png)")
    parser.add_argument("--reuse", action="store_true", help="reuse the last.ckpt of runs already under --out")
    parser.add_argument("--cyclegan-config", type=Path, default=CONFIGS["cyclegan"], help="CycleGAN config to train")
    args = parser.parse_args()
    CONFIGS["cyclegan"] = args.cyclegan_config.resolve()
    out: Path = args.out.resolve()
    from medgen.models.cyclegan import CycleGANModel
    from medgen.models.flow import FlowModel
    from medgen.nets.condition import Condition
    from medgen.store.load import load_model

    fit_time: dict[str, float] = {}
    fit_cpu: dict[str, float] = {}
    for name, config in CONFIGS.items():
        record = out / name / "fit_time.json"
        if args.reuse and list((out / name).glob("lightning_logs/*/checkpoints/last.ckpt")):
            if record.exists():
                fit_time[name], fit_cpu[name] = json.loads(record.read_text())
            continue
        cpu = children_cpu()
        fit_time[name] = medgen(["fit", f"--config={config}", f"--trainer.default_root_dir={out / name}", *QUIET])
        fit_cpu[name] = children_cpu() - cpu
        record.write_text(json.dumps([fit_time[name], fit_cpu[name]]))
    cyclegan_checkpoint = last_checkpoint(out / "cyclegan")
    cyclegan = load_model(cyclegan_checkpoint).model
    flow = load_model(last_checkpoint(out / "flow")).model
    assert isinstance(cyclegan, CycleGANModel) and isinstance(flow, FlowModel)

    slices = pair_slices()
    start = time.perf_counter()
    judge = DomainJudge(slices)
    classifier_time = time.perf_counter() - start
    inputs, truth = slices["anatomical"]["t1"], slices["anatomical"]["t2"]
    n = len(inputs)
    a, b = Condition(values=torch.zeros(n, 1)), Condition(values=torch.ones(n, 1))
    outputs: dict[str, torch.Tensor] = {"identity (input unchanged)": inputs}
    translate_time: dict[str, float] = {}
    start = time.perf_counter()
    outputs["CycleGAN a→b"] = cyclegan.translate(inputs, "a2b")
    translate_time["CycleGAN a→b"] = time.perf_counter() - start
    start = time.perf_counter()
    outputs["flow a→b (MedShift)"] = flow.translate(inputs, a, b).clamp(-1, 1)
    translate_time["flow a→b (MedShift)"] = time.perf_counter() - start
    outputs["true T2-like remap (reference)"] = truth
    fits = {"CycleGAN a→b": "cyclegan", "flow a→b (MedShift)": "flow"}

    edges_in = sobel(inputs)
    figures = {}
    for name, images in outputs.items():
        figures[name] = {
            "share_b": judge.share_b(images),
            "edge_ssim_to_input": ssim(sobel(images), edges_in),
            "ssim_to_true_remap": ssim(images, truth),
            "fit_s": fit_time.get(fits.get(name, ""), None),
            "fit_cpu_s": fit_cpu.get(fits.get(name, ""), None),
            "translate_s": translate_time.get(name, None),
        }
    accuracy = {
        "anatomical T1 called a": 1 - judge.share_b(inputs),
        "anatomical T2-like called b": judge.share_b(truth),
    }
    rows = torch.linspace(0, n - 1, 8).round().long()
    grid = [torch.stack([outputs[k][i] for k in outputs]) for i in rows]
    saved = picture(grid, args.picture or out / "translations.png")

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f} s"

    header = f"{'method':32s} | {'domain moved (share called b)':>29s} | {'edge SSIM to input':>18s} | " \
             f"{'SSIM to true remap':>18s} | {'fit wall':>8s} | {'fit CPU':>8s} | {'translate':>9s}"  # fmt: skip
    table = [header, "-" * len(header)] + [
        f"{k:32s} | {v['share_b']:29.2f} | {v['edge_ssim_to_input']:18.3f} | {v['ssim_to_true_remap']:18.3f} | "
        f"{seconds(v['fit_s']):>8s} | {seconds(v['fit_cpu_s']):>8s} | {seconds(v['translate_s']):>9s}"
        for k, v in figures.items()
    ]
    lines = [
        f"machine: {describe()}",
        f"inputs: {n} T1 slices (32x32, 2 mm) of nibabel's anatomical.nii (domain b's subject, never seen as T1)",
        "domain classifier: 2 MONAI Classifiers (300 steps each), each trained on the MNI slices in both contrasts "
        "(T1 = a, T2-like = b) and on every other anatomical slice in both contrasts; each anatomical slice is judged "
        f"by the one that left it out ({classifier_time:.0f} s); accuracy on left-out real slices: "
        + ", ".join(f"{k} {v:.2f}" for k, v in accuracy.items()),
        *table,
        f"picture (input | CycleGAN | flow | true remap): {saved}",
        "fit times (recorded in OUT/NAME/fit_time.json by the run that trained): wall time depends on the load of "
        "the machine (shared with other jobs, nice 10), CPU time (user + system of the fit process) less so",
    ]
    text = "\n".join(lines)
    print("\n" + text)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text + "\n")
    if args.json is not None:
        trained = trained_config(cyclegan_checkpoint)
        record = {"classifier_accuracy": accuracy, "methods": figures, "cyclegan_config": trained}
        args.json.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
