"""max/avg_pool1d/2d/3d against TensorFlow, plus hand-computed ``arange`` cases.

Max pooling must equal TF bit for bit (it only selects values); average pooling uses the suite's
tolerance. Grids cover both layouts x float32/float64 x strides 1-3 x SAME/VALID (and explicit
padding for max pooling, as TF allows) x odd/even/mixed windows x sizes that do and do not divide
evenly x argument forms.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv

F32, F64 = np.float32, np.float64
EXPLICIT = "explicit"
WINDOWS = {
    1: {"odd": (3,), "even": (2,), "even4": (4,), "one": (1,)},
    2: {"odd": (3, 3), "even": (2, 2), "mixed": (3, 2), "wide": (1, 4)},
    3: {"odd": (3, 3, 3), "even": (2, 2, 2), "mixed": (3, 2, 1), "one": (1, 1, 2)},
}
LAYOUTS = {1: ("NWC", "NCW"), 2: ("NHWC", "NCHW"), 3: ("NDHWC", "NCDHW")}
BASE_SIZES = {1: (10,), 2: (7, 6), 3: (5, 4, 6)}
POOLS = {("max", 1): fastconv.max_pool1d, ("max", 2): fastconv.max_pool2d,
         ("max", 3): fastconv.max_pool3d, ("avg", 1): fastconv.avg_pool1d,
         ("avg", 2): fastconv.avg_pool2d, ("avg", 3): fastconv.avg_pool3d}


def _explicit_pads(window):
    # TF requires explicit pooling padding smaller than the window: (min(1, k-1), k-1).
    return tuple((min(1, k - 1), k - 1) for k in window)


def _spatial(value, n):
    return tuple(value) if isinstance(value, tuple) else (value,) * n


def _layout_shape(batch, channels, spatial, channels_first):
    return (batch, channels, *spatial) if channels_first else (batch, *spatial, channels)


def _run_pool_case(kind, n, case, rand, oracle, tools, assert_close, assert_exact):
    channels_first = case.layout == tools.layouts[n][1]
    window = WINDOWS[n][case.window]
    strides = _spatial(case.stride, n)
    padding = _explicit_pads(window) if case.padding == EXPLICIT else case.padding
    sizes, out_sizes = [], []
    for axis in range(n):
        pad = padding if isinstance(padding, str) else padding[axis]
        divides = case.divides if axis % 2 == 0 else not case.divides
        size = tools.fit_size(BASE_SIZES[n][axis], window[axis], strides[axis], pad, divides)
        sizes.append(size)
        out_sizes.append(tools.out_size(size, window[axis], strides[axis], pad))
    channels = 3
    x = rand(_layout_shape(2, channels, sizes, channels_first), case.dtype)
    got = POOLS[kind, n](x, tools.window(window, case.form, channels_first),
                         tools.window(strides, case.form, channels_first),
                         tools.padding(padding, case.form, channels_first), case.layout)
    assert got.shape == _layout_shape(2, channels, out_sizes, channels_first)
    expected = oracle.pool(kind, x, window, strides, padding, channels_first)
    (assert_exact if kind == "max" else assert_close)(got, expected, case.dtype)


def _grid(n, kind, seed, stride_extra):
    paddings = ["SAME", "VALID", EXPLICIT] if kind == "max" else ["SAME", "VALID"]
    strides = [1, 2, 3] + ([stride_extra] if stride_extra else [])
    return pytest.mark.grid(layout=list(LAYOUTS[n]), dtype=[F32, F64], stride=strides,
                            padding=paddings, window=list(WINDOWS[n]), divides=[True, False],
                            form=["int", "spatial", "full"], random=4, seed=seed)


@_grid(1, "max", 11, None)
def test_max_pool1d_matches_tf(case, rand, oracle, tools, assert_close, assert_exact):
    _run_pool_case("max", 1, case, rand, oracle, tools, assert_close, assert_exact)


@_grid(2, "max", 12, (3, 1))
def test_max_pool2d_matches_tf(case, rand, oracle, tools, assert_close, assert_exact):
    _run_pool_case("max", 2, case, rand, oracle, tools, assert_close, assert_exact)


@_grid(3, "max", 13, (1, 2, 3))
def test_max_pool3d_matches_tf(case, rand, oracle, tools, assert_close, assert_exact):
    _run_pool_case("max", 3, case, rand, oracle, tools, assert_close, assert_exact)


@_grid(1, "avg", 14, None)
def test_avg_pool1d_matches_tf(case, rand, oracle, tools, assert_close, assert_exact):
    _run_pool_case("avg", 1, case, rand, oracle, tools, assert_close, assert_exact)


@_grid(2, "avg", 15, (1, 3))
def test_avg_pool2d_matches_tf(case, rand, oracle, tools, assert_close, assert_exact):
    _run_pool_case("avg", 2, case, rand, oracle, tools, assert_close, assert_exact)


@_grid(3, "avg", 16, (3, 2, 1))
def test_avg_pool3d_matches_tf(case, rand, oracle, tools, assert_close, assert_exact):
    _run_pool_case("avg", 3, case, rand, oracle, tools, assert_close, assert_exact)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("layout, dtype, shape, window, strides, padding", [
    ("NCHW", F32, (2, 5, 31, 45), (3, 3), (2, 2), "SAME"),
    ("NCHW", F64, (1, 3, 40, 33), (2, 5), (1, 3), "VALID"),
    ("NHWC", F32, (2, 29, 41, 19), (3, 3), (2, 2), "SAME"),
    ("NCHW", F32, (1, 4, 26, 64), (2, 2), (2, 2), "VALID"),
    ("NCHW", F32, (1, 2, 17, 70), (4, 3), (3, 1), ((1, 3), (2, 0))),
    ("NCW", F64, (2, 3, 77), (5,), (2,), "SAME"),
    ("NCDHW", F32, (1, 3, 6, 13, 21), (2, 3, 3), (1, 2, 2), "SAME"),
])
def test_pools_medium_shapes_match_tf(kind, layout, dtype, shape, window, strides, padding, rand,
                                      oracle, assert_close, assert_exact):
    """Longer rows than the grids, mostly channels-first: vector widths plus remainders."""
    if kind == "avg" and not isinstance(padding, str):
        padding = "SAME"
    n = len(window)
    channels_first = layout == LAYOUTS[n][1]
    x = rand(shape, dtype)
    got = POOLS[kind, n](x, list(window), list(strides),
                         padding if isinstance(padding, str) else
                         [[0, 0], [0, 0]] + [list(p) for p in padding], layout)
    expected = oracle.pool(kind, x, window, strides, padding, channels_first)
    (assert_exact if kind == "max" else assert_close)(got, expected, dtype)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_max_pool2d_nan_and_inf_follow_tf_cpu(padding, data_format, oracle, assert_exact):
    """TF's CPU max pool skips NaN and starts from the lowest finite value."""
    values = np.array([[np.nan, 1.0, -np.inf, np.nan, 2.5],
                       [np.nan, np.nan, -np.inf, -np.inf, np.nan],
                       [0.5, np.nan, -3.0, np.inf, np.nan],
                       [np.nan, np.nan, -np.inf, np.nan, -1.0]], F32)
    x = values.reshape(1, 4, 5, 1)
    channels_first = data_format == "NCHW"
    if channels_first:
        x = x.reshape(1, 1, 4, 5)
    got = fastconv.max_pool2d(x, 2, 1, padding, data_format)
    expected = oracle.pool("max", x, (2, 2), (1, 1), padding, channels_first)
    assert_exact(got, expected, F32)
    assert (got == np.finfo(F32).min).any()  # the all-NaN / all -inf windows


