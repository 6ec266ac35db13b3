"""The fused activations (silu/swish, gelu, gelu_tanh, leaky_relu with alpha, elu, hard_swish,
hard_sigmoid, callables), bias and activation on the transposed convs, grouped transposed
convs: against TensorFlow (``fastconv.tf_reference``: ``tf.nn.<activation>``, Keras'
``hard_silu``/``hard_sigmoid``) and the NumPy oracle, under every CPU algorithm, and their
gradients against ``tf.GradientTape``.
"""

import numpy as np
import pytest

import fastconv
from fastconv import activations, dispatch, reference
from fastconv.testing import assert_close
from test_gradients import _allclose  # the gradient tests' tolerance

F32, F64 = np.float32, np.float64
NEW = ["silu", "swish", "gelu", "gelu_tanh", "leaky_relu", "elu", "hard_swish", "hard_silu",
       "hard_sigmoid"]
ALL = [None, "linear", "relu", "relu6", "sigmoid", "tanh"] + NEW

# (algorithm, input shape, filter shape, strides, padding, layout): each algorithm forced on
# a case it applies to, so its own store step (where the activation is fused) runs.
ALGORITHM_CASES = [
    ("direct", (2, 7, 6, 3), (3, 3, 3, 5), 2, "SAME", "NHWC"),
    ("blocked", (2, 9, 8, 4), (3, 3, 4, 9), 1, "SAME", "NHWC"),
    ("blocked", (1, 4, 9, 8), (3, 2, 4, 6), 1, "VALID", "NCHW"),
    ("planar", (1, 3, 9, 10), (3, 3, 3, 4), 1, "SAME", "NCHW"),
    ("gemm", (2, 8, 5, 6), (1, 1, 8, 7), 1, "VALID", "NCHW"),
    ("gemm", (2, 5, 6, 8), (1, 1, 8, 7), 1, "VALID", "NHWC"),
    ("winograd", (1, 8, 8, 4), (3, 3, 4, 8), 1, "SAME", "NHWC"),
    ("depthwise", (2, 7, 7, 6), (3, 3, 1, 6), 1, "SAME", "NHWC"),
    ("numpy", (2, 6, 5, 3), (2, 3, 3, 4), 1, "SAME", "NHWC"),
]


def _values(rand, shape, dtype, specials=False):
    """Values spread over every branch (below -3, between, above 3); with ``specials``, inf,
    -inf and NaN at fixed places too."""
    x = (rand(shape, dtype) * 4).astype(dtype)
    if specials:
        flat = x.reshape(-1)
        flat[::7] = np.inf
        flat[3::11] = -np.inf
        flat[5::13] = np.nan
    return x


@pytest.mark.tf
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("activation", ALL)
def test_every_activation_equals_tf_and_the_oracle(activation, dtype, rand, tf):
    from fastconv import tf_reference

    x = _values(rand, (2, 6, 5, 3), dtype)
    w, b = rand((3, 3, 3, 4), dtype), rand((4,), dtype)
    got = fastconv.conv2d(x, w, 1, "SAME", bias=b, activation=activation)
    assert got.dtype == dtype
    assert_close(got, tf_reference.conv2d(x, w, 1, "SAME", bias=b, activation=activation), dtype)
    assert_close(got, reference.conv2d(x, w, 1, "SAME", bias=b, activation=activation), dtype)


@pytest.mark.tf
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("activation", NEW + ["relu", "sigmoid"])
def test_activations_of_inf_and_nan_follow_tf(activation, dtype, tf):
    """A 1x1 identity filter passes inf, -inf and NaN straight to the activation."""
    from fastconv import tf_reference

    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e30, -1e30, 3.0, -3.0, 2.5],
                 dtype).reshape(1, 10, 1)
    w = np.ones((1, 1, 1), dtype)
    got = fastconv.conv1d(x, w, 1, "VALID", activation=activation)
    want = tf_reference.conv1d(x, w, 1, "VALID", activation=activation)
    # Same inf/NaN pattern; values to TF's float32 accuracy (its float32 gelu_tanh loses
    # digits to cancellation in 1 + tanh near -3: 4e-8 absolute; fastconv rounds once).
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == F32 else 1e-14,
                               atol=1e-7 if dtype == F32 else 1e-15)


