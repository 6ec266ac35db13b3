"""global_max/avg_pool2d vs Keras GlobalMax/AveragePooling2D, zero_pad2d vs Keras ZeroPadding2D."""

import numpy as np
import pytest

import fastconv

F32, F64 = np.float32, np.float64
GLOBAL = {"max": fastconv.global_max_pool2d, "avg": fastconv.global_avg_pool2d}


def _make(rand, batch, channels, spatial, channels_first, dtype):
    shape = (batch, channels, *spatial) if channels_first else (batch, *spatial, channels)
    return rand(shape, dtype)


@pytest.mark.grid(kind=["max", "avg"], layout=["NHWC", "NCHW", "channels_last", "channels_first"],
                  dtype=[F32, F64], keepdims=[False, True], spatial=[(1, 1), (5, 4), (6, 7), (1, 9)],
                  batch=[1, 3], random=4, seed=21)
def test_global_pool_matches_keras(case, rand, oracle, assert_close, assert_exact):
    channels_first = case.layout in ("NCHW", "channels_first")
    x = _make(rand, case.batch, 5, case.spatial, channels_first, case.dtype)
    got = GLOBAL[case.kind](x, case.layout, keepdims=case.keepdims)
    expected_shape = ((case.batch, 5, 1, 1) if channels_first else (case.batch, 1, 1, 5)) \
        if case.keepdims else (case.batch, 5)
    assert got.shape == expected_shape
    expected = oracle.global_pool(case.kind, x, channels_first, case.keepdims)
    (assert_exact if case.kind == "max" else assert_close)(got, expected, case.dtype)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_global_pool_nan_propagates_like_keras(kind, oracle, assert_close):
    x = np.arange(24, dtype=F32).reshape(1, 3, 4, 2)
    x[0, 1, 2, 0] = np.nan
    got = GLOBAL[kind](x)
    assert_close(got, oracle.global_pool(kind, x), F32)
    assert np.isnan(got[0, 0]) and not np.isnan(got[0, 1])


def test_global_pools_by_hand(assert_exact, assert_close):
    x = np.arange(8, dtype=F32).reshape(1, 2, 2, 2)
    assert_exact(fastconv.global_max_pool2d(x), np.array([[6, 7]]), F32)
    assert_close(fastconv.global_avg_pool2d(x), np.array([[3, 4]]), F32)
    # The same values read channels-first: channel 0 is [0, 1, 2, 3].
    assert_exact(fastconv.global_max_pool2d(x, "NCHW", keepdims=True),
                 np.array([3, 7]).reshape(1, 2, 1, 1), F32)
    assert_close(fastconv.global_avg_pool2d(x, "NCHW"), np.array([[1.5, 5.5]]), F32)


@pytest.mark.grid(layout=["NHWC", "NCHW", "channels_first"], dtype=[F32, F64],
                  padding=[0, 1, 2, (1, 3), ((1, 2), (0, 3)), [[2, 0], [1, 1]]],
                  spatial=[(4, 5), (1, 1)], random=2, seed=22)
def test_zero_pad2d_matches_keras(case, rand, oracle, assert_exact):
    channels_first = case.layout in ("NCHW", "channels_first")
    x = _make(rand, 2, 3, case.spatial, channels_first, case.dtype)
    got = fastconv.zero_pad2d(x, case.padding, case.layout)
    assert_exact(got, oracle.zero_pad(x, case.padding, channels_first), case.dtype)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_zero_pad2d_by_hand(dtype, assert_exact):
    x = np.arange(1, 7, dtype=dtype).reshape(1, 2, 3, 1)
    got = fastconv.zero_pad2d(x, ((1, 0), (2, 1)))
    expected = np.array([[0, 0, 0, 0, 0, 0],
                         [0, 0, 1, 2, 3, 0],
                         [0, 0, 4, 5, 6, 0]], dtype).reshape(1, 3, 6, 1)
    assert_exact(got, expected, dtype)


def test_zero_pad2d_28_to_30_keeps_interior(rand, assert_exact):
    x = rand((1, 28, 28, 3), F32)
    got = fastconv.zero_pad2d(x, 1)
    assert got.shape == (1, 30, 30, 3)
    assert_exact(got[:, 1:-1, 1:-1], x, F32)
    border = np.ones((30, 30), bool)
    border[1:-1, 1:-1] = False
    assert not got[0][border].any()
