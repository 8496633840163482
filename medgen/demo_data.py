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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medgen.data.io import atomic_write
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


#: Translation sets built from the two real T1 volumes (:func:`prepare_translation_data`): datalist file by kind.
TRANSLATION_SETS = {"mri-pairs": "pairs.csv", "mri-domains": "domains.csv"}
DEMO_KINDS = ("mri", "ct", "xray", *TRANSLATION_SETS)


def t2_like(t1: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """A T2-like contrast of a T1 volume: CSF bright, grey matter mid, white matter dark, background dark.

    The T1 is scaled to ``u`` in [0, 1] by its percentiles (as the data module normalises MRI), then mapped by
    ``f(u) = s(u; 0.06, 0.22) · (1 - 0.8 s(u; 0.3, 1.0))`` with ``s`` the smoothstep: background (``u`` ≈ 0) stays 0,
    CSF (``u`` ≈ 0.2-0.4) rises to ≈ 1 and brighter tissue falls to ≈ 0.2. ``f`` rises then falls, so no monotone
    (histogram) mapping of the T1 reproduces it.

    Args:
        t1: The T1 volume (any shape).
        percentiles: The percentiles that map to 0 and 1.

    Returns:
        ``f(u)`` in [0, 1], float32, the shape of ``t1``.
    """
    lo, hi = np.percentile(t1, percentiles)
    u = np.clip((t1.astype(np.float64) - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    return (_smoothstep(u, 0.06, 0.22) * (1.0 - 0.8 * _smoothstep(u, 0.3, 1.0))).astype(np.float32)


def _smoothstep(u: np.ndarray, a: float, b: float) -> np.ndarray:
    t = np.clip((u - a) / (b - a), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def bias_field(shape: tuple[int, ...], seed: int, strength: float = 0.15) -> np.ndarray:
    """A smooth multiplicative bias field (as MRI receive coils cause): ``exp`` of a random low-order polynomial.

    Args:
        shape: The volume's shape.
        seed: Seed of the polynomial's coefficients.
        strength: Largest absolute log-gain (the field lies in ``[exp(-strength), exp(strength)]``).

    Returns:
        ``(*shape)`` float32 gains around 1.
    """
    rng = np.random.default_rng(seed)
    axes = np.meshgrid(*[np.linspace(-1.0, 1.0, n) for n in shape], indexing="ij")
    terms = [*axes, *(a * b for i, a in enumerate(axes) for b in axes[i + 1 :]), *(a * a - 0.5 for a in axes)]
    log_gain = sum((float(c) * t for c, t in zip(rng.normal(size=len(terms)), terms, strict=True)), np.zeros(shape))
    log_gain = log_gain / max(float(np.abs(log_gain).max()), 1e-6) * strength
    return np.exp(log_gain).astype(np.float32)


def prepare_translation_data(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the image-to-image demo sets under ``out_dir`` (idempotent, seeded) and return that folder.

    From each real T1 volume (:func:`real_mri_volumes`: ``mni`` and ``anatomical``) a target of the same subject on
    the same grid is made: :func:`t2_like` contrast times a :func:`bias_field` (seed ``seed + i``), saved as float32
    NIfTI with the T1's header. Two datalists refer to the files:

    - ``pairs.csv`` (``demo:mri-pairs``): columns ``image`` (the T2-like target), ``source`` (the T1) and
      ``subject``, one row per subject: paired translation (pix2pix). With two subjects, ``data.val_fraction: 0.5``
      trains on one and validates on the other.
    - ``domains.csv`` (``demo:mri-domains``): columns ``image``, ``domain`` and ``subject``; domain ``a`` is the
      T1 of ``mni`` (the larger volume, 1 mm, whole head), domain ``b`` the T2-like target of ``anatomical``
      (2 mm brain): no anatomy appears in both domains, so the set is unpaired (CycleGAN). Whole volumes are listed
      (2D models slice them, 3D models patch them); with one subject per domain, keep ``data.val_fraction`` at 0
      (a subject split would hold a whole domain out) and judge a→b on ``anatomical``'s T1 against its target in
      ``pairs.csv``, which the model never saw as a pair.
    """
    import nibabel as nib

    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    pairs: list[tuple[str, ...]] = []
    names: list[str] = []
    for i, src in enumerate(real_mri_volumes()):
        name = "mni" if "nilearn" in str(src) else "anatomical"
        t1 = root / f"{name}_t1.nii.gz"
        target = root / f"{name}_t2like.nii.gz"
        if not t1.exists() or not target.exists():
            image: Any = nib.load(src)
            volume = np.asarray(image.dataobj, dtype=np.float32)
            _save_like(t1, volume, image)
            _save_like(target, t2_like(volume) * bias_field(volume.shape, seed + i) * 1000.0, image)
        pairs.append((target.name, t1.name, name))
        names.append(name)
    _write_csv(root / TRANSLATION_SETS["mri-pairs"], ("image", "source", "subject"), pairs)
    domains = [(f"{names[0]}_t1.nii.gz", "a", names[0]), (f"{names[1]}_t2like.nii.gz", "b", names[1])]
    _write_csv(root / TRANSLATION_SETS["mri-domains"], ("image", "domain", "subject"), domains)
    return root


def _save_like(path: Path, volume: np.ndarray, like: Any) -> None:
    """Save ``volume`` as float32 NIfTI with the affine and header of the nibabel image ``like`` (one grid)."""
    import nibabel as nib

    header = like.header.copy()
    header.set_data_dtype(np.float32)
    header.set_slope_inter(1.0, 0.0)
    atomic_write(path, lambda p: nib.save(nib.Nifti1Image(volume.astype(np.float32), like.affine, header), p))


def _write_csv(path: Path, header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    text = "\n".join(",".join(row) for row in [header, *rows]) + "\n"
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def cache_dir() -> Path:
    """The cache folder: ``$MEDGEN_CACHE``, else ``$XDG_CACHE_HOME/medgen``, else ``~/.cache/medgen``."""
    if os.environ.get("MEDGEN_CACHE"):
        return Path(os.environ["MEDGEN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "medgen"


def demo_folder(kind: str) -> Path:
    """Folder of one kind of demo data (``mri``, ``ct``, ``xray``), or datalist of a translation set, made on first use.

    ``data_dir: demo:mri`` in a config means this folder, so smoke configs run with no data at hand. It lives
    under :func:`cache_dir` ``/demo_data``. ``demo:mri-pairs`` and ``demo:mri-domains`` are the datalists of
    :func:`prepare_translation_data` (under ``demo_data/mri-translation``).
    """
    from medgen.errors import InputError

    if kind not in DEMO_KINDS:
        raise InputError(
            "data.data_dir",
            f"unknown demo data 'demo:{kind}'; expected one of {', '.join('demo:' + k for k in DEMO_KINDS)}",
        )
    root = cache_dir() / "demo_data"
    if kind in TRANSLATION_SETS:
        return prepare_translation_data(root / "mri-translation") / TRANSLATION_SETS[kind]
    return getattr(prepare_demo_data(root), kind)