@pytest.mark.parametrize("activation", NEW)
@pytest.mark.parametrize("case", ALGORITHM_CASES, ids=lambda c: f"{c[0]}-{c[5]}")
@pytest.mark.parametrize("dtype", [F32, F64])
def test_every_cpu_algorithm_fuses_the_new_activations(case, activation, dtype, rand):
    algorithm, x_shape, w_shape, strides, padding, layout = case
    x = _values(rand, x_shape, dtype)
    w = rand(w_shape, dtype)
    b = rand((w_shape[-1],), dtype)
    if algorithm == "depthwise":
        channels = x_shape[-1] if layout == "NHWC" else x_shape[1]
        w = rand((3, 3, channels, 1), dtype)
        call = (fastconv.depthwise_conv2d, reference.depthwise_conv2d)
        b = rand((channels,), dtype)
    else:
        call = (fastconv.conv2d, reference.conv2d)
    with dispatch.use_algorithm(algorithm):
        got = call[0](x, w, strides, padding, layout, bias=b, activation=activation)
    assert_close(got, call[1](x, w, strides, padding, layout, bias=b, activation=activation),
                 dtype)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_leaky_relu_alpha_fused_or_not(dtype, rand):
    x = _values(rand, (2, 5, 4, 3), dtype)
    w = rand((2, 2, 3, 4), dtype)
    for alpha in (None, 0.2, 0.01, 1.5, -0.3, 0):
        got = fastconv.conv2d(x, w, 1, "VALID", activation="leaky_relu", alpha=alpha)
        assert_close(got, reference.conv2d(x, w, 1, "VALID", activation="leaky_relu",
                                           alpha=alpha), dtype)
    # TF's default slope is fused; any other runs after the kernel.
    assert activations.resolve("leaky_relu").fused
    assert activations.resolve("leaky_relu", 0.2).fused
    assert not activations.resolve("leaky_relu", 0.1).fused


@pytest.mark.tf
@pytest.mark.parametrize("dtype", [F32, F64])
def test_leaky_relu_alpha_equals_tf(dtype, rand, tf):
    from fastconv import tf_reference

    x = _values(rand, (1, 6, 6, 2), dtype)
    w = rand((3, 3, 2, 3), dtype)
    for alpha in (0.2, 0.05, -1.0):
        assert_close(fastconv.conv2d(x, w, 1, "SAME", activation="leaky_relu", alpha=alpha),
                     tf_reference.conv2d(x, w, 1, "SAME", activation="leaky_relu", alpha=alpha),
                     dtype)


def test_a_callable_activation_runs_after_the_kernel(rand):
    x, w = rand((1, 5, 5, 2), F32), rand((3, 3, 2, 3), F32)
    plain = fastconv.conv2d(x, w, 1, "SAME")
    got = fastconv.conv2d(x, w, 1, "SAME", activation=np.sin)
    assert got.dtype == F32
    np.testing.assert_array_equal(got, np.sin(plain).astype(F32))
    # A callable returning another dtype is cast back; one changing the shape is refused.
    np.testing.assert_array_equal(
        fastconv.conv2d(x, w, 1, "SAME", activation=lambda v: v.astype(F64) * 2), plain * 2)
    with pytest.raises(ValueError, match="must keep the shape"):
        fastconv.conv2d(x, w, 1, "SAME", activation=lambda v: v[0])


def test_activation_errors_name_the_argument():
    x, w = np.ones((1, 4, 4, 1), F32), np.ones((2, 2, 1, 1), F32)
    with pytest.raises(ValueError, match="activation must be one of .*'gelu'.* or a callable"):
        fastconv.conv2d(x, w, 1, "SAME", activation="mish")
    with pytest.raises(TypeError, match="activation must be None, a string or a callable"):
        fastconv.conv2d(x, w, 1, "SAME", activation=3)
    with pytest.raises(ValueError, match="alpha applies to activation='leaky_relu' only"):
        fastconv.conv2d(x, w, 1, "SAME", activation="relu", alpha=0.1)
    with pytest.raises(ValueError, match="alpha applies to activation='leaky_relu' only"):
        fastconv.conv2d(x, w, 1, "SAME", alpha=0.1)
    with pytest.raises(TypeError, match="alpha must be a number"):
        fastconv.conv2d(x, w, 1, "SAME", activation="leaky_relu", alpha="0.1")
    with pytest.raises(ValueError, match="alpha must be finite"):
        fastconv.conv2d(x, w, 1, "SAME", activation="leaky_relu", alpha=float("nan"))
    with pytest.raises(ValueError, match="derivative of a callable"):
        fastconv.vjp(fastconv.conv2d, x, w, 1, "SAME", activation=np.tanh)


