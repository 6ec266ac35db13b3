"""Activation functions fused into the conv kernels' store step.

The code is a small int (see ``fastconv.validation.ACTIVATIONS``) so that one compiled kernel
serves every activation; the branch is taken once per stored value, off the hot loop.
"""

import numpy as np
from numba import njit

NONE, RELU, RELU6, SIGMOID, TANH = 0, 1, 2, 3, 4


@njit(inline="always", cache=True)
def apply_activation(value, code):
    """Return ``value`` passed through activation ``code``.

    The result is float64 (the int literals below widen it); the caller's store casts it back
    to the output dtype, which is exact for relu/relu6 and correctly rounded for the rest.
    ``value < 0`` is False for NaN, so NaN passes through relu like ``tf.nn.relu``.
    """
    if code == RELU:
        return 0.0 if value < 0 else value + 0.0
    if code == RELU6:
        if value < 0:
            return 0.0
        return 6.0 if value > 6 else value + 0.0
    if code == SIGMOID:
        return 1.0 / (1.0 + np.exp(-np.float64(value)))
    if code == TANH:
        return np.tanh(np.float64(value))
    return value + 0.0