def test_avg_pool2d_nan_propagates_like_tf(oracle, assert_close):
    x = np.arange(16, dtype=F64).reshape(1, 4, 4, 1)
    x[0, 1, 1, 0] = np.nan
    got = fastconv.avg_pool2d(x, 2, 2, "VALID")
    assert_close(got, oracle.pool("avg", x, (2, 2), (2, 2), "VALID"), F64)
    assert np.isnan(got[0, 0, 0, 0]) and not np.isnan(got[0, 1, 1, 0])


# ----------------------------------------------------------------------------- hand-computed

ARANGE_4X4 = np.arange(16, dtype=F64).reshape(1, 4, 4, 1)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_max_pool2d_4x4_arange(dtype, assert_exact):
    got = fastconv.max_pool2d(ARANGE_4X4.astype(dtype), 2, 2, "VALID")
    assert_exact(got, np.array([[5, 7], [13, 15]]).reshape(1, 2, 2, 1), dtype)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_avg_pool2d_4x4_arange(dtype, assert_close):
    got = fastconv.avg_pool2d(ARANGE_4X4.astype(dtype), 2, 2, "VALID")
    assert_close(got, np.array([[2.5, 4.5], [10.5, 12.5]]).reshape(1, 2, 2, 1), dtype)


def test_avg_pool2d_same_divides_by_real_cells(assert_close):
    got = fastconv.avg_pool2d(ARANGE_4X4, 3, 1, "SAME")
    # 3x3 box sums over real cells / number of real cells (4 in corners, 6 on edges, 9 inside).
    expected = np.array([[2.5, 3.0, 4.0, 4.5],
                         [4.5, 5.0, 6.0, 6.5],
                         [8.5, 9.0, 10.0, 10.5],
                         [10.5, 11.0, 12.0, 12.5]])
    assert_close(got, expected.reshape(1, 4, 4, 1), F64)


