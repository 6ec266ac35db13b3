"""The fused activations: their names, kernel codes, NumPy forms and derivatives.

A named activation travels to the kernels as a small int (one compiled kernel serves every
activation; the branch is taken once per stored value). The CPU kernels
(:mod:`fastconv.cpu.activation`) and the CUDA ones (:mod:`fastconv.cuda.activation`) compute
each in float64 and round once at the store, as :func:`apply` does here for the NumPy tier.

Two cases are not fused and run after the kernel, on the host, in NumPy (documented as the
slow path): ``"leaky_relu"`` with an ``alpha`` other than TF's default 0.2, and a callable
(any NumPy-vectorised function of the output array). :func:`resolve` says which.

``vjp`` reads the saved output for the activations whose derivative is a function of it (TF's
ReluGrad, SigmoidGrad, TanhGrad, EluGrad do the same) and the saved pre-activation for the
others (silu, gelu, hard_swish: not invertible).

Examples
--------
>>> import numpy as np
>>> from fastconv import activations
>>> activations.resolve("swish").code == activations.SILU
True
>>> activations.apply(np.array([-1.0, 0.0, 2.0]), activations.LEAKY_RELU)
array([-0.2,  0. ,  2. ])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The kernel codes; the CPU and CUDA kernels import these names.
(NONE, RELU, RELU6, SIGMOID, TANH, SILU, GELU, GELU_TANH, LEAKY_RELU, ELU, HARD_SWISH,
 HARD_SIGMOID) = range(12)

#: activation name -> kernel code (aliases included: "swish" is "silu", "hard_silu" is
#: "hard_swish", as Keras names them).
ACTIVATIONS = {None: NONE, "linear": NONE, "relu": RELU, "relu6": RELU6, "sigmoid": SIGMOID,
               "tanh": TANH, "silu": SILU, "swish": SILU, "gelu": GELU,
               "gelu_tanh": GELU_TANH, "leaky_relu": LEAKY_RELU, "elu": ELU,
               "hard_swish": HARD_SWISH, "hard_silu": HARD_SWISH,
               "hard_sigmoid": HARD_SIGMOID}

#: TF's default ``alpha`` of ``tf.nn.leaky_relu``: the fused kernels use it.
LEAKY_ALPHA = 0.2

#: Codes whose derivative needs the pre-activation (the output does not determine it).
READS_PREACTIVATION = frozenset({SILU, GELU, GELU_TANH, HARD_SWISH})

# TF's gelu casts 1/sqrt(2) and 0.044715 from float32 constants (``math_ops.cast(0.044715,
# dtype)`` makes a float32 tensor first), so its float64 gelu uses these float32 values too;
# 0.7978845608028654 multiplies a tensor directly and stays exact.
_SQRT_HALF = 0.7071067690849304  # float32(1 / sqrt(2))
_SQRT_2_OVER_PI = 0.7978845608028654
_GELU_CUBIC = 0.044714998453855515  # float32(0.044715)


@dataclass(frozen=True)
class Activation:
    """A resolved ``activation=`` argument.

    ``kind`` is the activation's code, ``code`` what the kernels fuse (``kind``, or
    :data:`NONE` when the activation runs after the kernel), ``post`` that host function
    (None when fused), ``alpha`` leaky_relu's slope, ``function`` the user's callable.
    """

    kind: int
    fused: bool = True
    alpha: float = LEAKY_ALPHA
    function: object = None

    @property
    def code(self):
        return self.kind if self.fused else NONE

    @property
    def post(self):
        if self.fused:
            return None
        if self.function is not None:
            return _callable_post(self.function)
        return lambda values: apply(values, self.kind, self.alpha)


def tf_alpha(alpha):
    """``alpha`` as TF's LeakyRelu kernel sees it: its attr is a float32, so a float64 layer
    slopes by ``float32(0.2)`` = 0.20000000298..., not 0.2."""
    return float(np.float32(alpha))


def resolve(activation, alpha=None):
    """Check ``activation`` (and ``alpha``) and return its :class:`Activation`.

    Raises TypeError for something neither None, a string nor a callable, ValueError for an
    unknown name or an ``alpha`` given for an activation other than ``"leaky_relu"``.
    """
    if activation is None and alpha is None:  # most calls: skip the checks (a microsecond)
        return _NO_ACTIVATION
    if alpha is not None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating,
                                                               np.integer)):
            raise TypeError(f"alpha must be a number, got {type(alpha).__name__}")
        if not math.isfinite(float(alpha)):
            raise ValueError(f"alpha must be finite, got {alpha}")
    if callable(activation) and not isinstance(activation, str):
        if alpha is not None:
            raise ValueError("alpha applies to activation='leaky_relu' only, not to a callable")
        return Activation(NONE, fused=False, function=activation)
    if activation is not None and not isinstance(activation, str):
        raise TypeError(f"activation must be None, a string or a callable, got "
                        f"{type(activation).__name__}")
    key = activation.lower() if isinstance(activation, str) else None
    if key not in ACTIVATIONS:
        choices = ", ".join(repr(k) for k in ACTIVATIONS)
        raise ValueError(f"activation must be one of {choices} or a callable, got "
                         f"{activation!r}")
    code = ACTIVATIONS[key]
    if alpha is not None and code != LEAKY_RELU:
        raise ValueError(f"alpha applies to activation='leaky_relu' only, not to {activation!r}")
    slope = tf_alpha(LEAKY_ALPHA if alpha is None else alpha)
    return Activation(code, fused=code != LEAKY_RELU or slope == tf_alpha(LEAKY_ALPHA),
                      alpha=slope)


#: What :func:`resolve` returns for no activation (its slow path gives an equal one).
_NO_ACTIVATION = Activation(ACTIVATIONS[None], fused=True, alpha=tf_alpha(LEAKY_ALPHA))


def _callable_post(function):
    def post(values):
        result = np.asarray(function(values))
        if result.shape != values.shape:
            raise ValueError(f"the activation callable must keep the shape {values.shape}, "
                             f"got {result.shape}")
        return result.astype(values.dtype, copy=False)
    return post


def apply(values, code, alpha=LEAKY_ALPHA):
    """Activation ``code`` of a NumPy array as the kernels compute it: in float64, rounded
    once to ``values``' dtype (relu and relu6 are exact)."""
    if code == NONE:
        return values
    dtype = values.dtype
    v = values.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if code == RELU:
            out = np.where(v < 0, 0.0, v)  # NaN passes, as tf.nn.relu
        elif code == RELU6:
            out = np.where(v < 0, 0.0, np.where(v > 6, 6.0, v))
        elif code == SIGMOID:
            out = 1 / (1 + np.exp(-v))
        elif code == TANH:
            out = np.tanh(v)
        elif code == SILU:
            out = v * (1 / (1 + np.exp(-v)))
        elif code == GELU:
            out = 0.5 * v * _erfc(-v * _SQRT_HALF)
        elif code == GELU_TANH:
            out = 0.5 * v * (1 + np.tanh(_SQRT_2_OVER_PI * (v + _GELU_CUBIC * v * v * v)))
        elif code == LEAKY_RELU:
            out = np.where(v > 0, v, v * alpha)
        elif code == ELU:
            out = np.where(v < 0, np.exp(v) - 1, v)
        elif code == HARD_SWISH:
            out = v * _relu6(v + 3) / 6
        elif code == HARD_SIGMOID:
            out = _relu6(v + 3) / 6
        else:
            raise ValueError(f"unknown activation code {code}")
    return out.astype(dtype)


