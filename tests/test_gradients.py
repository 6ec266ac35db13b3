"""Gradients: TF's named backprop kernels and fastconv.vjp, against the NumPy oracle
(fastconv.reference's gradients) and TensorFlow (its named kernels and tf.GradientTape).

* every op of the op table has a vjp rule, and its sample calls' gradients equal
  ``tf.GradientTape().gradient`` of the TF computation (bias and activation included);
* the named conv kernels over grids of layouts, strides, paddings, dilations, groups and dtypes,
  against the oracle, and against TF's own kernels where its CPU runs them (no dilation);
* the pooling gradients' TF rules: ties, NaN and -inf windows, padding, 1-D/2-D (first max)
  and 3-D (every max), against tf.raw_ops.MaxPoolGradV2 / MaxPool3DGrad / AvgPool*Grad;
* every registered algorithm of the gradient families;
* errors name the argument.
"""

import numpy as np
import pytest

import fastconv
from fastconv import dispatch, ops
from fastconv import reference as oracle_module

F32, F64 = np.float32, np.float64
EXPLICIT = "explicit"


def _padding(kind, n_spatial):
    if kind != EXPLICIT:
        return kind
    return [[1, 0], [0, 2], [2, 1]][:n_spatial]


def _allclose(actual, expected, dtype, scale=1.0):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape and actual.dtype == np.dtype(dtype)
    tol = (1e-5 if np.dtype(dtype) == F32 else 1e-12) * scale
    both_nan = np.isnan(actual) & np.isnan(expected)
    assert np.array_equal(np.isnan(actual), np.isnan(expected))
    finite = ~both_nan
    bound = tol * max(1.0, float(np.abs(expected[finite]).max(initial=0)))
    assert float(np.abs(actual[finite] - expected[finite]).max(initial=0)) <= bound


# ----------------------------------------------------------------------------- vjp of every op

def test_every_op_has_a_vjp_rule():
    from fastconv.backward import RULES

    assert set(RULES) == set(ops.NAMES)


def _sample_arrays(sample, rand, dtype):
    return {name: rand(shape, dtype) for name, shape in sample.shapes.items()}


@pytest.mark.parametrize("label", sorted(ops.samples()))
@pytest.mark.parametrize("dtype", [F32, F64])
def test_vjp_matches_gradient_tape(label, dtype, rand, tf):
    op, sample = ops.samples()[label]
    arrays = _sample_arrays(sample, rand, dtype)
    names = list(arrays)
    captured = {}

    def record(module_name):
        def call(*args, **kwargs):
            captured[module_name] = (args, kwargs)
            return getattr(fastconv, op.name)(*args, **kwargs)
        return call

    # The sample's call, with fastconv's function, records its arguments.
    class Recorder:
        def __getattr__(self, name):
            return record(name)

    expected_output = sample.call(Recorder(), **arrays)
    args, kwargs = captured[op.name]
    output, backward = fastconv.vjp(op.name, *args, **kwargs)
    if isinstance(output, tuple):  # (output, argmax): the indices exactly, the gradient is
        np.testing.assert_array_equal(output[1], expected_output[1])  # the values'
        output, expected_output = output[0], expected_output[0]
    _allclose(output, expected_output, dtype)
    dy = rand(output.shape, dtype)
    grads = backward(dy)
    from fastconv import tf_reference

    try:
        expected = tf_reference.vjp(op.name, dy, *args, **kwargs)
    except tf.errors.InvalidArgumentError as error:  # grouped convs: no gradient on TF's CPU
        assert "not supported on CPU" in str(error)
        _check_adjoint(op, args, kwargs, dy, grads, rand)
        return
    assert len(grads) == len(expected) == len(names)
    for got, want in zip(grads, expected):
        _allclose(got, want, dtype, scale=10)


