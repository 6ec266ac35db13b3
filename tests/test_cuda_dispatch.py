"""The CUDA backend seen from a machine without a GPU (no simulator): CUDA stays out of the way.

* ``import fastconv`` and CPU ops never import numba.cuda (checked in a fresh interpreter);
* ``fastconv.cuda`` imports and answers :func:`fastconv.cuda.is_available` without raising;
* asking for ``device="cuda"`` raises a RuntimeError saying why and what to do instead, for
  every op, after the arguments were checked, and the CPU keeps working afterwards.

The kernels themselves are tested under the simulator in ``tests/cuda`` (own pytest process).
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastconv


def _run_fresh(code):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_import_and_cpu_ops_do_not_import_cuda():
    out = _run_fresh(
        "import sys, numpy as np, fastconv\n"
        "before = 'numba.cuda' in sys.modules\n"
        "x = np.ones((1, 4, 4, 1), np.float32)\n"
        "fastconv.max_pool2d(fastconv.conv2d(x, np.ones((3, 3, 1, 2), np.float32), 1, 'SAME'),"
        " 2, 2, 'VALID')\n"
        "print(before, 'numba.cuda' in sys.modules)\n")
    assert out == "False False"


def test_is_available_is_a_bool_and_never_raises():
    import fastconv.cuda

    assert fastconv.cuda.is_available() in (True, False)


def _no_gpu():
    import fastconv.cuda

    return not fastconv.cuda.is_available()


needs_no_gpu = pytest.mark.skipif("not _no_gpu()", reason="a CUDA GPU (or the simulator) is here")

X4 = np.ones((1, 5, 5, 2), np.float32)
CALLS = {
    "conv1d": lambda: fastconv.conv1d(X4[:, 0], np.ones((3, 2, 4), np.float32), 1, "SAME",
                                      device="cuda"),
    "conv2d": lambda: fastconv.conv2d(X4, np.ones((3, 3, 2, 4), np.float32), 1, "SAME",
                                      device="cuda"),
    "conv3d": lambda: fastconv.conv3d(X4[:, None], np.ones((1, 3, 3, 2, 4), np.float32), 1,
                                      "SAME", device="cuda"),
    "depthwise_conv2d": lambda: fastconv.depthwise_conv2d(X4, np.ones((3, 3, 2, 1), np.float32),
                                                          1, "SAME", device="cuda"),
    "conv2d_transpose": lambda: fastconv.conv2d_transpose(
        X4, np.ones((3, 3, 4, 2), np.float32), (1, 10, 10, 4), 2, "SAME", device="cuda"),
    "max_pool2d": lambda: fastconv.max_pool2d(X4, 2, 2, "VALID", device="cuda"),
    "avg_pool3d": lambda: fastconv.avg_pool3d(X4[:, None], 1, 1, "VALID", device="gpu"),
    "global_avg_pool2d": lambda: fastconv.global_avg_pool2d(X4, device="cuda"),
    "zero_pad2d": lambda: fastconv.zero_pad2d(X4, 1, device="cuda"),
}


@needs_no_gpu
@pytest.mark.parametrize("op", sorted(CALLS))
def test_device_cuda_without_gpu_raises_runtime_error(op):
    with pytest.raises(RuntimeError, match=r"device='cuda'.*cannot run.*device='cpu'"):
        CALLS[op]()


@needs_no_gpu
def test_bad_arguments_still_fail_first_and_cpu_works_after():
    with pytest.raises(ValueError, match="ksize"):
        fastconv.max_pool2d(X4, 0, 1, "VALID", device="cuda")
    with pytest.raises(RuntimeError):
        fastconv.max_pool2d(X4, 2, 1, "VALID", device="cuda")
    assert fastconv.max_pool2d(X4, 2, 1, "VALID").shape == (1, 4, 4, 2)


@needs_no_gpu
def test_error_names_the_reason():
    from fastconv.cuda.launch import cuda_unavailable_reason

    reason = cuda_unavailable_reason()
    assert reason  # e.g. "numba.cuda found no usable GPU (CUDA driver library cannot be found)"
    with pytest.raises(RuntimeError) as info:
        CALLS["conv2d"]()
    assert reason in str(info.value)
    assert "NUMBA_ENABLE_CUDASIM" in str(info.value)


class DynamicLibNotFoundError(RuntimeError):
    """Stands in for numba-cuda's error when libcudart (or libnvrtc) cannot be loaded."""


class _FakeCuda:
    """A ``numba.cuda`` whose every question fails the way a broken install does."""

    def __init__(self, available):
        self._available = available

    def is_available(self):
        if isinstance(self._available, Exception):
            raise self._available
        return self._available

    def current_context(self):
        raise RuntimeError("CUDA_ERROR_NO_DEVICE: no CUDA-capable device is detected")


class _RaisingFinder:
    """A meta-path finder that makes ``import numba.cuda`` raise ``error``."""

    def __init__(self, error):
        self.error = error

    def find_spec(self, name, path=None, target=None):
        if name == "numba.cuda":
            raise self.error
        return None


def _missing_cuda(monkeypatch, how):
    import numba

    from fastconv.cuda import launch

    monkeypatch.setattr(launch, "_AVAILABLE", False)
    monkeypatch.delattr(numba, "cuda", raising=False)
    for name in [m for m in sys.modules if m == "numba.cuda" or m.startswith("numba.cuda.")]:
        monkeypatch.delitem(sys.modules, name)
    if how == "no numba-cuda":
        monkeypatch.setitem(sys.modules, "numba.cuda", None)  # import raises ImportError
    elif how == "no libcudart on import":
        monkeypatch.setattr(sys, "meta_path", [_RaisingFinder(
            DynamicLibNotFoundError("libcudart.so.12: cannot open shared object file"))]
            + sys.meta_path)
    else:
        fake = _FakeCuda({"no libcudart on use": DynamicLibNotFoundError("libcudart.so.12"),
                          "no driver or device": False}[how])
        monkeypatch.setitem(sys.modules, "numba.cuda", fake)
        monkeypatch.setattr(numba, "cuda", fake, raising=False)


MISSING = ("no numba-cuda", "no libcudart on import", "no libcudart on use",
           "no driver or device")


@pytest.mark.parametrize("how", MISSING)
def test_is_available_is_false_for_every_way_cuda_can_be_missing(monkeypatch, how):
    import fastconv.cuda

    _missing_cuda(monkeypatch, how)
    assert fastconv.cuda.is_available() is False


@pytest.mark.parametrize("how", MISSING)
def test_device_cuda_explains_every_way_cuda_can_be_missing(monkeypatch, how):
    import fastconv.cuda.backend  # noqa: F401  (loaded before CUDA goes missing)
    _missing_cuda(monkeypatch, how)
    with pytest.raises(RuntimeError, match=r"device='cuda' was requested but the CUDA backend "
                                           r"cannot run: numba\.cuda"):
        CALLS["conv2d"]()