def _relu6(v):
    return np.where(v < 0, 0.0, np.where(v > 6, 6.0, v))


_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def gradient(activation, dy, output, preactivation=None):
    """``dy`` through ``activation`` (an :class:`Activation`), as ``tf.GradientTape`` gives it:
    from the saved ``output``, or from ``preactivation`` for :data:`READS_PREACTIVATION`."""
    code = activation.kind
    if activation.function is not None:
        raise ValueError("vjp needs a named activation: the derivative of a callable "
                         "activation is not known (apply it outside the op)")
    if code == NONE:
        return dy
    dtype = dy.dtype
    y = output
    with np.errstate(over="ignore", invalid="ignore"):
        if code == RELU:
            return np.where(y > 0, dy, 0).astype(dtype)
        if code == RELU6:
            return np.where((y > 0) & (y < 6), dy, 0).astype(dtype)
        if code == SIGMOID:
            return (dy * (y * (1 - y))).astype(dtype)
        if code == TANH:
            return (dy * (1 - y * y)).astype(dtype)
        if code == LEAKY_RELU:  # LeakyReluGrad reads the features: the output has their sign
            slope = np.asarray(activation.alpha, dtype)
            return np.where(y > 0, dy, dy * slope).astype(dtype) if activation.alpha > 0 \
                else np.where(preactivation > 0, dy, dy * slope).astype(dtype)
        if code == ELU:  # EluGrad: dy * (y + 1) where y < 0
            return np.where(y < 0, dy * (y + 1), dy).astype(dtype)
        if code == HARD_SIGMOID:
            return np.where((y > 0) & (y < 1), dy / np.asarray(6, dtype), 0).astype(dtype)
        z = preactivation.astype(np.float64)
        if code == SILU:
            s = 1 / (1 + np.exp(-z))
            local = s * (1 + z * (1 - s))
        elif code == GELU:
            scaled = z * _SQRT_HALF
            local = 0.5 * _erfc(-scaled) + scaled * np.exp(-scaled * scaled) / math.sqrt(
                math.pi)
        elif code == GELU_TANH:
            inner = _SQRT_2_OVER_PI * (z + _GELU_CUBIC * z ** 3)
            t = np.tanh(inner)
            local = 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * _SQRT_2_OVER_PI * (
                1 + 3 * _GELU_CUBIC * z * z)
        else:  # HARD_SWISH
            local = np.where(z < -3, 0.0, np.where(z > 3, 1.0, (2 * z + 3) / 6))
    return (dy * local).astype(dtype)


def needs_preactivation(activation):
    """True when :func:`gradient` reads the pre-activation of ``activation``."""
    return activation.kind in READS_PREACTIVATION or (activation.kind == LEAKY_RELU
                                                      and activation.alpha <= 0)
