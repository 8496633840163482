"""The class allow-list: a file names only allow-listed classes; every class_path our configs use passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from medgen.checkpoints import COMPONENT_CLASSES, MODULE_CLASSES
from medgen.config import resolve_class
from medgen.errors import InputError
from medgen.lit import DiffusionModule
from medgen.nets.unet import DiffusionUNet


def _model(config: Path) -> dict[str, Any] | None:
    model = (yaml.safe_load(config.read_text()) or {}).get("model")
    return model if isinstance(model, dict) and "class_path" in model else None


MODEL_CONFIGS = [c for c in sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml")) if _model(c)]


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("medgen.cli.main", MODULE_CLASSES),  # a function
        ("medgen.generation.manifest.rewrite", COMPONENT_CLASSES),  # a function that writes files
        ("medgen.nets.unet.DiffusionModelUNet", COMPONENT_CLASSES),  # a MONAI class imported into medgen.nets
        ("medgen.nets.unet.checkpoint", COMPONENT_CLASSES),  # torch's function imported into medgen.nets
        ("medgen.objectives.common.TrainingTarget", COMPONENT_CLASSES),  # a class, but no allowed base
        ("medgen.nets.unet.DiffusionUNet", MODULE_CLASSES),  # a net where a module is expected
        ("medgen.errors.InputError", COMPONENT_CLASSES),  # outside the allowed packages
        ("torch.nn.Linear", COMPONENT_CLASSES),
        ("medgen.nets.no_such_module.Net", COMPONENT_CLASSES),
    ],
)
def test_refused_paths_name_the_file(path: str, allowed: Any) -> None:
    with pytest.raises(InputError, match=f"^model.yaml: refusing class_path '{path}'"):
        resolve_class(path, allowed, "model.yaml")


def test_allowed_classes_resolve_by_definition_or_package_alias() -> None:
    assert resolve_class("medgen.lit.DiffusionModule", MODULE_CLASSES, "x") is DiffusionModule
    assert resolve_class("medgen.lit.diffusion.DiffusionModule", MODULE_CLASSES, "x") is DiffusionModule
    assert resolve_class("medgen.nets.unet.DiffusionUNet", COMPONENT_CLASSES, "x") is DiffusionUNet


def _class_paths(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [str(node["class_path"])] if "class_path" in node else []
        return own + [p for k, v in node.items() if k != "optimizer" for p in _class_paths(v)]
    if isinstance(node, list):
        return [p for v in node for p in _class_paths(v)]
    return []


def test_every_model_class_path_in_configs_is_allowed() -> None:
    """The model sections' classes (what checkpoints and exports record) pass; ``optimizer`` is LightningCLI's."""
    assert len(MODEL_CONFIGS) >= 20  # every family, full-size, smoke and quality
    for config in MODEL_CONFIGS:
        model = _model(config) or {}
        resolve_class(model["class_path"], MODULE_CLASSES, config)
        for path in _class_paths(model.get("init_args") or {}):
            resolve_class(path, COMPONENT_CLASSES, config)
