"""The constructor is the config: objects record their init arguments so they can be rebuilt from a dict.

Checkpoints and exported models store ``{"class_path": ..., "init_args": ...}`` for the network and the
objective, so loading never needs the original YAML and never unpickles code. A file chooses code only through
an allow-list: :func:`resolve_class` returns classes (never functions) that derive from an allowed base and are
defined in the allowed package; anything else is an :class:`~medgen.errors.InputError` naming the file.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medgen.errors import InputError


def to_plain(value: Any) -> Any:
    """Tuples, dataclasses and nested containers → JSON/YAML-friendly lists and dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def class_config(obj: Any, init_args: dict[str, Any]) -> dict[str, Any]:
    """``{"class_path": "module.Class", "init_args": {...}}`` for ``obj`` built with ``init_args``."""
    cls = type(obj)
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": to_plain(init_args)}


@dataclasses.dataclass(frozen=True)
class Allowed:
    """One entry of an allow-list: subclasses of ``base`` defined in the package ``package``.

    Attributes:
        package: Dotted package prefix the class must be defined in, ending with a dot (``medgen.nets.``).
        base: The class it must derive from.
    """

    package: str
    base: type


def is_class_config(value: Any) -> bool:
    """True for a ``{"class_path": ..., "init_args": ...}`` dict."""
    return isinstance(value, dict) and "class_path" in value


def resolve_class(path: str, allowed: Sequence[Allowed], source: str | Path) -> type:
    """The class named by ``path``, if the allow-list admits it.

    The package prefix is checked before anything is imported; the resolved object must be a class, defined
    in that package (an imported name such as ``medgen.nets.unet.DiffusionModelUNet`` does not count), and a
    subclass of the entry's base.

    Raises:
        InputError: ``path`` names a function, a class outside the allow-list, or nothing (names ``source``).
    """
    path = str(path)
    rules = [a for a in allowed if path.startswith(a.package)]
    module_name, _, name = path.rpartition(".")
    found: Any = None
    if rules:
        try:
            found = getattr(importlib.import_module(module_name), name, None)
        except (ImportError, ValueError):
            found = None
    if isinstance(found, type) and any(
        found.__module__.startswith(a.package) and issubclass(found, a.base) for a in rules
    ):
        return found
    expected = ", ".join(f"a {a.base.__name__} under {a.package}" for a in allowed) or "nothing"
    raise InputError(source, f"refusing class_path '{path}': only classes are loaded, and only {expected}")


def instantiate(config: dict[str, Any], allowed: Sequence[Allowed], source: str | Path = "config") -> Any:
    """Build an object from :func:`class_config` output; nested class configs are built the same way.

    Args:
        config: ``{"class_path": ..., "init_args": {...}}``.
        allowed: The classes it (and every nested class config) may name.
        source: The file or field the config came from, named in errors.

    Raises:
        InputError: A class outside ``allowed``, or init arguments the class does not take.
    """
    cls = resolve_class(str(config["class_path"]), allowed, source)
    init_args = config.get("init_args") or {}
    if not isinstance(init_args, dict):
        raise InputError(source, f"init_args of '{config['class_path']}' must be a mapping")
    args = {k: instantiate(v, allowed, source) if is_class_config(v) else v for k, v in init_args.items()}
    return construct(cls, args, source)


def construct(cls: type, args: dict[str, Any], source: str | Path) -> Any:
    """``cls(**args)``; arguments the constructor does not take are an :class:`InputError` naming ``source``."""
    try:
        inspect.signature(cls).bind(**args)
    except TypeError as exc:
        raise InputError(source, f"cannot build {cls.__qualname__} ({exc})") from None
    return cls(**args)
