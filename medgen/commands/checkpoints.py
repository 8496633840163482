"""``medgen checkpoints list | show NAME | verify PATH``: the registry of exported models."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``checkpoints`` sub-command."""
    p = sub.add_parser(
        "checkpoints",
        help="list, show or verify exported models (checkpoints/ and MEDGEN_CHECKPOINTS folders)",
        description=(
            "The registry is every exported model folder (medgen export) under the folders in MEDGEN_CHECKPOINTS "
            "(separated by ':', searched first), then the installed source tree's checkpoints/; the current "
            "directory is not searched. A registry name works wherever a checkpoint path does (generate, fit "
            "--model.init_from)."
        ),
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="one model per line: name, family, spatial dims, modality, image size, path")
    show = actions.add_parser("show", help="print a model's card (JSON)")
    show.add_argument("name", metavar="NAME", help="registry name, exported folder or .ckpt")
    check = actions.add_parser("verify", help="verify config, weights and card against the card sha256 (exit 2 if not)")
    check.add_argument("path", metavar="PATH", help="exported folder, registry name or .ckpt")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors (default: off)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the action."""
    from medgen.registry import list_models, model_info, resolve, search_path, verify

    if args.action == "list":
        models = list_models()
        for source in models:
            card = model_info(source)
            size = "x".join(str(s) for s in card.get("image_size") or []) or "?"
            print(f"{source.name}\t{card.get('family')}\t{card.get('spatial_dims')}D\t{card.get('modality')}\t"
                  f"{size}\t{source.path}")  # fmt: skip
        if not models:
            where = ", ".join(str(p) for p in search_path()) or "no registry folder exists"
            print(f"no exported models found ({where})", file=sys.stderr)
        return 0
    if args.action == "show":
        source = resolve(args.name)
        print(json.dumps({"path": str(source.path), **model_info(source)}, indent=2))
        return 0
    source = resolve(args.path)
    digest = verify(source)
    print(f"ok {source.name}: sha256 {digest}")
    return 0
