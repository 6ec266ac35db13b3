"""CUDA pooling, global pooling and zero padding against the CPU kernels and TensorFlow.

Max pooling, global max pooling and zero padding only select or copy values, so they must
equal the CPU bit for bit; average pooling sums in the same order as the CPU kernel, global
average pooling in a different one (a tree), so those use the suite's tolerance. With
``conftest.TINY`` (4 threads per block) every case spans several blocks.
"""

import numpy as np
import pytest

import fastconv

F32, F64 = np.float32, np.float64
LAYOUTS = {1: ("NWC", "NCW"), 2: ("NHWC", "NCHW"), 3: ("NDHWC", "NCDHW")}
SIZES = {1: (11,), 2: (7, 6), 3: (4, 5, 3)}
WINDOWS = {1: (3,), 2: (3, 2), 3: (2, 3, 2)}
EXPLICIT = {1: ((1, 2),), 2: ((1, 1), (0, 1)), 3: ((1, 0), (0, 2), (1, 1))}


def _pool(kind, n):
    return getattr(fastconv, f"{kind}_pool{n}d")


def _shape(batch, channels, spatial, channels_first):
    return (batch, channels, *spatial) if channels_first else (batch, *spatial, channels)


def _with_specials(x):
    """NaN, +-inf and the lowest finite value in a few cells: TF's max rules must hold."""
    flat = x.reshape(-1)
    flat[::7] = np.nan
    flat[3::11] = -np.inf
    flat[5::13] = np.inf
    flat[6::17] = np.finfo(x.dtype).min
    return x


@pytest.mark.grid(n=[1, 2, 3], kind=["max", "avg"], layout=["last", "first"], dtype=[F32, F64],
                  padding=["SAME", "VALID", "explicit"], stride=[1, 2, 3], random=4, seed=2)
def test_pool_matches_cpu(case, rand, assert_close, assert_exact):
    channels_first = case.layout == "first"
    x = rand(_shape(2, 3, SIZES[case.n], channels_first), case.dtype)
    if case.kind == "max":
        x = _with_specials(x)
    padding = EXPLICIT[case.n] if case.padding == "explicit" else case.padding
    args = (WINDOWS[case.n], case.stride, padding, LAYOUTS[case.n][channels_first])
    if case.padding == "explicit" and case.kind == "avg":
        with pytest.raises(ValueError, match="padding"):  # TF allows it for max pooling only
            _pool(case.kind, case.n)(x, *args, device="cuda")
        return
    got = _pool(case.kind, case.n)(x, *args, device="cuda")
    expected = _pool(case.kind, case.n)(x, *args, device="cpu")
    (assert_exact if case.kind == "max" else assert_close)(got, expected, case.dtype)


def test_max_pool_all_nan_window_gives_lowest():
    x = np.full((1, 4, 4, 2), np.nan, F32)
    x[0, 3, 3, 0] = 1.0
    got = fastconv.max_pool2d(x, 2, 2, "VALID", device="cuda")
    expected = np.full((1, 2, 2, 2), np.finfo(F32).min, F32)
    expected[0, 1, 1, 0] = 1.0
    np.testing.assert_array_equal(got, expected)


def test_avg_pool_arange_counts_only_real_cells():
    x = np.arange(2 * 5 * 5, dtype=F64).reshape(1, 5, 5, 2)
    got = fastconv.avg_pool2d(x, 3, 2, "SAME", device="cuda")
    np.testing.assert_array_equal(got, fastconv.avg_pool2d(x, 3, 2, "SAME", device="cpu"))
    assert got[0, 0, 0, 0] == np.mean(x[0, :2, :2, 0])  # a corner window holds 4 real cells


@pytest.mark.grid(kind=["max", "avg"], layout=["NHWC", "NCHW"], dtype=[F32, F64],
                  keepdims=[False, True], channels=[1, 3, 37])
def test_global_pool_matches_cpu(case, rand, assert_close, assert_exact):
    channels_first = case.layout == "NCHW"
    x = rand(_shape(2, case.channels, (5, 3), channels_first), case.dtype)
    function = getattr(fastconv, f"global_{case.kind}_pool2d")
    got = function(x, case.layout, case.keepdims, device="cuda")
    expected = function(x, case.layout, case.keepdims, device="cpu")
    (assert_exact if case.kind == "max" else assert_close)(got, expected, case.dtype)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_global_max_pool_propagates_nan(layout):
    x = np.arange(2 * 3 * 4 * 5, dtype=F32).reshape(2, 3, 4, 5)
    x[1, 2, 3, 4] = np.nan
    x[0, 0, 0, 0] = np.inf
    got = fastconv.global_max_pool2d(x, layout, device="cuda")
    np.testing.assert_array_equal(got, fastconv.global_max_pool2d(x, layout, device="cpu"))
    assert np.isnan(got[1, 4 if layout == "NHWC" else 2])


