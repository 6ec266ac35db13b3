"""The op table (fastconv.ops) is complete and every op in it agrees with its oracle.

Tests that iterate over the table cover an op the day its record is added: here each sample
call of each op is checked against the independent NumPy oracle (bit for bit for the exact
ops), the table against ``fastconv.__all__``, and each op's signature against its oracle's.
"""

import inspect

import numpy as np
import pytest

import fastconv
from fastconv import ops, reference
from fastconv.testing import assert_close, assert_exact

SAMPLES = ops.samples()


def test_the_table_lists_exactly_the_public_ops():
    functions = {name for name in fastconv.__all__ if callable(getattr(fastconv, name, None))
                 and name not in ("conv_output_size", "same_padding", "set_num_threads",
                                  "get_num_threads", "vjp", "prepare_conv2d", "Conv2DPlan")}
    from fastconv import gradients

    assert functions == set(ops.NAMES) | set(gradients.NAMED_KERNELS)
    assert all(op.samples for op in ops.OPS), "every op needs a sample call"


@pytest.mark.parametrize("name", ops.NAMES)
def test_each_op_has_an_oracle_with_its_signature(name):
    op = ops.get(name)
    assert list(inspect.signature(op.function).parameters) == \
        list(inspect.signature(op.oracle).parameters)
    assert op.function.__doc__ and ">>>" in op.function.__doc__, "a runnable example"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("label", sorted(SAMPLES))
def test_every_sample_call_equals_the_oracle(label, dtype, rng):
    op, sample = SAMPLES[label]
    arrays = {key: rng.standard_normal(shape).astype(dtype) for key, shape in sample.shapes.items()}
    got = sample.call(fastconv, **arrays)
    expected = sample.call(reference, **arrays)
    (assert_exact if op.exact else assert_close)(got, expected, dtype)


def test_convolution_follows_the_input_rank(rng):
    x = rng.standard_normal((2, 5, 6, 7, 4)).astype(np.float32)
    w = rng.standard_normal((2, 3, 2, 2, 6)).astype(np.float32)  # two groups
    assert_close(fastconv.convolution(x, w, [1, 2, 1], "SAME", dilations=[2, 1, 1]),
                 fastconv.conv3d(x, w, [1, 2, 1], "SAME", dilations=[2, 1, 1]), np.float32)
    x1, w1 = x[:, 0, 0], w[0, 0]
    assert_close(fastconv.convolution(x1, w1), fastconv.conv1d(x1, w1, 1, "VALID"), np.float32)
    with pytest.raises(ValueError, match=r"input must be 3-D, 4-D or 5-D.*got 6-D"):
        fastconv.convolution(x[None], w)
    with pytest.raises(ValueError, match=r"filters must be 4-D"):
        fastconv.convolution(x[:, 0], w)


def test_rank_generic_pools_follow_the_input_rank(rng):
    x = rng.standard_normal((2, 5, 6, 7, 3)).astype(np.float32)
    assert_exact(fastconv.max_pool(x, 2, 2, "SAME"), fastconv.max_pool3d(x, 2, 2, "SAME"),
                 np.float32)
    assert_close(fastconv.avg_pool(x[:, 0], [1, 2, 3, 1], 1, "VALID"),
                 fastconv.avg_pool2d(x[:, 0], [2, 3], 1, "VALID"), np.float32)
    with pytest.raises(ValueError, match=r"input must be 3-D, 4-D or 5-D.*got 2-D"):
        fastconv.max_pool(x[0, 0, 0], 2, 2, "VALID")
    with pytest.raises(ValueError, match=r"padding must be 'SAME' or 'VALID' for this op"):
        fastconv.avg_pool(x, 2, 2, [[0, 0], [1, 1], [1, 1], [1, 1], [0, 0]])


@pytest.mark.parametrize("name", __import__("fastconv.gradients").gradients.NAMED_KERNELS)
def test_each_named_gradient_kernel_has_an_oracle_a_tf_reference_and_an_example(name):
    from fastconv import reference, tf_reference

    function = getattr(fastconv, name)
    arity = len(inspect.signature(function).parameters)
    for module in (reference, tf_reference):
        assert len(inspect.signature(getattr(module, name)).parameters) == arity
    assert function.__doc__ and ">>>" in function.__doc__, "a runnable example"