def _check_adjoint(op, args, kwargs, dy, grads, rand):
    """For an op linear in each array argument (a conv without bias and activation):
    ``<dy, op(..., v, ...)> == <grad, v>`` for a random ``v`` in each argument's place."""
    assert not kwargs.get("bias") and not kwargs.get("activation")
    for position, grad in enumerate(grads):
        v = rand(np.shape(args[position]), F64)
        moved = list(args)
        moved[position] = v
        moved = [np.asarray(a, F64) if isinstance(a, np.ndarray) else a for a in moved]
        lhs = float(np.sum(dy.astype(F64) * op.function(*moved, **kwargs)))
        rhs = float(np.sum(grad.astype(F64) * v))
        assert lhs == pytest.approx(rhs, rel=1e-4)


def test_vjp_of_a_fused_activation_reads_the_output():
    x = np.array([[[-1.0], [0.5], [2.0]]], F32)
    w = np.ones((1, 1, 1), F32)
    y, backward = fastconv.vjp(fastconv.conv1d, x, w, 1, "VALID", activation="relu")
    dx, dw = backward(np.ones_like(y))
    np.testing.assert_array_equal(dx[0, :, 0], [0, 1, 1])
    np.testing.assert_array_equal(dw.ravel(), [2.5])


def test_backward_can_be_called_twice_and_keeps_the_inputs(rand):
    x, w = rand((2, 6, 6, 3)), rand((3, 3, 3, 4))
    saved = x.copy(), w.copy()
    y, backward = fastconv.vjp(fastconv.conv2d, x, w, 2, "SAME")
    dy = rand(y.shape)
    first, second = backward(dy), backward(dy)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(x, saved[0])
    np.testing.assert_array_equal(w, saved[1])


# ----------------------------------------------------------------------------- named conv kernels

@pytest.mark.grid(n=[1, 2, 3], layout=["last", "first"], dtype=[F32, F64], stride=[1, 2, 3],
                  padding=["SAME", "VALID", EXPLICIT], dilation=[1, 2], groups=[1, 2],
                  random=8, seed=31)
def test_conv_backprops_match_the_oracle(case, rand):
    n = case.n
    first = case.layout == "first"
    fmt = {1: "NWC", 2: "NHWC", 3: "NDHWC"}[n]
    if first:
        fmt = fmt[0] + "C" + fmt[1:-1]
    spatial = (9, 8, 7)[:n]
    channels = 2 * case.groups
    x = rand((2, channels, *spatial) if first else (2, *spatial, channels), case.dtype)
    w = rand((*(3, 2, 3)[:n], 2, 3 * case.groups), case.dtype)
    padding = _padding(case.padding, n)
    y = getattr(fastconv, f"conv{n}d")(x, w, case.stride, padding, fmt, case.dilation)
    dy = rand(y.shape, case.dtype)
    for what, first_arg, second in (("input", x.shape, w), ("filter", x, w.shape)):
        name = f"conv{n}d_backprop_{what}"
        got = getattr(fastconv, name)(first_arg, second, dy, case.stride, padding, fmt,
                                      case.dilation)
        want = getattr(oracle_module, name)(first_arg, second, dy, case.stride, padding, fmt,
                                            case.dilation)
        _allclose(got, want, case.dtype)


@pytest.mark.grid(n=[1, 2, 3], layout=["last", "first"], stride=[1, 2, (2, 1, 3)],
                  padding=["SAME", "VALID"], dtype=[F32, F64], random=2, seed=32)
def test_conv_backprops_match_tf_kernels(case, rand, tf):
    from fastconv import tf_reference

    n = case.n
    fmt = {1: "NWC", 2: "NHWC", 3: "NDHWC"}[n]
    if case.layout == "first":
        fmt = fmt[0] + "C" + fmt[1:-1]
    stride = case.stride if np.ndim(case.stride) == 0 else case.stride[:n]
    spatial = (8, 7, 6)[:n]
    x = rand((2, 3, *spatial) if case.layout == "first" else (2, *spatial, 3), case.dtype)
    w = rand((*(3,) * n, 3, 5), case.dtype)
    y = getattr(fastconv, f"conv{n}d")(x, w, stride, case.padding, fmt)
    dy = rand(y.shape, case.dtype)
    for what, first_arg, second in (("input", x.shape, w), ("filter", x, w.shape)):
        name = f"conv{n}d_backprop_{what}"
        got = getattr(fastconv, name)(first_arg, second, dy, stride, case.padding, fmt)
        want = getattr(tf_reference, name)(first_arg, second, dy, stride, case.padding, fmt)
        _allclose(got, want, case.dtype, scale=10)


