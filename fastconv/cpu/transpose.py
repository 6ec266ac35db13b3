"""conv2d_transpose as an ordinary convolution.

The transposed conv of ``x`` (forward geometry: size ``H`` -> ``OH`` with stride ``s``, dilation
``d``, padding before ``pb``) is ``y[h] = sum_r z[h + pb - r*d] w[r]`` where ``z`` is ``x`` with
``s - 1`` zeros between samples. Flipping the kernel turns that into a stride-1 correlation of
``z`` padded by ``(R - 1) * d - pb`` cells before (cropped when negative), which the direct conv
kernel computes. The extra multiplications by inserted zeros are the price of reusing it.
"""

import numpy as np


def upsample_and_pad(x, geometry):
    """Return ``x`` (channels-last, 5-D) spread by the strides and padded for the flipped conv."""
    n, *in_sizes, channels = x.shape
    shape, target, source = [n], [slice(None)], [slice(None)]
    for size_in, size_out, k, s, d, (before, _) in zip(in_sizes, geometry.in_sizes, geometry.kernel,
                                                        geometry.strides, geometry.dilations,
                                                        geometry.pads):
        left = (k - 1) * d - before
        length = size_out + (k - 1) * d  # exactly what the stride-1 conv reads
        first = -(-max(0, -left) // s)  # first sample whose position is >= 0
        start = left + first * s
        count = max(0, min(size_in - first, -(-(length - start) // s)))
        shape.append(length)
        target.append(slice(start, start + (count - 1) * s + 1 if count else start, s))
        source.append(slice(first, first + count))
    padded = np.zeros(tuple(shape) + (channels,), dtype=x.dtype)
    padded[tuple(target)] = x[tuple(source)]
    return padded


def flipped_filters(w):
    """(T, R, S, out, in) transpose-conv filters -> (T, R, S, in, out) flipped conv filters."""
    return np.ascontiguousarray(w[::-1, ::-1, ::-1].transpose(0, 1, 2, 4, 3))
