"""Edge semantics pinned against TensorFlow's CPU results, one test per promise.

NaN and +-inf in convolutions and in max/average/global pooling (windows that are all NaN or all
-inf included), negative inputs with max pooling and padding, SAME with a kernel larger than the
input, batch 0, size-1 dims, huge and tiny magnitudes in average pooling, float64 kept float64.
Every convolution case also runs under each CPU algorithm forced in turn.

Two places where TF itself is not one thing, and what fastconv does there:

* Non-finite *filter* values over SAME/explicit padding: TF's Eigen kernels (float64, and float32
  with ``TF_ENABLE_ONEDNN_OPTS=0``) multiply the zero padding by the filter (``0 * inf = NaN`` at
  the borders); its oneDNN float32 kernel skips padded taps. fastconv follows the Eigen kernels
  for both dtypes.
* Subnormal numbers: TF's CPU kernels flush them to zero (FTZ/DAZ); fastconv keeps gradual
  underflow. The difference is below the smallest normal number, far inside the suite's
  tolerance.
"""

import numpy as np
import pytest

import fastconv
from conftest import LAYOUTS, assert_close, assert_exact, to_first, to_last
from fastconv import dispatch

F32, F64 = np.float32, np.float64
# NaN/inf inputs make NumPy (the oracle, np.pad) warn; the values are what is checked.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
NAN, INF = np.nan, np.inf
CONV = {1: fastconv.conv1d, 2: fastconv.conv2d, 3: fastconv.conv3d}
#: The dispatcher's choice (None) and every registered CPU conv algorithm, forced in turn.
CONV_ALGORITHMS = [None] + [impl.name for impl in dispatch.implementations("conv", "cpu")]
TRANSPOSE_ALGORITHMS = [None] + [impl.name for impl in
                                 dispatch.implementations("conv_transpose", "cpu")]
POOL_ALGORITHMS = {kind: [None] + [impl.name for impl in dispatch.implementations(f"{kind}_pool")]
                   for kind in ("max", "avg")}


def _layout(x_last, channels_first):
    """A channels-last array in the requested layout (a contiguous copy)."""
    return np.ascontiguousarray(to_first(x_last, channels_first))


def _forced(algorithm, call):
    """``call()`` with ``algorithm`` forced (None: the dispatcher's choice)."""
    if algorithm is None:
        return call()
    with dispatch.use_algorithm(algorithm):
        return call()


def _each_algorithm(call, algorithms=CONV_ALGORITHMS):
    """``(name, call())`` for the dispatcher's choice and every algorithm that can run it."""
    results = []
    for algorithm in algorithms:
        try:
            results.append((algorithm, _forced(algorithm, call)))
        except ValueError as error:
            if "cannot run" not in str(error):
                raise
    assert len(results) >= 3  # the default and at least two forced algorithms
    return results


def _check_each(call, check, algorithms=CONV_ALGORITHMS):
    """Run ``check(result)`` on every algorithm's result; a failure names the algorithm."""
    for algorithm, got in _each_algorithm(call, algorithms):
        try:
            check(got)
        except AssertionError as error:
            raise AssertionError(f"algorithm {algorithm or 'chosen by the dispatcher'}: "
                                 f"{error}") from None


