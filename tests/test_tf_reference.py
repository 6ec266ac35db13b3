"""``fastconv.tf_reference`` (TensorFlow computing every op) against the NumPy oracle.

The golden corpus, the suite's TF oracle and ``fastconv compare`` read TensorFlow's result of
each op from ``fastconv.tf_reference`` (``Op.tf_function``), so here every op's sample calls go
through it and the independent NumPy oracle, both dtypes, within the suite's tolerance (bit for
bit for the exact ops); its rewrites of TF's CPU gaps get the wider grids of
tests/test_reference.py through ``tf_oracle``. Marked ``tf``: skipped without TensorFlow.
"""

import ast
import inspect
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fastconv import ops, reference, tf_reference
from fastconv.testing import assert_close, assert_exact

pytestmark = pytest.mark.tf
SAMPLES = ops.samples()
F32, F64 = np.float32, np.float64


@pytest.fixture(autouse=True)
def _needs_tensorflow(tf):
    """Skips (with the reason) where TensorFlow is missing or does not import."""


@pytest.mark.parametrize("name", ops.NAMES)
def test_each_op_has_a_tf_function_with_its_signature(name):
    op = ops.get(name)
    params = list(inspect.signature(op.function).parameters)
    assert list(inspect.signature(op.tf_function).parameters) == params
    assert list(inspect.signature(op.tf_function.prepare).parameters) == params
    assert op.tf_function.__doc__


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("label", sorted(SAMPLES))
def test_every_sample_call_agrees_with_the_numpy_oracle(label, dtype, rng):
    op, sample = SAMPLES[label]
    arrays = {key: rng.standard_normal(shape).astype(dtype) for key, shape in sample.shapes.items()}
    got = sample.call(tf_reference, **arrays)
    expected = sample.call(reference, **arrays)
    (assert_exact if op.exact else assert_close)(got, expected, dtype)


@pytest.mark.parametrize("label", sorted(SAMPLES))
def test_prepare_returns_the_tensor_of_tf_ops(label, tf, rng):
    """``prepare`` gives the callable ``fastconv compare`` times: a tf.Tensor, the same values."""
    op, sample = SAMPLES[label]
    arrays = {key: rng.standard_normal(shape).astype(F64) for key, shape in sample.shapes.items()}
    prepared = SimpleNamespace(**{name: getattr(tf_reference, name).prepare for name in ops.NAMES})
    out = sample.call(prepared, **arrays)()
    if isinstance(out, tuple):  # max_pool_with_argmax: (output, argmax), both tensors
        assert all(isinstance(t, tf.Tensor) for t in out)
        assert_exact(tuple(t.numpy() for t in out), sample.call(tf_reference, **arrays), F64)
        return
    assert isinstance(out, tf.Tensor)
    assert_exact(out.numpy(), sample.call(tf_reference, **arrays), F64)


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_global_pools_and_zero_pad_are_the_keras_layers(dtype, data_format, tf, rng):
    """tf_reference runs the TF ops the Keras layers run (no layer call overhead when timed)."""
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    x[0, 1, 2, 3] = np.nan
    fmt = "channels_first" if data_format == "NCHW" else "channels_last"
    layers = tf.keras.layers
    for keepdims in (False, True):
        for kind, layer in (("max", layers.GlobalMaxPooling2D),
                            ("avg", layers.GlobalAveragePooling2D)):
            want = layer(data_format=fmt, keepdims=keepdims, dtype=x.dtype.name)(x).numpy()
            got = getattr(tf_reference, f"global_{kind}_pool2d")(x, data_format, keepdims)
            np.testing.assert_array_equal(got, want)
    want = layers.ZeroPadding2D(((1, 2), (0, 3)), data_format=fmt, dtype=x.dtype.name)(x).numpy()
    np.testing.assert_array_equal(tf_reference.zero_pad2d(x, ((1, 2), (0, 3)), data_format), want)


def test_tf_reference_imports_nothing_it_checks():
    """TF is the definition: nothing from fastconv's kernels, dispatch, api or shapes."""
    tree = ast.parse(Path(tf_reference.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import in tf_reference: line {node.lineno}"
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
    assert imported <= {"__future__", "functools", "numpy", "os", "sys", "tempfile",
                        "tensorflow"}, imported


def test_fastconvs_argument_forms_reach_tf_alike(rng):
    """TF's full-length forms, either case of padding and Python lists (float32, as TF)."""
    x = rng.standard_normal((1, 3, 6, 5)).astype(F32)
    w = rng.standard_normal((2, 3, 3, 4)).astype(F32)
    spatial = tf_reference.conv2d(x, w, 2, [[1, 0], [0, 2]], "NCHW", dilations=1)
    full = tf_reference.conv2d(x, w, [1, 1, 2, 2], [[0, 0], [0, 0], [1, 0], [0, 2]], "NCHW",
                               dilations=[1, 1, 1, 1])
    assert_exact(full, spatial, F32)
    assert_exact(tf_reference.avg_pool2d(x.tolist(), 2, 1, "same", "NCHW"),
                 tf_reference.avg_pool2d(x, [1, 1, 2, 2], [1], "SAME", "NCHW"), F32)
    with pytest.raises(ValueError, match="'SAME' or 'VALID'"):
        tf_reference.avg_pool3d(x[..., None], 2, 1, [[0, 1]] * 3)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("ksize, strides, padding", [
    (2, 2, "VALID"), (2, 2, "SAME"), ((2, 3, 2), (2, 3, 2), "VALID"), (3, 2, "SAME"),
    ((2, 1, 3), 1, "VALID")])
def test_3d_pooling_rewrites_match_tfs_float32_kernel_and_the_oracle(kind, ksize, strides,
                                                                     padding, tf, rng):
    """TF's CPU has no float64 MaxPool3D/AvgPool3D: the rewrite (odd sizes, so tiling windows
    leave a tail) against the NumPy oracle in float64 and TF's own kernel in float32."""
    x = rng.standard_normal((2, 5, 7, 6, 3))
    x[0, 1, 2, 3, 0] = x[1, 4, 6, 5, 2] = np.nan
    check = assert_exact if kind == "max" else assert_close
    got = getattr(tf_reference, f"{kind}_pool3d")(x, ksize, strides, padding)
    check(got, getattr(reference, f"{kind}_pool3d")(x, ksize, strides, padding), F64)
    x32 = tf.constant(x.astype(F32))
    k, s = tf_reference._spatial(ksize, 3, False), tf_reference._spatial(strides, 3, False)
    own = getattr(tf.nn, f"{kind}_pool3d")(x32, k, s, padding).numpy()
    rewrite = tf_reference._pool3d_rewrite(kind, x32, k, s, padding).numpy()
    if kind == "max":  # TF's oneDNN MaxPool3D lets a NaN win on AVX2 machines (see test_edges)
        nan_windows = tf.nn.max_pool3d(tf.constant(np.isnan(x).astype(F32)), k, s,
                                       padding).numpy() > 0
        own, rewrite = own[~nan_windows], rewrite[~nan_windows]
    check(rewrite, own, F32)
