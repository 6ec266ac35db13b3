"""Device selection and array interop of the CUDA backend; kernel memoisation.

* a numba device array in gives a numba device array out, for every op;
* mixed host/device arguments are moved to the device once (host filters with a device input
  give a device result; a host input with device filters runs on the GPU, returns NumPy);
* ``device="cuda"`` with NumPy input copies in and out;
* strided device input is copied on the device, not refused;
* CuPy / torch results are allocated by CuPy / torch and returned as they are (checked with
  stand-in modules, since neither library runs under the simulator);
* kernels are memoised on their static parameters, the tunables included.
"""

import sys
import types

import numpy as np
import pytest

import fastconv
from fastconv import config
from fastconv.cuda import launch

try:
    from numba import cuda

    from fastconv.cuda import conv as cuda_conv
except Exception as error:  # no numba-cuda, or no CUDA runtime library (a RuntimeError)
    pytest.skip(f"numba.cuda cannot be imported here: {error}", allow_module_level=True)

F32, F64 = np.float32, np.float64


def _is_device(value):
    return launch.array_kind(value) == "numba"


def _host(value):
    return value.copy_to_host() if _is_device(value) else np.asarray(value)


OPS = {
    "conv1d": lambda x, w: fastconv.conv1d(x, w[0, 0], 2, "SAME", "NWC"),
    "conv2d": lambda x, w: fastconv.conv2d(x, w[0], 1, "SAME", activation="relu"),
    "depthwise_conv2d": lambda x, w: fastconv.depthwise_conv2d(x, w[0, ..., :1], 1, "VALID"),
    "conv2d_transpose": lambda x, w: fastconv.conv2d_transpose(x, w[0, ..., :3], (2, 10, 8, 3),
                                                                2, "SAME"),
    "max_pool2d": lambda x, w: fastconv.max_pool2d(x, 2, 2, "VALID"),
    "avg_pool2d": lambda x, w: fastconv.avg_pool2d(x, 3, 1, "SAME"),
    "global_max_pool2d": lambda x, w: fastconv.global_max_pool2d(x, keepdims=True),
    "global_avg_pool2d": lambda x, w: fastconv.global_avg_pool2d(x),
    "zero_pad2d": lambda x, w: fastconv.zero_pad2d(x, (1, 2)),
}


def _inputs(op, rand, dtype):
    x = rand((2, 5, 4, 3), dtype)
    w = rand((1, 2, 3, 3, 3), dtype)  # sliced per op: (2, 3, 3, 3) conv2d filters, ...
    if op == "conv1d":
        x = x[:, 0]
    return np.ascontiguousarray(x), np.ascontiguousarray(w)


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("dtype", [F32, F64])
def test_device_array_in_device_array_out(op, dtype, rand, assert_close):
    x, w = _inputs(op, rand, dtype)
    expected = OPS[op](x, w)  # NumPy in: the CPU
    got = OPS[op](cuda.to_device(x), w)  # host filters, device input: filters moved once
    assert _is_device(got), type(got)
    assert got.dtype == dtype
    assert_close(_host(got), expected, dtype)


def test_all_arguments_on_device(rand, assert_close):
    x, w, b = rand((1, 6, 5, 4), F32), rand((3, 3, 4, 6), F32), rand((6,), F32)
    got = fastconv.conv2d(cuda.to_device(x), cuda.to_device(w), 2, "SAME",
                          bias=cuda.to_device(b), activation="tanh")
    assert _is_device(got)
    assert_close(_host(got), fastconv.conv2d(x, w, 2, "SAME", bias=b, activation="tanh"), F32)


def test_host_input_with_device_filters_runs_on_gpu_returns_numpy(rand, assert_close):
    x, w = rand((1, 6, 5, 4), F32), rand((3, 3, 4, 6), F32)
    got = fastconv.conv2d(x, cuda.to_device(w), 1, "VALID")
    assert isinstance(got, np.ndarray)
    assert_close(got, fastconv.conv2d(x, w, 1, "VALID"), F32)


def test_device_cuda_with_numpy_copies_in_and_out(rand, assert_exact):
    x = rand((2, 4, 4, 3), F64)
    got = fastconv.max_pool2d(x, 2, 2, "VALID", device="cuda")
    assert isinstance(got, np.ndarray)
    assert_exact(got, fastconv.max_pool2d(x, 2, 2, "VALID", device="cpu"), F64)


def test_device_cpu_with_device_array_copies_back(rand, assert_exact):
    x = rand((2, 4, 4, 3), F32)
    got = fastconv.max_pool2d(cuda.to_device(x), 2, 2, "VALID", device="cpu")
    assert isinstance(got, np.ndarray)
    assert_exact(got, fastconv.max_pool2d(x, 2, 2, "VALID"), F32)


def test_strided_device_input_is_copied_on_device(rand, assert_close):
    x, w = rand((2, 6, 8, 6), F32), rand((3, 3, 4, 2), F32)
    strided = cuda.to_device(x)[:, :, ::2, 1:5]
    assert not strided.is_c_contiguous()
    contiguous = launch.device_contiguous(strided)
    assert _is_device(contiguous) and contiguous.is_c_contiguous()
    np.testing.assert_array_equal(_host(contiguous), x[:, :, ::2, 1:5])
    got = fastconv.conv2d(strided, w, 1, "SAME")
    assert _is_device(got)
    assert_close(_host(got), fastconv.conv2d(x[:, :, ::2, 1:5], w, 1, "SAME"), F32)