# ----------------------------------------------------------------------------- transposed convs

TRANSPOSES = [
    # (function, input shape, filters shape, output shape, strides, layout)
    ("conv1d_transpose", (2, 5, 3), (3, 2, 3), (2, 10, 2), 2, "NWC"),
    ("conv2d_transpose", (2, 3, 4, 5), (3, 3, 2, 3), (2, 2, 8, 10), 2, "NCHW"),
    ("conv2d_transpose", (1, 4, 4, 6), (1, 1, 2, 6), (1, 8, 8, 2), 2, "NHWC"),  # gaps
    ("conv3d_transpose", (1, 2, 3, 2, 4), (2, 2, 2, 3, 4), (1, 4, 6, 4, 3), 2, "NDHWC"),
    ("conv_transpose", (1, 3, 7, 6), (3, 3, 2, 3), (1, 2, 7, 6), 1, "NCHW"),
]


@pytest.mark.tf
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "gelu", "hard_sigmoid"])
@pytest.mark.parametrize("case", TRANSPOSES, ids=lambda c: f"{c[0]}-{c[5]}-{c[1]}")
def test_transposed_convs_fuse_bias_and_activation(case, activation, dtype, rand, tf):
    from fastconv import tf_reference

    name, x_shape, w_shape, out_shape, strides, layout = case
    x, w = rand(x_shape, dtype), rand(w_shape, dtype)
    b = rand((w_shape[-2],), dtype)
    args = (x, w, out_shape, strides, "SAME", layout)
    got = getattr(fastconv, name)(*args, bias=b, activation=activation)
    assert_close(got, getattr(tf_reference, name)(*args, bias=b, activation=activation), dtype)
    assert_close(got, getattr(reference, name)(*args, bias=b, activation=activation), dtype)


