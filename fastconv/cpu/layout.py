"""Array layouts for the CPU kernels: channels-first <-> channels-last copies and zero padding."""

import math

import numpy as np
from numba import njit, prange

from .conv import pad_ndhwc
from .threads import parallel_region

#: Below this many elements NumPy's transposing copy is as fast as waking the thread pool.
_PARALLEL_TRANSPOSE_MIN = 1 << 16
_TILE = 32


@njit(parallel=True, cache=True, nogil=True)
def transpose_last_two(x, out):
    """``out[n, b, a] = x[n, a, b]`` in 32 x 32 tiles, in parallel.

    NumPy's transposing copy runs at 3-6 GB/s on channels-first <-> channels-last here (one
    core, a long stride on one side); in cache-sized tiles both sides stream. Unsigned indices
    into per-image and per-row views: with signed ones every access carries a wraparound test
    and the loop ran 2-4x slower (8x32x112x112 to channels-last: 2.6 -> 0.8 ms on Zen 4).
    """
    n_, a_, b_ = x.shape
    tiles_a, tiles_b = -(-a_ // _TILE), -(-b_ // _TILE)
    for job in prange(n_ * tiles_a * tiles_b):
        n = job // (tiles_a * tiles_b)
        i = (job // tiles_b) % tiles_a
        j = job % tiles_b
        a0, a1 = np.uintp(i * _TILE), np.uintp(min(a_, (i + 1) * _TILE))
        b0, b1 = np.uintp(j * _TILE), np.uintp(min(b_, (j + 1) * _TILE))
        source, target = x[n], out[n]
        for b in range(b0, b1):
            row = target[b]
            for a in range(a0, a1):
                row[a] = source[a, b]


def _move_channels(x5, to_last):
    """A C-contiguous copy of 5-D ``x5`` with its channel axis moved to the end (or back)."""
    shape = x5.shape
    axes = (0, 2, 3, 4, 1) if to_last else (0, 4, 1, 2, 3)
    # Per image, a (rows, cols) matrix becomes (cols, rows).
    rows, cols = (shape[1], math.prod(shape[2:])) if to_last else (math.prod(shape[1:4]), shape[4])
    if x5.size < _PARALLEL_TRANSPOSE_MIN or 1 in (rows, cols) or x5.dtype.kind != "f":
        return np.ascontiguousarray(x5.transpose(axes))
    out = np.empty(tuple(shape[axis] for axis in axes), dtype=x5.dtype)
    with parallel_region():
        transpose_last_two(np.ascontiguousarray(x5).reshape(shape[0], rows, cols),
                           out.reshape(shape[0], cols, rows))
    return out


def to_channels_last(x5, channels_first):
    """Return a C-contiguous channels-last copy or view of a 5-D array (never the caller's buffer
    when it is written to: kernels only read their inputs)."""
    if channels_first:
        return _move_channels(x5, True)
    return np.ascontiguousarray(x5)


def from_channels_last(out5, channels_first):
    """Return a channels-last 5-D result in the caller's layout, C-contiguous."""
    if channels_first:
        return _move_channels(out5, False)
    return out5


def channels_last_shape(shape5, channels_first):
    """The channels-last version of a 5-D data-layout shape."""
    if channels_first:
        return (shape5[0],) + tuple(shape5[2:]) + (shape5[1],)
    return tuple(shape5)


#: Inputs up to this many elements are padded by NumPy (zeros, then the interior): waking the
#: parallel kernel costs more than copying them (~25 us for a 1x8x8x4 input).
SMALL_PAD_ELEMENTS = 1 << 14


def pad_spatial(x5, pads, channels_first, extra_width=0):
    """A new zero-padded copy of a 5-D array, in its own layout.

    ``pads`` holds (before, after) for the three spatial dims; ``extra_width`` more zero
    columns go after the last spatial dim. Channels-last arrays use the compiled, parallel
    :func:`~.conv.pad_ndhwc`.
    """
    if not channels_first and not extra_width and x5.size > SMALL_PAD_ELEMENTS:
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


def aligned_empty(shape, dtype, alignment=64):
    """An uninitialised C-contiguous array whose data starts at a multiple of ``alignment``
    bytes (NumPy only guarantees 16): for kernels whose streaming stores need aligned vectors.

    Examples
    --------
    >>> a = aligned_empty((3, 5), np.float32)
    >>> a.shape, a.ctypes.data % 64
    ((3, 5), 0)
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + alignment, np.uint8)
    start = -raw.ctypes.data % alignment
    return raw[start:start + nbytes].view(dtype).reshape(shape)