def test_max_pool2d_same_padding_never_wins(assert_exact):
    x = -(ARANGE_4X4 + 1)  # all negative: a zero pad would win if padding counted as 0
    got = fastconv.max_pool2d(x, 3, 1, "SAME")
    expected = np.array([[-1, -1, -2, -3],
                         [-1, -1, -2, -3],
                         [-5, -5, -6, -7],
                         [-9, -9, -10, -11]], F64)
    assert_exact(got, expected.reshape(1, 4, 4, 1), F64)


def test_max_pool1d_explicit_padding_by_hand(assert_exact):
    x = np.array([-3.0, -1.0, -2.0]).reshape(1, 3, 1)
    got = fastconv.max_pool1d(x, 2, 1, [[0, 0], [1, 1], [0, 0]])
    assert_exact(got, np.array([-3.0, -1.0, -1.0, -2.0]).reshape(1, 4, 1), F64)


def test_avg_pool1d_same_extra_cell_after(assert_close):
    # n=5, k=2, s=2: out 3, total pad 1 -> (0, 1); the last window holds only x[4].
    x = np.arange(1, 6, dtype=F64).reshape(1, 5, 1)
    got = fastconv.avg_pool1d(x, 2, 2, "SAME")
    assert_close(got, np.array([1.5, 3.5, 5.0]).reshape(1, 3, 1), F64)


def test_pool3d_2x2x2_arange(assert_exact, assert_close):
    x = np.arange(8, dtype=F64).reshape(1, 2, 2, 2, 1)
    assert_exact(fastconv.max_pool3d(x, 2, 2, "VALID"), np.full((1, 1, 1, 1, 1), 7.0), F64)
    assert_close(fastconv.avg_pool3d(x, 2, 2, "VALID"), np.full((1, 1, 1, 1, 1), 3.5), F64)


@pytest.mark.parametrize("function", [fastconv.max_pool3d, fastconv.max_pool2d,
                                      fastconv.max_pool1d])
def test_float64_max_pool_keeps_full_precision(function, assert_exact):
    """1 + 1e-12 rounds to 1 in float32: a kernel computing in float32 would lose it."""
    n = {fastconv.max_pool1d: 1, fastconv.max_pool2d: 2, fastconv.max_pool3d: 3}[function]
    x = np.array([1.0, 1.0 + 1e-12]).reshape((1,) + (1,) * (n - 1) + (2, 1))
    got = function(x, [1] * (n - 1) + [2], 1, "VALID")
    assert_exact(got, np.full((1,) * (n + 2), 1.0 + 1e-12), F64)


def test_float64_avg_pool_keeps_full_precision(assert_exact):
    x = np.array([1.0, 1.0 + 2e-12]).reshape(1, 1, 1, 2, 1)
    got = fastconv.avg_pool3d(x, (1, 1, 2), 1, "VALID")
    expected = (x[0, 0, 0, 0, 0] + x[0, 0, 0, 1, 0]) / 2  # exact in any summation order
    assert expected != 1.0
    assert_exact(got, np.full((1, 1, 1, 1, 1), expected), F64)


def test_max_pool_channels_are_independent(assert_exact):
    x = np.stack([ARANGE_4X4[..., 0], -ARANGE_4X4[..., 0], ARANGE_4X4[..., 0][:, ::-1]], -1)
    got = fastconv.max_pool2d(x, 2, 2, "VALID")
    expected = np.stack([np.array([[5, 7], [13, 15]]), np.array([[0, -2], [-8, -10]]),
                         np.array([[13, 15], [5, 7]])], -1)[None]
    assert_exact(got, expected, F64)


# ----------------------------------------------------------------------------- tf.nn.pool

POOL_CASES = [
    # (spatial, window_shape, pooling_type, strides, padding, dilations)
    ((9,), [3], "MAX", None, "VALID", [2]),
    ((9,), [2], "AVG", [2], "SAME", None),
    ((8, 7), [2, 3], "MAX", None, "VALID", [3, 2]),
    ((8, 7), [3, 2], "AVG", None, "VALID", [1, 3]),
    ((8, 7), [2, 2], "MAX", [2, 1], [[1, 0], [0, 1]], None),
    ((4, 6, 7), [2, 2, 2], "AVG", None, "VALID", [1, 2, 3]),
    ((4, 6, 7), [2, 1, 2], "MAX", None, "VALID", [2, 1, 2]),
]


