"""Shared fixtures. The whole suite runs with the network off: any non-loopback connection fails."""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")

# Under pytest-xdist (`make test` runs one worker per core) each worker, and every CLI subprocess it starts, uses
# one thread: the workers already fill the cores, and more threads per worker would oversubscribe them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_name] = "1"
    import torch

    torch.set_num_threads(1)

_LOOPBACK = ("127.", "::1", "localhost")
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


class NetworkBlockedError(RuntimeError):
    """Raised when code under test tries to reach the network."""


def _check(sock: socket.socket, address: object) -> None:
    if sock.family == getattr(socket, "AF_UNIX", None):
        return
    host = str(address[0] if isinstance(address, tuple) else address)
    if not host.startswith(_LOOPBACK):
        raise NetworkBlockedError(f"tests may not use the network (tried to connect to {address})")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check(self, address)
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


def package_dir(name: str) -> Path:
    """Installed package folder without importing it."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, f"{name} is not installed"
    return Path(spec.submodule_search_locations[0])


@pytest.fixture(scope="session")
def anatomical_nii() -> Path:
    """Real T1 MRI volume shipped with nibabel (33x41x25 @ 2 mm, int16, MIT)."""
    return package_dir("nibabel") / "tests" / "data" / "anatomical.nii"


@pytest.fixture(scope="session")
def mni_t1() -> Path:
    """MNI152 T1 template shipped with nilearn (197x233x189 @ 1 mm)."""
    if importlib.util.find_spec("nilearn") is None:
        pytest.skip("nilearn (test extra) is not installed")
    return package_dir("nilearn") / "datasets" / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


@pytest.fixture(scope="session")
def ct_small_dcm() -> Path:
    """Real CT slice shipped with pydicom (128x128, 0.66 mm)."""
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("CT_small.dcm"))


@pytest.fixture(scope="session")
def mr_small_dcm() -> Path:
    """Real MR slice shipped with pydicom (64x64, 0.3125 mm)."""
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("MR_small.dcm"))


@pytest.fixture(scope="session", autouse=True)
def medgen_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo data (``data_dir: demo:...``) is prepared once per test session in a temporary folder."""
    path = tmp_path_factory.mktemp("medgen_cache")
    os.environ["MEDGEN_CACHE"] = str(path)
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the longest tests first, then the other ``slow`` ones, then the rest (stable order otherwise).

    ``make test`` uses pytest-xdist's ``worksteal`` scheduling: each worker starts on its share of the list, and one
    that runs out takes half of another's queue, but a test that has started cannot be moved. Started first, the
    minutes-long tests of :data:`LONGEST` run while the other worker's short tests fill the time beside them,
    instead of one of them running alone at the end.
    """

    def rank(item: pytest.Item) -> tuple[int, bool]:
        longest = next((i for i, name in enumerate(LONGEST) if item.nodeid.startswith(name)), len(LONGEST))
        return longest, item.get_closest_marker("slow") is None

    items.sort(key=rank)


#: The longest tests (several minutes each on 2 cores), in the order they start.
LONGEST = (
    "tests/lit/test_quality.py::test_trained_model_beats_untrained_on_real_mri",
    "tests/test_readme_walk.py::test_readme_walk",
    "tests/lit/test_quality.py::test_autoencoder_beats_bilinear_at_equal_size_on_real_mri",
)
