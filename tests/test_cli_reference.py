"""docs/cli.md, the command-line reference, names every command and option the parsers have."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():  # scripts/ is not a package: load the generator by path
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _walk(name: str, parser: argparse.ArgumentParser, script) -> list[tuple[str, list[str]]]:
    found = [(name, [s for a in parser._actions for s in a.option_strings])]
    for child, sub in script._subparsers(parser).items():
        if sub.add_help:
            found += _walk(f"{name} {child}", sub, script)
    return found


def test_reference_names_every_command_and_option() -> None:
    """Formatting may differ between Python versions; the commands and option strings may not be missing."""
    from medgen.cli import build_parser

    script = _script()
    text = (ROOT / "docs" / "cli.md").read_text()
    sections = _walk("medgen", build_parser(), script)
    assert len(sections) > 10
    for name, options in sections:
        assert f"`{name}`" in text, f"docs/cli.md lacks {name}: run python scripts/cli_reference.py"
        block = text.split(f"`{name}`", 1)[1].split("\n#", 1)[0]  # up to the next heading
        for option in options:
            assert option in block, f"docs/cli.md lacks {name} {option}: run python scripts/cli_reference.py"
