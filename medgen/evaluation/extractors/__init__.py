"""Feature extractors for the distribution metrics (FID, KID, PRDC) and :func:`get_extractor`, which builds them.

Modules (imports run one way: ``base`` ← ``inception``, ``medical`` ← this package):

- :mod:`~medgen.evaluation.extractors.base`: the contract (:class:`ExtractorSpec`, :class:`FrozenExtractor`,
  :func:`check_images`) and local weights look-up/verification (:class:`WeightsFile`, :func:`locate_weights`,
  :func:`verify_weights`); it knows no network;
- :mod:`~medgen.evaluation.extractors.inception`: the offline FID Inception-v3 (2D, 2048-d);
- :mod:`~medgen.evaluation.extractors.medical`: RadImageNet ResNet-50 (2D) and MedicalNet ResNet-10/50 (3D).

Every extractor maps ``(N, C, *spatial)`` images in [-1, 1] to ``(N, d)`` float64 features. Weights are local files
only: nothing is downloaded. The extractor classes and their weights records are importable from this package, but
``inception`` and ``medical`` are imported on first use (PEP 562), so that importing the package (or ``base``) pulls
neither the TorchScript net nor MONAI's ResNets.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from medgen.errors import InputError
from medgen.evaluation.extractors.base import (
    WEIGHTS_ENV,
    Extractor,
    ExtractorSpec,
    FrozenExtractor,
    WeightsFile,
    check_images,
    locate_weights,
    verify_weights,
)

if TYPE_CHECKING:  # for type checkers; at run time these names come from __getattr__ below
    from medgen.evaluation.extractors.inception import (
        INCEPTION_WEIGHTS,
        InceptionExtractor,
        tf1_bilinear_resize,
        to_uint8_levels,
    )
    from medgen.evaluation.extractors.medical import (
        MEDICALNET_WEIGHTS,
        RADIMAGENET_WEIGHTS,
        MedicalNetExtractor,
        RadImageNetExtractor,
        RadImageNetResNet50,
    )

__all__ = [
    "EXTRACTOR_NAMES",
    "INCEPTION_WEIGHTS",
    "MEDICALNET_WEIGHTS",
    "RADIMAGENET_WEIGHTS",
    "WEIGHTS_ENV",
    "Extractor",
    "ExtractorSpec",
    "FrozenExtractor",
    "InceptionExtractor",
    "MedicalNetExtractor",
    "RadImageNetExtractor",
    "RadImageNetResNet50",
    "WeightsFile",
    "check_images",
    "get_extractor",
    "locate_weights",
    "tf1_bilinear_resize",
    "to_uint8_levels",
    "verify_weights",
]

_INCEPTION_NAMES = ("INCEPTION_WEIGHTS", "InceptionExtractor", "tf1_bilinear_resize", "to_uint8_levels")
_MEDICAL_NAMES = ("MEDICALNET_WEIGHTS", "RADIMAGENET_WEIGHTS", "MedicalNetExtractor", "RadImageNetExtractor")
_LAZY = {
    **dict.fromkeys(_INCEPTION_NAMES, "inception"),
    **dict.fromkeys((*_MEDICAL_NAMES, "RadImageNetResNet50"), "medical"),
}


def __getattr__(name: str) -> object:
    """The extractor classes and weights records of ``inception`` / ``medical``, importing the submodule on use."""
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


EXTRACTOR_NAMES = ("inception", "radimagenet_resnet50", "medicalnet_resnet10", "medicalnet_resnet50")


def _user_spec(module: nn.Module) -> ExtractorSpec:
    spec = getattr(module, "spec", None)
    if isinstance(spec, ExtractorSpec):
        return spec
    dim = getattr(module, "num_features", None)
    io = "user-defined: (N, C, *spatial) in [-1, 1] -> (N, d)"
    return ExtractorSpec(type(module).__name__, dim, "user-defined", io, None, "user-supplied", "user-supplied module")


def get_extractor(name_or_module: str | nn.Module, weights: str | Path | None = None) -> Extractor:
    """Build a named extractor from local weights, or wrap a user ``nn.Module``.

    Names: ``"inception"``, ``"radimagenet_resnet50"``, ``"medicalnet_resnet10"``, ``"medicalnet_resnet50"``.

    User-module recipe: subclass ``nn.Module`` whose ``forward`` takes ``(N, C, *spatial)`` images in [-1, 1] and
    returns ``(N, d)`` features, doing its own preprocessing (resize, intensity mapping, channel handling)
    inside; load its weights from a local file in ``__init__`` (never download); set ``num_features = d``
    (used by the metrics and by torchmetrics' ``feature=``); optionally set ``spec`` to an
    :class:`ExtractorSpec` with the file's sha256 for the report. Without ``spec`` the name is the class name
    and sha256 is None. Example: ``get_extractor(MyRadDino("rad_dino.safetensors"))``.

    Args:
        name_or_module: A name above or an ``nn.Module``.
        weights: Weights file or folder for a named extractor (ignored for a module).

    Returns:
        ``Extractor(module, spec)``; the module is in eval mode.

    Raises:
        InputError: Unknown name, or the weights file is missing / fails its sha256 check.
    """
    if isinstance(name_or_module, nn.Module):
        return Extractor(name_or_module.eval(), _user_spec(name_or_module))
    if name_or_module not in EXTRACTOR_NAMES:
        raise InputError("extractor", f"unknown extractor {name_or_module!r}; expected one of {EXTRACTOR_NAMES}")
    module: FrozenExtractor
    if name_or_module == "inception":
        from medgen.evaluation.extractors.inception import InceptionExtractor

        module = InceptionExtractor(weights)
    elif name_or_module == "radimagenet_resnet50":  # medical: imported here, MONAI's ResNets are only needed now
        from medgen.evaluation.extractors.medical import RadImageNetExtractor

        module = RadImageNetExtractor(weights)
    else:
        from medgen.evaluation.extractors.medical import MedicalNetExtractor

        module = MedicalNetExtractor(10 if name_or_module.endswith("10") else 50, weights)
    return Extractor(module, module.spec)