@pytest.mark.parametrize("stride, padding, dilation, multiplier",
                         [(1, "SAME", 1, 1), (2, "VALID", 1, 2), (1, "SAME", 2, 1),
                          (2, "SAME", 1, 3)])
def test_depthwise_backprops(stride, padding, dilation, multiplier, rand, tf):
    from fastconv import tf_reference

    x = rand((2, 9, 8, 4))
    w = rand((3, 3, 4, multiplier))
    y = fastconv.depthwise_conv2d(x, w, stride, padding, dilations=dilation)
    dy = rand(y.shape)
    modules = [oracle_module] + ([tf_reference] if dilation == 1 else [])
    for module in modules:
        _allclose(fastconv.depthwise_conv2d_backprop_input(x.shape, w, dy, stride, padding,
                                                           dilations=dilation),
                  module.depthwise_conv2d_backprop_input(x.shape, w, dy, stride, padding,
                                                         dilations=dilation), F32, 10)
        _allclose(fastconv.depthwise_conv2d_backprop_filter(x, w.shape, dy, stride, padding,
                                                            dilations=dilation),
                  module.depthwise_conv2d_backprop_filter(x, w.shape, dy, stride, padding,
                                                          dilations=dilation), F32, 10)


def test_a_strided_conv_leaves_unread_input_rows_without_gradient(rand):
    x = rand((1, 6, 1, 1))
    w = rand((1, 1, 1, 1))
    dy = np.ones((1, 2, 1, 1), F32)  # stride 3, VALID: rows 0 and 3 are read
    dx = fastconv.conv2d_backprop_input(x.shape, w, dy, 3, "VALID")
    assert np.count_nonzero(dx) == 2 and dx[0, 1:3].sum() == 0 and dx[0, 4:].sum() == 0


def test_non_finite_output_gradient_meeting_padding_gives_nan_filter_gradient(tf):
    """Zero padding multiplies: a tap whose cells include padding where the output gradient is
    infinite gets 0 * inf = NaN, as TF's CPU kernels give on AVX2 hosts (Eigen's and oneDNN's
    AVX2 path). oneDNN's AVX-512 path skips padded cells (0 there): TF's answer depends on the
    host, fastconv's does not, so only the taps that read real cells are compared with TF."""
    from fastconv import tf_reference

    x = np.ones((1, 3, 3, 1), F32)
    dy = np.zeros((1, 3, 3, 1), F32)
    dy[0, 0, 0, 0] = np.inf
    got = fastconv.conv2d_backprop_filter(x, (3, 3, 1, 1), dy, 1, "SAME")[..., 0, 0]
    want = tf_reference.conv2d_backprop_filter(x, (3, 3, 1, 1), dy, 1, "SAME")[..., 0, 0]
    reads_padding = np.ones((3, 3), bool)
    reads_padding[1:, 1:] = False  # output (0, 0)'s taps reading rows/cols 0..1 are real cells
    np.testing.assert_array_equal(np.isnan(got), reads_padding)
    np.testing.assert_array_equal(got[~reads_padding], want[~reads_padding])
    assert np.isnan(want[reads_padding]).all() or (want[reads_padding] == 0).all()


# ----------------------------------------------------------------------------- pooling rules

def _pool_input(kind_of_data, shape, rng):
    if kind_of_data == "ties":  # ReLU outputs: all-zero windows
        return np.maximum(rng.integers(-2, 2, shape), 0).astype(F32)
    x = rng.standard_normal(shape).astype(F32)
    if kind_of_data == "nan":
        x.reshape(-1)[::7] = np.nan
    elif kind_of_data == "-inf":
        x.reshape(-1)[::3] = -np.inf
    return x