def test_strided_device_input_matches_cpu(rand, assert_exact):
    x = rand((2, 6, 8, 6), F32)
    got = fastconv.max_pool2d(cuda.to_device(x)[:, ::2, :, 1:4], 2, 1, "SAME")
    assert_exact(_host(got), fastconv.max_pool2d(x[:, ::2, :, 1:4], 2, 1, "SAME"), F32)


# ----------------------------------------------------------------------------- result kinds

class _FakeGpuArray:
    """Stands for a CuPy array / torch CUDA tensor: only its type's module and CAI matter."""

    __cuda_array_interface__ = {}
    device = "cuda:0"

    def detach(self):  # torch's
        return self


def _fake_kind(module):
    return type("FakeArray", (_FakeGpuArray,), {"__module__": module})()


def test_array_kinds():
    assert launch.array_kind(np.zeros(2)) == "host"
    assert launch.array_kind([1.0]) == "host"
    assert launch.array_kind(cuda.to_device(np.zeros(2))) == "numba"
    assert launch.array_kind(_fake_kind("cupy._core.core")) == "cupy"
    assert launch.array_kind(_fake_kind("torch")) == "torch"
    assert launch.array_kind(_fake_kind("jax.something")) == "cai"


def test_outputs_are_allocated_by_the_input_library(monkeypatch):
    """torch in: torch.empty on the input's device; CuPy in: cupy.empty under its device."""
    made = []

    def library_empty(library):
        def empty(shape, dtype, device=None):
            made.append((library, shape, dtype, device))
            return _fake_kind(library)
        return empty

    class FakeDevice:
        def __enter__(self):
            made.append("entered")

        def __exit__(self, *exc):
            return False

    fake_torch = types.SimpleNamespace(empty=library_empty("torch"), float32="torch.float32",
                                       float64="torch.float64")
    fake_cupy = types.SimpleNamespace(empty=library_empty("cupy"))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    views = []
    monkeypatch.setattr(cuda, "as_cuda_array", lambda a: views.append(a) or "view",
                        raising=False)
    out, finish = launch.output((2, 3), F64, _fake_kind("torch"))
    assert out == "view" and finish() is views[-1]
    assert made[-1] == ("torch", (2, 3), "torch.float64", "cuda:0")
    template = _fake_kind("cupy")
    template.device = FakeDevice()
    out, finish = launch.output((4,), F32, template)
    assert made[-2:] == ["entered", ("cupy", (4,), F32, None)]
    assert out == "view" and finish() is views[-1]
    device_out, finish = launch.output((3,), F32, cuda.to_device(np.zeros(1)))
    assert _is_device(device_out) and finish() is device_out
    host_out, finish = launch.output((3,), F32, np.zeros(1))
    assert _is_device(host_out) and isinstance(finish(), np.ndarray)


def test_results_come_back_as_the_input_kind(monkeypatch):
    out = cuda.to_device(np.arange(3.0))
    fake_cupy = types.SimpleNamespace(asarray=lambda a: ("cupy", a))
    fake_torch = types.SimpleNamespace(as_tensor=lambda a, device: ("torch", a, device))
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    assert launch.result_like(out, _fake_kind("cupy")) == ("cupy", out)
    assert launch.result_like(out, _fake_kind("torch")) == ("torch", out, "cuda:0")
    assert launch.result_like(out, _fake_kind("jax")) is out
    assert launch.result_like(out, out) is out
    np.testing.assert_array_equal(launch.result_like(out, np.zeros(3)), np.arange(3.0))


# ----------------------------------------------------------------------------- memoisation

def test_kernels_are_memoised_on_static_parameters_and_tunables(rand, monkeypatch):
    x, w = rand((1, 5, 5, 2), F32), rand((3, 3, 2, 4), F32)
    fastconv.conv2d(x, w, 1, "SAME", device="cuda")
    before = cuda_conv.conv_kernel.cache_info()
    fastconv.conv2d(x, w, 1, "SAME", device="cuda")
    after = cuda_conv.conv_kernel.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)
    monkeypatch.setattr(config, "CUDA_CONV_TILE_H", 1)  # a new tile: a new kernel
    fastconv.conv2d(x, w, 1, "SAME", device="cuda")
    assert cuda_conv.conv_kernel.cache_info().misses == after.misses + 1


def test_tile_fits_problem_and_shared_memory():
    tile = cuda_conv.choose_tile(1, 100, 3, 64, (1, 1, 5), (1, 1, 1), (1, 1, 1), 4)
    assert tile.rows == 1 and tile.cols > 3  # a conv1d spends the tile on one row
    big = cuda_conv.choose_tile(64, 64, 512, 512, (1, 11, 11), (1, 4, 4), (1, 3, 3), 8)
    assert big.shared_bytes((1, 11, 11), (1, 4, 4), (1, 3, 3), 8) <= cuda_conv.SHARED_MEMORY_BUDGET
    float64 = cuda_conv.choose_tile(64, 64, 512, 512, (1, 3, 3), (1, 1, 1), (1, 1, 1), 8)
    assert float64.shared_bytes((1, 3, 3), (1, 1, 1), (1, 1, 1), 8) <= 40 * 1024  # headroom
    assert big.threads <= cuda_conv.MAX_THREADS_PER_BLOCK
