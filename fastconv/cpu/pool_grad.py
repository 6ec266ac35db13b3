"""Gradients of max and average pooling on channels-last 5-D arrays ``(N, D, H, W, C)``.

Channels-first data runs here too, viewed as ``(N * C, D, H, W, 1)`` (each plane is a
channels-last array of one channel), so neither layout is copied. Each window's gradient is
scattered into the input's gradient; windows overlap, so the work is split over (image,
block of channels), which never share a cell.

The max rule is TF's CPU kernels' (see :class:`fastconv.problems.PoolGradProblem`):
``ties_all=False`` is MaxPoolGrad's (the first real cell in row-major order unless a later one
is strictly greater), ``ties_all=True`` is MaxPool3DGrad's (every cell equal to the forward
output).
"""

import numpy as np
from numba import njit, prange

#: Channels per parallel job: one vector's worth for float32 on AVX-512, two on AVX2.
LANES = 16


@njit(inline="always", cache=True)
def _clipped(o, stride, pad, k, size):
    start = o * stride - pad
    return max(start, 0), min(start + k, size)


@njit(parallel=True, cache=True, nogil=True)
def max_pool_grad_ndhwc(x, y, grad, dx, kd, kh, kw, sd, sh, sw, pd, ph, pw, ties_all):
    """``dx`` (zeroed here) receives each window's ``grad`` at the cell(s) TF picks."""
    n_, d_, h_, w_, c_ = x.shape
    _, od_, oh_, ow_, _ = grad.shape
    # (image, cell, channel) views: a window's cells are flat indices, its channels a
    # contiguous run that the branch-free updates below vectorise over.
    x3 = x.reshape(n_, d_ * h_ * w_, c_)
    dx3 = dx.reshape(n_, d_ * h_ * w_, c_)
    y3 = y.reshape(y.shape[0], -1, c_)
    g3 = grad.reshape(n_, od_ * oh_ * ow_, c_)
    chunks = (c_ + LANES - 1) // LANES
    for job in prange(n_ * chunks):
        n = job // chunks
        c0 = (job % chunks) * LANES
        lanes = min(c_, c0 + LANES) - c0
        dx3[n, :, c0:c0 + lanes] = 0
        best = np.empty(LANES, x.dtype)
        arg = np.empty(LANES, np.int64)
        for od in range(od_):
            t0, t1 = _clipped(od, sd, pd, kd, d_)
            for oh in range(oh_):
                r0, r1 = _clipped(oh, sh, ph, kh, h_)
                for ow in range(ow_):
                    s0, s1 = _clipped(ow, sw, pw, kw, w_)
                    if t0 >= t1 or r0 >= r1 or s0 >= s1:
                        continue
                    out = (od * oh_ + oh) * ow_ + ow
                    if ties_all:
                        for t in range(t0, t1):
                            for r in range(r0, r1):
                                for s in range(s0, s1):
                                    cell = (t * h_ + r) * w_ + s
                                    for i in range(lanes):
                                        hit = x3[n, cell, c0 + i] == y3[n, out, c0 + i]
                                        dx3[n, cell, c0 + i] += (g3[n, out, c0 + i] if hit
                                                                 else 0)
                        continue
                    first = (t0 * h_ + r0) * w_ + s0
                    for i in range(lanes):
                        best[i] = x3[n, first, c0 + i]
                        arg[i] = first
                    for t in range(t0, t1):
                        for r in range(r0, r1):
                            for s in range(s0, s1):
                                cell = (t * h_ + r) * w_ + s
                                for i in range(lanes):
                                    value = x3[n, cell, c0 + i]
                                    take = best[i] < value  # strictly: NaN never takes it
                                    best[i] = value if take else best[i]
                                    arg[i] = cell if take else arg[i]
                    for i in range(lanes):
                        dx3[n, arg[i], c0 + i] += g3[n, out, c0 + i]


@njit(parallel=True, cache=True, nogil=True)
def avg_pool_grad_ndhwc(grad, dx, kd, kh, kw, sd, sh, sw, pd, ph, pw):
    """``dx`` (zeroed here) receives each window's ``grad`` divided by its real cells."""
    n_, d_, h_, w_, c_ = dx.shape
    _, od_, oh_, ow_, _ = grad.shape
    chunks = (c_ + LANES - 1) // LANES
    for job in prange(n_ * chunks):
        n = job // chunks
        c0 = (job % chunks) * LANES
        c1 = min(c_, c0 + LANES)
        dx[n, :, :, :, c0:c1] = 0
        share = np.empty(c1 - c0, dx.dtype)
        for od in range(od_):
            t0, t1 = _clipped(od, sd, pd, kd, d_)
            for oh in range(oh_):
                r0, r1 = _clipped(oh, sh, ph, kh, h_)
                for ow in range(ow_):
                    s0, s1 = _clipped(ow, sw, pw, kw, w_)
                    if t0 >= t1 or r0 >= r1 or s0 >= s1:
                        continue
                    cells = (t1 - t0) * (r1 - r0) * (s1 - s0)
                    for c in range(c0, c1):
                        share[c - c0] = grad[n, od, oh, ow, c] / cells
                    for t in range(t0, t1):
                        for r in range(r0, r1):
                            for s in range(s0, s1):
                                for c in range(c0, c1):
                                    dx[n, t, r, s, c] += share[c - c0]

