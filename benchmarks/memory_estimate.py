"""Estimated training memory per GPU of the full-size configs (configs/*.yaml), for docs/scaling.md.

Nothing here runs on a GPU: the nets of each config are built on PyTorch's ``meta`` device (shapes, no storage),
so parameter counts are exact and the activations are the bytes autograd saves for the backward pass of one
forward at the config's per-GPU batch and training size (fp32; recorded with ``saved_tensors_hooks``, each saved
tensor once, parameters excluded). Per GPU, without sharding (DDP, or one GPU):

- states = 16 B × trainable parameters (fp32 weights, gradients, Adam's two moments; ``bf16-mixed`` keeps fp32
  masters) + 4 B × parameters for the EMA copy of the trained net + 2 B × frozen parameters (a latent model's
  autoencoder, held in bf16 at best; 4 B in fp32);
- activations ≈ 0.5 × the fp32 saved bytes under ``bf16-mixed`` (autocast saves most conv/matmul inputs in bf16;
  normalisation statistics stay fp32, so this is a lower bound), reported per input voxel as well;
- adversarial configs: the discriminator's states (16 B × its parameters) and activations for a real and a fake
  batch (2 × one forward) are added;
- attention: ``F.scaled_dot_product_attention`` counts as a fused kernel (:class:`FusedAttention`), as on a GPU at
  bf16; attention written as matmul + softmax saves its ``L × L`` matrices and is counted so; nets with
  ``gradient_checkpointing`` save block inputs only (the recomputation of one block during backward is not
  included);
- not included: the CUDA context (~0.5 GiB), cuDNN/cuBLAS workspaces, the allocator's fragmentation, DDP's gradient
  buckets (+4 B × parameters unless ``gradient_as_bucket_view``), the data loader, attention kernels' scratch.

    python benchmarks/memory_estimate.py [--out FILE]
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

REPO = Path(__file__).resolve().parents[1]
#: Every full-size config: 2D first, then 3D, each by name.
CONFIGS = sorted((p.stem for p in (REPO / "configs").glob("*.yaml")), key=lambda n: (n.endswith("_3d"), n))
GIB = 2**30


def build(spec: Any) -> Any:
    """Instantiate a ``{class_path, init_args}`` tree (a trusted repository config) on the current device."""
    if isinstance(spec, dict) and "class_path" in spec:
        module, _, name = spec["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        return cls(**{k: build(v) for k, v in (spec.get("init_args") or {}).items()})
    if isinstance(spec, dict):
        return {k: build(v) for k, v in spec.items()}
    if isinstance(spec, list):
        return [build(v) for v in spec]
    return spec


class FusedAttention(torch.autograd.Function):
    """What a fused attention kernel (flash / memory-efficient SDPA on a GPU) saves: q, k, v, the output and the
    row log-sum-exp, not the ``L × L`` matrix that the meta device's math path would save."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = q.new_empty((*q.shape[:-1], v.shape[-1]))
        ctx.save_for_backward(q, k, v, out, q.new_empty(q.shape[:-1]))
        return out


def _fused_sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args: Any, **options: Any) -> Any:
    return FusedAttention.apply(query, key, value)


def saved_bytes(net: nn.Module, *inputs: Any) -> int:
    """Bytes of the tensors autograd saves for backward in one forward of ``net`` (parameters excluded)."""
    params = {id(p) for p in net.parameters()}
    seen: dict[int, torch.Tensor] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in params and id(t) not in seen:
            seen[id(t)] = t  # kept alive so that ids stay unique; meta tensors have no storage
        return t

    sdpa = torch.nn.functional.scaled_dot_product_attention
    torch.nn.functional.scaled_dot_product_attention = _fused_sdpa
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = net(*inputs)
    finally:
        torch.nn.functional.scaled_dot_product_attention = sdpa
    del out
    return sum(t.numel() * t.element_size() for t in seen.values())


def count(net: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in net.parameters())


def spatial(data: dict[str, Any]) -> list[int]:
    """The training spatial size (patches when the config trains on patches)."""
    size = data.get("patch_size") or data["image_size"]
    return [int(s) for s in size] if isinstance(size, list) else [int(size)] * int(data["spatial_dims"])


