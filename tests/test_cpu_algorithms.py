"""Every CPU algorithm the dispatcher can pick, forced one at a time, against TensorFlow.

The default grids in test_conv.py / test_pool.py check whatever the dispatcher chooses; here
each implementation is forced with ``dispatch.use_algorithm`` on shapes chosen for its edges:
output rows that are not a multiple of the register block (and shorter than one), output
channels that are not a multiple of a channel block (and more than one block), groups,
channels-first, strides, dilations, explicit padding, every fused activation.
"""

import numpy as np
import pytest

import fastconv
from fastconv import dispatch
from fastconv.cpu.conv_blocked import BLOCK_PIXELS, block_channels

F32, F64 = np.float32, np.float64
ACTIVATIONS = [None, "relu", "relu6", "sigmoid", "tanh"]

# (input spatial, kernel, in_channels, out_channels, strides, dilations, padding)
CONV2D_CASES = [
    ((9, 2 * BLOCK_PIXELS + 1), (3, 3), 5, 2 * block_channels(F32) + 3, (1, 1), (1, 1), "SAME"),
    ((7, BLOCK_PIXELS - 1 if BLOCK_PIXELS > 1 else 1), (2, 2), 3, 7, (1, 1), (1, 1), "VALID"),
    ((11, 13), (3, 2), 4, 33, (2, 3), (1, 1), "SAME"),
    ((10, 12), (3, 3), 6, 16, (1, 1), (2, 1), ((2, 1), (0, 3))),
    ((8, 9), (1, 1), 16, 40, (1, 1), (1, 1), "VALID"),
    ((15, 15), (5, 5), 1, 32, (2, 2), (1, 2), "SAME"),
]


def _channels_first(x):
    return np.ascontiguousarray(np.moveaxis(x, -1, 1))


def _force(name):
    return dispatch.use_algorithm(name)


@pytest.mark.parametrize("algorithm", ["direct", "blocked", "im2col", "planar", "numpy"])
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("index", range(len(CONV2D_CASES)))
def test_conv2d_algorithms_match_tf(algorithm, layout, dtype, index, rand, oracle, assert_close):
    spatial, kernel, cin, cout, strides, dilations, padding = CONV2D_CASES[index]
    activation = ACTIVATIONS[index % len(ACTIVATIONS)]
    x = rand((2, *spatial, cin), dtype)
    w = rand((*kernel, cin, cout), dtype)
    b = rand((cout,), dtype)
    expected = oracle.conv(x, w, strides, padding, dilations, bias=b, activation=activation)
    channels_first = layout == "NCHW"
    arg_pad = padding if isinstance(padding, str) else [list(p) for p in padding]
    with _force(algorithm):
        got = fastconv.conv2d(_channels_first(x) if channels_first else x, w, strides, arg_pad,
                              layout, dilations, bias=b, activation=activation)
    assert_close(np.moveaxis(got, 1, -1) if channels_first else got, expected, dtype)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("index", range(len(CONV2D_CASES)))
def test_planar_conv_matches_tf(dtype, index, rand, oracle, assert_close):
    spatial, kernel, cin, cout, strides, dilations, padding = CONV2D_CASES[index]
    strides = (strides[0], 1)  # planar vectors run along rows: width stride 1
    activation = ACTIVATIONS[(index + 1) % len(ACTIVATIONS)]
    x = rand((2, *spatial, cin), dtype)
    w = rand((*kernel, cin, cout), dtype)
    b = rand((cout,), dtype)
    expected = oracle.conv(x, w, strides, padding, dilations, bias=b, activation=activation)
    arg_pad = padding if isinstance(padding, str) else [list(p) for p in padding]
    with _force("planar"):
        got = fastconv.conv2d(_channels_first(x), w, strides, arg_pad, "NCHW", dilations,
                              bias=b, activation=activation)
    assert_close(np.moveaxis(got, 1, -1), expected, dtype)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
