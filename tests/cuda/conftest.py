"""Fixtures for the CUDA kernel tests, which run under the simulator or on a real GPU.

The simulator must be switched on before numba is first imported, so these tests run in their
own pytest process (the root conftest does not collect this folder)::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/cuda

Without the simulator or a GPU every test here skips. Every test runs with tiny blocks and tiles
(:data:`TINY`), so that inputs of a few pixels span several blocks and cut tiles at every edge;
the memoised kernels are keyed on these values, so they never leak into other tests.
"""

import os
import sys

import pytest

from fastconv import config

#: Launch shapes for the tests: 6 threads per conv block (3 pixel threads x 2 channel threads)
#: computing 2x3 pixels x 4 channels, 2 input channels per shared-memory stage.
TINY = {
    "CUDA_THREADS_PER_BLOCK": 4,
    "CUDA_CONV_TILE_H": 2,
    "CUDA_CONV_TILE_W": 3,
    "CUDA_CONV_TILE_K": 4,
    "CUDA_CONV_TILE_C": 2,
    "CUDA_CONV_THREAD_PIXELS": 2,
    "CUDA_CONV_THREAD_K": 2,
}


def _cuda_ready():
    import fastconv.cuda

    return fastconv.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/cuda/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.cuda)


@pytest.fixture(scope="session", autouse=True)
def _fast_simulator_handoffs():
    """Hand the GIL over every 0.2 ms instead of 5 ms while simulating.

    The simulator's block manager busy-polls its GPU threads, so each hand-over between it and
    a simulated thread waited for the whole switch interval: this makes the tests ~5x faster.
    """
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        yield
        return
    previous = sys.getswitchinterval()
    sys.setswitchinterval(2e-4)
    yield
    sys.setswitchinterval(previous)


@pytest.fixture(scope="session", autouse=True)
def _kernel_inventory(request):
    """With ``FASTCONV_CUDA_INVENTORY=folder``, record every kernel these tests launch into
    ``folder/<worker>.pickle``: ``make test`` then compiles each of them with NVVM and ptxas
    (tests/test_cuda_toolchain.py), which the simulator never does."""
    folder = os.environ.get("FASTCONV_CUDA_INVENTORY")
    if not folder or not _cuda_ready():
        yield
        return
    from fastconv.cuda import kernels, resources

    worker = getattr(request.config, "workerinput", {}).get("workerid", "main")  # xdist

    with kernels.recording() as specs:
        yield
    os.makedirs(folder, exist_ok=True)
    resources.save_specs(os.path.join(folder, f"{worker}.pickle"), specs)


@pytest.fixture(autouse=True)
def _require_cuda():
    if not _cuda_ready():
        pytest.skip("needs a CUDA GPU or NUMBA_ENABLE_CUDASIM=1 (set before numba is imported)")


@pytest.fixture(autouse=True)
def tiny_launch(monkeypatch):
    """Shrink CUDA blocks and tiles for the duration of a test."""
    for name, value in TINY.items():
        monkeypatch.setattr(config, name, value)
    return TINY