def estimate(name: str) -> dict[str, Any]:
    """One config's figures."""
    config = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    task, data = config["model"]["init_args"], config["data"]
    model = task["model"]["init_args"]
    batch, size = int(data["batch_size"]), spatial(data)
    with torch.device("meta"):
        net = build(model["net"])
        critic = build(task["discriminator"]) if "discriminator" in task else None
    frozen = build(model["autoencoder"]) if "autoencoder" in model else None  # counted only; CPU (VQ needs values)
    row: dict[str, Any] = {"config": name, "batch": batch, "size": "x".join(map(str, size)), "params": count(net),
                           "frozen": count(frozen) if frozen is not None else 0,
                           "critic": count(critic) if critic is not None else 0}  # fmt: skip
    if frozen is not None:  # the net sees latents: KL/MAISI autoencoders halve per level after the first, VQ per level
        levels = len(model["autoencoder"]["init_args"]["channels"])
        factor = 2 ** (levels if "VQ" in model["autoencoder"]["class_path"] else levels - 1)
        size = [s // factor for s in size]
        row["input"] = f"latent {model['net']['init_args']['in_channels']}x" + "x".join(map(str, size))
    voxels = batch * torch.Size(size).numel()
    x_ch = int(model["net"]["init_args"].get("in_channels", 1))
    meta = {"device": "meta"}
    generators = 2 if "cyclegan" in name else 1
    if "latent_dim" in model["net"]["init_args"]:  # GAN generators draw from z
        inputs: tuple[Any, ...] = (torch.zeros(batch, model["net"]["init_args"]["latent_dim"], **meta),)
    elif "t" in net.forward.__code__.co_varnames[: net.forward.__code__.co_argcount]:
        inputs = (torch.zeros(batch, x_ch, *size, **meta), torch.zeros(batch, **meta))
    elif name.startswith("ae_"):
        inputs = (torch.zeros(batch, 1, *size, **meta),)
    else:
        inputs = (torch.zeros(batch, x_ch, *size, **meta),)
    row["act_fp32"] = generators * saved_bytes(net, *inputs)
    if critic is not None:
        in_ch = int(task["discriminator"]["init_args"].get("in_channels", 1))
        row["critic_act_fp32"] = 2 * generators * saved_bytes(critic, torch.zeros(batch, in_ch, *size, **meta))
    else:
        row["critic_act_fp32"] = 0
    row["voxels"] = voxels
    trained = generators * row["params"]
    row["states"] = 16 * trained + 4 * trained + 2 * row["frozen"] + 16 * generators * row["critic"]
    row["act_bf16"] = 0.5 * (row["act_fp32"] + row["critic_act_fp32"])
    row["total"] = row["states"] + row["act_bf16"]
    return row


def params_only(name: str) -> str:
    """Parameter counts of a config's trained net and critic, built on the CPU."""
    task = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())["model"]["init_args"]
    net = count(build(task["model"]["init_args"]["net"]))
    critic = count(build(task["discriminator"])) if "discriminator" in task else 0
    states = (20 * net + 16 * critic) / GIB
    return f"trained params {net / 1e6:.1f} M, critic {critic / 1e6:.1f} M, states {states:.2f} GiB"


def main() -> None:
    """Print the table (and write it with ``--out``)."""
    from cli_runs import print_report  # the benchmarks folder is the script's own (as the other benchmarks)
    from machine import describe

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    lines = [f"machine: {describe()} (meta device: nothing is allocated; all entries are estimates)",
             "| config | per-GPU batch x training size | trained params (M) | frozen (M) | critic (M) | states (GiB) "
             "| activations fp32 saved (GiB) | per input voxel (KiB) | estimate at bf16-mixed, 1 GPU or DDP (GiB) |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name in CONFIGS:
        try:
            r = estimate(name)
        except (NotImplementedError, RuntimeError) as error:  # the meta device cannot build or run it: count on CPU
            lines.append(f"| {name} | {params_only(name)}; activations not estimated (meta device: {error}) |")
            continue
        act = r["act_fp32"] + r["critic_act_fp32"]
        shape = f"{r['batch']} x {r['size']}" + (f" ({r['input']})" if "input" in r else "")
        lines.append(f"| {name} | {shape} | {r['params'] / 1e6:.1f} | {r['frozen'] / 1e6:.1f} | "
                     f"{r['critic'] / 1e6:.1f} | {r['states'] / GIB:.2f} | {act / GIB:.2f} | "
                     f"{act / r['voxels'] / 1024:.1f} | {r['total'] / GIB:.1f} |")  # fmt: skip
    print_report(lines, args.out)


if __name__ == "__main__":
    main()