@pytest.mark.grid(n=[1, 2, 3], kind=["max", "avg"], data=["ties", "nan", "-inf", "normal"],
                  window=[(2, 2, "VALID"), (3, 2, "SAME"), (3, 1, "SAME"), (2, 3, "SAME")],
                  layout=["last", "first"], random=6, seed=33)
def test_pool_grads_match_tf(case, tf):
    from fastconv import tf_reference

    rng = np.random.default_rng(7)
    n = case.n
    k, s, padding = case.window
    fmt = {1: "NWC", 2: "NHWC", 3: "NDHWC"}[n]
    spatial = (7, 6, 5)[:n]
    shape = (2, *spatial, 3)
    if case.layout == "first":
        fmt = fmt[0] + "C" + fmt[1:-1]
        shape = (2, 3, *spatial)
    x = _pool_input(case.data, shape, rng)
    y = getattr(fastconv, f"{case.kind}_pool{n}d")(x, k, s, padding, fmt)
    dy = rng.standard_normal(y.shape).astype(F32)
    if case.kind == "max":
        args = (x, y, dy, k, s, padding, fmt)
    else:
        args = (x.shape, dy, k, s, padding, fmt)
    name = f"{case.kind}_pool{n}d_grad"
    got = getattr(fastconv, name)(*args)
    want = getattr(tf_reference, name)(*args)
    _allclose(got, want, F32)
    _allclose(getattr(oracle_module, name)(*args), want, F32)
    if case.kind == "max" and s >= k:  # windows do not overlap: the gradient is moved, exactly
        np.testing.assert_array_equal(got, want)


def test_max_pool_grad_ties_go_to_the_first_cell_in_2d_and_to_every_cell_in_3d():
    x2 = np.zeros((1, 2, 2, 1), F32)
    g2 = fastconv.max_pool2d_grad(x2, np.zeros((1, 1, 1, 1), F32), np.ones((1, 1, 1, 1), F32),
                                  2, 2, "VALID")
    np.testing.assert_array_equal(g2.ravel(), [1, 0, 0, 0])
    x3 = np.zeros((1, 2, 2, 2, 1), F32)
    g3 = fastconv.max_pool3d_grad(x3, np.zeros((1, 1, 1, 1, 1), F32),
                                  np.ones((1, 1, 1, 1, 1), F32), 2, 2, "VALID")
    np.testing.assert_array_equal(g3.ravel(), np.ones(8))


def test_a_nan_in_first_place_keeps_the_max_gradient_and_a_later_one_never_takes_it():
    dy = np.ones((1, 1, 1, 1), F32)
    first = np.array([np.nan, 1, 2, 5], F32).reshape(1, 2, 2, 1)
    later = np.array([1, np.nan, 2, 5], F32).reshape(1, 2, 2, 1)
    y = np.zeros((1, 1, 1, 1), F32)
    np.testing.assert_array_equal(fastconv.max_pool2d_grad(first, y, dy, 2, 2, "VALID").ravel(),
                                  [1, 0, 0, 0])
    np.testing.assert_array_equal(fastconv.max_pool2d_grad(later, y, dy, 2, 2, "VALID").ravel(),
                                  [0, 0, 0, 1])


def test_avg_pool_grad_divides_by_the_real_cells_and_padding_gets_nothing():
    dy = np.ones((1, 2, 2, 1), F32)
    dx = fastconv.avg_pool2d_grad((1, 3, 3, 1), dy, 2, 2, "SAME")
    # Windows: 2x2 (4 cells), 2x1, 1x2, 1x1: the corner cell is alone in its window.
    np.testing.assert_allclose(dx[0, :, :, 0], [[0.25, 0.25, 0.5], [0.25, 0.25, 0.5],
                                                 [0.5, 0.5, 1.0]])
    assert dx.sum() == pytest.approx(4.0)


# ----------------------------------------------------------------------------- every algorithm

def _algorithms(family):
    return [impl.name for impl in dispatch.implementations(family, "cpu")]


