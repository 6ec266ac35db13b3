"""Each hand-written LLVM IR kernel against the NumPy equivalent its docstring states.

The kernels are called from small ``@njit`` wrappers on sizes that leave partial vectors and
empty loops, in float32 and float64, for two vector widths. The conv and pooling tests cover
the kernels again through the algorithms that use them; these tests say which kernel is wrong.
"""

import doctest

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from fastconv.cpu import irtools
from fastconv.cpu.microkernel import (make_block_store, make_microkernel,
                                      make_planar_microkernel, make_planar_store)
from fastconv.cpu.window_reduce import make_pair_max_rows, make_window_dot, make_window_reduce
from fastconv.cpu.winograd_transforms import (make_input_transform, make_output_transform,
                                              make_stage_transpose)

DTYPES = [np.float32, np.float64]
VECTOR_BYTES = [32, 64]
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], float)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], float)


def lanes(dtype, vector_bytes):
    return vector_bytes // np.dtype(dtype).itemsize


def rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def tolerance(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


def test_toolkit_docstring_example_runs():
    failures, tried = doctest.testmod(irtools, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0


def test_mixed_dtypes_are_a_typing_error():
    micro = make_microkernel(2, 32)

    @njit
    def call(acc, x, taps, w):
        micro(acc, x, 0, taps, taps, 1, 1, 1, 1, w, 0)

    with pytest.raises(TypingError):
        call(np.zeros(16, np.float32), np.zeros(8, np.float64), np.zeros(1, np.int64),
             np.zeros(8, np.float32))


def test_loop_carries_values_and_runs_no_body_for_count_zero():
    @irtools.vector_intrinsic(32, irtools.FLOATS, irtools.INDEX, returns=irtools.DTYPE)
    def total(code, x, n):
        b = code.builder
        with irtools.loop(b, n, [code.zeros(code.scalar)], "sum") as each:
            (acc,) = each.values
            each.carry([b.fadd(acc, b.load(b.gep(x.data, [each.index])))])
        return each.values[0]

    @njit
    def run(x, n):
        return total(x, n)

    x = np.arange(1.0, 6.0)
    assert run(x, 5) == 15.0
    assert run(x, 0) == 0.0
    assert run(x, -3) == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("vector_bytes,block", [(64, 3), (32, 2)])
@pytest.mark.parametrize("by_address", [False, True])
def test_microkernel(dtype, vector_bytes, block, by_address):
    kb = lanes(dtype, vector_bytes)
    micro = make_microkernel(block, vector_bytes)

    @njit
    def run(acc, x, x_base, taps, w_taps, n_taps, pix, chan, n_channels, w, w_base):
        micro(acc, x, x_base, taps, w_taps, n_taps, pix, chan, n_channels, w, w_base)

    rng = np.random.default_rng(0)
    x, w = rand(rng, 400, dtype), rand(rng, 200 * kb, dtype)
    taps, w_taps = np.array([0, 7, 31, 5], np.int64), np.array([kb * 9, 0, kb * 3, kb], np.int64)
    x_base, pix, chan, n_channels, n_taps, w_base = 11, 13, 2, 3, 3, kb * 2
    acc = np.full(block * kb + 5, 99, dtype)
    run(acc, x.ctypes.data if by_address else x, x_base, taps.ctypes.data if by_address else taps,
        w_taps, n_taps, pix, chan, n_channels, w, w_base)
    expected = np.zeros((block, kb))
    for i in range(block):
        for t in range(n_taps):
            for c in range(n_channels):
                start = w_base + w_taps[t] + c * kb
                expected[i] += (float(x[x_base + taps[t] + i * pix + c * chan])
                                * w[start:start + kb].astype(float))
    np.testing.assert_allclose(acc[:block * kb].reshape(block, kb), expected, **tolerance(dtype))
    assert (acc[block * kb:] == 99).all()  # nothing written past the block
    zero = acc.copy()
    run(zero, x, x_base, taps, w_taps, 0, pix, chan, n_channels, w, w_base)
    assert (zero[:block * kb] == 0).all()  # no taps: the accumulators start at zero


def _activate(value, act):
    if act >= 1:
        value = np.where(value < 0, 0, value)
    if act == 2:
        value = np.where(value > 6, 6, value)
    return value


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("vector_bytes", VECTOR_BYTES)
@pytest.mark.parametrize("act", [0, 1, 2])
@pytest.mark.parametrize("with_bias", [False, True])
def test_block_store(dtype, vector_bytes, act, with_bias):
    kb = lanes(dtype, vector_bytes)
    store = make_block_store(vector_bytes)

    @njit
    def run(acc, width, out, out_base, stride, bias, bias_base, act):
        store(acc, width, out, out_base, stride, bias, bias_base, act)

    rng = np.random.default_rng(1)
    width, out_base, stride, bias_base = 3, 5, kb + 3, 2
    acc = rand(rng, (4, kb), dtype) * 5
    acc[0, 0] = np.nan
    bias = rand(rng, kb + 4, dtype) if with_bias else np.zeros(0, dtype)
    out = np.full(out_base + 4 * stride + kb, -7, dtype)
    run(acc, width, out, out_base, stride, bias, bias_base, act)
    expected = np.full_like(out, -7)
    for i in range(width):
        value = acc[i] + (bias[bias_base:bias_base + kb] if with_bias else 0)
        expected[out_base + i * stride:][:kb] = _activate(value, act)
    np.testing.assert_array_equal(out, expected)  # NaN passes every activation


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("vector_bytes,rows", [(64, 4), (32, 3)])
def test_planar_microkernel(dtype, vector_bytes, rows):
    n = lanes(dtype, vector_bytes)
    micro = make_planar_microkernel(rows, vector_bytes)

    @njit
    def run(acc, x, x_base, taps, plane, n_channels, w, w_base):
        micro(acc, x, x_base, taps, plane, n_channels, w, w_base)

    rng = np.random.default_rng(2)
    x, w = rand(rng, 600, dtype), rand(rng, 300, dtype)
    taps = np.array([0, 3, 40], np.int64)
    x_base, plane, n_channels, w_base = 4, 57, 3, 6
    acc = np.empty(rows * n, dtype)
    run(acc, x, x_base, taps, plane, n_channels, w, w_base)
    expected = np.zeros((rows, n))
    for t in range(len(taps)):
        for c in range(n_channels):
            x_vec = x[x_base + taps[t] + c * plane:][:n].astype(float)
            for i in range(rows):
                expected[i] += float(w[w_base + (t * n_channels + c) * rows + i]) * x_vec
    np.testing.assert_allclose(acc.reshape(rows, n), expected, **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("vector_bytes", VECTOR_BYTES)
@pytest.mark.parametrize("width_short", [False, True])
def test_planar_store(dtype, vector_bytes, width_short):
    n = lanes(dtype, vector_bytes)
    store = make_planar_store(vector_bytes)

    @njit
    def run(acc, rows, width, out, out_base, stride, bias, bias_base, act):
        store(acc, rows, width, out, out_base, stride, bias, bias_base, act)

    rng = np.random.default_rng(3)
    rows, width = 3, (n - 3 if width_short else n)
    out_base, stride, bias_base = 2, n + 1, 1
    acc, bias = rand(rng, (rows, n), dtype) * 4, rand(rng, 6, dtype)
    out = np.full(out_base + rows * stride + n, -9, dtype)
    run(acc, rows, width, out, out_base, stride, bias, bias_base, 2)
    expected = np.full_like(out, -9)
    for i in range(rows):
        expected[out_base + i * stride:][:width] = _activate(acc[i, :width] + bias[bias_base + i],
                                                             2)
    np.testing.assert_array_equal(out, expected)  # lanes past ``width`` never touched


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("vector_bytes", VECTOR_BYTES)
def test_input_transform(dtype, vector_bytes):
    transform = make_input_transform(vector_bytes)

    @njit
    def run(src, base, row_step, col_step, channels, v, v_base, xi_step):
        transform(src, base, row_step, col_step, channels, v, v_base, xi_step)

    rng = np.random.default_rng(4)
    channels = lanes(dtype, vector_bytes) + 3  # one whole vector and a masked one
    base, col_step, row_step = 3, channels + 2, 5 * (channels + 2)
    src = rand(rng, base + 4 * row_step + channels, dtype)
    v_base, xi_step = 1, channels + 1
    v = np.full(v_base + 16 * xi_step, 5, dtype)
    run(src, base, row_step, col_step, channels, v, v_base, xi_step)
    d = np.array([[src[base + a * row_step + b * col_step:][:channels] for b in range(4)]
                  for a in range(4)], float)
    tiles = np.einsum("ia,abc,jb->ijc", BT, d, BT).reshape(16, channels)
    expected = np.full_like(v, 5)
    for xi in range(16):
        expected[v_base + xi * xi_step:][:channels] = tiles[xi]
    np.testing.assert_allclose(v, expected, **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("vector_bytes", VECTOR_BYTES)
@pytest.mark.parametrize("second_row,second_col", [(True, True), (False, True), (True, False)])
def test_output_transform(dtype, vector_bytes, second_row, second_col):
    transform = make_output_transform(vector_bytes)

    @njit
    def run(m, m_base, xi_step, count, out, base, h_step, w_step, row2, col2, bias, k0, act):
        return transform(m, m_base, xi_step, count, out, base, h_step, w_step, row2, col2,
                         bias, k0, act)

    rng = np.random.default_rng(5)
    kb = lanes(dtype, vector_bytes)
    count = kb + 2
    xi_step = 2 * kb  # M rows are at least a whole number of vectors wide
    m = rand(rng, 16 * xi_step + 4, dtype)
    bias = rand(rng, count + 3, dtype)
    base, w_step, h_step, k0 = 1, count + 1, 2 * (count + 1), 2
    out = np.full(base + h_step + w_step + count + 2, -3, dtype)
    bad = run(m, 0, xi_step, count, out, base, h_step, w_step, second_row, second_col, bias, k0,
              1)
    mm = np.array([m[xi * xi_step:][:count] for xi in range(16)], float).reshape(4, 4, count)
    y = np.einsum("ia,abj,kb->ikj", AT, mm, AT) + bias[k0:k0 + count]
    expected = np.full_like(out, -3)
    for r in range(1 + second_row):
        for c in range(1 + second_col):
            expected[base + r * h_step + c * w_step:][:count] = np.maximum(y[r, c], 0)
    np.testing.assert_allclose(out, expected, **tolerance(dtype))
    assert bad == 0
    m[3 * xi_step + count - 1] = np.inf  # a non-finite value in the masked part
    assert np.isnan(run(m, 0, xi_step, count, out, base, h_step, w_step, second_row, second_col,
                        bias, k0, 1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("vector_bytes", VECTOR_BYTES)
@pytest.mark.parametrize("pixels,channels", [(3, 2), (9, 11), (8, 8), (1, 17)])
def test_stage_transpose(dtype, vector_bytes, pixels, channels):
    transpose = make_stage_transpose(vector_bytes)

    @njit
    def run(stage, src, pixels, pixel_step, channels, out, dst, channel_step):
        transpose(stage, src, pixels, pixel_step, channels, out, dst, channel_step)

    rng = np.random.default_rng(6)
    src, pixel_step, dst, channel_step = 2, channels + 3, 1, pixels + 2
    stage = rand(rng, src + pixels * pixel_step, dtype)
    out = np.full(dst + channels * channel_step + 1, 4, dtype)
    run(stage, src, pixels, pixel_step, channels, out, dst, channel_step)
    expected = np.full_like(out, 4)
    for p in range(pixels):
        for j in range(channels):
            expected[dst + j * channel_step + p] = stage[src + p * pixel_step + j]
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("vector_bytes", VECTOR_BYTES)
@pytest.mark.parametrize("mode", [0, 1])
def test_window_reduce(dtype, vector_bytes, mode):
    reduce_window = make_window_reduce(vector_bytes)

    @njit
    def run(x, x_base, offsets, n_cells, out, out_base, n_channels, mode, count):
        reduce_window(x, x_base, offsets, n_cells, out, out_base, n_channels, mode, count)

    rng = np.random.default_rng(7)
    n_channels = 2 * lanes(dtype, vector_bytes) + 3
    x = rand(rng, 300, dtype)
    x[40] = np.nan
    offsets = np.array([0, 30, 33, 90, 7], np.int64)
    x_base, n_cells, out_base = 10, 4, 3
    count = np.finfo(dtype).min if mode == 0 else dtype(n_cells)
    out = np.full(out_base + n_channels + 2, 8, dtype)
    run(x, x_base, offsets, n_cells, out, out_base, n_channels, mode, count)
    cells = x[x_base + offsets[:n_cells, None] + np.arange(n_channels)]
    if mode == 0:
        got_expected = np.fmax.reduce(cells, axis=0, initial=count)
        np.testing.assert_array_equal(out[out_base:out_base + n_channels], got_expected)
    else:  # NaN propagates into the average, as in TF
        got_expected = cells.astype(float).sum(0) / count
        np.testing.assert_allclose(out[out_base:out_base + n_channels], got_expected,
                                   **tolerance(dtype))
    assert (out[:out_base] == 8).all() and (out[out_base + n_channels:] == 8).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("vector_bytes", VECTOR_BYTES)
@pytest.mark.parametrize("vectors", [0, 1, 15])  # 15 = groups of 8, 4, 2 and 1
@pytest.mark.parametrize("act", [0, 1, 2])  # plain, relu, relu6 (fused with the bias)
def test_window_dot(dtype, vector_bytes, vectors, act):
    window_dot = make_window_dot(vector_bytes)

    @njit
    def run(x, x_base, taps, w_taps, n_taps, w, out, out_base, n_channels, bias, bias_base,
            act):
        window_dot(x, x_base, taps, w_taps, n_taps, w, out, out_base, n_channels, bias,
                   bias_base, act)

    rng = np.random.default_rng(8)
    n_channels = vectors * lanes(dtype, vector_bytes) + 3
    x, w = rand(rng, 4 * n_channels + 50, dtype), rand(rng, 3 * n_channels + 20, dtype)
    x *= 4  # sums beyond relu6's cap too
    bias = rand(rng, n_channels + 5, dtype) if act else np.empty(0, dtype)
    taps, w_taps = np.array([0, n_channels + 5, 3], np.int64), np.array([9, 0, 2 * n_channels])
    x_base, out_base, bias_base = 4, 2, 5 if act else 0
    out = np.full(out_base + n_channels + 1, 6, dtype)
    run(x, x_base, taps, w_taps.astype(np.int64), 3, w, out, out_base, n_channels, bias,
        bias_base, act)
    c = np.arange(n_channels)
    expected = (x[x_base + taps[:, None] + c].astype(float) * w[w_taps[:, None] + c]).sum(0)
    if act:
        expected = np.maximum(expected + bias[bias_base:], 0)
    if act == 2:
        expected = np.minimum(expected, 6)
    np.testing.assert_allclose(out[out_base:out_base + n_channels], expected, **tolerance(dtype))
    assert out[-1] == 6 and (out[:out_base] == 6).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("vector_bytes", VECTOR_BYTES)
@pytest.mark.parametrize("extra", [0, 3])
def test_pair_max_rows(dtype, vector_bytes, extra):
    pair_max = make_pair_max_rows(vector_bytes)

    @njit
    def run(x, row0, row1, out, out_base, count, lowest):
        return pair_max(x, row0, row1, out, out_base, count, lowest)

    rng = np.random.default_rng(9)
    count = 2 * lanes(dtype, vector_bytes) + extra
    x = rand(rng, 5 * count + 10, dtype)
    x[1] = np.nan
    row0, row1, out_base = 1, 2 * count + 3, 1
    out = np.full(out_base + count + 1, 2, dtype)
    lowest = np.finfo(dtype).min
    assert run(x, row0, row1, out, out_base, count, lowest) == count
    q = np.arange(count)
    cells = [x[row + 2 * q + d] for row in (row0, row1) for d in (0, 1)]
    expected = np.fmax.reduce(cells, axis=0, initial=lowest)
    np.testing.assert_array_equal(out[out_base:out_base + count], expected)
    assert out[0] == 2 and out[-1] == 2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width, stride", [(3, 1), (3, 2), (5, 1)])
@pytest.mark.parametrize("act, streaming", [(0, False), (1, True), (2, False)])
def test_depthwise_block(dtype, width, stride, act, streaming):
    from fastconv.cpu.layout import aligned_empty
    from fastconv.cpu.window_reduce import make_depthwise_block

    pixels, channels = 4, 2 * lanes(dtype, 64)
    block = make_depthwise_block(pixels, width, stride)

    @njit
    def run(x, x_base, rows, n_rows, step, w, w_rows, out, out_base, bias, act, streaming):
        block(x, x_base, rows, n_rows, step, w, w_rows, step, out, out_base, step, bias, 0,
              act, streaming)

    rng = np.random.default_rng(9)
    columns = (pixels - 1) * stride + width
    x = 4 * rand(rng, (2, columns + 3, channels), dtype)  # two kernel rows of an image
    w = rand(rng, (2, width, channels), dtype)
    bias = rand(rng, channels, dtype) if act else np.empty(0, dtype)
    out = aligned_empty((pixels + 1, channels), dtype)
    out[...] = 7
    rows = np.array([0, (columns + 3) * channels], np.int64)
    w_rows = np.array([0, width * channels], np.int64)
    run(x.reshape(-1), 2 * channels, rows, 2, channels, w.reshape(-1), w_rows,
        out.reshape(-1), 0, bias, act, streaming)  # one channel vector: the first
    lanes_ = lanes(dtype, 64)
    cols = 2 + np.arange(pixels)[:, None] * stride + np.arange(width)  # (pixel, s)
    expected = np.einsum("rpsc,rsc->pc", x[:, cols, :lanes_].astype(float), w[..., :lanes_])
    if act:
        expected = np.maximum(expected + bias[:lanes_], 0)
    if act == 2:
        expected = np.minimum(expected, 6)
    np.testing.assert_allclose(out[:pixels, :lanes_], expected, **tolerance(dtype))
    assert (out[:pixels, lanes_:] == 7).all() and (out[pixels:] == 7).all()