def test_gemm_1x1_matches_tf(layout, dtype, activation, rand, oracle, assert_close):
    # 3 x 7 x 9 = 189 pixels: one BLAS share; 3 x 70 x 9 (NHWC): rows split among threads.
    x = rand((3, 7 if layout == "NCHW" else 70, 9, 16), dtype)
    w = rand((1, 1, 16, 24), dtype)
    b = rand((24,), dtype)
    with _force("gemm"):
        got = fastconv.conv2d(_channels_first(x) if layout == "NCHW" else x, w, 1, "VALID",
                              layout, bias=b, activation=activation)
    expected = oracle.conv(x, w, (1, 1), "VALID", bias=b, activation=activation)
    assert_close(np.moveaxis(got, 1, -1) if layout == "NCHW" else got, expected, dtype)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("shape,padding,activation", [
    ((2, 9, 11, 5, 7), "SAME", "relu"), ((3, 10, 13, 8, 40), "VALID", None),
    ((1, 5, 4, 3, 33), [[1, 0], [2, 2]], "sigmoid"), ((1, 3, 3, 2, 2), "SAME", "tanh")])
def test_winograd_matches_tf(layout, dtype, shape, padding, activation, rand, oracle,
                             assert_close):
    batch, height, width, cin, cout = shape
    x = rand((batch, height, width, cin), dtype)
    w = rand((3, 3, cin, cout), dtype)
    b = rand((cout,), dtype)
    pads = padding if isinstance(padding, str) else tuple(tuple(p) for p in padding)
    expected = oracle.conv(x, w, (1, 1), pads, bias=b, activation=activation)
    channels_first = layout == "NCHW"
    with _force("winograd"):
        got = fastconv.conv2d(_channels_first(x) if channels_first else x, w, 1, padding, layout,
                              bias=b, activation=activation)
    assert_close(np.moveaxis(got, 1, -1) if channels_first else got, expected, dtype)


def test_automatic_winograd_matches_tf_and_falls_back_on_nan(rand, oracle, assert_close):
    """A layer big enough for the dispatcher to pick winograd; a NaN in it must stay where a
    direct convolution puts it (the kernel notices and recomputes directly)."""
    x = rand((2, 30, 33, 24), F32)
    w = rand((3, 3, 24, 70), F32)
    b = rand((70,), F32)
    assert fastconv.conv2d(x, w, 1, "SAME").shape == (2, 30, 33, 70)
    assert_close(fastconv.conv2d(x, w, 1, "SAME", bias=b, activation="relu6"),
                 oracle.conv(x, w, (1, 1), "SAME", bias=b, activation="relu6"), F32)
    x[1, 7, 9, 3] = np.nan
    got = fastconv.conv2d(x, w, 1, "SAME")
    assert np.isnan(got).sum() == 9 * 70 and np.isnan(got[1, 6:9, 8:11]).all()


@pytest.mark.parametrize("dtype", [F32, F64])
def test_layout_transposes_match_numpy(dtype, rand):
    """The tiled parallel transposes (used above 2^16 elements) against NumPy's, with sizes
    that leave partial tiles."""
    from fastconv.cpu.layout import from_channels_last, to_channels_last
    x = rand((3, 37, 1, 45, 41), dtype)
    last = to_channels_last(x, True)
    np.testing.assert_array_equal(last, x.transpose(0, 2, 3, 4, 1))
    np.testing.assert_array_equal(from_channels_last(last, True), x)
    assert last.flags.c_contiguous and not np.shares_memory(last, x)


def test_channels_first_winograd_matches_tf(rand, oracle, assert_close):
    """Automatic winograd on channels-first data (parallel transposes both ways), with an
    activation applied after the kernel rather than fused into it."""
    x = rand((4, 30, 33, 24), F32)
    w = rand((3, 3, 24, 40), F32)
    got = fastconv.conv2d(_channels_first(x), w, 1, "SAME", "NCHW", activation="sigmoid")
    expected = oracle.conv(x, w, (1, 1), "SAME", activation="sigmoid")
    assert_close(np.moveaxis(got, 1, -1), expected, F32)