@pytest.mark.parametrize("algorithm", _algorithms("conv_transpose"))
@pytest.mark.parametrize("stride, padding", [(1, "SAME"), (2, "SAME"), (3, [[2, 1], [0, 1]])])
def test_grouped_transposed_conv_algorithms(algorithm, stride, padding, rand):
    x = rand((2, 7, 8, 6))
    # groups 2; col2im (chosen for few output channels) runs ungrouped transposed convs only
    w = rand((3, 2, 6, 4) if algorithm == "col2im" else (3, 2, 3, 4))
    y = fastconv.conv2d(x, w, stride, padding)
    dy = rand(y.shape)
    with dispatch.use_algorithm(algorithm):
        got = _input_grad_by_transposed_conv(x.shape, w, dy, stride, padding)
    _allclose(got, oracle_module.conv2d_backprop_input(x.shape, w, dy, stride, padding), F32)


def _input_grad_by_transposed_conv(in_shape, w, dy, stride, padding):
    """The input gradient through the conv_transpose family, whatever the stride (a
    stride-1 one would run the flipped filters' conv otherwise)."""
    from fastconv import api, gradients

    window = api._conv_window(2, stride, padding, None, False, "strides")
    groups = in_shape[-1] // w.shape[2]
    return gradients._input_grad(dy, w, in_shape[1:3], window, groups, False, 2, "cpu",
                                 allow_forward=False)


@pytest.mark.parametrize("algorithm", _algorithms("conv_filter_grad"))
@pytest.mark.parametrize("groups, layout, multiplier", [
    (1, "NHWC", 2), (2, "NCHW", 2), (4, "NHWC", 2), (4, "NHWC", 1), (4, "NCHW", 1)])
def test_filter_grad_algorithms(algorithm, groups, layout, multiplier, rand):
    if algorithm == "depthwise" and (groups, multiplier) != (4, 1):
        pytest.skip("the depthwise algorithm takes one filter per input channel only")
    if algorithm == "blocked" and groups > 1:
        pytest.skip("the blocked algorithm needs a lane block of output channels per group")
    x = rand((2, 4, 7, 6) if layout == "NCHW" else (2, 7, 6, 4))
    w_shape = (3, 3, 4 // groups, multiplier * groups)
    y = fastconv.conv2d(x, rand(w_shape), 2, "SAME", layout)
    dy = rand(y.shape)
    with dispatch.use_algorithm(algorithm):
        got = fastconv.conv2d_backprop_filter(x, w_shape, dy, 2, "SAME", layout)
    _allclose(got, oracle_module.conv2d_backprop_filter(x, w_shape, dy, 2, "SAME", layout), F32)


@pytest.mark.parametrize("x_shape, w_shape, strides, padding, dilations, layout, dtype", [
    # RGB stem: the (s, c) cells of a tap row merged into blocks, edge columns tap by tap.
    ((2, 30, 29, 3), (7, 7, 3, 40), 2, "SAME", 1, "NHWC", F32),
    # Block widths 12 + 1 per tap, 40 outputs (a part-filled lane block), explicit padding.
    ((2, 11, 12, 13), (3, 3, 13, 40), 2, [[0, 0], [2, 1], [1, 2], [0, 0]], 1, "NHWC", F32),
    # Grouped channels-first with dilations: blocks per group, channels at the plane stride.
    ((2, 20, 13, 11), (3, 3, 10, 64), 1, "SAME", 2, "NCHW", F32),
    # Two chunks of rows (more than CHUNK_BYTES of input and gradient), float64.
    ((2, 50, 20, 64), (3, 3, 64, 64), 1, "SAME", 1, "NHWC", F64),
])
def test_blocked_filter_grad_matches_tensorflow(x_shape, w_shape, strides, padding, dilations,
                                                layout, dtype, tf):
    """The micro-kernel filter gradient on the geometries its code paths split on, against TF
    and the oracle (the hypothesis test below draws small shapes only)."""
    from fastconv import tf_reference

    rng = np.random.default_rng(7)
    x = rng.standard_normal(x_shape).astype(dtype)
    tf_padding = padding
    if isinstance(padding, list) and layout == "NCHW":
        tf_padding = [padding[0], padding[3], padding[1], padding[2]]
    y = fastconv.conv2d(x, rng.standard_normal(w_shape).astype(dtype), strides, padding,
                        layout, dilations)
    dy = rng.standard_normal(y.shape).astype(dtype)
    with dispatch.use_algorithm("blocked"):
        got = fastconv.conv2d_backprop_filter(x, w_shape, dy, strides, padding, layout,
                                              dilations)
    _allclose(got, oracle_module.conv2d_backprop_filter(x, w_shape, dy, strides, padding,
                                                        layout, dilations), dtype, 10)
    _allclose(got, tf_reference.conv2d_backprop_filter(x, w_shape, dy, strides, tf_padding,
                                                       layout, dilations), dtype, 10)


def test_blocked_filter_grad_gives_nan_where_an_infinite_gradient_meets_padding():
    """The blocked kernel skips padded cells; the NaN of 0 * inf is restored afterwards."""
    x = np.ones((1, 6, 6, 4), F32)
    dy = np.zeros((1, 6, 6, 32), F32)
    dy[0, 0, 0, 5] = np.inf
    with dispatch.use_algorithm("blocked"):
        got = fastconv.conv2d_backprop_filter(x, (3, 3, 4, 32), dy, 1, "SAME")
    with dispatch.use_algorithm("gemm"):
        want = fastconv.conv2d_backprop_filter(x, (3, 3, 4, 32), dy, 1, "SAME")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got[0, 0, :, 5]).all() and not np.isnan(got[..., 4]).any()
    np.testing.assert_array_equal(got[~np.isnan(got)], want[~np.isnan(want)])


