"""The constructor is the config: objects record their init arguments so they can be rebuilt from a dict.

Checkpoints and exported models store ``{"class_path": ..., "init_args": ...}`` for the network and the
objective, so loading never needs the original YAML and never unpickles code.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any


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


def instantiate(config: dict[str, Any]) -> Any:
    """Build an object from :func:`class_config` output (only ``medgen.`` classes are allowed)."""
    path = str(config["class_path"])
    if not path.startswith("medgen."):
        raise ValueError(f"refusing to instantiate '{path}': only medgen classes can be rebuilt from a checkpoint")
    module_name, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), name)
    args = {
        k: instantiate(v) if isinstance(v, dict) and "class_path" in v else v
        for k, v in config.get("init_args", {}).items()
    }
    return cls(**args)
