"""conv1d/2d/3d (grouped, bias, activations), depthwise_conv2d, the transposed convs (1-D, 2-D,
3-D, rank-generic) and the atrous convs against TF.

Each op runs over a pairwise grid (see ``conftest.pairwise_cases``): layouts x dtypes x strides
1-3 x SAME/VALID/explicit x dilation x odd/even/mixed kernels x sizes that do and do not divide
evenly x argument forms, plus a few seeded random combinations. Hand-computed cases with
``arange`` inputs pin down the semantics (no kernel flip, where SAME's odd cell goes, grouping
and depthwise channel order) independently of TF.
"""

import numpy as np
import pytest

import fastconv
from fastconv import ops, reference

F32, F64 = np.float32, np.float64
EXPLICIT = "explicit"
EPILOGUES = [None, "bias", "relu", "relu6", "sigmoid", "tanh", "relu-nobias"]

# Kernel shapes per number of spatial dims: odd, even, mixed parity and 1x1.
KERNELS = {
    1: {"odd": (3,), "even": (2,), "even4": (4,), "one": (1,)},
    2: {"odd": (3, 3), "even": (2, 4), "mixed": (3, 2), "one": (1, 1)},
    3: {"odd": (3, 3, 3), "even": (2, 2, 2), "mixed": (3, 2, 1), "one": (1, 1, 1)},
}
# Explicit (before, after) padding per spatial dim: asymmetric, one side zero somewhere.
EXPLICIT_PADS = {1: ((1, 2),), 2: ((1, 2), (2, 0)), 3: ((0, 1), (2, 1), (1, 0))}
BASE_SIZES = {1: (9,), 2: (7, 6), 3: (5, 4, 6)}


def _spatial(value, n):
    return tuple(value) if isinstance(value, tuple) else (value,) * n


def _geometry(case, n, tools, kernel):
    """Spatial sizes, strides, dilations and padding for a case.

    The first spatial dim divides evenly iff ``case.divides``; the others alternate, so every
    strided case has both kinds of dims.
    """
    strides = _spatial(case.stride, n)
    dilations = _spatial(case.dilation, n)
    padding = EXPLICIT_PADS[n] if case.padding == EXPLICIT else case.padding
    sizes = []
    for axis in range(n):
        span = (kernel[axis] - 1) * dilations[axis] + 1
        pad = padding if isinstance(padding, str) else padding[axis]
        divides = case.divides if axis % 2 == 0 else not case.divides
        sizes.append(tools.fit_size(BASE_SIZES[n][axis], span, strides[axis], pad, divides))
    out = tuple(tools.out_size(size, (k - 1) * d + 1, s, padding if isinstance(padding, str)
                               else padding[axis])
                for axis, (size, k, s, d) in enumerate(zip(sizes, kernel, strides, dilations)))
    return tuple(sizes), strides, dilations, padding, out


def _layout_shape(batch, channels, spatial, channels_first):
    return (batch, channels, *spatial) if channels_first else (batch, *spatial, channels)


