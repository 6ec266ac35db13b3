"""Array layouts for the CPU kernels: channels-first <-> channels-last copies and zero padding."""

import numpy as np

from .conv import pad_ndhwc


def to_channels_last(x5, channels_first):
    """Return a C-contiguous channels-last copy or view of a 5-D array (never the caller's buffer
    when it is written to: kernels only read their inputs)."""
    if channels_first:
        return np.ascontiguousarray(x5.transpose(0, 2, 3, 4, 1))
    return np.ascontiguousarray(x5)


def from_channels_last(out5, channels_first):
    """Return a channels-last 5-D result in the caller's layout, C-contiguous."""
    if channels_first:
        return np.ascontiguousarray(out5.transpose(0, 4, 1, 2, 3))
    return out5


def channels_last_shape(shape5, channels_first):
    """The channels-last version of a 5-D data-layout shape."""
    if channels_first:
        return (shape5[0],) + tuple(shape5[2:]) + (shape5[1],)
    return tuple(shape5)


def pad_spatial(x5, pads, channels_first, extra_width=0):
    """A new zero-padded copy of a 5-D array, in its own layout.

    ``pads`` holds (before, after) for the three spatial dims; ``extra_width`` more zero
    columns go after the last spatial dim. Channels-last arrays use the compiled, parallel
    :func:`~.conv.pad_ndhwc`.
    """
    if not channels_first and not extra_width:
        (d0, d1), (h0, h1), (w0, w1) = pads
        return pad_ndhwc(np.ascontiguousarray(x5), d0, d1, h0, h1, w0, w1)
    first = 2 if channels_first else 1
    shape = list(x5.shape)
    interior = [slice(None)] * 5
    for axis, (before, after) in enumerate(pads):
        shape[first + axis] += before + after
        interior[first + axis] = slice(before, before + x5.shape[first + axis])
    shape[first + 2] += extra_width
    padded = np.zeros(shape, dtype=x5.dtype)
    padded[tuple(interior)] = x5
    return padded