@pytest.mark.parametrize("layout", ["NDHWC", "NCDHW"])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_winograd_conv3d_matches_tf(layout, padding, rand, oracle, assert_close):
    """Depth taps summed in the Winograd domain; 9 output depths span two job depth groups
    (fastconv.cpu.winograd.SLICES_PER_JOB), so slices shared between groups are covered."""
    x = rand((2, 11, 9, 10, 17), F32)
    w = rand((3, 3, 3, 17, 36), F32)
    b = rand((36,), F32)
    expected = oracle.conv(x, w, (1, 1, 1), padding, bias=b, activation="relu")
    channels_first = layout == "NCDHW"
    with _force("winograd"):
        got = fastconv.conv3d(_channels_first(x) if channels_first else x, w, [1] * 5, padding,
                              layout, bias=b, activation="relu")
    assert_close(np.moveaxis(got, 1, -1) if channels_first else got, expected, F32)


def _padding_cases(count, seed=11):
    """Random 2-D conv geometries around the blocked kernel's row edges: widths around a block,
    explicit pads up to beyond a block (the per-pixel path), strides 1-3, both layouts."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        width, kernel_w, stride = (int(rng.integers(1, 3 * BLOCK_PIXELS)),
                                   int(rng.integers(1, 8)), int(rng.integers(1, 4)))
        left, right = (int(rng.integers(0, BLOCK_PIXELS + 4)),
                       int(rng.integers(0, BLOCK_PIXELS + 4)))
        channels, channels_first, dilation = (int(rng.integers(1, 6)), bool(rng.integers(0, 2)),
                                              int(rng.integers(1, 3)))
        if width + left + right < (kernel_w - 1) * dilation + 1:  # the dilated window must fit
            continue
        cases.append((width, kernel_w, stride, left, right, channels, channels_first, dilation))
    return cases


@pytest.mark.parametrize("width,kernel_w,stride,left,right,channels,channels_first,dilation",
                         _padding_cases(40))
def test_blocked_padding_without_a_copy_matches_the_oracle(width, kernel_w, stride, left, right,
                                                           channels, channels_first, dilation,
                                                           rand, assert_close):
    """The blocked kernel skips taps in the padding (row edges on zero-padded column copies,
    or one pixel at a time) instead of padding the input: every edge layout against the
    NumPy oracle, on inputs too big for the small-input padded copy."""
    from fastconv import reference
    from fastconv.config import PAD_COPY_MAX_ELEMENTS
    height = PAD_COPY_MAX_ELEMENTS // (width * channels) + 2
    x = rand((1, height, width, channels), F32)
    w = rand((2, kernel_w, channels, 33), F32)
    pads = [[0, 0], [1, 0], [left, right], [0, 0]]
    if channels_first:
        x, pads = _channels_first(x), [[0, 0], [0, 0], [1, 0], [left, right]]
    layout = "NCHW" if channels_first else "NHWC"
    args = (x, w, (1, stride), pads, layout, (1, dilation))
    with _force("blocked"):
        got = fastconv.conv2d(*args, bias=np.arange(33, dtype=F32), activation="relu")
    assert_close(got, reference.conv2d(*args, bias=np.arange(33, dtype=F32), activation="relu"),
                 F32)


def test_winograd_refuses_what_it_cannot_compute():
    x = np.ones((1, 6, 6, 2), F32)
    with pytest.raises(ValueError, match="cannot run"):
        with _force("winograd"):
            fastconv.conv2d(x, np.ones((3, 3, 2, 2), F32), 2, "SAME")


@pytest.mark.parametrize("algorithm", ["direct", "blocked"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_grouped_conv_algorithms_match_tf(algorithm, dtype, rand, oracle, assert_close):
    groups, per_group_in, per_group_out = 2, 3, block_channels(dtype) + 1
    x = rand((2, 9, 10, groups * per_group_in), dtype)
    w = rand((3, 3, per_group_in, groups * per_group_out), dtype)
    with _force(algorithm):
        got = fastconv.conv2d(x, w, 1, "SAME")
    assert_close(got, oracle.conv(x, w, (1, 1), "SAME"), dtype)


@pytest.mark.parametrize("algorithm", ["direct", "blocked", "im2col"])
@pytest.mark.parametrize("layout", ["NWC", "NCW"])
def test_conv1d_algorithms_match_tf(algorithm, layout, rand, oracle, assert_close):
    x = rand((3, 2 * BLOCK_PIXELS + 5, 4), F32)
    w = rand((3, 4, 20), F32)
    expected = oracle.conv(x, w, (2,), "SAME", (1,))
    with _force(algorithm):
        got = fastconv.conv1d(_channels_first(x) if layout == "NCW" else x, w, 2, "SAME", layout)
    assert_close(np.moveaxis(got, 1, -1) if layout == "NCW" else got, expected, F32)


@pytest.mark.parametrize("algorithm", ["direct", "blocked", "im2col"])
@pytest.mark.parametrize("layout", ["NDHWC", "NCDHW"])
def test_conv3d_algorithms_match_tf(algorithm, layout, rand, oracle, assert_close):
    x = rand((2, 5, 6, 7, 3), F64)
    w = rand((3, 2, 3, 3, 9), F64)
    expected = oracle.conv(x, w, (1, 2, 1), "SAME", (1, 1, 2))
    with _force(algorithm):
        got = fastconv.conv3d(_channels_first(x) if layout == "NCDHW" else x, w, (1, 2, 1),
                              "SAME", layout, (1, 1, 2))
    assert_close(np.moveaxis(got, 1, -1) if layout == "NCDHW" else got, expected, F64)


@pytest.mark.parametrize("algorithm", ["depthwise", "direct", "blocked", "numpy"])
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_depthwise_algorithms_match_tf(algorithm, layout, dtype, rand, oracle, assert_close):
    # 37 channels: several full vectors plus a scalar tail in the depthwise kernel.
    x = rand((2, 11, 9, 37), dtype)
    w = rand((3, 2, 37, 1), dtype)
    expected = oracle.depthwise(x, w, (2, 2), "SAME")  # TF float64 wants equal strides
    channels_first = layout == "NCHW"
    with _force(algorithm):
        got = fastconv.depthwise_conv2d(_channels_first(x) if channels_first else x, w, 2,
                                        "SAME", layout)
    assert_close(np.moveaxis(got, 1, -1) if channels_first else got, expected, dtype)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("kernel, stride", [((3, 3), 1), ((3, 3), 2), ((2, 5), 1), ((5, 5), 2)])
@pytest.mark.parametrize("channels, activation", [(32, None), (64, "relu"), (37, "relu6"),
                                                  (21, "tanh")])
def test_depthwise_row_blocks_match_tf(dtype, kernel, stride, channels, activation, rand, oracle,
                                       assert_close, monkeypatch):
    # Rows wide enough for several blocks of the row-block kernels (plus leftover pixels and
    # padded edges), whole channel vectors and a tail, the bias and fused or unfused
    # activations; an infinite weight gives NaN where its tap meets the padding, as in TF.
    # Whole 64-byte channel runs go through the streaming stores (any size, here).
    from fastconv.cpu import depthwise
    from fastconv.cpu.depthwise import BLOCK_PIXELS as DW_BLOCK

    monkeypatch.setattr(depthwise, "STREAMING_MIN_BYTES", 0)

    x = rand((2, 9, 3 * DW_BLOCK * stride + 5, channels), dtype)
    w = rand((*kernel, channels, 1), dtype)
    b = rand((channels,), dtype)
    w[0, 0, 1, 0] = np.inf
    grouped = w.reshape(*kernel, 1, channels)
    expected = oracle.conv(x, grouped, (stride, stride), "SAME", bias=b, activation=activation)
    with _force("depthwise"):
        got = fastconv.depthwise_conv2d(x, w, stride, "SAME", bias=b, activation=activation)
    assert_close(got, expected, dtype)


@pytest.mark.parametrize("algorithm", ["direct", "blocked", "numpy"])
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("strides,padding", [((2, 2), "SAME"), ((3, 2), "VALID"),
                                             ((1, 1), "SAME")])
def test_conv2d_transpose_algorithms_match_tf(algorithm, dtype, strides, padding, rand, oracle,
                                              assert_close):
    x = rand((2, 5, 4, 6), dtype)
    w = rand((3, 3, 18, 6), dtype)
    out_spatial = tuple(n * s if padding == "SAME" else (n - 1) * s + 3
                        for n, s in zip((5, 4), strides))
    expected = oracle.conv_transpose(x, w, out_spatial, strides, padding)
    with _force(algorithm):
        got = fastconv.conv2d_transpose(x, w, (2, *out_spatial, 18), strides, padding)
    assert_close(got, expected, dtype)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("algorithm,layout", [("direct", "NHWC"), ("direct", "NCHW"),
                                              ("planar", "NCHW"), ("numpy", "NHWC"),
                                              ("numpy", "NCHW")])
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("window", [((3, 3), (2, 2), "SAME"), ((2, 3), (1, 2), "VALID")])
def test_pool_algorithms_match_tf(kind, algorithm, layout, dtype, window, rand, oracle,
                                  assert_close, assert_exact):
    # 37 channels: full vectors plus a scalar tail; NaN cells exercise TF's max rule.
    ksize, strides, padding = window
    x = rand((2, 9, 8, 37), dtype)
    x[0, 1, 1, :5] = np.nan
    x[1, :3, :3, 7] = -np.inf
    channels_first = layout == "NCHW"
    with _force(algorithm):
        got = getattr(fastconv, f"{kind}_pool2d")(_channels_first(x) if channels_first else x,
                                                  ksize, strides, padding, layout)
    expected = oracle.pool(kind, x, ksize, strides, padding)
    got = np.moveaxis(got, 1, -1) if channels_first else got
    (assert_exact if kind == "max" else assert_close)(got, expected, dtype)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_planar_2x2_max_pool_vector_rows_match_the_oracle(dtype, rng, assert_exact):
    """The 2x2/2 channels-first max pool runs whole vectors of outputs with shuffles: rows wide
    enough for several vectors plus a tail, NaN and infinities sprinkled in (NaN never wins,
    an all-NaN window gives the lowest finite value)."""
    from fastconv import reference
    x = rng.standard_normal((2, 3, 7, 2 * 40 + 3)).astype(dtype)
    x.flat[rng.choice(x.size, 60, replace=False)] = np.nan
    x.flat[rng.choice(x.size, 20, replace=False)] = np.inf
    x.flat[rng.choice(x.size, 20, replace=False)] = -np.inf
    x[0, 0, 2:4, 10:12] = np.nan
    for padding in ("VALID", "SAME"):
        with _force("planar"):
            got = fastconv.max_pool2d(x, 2, 2, padding, "NCHW")
        assert_exact(got, reference.max_pool2d(x, 2, 2, padding, "NCHW"), dtype)
    assert got[0, 0, 1, 5] == np.finfo(dtype).min


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("n_spatial", [1, 3])
def test_planar_pool_other_ranks_match_tf(kind, n_spatial, rand, oracle, assert_close, assert_exact):
    shape = {1: (2, 11, 5), 3: (2, 5, 6, 7, 3)}[n_spatial]
    x = rand(shape, F32)
    layout = {1: "NCW", 3: "NCDHW"}[n_spatial]
    ksize, strides = (2,) * n_spatial, (2,) + (1,) * (n_spatial - 1)
    with _force("planar"):
        got = getattr(fastconv, f"{kind}_pool{n_spatial}d")(_channels_first(x), ksize, strides,
                                                             "SAME", layout)
    expected = oracle.pool(kind, x, ksize, strides, "SAME")
    (assert_exact if kind == "max" else assert_close)(np.moveaxis(got, 1, -1), expected, F32)


@pytest.mark.parametrize("shape,algorithm", [
    (((1, 28, 28, 1), (3, 3, 1, 32)), "blocked"),
    (((2, 14, 14, 32), (3, 3, 32, 64)), "blocked"),
    (((1, 8, 8, 16), (3, 3, 1, 16)), "depthwise"),  # groups == channels, one output each
    (((1, 8, 8, 16), (3, 3, 1, 32)), "blocked"),  # channel multiplier 2: per-group blocks
    (((8, 56, 56, 64), (3, 3, 64, 64)), "winograd"),  # a large 3x3 stride-1 layer
    (((8, 56, 56, 8), (3, 3, 8, 64)), "blocked"),  # too few input channels for winograd
])
def test_dispatcher_picks_the_expected_algorithm(shape, algorithm):
    from fastconv.problems import ConvProblem, pad_to_3d
    from fastconv.shapes import window_geometry

    x_shape, w_shape = shape
    groups = x_shape[-1] // w_shape[2]
    geometry = pad_to_3d(window_geometry(x_shape[1:3], w_shape[:2], (1, 1), (1, 1), "SAME"))
    problem = ConvProblem(np.zeros((x_shape[0], 1, *x_shape[1:]), F32),
                          np.zeros((1, *w_shape), F32), None, geometry, groups, 0, False,
                          (x_shape[0], 1, *x_shape[1:3], w_shape[3]), np.dtype(F32))
    if algorithm == "blocked" and w_shape[3] // groups * 2 < block_channels(F32):
        algorithm = "direct"
    assert dispatch.select("conv", "cpu", problem).name == algorithm


def test_forcing_an_unknown_algorithm_fails_loudly():
    with pytest.raises(ValueError, match="no conv algorithm named 'nope'"):
        with _force("nope"):
            fastconv.conv2d(np.ones((1, 3, 3, 1), F32), np.ones((1, 1, 1, 1), F32), 1, "VALID")


@pytest.mark.parametrize("dtype", [F32, np.float64])
@pytest.mark.parametrize("strides,padding,dilations", [
    (1, "SAME", 1), ((2, 1), "VALID", 1), (1, [[0, 0], [0, 0], [2, 1], [1, 3]], (1, 2)),
    ((3, 1), "SAME", (2, 3)), ((1, 3), "SAME", 1), ((2, 3), [[0, 0], [0, 0], [1, 1], [2, 0]], (1, 2)),
    ((1, 2), "VALID", (1, 3))])
def test_channels_first_depthwise_runs_in_planes_and_matches_the_oracle(
        dtype, strides, padding, dilations, oracle, assert_close):
    # Rows of at least a vector (40 > 32 float32 lanes, > 16 float64): the plane kernel, with
    # width strides on rows split into phases (103 columns: 35 outputs at stride 3); inf and
    # NaN weights meet the padding (TF's 0 * inf = NaN).
    from unittest import mock

    from fastconv.cpu import backend

    rng = np.random.default_rng(11)
    width_stride = strides if isinstance(strides, int) else strides[1]
    x = rng.standard_normal((2, 3, 9, 40 if width_stride == 1 else 103)).astype(dtype)
    w = rng.standard_normal((3, 3, 3, 1)).astype(dtype)
    w[0, 0, 1, 0], w[2, 2, 2, 0] = np.inf, np.nan
    pairs = padding if isinstance(padding, str) else [tuple(p) for p in padding[2:]]
    s = (strides, strides) if isinstance(strides, int) else strides
    d = (dilations, dilations) if isinstance(dilations, int) else dilations
    expected = oracle.depthwise(np.ascontiguousarray(np.moveaxis(x, 1, -1)), w, s, pairs, d)
    with mock.patch.object(backend, "depthwise_planar", wraps=backend.depthwise_planar) as spy:
        got = fastconv.depthwise_conv2d(x, w, strides, padding, "NCHW", dilations)
    assert spy.call_count == 1
    assert_close(np.moveaxis(got, 1, -1), expected, dtype)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("rows, cells, blocks, chunks", [
    (1, 7, 1, 1), (BLOCK_PIXELS + 3, 40, 3, 1), (5 * BLOCK_PIXELS + 7, 9, 2, 3), (64, 300, 1, 4)])
@pytest.mark.parametrize("activation", [None, "relu", "sigmoid"])
def test_cells_matmul_equals_the_product(dtype, rows, cells, blocks, chunks, activation, rand):
    # The im2col conv's product with the filters read in place: row tails of every
    # micro-kernel width, several channel blocks, row ranges per job, bias and activations.
    from fastconv import activations
    from fastconv.cpu import cells_gemm
    from fastconv.reference import _activate

    k = blocks * block_channels(dtype)
    a, w, bias = rand((rows, cells), dtype), rand((cells, k), dtype), rand((k,), dtype)
    out = np.full((rows, k), np.nan, dtype)
    cells_gemm.cells_matmul(a, w, bias, out, chunks, activations.ACTIVATIONS[activation])
    expected = _activate(a.astype(np.float64) @ w + bias, activation)
    np.testing.assert_allclose(out, expected, rtol=1e-4 if dtype == F32 else 1e-10,
                               atol=1e-4 if dtype == F32 else 1e-10)