def _sprinkle(shape, dtype, seed):
    """Standard normals with NaN, +inf and -inf at fixed, separated cells."""
    x = np.random.default_rng(seed).standard_normal(shape)
    flat = x.reshape(-1)
    step = max(1, flat.size // 7)
    flat[step::3 * step] = NAN
    flat[2 * step::3 * step] = INF
    flat[3 * step::3 * step] = -INF
    return x.astype(dtype)


# ----------------------------------------------------------------------------- NaN/inf: convs

@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("channels_first", [False, True], ids=["last", "first"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_conv_nan_and_inf_inputs_match_tf(n, channels_first, dtype, oracle):
    sizes = {1: (11,), 2: (6, 7), 3: (4, 5, 4)}[n]
    x_last = _sprinkle((2, *sizes, 3), dtype, seed=n)
    w = np.random.default_rng(10 + n).standard_normal((3,) * n + (3, 4)).astype(dtype)
    x = _layout(x_last, channels_first)
    expected = oracle.conv(x, w, (1,) * n, "SAME", None, channels_first)
    assert np.isnan(expected).any() and np.isinf(expected).any()  # the case has teeth
    _check_each(lambda: CONV[n](x, w, 1, "SAME", LAYOUTS[n][channels_first]),
                lambda got: assert_close(got, expected, dtype), CONV_ALGORITHMS)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_depthwise_and_transpose_nan_and_inf_inputs_match_tf(dtype, oracle):
    x = _sprinkle((1, 6, 5, 3), dtype, seed=4)
    w = np.random.default_rng(5).standard_normal((3, 3, 3, 1)).astype(dtype)
    expected = oracle.depthwise(x, w, (1, 1), "SAME")
    _check_each(lambda: fastconv.depthwise_conv2d(x, w, 1, "SAME"),
                lambda got: assert_close(got, expected, dtype), CONV_ALGORITHMS)
    wt = np.random.default_rng(6).standard_normal((3, 3, 2, 3)).astype(dtype)
    expected = oracle.conv_transpose(x, wt, (12, 10), (2, 2), "SAME")
    assert np.isnan(expected).any() and np.isinf(expected).any()
    _check_each(lambda: fastconv.conv2d_transpose(x, wt, (1, 12, 10, 2), 2, "SAME"),
                lambda got: assert_close(got, expected, dtype), TRANSPOSE_ALGORITHMS)


@pytest.mark.parametrize("activation", ["relu", "relu6", "sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_fused_activations_of_nan_and_inf_match_tf(activation, dtype, oracle):
    """relu(inf) = inf, relu6(inf) = 6, sigmoid(-inf) = 0, tanh(inf) = 1; NaN stays NaN."""
    values = np.array([NAN, INF, -INF, 0.0, -0.0, 7.0, -7.0, 1e30, -1e30], dtype)
    x = values.reshape(1, -1, 1)
    w = np.ones((1, 1, 1), dtype)
    expected = oracle.conv(x, w, (1,), "VALID", None, False, None, activation)
    assert np.isnan(expected[0, 0, 0])

    _check_each(lambda: fastconv.conv1d(x, w, 1, "VALID", activation=activation),
                lambda got: assert_close(got, expected, dtype), CONV_ALGORITHMS)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_infinite_filters_over_padding_follow_tf_eigen_kernels(dtype, tf):
    """0 * inf = NaN where an infinite tap meets zero padding, as TF's Eigen kernels compute
    (TF's float64 kernel here; its oneDNN float32 kernel skips padded taps instead)."""
    x = np.random.default_rng(7).standard_normal((1, 4, 4, 1))
    w = np.ones((3, 3, 1, 1))
    w[0, 0, 0, 0] = INF
    padding = [[0, 0], [1, 1], [1, 1], [0, 0]]
    expected = tf.nn.conv2d(tf.constant(x), tf.constant(w), 1, padding).numpy()  # float64
    assert np.isnan(expected[0, 0]).all() and np.isnan(expected[0, :, 0]).all()
    _check_each(lambda: fastconv.conv2d(x.astype(dtype), w.astype(dtype), 1, padding),
                lambda got: assert_close(got, expected.astype(dtype), dtype),
                CONV_ALGORITHMS)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("strides", [1, 2])
def test_infinite_depthwise_weights_over_padding_give_nan_in_both_layouts(dtype, strides, oracle):
    # Both depthwise kernels skip the taps in the padding (channels-last across channels,
    # channels-first along each plane's rows), so each must put back TF's 0 * inf = NaN.
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 7, 6, 3)).astype(dtype)
    w = rng.standard_normal((3, 3, 3, 1)).astype(dtype)
    w[0, 2, 1, 0], w[2, 0, 2, 0] = INF, NAN
    expected = oracle.depthwise(x, w, (strides, strides), "SAME")
    assert np.isnan(expected[..., 1]).any() and not np.isnan(expected[..., 0]).any()
    for channels_first in (False, True):
        data = np.ascontiguousarray(np.moveaxis(x, -1, 1)) if channels_first else x
        got = fastconv.depthwise_conv2d(data, w, strides, "SAME",
                                        "NCHW" if channels_first else "NHWC")
        assert_close(np.moveaxis(got, 1, -1) if channels_first else got, expected, dtype)


# ----------------------------------------------------------------------------- NaN/inf: pooling

# One channel of a 4x5 map whose 2x2 windows include: all NaN, all -inf, NaN with -inf, NaN with
# +inf, NaN with finite values and plain finite windows.
SPECIAL_2D = np.array([[NAN, NAN, -INF, -INF, 2.5],
                       [NAN, NAN, -INF, -INF, NAN],
                       [0.5, NAN, -3.0, INF, NAN],
                       [NAN, -INF, -INF, NAN, -1.0]])
SPECIAL_1D = np.array([NAN, NAN, -INF, -INF, 2.5, NAN, INF, -INF, 0.5, NAN, -3.0, INF, INF, NAN,
                       -1.0])


def _special(n, dtype):
    """SPECIAL_2D laid out for ``n`` spatial dims, 2 channels (the second one negated)."""
    base = {1: SPECIAL_1D, 2: SPECIAL_2D, 3: np.stack([SPECIAL_2D, SPECIAL_2D])}[n]
    return np.stack([base, -base], axis=-1)[None].astype(dtype)


@pytest.mark.parametrize("padding", ["SAME", "VALID", "explicit"])
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("channels_first", [False, True], ids=["last", "first"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_max_pool_nan_and_inf_windows_match_tf(n, channels_first, dtype, padding, oracle):
    """All-NaN and all -inf windows give the lowest finite value; NaN never wins; +inf does."""
    x = _layout(_special(n, dtype), channels_first)
    pads = ((1, 1),) * n if padding == "explicit" else padding
    arg = [list(p) for p in pads] if padding == "explicit" else padding
    expected = oracle.pool("max", x, (2,) * n, (1,) * n, pads, channels_first)
    lowest = np.finfo(dtype).min
    assert (expected == lowest).any() and (expected == INF).any()
    assert not np.isnan(expected).any()
    _check_each(lambda: getattr(fastconv, f"max_pool{n}d")(x, 2, 1, arg,
                                                           LAYOUTS[n][channels_first]),
                lambda got: assert_exact(got, expected, dtype), POOL_ALGORITHMS["max"])


def test_max_pool3d_oracle_rewrite_equals_tf_maxpool3d_on_nan_and_inf(tf, tf_oracle):
    """The TF oracle's float64/explicit 3-D max pooling emulates TF's rule: check it on TF's
    own float32 kernel."""
    x = _special(3, F32)
    real = tf.nn.max_pool3d(tf.constant(x), 2, 1, "SAME").numpy()
    emulated = np.asarray(tf_oracle._pool3d_rewrite("max", x, (2, 2, 2), (1, 1, 1), "SAME"))
    # TF's oneDNN MaxPool3D is not one thing on windows holding a NaN: NaN never wins on
    # AVX-512 machines, but can on AVX2 ones (vmaxps keeps whichever operand comes second);
    # fastconv and the rewrite follow the 2-D kernels' rule there (docs/guarantees.md).
    # Nor on all -inf windows: -inf on AVX2, the lowest finite value (as the 2-D kernels)
    # on AVX-512.
    clean = ~_windows_with_nan(x, tf) & (real != -np.inf)
    np.testing.assert_array_equal(emulated[clean], real[clean])
    assert clean.any() and not clean.all()


def _windows_with_nan(x, tf):
    """Where a 2x2x2 stride-1 SAME window of ``x`` holds a NaN."""
    marks = tf.constant(np.isnan(x).astype(F32))
    return tf.nn.max_pool3d(marks, 2, 1, "SAME").numpy() > 0


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("channels_first", [False, True], ids=["last", "first"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_avg_pool_nan_and_inf_match_tf(n, channels_first, dtype, oracle):
    """NaN poisons its windows; +inf alone gives inf; +inf with -inf gives NaN."""
    x = _layout(_special(n, dtype), channels_first)
    for padding in ("SAME", "VALID"):
        expected = oracle.pool("avg", x, (2,) * n, (1,) * n, padding, channels_first)
        _check_each(lambda: getattr(fastconv, f"avg_pool{n}d")(x, 2, 1, padding,
                                                               LAYOUTS[n][channels_first]),
                    lambda got: assert_close(got, expected, dtype), POOL_ALGORITHMS["avg"])
    finite = _layout(np.where(np.isnan(_special(n, dtype)), 1.0, _special(n, dtype)),
                     channels_first).astype(dtype)
    got = getattr(fastconv, f"avg_pool{n}d")(finite, 2, 1, "VALID", LAYOUTS[n][channels_first])
    assert_close(got, oracle.pool("avg", finite, (2,) * n, (1,) * n, "VALID", channels_first), dtype)
    assert np.isinf(got).any() and np.isnan(got).any()  # inf alone, and inf - inf


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_global_pools_of_nan_and_inf_match_keras(kind, dtype, data_format, oracle):
    """Global max propagates NaN and keeps -inf (tf.reduce_max), unlike max pooling."""
    channels = [np.full((3, 3), NAN), np.full((3, 3), -INF), np.full((3, 3), INF),
                np.where(np.eye(3) > 0, INF, -INF), np.where(np.eye(3) > 0, NAN, 1.0),
                np.arange(9.0).reshape(3, 3)]
    x_last = np.stack(channels, axis=-1)[None].astype(dtype)
    channels_first = data_format == "NCHW"
    x = _layout(x_last, channels_first)
    got = getattr(fastconv, f"global_{kind}_pool2d")(x, data_format)
    expected = oracle.global_pool(kind, x, channels_first)
    (assert_exact if kind == "max" else assert_close)(got, expected, dtype)
    if kind == "max":
        np.testing.assert_array_equal(got[0], np.array([NAN, -INF, INF, INF, NAN, 8.0], dtype))


# ----------------------------------------------------------------------------- negative inputs

@pytest.mark.parametrize("padding", ["SAME", "explicit"])
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("channels_first", [False, True], ids=["last", "first"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_max_pool_of_negative_inputs_never_returns_padding(n, channels_first, dtype, padding,
                                                           oracle):
    sizes = {1: (7,), 2: (5, 4), 3: (3, 4, 3)}[n]
    x_last = -1.0 - np.random.default_rng(n).random((2, *sizes, 3)).astype(dtype)
    x = _layout(x_last, channels_first)
    pads = ((2, 1),) * n if padding == "explicit" else "SAME"
    arg = [list(p) for p in pads] if padding == "explicit" else "SAME"
    got = getattr(fastconv, f"max_pool{n}d")(x, 3, 2, arg, LAYOUTS[n][channels_first])
    assert_exact(got, oracle.pool("max", x, (3,) * n, (2,) * n, pads, channels_first), dtype)
    assert (got <= -1.0).all()


def test_max_pool_negative_arange_by_hand():
    # -1 .. -9 on a 3x3 map, SAME 3x3 windows: each output is the least negative real neighbour.
    x = -np.arange(1, 10, dtype=F32).reshape(1, 3, 3, 1)
    expected = np.array([[-1, -1, -2], [-1, -1, -2], [-4, -4, -5]], F32)
    assert_exact(fastconv.max_pool2d(x, 3, 1, "SAME")[0, :, :, 0], expected, F32)
    # explicit (2, 2) padding, ksize 3, stride 2: windows see rows/cols {0}, {0, 1, 2}, {2}
    got = fastconv.max_pool2d(x, 3, 2, [[2, 2], [2, 2]])[0, :, :, 0]
    assert_exact(got, np.array([[-1, -1, -3], [-1, -1, -3], [-7, -7, -9]], F32), F32)


# ----------------------------------------------------------------------------- SAME, k > n

@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("channels_first", [False, True], ids=["last", "first"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_same_with_a_kernel_larger_than_the_input(n, channels_first, stride, oracle):
    sizes = {1: (2,), 2: (2, 3), 3: (1, 2, 3)}[n]
    kernel = {1: (5,), 2: (5, 7), 3: (4, 5, 6)}[n]
    rng = np.random.default_rng(n * 10 + stride)
    x = _layout(rng.standard_normal((2, *sizes, 3)), channels_first)
    w = rng.standard_normal(kernel + (3, 4))
    strides = (stride,) * n
    fmt = LAYOUTS[n][channels_first]
    expected = oracle.conv(x, w, strides, "SAME", None, channels_first)
    _check_each(lambda: CONV[n](x, w, stride, "SAME", fmt),
                lambda got: assert_close(got, expected, F64))
    for kind in ("max", "avg"):
        got = getattr(fastconv, f"{kind}_pool{n}d")(x, list(kernel), stride, "SAME", fmt)
        expected = oracle.pool(kind, x, kernel, strides, "SAME", channels_first)
        (assert_exact if kind == "max" else assert_close)(got, expected, F64)
    if n == 2:
        wd = rng.standard_normal(kernel + (3, 2))
        got = fastconv.depthwise_conv2d(x, wd, stride, "SAME", fmt)
        assert_close(got, oracle.depthwise(x, wd, strides, "SAME", (1, 1), channels_first), F64)


# ----------------------------------------------------------------------------- batch 0, size 1

def _every_op(channels_first, dtype, batch, sizes):
    """(name, call) for every op on tiny inputs of ``sizes`` per rank (channels 3)."""
    rng = np.random.default_rng(0)
    calls = []
    for n in (1, 2, 3):
        fmt = LAYOUTS[n][channels_first]
        x = _layout(rng.standard_normal((batch, *sizes[:n], 3)).astype(dtype), channels_first)
        w = rng.standard_normal((1,) * n + (3, 2)).astype(dtype)
        b = rng.standard_normal(2).astype(dtype)
        calls.append((f"conv{n}d", lambda x=x, w=w, b=b, n=n, fmt=fmt: CONV[n](
            x, w, 1, "SAME", fmt, bias=b, activation="tanh")))
        for kind in ("max", "avg"):
            calls.append((f"{kind}_pool{n}d", lambda x=x, n=n, kind=kind, fmt=fmt: getattr(
                fastconv, f"{kind}_pool{n}d")(x, 1, 1, "VALID", fmt)))
        if n == 2:
            dw = rng.standard_normal((1, 1, 3, 2)).astype(dtype)
            tw = rng.standard_normal((1, 1, 2, 3)).astype(dtype)
            out_shape = (batch, 2, *sizes[:2]) if channels_first else (batch, *sizes[:2], 2)
            calls += [
                ("depthwise_conv2d", lambda x=x, fmt=fmt: fastconv.depthwise_conv2d(
                    x, dw, 1, "SAME", fmt)),
                ("conv2d_transpose", lambda x=x, fmt=fmt: fastconv.conv2d_transpose(
                    x, tw, out_shape, 1, "SAME", fmt)),
                ("global_max_pool2d", lambda x=x, fmt=fmt: fastconv.global_max_pool2d(x, fmt)),
                ("global_avg_pool2d", lambda x=x, fmt=fmt: fastconv.global_avg_pool2d(
                    x, fmt, keepdims=True)),
                ("zero_pad2d", lambda x=x, fmt=fmt: fastconv.zero_pad2d(x, ((1, 0), (0, 2)), fmt)),
            ]
    return calls


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("channels_first", [False, True], ids=["last", "first"])
def test_batch_zero_gives_the_batch_one_shape_with_zero_rows(channels_first, dtype):
    ones = dict(_every_op(channels_first, dtype, 1, (3, 4, 2)))
    for name, call in _every_op(channels_first, dtype, 0, (3, 4, 2)):
        got = call()
        assert isinstance(got, np.ndarray) and got.dtype == dtype, name
        assert got.shape == (0,) + ones[name]().shape[1:], name


@pytest.mark.parametrize("dtype", [F32, F64])
def test_batch_zero_matches_tf_shapes(dtype, oracle):
    """TF's shapes for batch 1 with the batch set to 0. (TF's float32 oneDNN conv2d returns
    the *input's* shape for an empty batch, (0, 5, 4, 3) here; its float64 kernel gets it
    right, and so does fastconv.)"""
    x, x1 = np.zeros((0, 5, 4, 3), dtype), np.ones((1, 5, 4, 3), dtype)
    w = np.ones((3, 3, 3, 2), dtype)
    pairs = [
        (fastconv.conv2d(x, w, 2, "SAME"), oracle.conv(x1, w, (2, 2), "SAME")),
        (fastconv.conv1d(x[:, 0], w[0], 2, "VALID"), oracle.conv(x1[:, 0], w[0], (2,), "VALID")),
        (fastconv.depthwise_conv2d(x, w, 2, "SAME"), oracle.depthwise(x1, w, (2, 2), "SAME")),
        (fastconv.max_pool2d(x, 2, 2, "VALID"), oracle.pool("max", x1, (2, 2), (2, 2), "VALID")),
        (fastconv.avg_pool1d(x[:, 0], 3, 1, "SAME"), oracle.pool("avg", x1[:, 0], (3,), (1,), "SAME")),
        (fastconv.global_avg_pool2d(x), oracle.global_pool("avg", x1)),
        (fastconv.zero_pad2d(x, 2), oracle.zero_pad(x1, 2)),
    ]
    for got, expected in pairs:
        assert got.dtype == dtype and got.shape == (0,) + expected.shape[1:]


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("channels_first", [False, True], ids=["last", "first"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_size_one_dims_match_tf(n, channels_first, dtype, oracle):
    """Batch, channels and every spatial dim of size 1, with 1-wide and wider kernels."""
    x = _layout(np.full((1,) * (n + 2), 2.5, dtype), channels_first)
    fmt = LAYOUTS[n][channels_first]
    ones, bias = (1,) * n, np.ones(1, dtype)
    for k in (1, 3):
        w = np.full((k,) * n + (1, 1), 0.5, dtype)
        for padding in (("SAME", "VALID") if k == 1 else ("SAME",)):
            expected = oracle.conv(x, w, ones, padding, None, channels_first, bias)
            assert expected.reshape(-1).tolist() == [2.25]
            _check_each(lambda: CONV[n](x, w, 1, padding, fmt, bias=bias),
                        lambda got: assert_close(got, expected, dtype))
        for kind in ("max", "avg"):
            got = getattr(fastconv, f"{kind}_pool{n}d")(x, k, 2, "SAME", fmt)
            assert_close(got, oracle.pool(kind, x, (k,) * n, (2,) * n, "SAME", channels_first), dtype)
            assert got.reshape(-1).tolist() == [2.5]
    if n == 2:
        assert_exact(fastconv.global_max_pool2d(x, fmt), np.full((1, 1), 2.5), dtype)
        assert_close(fastconv.depthwise_conv2d(x, np.full((3, 3, 1, 1), 0.5, dtype), 1, "SAME",
                                               fmt), np.full((1, 1, 1, 1), 1.25), dtype)
        assert_exact(fastconv.zero_pad2d(x, 0, fmt), x, dtype)


# ----------------------------------------------------------------------------- magnitudes

@pytest.mark.parametrize("n", [1, 2, 3])
def test_avg_pool_huge_float32_overflows_exactly_where_tf_does(n, oracle):
    """TF sums float32 windows in float32: the mean is inf exactly when the window's sum
    overflows (4 x 3e38 does, 9 x 3e37 does not), never from a float64 detour or a rescale."""
    fmt = LAYOUTS[n][0]
    for value, k in ((3e38, 2), (3e37, 3), (1.1e38, 3), (1e37, 3), (3.4e38, 1)):
        x = np.full((1,) + (k * 2,) * n + (2,), value, F32)
        got = getattr(fastconv, f"avg_pool{n}d")(x, k, k, "VALID", fmt)
        expected = oracle.pool("avg", x, (k,) * n, (k,) * n, "VALID")
        assert_close(got, expected, F32)
        window_sum = float(np.float32(value)) * k**n  # every case is >= 3% away from the limit
        assert np.isfinite(got).all() == (window_sum < float(np.finfo(F32).max)), (value, k)


def test_avg_pool_huge_mixed_signs_sum_in_tf_order(oracle):
    """Window cells are added in row-major order, as TF does: B + B overflows before -B."""
    big = np.float32(3e38)
    cases = {(big, big, -big, -big): INF, (-big, -big, big, big): -INF,
             (big, -big, big, -big): 0.0, (-big, big, big, -big): 0.0}
    for cells, want in cases.items():
        x = np.array(cells, F32).reshape(1, 2, 2, 1)
        got = fastconv.avg_pool2d(x, 2, 2, "VALID")
        assert_close(got, oracle.pool("avg", x, (2, 2), (2, 2), "VALID"), F32)
        assert got.reshape(-1).tolist() == [want]


def test_global_avg_pool_huge_float32_matches_keras(oracle):
    x = np.full((1, 3, 3, 2), 3e38, F32)
    x[..., 1] = 3e37
    got = fastconv.global_avg_pool2d(x)
    assert_close(got, oracle.global_pool("avg", x), F32)
    assert got[0, 0] == INF and np.isfinite(got[0, 1])


def test_avg_pool_float64_has_float64_range(oracle):
    """2e38 overflows float32 sums but not float64: the output stays finite and float64."""
    x = np.full((1, 3, 3, 1), 2e38, F64)
    got = fastconv.avg_pool2d(x, 3, 3, "VALID")
    assert_close(got, oracle.pool("avg", x, (3, 3), (3, 3), "VALID"), F64)
    assert got.dtype == F64 and got.reshape(-1).tolist() == [2e38]
    huge = np.full((1, 2, 2, 1), 1.7e308, F64)  # 4 x 1.7e308 overflows float64 too, as in TF
    assert_close(fastconv.avg_pool2d(huge, 2, 2, "VALID"),
                 oracle.pool("avg", huge, (2, 2), (2, 2), "VALID"), F64)


@pytest.mark.parametrize("dtype, scale", [(F32, 1e-30), (F32, 1.5e-38), (F64, 1e-300)])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_avg_pool_tiny_normal_magnitudes_keep_relative_precision(n, dtype, scale, oracle):
    """Tiny (normal) values: equal to TF to the dtype's relative precision, not just absolutely."""
    rng = np.random.default_rng(n)
    x = (1 + rng.random((1,) + (4,) * n + (3,))).astype(dtype) * dtype(scale)
    got = getattr(fastconv, f"avg_pool{n}d")(x, 2, 2, "SAME")
    expected = oracle.pool("avg", x, (2,) * n, (2,) * n, "SAME")
    rtol = 1e-6 if dtype == F32 else 1e-14
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=0)
    assert got.dtype == dtype and (got > 0).all()


def test_avg_pool_subnormals_keep_gradual_underflow():
    """TF flushes subnormals to zero; fastconv keeps them (documented; inside the tolerance)."""
    tiny = np.finfo(F32).smallest_subnormal
    x = np.full((1, 2, 2, 1), 3 * tiny, F32)
    got = fastconv.avg_pool2d(x, 2, 2, "VALID")
    assert got.reshape(-1).tolist() == [float(3 * tiny)]
    assert_close(got, np.zeros((1, 1, 1, 1)), F32)  # what TF's CPU kernel returns


# ----------------------------------------------------------------------------- float64 stays

def _float64_only_values(shape, seed):
    """Values that float32 cannot hold: 1 + multiples of 2**-40."""
    steps = np.random.default_rng(seed).integers(-1000, 1000, size=shape)
    return 1.0 + steps * 2.0**-40


@pytest.mark.parametrize("channels_first", [False, True], ids=["last", "first"])
def test_float64_is_kept_float64_by_every_op(channels_first, oracle):
    """Every op returns float64 for float64 input, with float64 precision (a float32 pass in
    between would be off by ~1e-7, far over the 1e-12 tolerance)."""
    for n in (1, 2, 3):
        fmt = LAYOUTS[n][channels_first]
        sizes = {1: (9,), 2: (5, 6), 3: (3, 4, 5)}[n]
        x = _layout(_float64_only_values((2, *sizes, 3), n), channels_first)
        w = _float64_only_values((2,) * n + (3, 4), 10 + n)
        expected = oracle.conv(x, w, (1,) * n, "SAME", None, channels_first)
        _check_each(lambda: CONV[n](x, w, 1, "SAME", fmt),
                    lambda got: assert_close(got, expected, F64))
        for kind in ("max", "avg"):
            got = getattr(fastconv, f"{kind}_pool{n}d")(x, 2, 1, "SAME", fmt)
            expected = oracle.pool(kind, x, (2,) * n, (1,) * n, "SAME", channels_first)
            (assert_exact if kind == "max" else assert_close)(got, expected, F64)
    fmt = LAYOUTS[2][channels_first]
    x = _layout(_float64_only_values((2, 5, 6, 3), 20), channels_first)
    dw = _float64_only_values((2, 2, 3, 2), 21)
    assert_close(fastconv.depthwise_conv2d(x, dw, 1, "SAME", fmt),
                 oracle.depthwise(x, dw, (1, 1), "SAME", (1, 1), channels_first), F64)
    tw = _float64_only_values((3, 3, 2, 3), 22)
    shape = (2, 2, 10, 12) if channels_first else (2, 10, 12, 2)
    assert_close(fastconv.conv2d_transpose(x, tw, shape, 2, "SAME", fmt),
                 oracle.conv_transpose(x, tw, (10, 12), (2, 2), "SAME", (1, 1), channels_first), F64)
    assert_exact(fastconv.global_max_pool2d(x, fmt), oracle.global_pool("max", x, channels_first),
                 F64)
    assert_close(fastconv.global_avg_pool2d(x, fmt), oracle.global_pool("avg", x, channels_first),
                 F64)
    assert_exact(fastconv.zero_pad2d(x, 1, fmt), oracle.zero_pad(x, 1, channels_first), F64)
