"""The ``medgen`` command line.

``medgen inspect`` and ``medgen demo`` are medgen's own commands (argparse); the training commands
``fit``/``validate``/``test``/``predict`` are LightningCLI. Every command reports bad input as one line
on stderr naming the file or option, exits 2 for bad input and 1 for other failures, and shows a
traceback only with ``--debug``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from medgen import __version__
from medgen.errors import MedgenError

Command = Callable[[argparse.Namespace], int]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _run_dataset(argv: Sequence[str]) -> int:
    from medgen.commands import dataset

    return dataset.run(argv)


def _run_encode(argv: Sequence[str]) -> int:
    from medgen.commands import encode

    return encode.run(argv)


def _lightning(subcommand: str) -> Callable[[Sequence[str]], int]:
    def run(argv: Sequence[str]) -> int:
        from medgen.commands import train

        return train.run(subcommand, argv)

    return run


#: Commands whose options come from class signatures (jsonargparse / LightningCLI).
JSONARGPARSE_COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "dataset": _run_dataset,
    "encode": _run_encode,
    **{name: _lightning(name) for name in ("fit", "validate", "test", "predict")},
}


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line and exit code 2 (argparse's own code as well)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print ``medgen <cmd>: error: …`` and exit 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per medgen command."""
    from medgen.commands import checkpoints, demo, evaluate, export, generate, inspect, memorization, translate

    parser = _Parser(
        prog="medgen",
        description="Generative models of medical images (CT, MRI, X-ray; 2D and 3D).",
        epilog="Training commands (fit, validate, test, predict) take LightningCLI options: medgen fit --help.",
    )
    parser.add_argument("--version", action="version", version=f"medgen {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors (default: off)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    inspect.add_parser(sub)
    sub.add_parser(
        "dataset",
        help="build the training data as `fit` would: summary, skipped files, preview grid",
        add_help=False,
    )
    sub.add_parser(
        "encode", help="encode every training image once with an autoencoder (cached latents)", add_help=False
    )
    generate.add_parser(sub)
    translate.add_parser(sub)
    evaluate.add_parser(sub)
    memorization.add_parser(sub)
    export.add_parser(sub)
    checkpoints.add_parser(sub)
    demo.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``medgen`` command line; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list or os.environ.get("MEDGEN_DEBUG") == "1"
    if debug:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args_list = [a for a in args_list if a != "--debug"]
    if args_list and args_list[0] in JSONARGPARSE_COMMANDS:
        name, rest = args_list[0], args_list[1:]
        command = JSONARGPARSE_COMMANDS[name]
        return run_guarded(lambda _: command(rest), argparse.Namespace(), debug, f"medgen {name}")
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    return run_guarded(args.func, args, debug, f"medgen {args.command}")


def run_guarded(func: Command, args: argparse.Namespace, debug: bool, prog: str) -> int:
    """Call ``func(args)``, turning exceptions into one-line errors and exit codes."""
    try:
        return func(args)
    except MedgenError as exc:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except SystemExit as exc:  # argparse/jsonargparse usage errors and --help
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an environment problem: short message unless --debug
        if debug:
            traceback.print_exc()
        print(
            f"{prog}: error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