def _run_conv_case(n, case, rand, oracle, tools, assert_close):
    function = {1: fastconv.conv1d, 2: fastconv.conv2d, 3: fastconv.conv3d}[n]
    channels_first = case.layout == tools.layouts[n][1]
    kernel = KERNELS[n][case.kernel]
    sizes, strides, dilations, padding, out_sizes = _geometry(case, n, tools, kernel)
    groups = case.groups
    in_channels, out_channels = 6, 6
    x = rand(_layout_shape(2, in_channels, sizes, channels_first), case.dtype)
    w = rand(kernel + (in_channels // groups, out_channels), case.dtype)
    epilogue = case.epilogue
    bias = rand((out_channels,), case.dtype) if epilogue and epilogue != "relu-nobias" else None
    activation = {None: None, "bias": None, "relu-nobias": "relu"}.get(epilogue, epilogue)
    dilation_arg = (None if case.form == "int" and max(dilations) == 1
                    else tools.window(dilations, case.form, channels_first))
    got = function(x, w, tools.window(strides, case.form, channels_first),
                   tools.padding(padding, case.form, channels_first), case.layout, dilation_arg,
                   bias=bias, activation=activation)
    assert got.shape == _layout_shape(2, out_channels, out_sizes, channels_first)
    expected = oracle.conv(x, w, strides, padding, dilations, channels_first, bias, activation)
    assert_close(got, expected, case.dtype)


COMMON = dict(dtype=[F32, F64], stride=[1, 2, 3], padding=["SAME", "VALID", EXPLICIT],
              divides=[True, False], epilogue=EPILOGUES, form=["int", "spatial", "full"])


@pytest.mark.grid(layout=["NWC", "NCW"], kernel=list(KERNELS[1]), dilation=[1, 2, 3],
                  groups=[1, 2, 3], **COMMON, random=6, seed=1)
def test_conv1d_matches_tf(case, rand, oracle, tools, assert_close):
    _run_conv_case(1, case, rand, oracle, tools, assert_close)


@pytest.mark.grid(layout=["NHWC", "NCHW"], kernel=list(KERNELS[2]), dilation=[1, 2, (1, 3)],
                  groups=[1, 2, 3], **{**COMMON, "stride": [1, 2, 3, (3, 1)]}, random=10, seed=2)
def test_conv2d_matches_tf(case, rand, oracle, tools, assert_close):
    _run_conv_case(2, case, rand, oracle, tools, assert_close)


@pytest.mark.grid(layout=["NDHWC", "NCDHW"], kernel=list(KERNELS[3]), dilation=[1, 2, (2, 1, 1)],
                  groups=[1, 2], **{**COMMON, "stride": [1, 2, 3, (1, 2, 3)]}, random=4, seed=3)
def test_conv3d_matches_tf(case, rand, oracle, tools, assert_close):
    _run_conv_case(3, case, rand, oracle, tools, assert_close)


@pytest.mark.grid(layout=["NHWC", "NCHW"], dtype=[F32, F64], stride=[1, 2, 3, (2, 1)],
                  padding=["SAME", "VALID", EXPLICIT], dilation=[1, 2, (1, 3)],
                  kernel=list(KERNELS[2]), divides=[True, False], multiplier=[1, 2],
                  form=["int", "spatial", "full"], random=6, seed=4)
def test_depthwise_conv2d_matches_tf(case, rand, oracle, tools, assert_close):
    channels_first = case.layout == "NCHW"
    kernel = KERNELS[2][case.kernel]
    sizes, strides, dilations, padding, out_sizes = _geometry(case, 2, tools, kernel)
    channels = 3
    x = rand(_layout_shape(2, channels, sizes, channels_first), case.dtype)
    w = rand(kernel + (channels, case.multiplier), case.dtype)
    got = fastconv.depthwise_conv2d(x, w, tools.window(strides, case.form, channels_first),
                                    tools.padding(padding, case.form, channels_first),
                                    case.layout, tools.window(dilations, case.form, channels_first))
    assert got.shape == _layout_shape(2, channels * case.multiplier, out_sizes, channels_first)
    expected = oracle.depthwise(x, w, strides, padding, dilations, channels_first)
    assert_close(got, expected, case.dtype)


@pytest.mark.grid(layout=["NHWC", "NCHW"], dtype=[F32, F64], stride=[1, 2, 3, (2, 1)],
                  padding=["SAME", "VALID", EXPLICIT], dilation=[1, 2],
                  kernel=list(KERNELS[2]), divides=[True, False], output_shape=["full", "spatial"],
                  form=["int", "spatial", "full"], random=6, seed=5)
def test_conv2d_transpose_matches_tf(case, rand, oracle, tools, assert_close):
    channels_first = case.layout == "NCHW"
    kernel = KERNELS[2][case.kernel]
    # The transposed conv's *output* is the forward conv's input: size it like one.
    out_spatial, strides, dilations, padding, in_spatial = _geometry(case, 2, tools, kernel)
    in_channels, out_channels = 4, 3
    x = rand(_layout_shape(2, in_channels, in_spatial, channels_first), case.dtype)
    w = rand(kernel + (out_channels, in_channels), case.dtype)
    output_shape = (_layout_shape(2, out_channels, out_spatial, channels_first)
                    if case.output_shape == "full" else out_spatial)
    got = fastconv.conv2d_transpose(x, w, output_shape,
                                    tools.window(strides, case.form, channels_first),
                                    tools.padding(padding, case.form, channels_first),
                                    case.layout, tools.window(dilations, case.form, channels_first))
    assert got.shape == _layout_shape(2, out_channels, out_spatial, channels_first)
    expected = oracle.conv_transpose(x, w, out_spatial, strides, padding, dilations, channels_first)
    assert_close(got, expected, case.dtype)


def _run_transpose_case(n, case, rand, oracle, tools, assert_close):
    function = {1: fastconv.conv1d_transpose, 3: fastconv.conv3d_transpose}[n]
    channels_first = case.layout == tools.layouts[n][1]
    kernel = KERNELS[n][case.kernel]
    out_spatial, strides, dilations, padding, in_spatial = _geometry(case, n, tools, kernel)
    in_channels, out_channels = 3, 2
    x = rand(_layout_shape(2, in_channels, in_spatial, channels_first), case.dtype)
    w = rand(kernel + (out_channels, in_channels), case.dtype)
    output_shape = _layout_shape(2, out_channels, out_spatial, channels_first)
    got = function(x, w, output_shape, tools.window(strides, case.form, channels_first),
                   tools.padding(padding, case.form, channels_first), case.layout,
                   tools.window(dilations, case.form, channels_first))
    assert got.shape == output_shape
    expected = oracle.conv_transpose(x, w, out_spatial, strides, padding, dilations, channels_first)
    assert_close(got, expected, case.dtype)
    generic = fastconv.conv_transpose(x, w, output_shape, strides, padding, case.layout, dilations)
    np.testing.assert_array_equal(generic, got)


@pytest.mark.grid(layout=["NWC", "NCW"], dtype=[F32, F64], stride=[1, 2, 3], padding=["SAME",
                  "VALID", EXPLICIT], dilation=[1, 2], kernel=list(KERNELS[1]),
                  divides=[True, False], form=["int", "full"], random=2, seed=11)
def test_conv1d_transpose_matches_tf(case, rand, oracle, tools, assert_close):
    _run_transpose_case(1, case, rand, oracle, tools, assert_close)


@pytest.mark.grid(layout=["NDHWC", "NCDHW"], dtype=[F32, F64], stride=[1, 2, (2, 1, 2)],
                  padding=["SAME", "VALID", EXPLICIT], dilation=[1, (1, 2, 1)],
                  kernel=list(KERNELS[3]), divides=[True, False], form=["int", "full"],
                  random=2, seed=12)
def test_conv3d_transpose_matches_tf(case, rand, oracle, tools, assert_close):
    _run_transpose_case(3, case, rand, oracle, tools, assert_close)


@pytest.mark.parametrize("rate, padding", [(1, "SAME"), (2, "SAME"), (3, "VALID"), (2, "valid")])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_atrous_convs_match_tf(rate, padding, dtype, rand, tf, assert_close):
    x, w = rand((2, 9, 8, 3), dtype), rand((3, 2, 3, 4), dtype)
    got = fastconv.atrous_conv2d(x, w, rate, padding)
    assert_close(got, ops.get("atrous_conv2d").tf_function(x, w, rate, padding), dtype)
    assert_close(got, fastconv.conv2d(x, w, 1, padding, dilations=rate), dtype)
    wt = w  # read as (H, W, out, in): from got's 4 channels back to x's 3
    back = fastconv.atrous_conv2d_transpose(got, wt, x.shape, rate, padding)
    expected = ops.get("atrous_conv2d_transpose").tf_function(got, wt, x.shape, rate, padding)
    assert_close(back, expected, dtype)


@pytest.mark.parametrize("op, layout, dtype, activation", [
    ("depthwise_conv2d", "NHWC", F32, "relu"), ("depthwise_conv2d", "NCHW", F64, "tanh"),
    ("depthwise_conv2d", "NCHW", F32, None), ("atrous_conv2d", "NHWC", F32, "relu6"),
    ("atrous_conv2d", "NHWC", F64, "sigmoid")])
def test_depthwise_and_atrous_fuse_bias_and_activation(op, layout, dtype, activation, rand, tf,
                                                       assert_close):
    x = rand((2, 3, 8, 7) if layout == "NCHW" else (2, 8, 7, 3), dtype)
    if op == "depthwise_conv2d":
        w, b = rand((3, 3, 3, 2), dtype), rand((6,), dtype)
        args = (x, w, 2, "SAME", layout, 1)
    else:
        w, b = rand((3, 2, 3, 5), dtype), rand((5,), dtype)
        args = (x, w, 2, "SAME")
    got = getattr(fastconv, op)(*args, bias=b, activation=activation)
    assert_close(got, getattr(reference, op)(*args, bias=b, activation=activation), dtype)
    assert_close(got, ops.get(op).tf_function(*args, bias=b, activation=activation), dtype)
    with pytest.raises(ValueError, match=r"bias must have shape \(\d+,\)"):
        getattr(fastconv, op)(*args, bias=b[:-1])


@pytest.mark.parametrize("layout, dtype, strides, padding, dilations, activation", [
    ("NHWC", F32, 1, "SAME", 1, None), ("NHWC", F64, 2, "VALID", 1, "relu"),
    ("NCHW", F32, 1, "SAME", 2, "tanh"), ("NCHW", F64, (2, 1), ((1, 0), (2, 1)), 1, None),
    ("NHWC", F32, 2, "SAME", 2, "relu6")])
def test_separable_conv2d_matches_tf(layout, dtype, strides, padding, dilations, activation,
                                     rand, tf, assert_close):
    x = rand((2, 3, 9, 8) if layout == "NCHW" else (2, 9, 8, 3), dtype)
    dw, pw, b = rand((3, 2, 3, 2), dtype), rand((1, 1, 6, 5), dtype), rand((5,), dtype)
    args = (x, dw, pw, strides, [list(p) for p in padding] if not isinstance(padding, str)
            else padding, layout, dilations)
    got = fastconv.separable_conv2d(*args, bias=b, activation=activation)
    assert_close(got, ops.get("separable_conv2d").tf_function(*args, bias=b,
                                                              activation=activation), dtype)
    assert_close(got, reference.separable_conv2d(*args, bias=b, activation=activation), dtype)
    with pytest.raises(ValueError, match="pointwise_filter"):
        fastconv.separable_conv2d(x, dw, pw[:, :, :5], strides, "SAME", layout)
    with pytest.raises(ValueError, match="pointwise_filter must have shape"):
        fastconv.separable_conv2d(x, dw, pw[0], strides, "SAME", layout)


@pytest.mark.parametrize("call, error, match", [
    (lambda x, w: fastconv.atrous_conv2d(x, w, 0, "SAME"), ValueError, "rate 0 cannot be less"),
    (lambda x, w: fastconv.atrous_conv2d(x, w, 1.5, "SAME"), TypeError, "rate must be an int"),
    (lambda x, w: fastconv.atrous_conv2d(x, w, 2, [[0, 0]] * 4), ValueError, "SAME.*VALID"),
    (lambda x, w: fastconv.conv_transpose(x, w, (1, 2), 1), ValueError, "3, 4 or 5 entries"),
    (lambda x, w: fastconv.conv3d_transpose(x, w, (2, 9, 8, 4), 1), ValueError,
     "input must be 5-D"),
    (lambda x, w: fastconv.conv1d_transpose(x[:, 0], w[0], (2, 9, 3), 1), ValueError,
     "in_channels"),
])
def test_new_convs_reject_bad_arguments(call, error, match, rand):
    with pytest.raises(error, match=match):
        call(rand((2, 9, 8, 3), F32), rand((3, 2, 3, 4), F32))


@pytest.mark.parametrize("layout, dtype, shape, kernel, out_channels, groups, strides, padding, "
                         "dilations", [
    ("NHWC", F32, (2, 13, 37, 16), (3, 3), 24, 1, (1, 1), "SAME", (1, 1)),
    ("NCHW", F32, (2, 16, 13, 37), (3, 3), 24, 1, (1, 1), "SAME", (1, 1)),
    ("NHWC", F64, (1, 17, 29, 12), (5, 5), 20, 1, (2, 2), "VALID", (1, 1)),
    ("NCHW", F32, (1, 12, 19, 33), (3, 3), 17, 1, (1, 2), ((2, 1), (0, 3)), (2, 1)),
    ("NHWC", F32, (2, 11, 31, 16), (3, 3), 32, 4, (1, 1), "SAME", (1, 1)),
    ("NCHW", F64, (1, 18, 15, 23), (2, 4), 9, 3, (3, 2), "SAME", (1, 2)),
    ("NHWC", F32, (3, 9, 70, 5), (1, 1), 40, 1, (1, 1), "VALID", (1, 1)),
    ("NHWC", F32, (1, 8, 45, 33), (3, 3), 65, 1, (1, 1), "SAME", (1, 1)),
])
def test_conv2d_medium_shapes_match_tf(layout, dtype, shape, kernel, out_channels, groups,
                                       strides, padding, dilations, rand, oracle, assert_close):
    """Wider rows and more channels than the grids: full register tiles plus remainders."""
    channels_first = layout == "NCHW"
    channels = shape[1] if channels_first else shape[-1]
    x = rand(shape, dtype)
    w = (rand(kernel + (channels // groups, out_channels), F64)
         / np.sqrt(np.prod(kernel) * channels)).astype(dtype)
    bias = rand((out_channels,), dtype)
    explicit = not isinstance(padding, str)
    got = fastconv.conv2d(x, w, list(strides), [list(p) for p in padding] if explicit else padding,
                          layout, list(dilations), bias=bias, activation="relu")
    expected = oracle.conv(x, w, strides, padding, dilations, channels_first, bias, "relu")
    assert_close(got, expected, dtype)


@pytest.mark.parametrize("activation", ["relu", "relu6", "sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_fused_bias_activation_matches_tf_large_values(activation, dtype, rand, oracle, tools,
                                                       assert_close):
    """Pre-activations spread over [-12, 12] so relu6's upper clip and the tails are hit."""
    x = rand((1, 6, 5, 4), dtype) * 3
    w = rand((3, 3, 4, 5), dtype)
    bias = np.linspace(-6, 8, 5).astype(dtype)
    got = fastconv.conv2d(x, w, 1, "SAME", bias=bias, activation=activation)
    assert_close(got, oracle.conv(x, w, (1, 1), "SAME", None, False, bias, activation), dtype)


# ----------------------------------------------------------------------------- hand-computed

ARANGE_4X4 = np.arange(16, dtype=F64).reshape(1, 4, 4, 1)
# 3x3 box sums of arange(16).reshape(4, 4) with SAME zero padding, computed by hand.
BOX_SUMS_4X4 = np.array([[10, 18, 24, 18],
                         [27, 45, 54, 39],
                         [51, 81, 90, 63],
                         [42, 66, 72, 50]], dtype=F64)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_conv2d_arange_box_sums_same(dtype, assert_close):
    got = fastconv.conv2d(ARANGE_4X4.astype(dtype), np.ones((3, 3, 1, 1), dtype), 1, "SAME")
    assert_close(got, BOX_SUMS_4X4.reshape(1, 4, 4, 1), dtype)


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_conv2d_is_correlation_not_convolution(data_format, assert_close):
    # out[i, j] = x[i, j] + 2 x[i, j+1] + 3 x[i+1, j] + 4 x[i+1, j+1] = 10 (4i + j) + 34.
    w = np.array([[1, 2], [3, 4]], F64).reshape(2, 2, 1, 1)
    x = ARANGE_4X4 if data_format == "NHWC" else ARANGE_4X4.reshape(1, 1, 4, 4)
    got = fastconv.conv2d(x, w, 1, "VALID", data_format)
    expected = np.array([[34, 44, 54], [74, 84, 94], [114, 124, 134]], F64)
    assert_close(got, expected.reshape(got.shape), F64)


def test_conv2d_stride2_valid_on_5x5_arange(assert_close):
    x = np.arange(25, dtype=F64).reshape(1, 5, 5, 1)  # x[i, j] = 5i + j
    got = fastconv.conv2d(x, np.ones((3, 3, 1, 1)), 2, "VALID")
    # Box sums = 9 x centre value; centres (1, 1), (1, 3), (3, 1), (3, 3).
    assert_close(got, np.array([54, 72, 144, 162], F64).reshape(1, 2, 2, 1), F64)


def test_conv1d_weights_not_flipped(assert_close):
    x = np.arange(1, 7, dtype=F64).reshape(1, 6, 1)
    w = np.array([1, 10, 100], F64).reshape(3, 1, 1)
    got = fastconv.conv1d(x, w, 1, "VALID")
    assert_close(got, np.array([321, 432, 543, 654], F64).reshape(1, 4, 1), F64)


def test_same_padding_puts_the_extra_cell_after(assert_close):
    # same_padding(5, 4, 1) == (1, 2): padded [0, 1, 2, 3, 4, 5, 0, 0].
    x = np.arange(1, 6, dtype=F64).reshape(1, 5, 1)
    got = fastconv.conv1d(x, np.ones((4, 1, 1)), 1, "SAME")
    assert_close(got, np.array([6, 10, 14, 12, 9], F64).reshape(1, 5, 1), F64)
    # Explicit (2, 1) would give [3, 6, 10, 14, 12]: check the API really distinguishes them.
    other = fastconv.conv1d(x, np.ones((4, 1, 1)), 1, [[0, 0], [2, 1], [0, 0]])
    assert_close(other, np.array([3, 6, 10, 14, 12], F64).reshape(1, 5, 1), F64)


def test_conv1d_dilation_and_stride_by_hand(assert_close):
    x = np.arange(10, dtype=F64).reshape(1, 10, 1)
    # taps at i and i + 3, stride 2, VALID: windows start at 0, 2, 4, 6.
    got = fastconv.conv1d(x, np.array([1.0, 10.0]).reshape(2, 1, 1), 2, "VALID", dilations=3)
    assert_close(got, np.array([30, 52, 74, 96], F64).reshape(1, 4, 1), F64)


def test_grouped_conv2d_keeps_groups_apart(assert_close):
    x = np.empty((1, 3, 3, 2))
    x[..., 0], x[..., 1] = 1.0, 100.0
    w = np.array([2.0, 3.0]).reshape(1, 1, 1, 2)  # in_channels 1 -> 2 groups
    got = fastconv.conv2d(x, w, 1, "VALID")
    expected = np.broadcast_to(np.array([2.0, 300.0]), (1, 3, 3, 2))
    assert_close(got, expected, F64)


def test_depthwise_channel_order_is_c_times_m_plus_m(assert_close):
    x = np.empty((1, 2, 2, 2))
    x[..., 0], x[..., 1] = 1.0, 10.0
    w = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).reshape(1, 1, 2, 3)
    got = fastconv.depthwise_conv2d(x, w, 1, "VALID")
    expected = np.broadcast_to(np.array([1, 2, 3, 40, 50, 60], F64), (1, 2, 2, 6))
    assert_close(got, expected, F64)


def test_conv2d_transpose_stamps_filter_blocks(assert_close):
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    w = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(2, 2, 1, 1)
    got = fastconv.conv2d_transpose(x, w, (1, 4, 4, 1), 2, "VALID")
    expected = np.array([[1, 2, 2, 4], [3, 4, 6, 8], [3, 6, 4, 8], [9, 12, 12, 16]], F64)
    assert_close(got, expected.reshape(1, 4, 4, 1), F64)


@pytest.mark.parametrize("activation", [None, "relu", "relu6", "sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_activation_formulas_on_known_values(activation, dtype, assert_close):
    values = np.array([-7.0, -1.0, 0.0, 0.5, 3.0, 5.5, 7.0])
    x = values.astype(dtype).reshape(1, 7, 1)
    bias = np.array([0.5], dtype)
    got = fastconv.conv1d(x, np.ones((1, 1, 1), dtype), 1, "VALID", bias=bias,
                          activation=activation)
    z = values + 0.5
    expected = {None: z, "relu": np.maximum(z, 0), "relu6": np.clip(z, 0, 6),
                "sigmoid": 1 / (1 + np.exp(-z)), "tanh": np.tanh(z)}[activation]
    assert_close(got, expected.reshape(1, 7, 1), dtype)


def test_conv3d_docstring_box_sum(assert_close):
    x = np.arange(64, dtype=F64).reshape(1, 4, 4, 4, 1)
    got = fastconv.conv3d(x, np.ones((2, 2, 2, 1, 1)), 2, "VALID")
    # Each 2x2x2 block of arange(64).reshape(4, 4, 4) sums to 8 x its mean corner + offsets.
    expected = np.array([[[x[0, d:d + 2, h:h + 2, w:w + 2, 0].sum() for w in (0, 2)]
                          for h in (0, 2)] for d in (0, 2)])
    assert expected[0, 0, 0] == 0 + 1 + 4 + 5 + 16 + 17 + 20 + 21
    assert_close(got, expected.reshape(1, 2, 2, 2, 1), F64)