@pytest.mark.tf
@pytest.mark.parametrize("first", [False, True], ids=["channels_last", "channels_first"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_pool_equals_tf_and_the_oracle(case, dtype, first, tf):
    from fastconv import reference, tf_reference
    from fastconv.testing import assert_close

    spatial, window, kind, strides, padding, dilations = case
    n = len(spatial)
    rng = np.random.default_rng(len(spatial) + len(window))
    x = rng.standard_normal((2, *spatial, 3)).astype(dtype)
    x.reshape(-1)[::11] = np.nan
    x.reshape(-1)[5::13] = -np.inf
    fmt = None
    if first:
        x = np.ascontiguousarray(np.moveaxis(x, -1, 1))
        fmt = {1: "NCW", 2: "NCHW", 3: "NCDHW"}[n]
    args = (x, window, kind, strides, padding, fmt, dilations)
    got = fastconv.pool(*args)
    assert_close(got, reference.pool(*args), dtype)
    if n == 3:
        # TF's CPU has no float64 3-D pooling kernels, and its float32 MaxPool3D (oneDNN)
        # treats NaN differently on AVX2 and AVX-512 machines (docs/guarantees.md): 3-D is
        # compared with TF on NaN-free data.
        if dtype == np.float64:
            return
        x = np.nan_to_num(x, nan=0.5, neginf=-np.inf)
        args = (x, window, kind, strides, padding, fmt, dilations)
        got = fastconv.pool(*args)
    assert_close(got, tf_reference.pool(*args), dtype)


def test_pool_follows_tf_rules_and_names_the_argument():
    x = np.ones((1, 6, 6, 2), np.float32)
    with pytest.raises(ValueError, match="pooling_type must be 'MAX' or 'AVG'"):
        fastconv.pool(x, [2, 2], "MIN")
    with pytest.raises(ValueError, match="strides must be 1 where dilations exceed 1"):
        fastconv.pool(x, [2, 2], "MAX", [2, 2], dilations=[2, 2])
    with pytest.raises(ValueError, match="padding must be 'VALID' where dilations exceed 1"):
        fastconv.pool(x, [2, 2], "MAX", padding="SAME", dilations=[2, 2])
    with pytest.raises(ValueError, match=r"window_shape must have one value per spatial dim"):
        fastconv.pool(x, [2], "MAX")
    with pytest.raises(ValueError, match="dilations must be positive"):
        fastconv.pool(x, [2, 2], "AVG", dilations=[0, 1])
    with pytest.raises(ValueError, match="padding must be 'SAME' or 'VALID' for this op"):
        fastconv.pool(x, [2, 2], "AVG", padding=[[0, 0], [1, 1], [1, 1], [0, 0]])
    # Dilated windows that do not fit: TF's VALID error
    with pytest.raises(ValueError):
        fastconv.pool(x, [3, 3], "MAX", dilations=[3, 3])


@settings(max_examples=20, deadline=None, derandomize=True)
@given(n=st.integers(1, 3), size=st.integers(3, 8), k=st.integers(1, 3), rate=st.integers(1, 3),
       stride=st.integers(1, 3), kind=st.sampled_from(["MAX", "AVG"]),
       padding=st.sampled_from(["SAME", "VALID"]), first=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2 ** 16))
def test_pool_any_geometry_equals_the_oracle(n, size, k, rate, stride, kind, padding, first,
                                             dtype, seed):
    """tf.nn.pool over any rank, window, dilation (VALID, stride 1, TF's rule) or stride."""
    from fastconv import reference
    from fastconv.testing import assert_close

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, *(size,) * n, 2)).astype(dtype)
    x.reshape(-1)[::7] = np.nan
    fmt = None
    if first:
        x = np.ascontiguousarray(np.moveaxis(x, -1, 1))
        fmt = {1: "NCW", 2: "NCHW", 3: "NCDHW"}[n]
    if rate > 1:
        stride, padding = 1, "VALID"
        if (k - 1) * rate + 1 > size:
            with pytest.raises(ValueError):
                fastconv.pool(x, [k] * n, kind, None, padding, fmt, [rate] * n)
            return
    args = (x, [k] * n, kind, [stride] * n, padding, fmt, [rate] * n)
    assert_close(fastconv.pool(*args), reference.pool(*args), dtype)
