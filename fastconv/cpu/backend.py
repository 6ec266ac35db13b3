"""Registers the CPU implementations with :mod:`fastconv.dispatch`.

Each ``run_*`` takes a problem from :mod:`fastconv.problems`, moves data to the kernels'
channels-last layout, runs one kernel, and returns the result in the caller's layout.
"""

import numpy as np

from ..dispatch import Implementation, register
from .conv import conv_direct_ndhwc, pad_ndhwc
from .layout import channels_last_shape, from_channels_last, to_channels_last
from .pool import avg_pool_ndhwc, global_pool_nsc, max_pool_ndhwc
from .threads import parallel_region
from .transpose import flipped_filters, upsample_and_pad


def _empty_result(shape5, dtype):
    return np.zeros(shape5, dtype=dtype)


def _bias_or_empty(bias, dtype):
    return np.empty(0, dtype=dtype) if bias is None else np.ascontiguousarray(bias, dtype=dtype)


def run_conv_direct(problem):
    """Direct convolution (and transposed convolution through :mod:`.transpose`)."""
    if 0 in problem.out_shape or 0 in problem.x.shape:
        return _empty_result(problem.out_shape, problem.dtype)
    g = problem.geometry
    x = to_channels_last(problem.x, problem.channels_first)
    if problem.kind == "transpose":
        xp = upsample_and_pad(x, g)
        w = flipped_filters(problem.w)
        strides = (1, 1, 1)
    else:
        (d0, d1), (h0, h1), (w0, w1) = g.pads
        xp = pad_ndhwc(x, d0, d1, h0, h1, w0, w1) if any(sum(g.pads, ())) else x
        w = np.ascontiguousarray(problem.w)
        strides = g.strides
    out = np.empty(channels_last_shape(problem.out_shape, problem.channels_first), problem.dtype)
    with parallel_region():
        conv_direct_ndhwc(xp, w, _bias_or_empty(problem.bias, problem.dtype), out, *strides,
                          *g.dilations, problem.groups, problem.activation)
    return from_channels_last(out, problem.channels_first)


def run_pool_direct(problem):
    """Max or average pooling with clipped windows."""
    if 0 in problem.out_shape or 0 in problem.x.shape:
        return _empty_result(problem.out_shape, problem.dtype)
    g = problem.geometry
    x = to_channels_last(problem.x, problem.channels_first)
    out = np.empty(channels_last_shape(problem.out_shape, problem.channels_first), problem.dtype)
    pads_before = tuple(before for before, _ in g.pads)
    with parallel_region():
        if problem.kind == "max":
            lowest = np.finfo(problem.dtype).min
            max_pool_ndhwc(x, out, *g.kernel, *g.strides, *pads_before, lowest)
        else:
            avg_pool_ndhwc(x, out, *g.kernel, *g.strides, *pads_before)
    return from_channels_last(out, problem.channels_first)


def run_global_pool(problem):
    """Global max / mean over the spatial dims."""
    x = to_channels_last(problem.x, problem.channels_first)
    n, channels = problem.out_shape
    out = np.empty((n, channels), problem.dtype)
    if out.size == 0:
        return out
    with parallel_region():
        global_pool_nsc(x.reshape(n, -1, channels), out, problem.kind == "max")
    return out


def run_zero_pad(problem):
    """Zero padding: one allocation, one copy of the input into the interior."""
    out = np.zeros(problem.out_shape, problem.dtype)
    offset = 2 if problem.channels_first else 1
    interior = [slice(None)] * 5
    for axis, ((before, _), size) in enumerate(zip(problem.pads, problem.x.shape[offset:offset + 3])):
        interior[offset + axis] = slice(before, before + size)
    out[tuple(interior)] = problem.x
    return out


register(Implementation("conv", "cpu", "direct", run_conv_direct))
register(Implementation("max_pool", "cpu", "direct", run_pool_direct))
register(Implementation("avg_pool", "cpu", "direct", run_pool_direct))
register(Implementation("global_pool", "cpu", "direct", run_global_pool))
register(Implementation("zero_pad", "cpu", "direct", run_zero_pad))
