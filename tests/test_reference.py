"""The NumPy oracle ``fastconv.reference`` (same signatures as fastconv) checked against TF.

The rest of the suite checks fastconv against this oracle, so here it is checked against TF,
the definition (and, without TF, against the golden corpus in test_golden.py). It must share
nothing with the code it checks: it imports nothing from fastconv. The oracle is slow, so
shapes stay tiny; grids are pairwise over layout x dtype x strides x padding x dilation x
kernel parity x (for convs) bias and activation.
"""

import ast
from pathlib import Path

import numpy as np
import pytest

from fastconv import reference

F32, F64 = np.float32, np.float64
EXPLICIT = "explicit"
LAYOUTS = {1: ("NWC", "NCW"), 2: ("NHWC", "NCHW"), 3: ("NDHWC", "NCDHW")}
KERNELS = {1: {"odd": (3,), "even": (2,)}, 2: {"odd": (3, 3), "even": (2, 2), "mixed": (2, 3)},
           3: {"odd": (3, 1, 3), "even": (2, 2, 2), "mixed": (1, 2, 3)}}
BASE = {1: (7,), 2: (5, 6), 3: (4, 3, 5)}
CONV_REF = {1: reference.conv1d, 2: reference.conv2d, 3: reference.conv3d}
POOL_REF = {("max", 1): reference.max_pool1d, ("max", 2): reference.max_pool2d,
            ("max", 3): reference.max_pool3d, ("avg", 1): reference.avg_pool1d,
            ("avg", 2): reference.avg_pool2d, ("avg", 3): reference.avg_pool3d}


def _shape(batch, channels, spatial, channels_first):
    return (batch, channels, *spatial) if channels_first else (batch, *spatial, channels)


def _geometry(case, n, kernel, tools, dilation=1, explicit=None):
    strides = (case.stride,) * n
    dilations = (dilation,) * n
    padding = explicit if case.padding == EXPLICIT else case.padding
    sizes = []
    for axis in range(n):
        pad = padding if isinstance(padding, str) else padding[axis]
        divides = case.divides if axis % 2 == 0 else not case.divides
        sizes.append(tools.fit_size(BASE[n][axis], (kernel[axis] - 1) * dilations[axis] + 1,
                                    strides[axis], pad, divides))
    return tuple(sizes), strides, dilations, padding


def _conv_grid(n, seed):
    return pytest.mark.grid(layout=list(LAYOUTS[n]), dtype=[F32, F64], stride=[1, 2, 3],
                            padding=["SAME", "VALID", EXPLICIT], dilation=[1, 2],
                            kernel=list(KERNELS[n]), divides=[True, False],
                            activation=[None, "relu", "relu6", "sigmoid", "tanh"],
                            groups=[1, 2], seed=seed)


