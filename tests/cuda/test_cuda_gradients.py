"""The gradient kernels on CUDA (simulator or GPU) against the CPU's: pooling gradients (every
TF rule: first max, every max, average; NaN and ties), the filter gradient (groups, strides,
dilations, padding, both layouts) and grouped transposed convs (the input gradient), plus
vjp with device arrays.

Shapes are tiny (the simulator runs each GPU thread in Python) but span several blocks with
``conftest.TINY``'s 4-thread blocks.
"""

import numpy as np
import pytest

import fastconv

F32, F64 = np.float32, np.float64


def _fmt(n, first):
    fmt = {1: "NWC", 2: "NHWC", 3: "NDHWC"}[n]
    return fmt[0] + "C" + fmt[1:-1] if first else fmt


@pytest.mark.grid(n=[1, 2, 3], kind=["max", "avg"], layout=["last", "first"],
                  window=[(2, 2, "VALID"), (3, 2, "SAME"), (2, 1, "SAME")], dtype=[F32, F64])
def test_pool_grads_match_cpu(case, assert_close):
    rng = np.random.default_rng(3)
    first = case.layout == "first"
    spatial = (5, 4, 3)[:case.n] if case.n == 3 else (5, 4)[:case.n]
    shape = (1, 2, *spatial) if first else (1, *spatial, 2)
    x = np.maximum(rng.integers(-1, 3, shape), 0).astype(case.dtype)  # ties
    x.reshape(-1)[::5] = np.nan
    k, s, padding = case.window
    fmt = _fmt(case.n, first)
    y = getattr(fastconv, f"{case.kind}_pool{case.n}d")(x, k, s, padding, fmt)
    dy = rng.standard_normal(y.shape).astype(case.dtype)
    args = (x, y, dy) if case.kind == "max" else (x.shape, dy)
    name = f"{case.kind}_pool{case.n}d_grad"
    got = getattr(fastconv, name)(*args, k, s, padding, fmt, device="cuda")
    assert_close(got, getattr(fastconv, name)(*args, k, s, padding, fmt, device="cpu"),
                 case.dtype)


@pytest.mark.grid(n=[1, 2, 3], layout=["last", "first"], stride=[1, 2], padding=["SAME", "VALID"],
                  dilation=[1, 2], groups=[1, 2], dtype=[F32, F64])
def test_conv_backprops_match_cpu(case, rand, assert_close):
    first = case.layout == "first"
    spatial = {1: (7,), 2: (5, 6), 3: (3, 5, 3)}[case.n]
    channels = 2 * case.groups
    x = rand((1, channels, *spatial) if first else (1, *spatial, channels), case.dtype)
    w = rand((*(2, 3, 2)[:case.n], 2, 3 * case.groups), case.dtype)
    fmt = _fmt(case.n, first)
    y = getattr(fastconv, f"conv{case.n}d")(x, w, case.stride, case.padding, fmt, case.dilation)
    dy = rand(y.shape, case.dtype)
    for what, first_arg, second in (("input", x.shape, w), ("filter", x, w.shape)):
        kernel = getattr(fastconv, f"conv{case.n}d_backprop_{what}")
        args = (first_arg, second, dy, case.stride, case.padding, fmt, case.dilation)
        assert_close(kernel(*args, device="cuda"), kernel(*args, device="cpu"), case.dtype)


def test_filter_grad_infinite_gradient_meeting_padding_is_nan():
    x = np.ones((1, 3, 3, 1), F32)
    dy = np.zeros((1, 3, 3, 1), F32)
    dy[0, 0, 0, 0] = np.inf
    got = fastconv.conv2d_backprop_filter(x, (3, 3, 1, 1), dy, 1, "SAME", device="cuda")
    want = fastconv.conv2d_backprop_filter(x, (3, 3, 1, 1), dy, 1, "SAME", device="cpu")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


def test_vjp_with_device_arrays(rand, assert_close):
    from numba import cuda

    x, w, b = rand((1, 5, 4, 2)), rand((3, 3, 2, 3)), rand((3,))
    y_cpu, back_cpu = fastconv.vjp(fastconv.conv2d, x, w, 2, "SAME", bias=b, activation="tanh")
    y, back = fastconv.vjp(fastconv.conv2d, cuda.to_device(x), cuda.to_device(w), 2, "SAME",
                           bias=cuda.to_device(b), activation="tanh")
    dy = rand(y_cpu.shape)
    for got, want in zip(back(cuda.to_device(dy)), back_cpu(dy)):
        got = got.copy_to_host() if hasattr(got, "copy_to_host") else np.asarray(got)
        assert_close(got, want, F32)