@pytest.mark.parametrize("family", ["max_pool_grad", "avg_pool_grad"])
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_pool_grad_algorithms(family, layout, rng):
    kind = family.split("_")[0]
    x = _pool_input("ties", (2, 3, 7, 6) if layout == "NCHW" else (2, 7, 6, 3), rng)
    y = getattr(fastconv, f"{kind}_pool2d")(x, 3, 2, "SAME", layout)
    dy = rng.standard_normal(y.shape).astype(F32)
    args = (x, y, dy) if kind == "max" else (x.shape, dy)
    want = getattr(oracle_module, f"{kind}_pool2d_grad")(*args, 3, 2, "SAME", layout)
    for algorithm in _algorithms(family):
        with dispatch.use_algorithm(algorithm):
            got = getattr(fastconv, f"{kind}_pool2d_grad")(*args, 3, 2, "SAME", layout)
        _allclose(got, want, F32)


# ----------------------------------------------------------------------------- errors

def test_grad_output_of_the_wrong_shape_or_dtype_is_named(rand):
    y, backward = fastconv.vjp(fastconv.conv2d, rand((1, 5, 5, 2)), rand((3, 3, 2, 4)), 1,
                               "SAME")
    with pytest.raises(ValueError, match="grad_output must have the output's shape"):
        backward(np.ones((1, 5, 5, 3), F32))
    with pytest.raises(TypeError, match="grad_output must have the output's dtype"):
        backward(np.ones(y.shape, F64))


