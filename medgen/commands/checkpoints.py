"""``medgen checkpoints list | show NAME | verify PATH``: the registry of exported models."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``checkpoints`` sub-command."""
    p = sub.add_parser(
        "checkpoints",
        help="list, show or verify exported models (checkpoints/ and MEDGEN_CHECKPOINTS folders)",
        description=(
            "The registry is every exported model folder (medgen export) under the folders in MEDGEN_CHECKPOINTS "
            "(separated by ':', searched first), then the installed source tree's checkpoints/; the current "
            "directory is not searched. A registry name works wherever a checkpoint path does (generate, translate, "
            "fit --pretrained.init_from)."
        ),
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser(
        "list", help="a header, then one model per line: name, family, dims, modality, image size, size on disk, path"
    )
    show = actions.add_parser("show", help="print a model's card (JSON)")
    show.add_argument("name", metavar="NAME", help="registry name, exported folder or .ckpt")
    check = actions.add_parser("verify", help="verify config, weights and card against the card sha256 (exit 2 if not)")
    check.add_argument("path", metavar="PATH", help="exported folder, registry name or .ckpt")
    imp = actions.add_parser(
        "import",
        help="convert MAISI (NV-Generate-CT/MR) checkpoint files into an exported model folder",
        description="Read MAISI's diffusion UNet and autoencoder files (torch.load weights_only: no code runs) into "
        "the latent model of --config (architecture arguments, e.g. configs/maisi_ct_3d.yaml) and export it to --out "
        "(then: medgen generate --checkpoint OUT, medgen fit --pretrained.init_from OUT).",
    )
    imp.add_argument("source", choices=("maisi",), help="the checkpoint family")
    imp.add_argument("--config", required=True, help="medgen fit config naming MAISI's architecture")
    imp.add_argument("--unet", required=True, help='MAISI UNet file ({"unet_state_dict", "scale_factor", ...})')
    imp.add_argument("--autoencoder", required=True, help="MAISI autoencoder file (bare state dict or wrapped)")
    imp.add_argument("--out", required=True, help="exported folder to write")
    imp.add_argument("--name", default=None, help="model name in the card (default: the folder name)")
    imp.add_argument("--controlnet", default=None, help="MAISI ControlNet file, for a MaisiControlNet config")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors (default: off)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the action."""
    from medgen.store.registry import list_models, model_info, resolve, search_path, verify

    if args.action == "list":
        models = list_models()
        if models:
            _print_table([_row(source.name, model_info(source), source.path) for source in models])
        else:
            where = ", ".join(str(p) for p in search_path()) or "no registry folder exists"
            print(f"no exported models found ({where})", file=sys.stderr)
        return 0
    if args.action == "import":
        from medgen.interop.maisi import import_maisi

        out = import_maisi(args.config, args.unet, args.autoencoder, args.out, args.name, controlnet=args.controlnet)
        print(f"imported {args.source} into {out}")
        return 0
    if args.action == "show":
        source = resolve(args.name)
        print(json.dumps({"path": str(source.path), **model_info(source)}, indent=2))
        return 0
    source = resolve(args.path)
    digest = verify(source)
    print(f"ok {source.name}: sha256 {digest}")
    return 0


_HEADER = ("name", "family", "dims", "modality", "image_size", "disk", "path")


def _row(name: str, card: dict[str, Any], path: Path) -> tuple[str, ...]:
    """One model's columns: the image size from its card and the size of its folder on disk."""
    image_size = "x".join(str(s) for s in card.get("image_size") or []) or "?"
    disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    dims = f"{card.get('spatial_dims')}D"
    return (name, str(card.get("family")), dims, str(card.get("modality")), image_size, _human(disk), str(path))


def _human(n_bytes: int) -> str:
    """``n_bytes`` as ``12.3 MB`` (decimal units, as ``ls -h --si``)."""
    size = float(n_bytes)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _print_table(rows: list[tuple[str, ...]]) -> None:
    """The header and the rows, columns padded to their widest cell (the name first on every line)."""
    widths = [max(len(r[i]) for r in [_HEADER, *rows]) for i in range(len(_HEADER))]
    for r in [_HEADER, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
