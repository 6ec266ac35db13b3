"""A slow, obviously-correct NumPy oracle for every op.

The public functions here take the same arguments as ``fastconv.*`` and share its argument
checks, but compute with plain NumPy in float64 (rounded to the input dtype at the end), one
kernel offset or one window at a time. Tests check this oracle against TensorFlow and the fast
kernels against both; when a kernel fails, the oracle shows what the right answer is.

Examples
--------
>>> import numpy as np
>>> from fastconv import reference
>>> x = np.arange(16.0).reshape(1, 4, 4, 1)
>>> reference.max_pool2d(x, 2, 2, "VALID")[0, :, :, 0]
array([[ 5.,  7.],
       [13., 15.]])
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from . import api
from .dispatch import Implementation, register, use_algorithm


def _channels_last(x5, channels_first):
    return np.moveaxis(np.asarray(x5), 1, -1) if channels_first else np.asarray(x5)


def _layout(out5, channels_first):
    return np.ascontiguousarray(np.moveaxis(out5, -1, 1) if channels_first else out5)


def _activate(values, code):
    if code == 1:
        return np.where(values < 0, 0, values)  # keeps NaN, like tf.nn.relu
    if code == 2:
        return np.where(values < 0, 0, np.where(values > 6, 6, values))
    if code == 3:
        return 1 / (1 + np.exp(-values))
    if code == 4:
        return np.tanh(values)
    return values


def conv_reference(problem):
    """Convolution as a sum over kernel offsets of strided slices times a channel matrix."""
    x = _channels_last(problem.x, problem.channels_first).astype(np.float64)
    w = np.asarray(problem.w, dtype=np.float64)
    g = problem.geometry
    if problem.kind == "transpose":
        return _layout(_transpose_reference(x, w, g).astype(problem.dtype), problem.channels_first)
    pad_width = [(0, 0)] + [tuple(p) for p in g.pads] + [(0, 0)]
    xp = np.pad(x, pad_width)
    n = x.shape[0]
    out_sizes = g.out_sizes
    k_total = w.shape[-1]
    groups, group_in = problem.groups, w.shape[-2]
    group_out = k_total // groups
    out = np.zeros((n,) + tuple(out_sizes) + (k_total,))
    for offset in itertools.product(*(range(k) for k in g.kernel)):
        window = tuple(slice(o * d, o * d + (size - 1) * s + 1, s)
                       for o, d, s, size in zip(offset, g.dilations, g.strides, out_sizes))
        patch = xp[(slice(None),) + window]
        for group in range(groups):
            cin = slice(group * group_in, (group + 1) * group_in)
            cout = slice(group * group_out, (group + 1) * group_out)
            out[..., cout] += patch[..., cin] @ w[offset][:, cout]
    if problem.bias is not None:
        out += np.asarray(problem.bias, dtype=np.float64)
    out = _activate(out, problem.activation)
    return _layout(out.astype(problem.dtype), problem.channels_first)


def _transpose_reference(x, w, g):
    """Scatter form of the transposed conv: every input pixel adds ``x @ w[offset].T`` once."""
    n = x.shape[0]
    out = np.zeros((n,) + tuple(g.in_sizes) + (w.shape[-2],))
    for position in itertools.product(*(range(size) for size in x.shape[1:4])):
        for offset in itertools.product(*(range(k) for k in g.kernel)):
            target = tuple(p * s - before + o * d for p, s, (before, _), o, d in
                           zip(position, g.strides, g.pads, offset, g.dilations))
            if all(0 <= t < size for t, size in zip(target, g.in_sizes)):
                out[(slice(None),) + target] += x[(slice(None),) + position] @ w[offset].T
    return out


def _windows(g):
    """Yield (output index, clipped input slices) for every output position."""
    for index in itertools.product(*(range(size) for size in g.out_sizes)):
        slices = []
        for o, s, (before, _), k, size in zip(index, g.strides, g.pads, g.kernel, g.in_sizes):
            start = o * s - before
            slices.append(slice(max(start, 0), max(min(start + k, size), 0)))
        yield index, tuple(slices)


def pool_reference(problem):
    """Pooling one window at a time, with TF's CPU max semantics (NaN ignored, floor lowest)."""
    x = _channels_last(problem.x, problem.channels_first)
    g = problem.geometry
    n, channels = x.shape[0], x.shape[-1]
    out = np.empty((n,) + tuple(g.out_sizes) + (channels,), dtype=np.float64)
    lowest = np.finfo(problem.dtype).min
    for index, slices in _windows(g):
        cells = x[(slice(None),) + slices].reshape(n, -1, channels).astype(np.float64)
        if problem.kind == "max":
            cells = np.where(np.isnan(cells), -np.inf, cells)
            best = cells.max(axis=1, initial=-np.inf)
            out[(slice(None),) + index] = np.maximum(best, lowest)
        else:
            out[(slice(None),) + index] = cells.sum(axis=1) / cells.shape[1]
    return _layout(out.astype(problem.dtype), problem.channels_first)


def global_pool_reference(problem):
    """np.max (NaN propagates, as tf.reduce_max) or np.mean over the spatial dims."""
    x = _channels_last(problem.x, problem.channels_first).astype(np.float64)
    n, channels = problem.out_shape
    cells = x.reshape(n, -1, channels)
    out = cells.max(axis=1) if problem.kind == "max" else cells.mean(axis=1)
    return out.astype(problem.dtype)


def zero_pad_reference(problem):
    """np.pad with zeros."""
    pads = [(0, 0)] + [tuple(p) for p in problem.pads]
    pads = pads[:1] + [(0, 0)] + pads[1:] if problem.channels_first else pads + [(0, 0)]
    return np.pad(np.asarray(problem.x), pads).astype(problem.dtype)


# The oracle works on host arrays: it is a CPU algorithm (fastconv.reference.* force device="cpu").
register(Implementation("conv", "cpu", "reference", conv_reference, auto=False))
register(Implementation("max_pool", "cpu", "reference", pool_reference, auto=False))
register(Implementation("avg_pool", "cpu", "reference", pool_reference, auto=False))
register(Implementation("global_pool", "cpu", "reference", global_pool_reference, auto=False))
register(Implementation("zero_pad", "cpu", "reference", zero_pad_reference, auto=False))


def _oracle(function):
    @functools.wraps(function)
    def oracle(*args, **kwargs):
        kwargs.setdefault("device", "cpu")
        with use_algorithm("reference"):
            return function(*args, **kwargs)

    oracle.__module__ = __name__
    oracle.__doc__ = (f"NumPy oracle for :func:`fastconv.{function.__name__}` (same arguments).")
    return oracle


conv1d = _oracle(api.conv1d)
conv2d = _oracle(api.conv2d)
conv3d = _oracle(api.conv3d)
depthwise_conv2d = _oracle(api.depthwise_conv2d)
conv2d_transpose = _oracle(api.conv2d_transpose)
max_pool1d = _oracle(api.max_pool1d)
max_pool2d = _oracle(api.max_pool2d)
max_pool3d = _oracle(api.max_pool3d)
avg_pool1d = _oracle(api.avg_pool1d)
avg_pool2d = _oracle(api.avg_pool2d)
avg_pool3d = _oracle(api.avg_pool3d)
global_max_pool2d = _oracle(api.global_max_pool2d)
global_avg_pool2d = _oracle(api.global_avg_pool2d)
zero_pad2d = _oracle(api.zero_pad2d)