@pytest.mark.parametrize("call, error, match", [
    (lambda: fastconv.conv2d_backprop_input((1, 5, 5, 2), np.ones((3, 3, 2, 4), F32),
                                            np.ones((1, 4, 4, 4), F32), 1, "SAME"),
     ValueError, "out_backprop has spatial shape"),
    (lambda: fastconv.conv2d_backprop_input((1, 5, 5), np.ones((3, 3, 2, 4), F32),
                                            np.ones((1, 5, 5, 4), F32), 1, "SAME"),
     ValueError, "input_sizes must have 4 entries"),
    (lambda: fastconv.conv2d_backprop_filter(np.ones((1, 5, 5, 2), F32), (3, 3, 2, 5),
                                             np.ones((1, 5, 5, 4), F32), 1, "SAME"),
     ValueError, "filter_sizes' out_channels"),
    (lambda: fastconv.conv2d_backprop_filter(np.ones((1, 5, 5, 2), F32), (3, 3, 2, 4),
                                             np.ones((1, 5, 5, 4), F64), 1, "SAME"),
     TypeError, "out_backprop"),
    (lambda: fastconv.max_pool2d_grad(np.ones((1, 4, 4, 1), F32), np.ones((1, 2, 2, 1), F32),
                                      np.ones((1, 3, 3, 1), F32), 2, 2, "VALID"),
     ValueError, "orig_output has shape"),
    (lambda: fastconv.avg_pool2d_grad((1, 4, 4, 1), np.ones((1, 3, 3, 1), F32), 2, 2, "VALID"),
     ValueError, "grad has spatial shape"),
    (lambda: fastconv.vjp("conv9d", np.ones(3)), ValueError, "no fastconv op named"),
])
def test_bad_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ----------------------------------------------------------------------------- properties

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@st.composite
def _conv_geometries(draw):
    n = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(n))
    strides = tuple(draw(st.integers(1, 3)) for _ in range(n))
    dilations = tuple(draw(st.integers(1, 2)) for _ in range(n))
    spatial = tuple(draw(st.integers((k - 1) * d + 1, (k - 1) * d + 6))
                    for k, d in zip(kernel, dilations))
    padding = draw(st.sampled_from(["SAME", "VALID", EXPLICIT]))
    if padding == EXPLICIT:
        padding = [[draw(st.integers(0, k - 1)), draw(st.integers(0, k - 1))] for k in kernel]
    return dict(n=n, groups=groups, kernel=kernel, strides=strides, dilations=dilations,
                spatial=spatial, padding=padding, first=draw(st.booleans()),
                dtype=draw(st.sampled_from([F32, F64])), batch=draw(st.integers(1, 2)),
                group_in=draw(st.integers(1, 3)), group_out=draw(st.integers(1, 3)),
                seed=draw(st.integers(0, 2 ** 16)))


@hypothesis.settings(deadline=None, max_examples=20, derandomize=True)
@hypothesis.given(_conv_geometries())
def test_conv_gradients_match_the_oracle_under_every_algorithm(case):
    """Any conv geometry: both named kernels equal the oracle under every registered algorithm
    of the families they run (conv, conv_transpose, conv_filter_grad)."""
    rng = np.random.default_rng(case["seed"])
    n, first, dtype = case["n"], case["first"], case["dtype"]
    fmt = {1: "NWC", 2: "NHWC", 3: "NDHWC"}[n]
    fmt = fmt[0] + "C" + fmt[1:-1] if first else fmt
    channels = case["group_in"] * case["groups"]
    shape = ((case["batch"], channels, *case["spatial"]) if first
             else (case["batch"], *case["spatial"], channels))
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((*case["kernel"], case["group_in"],
                             case["group_out"] * case["groups"])).astype(dtype)
    args = (case["strides"], case["padding"], fmt, case["dilations"])
    y = getattr(fastconv, f"conv{n}d")(x, w, *args)
    dy = rng.standard_normal(y.shape).astype(dtype)
    want_x = getattr(oracle_module, f"conv{n}d_backprop_input")(x.shape, w, dy, *args)
    want_w = getattr(oracle_module, f"conv{n}d_backprop_filter")(x, w.shape, dy, *args)
    backprop_input = getattr(fastconv, f"conv{n}d_backprop_input")
    backprop_filter = getattr(fastconv, f"conv{n}d_backprop_filter")
    _allclose(backprop_input(x.shape, w, dy, *args), want_x, dtype, 10)
    _allclose(backprop_filter(x, w.shape, dy, *args), want_w, dtype, 10)
    for family in ("conv", "conv_transpose", "conv_filter_grad"):
        for algorithm in _algorithms(family):
            with dispatch.use_algorithm(algorithm):
                try:
                    if family == "conv_filter_grad":
                        got = backprop_filter(x, w.shape, dy, *args)
                        want = want_w
                    else:
                        got = backprop_input(x.shape, w, dy, *args)
                        want = want_x
                except ValueError as error:  # the forced algorithm cannot run this problem
                    assert "cannot run" in str(error) or "no " in str(error)
                    continue
            _allclose(got, want, dtype, 10)
