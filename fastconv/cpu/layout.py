"""Moving 5-D arrays between the caller's layout and the kernels' channels-last layout."""

import numpy as np


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
