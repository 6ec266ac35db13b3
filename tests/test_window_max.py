"""max_pool_with_argmax, dilation2d and erosion2d: bit for bit against TensorFlow's CPU kernels
and the NumPy oracle (values and indices), every CPU algorithm, NaN/inf, ties, SAME/VALID,
strides, dilations, both layouts and dtypes; a property test over any geometry; errors.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastconv
from fastconv import dispatch, reference
from fastconv.testing import assert_exact

F32, F64 = np.float32, np.float64
ALGORITHMS = ["direct", "numpy"]


def _data(rng, shape, dtype, specials=True):
    """Small integers (ties everywhere) with NaN, inf and -inf sprinkled in."""
    x = rng.integers(-2, 3, shape).astype(dtype)
    if specials:
        flat = x.reshape(-1)
        flat[::9] = np.nan
        flat[4::13] = -np.inf
        flat[7::17] = np.inf
    return x


def _layout(x, fmt):
    return np.ascontiguousarray(np.moveaxis(x, -1, 1)) if fmt == "NCHW" else x


ARGMAX_CASES = [(3, 2, "SAME"), (2, 2, "VALID"), ([2, 3], [1, 2], "SAME"), (1, 1, "VALID"),
                ([1, 3, 2, 1], [1, 2, 1, 1], "VALID")]
MORPH_CASES = [(1, "SAME", 2), (2, "VALID", 1), ([1, 2], "SAME", [2, 1]), (3, "SAME", 3),
               ([1, 1, 1, 1], "VALID", [1, 2, 2, 1])]


@pytest.mark.tf
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("case", ARGMAX_CASES, ids=str)
def test_max_pool_with_argmax_equals_tf_bit_for_bit(case, dtype, fmt, algorithm, tf):
    from fastconv import tf_reference

    ksize, strides, padding = case
    if fmt == "NCHW" and len(np.ravel(ksize)) == 4:
        ksize, strides = [1, 1] + list(ksize[1:3]), [1, 1] + list(strides[1:3])
    x = _layout(_data(np.random.default_rng(0), (2, 7, 6, 3), dtype), fmt)
    for include_batch in (False, True):
        for index_dtype in (np.int64, np.int32):
            args = (x, ksize, strides, padding, fmt, index_dtype, include_batch)
            with dispatch.use_algorithm(algorithm):
                got = fastconv.max_pool_with_argmax(*args)
            assert got.argmax.dtype == index_dtype and got.output.dtype == dtype
            assert_exact(tuple(got), tf_reference.max_pool_with_argmax(*args), dtype)
            assert_exact(tuple(got), reference.max_pool_with_argmax(*args), dtype)


def test_argmax_ties_nan_and_minus_inf_follow_tf():
    """TF's rule, probed: the window's first real cell whatever it holds (a NaN or -inf in
    first place stays), then any strictly greater cell; a later NaN never wins."""
    x = np.array([[np.nan, 1, 5], [1, np.nan, 2], [0, 0, 0]], F32).reshape(1, 3, 3, 1)
    out, arg = fastconv.max_pool_with_argmax(x, 2, 1, "VALID")
    np.testing.assert_array_equal(out.ravel(), [np.nan, 5, 1, np.nan])
    np.testing.assert_array_equal(arg.ravel(), [0, 2, 3, 4])
    out, arg = fastconv.max_pool_with_argmax(np.full((1, 3, 3, 1), -np.inf, F32), 2, 1, "SAME")
    np.testing.assert_array_equal(out.ravel(), [-np.inf] * 9)
    np.testing.assert_array_equal(arg.ravel(), np.arange(9))
    ties = np.array([[1, 1, 0], [1, 2, 2], [0, 0, 0]], F64).reshape(1, 3, 3, 1)
    np.testing.assert_array_equal(fastconv.max_pool_with_argmax(ties, 2, 1, "VALID")[1].ravel(),
                                  [4, 4, 4, 4])


def test_argmax_results_are_fresh_writable_arrays():
    x = np.random.default_rng(1).standard_normal((2, 4, 4, 3)).astype(F32)
    first = fastconv.max_pool_with_argmax(x, 2, 2, "VALID")
    second = fastconv.max_pool_with_argmax(x, 2, 2, "VALID")
    assert not np.shares_memory(first.argmax, second.argmax)
    assert first.argmax.flags.writeable and first.output.flags.writeable
    first.argmax[...] = 0
    assert second.argmax.any()


@pytest.mark.tf
@pytest.mark.parametrize("op", ["dilation2d", "erosion2d"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("case", MORPH_CASES, ids=str)
def test_morphology_equals_tf_bit_for_bit(case, dtype, fmt, algorithm, op, tf):
    from fastconv import tf_reference

    strides, padding, dilations = case
    if fmt == "NCHW":
        strides = strides if np.ndim(strides) == 0 or len(strides) == 2 else [1, 1, 1, 1]
        dilations = dilations if np.ndim(dilations) == 0 or len(dilations) == 2 \
            else [1, 1, 2, 2]
    rng = np.random.default_rng(2)
    x = _layout(_data(rng, (2, 8, 7, 3), dtype), fmt)
    f = rng.standard_normal((3, 2, 3)).astype(dtype)
    f[0, 0, 0], f[1, 1, 1] = np.inf, -np.inf
    args = (x, f, strides, padding, fmt, dilations)
    with dispatch.use_algorithm(algorithm):
        got = getattr(fastconv, op)(*args)
    want = getattr(tf_reference, op)(*args)
    assert got.dtype == dtype and got.tobytes() == want.tobytes()  # signed zeros too
    assert got.tobytes() == getattr(reference, op)(*args).tobytes()


def test_dilation_nan_never_wins_and_empty_windows_give_the_lowest_value():
    x = np.array([np.nan, 1, -np.inf], F32).reshape(1, 1, 3, 1)
    f = np.zeros((1, 1, 1), F32)
    np.testing.assert_array_equal(fastconv.dilation2d(x, f, 1, "VALID", "NHWC", 1).ravel(),
                                  [np.finfo(F32).min, 1, np.finfo(F32).min])
    # A dilated window that holds only padding: 1 cell, 2 taps 3 apart, SAME.
    got = fastconv.dilation2d(np.ones((1, 1, 1, 1), F64), np.zeros((1, 2, 1), F64), 1, "SAME",
                              "NHWC", 3)
    assert got.ravel()[0] == np.finfo(F64).min  # taps at -1 and 2 (pad 1 before): no real cell
    np.testing.assert_array_equal(
        got, reference.dilation2d(np.ones((1, 1, 1, 1), F64), np.zeros((1, 2, 1), F64), 1,
                                  "SAME", "NHWC", 3))


@settings(max_examples=25, deadline=None, derandomize=True)
@given(h=st.integers(1, 7), w=st.integers(1, 7), c=st.integers(1, 3), kh=st.integers(1, 3),
       kw=st.integers(1, 3), sh=st.integers(1, 3), sw=st.integers(1, 3), rh=st.integers(1, 2),
       rw=st.integers(1, 2), padding=st.sampled_from(["SAME", "VALID"]),
       fmt=st.sampled_from(["NHWC", "NCHW"]), dtype=st.sampled_from([F32, F64]),
       seed=st.integers(0, 2 ** 16))
def test_any_geometry_equals_the_oracle(h, w, c, kh, kw, sh, sw, rh, rw, padding, fmt, dtype,
                                        seed):
    rng = np.random.default_rng(seed)
    x = _layout(_data(rng, (2, h, w, c), dtype), fmt)
    f = _data(rng, (kh, kw, c), dtype, specials=False)
    if padding == "VALID" and ((kh - 1) * rh + 1 > h or (kw - 1) * rw + 1 > w):
        with pytest.raises(ValueError):
            fastconv.dilation2d(x, f, [sh, sw], padding, fmt, [rh, rw])
        return
    for op in ("dilation2d", "erosion2d"):
        args = (x, f, [sh, sw], padding, fmt, [rh, rw])
        for algorithm in ALGORITHMS:
            with dispatch.use_algorithm(algorithm):
                got = getattr(fastconv, op)(*args)
            assert got.tobytes() == getattr(reference, op)(*args).tobytes()
    if padding == "VALID" and (kh > h or kw > w):
        return
    args = (x, [kh, kw], [sh, sw], padding, fmt, np.int64, True)
    for algorithm in ALGORITHMS:
        with dispatch.use_algorithm(algorithm):
            got = fastconv.max_pool_with_argmax(*args)
        assert_exact(tuple(got), reference.max_pool_with_argmax(*args), dtype)


def test_window_max_errors_name_the_argument():
    x = np.ones((1, 4, 4, 2), F32)
    f = np.ones((2, 2, 2), F32)
    with pytest.raises(TypeError, match="output_dtype must be int32 or int64"):
        fastconv.max_pool_with_argmax(x, 2, 2, "VALID", output_dtype=np.float32)
    with pytest.raises(TypeError, match="include_batch_in_index must be a bool"):
        fastconv.max_pool_with_argmax(x, 2, 2, "VALID", include_batch_in_index=1)
    with pytest.raises(ValueError, match="padding must be 'SAME' or 'VALID' for this op"):
        fastconv.max_pool_with_argmax(x, 2, 2, [[0, 0], [1, 1], [1, 1], [0, 0]])
    with pytest.raises(ValueError, match="input must be 4-D"):
        fastconv.max_pool_with_argmax(x[0], 2, 2, "VALID")
    with pytest.raises(ValueError, match=r"filters' depth \(2\) must equal the input's 3"):
        fastconv.dilation2d(np.ones((1, 4, 4, 3), F32), f, 1, "SAME", "NHWC", 1)
    with pytest.raises(ValueError, match="filters must be 3-D"):
        fastconv.erosion2d(x, f[None], 1, "SAME", "NHWC", 1)
    with pytest.raises(TypeError, match="filters has dtype float64"):
        fastconv.dilation2d(x, f.astype(F64), 1, "SAME", "NHWC", 1)
    with pytest.raises(ValueError, match="data_format"):
        fastconv.dilation2d(x, f, 1, "SAME", "NWHC", 1)


@pytest.mark.tf
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("op", ["dilation2d", "erosion2d"])
def test_morphology_gradients_follow_tf_on_ties(op, dtype, tf):
    """Dilation2DBackpropInput/Filter: the gradient goes to the first strict maximum."""
    from fastconv import tf_reference

    rng = np.random.default_rng(3)
    x = _data(rng, (2, 6, 5, 2), dtype, specials=False)
    f = rng.integers(-1, 2, (2, 3, 2)).astype(dtype)
    y, backward = fastconv.vjp(op, x, f, 1, "SAME", "NHWC", [2, 1])
    dy = rng.standard_normal(y.shape).astype(dtype)
    for got, want in zip(backward(dy), tf_reference.vjp(op, dy, x, f, 1, "SAME", "NHWC",
                                                        [2, 1])):
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == F32 else 1e-12)