@pytest.mark.parametrize("algorithm", ["direct", "blocked", "col2im", "numpy"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_every_transposed_algorithm_fuses_bias_and_activation(algorithm, dtype, rand):
    x, w, b = rand((2, 4, 3, 5), dtype), rand((3, 2, 3, 5), dtype), rand((3,), dtype)
    for strides, kernel in ((2, (3, 2)), (3, (1, 2))):  # (3, (1, 2)): outputs no tap reaches
        wk = w[:kernel[0], :kernel[1]]
        out = (2, 4 * strides, 3 * strides, 3)
        with dispatch.use_algorithm(algorithm):
            got = fastconv.conv2d_transpose(x, wk, out, strides, "SAME", bias=b,
                                            activation="elu")
        assert_close(got, reference.conv2d_transpose(x, wk, out, strides, "SAME", bias=b,
                                                     activation="elu"), dtype)


@pytest.mark.tf
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("groups, strides, padding, out_hw", [
    (2, 2, "SAME", (10, 8)), (3, 1, "VALID", (7, 6)), (4, 2, [[1, 0], [0, 2]], (10, 8))])
def test_grouped_conv2d_transpose_equals_tf_per_group(groups, strides, padding, out_hw, layout,
                                                      dtype, rand, tf):
    """PyTorch's grouped ConvTranspose2d (TF has none): filters (K_h, K_w, out / groups, in)."""
    from fastconv import tf_reference

    in_channels, group_out = 2 * groups, 3
    x = rand((2, 5, 4, in_channels), dtype)
    w = rand((3, 3, group_out, in_channels), dtype)
    if layout == "NCHW":
        x = np.ascontiguousarray(np.moveaxis(x, -1, 1))
        shape = (2, group_out * groups) + out_hw
        pad = padding if isinstance(padding, str) else [[0, 0], [0, 0]] + padding
    else:
        shape = (2,) + out_hw + (group_out * groups,)
        pad = padding if isinstance(padding, str) else [[0, 0]] + padding + [[0, 0]]
    b = rand((group_out * groups,), dtype)
    got = fastconv.conv2d_transpose(x, w, shape, strides, pad, layout, bias=b)
    assert_close(got, tf_reference.conv2d_transpose(x, w, shape, strides, pad, layout, bias=b),
                 dtype)
    assert_close(got, reference.conv2d_transpose(x, w, shape, strides, pad, layout, bias=b),
                 dtype)


def test_grouped_transpose_equals_torch_layout_groups(rand):
    """The grouped transposed conv is the adjoint of the grouped conv with the same filters."""
    x = rand((1, 4, 5, 6), F64)  # 6 channels, 3 groups
    w = rand((3, 3, 2, 6), F64)  # (K_h, K_w, out / groups, in)
    y = fastconv.conv2d_transpose(x, w, (1, 8, 10, 6), 2, "SAME")
    v = rand(y.shape, F64)
    # <conv2d_transpose(x), v> == <x, conv2d(v)> with the grouped conv's filters
    lhs = float(np.sum(y * v))
    rhs = float(np.sum(x * fastconv.conv2d(v, w, 2, "SAME")))
    assert lhs == pytest.approx(rhs, rel=1e-10)


def test_grouped_transpose_errors():
    x = np.ones((1, 4, 4, 6), F32)
    w = np.ones((3, 3, 2, 6), F32)
    with pytest.raises(ValueError, match=r"output_shape channels \(5\).*multiple of it"):
        fastconv.conv2d_transpose(x, w, (1, 8, 8, 5), 2)
    with pytest.raises(ValueError, match=r"output_shape channels \(8\)"):  # 4 groups: 6 % 4
        fastconv.conv2d_transpose(x, w, (1, 8, 8, 8), 2)
    with pytest.raises(ValueError, match=r"bias must have shape \(6,\)"):
        fastconv.conv2d_transpose(x, w, (1, 8, 8, 6), 2, bias=np.ones(2, F32))


# ----------------------------------------------------------------------------- gradients

@pytest.mark.tf
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("activation", NEW + [("leaky_relu", 0.05), ("leaky_relu", -0.5)])
def test_vjp_of_every_activation_matches_gradient_tape(activation, dtype, rand, tf):
    from fastconv import tf_reference

    name, alpha = activation if isinstance(activation, tuple) else (activation, None)
    x = _values(rand, (2, 5, 6, 3), dtype)
    w, b = rand((3, 3, 3, 4), dtype), rand((4,), dtype)
    kwargs = dict(bias=b, activation=name, alpha=alpha)
    y, backward = fastconv.vjp(fastconv.conv2d, x, w, 1, "SAME", **kwargs)
    assert_close(y, fastconv.conv2d(x, w, 1, "SAME", **kwargs), dtype)
    dy = rand(y.shape, dtype)
    want = tf_reference.vjp("conv2d", dy, x, w, 1, "SAME", **kwargs)
    for got, expected in zip(backward(dy), want):
        _allclose(got, expected, dtype, scale=10)


@pytest.mark.tf
@pytest.mark.parametrize("dtype", [F32, F64])
def test_vjp_of_a_grouped_transposed_conv_with_bias_and_gelu(dtype, rand, tf):
    from fastconv import tf_reference

    x, w, b = rand((2, 3, 4, 4), dtype), rand((3, 3, 3, 4), dtype), rand((6,), dtype)
    args = (x, w, (2, 6, 8, 6), 2, "SAME")
    y, backward = fastconv.vjp(fastconv.conv2d_transpose, *args, bias=b, activation="gelu")
    dy = rand(y.shape, dtype)
    want = tf_reference.vjp("conv2d_transpose", dy, *args, bias=b, activation="gelu")
    got = backward(dy)
    assert len(got) == len(want) == 3
    for g, e in zip(got, want):
        _allclose(g, e, dtype, scale=10)
