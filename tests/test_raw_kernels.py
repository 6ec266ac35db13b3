"""The raw ``@njit`` kernels of :mod:`fastconv.cpu`, called from user ``@njit`` code, against
the independent oracle: the padding after is implied by ``out``'s shape, the choice between the
direct and blocked algorithms follows the dispatcher's rule, and infinite filters over the
padding give TF's NaN."""

import numpy as np
import pytest
from numba import njit

from fastconv import reference, shapes
from fastconv.cpu import (avg_pool1d_nwc, avg_pool2d_nhwc, avg_pool3d_ndhwc, conv1d_nwc,
                          conv2d_nhwc, conv3d_ndhwc, max_pool1d_nwc, max_pool2d_nhwc,
                          max_pool3d_ndhwc)
from fastconv.testing import assert_close, assert_exact

DTYPES = [np.float32, np.float64]
# The conv kernels are compiled for float32 only here (minutes of compile time per dtype; the
# dispatch tests cover float64 on the same algorithms); the pools run both.
CONV_DTYPES = [np.float32]


@njit
def user_conv2d(x, w, out, stride, pad_top, pad_left, bias):
    """A user's own compiled function calling fastconv's kernel (with relu fused)."""
    return conv2d_nhwc(x, w, out, stride, stride, 1, 1, pad_top, pad_left, 1, bias, 1)


def _same(sizes, kernel, strides):
    return [shapes.same_padding(n, k, s) for n, k, s in zip(sizes, kernel, strides)]


def _out(x, kernel, strides, channels):
    outs = [-(-n // s) for n, s in zip(x.shape[1:-1], strides)]
    return np.full((x.shape[0], *outs, channels), np.nan, x.dtype)


@pytest.mark.parametrize("dtype", CONV_DTYPES)
@pytest.mark.parametrize("channels_in,channels_out", [(3, 40), (8, 16)])
def test_conv2d_from_user_njit_code(dtype, channels_in, channels_out):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 9, 8, channels_in)).astype(dtype)
    w = rng.standard_normal((3, 3, channels_in, channels_out)).astype(dtype)
    bias = rng.standard_normal(channels_out).astype(dtype)
    (top, _), (left, _) = _same(x.shape[1:3], (3, 3), (2, 2))
    out = _out(x, (3, 3), (2, 2), channels_out)
    got = user_conv2d(x, w, out, 2, top, left, bias)
    assert got is out or np.shares_memory(got, out)
    expected = reference.conv2d(x, w, 2, "SAME", bias=bias, activation="relu")
    assert_close(out, expected, dtype)


@pytest.mark.parametrize("dtype", CONV_DTYPES)
def test_grouped_conv_with_few_channels_per_group_takes_the_direct_path(dtype):
    # 2 output channels per group fill few lanes: the raw path reads a padded copy and runs
    # the direct kernel, as dispatch does; the result is the same either way.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 7, 6, 8)).astype(dtype)
    w = rng.standard_normal((3, 2, 2, 8)).astype(dtype)  # 4 groups of 2 in, 2 out
    out = _out(x, (3, 2), (1, 1), 8)
    (top, _), (left, _) = _same(x.shape[1:3], (3, 2), (1, 1))
    conv2d_nhwc(x, w, out, 1, 1, 1, 1, top, left, 4)
    assert_close(out, reference.conv2d(x, w, 1, "SAME"), dtype)


@pytest.mark.parametrize("dtype", CONV_DTYPES)
def test_infinite_filter_over_padding_gives_nan_as_tf(dtype):
    x = np.ones((1, 5, 5, 2), dtype)
    w = np.ones((3, 3, 2, 16), dtype)
    w[0, 0, 0, 3] = np.inf
    out = _out(x, (3, 3), (1, 1), 16)
    conv2d_nhwc(x, w, out, 1, 1, 1, 1, 1, 1)
    expected = reference.conv2d(x, w, 1, "SAME")
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    assert np.isnan(out[0, 0, 0, 3])


@pytest.mark.parametrize("dtype", CONV_DTYPES)
def test_conv1d_and_conv3d(dtype):
    rng = np.random.default_rng(2)
    x1 = rng.standard_normal((2, 11, 3)).astype(dtype)
    w1 = rng.standard_normal((4, 3, 5)).astype(dtype)
    out1 = np.empty((2, 3, 5), dtype)  # VALID, stride 2, dilation 2: (11 - 7) // 2 + 1
    conv1d_nwc(x1, w1, out1, 2, 2, 0)
    assert_close(out1, reference.conv1d(x1, w1, 2, "VALID", dilations=2), dtype)
    x3 = rng.standard_normal((1, 4, 5, 6, 2)).astype(dtype)
    w3 = rng.standard_normal((2, 3, 2, 2, 4)).astype(dtype)
    pads = _same(x3.shape[1:4], (2, 3, 2), (1, 2, 1))
    out3 = _out(x3, (2, 3, 2), (1, 2, 1), 4)
    conv3d_ndhwc(x3, w3, out3, 1, 2, 1, 1, 1, 1, *(before for before, _ in pads))
    assert_close(out3, reference.conv3d(x3, w3, [1, 2, 1], "SAME"), dtype)


@pytest.mark.parametrize("dtype", CONV_DTYPES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pools(dtype, kind):
    rng = np.random.default_rng(3)
    check = assert_exact if kind == "max" else assert_close
    x2 = rng.standard_normal((2, 7, 6, 5)).astype(dtype)
    out2 = _out(x2, (3, 3), (2, 2), 5)
    (top, _), (left, _) = _same(x2.shape[1:3], (3, 3), (2, 2))
    {"max": max_pool2d_nhwc, "avg": avg_pool2d_nhwc}[kind](x2, out2, 3, 3, 2, 2, top, left)
    check(out2, getattr(reference, f"{kind}_pool2d")(x2, 3, 2, "SAME"), dtype)
    x1 = rng.standard_normal((2, 9, 3)).astype(dtype)
    out1 = np.empty((2, 4, 3), dtype)
    {"max": max_pool1d_nwc, "avg": avg_pool1d_nwc}[kind](x1, out1, 3, 2, 0)
    check(out1, getattr(reference, f"{kind}_pool1d")(x1, 3, 2, "VALID"), dtype)
    x3 = rng.standard_normal((1, 4, 5, 3, 2)).astype(dtype)
    pads = _same(x3.shape[1:4], (2, 2, 2), (1, 1, 1))
    out3 = _out(x3, (2, 2, 2), (1, 1, 1), 2)
    {"max": max_pool3d_ndhwc, "avg": avg_pool3d_ndhwc}[kind](
        x3, out3, 2, 2, 2, 1, 1, 1, *(before for before, _ in pads))
    check(out3, getattr(reference, f"{kind}_pool3d")(x3, 2, 1, "SAME"), dtype)
