"""Every notebook under notebooks/ executes top to bottom without error and shows at least one picture.

The kernels run with ``MEDGEN_NOTEBOOK_QUICK=1`` (the notebooks' small settings), each in its own ``tmp_path``
(xdist-safe). A notebook that loads shipped checkpoints names them in its metadata (``medgen.checkpoints``); it is
skipped, naming them, when the registry lacks one (tests/shipped check that the shipped ones exist).
"""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
#: Notebooks that take more than a few seconds of CPU (each ≈ 20-50 s on one thread): slow tests.
SLOW = {"02_3d_latent", "03_evaluate_and_memorization", "04_finetune_shipped_checkpoint", "05_augmentation_set"}


def _param(path: Path) -> object:
    marks = [pytest.mark.slow] if path.stem in SLOW else []
    return pytest.param(path, marks=marks, id=path.name)


@pytest.mark.parametrize("path", [_param(p) for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from medgen.store.registry import list_models

    nb = nbformat.read(path, as_version=4)
    needed = nb.metadata.get("medgen", {}).get("checkpoints", [])
    missing = sorted(set(needed) - {source.name for source in list_models()})
    if missing:
        pytest.skip(f"{path.name} needs the shipped checkpoints {missing}, which the registry lacks")
    monkeypatch.setenv("MEDGEN_NOTEBOOK_QUICK", "1")  # the kernel inherits the environment
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [f"{o.get('ename')}: {o.get('evalue')}" for o in outputs if o.output_type == "error"]
    assert not errors, errors
    assert any(o.output_type == "display_data" and "image/png" in o.get("data", {}) for o in outputs)
