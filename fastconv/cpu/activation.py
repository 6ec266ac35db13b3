"""Activation functions fused into the conv kernels' store step.

The code is a small int (see ``fastconv.validation.ACTIVATIONS``) so that one compiled kernel
serves every activation; the branch is taken once per stored value, off the hot loop.
"""

import math

import numpy as np
from numba import njit, prange

from ..activations import (ELU, GELU, GELU_TANH, HARD_SIGMOID, HARD_SWISH, LEAKY_RELU, RELU,
                           RELU6, SIGMOID, SILU, TANH, tf_alpha)

#: TF's LeakyRelu slope as its float32 attr holds it (for float64 layers too).
_LEAKY = tf_alpha(0.2)


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
    if code >= SILU:  # the rest, off the common path: one call keeps this inlinable
        return _more_activations(np.float64(value), code)
    return value + 0.0


@njit(cache=True)
def _more_activations(v, code):
    """silu, gelu, gelu_tanh, leaky_relu (TF's alpha 0.2), elu, hard_swish, hard_sigmoid of a
    float64 ``v``, as TF defines them (``tf.nn.silu``, ``tf.nn.gelu``, ``tf.nn.leaky_relu``,
    ``tf.nn.elu``, Keras' ``hard_silu`` and ``hard_sigmoid``)."""
    if code == SILU:
        return v * (1.0 / (1.0 + math.exp(-v)))
    # erfc keeps the negative tail 1 + erf would round to zero; 1/sqrt(2) and 0.044715 are
    # float32-rounded, as tf.nn.gelu casts them (float64 layers too).
    if code == GELU:
        return 0.5 * v * math.erfc(-v * 0.7071067690849304)
    if code == GELU_TANH:
        inner = 0.7978845608028654 * (v + 0.044714998453855515 * v * v * v)
        return 0.5 * v * (1.0 + math.tanh(inner))
    if code == LEAKY_RELU:
        return v if v > 0 else v * _LEAKY
    if code == ELU:
        return math.exp(v) - 1.0 if v < 0 else v
    six = v + 3.0
    six = 0.0 if six < 0 else (6.0 if six > 6 else six)
    if code == HARD_SWISH:
        return v * six / 6.0
    if code == HARD_SIGMOID:
        return six / 6.0
    return v


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
