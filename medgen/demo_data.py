"""Embedded default data for ``medgen demo`` and the notebooks.

Real images that ship inside installed wheels (a T1 brain MRI from nibabel, the MNI152 T1 template
from nilearn, declared by medgen's ``demo`` extra, CT and MR DICOM slices from pydicom) plus seeded phantoms
for what no package ships (CT volumes, X-ray radiographs). Nothing is downloaded; a missing wheel is an error,
never a smaller data set.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medgen.data.phantoms import phantom_family, save_phantom_set, write_dicom_image


@dataclass
class DemoData:
    """Folders of the demo data, one per modality."""

    mri: Path
    ct: Path
    xray: Path
    sources: dict[str, str] = field(default_factory=dict)


def _package_file(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]).joinpath(*parts)
    return path if path.exists() else None


#: The shipped T1 volumes: (package, path inside it, the pip requirement that installs it).
_MRI_FILES = (
    ("nilearn", ("datasets", "data", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"), "nilearn>=0.10"),
    ("nibabel", ("tests", "data", "anatomical.nii"), "nibabel>=5.0"),
)


def real_mri_volumes() -> list[Path]:
    """T1 brain volumes shipped in installed wheels: nilearn's MNI152 template, then nibabel's ``anatomical.nii``.

    Raises:
        InputError: A wheel or its file is missing (naming the command that installs it: the ``demo`` extra).
    """
    from medgen.errors import InputError

    found = []
    for package, parts, requirement in _MRI_FILES:
        path = _package_file(package, *parts)
        if path is None:
            raise InputError(
                "demo data",
                f"{package}'s {parts[-1]} is not installed; install it with: {sys.executable} -m pip install "
                f"'{requirement}' (medgen's `demo` extra)",
            )
        found.append(path)
    return found


def prepare_demo_data(out_dir: str | Path, n_ct: int = 4, n_xray: int = 12, seed: int = 0) -> DemoData:
    """Write the demo data under ``out_dir`` (idempotent) and return its folders.

    Args:
        out_dir: Parent folder; ``mri/``, ``ct/`` and ``xray/`` are created inside it.
        n_ct: Number of CT phantom volumes (NIfTI with body/lung/bone masks).
        n_xray: Number of X-ray phantoms, written as CR DICOM (MONOCHROME1, no pixel spacing).
        seed: Seed of the phantoms.
    """
    root = Path(out_dir)
    data = DemoData(mri=root / "mri", ct=root / "ct", xray=root / "xray")
    data.mri.mkdir(parents=True, exist_ok=True)
    for src in real_mri_volumes():
        dst = data.mri / src.name
        if not dst.exists():
            shutil.copyfile(src, dst)
        data.sources[dst.name] = (
            f"real T1 MRI from the installed {src.parts[-4] if 'nilearn' in str(src) else 'nibabel'} wheel"
        )
    if not any(data.ct.glob("*.nii.gz")):
        save_phantom_set(data.ct, phantom_family("ct", n_ct, (96, 96, 48), seed=seed))
    data.sources["ct/*"] = "seeded CT phantoms in HU (no CT volume ships offline)"
    data.xray.mkdir(parents=True, exist_ok=True)
    for i, ph in enumerate(phantom_family("xray", n_xray, (128, 128), seed=seed)):
        path = data.xray / f"cr_{i:03d}.dcm"
        if not path.exists():
            inverted = ph.image.max() - ph.image  # stored MONOCHROME1: bone dark, as many CR systems do
            pixels = np.round(inverted / max(float(inverted.max()), 1e-6) * 4095).astype(np.uint16)
            write_dicom_image(path, pixels, modality="CR", spacing=None, photometric="MONOCHROME1")
    data.sources["xray/*"] = "X-ray phantoms projected from CT phantoms, CR DICOM, MONOCHROME1, no PixelSpacing"
    return data


DEMO_KINDS = ("mri", "ct", "xray")


def cache_dir() -> Path:
    """The cache folder: ``$MEDGEN_CACHE``, else ``$XDG_CACHE_HOME/medgen``, else ``~/.cache/medgen``."""
    if os.environ.get("MEDGEN_CACHE"):
        return Path(os.environ["MEDGEN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "medgen"


def demo_folder(kind: str) -> Path:
    """Folder of one kind of demo data (``mri``, ``ct``, ``xray``), prepared on first use.

    ``data_dir: demo:mri`` in a config means this folder, so smoke configs run with no data at hand. It lives
    under :func:`cache_dir` ``/demo_data``.
    """
    from medgen.errors import InputError

    if kind not in DEMO_KINDS:
        raise InputError(
            "data.data_dir",
            f"unknown demo data 'demo:{kind}'; expected one of {', '.join('demo:' + k for k in DEMO_KINDS)}",
        )
    root = cache_dir() / "demo_data"
    return getattr(prepare_demo_data(root), kind)
