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
    chunks = (c_ + LANES - 1) // LANES
    for job in prange(n_ * chunks):
        n = job // chunks
        c0 = (job % chunks) * LANES
        c1 = min(c_, c0 + LANES)
        for t in range(d_):
            for r in range(h_):
                for s in range(w_):
                    for c in range(c0, c1):
                        dx[n, t, r, s, c] = 0
        best = x[n, 0, 0, 0, c0:c1].copy()
        arg = np.zeros(c1 - c0, np.int64)
        for od in range(od_):
            t0, t1 = _clipped(od, sd, pd, kd, d_)
            for oh in range(oh_):
                r0, r1 = _clipped(oh, sh, ph, kh, h_)
                for ow in range(ow_):
                    s0, s1 = _clipped(ow, sw, pw, kw, w_)
                    if t0 >= t1 or r0 >= r1 or s0 >= s1:
                        continue
                    if ties_all:
                        for t in range(t0, t1):
                            for r in range(r0, r1):
                                for s in range(s0, s1):
                                    for c in range(c0, c1):
                                        if x[n, t, r, s, c] == y[n, od, oh, ow, c]:
                                            dx[n, t, r, s, c] += grad[n, od, oh, ow, c]
                        continue
                    first = (t0 * h_ + r0) * w_ + s0
                    for c in range(c0, c1):
                        best[c - c0] = x[n, t0, r0, s0, c]
                        arg[c - c0] = first
                    for t in range(t0, t1):
                        for r in range(r0, r1):
                            for s in range(s0, s1):
                                cell = (t * h_ + r) * w_ + s
                                for c in range(c0, c1):
                                    value = x[n, t, r, s, c]
                                    if best[c - c0] < value:  # strictly: NaN never takes it
                                        best[c - c0] = value
                                        arg[c - c0] = cell
                    for c in range(c0, c1):
                        cell = arg[c - c0]
                        dx[n, cell // (h_ * w_), (cell // w_) % h_, cell % w_, c] += \
                            grad[n, od, oh, ow, c]


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
        for t in range(d_):
            for r in range(h_):
                for s in range(w_):
                    for c in range(c0, c1):
                        dx[n, t, r, s, c] = 0
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

