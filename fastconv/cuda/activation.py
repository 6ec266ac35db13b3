"""Activations fused into the conv kernel's store step, one device function per activation.

The codes are those of ``fastconv.validation.ACTIVATIONS``. As on the CPU, sigmoid and tanh are
computed in float64 and rounded to the output dtype at the store (once per output value, off
the hot loop), so both backends round the same way.
"""

import functools
import math

from numba import cuda, float64

from ..validation import NONE, RELU, RELU6, SIGMOID, TANH  # noqa: F401  (the one table)


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
    elif code == NONE:
        def act(value):
            return float64(value)
    else:
        raise ValueError(f"unknown activation code {code}")
    return cuda.jit(device=True)(act)
