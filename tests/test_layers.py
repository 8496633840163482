"""The package's layers, enforced: no import circles between medgen modules, and no lower layer importing up.

Every module under ``medgen/`` is read with :mod:`ast` (nothing is imported); all its imports count, also
those inside functions, except those under ``if TYPE_CHECKING:``. An import names the most specific medgen
module it reaches: ``from medgen.a import b`` is an import of ``medgen.a.b`` when that is a module, else of
``medgen.a``; a package's ``__init__`` is the module ``medgen.a`` itself.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import deque
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "medgen"

#: Rank of each layer: a module may import modules of its own rank or lower. The longest matching prefix
#: (whole dotted components) wins; ``medgen`` itself matches only the package's ``__init__``.
RANKS: dict[str, int] = {
    "medgen": 0,
    "medgen.errors": 0,
    "medgen.config": 0,
    "medgen.weights": 0,
    "medgen.hashing": 0,
    "medgen.progress": 0,
    "medgen.store.registry": 0,
    "medgen.store.card": 0,
    "medgen.store.ckpt": 0,
    "medgen.data": 1,
    "medgen.nets": 1,
    "medgen.visualize": 1,
    "medgen.demo_data": 1,
    "medgen.objectives": 2,
    "medgen.sampling": 3,
    "medgen.models": 4,
    "medgen.evaluation.extractors": 4,
    "medgen.evaluation.distribution": 4,
    "medgen.evaluation.kid": 4,
    "medgen.evaluation.slicing": 4,
    "medgen.evaluation.statistics": 4,
    "medgen.lit": 5,
    "medgen.store": 5,
    "medgen.generation": 6,
    "medgen.evaluation": 6,
    "medgen.memorization": 6,
    "medgen.finetune": 6,
    "medgen.interop": 6,
    "medgen.commands": 7,
    "medgen.demo": 7,
    "medgen.cli": 8,
    "medgen.__main__": 8,
}

#: Imports forbidden whatever the ranks say: (importer prefix, imported prefix).
FORBIDDEN: list[tuple[str, str]] = [
    ("medgen.lit", "medgen.store"),
    ("medgen.lit", "medgen.finetune"),
    ("medgen.store", "medgen.lit"),
]


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def rank(module: str) -> int | None:
    """The module's rank (longest matching prefix of :data:`RANKS`), or None when no entry covers it."""
    matches = [p for p in RANKS if (p == module if p == "medgen" else _within(module, p))]
    return RANKS[max(matches, key=len)] if matches else None


@cache
def modules() -> dict[str, Path]:
    """Every medgen module by dotted name (a package by its ``__init__``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in ``node``, at any depth, except in the body of ``if TYPE_CHECKING:``."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        return [node]
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        children: list[ast.AST] = list(node.orelse)
    else:
        children = list(ast.iter_child_nodes(node))
    return [found for child in children for found in _import_nodes(child)]


def _resolve(name: str) -> str | None:
    """The most specific existing medgen module that ``name`` reaches (None outside medgen)."""
    if not _within(name, "medgen"):
        return None
    known = modules()
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


@cache
def imports(module: str) -> frozenset[str]:
    """The medgen modules that ``module`` imports (itself excluded)."""
    path = modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [_resolve(alias.name) for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [_resolve(base if alias.name == "*" else f"{base}.{alias.name}") for alias in node.names]
        out.update(t for t in targets if t is not None and t != module)
    return frozenset(out)


def graph() -> dict[str, frozenset[str]]:
    return {m: imports(m) for m in modules()}


def _circles(edges: dict[str, frozenset[str]]) -> list[list[str]]:
    """One shortest circle through each module that lies on one, each circle listed once."""
    seen: set[tuple[str, ...]] = set()
    circles = []
    for start in sorted(edges):
        parent: dict[str, str] = {}
        queue = deque([start])
        found = None
        while queue and found is None:
            node = queue.popleft()
            for nxt in sorted(edges.get(node, ())):
                if nxt == start:
                    found = node
                    break
                if nxt not in parent and nxt in edges:
                    parent[nxt] = node
                    queue.append(nxt)
        if found is None:
            continue
        path = [found]
        while path[-1] != start:
            path.append(parent[path[-1]])
        cycle = path[::-1]  # start ... found, and found imports start
        turn = cycle.index(min(cycle))
        key = tuple(cycle[turn:] + cycle[:turn])
        if key not in seen:
            seen.add(key)
            circles.append(list(key))
    return circles


def test_module_names_are_read() -> None:
    """Sanity: the walk finds the package, its layers and their imports."""
    found = modules()
    assert {"medgen", "medgen.errors", "medgen.sampling", "medgen.objectives", "medgen.cli"} <= set(found)
    assert "medgen.errors" in imports("medgen.sampling.common")
    assert rank("medgen.evaluation.extractors.inception") == 4 and rank("medgen.evaluation.report") == 6
    assert rank("medgen.store.card") == 0 and rank("medgen.store.other") == 5 and rank("medgen.storex") is None


def test_type_checking_imports_and_function_imports() -> None:
    """Imports in functions count; imports in ``if TYPE_CHECKING:`` (but not its ``else``) do not."""
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import medgen.lit\nelse:\n    import medgen.cli\n"
        "def f():\n    from medgen.store import card\n"
    )
    names = sorted(
        (n.module or "") if isinstance(n, ast.ImportFrom) else a.name for n in _import_nodes(tree) for a in n.names
    )
    assert names == ["medgen.cli", "medgen.store", "typing"]


def test_no_import_circles() -> None:
    circles = _circles(graph())
    assert not circles, f"{len(circles)} import circle(s):\n" + "\n".join(" -> ".join([*c, c[0]]) for c in circles)


def test_every_module_has_a_rank() -> None:
    unranked = sorted(m for m in modules() if rank(m) is None)
    assert not unranked, "modules outside the layer table:\n" + "\n".join(unranked)


def test_layers() -> None:
    violations = []
    for importer, targets in sorted(graph().items()):
        a = rank(importer)
        for imported in sorted(targets):
            b = rank(imported)
            if a is not None and b is not None and b > a:
                violations.append(f"{importer} -> {imported} (rank {a} -> rank {b})")
            for low, high in FORBIDDEN:
                if _within(importer, low) and _within(imported, high):
                    violations.append(f"{importer} -> {imported} (forbidden: {low} must not import {high})")
    assert not violations, f"{len(violations)} layering violation(s):\n" + "\n".join(violations)


def test_models_import_without_lightning() -> None:
    code = (
        "import sys, medgen.models\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('lightning'))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