@pytest.mark.grid(layout=["NHWC", "NCHW"], dtype=[F32, F64],
                  padding=[0, 2, (1, 0), ((0, 2), (3, 1))])
def test_zero_pad_matches_cpu(case, rand, assert_exact):
    x = rand((2, 3, 4, 5), case.dtype)
    got = fastconv.zero_pad2d(x, case.padding, case.layout, device="cuda")
    assert_exact(got, fastconv.zero_pad2d(x, case.padding, case.layout, device="cpu"),
                 case.dtype)


# ----------------------------------------------------------------------------- TensorFlow

@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_pool2d_matches_tensorflow(kind, layout, rand, oracle, assert_close, assert_exact):
    channels_first = layout == "NCHW"
    x = rand(_shape(2, 3, (7, 6), channels_first), F32)
    got = _pool(kind, 2)(x, (3, 2), (2, 1), "SAME", layout, device="cuda")
    expected = oracle.pool(kind, x, (3, 2), (2, 1), "SAME", channels_first)
    (assert_exact if kind == "max" else assert_close)(got, expected, F32)


def test_pool3d_and_global_and_pad_match_tensorflow(rand, oracle, assert_close, assert_exact):
    x = rand((1, 4, 5, 3, 2), F32)
    assert_close(fastconv.avg_pool3d(x, 2, 2, "SAME", device="cuda"),
                 oracle.pool("avg", x, (2, 2, 2), (2, 2, 2), "SAME"), F32)
    x2 = rand((2, 5, 4, 3), F32)
    assert_close(fastconv.global_avg_pool2d(x2, device="cuda"), oracle.global_pool("avg", x2), F32)
    assert_exact(fastconv.global_max_pool2d(x2, device="cuda"), oracle.global_pool("max", x2), F32)
    assert_exact(fastconv.zero_pad2d(x2, ((1, 2), (0, 1)), device="cuda"),
                 oracle.zero_pad(x2, ((1, 2), (0, 1))), F32)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_global_pool_splits_large_images_over_blocks(kind, layout, rand, assert_close):
    """A small batch of large images: positions split over blocks, then combined (NaN too)."""
    from fastconv.cuda import pool as cuda_pool

    x = rand((1, 2, 9, 9) if layout == "NCHW" else (1, 9, 9, 2), F64)
    launches = []
    original = cuda_pool.global_pool_kernel

    def spy(*args):
        launches.append(args)
        return original(*args)

    function = getattr(fastconv, f"global_{kind}_pool2d")
    expected = function(x, layout)
    try:
        cuda_pool.global_pool_kernel = spy
        got = function(x, layout, device="cuda")
        x[0, 1, 7, 1] = np.nan
        got_nan = function(x, layout, device="cuda")
    finally:
        cuda_pool.global_pool_kernel = original
    assert len(launches) == 4  # two passes per call
    assert_close(got, expected, F64)
    assert_close(got_nan, function(x, layout), F64)
    assert np.isnan(got_nan).sum() == 1  # NaN propagates through max and mean


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_window_max_ops_on_cuda_equal_the_cpu_bit_for_bit(fmt, dtype):
    """max_pool_with_argmax (both index dtypes, with and without the batch), dilation2d and
    erosion2d: ties, NaN and infinities, strides and dilations."""
    rng = np.random.default_rng(5)
    x = rng.integers(-2, 3, (2, 5, 4, 3)).astype(dtype)
    x.reshape(-1)[::7] = np.nan
    x.reshape(-1)[3::11] = -np.inf
    if fmt == "NCHW":
        x = np.ascontiguousarray(np.moveaxis(x, -1, 1))
    for include_batch, index_dtype in ((False, np.int64), (True, np.int32)):
        args = (x, [3, 2], [2, 1], "SAME", fmt, index_dtype, include_batch)
        got = fastconv.max_pool_with_argmax(*args, device="cuda")
        want = fastconv.max_pool_with_argmax(*args, device="cpu")
        assert got.argmax.dtype == index_dtype
        np.testing.assert_array_equal(got.output, want.output)
        np.testing.assert_array_equal(got.argmax, want.argmax)
    f = rng.standard_normal((2, 3, 3)).astype(dtype)
    for op in (fastconv.dilation2d, fastconv.erosion2d):
        for strides, padding, dilations in ((1, "SAME", 2), ([2, 1], "VALID", 1)):
            args = (x, f, strides, padding, fmt, dilations)
            assert op(*args, device="cuda").tobytes() == op(*args, device="cpu").tobytes()
