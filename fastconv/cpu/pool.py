"""Max and average pooling on channels-last 5-D arrays ``(N, D, H, W, C)``.

Padding is never materialised: windows are clipped to the input, which gives TF's semantics
directly (max ignores padded cells, average divides by the count of real cells).
"""

import numpy as np
from numba import njit, prange

_FLAGS = dict(cache=True, nogil=True)


@njit(inline="always", cache=True)
def _window(o, stride, pad, k, size):
    """First and one-past-last input index of window ``o`` along one dim, clipped to the input."""
    start = o * stride - pad
    stop = min(start + k, size)
    return max(start, 0), stop


@njit(parallel=True, **_FLAGS)
def max_pool_ndhwc(x, out, kd, kh, kw, sd, sh, sw, pd, ph, pw, lowest):
    """Max pooling with TF's CPU semantics: start from ``lowest``, NaN inputs never win.

    ``lowest`` is the dtype's most negative finite value, as in TF (so an all-NaN or all -inf
    window gives ``lowest``). ``v > m`` is False for NaN, which is how TF skips NaN.
    """
    n_, d_, h_, w_, c_ = x.shape
    _, od_, oh_, ow_, _ = out.shape
    for job in prange(n_ * od_ * oh_):
        n = job // (od_ * oh_)
        od = (job // oh_) % od_
        oh = job % oh_
        d0, d1 = _window(od, sd, pd, kd, d_)
        h0, h1 = _window(oh, sh, ph, kh, h_)
        for ow in range(ow_):
            w0, w1 = _window(ow, sw, pw, kw, w_)
            for c in range(c_):
                out[n, od, oh, ow, c] = lowest
            for d in range(d0, d1):
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        for c in range(c_):
                            v = x[n, d, h, w, c]
                            if v > out[n, od, oh, ow, c]:
                                out[n, od, oh, ow, c] = v


@njit(parallel=True, **_FLAGS)
def avg_pool_ndhwc(x, out, kd, kh, kw, sd, sh, sw, pd, ph, pw):
    """Average pooling that divides by the number of real (unpadded) cells, as TF does."""
    n_, d_, h_, w_, c_ = x.shape
    _, od_, oh_, ow_, _ = out.shape
    for job in prange(n_ * od_ * oh_):
        n = job // (od_ * oh_)
        od = (job // oh_) % od_
        oh = job % oh_
        d0, d1 = _window(od, sd, pd, kd, d_)
        h0, h1 = _window(oh, sh, ph, kh, h_)
        for ow in range(ow_):
            w0, w1 = _window(ow, sw, pw, kw, w_)
            for c in range(c_):
                out[n, od, oh, ow, c] = 0
            for d in range(d0, d1):
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        for c in range(c_):
                            out[n, od, oh, ow, c] += x[n, d, h, w, c]
            count = (d1 - d0) * (h1 - h0) * (w1 - w0)
            for c in range(c_):
                out[n, od, oh, ow, c] /= count


@njit(parallel=True, **_FLAGS)
def global_pool_nsc(x, out, is_max):
    """Global max/mean over the middle axis of ``(N, S, C)``; max propagates NaN like tf.reduce_max."""
    n_, s_, c_ = x.shape
    for n in prange(n_):
        for c in range(c_):
            out[n, c] = -np.inf if is_max else 0
        for s in range(s_):
            for c in range(c_):
                v = x[n, s, c]
                if is_max:
                    m = out[n, c]
                    if v > m or v != v:
                        out[n, c] = v if m == m else m
                else:
                    out[n, c] += v
        if not is_max:
            for c in range(c_):
                out[n, c] /= s_
