"""Training data of the shipped ``ct-2d`` and ``xray-2d`` checkpoints: seeded phantoms plus the real images that exist.

No CT volume and no human diagnostic radiograph ships in any installed wheel (``../shared/docs/DATA.md`` §2), so
the sets are mostly phantoms (``medgen.data.phantoms``, DATA.md §5), each subject an independent seed:

- ``ct``: 2D axial chest-CT phantom slices in HU (body, fat, soft tissue, lungs, spine, ribs; 64 x 64 pixels of
  5.5 mm) and the one real CT slice that ships, pydicom's ``CT_small.dcm`` (NEMA CT1, downsized, MIT).
- ``xray``: AP chest radiograph phantoms (``-log(I/I0)`` of a CT phantom with Poisson noise, bone bright; 64 x 64
  pixels of 5.5 mm). No real radiograph is used: pydicom/pynetdicom ship none of a patient (the RT portal image
  is a treatment-beam image, for I/O tests only).

Each set is a folder of NIfTI/DICOM files and a ``datalist.csv`` (``image``, ``subject``), written once (idempotent).

    python scripts/shipped/phantom_data.py ct|xray OUT_DIR [--n N]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

#: Phantom subjects per set (independent seeds) and the pixel spacing of the phantoms (mm).
N_PHANTOMS = {"ct": 256, "xray": 160}
SPACING = 5.5
SEED = {"ct": 17, "xray": 18}


def real_ct_slices() -> list[Path]:
    """The real CT slices used: pydicom's ``CT_small.dcm`` (128 x 128, MIT; NEMA CT1 downsized)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    if path is None:
        raise FileNotFoundError("pydicom's CT_small.dcm is not installed")
    return [Path(str(path))]


def write_set(kind: str, out: Path, n: int | None = None) -> Path:
    """Write the ``kind`` (``ct`` or ``xray``) set under ``out`` and return its ``datalist.csv``."""
    from medgen.data.io import write_image
    from medgen.data.phantoms import ct_phantom, xray_phantom

    n = N_PHANTOMS[kind] if n is None else n
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    datalist = out / "datalist.csv"
    if datalist.exists():
        return datalist
    import numpy as np

    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(SEED[kind]).spawn(n)]
    rows: list[tuple[str, str]] = []
    affine = np.diag([-SPACING, -SPACING, 1.0, 1.0])
    for i, seed in enumerate(seeds):
        path = out / f"{kind}_phantom_{i:03d}.nii.gz"
        rows.append((str(path), f"phantom_{i:03d}"))
        if path.exists():
            continue
        if kind == "ct":
            image = ct_phantom((64, 64), (SPACING, SPACING), seed=seed).image.astype(np.float32)
        else:
            image = xray_phantom((64, 64), seed=seed, spacing=(SPACING, SPACING)).image
        write_image(image, path, affine=affine)
    if kind == "ct":
        rows += [(str(p), f"real_{p.stem}") for p in real_ct_slices()]
    with datalist.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "subject"])
        writer.writerows(rows)
    return datalist


def main() -> None:
    """Write one set from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("ct", "xray"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=None, help="phantom subjects (default: 256 CT, 160 X-ray)")
    args = parser.parse_args()
    print(write_set(args.kind, args.out, args.n))


if __name__ == "__main__":
    main()
