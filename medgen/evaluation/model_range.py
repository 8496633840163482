"""Paired comparison in the model's [-1, 1]: real images mapped as training maps targets, medgen outputs read back.

``medgen translate`` and ``medgen generate`` write MRI and X-ray samples in the model's [-1, 1] (per-image
percentile scaling cannot be inverted), CT samples in HU (the training window, inverted) and PNG samples as 8-bit
levels over [-1, 1]; the paired targets on disk hold raw intensities. A :class:`ModelRange` maps each real image
through its modality's training preset (:class:`~medgen.data.presets.ModalityIntensity`: MRI and X-ray: the
0.5/99.5 percentiles of each image to -1/1, clipped; CT: the HU window, clipped) and reads each generated image
back into [-1, 1], so that paired metrics compare like with like at data range 2. The percentiles are taken on
the target's own grid (training takes them after resampling to the training spacing: nearly the same values).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from monai.data import MetaTensor

from medgen.data.io import META_FORMAT
from medgen.data.presets import IntensityPreset, ModalityIntensity
from medgen.errors import InputError
from medgen.evaluation.sources import ImageItem

MODALITIES = ("ct", "mri", "xray")
#: ``normalize_real`` value that reads the modality from the generated set's ``manifest.jsonl``.
AUTO = "auto"
#: Stored generated values may exceed [-1, 1] by this much (float rounding) and still count as model units.
_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ModelRange:
    """How both sides of a pair are brought into the model's [-1, 1].

    Attributes:
        modality: ``ct``, ``mri`` or ``xray``: whose training preset maps the real images.
        preset: The preset's parameters (defaults, or a CT window).
    """

    modality: str
    preset: IntensityPreset

    def describe(self) -> str:
        """The mapping in words, for the report's protocol."""
        words = ModalityIntensity(self.modality, self.preset).describe(self.modality)
        return (f"real images: {words}; generated images read back into [-1, 1] as medgen writes them (PNG levels "
                "/127.5 - 1; CT in HU through the same window; MRI/X-ray as stored)")  # fmt: skip

    def real(self, img: MetaTensor) -> torch.Tensor:
        """A ``(C, *spatial)`` real image mapped to [-1, 1] as training maps targets; float32."""
        return _plain(ModalityIntensity(self.modality, self.preset)(img))

    def fake(self, img: MetaTensor, path: Path) -> torch.Tensor:
        """A ``(C, *spatial)`` generated image, as medgen stored it, back in the model's [-1, 1]; float32.

        Raises:
            InputError: Naming ``path``: an MRI/X-ray file whose values leave [-1, 1] (not a medgen output).
        """
        x = img.as_tensor().float()
        lo, hi = float(x.min()), float(x.max())
        if img.meta.get(META_FORMAT) == "png" and lo >= 0 and hi <= 255:
            return x / 127.5 - 1.0
        if lo >= -1 - _TOLERANCE and hi <= 1 + _TOLERANCE:
            return x.clamp(-1.0, 1.0)
        if self.modality == "ct":  # medgen writes CT in HU through the training window: map it back the same way
            return _plain(ModalityIntensity("ct", self.preset)(img))
        raise InputError(
            path,
            f"holds values {lo:.4g}..{hi:.4g}, outside the model's [-1, 1] in which medgen writes {self.modality} "
            "samples; the real-image normalisation is for medgen translate/generate outputs",
        )


def model_range(
    modality: str, window: tuple[float, float] | None, fake: list[ImageItem], field: str = "normalize_real"
) -> ModelRange:
    """The :class:`ModelRange` of ``modality`` (``auto``: the generated set's manifest's ``modality``).

    Args:
        modality: ``ct``, ``mri``, ``xray`` or ``auto``.
        window: CT only: the training window ``(low, high)`` in HU (None: the preset's ``full`` window).
        fake: The generated images (``auto`` reads ``manifest.jsonl`` beside the first).
        field: How errors name the option.

    Raises:
        InputError: Naming ``field``: an unknown modality, ``auto`` without a manifest modality; naming
            ``window``: a window given for MRI or X-ray (their mapping is per-image percentiles).
    """
    if modality == AUTO:
        modality = manifest_modality(fake, field)
    if modality not in MODALITIES:
        raise InputError(field, f"expected one of {', '.join((*MODALITIES, AUTO))}, got '{modality}'")
    if window is not None and modality != "ct":
        raise InputError(
            "window", f"the {modality} training preset scales percentiles of each image: a window applies to ct only"
        )
    return ModelRange(modality, IntensityPreset(ct_window=window) if window is not None else IntensityPreset())


def manifest_modality(fake: list[ImageItem], field: str = "normalize_real") -> str:
    """The ``modality`` recorded in the ``manifest.jsonl`` beside the first generated file.

    Raises:
        InputError: Naming ``field``: no manifest there, or no known modality in its first row.
    """
    path = fake[0].path.parent / "manifest.jsonl" if fake else None
    found = None
    if path is not None and path.is_file():
        first = next((line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()), "{}")
        try:
            found = json.loads(first).get("modality")
        except (json.JSONDecodeError, AttributeError):
            found = None
    if found not in MODALITIES:
        raise InputError(
            field, f"{AUTO} reads the modality from the generated set's manifest.jsonl, which records none; give "
            f"{', '.join(MODALITIES)}",
        )  # fmt: skip
    return str(found)


def _plain(x: torch.Tensor) -> torch.Tensor:
    return (x.as_tensor() if isinstance(x, MetaTensor) else x).float()
