"""Activation functions fused into the conv kernels' store step.

The code is a small int (see ``fastconv.validation.ACTIVATIONS``) so that one compiled kernel
serves every activation; the branch is taken once per stored value, off the hot loop.
"""

import numpy as np
from numba import njit, prange

from ..validation import NONE, RELU, RELU6, SIGMOID, TANH  # noqa: F401  (the one table)


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


@njit(parallel=True, cache=True, nogil=True)
def bias_activation_ncp(out, bias, act):
    """In place: ``out[n, k, :] = act(out[n, k, :] + bias[k])`` on an (N, K, P) array."""
    n_, k_, p_ = out.shape
    has_bias = bias.shape[0] > 0
    for job in prange(n_ * k_):
        n = job // k_
        k = job % k_
        for p in range(p_):
            v = out[n, k, p]
            if has_bias:
                v += bias[k]
            out[n, k, p] = apply_activation(v, act)