def _check_conv(n, case, rand, tf_oracle, tools, assert_close):
    channels_first = case.layout == LAYOUTS[n][1]
    kernel = KERNELS[n][case.kernel]
    sizes, strides, dilations, padding = _geometry(case, n, kernel, tools, case.dilation,
                                                   ((1, 0), (0, 2), (1, 1))[:n])
    x = rand(_shape(2, 4, sizes, channels_first), case.dtype)
    w = rand(kernel + (4 // case.groups, 4), case.dtype)
    bias = rand((4,), case.dtype) if case.activation else None
    got = CONV_REF[n](x, w, list(strides), padding if isinstance(padding, str) else
                      [list(p) for p in padding], case.layout, list(dilations), bias=bias,
                      activation=case.activation)
    expected = tf_oracle.conv(x, w, strides, padding, dilations, channels_first, bias, case.activation)
    assert_close(got, expected, case.dtype)


@_conv_grid(1, 31)
def test_reference_conv1d_matches_tf(case, rand, tf_oracle, tools, assert_close):
    _check_conv(1, case, rand, tf_oracle, tools, assert_close)


@_conv_grid(2, 32)
def test_reference_conv2d_matches_tf(case, rand, tf_oracle, tools, assert_close):
    _check_conv(2, case, rand, tf_oracle, tools, assert_close)


@_conv_grid(3, 33)
def test_reference_conv3d_matches_tf(case, rand, tf_oracle, tools, assert_close):
    _check_conv(3, case, rand, tf_oracle, tools, assert_close)


@pytest.mark.grid(layout=["NHWC", "NCHW"], dtype=[F32, F64], stride=[1, 2, 3],
                  padding=["SAME", "VALID", EXPLICIT], dilation=[1, 2], kernel=list(KERNELS[2]),
                  divides=[True, False], multiplier=[1, 2], seed=34)
def test_reference_depthwise_matches_tf(case, rand, tf_oracle, tools, assert_close):
    channels_first = case.layout == "NCHW"
    kernel = KERNELS[2][case.kernel]
    sizes, strides, dilations, padding = _geometry(case, 2, kernel, tools, case.dilation,
                                                   ((1, 0), (0, 2)))
    x = rand(_shape(1, 3, sizes, channels_first), case.dtype)
    w = rand(kernel + (3, case.multiplier), case.dtype)
    got = reference.depthwise_conv2d(x, w, strides, padding, case.layout, dilations)
    assert_close(got, tf_oracle.depthwise(x, w, strides, padding, dilations, channels_first),
                 case.dtype)


@pytest.mark.grid(layout=["NHWC", "NCHW"], dtype=[F32, F64], stride=[1, 2, 3],
                  padding=["SAME", "VALID", EXPLICIT], dilation=[1, 2], kernel=list(KERNELS[2]),
                  divides=[True, False], seed=35)
def test_reference_conv2d_transpose_matches_tf(case, rand, tf_oracle, tools, assert_close):
    channels_first = case.layout == "NCHW"
    kernel = KERNELS[2][case.kernel]
    out_spatial, strides, dilations, padding = _geometry(case, 2, kernel, tools, case.dilation,
                                                         ((1, 0), (0, 2)))
    in_spatial = tuple(tools.out_size(n, (k - 1) * d + 1, s,
                                      padding if isinstance(padding, str) else padding[axis])
                       for axis, (n, k, s, d) in enumerate(zip(out_spatial, kernel, strides,
                                                               dilations)))
    x = rand(_shape(2, 3, in_spatial, channels_first), case.dtype)
    w = rand(kernel + (2, 3), case.dtype)
    got = reference.conv2d_transpose(x, w, _shape(2, 2, out_spatial, channels_first), strides,
                                     padding, case.layout, dilations)
    expected = tf_oracle.conv_transpose(x, w, out_spatial, strides, padding, dilations, channels_first)
    assert_close(got, expected, case.dtype)


@pytest.mark.grid(pool=[("max", 1), ("max", 2), ("max", 3), ("avg", 1), ("avg", 2), ("avg", 3)],
                  channels_first=[False, True], dtype=[F32, F64], stride=[1, 2, 3],
                  padding=["SAME", "VALID", EXPLICIT], kernel=["odd", "even", "mixed"],
                  divides=[True, False], random=6, seed=36)
def test_reference_pools_match_tf(case, rand, tf_oracle, tools, assert_close, assert_exact):
    kind, n = case.pool
    kernel = KERNELS[n].get(case.kernel, KERNELS[n]["odd"])
    padding_case = case
    if kind == "avg" and case.padding == EXPLICIT:  # TF allows explicit padding for max only
        padding_case = type(case)(**{**vars(case), "padding": "SAME"})
    sizes, strides, _, padding = _geometry(padding_case, n, kernel, tools,
                                           explicit=tuple((min(1, k - 1), k - 1) for k in kernel))
    x = rand(_shape(2, 3, sizes, case.channels_first), case.dtype)
    got = POOL_REF[case.pool](x, kernel, strides, padding, LAYOUTS[n][case.channels_first])
    expected = tf_oracle.pool(kind, x, kernel, strides, padding, case.channels_first)
    (assert_exact if kind == "max" else assert_close)(got, expected, case.dtype)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_reference_global_pools_and_zero_pad_match_keras(dtype, data_format, keepdims, rand, tf_oracle,
                                                         assert_close, assert_exact):
    channels_first = data_format == "NCHW"
    x = rand(_shape(2, 3, (4, 5), channels_first), dtype)
    assert_exact(reference.global_max_pool2d(x, data_format, keepdims),
                 tf_oracle.global_pool("max", x, channels_first, keepdims), dtype)
    assert_close(reference.global_avg_pool2d(x, data_format, keepdims),
                 tf_oracle.global_pool("avg", x, channels_first, keepdims), dtype)
    padding = ((1, 2), (0, 3)) if keepdims else 2
    assert_exact(reference.zero_pad2d(x, padding, data_format),
                 tf_oracle.zero_pad(x, padding, channels_first), dtype)


def test_reference_nan_semantics_match_tf(tf_oracle, assert_exact, assert_close):
    x = np.array([np.nan, 1.0, np.nan, np.nan, -np.inf, 2.0], F32).reshape(1, 2, 3, 1)
    assert_exact(reference.max_pool2d(x, 2, 1, "SAME"),
                 tf_oracle.pool("max", x, (2, 2), (1, 1), "SAME"), F32)
    assert_close(reference.global_max_pool2d(x), tf_oracle.global_pool("max", x), F32)


def test_reference_by_hand(assert_exact, assert_close):
    x = np.arange(16.0).reshape(1, 4, 4, 1)
    assert_exact(reference.max_pool2d(x, 2, 2, "VALID"),
                 np.array([[5.0, 7.0], [13.0, 15.0]]).reshape(1, 2, 2, 1), F64)
    assert_close(reference.conv2d(x, np.ones((3, 3, 1, 1)), 1, "SAME")[0, 1:3, 1:3, 0],
                 np.array([[45.0, 54.0], [81.0, 90.0]]), F64)
    assert_close(reference.avg_pool1d(np.arange(1.0, 6.0).reshape(1, 5, 1), 2, 2, "SAME"),
                 np.array([1.5, 3.5, 5.0]).reshape(1, 3, 1), F64)


def test_reference_validates_like_the_api():
    with pytest.raises(ValueError, match=r"Negative dimension size"):
        reference.max_pool2d(np.zeros((1, 1, 1, 2)), 2, 2, "VALID")
    with pytest.raises(TypeError, match=r"float32 or float64"):
        reference.conv2d(np.zeros((1, 3, 3, 1), np.int32), np.zeros((1, 1, 1, 1)), 1, "SAME")


def test_the_oracle_imports_nothing_from_fastconv():
    """Independence: a bug in fastconv's shapes, validation or dispatch cannot hide in it."""
    tree = ast.parse(Path(reference.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import in the oracle: line {node.lineno}"
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
    assert imported <= {"__future__", "itertools", "math", "numpy"}, imported


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("rank", [3, 4, 5])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_rank_generic_pool_oracle_matches_tf(kind, rank, padding, tf, rng, assert_close):
    x = rng.standard_normal((2,) + (5, 6, 4)[:rank - 2] + (3,)).astype(F32)
    expected = getattr(tf.nn, f"{kind}_pool")(tf.constant(x), 2, 2, padding).numpy()
    assert_close(getattr(reference, f"{kind}_pool")(x, 2, 2, padding), expected, F32)
