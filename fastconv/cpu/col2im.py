"""The scatter half of a transposed conv computed as one matrix product (``col2im``), compiled.

``cols = w @ x^T`` holds, for every input pixel of the transposed conv, each tap's
contribution to the output pixel that tap lands on, laid out (taps, C, N, D, H, W) so that a
tap's contributions along an input row are contiguous. Adding them tap by tap in NumPy is one
strided pass over the whole output per tap (49 for a 7x7 stem: 5.2 ms of the stem's 11 ms
input gradient). Here each job owns one output row: it zeroes the row (in L1), adds every tap
whose depth and height land on it, in tap order (the NumPy scatter's order, so the sums are the
same), each tap's contiguous run of contributions at its stride along the row, and moves on.
No two jobs write the same row: no races, no zero fill of the whole output.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


def landing_taps(out_size, in_size, kernel, stride, dilation, pad_before):
    """Per output index ``o`` of one axis, the taps ``k`` and input indices ``i`` with
    ``i * stride - pad_before + k * dilation == o`` (the forward conv's tap k of output i reads
    cell o), ascending in k: ``(counts (O,), taps (O, K), inputs (O, K))``."""
    counts = np.zeros(out_size, np.int64)
    taps = np.zeros((out_size, kernel), np.int64)
    inputs = np.zeros((out_size, kernel), np.int64)
    for k in range(kernel):
        cells = np.arange(in_size) * stride - pad_before + k * dilation
        inside = (cells >= 0) & (cells < out_size)
        for i, o in zip(np.nonzero(inside)[0], cells[inside]):
            taps[o, counts[o]] = k
            inputs[o, counts[o]] = i
            counts[o] += 1
    return counts, taps, inputs


def column_runs(out_size, in_size, kernel, stride, dilation, pad_before):
    """Per width tap ``s``: the first input column whose tap lands inside the row, how many do,
    and the output column the first lands on: ``(first, count, start)``, each (S,)."""
    first, count, start = (np.zeros(kernel, np.int64) for _ in range(3))
    for s in range(kernel):
        cells = np.arange(in_size) * stride - pad_before + s * dilation
        inside = np.nonzero((cells >= 0) & (cells < out_size))[0]
        if inside.size:
            first[s], count[s], start[s] = inside[0], inside.size, cells[inside[0]]
    return first, count, start


@njit(parallel=True, cache=True, nogil=True)
def col2im_rows(cols, out, depth, rows, columns, stride_w):
    """``out[n, d, h, :, :]`` = the sum, in tap order, of every tap's contributions landing
    on row (d, h) of image n.

    ``cols`` is (T, R, S, C, N, ID, IH, IW) (the transposed conv's input sizes last),
    ``out`` (N, D, H, W, C); ``depth`` and ``rows`` are :func:`landing_taps` of the depth and
    height axes, ``columns`` :func:`column_runs` of the width, ``stride_w`` the width stride.
    """
    n_, d_, h_, w_, c_ = out.shape
    _, r_, s_, _, _, id_, ih_, iw_ = cols.shape
    flat = cols.reshape(-1)
    image = id_ * ih_ * iw_  # one (tap, channel, image) plane of cols
    step = np.uintp(stride_w * c_)
    for job in prange(n_ * d_ * h_):
        n, d, h = job // (d_ * h_), (job // h_) % d_, job % h_
        row = out[n, d, h].reshape(-1)
        row[:] = 0
        for a in range(depth[0][d]):
            t, i_d = depth[1][d, a], depth[2][d, a]
            for b in range(rows[0][h]):
                r, i_h = rows[1][h, b], rows[2][h, b]
                for s in range(s_):
                    count = np.uintp(columns[1][s])
                    for c in range(c_):
                        # Flat offsets, not a view per (tap, channel): views cost more than
                        # the few dozen adds of a small layer's row.
                        plane = (((t * r_ + r) * s_ + s) * c_ + c) * n_ + n
                        begin = np.uintp(plane * image + (i_d * ih_ + i_h) * iw_
                                         + columns[0][s])
                        at = np.uintp(columns[2][s] * c_ + c)
                        for j in range(count):
                            row[at + j * step] += flat[begin + j]
