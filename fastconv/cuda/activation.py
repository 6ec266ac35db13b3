"""Activations fused into the conv kernel's store step, one device function per activation.

The codes are those of ``fastconv.validation.ACTIVATIONS``. As on the CPU, sigmoid and tanh are
computed in float64 and rounded to the output dtype at the store (once per output value, off
the hot loop), so both backends round the same way; the constants are those of
:mod:`fastconv.cpu.activation` (TF's, float32-rounded where TF rounds them).
"""

import functools
import math

from numba import cuda, float64

from ..activations import (ELU, GELU, GELU_TANH, HARD_SIGMOID, HARD_SWISH, LEAKY_RELU, NONE,
                           RELU, RELU6, SIGMOID, SILU, TANH, tf_alpha)

_LEAKY = tf_alpha(0.2)  # TF's LeakyRelu slope as its float32 attr holds it


@functools.lru_cache(maxsize=None)
def activation_function(code):
    """Return a device function ``act(value)`` for activation ``code``, returning float64.

    The float64 result is exact for relu/relu6/none; the store casts it to the output dtype.

    ``value < 0`` is False for NaN, so NaN passes through relu/relu6 like ``tf.nn.relu``.
    """
    if code == RELU:
        def act(value):
            return 0.0 if value < 0 else float64(value)
    elif code == RELU6:
        def act(value):
            if value < 0:
                return 0.0
            return 6.0 if value > 6 else float64(value)
    elif code == SIGMOID:
        def act(value):
            return 1.0 / (1.0 + math.exp(-float64(value)))
    elif code == TANH:
        def act(value):
            return math.tanh(float64(value))
    elif code == SILU:
        def act(value):
            v = float64(value)
            return v * (1.0 / (1.0 + math.exp(-v)))
    elif code == GELU:
        def act(value):
            v = float64(value)
            return 0.5 * v * math.erfc(-v * 0.7071067690849304)
    elif code == GELU_TANH:
        def act(value):
            v = float64(value)
            inner = 0.7978845608028654 * (v + 0.044714998453855515 * v * v * v)
            return 0.5 * v * (1.0 + math.tanh(inner))
    elif code == LEAKY_RELU:
        def act(value):
            v = float64(value)
            return v if v > 0 else v * _LEAKY
    elif code == ELU:
        def act(value):
            v = float64(value)
            return math.exp(v) - 1.0 if v < 0 else v
    elif code in (HARD_SWISH, HARD_SIGMOID):
        swish = code == HARD_SWISH

        def act(value):
            v = float64(value)
            six = v + 3.0
            six = 0.0 if six < 0 else (6.0 if six > 6 else six)
            return v * six / 6.0 if swish else six / 6.0
    elif code == NONE:
        def act(value):
            return float64(value)
    else:
        raise ValueError(f"unknown activation code {code}")
    return cuda.jit(device=True)(act)
