"""The class allow-list: a file names only allow-listed classes; every class_path our configs use passes."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import yaml

from medgen.config import Allowed, resolve_class
from medgen.errors import InputError
from medgen.models import Autoencoder, DiffusionModel, FlowModel, LatentDiffusionModel, LatentFlowModel
from medgen.models.base import MODEL_CLASSES
from medgen.models.build import COMPONENT_CLASSES
from medgen.nets.unet import DiffusionUNet


def _model(config: Path) -> dict[str, Any] | None:
    model = (yaml.safe_load(config.read_text()) or {}).get("model")
    return model if isinstance(model, dict) and "class_path" in model else None


MODEL_CONFIGS = [c for c in sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml")) if _model(c)]


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("medgen.cli.main", MODEL_CLASSES),  # a function
        ("medgen.generation.manifest.rewrite", COMPONENT_CLASSES),  # a function that writes files
        ("medgen.nets.unet.DiffusionModelUNet", COMPONENT_CLASSES),  # a MONAI class imported into medgen.nets
        ("medgen.nets.unet.checkpoint", COMPONENT_CLASSES),  # torch's function imported into medgen.nets
        ("medgen.objectives.common.TrainingTarget", COMPONENT_CLASSES),  # a class, but no allowed base
        ("medgen.nets.unet.DiffusionUNet", MODEL_CLASSES),  # a net where a model is expected
        ("medgen.lit.GenerativeTask", MODEL_CLASSES),  # the Lightning task that trains a model is not one
        ("medgen.models.base.SamplingDefaults", MODEL_CLASSES),  # under medgen.models, but not a TrainableModel
        ("medgen.lit.DiffusionModule", MODEL_CLASSES),  # the module class of medgen before the models/tasks split
        ("medgen.errors.InputError", COMPONENT_CLASSES),  # outside the allowed packages
        ("torch.nn.Linear", COMPONENT_CLASSES),
        ("medgen.nets.no_such_module.Net", COMPONENT_CLASSES),
    ],
)
def test_refused_paths_name_the_file(path: str, allowed: Any) -> None:
    with pytest.raises(InputError, match=f"^model.yaml: refusing class_path '{path}'"):
        resolve_class(path, allowed, "model.yaml")


def test_allowed_classes_resolve_by_definition_or_package_alias() -> None:
    assert resolve_class("medgen.models.DiffusionModel", MODEL_CLASSES, "x") is DiffusionModel
    assert resolve_class("medgen.models.diffusion.DiffusionModel", MODEL_CLASSES, "x") is DiffusionModel
    assert resolve_class("medgen.nets.unet.DiffusionUNet", COMPONENT_CLASSES, "x") is DiffusionUNet


def _class_paths(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [str(node["class_path"])] if "class_path" in node else []
        return own + [p for v in node.values() for p in _class_paths(v)]
    if isinstance(node, list):
        return [p for v in node for p in _class_paths(v)]
    return []


def test_every_model_class_path_in_configs_is_allowed() -> None:
    """Every config trains its model with a medgen task; the model's classes (what checkpoints and exports record)
    and any other part of the task (a discriminator) pass the allow-lists."""
    assert len(MODEL_CLASSES) == 1 and len(MODEL_CONFIGS) >= 20  # every family, full-size, smoke and quality
    families = set()
    for config in MODEL_CONFIGS:
        task = _model(config) or {}
        task_class = resolve_class(task["class_path"], [Allowed("medgen.lit.", L.LightningModule)], config)
        assert "model" in inspect.signature(task_class).parameters, config
        task_args = task.get("init_args") or {}
        model = task_args["model"]
        families.add(resolve_class(model["class_path"], MODEL_CLASSES, config))
        assert _class_paths(model.get("init_args") or {}), config  # at least the net
        for path in _class_paths(task_args):
            if path != model["class_path"]:
                resolve_class(path, COMPONENT_CLASSES, config)
    assert {DiffusionModel, FlowModel, LatentDiffusionModel, LatentFlowModel, Autoencoder} <= families, families
    assert any(_model(c)["class_path"] == "medgen.lit.GenerativeTask" for c in MODEL_CONFIGS)  # type: ignore[index]
