"""Prepared-filter convolutions (``fastconv.prepare_conv2d``): a plan's call equals the plain
``conv2d`` call, derives what its algorithm needs from the filters once, and is immune to the
caller changing their arrays afterwards."""

import threading

import numpy as np
import pytest

import fastconv
from fastconv.dispatch import use_algorithm
from fastconv.testing import assert_close

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


@pytest.mark.parametrize("x_shape, w_shape, strides, padding, data_format, algorithm, dtype", [
    ((2, 8, 8, 16), (3, 3, 16, 24), 1, "SAME", "NHWC", "winograd", F32),
    ((2, 16, 8, 8), (3, 3, 16, 24), 1, "SAME", "NCHW", "winograd", F64),
    ((2, 16, 6, 7), (1, 1, 16, 8), 1, "VALID", "NCHW", "gemm", F32),
    ((2, 7, 6, 8), (3, 3, 1, 8), 2, "SAME", "NHWC", "depthwise", F32),  # groups = channels
    ((2, 7, 6, 8), (3, 3, 4, 6), 1, [[0, 0], [1, 0], [2, 1], [0, 0]], "NHWC", "blocked", F64),
    ((1, 9, 9, 3), (5, 5, 3, 4), 2, "VALID", "NHWC", None, F32),
])
def test_a_plan_equals_the_plain_call_and_prepares_the_filters_once(
        x_shape, w_shape, strides, padding, data_format, algorithm, dtype, rng):
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[-1]).astype(dtype)
    plan = fastconv.prepare_conv2d(w, strides, padding, data_format, bias=b, activation="relu")
    for _ in range(3):  # the first call prepares, the next ones reuse
        x = rng.standard_normal(x_shape).astype(dtype)
        with use_algorithm(algorithm):
            got = plan(x)
            want = fastconv.conv2d(x, w, strides, padding, data_format, bias=b,
                                   activation="relu")
        np.testing.assert_array_equal(got, want)
    if algorithm in ("winograd", "gemm", "depthwise"):  # those derive a form from the filters
        assert len(plan._cache) == 1


def test_the_winograd_transform_runs_once_per_plan(rng, monkeypatch):
    from fastconv.cpu import backend

    calls = []
    transform = backend.transform_filters
    monkeypatch.setattr(backend, "transform_filters",
                        lambda *args: calls.append(1) or transform(*args))
    w = rng.standard_normal((3, 3, 16, 16)).astype(F32)
    plan = fastconv.prepare_conv2d(w, 1, "SAME")
    x = rng.standard_normal((1, 6, 6, 16)).astype(F32)
    with use_algorithm("winograd"):
        for _ in range(4):
            plan(x)
        assert len(calls) == 1
        fastconv.conv2d(x, w, 1, "SAME")  # plain calls transform every time
        fastconv.conv2d(x, w, 1, "SAME")
    assert len(calls) == 3


def test_a_plan_keeps_its_own_copy_of_the_filters(rng):
    w = rng.standard_normal((3, 3, 4, 5)).astype(F32)
    b = np.ones(5, F32)
    x = rng.standard_normal((1, 6, 6, 4)).astype(F32)
    plan = fastconv.prepare_conv2d(w, 1, "SAME", bias=b)
    want = fastconv.conv2d(x, w, 1, "SAME", bias=b)
    w[...] = 0
    b[...] = 7
    np.testing.assert_array_equal(plan(x), want)
    assert not plan.filters.flags.writeable and not plan.bias.flags.writeable
    assert "3x3, 4 -> 5 channels" in repr(plan)


def test_a_plan_takes_what_conv2d_takes(rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    da = pytest.importorskip("dask.array")
    w = rng.standard_normal((3, 3, 16, 8)).astype(F32)
    x = rng.standard_normal((3, 10, 9, 16)).astype(F32)
    plan = fastconv.prepare_conv2d(w, 1, "SAME", activation="gelu")
    lazy = plan(da.from_array(x, chunks=(1, 5, 9, 16)))
    assert_close(lazy.compute(), fastconv.conv2d(x, w, 1, "SAME", activation="gelu"), F32)
    half = ml_dtypes.bfloat16
    half_plan = fastconv.prepare_conv2d(w.astype(half), 1, "SAME")
    got = half_plan(x.astype(half))
    assert got.dtype == half
    np.testing.assert_array_equal(got, fastconv.conv2d(x.astype(half), w.astype(half), 1,
                                                       "SAME"))
    grouped = plan(rng.standard_normal((1, 5, 5, 32)).astype(F32))  # 2 groups of 16
    assert grouped.shape == (1, 5, 5, 8)


def test_threads_share_a_plan(rng):
    w = rng.standard_normal((3, 3, 16, 16)).astype(F32)
    plan = fastconv.prepare_conv2d(w, 1, "SAME")
    inputs = [rng.standard_normal((1, 8, 8, 16)).astype(F32) for _ in range(4)]
    results = [None] * 4

    def work(i):
        with use_algorithm("winograd"):
            results[i] = plan(inputs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for x, got in zip(inputs, results):
        with use_algorithm("winograd"):
            np.testing.assert_array_equal(got, fastconv.conv2d(x, w, 1, "SAME"))


@pytest.mark.parametrize("call, error, match", [
    (lambda w: fastconv.prepare_conv2d(w, 1, "FULL"), ValueError, "padding"),
    (lambda w: fastconv.prepare_conv2d(w, 0, "SAME"), ValueError, "strides"),
    (lambda w: fastconv.prepare_conv2d(w[0], 1, "SAME"), ValueError, "filters must have rank 4"),
    (lambda w: fastconv.prepare_conv2d(w, 1, "SAME", bias=np.ones(3, np.float32)), ValueError,
     r"bias must have shape \(5,\)"),
    (lambda w: fastconv.prepare_conv2d(w, 1, "SAME", activation="softmax"), ValueError,
     "activation"),
    (lambda w: fastconv.prepare_conv2d(w, 1, "SAME", "NWHC"), ValueError, "data_format"),
    (lambda w: fastconv.prepare_conv2d(w.astype(np.int32), 1, "SAME"), TypeError, "dtype"),
])
def test_bad_arguments_are_refused_when_the_plan_is_made(call, error, match):
    with pytest.raises(error, match=match):
        call(np.ones((3, 3, 4, 5), np.float32))


def test_an_input_the_filters_do_not_fit_is_refused_at_the_call():
    plan = fastconv.prepare_conv2d(np.ones((3, 3, 4, 5), np.float32), 1, "SAME")
    with pytest.raises(ValueError, match="not a multiple of the filters' in_channels"):
        plan(np.ones((1, 6, 6, 3), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        plan(np.ones((1, 6, 6, 4), np.float64))
