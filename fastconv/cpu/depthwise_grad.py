"""The filter gradient of a depthwise conv (channel multiplier 1), channels-last, compiled.

``dw[t, r, s, c] = sum over n and output positions of x[n, tap cell, c] * grad[n, o, c]``: for
every output pixel each tap adds one product per channel, a multiply-add over the contiguous
channel run (vectorised). Through the generic path this is one NumPy ``einsum`` per tap, each
a memory-bound pass over the whole input and gradient (9 passes for a 3x3 filter). Output rows
are split into a few chunks per thread, each summing into its own ``(taps, C)`` partial (a few
KB: taps x channels, never a copy per output row), and the partials are added at the end.
Taps over the padding are skipped; :func:`.numpy_grads.nan_where_nonfinite_grads_meet_padding`
then gives TF's NaN where a non-finite gradient meets the padding, as the NumPy path does.
"""

from numba import njit, prange


@njit(parallel=True, cache=True, nogil=True)
def depthwise_filter_grad_ndhwc(x, dy, partial, sd, sh, sw, dd, dh, dw, pd, ph, pw, t_, r_, s_):
    """Sum ``x`` (N, D, H, W, C) tap cells times ``dy`` (N, OD, OH, OW, C) into ``partial``
    (chunks, T * R * S, C), zero on entry; chunk ``k`` takes the ``k``-th share of the
    output rows."""
    n_, d_, h_, w_, c_ = x.shape
    _, od_, oh_, ow_, _ = dy.shape
    chunks = partial.shape[0]
    rows = n_ * od_ * oh_
    for chunk in prange(chunks):
        acc = partial[chunk]
        for job in range(chunk * rows // chunks, (chunk + 1) * rows // chunks):
            n = job // (od_ * oh_)
            od = (job // oh_) % od_
            oh = job % oh_
            for t in range(t_):
                d = od * sd - pd + t * dd
                if d < 0 or d >= d_:
                    continue
                for r in range(r_):
                    h = oh * sh - ph + r * dh
                    if h < 0 or h >= h_:
                        continue
                    for ow in range(ow_):
                        g = dy[n, od, oh, ow]
                        for s in range(s_):
                            col = ow * sw - pw + s * dw
                            if col < 0 or col >= w_:
                                continue
                            cells = x[n, d, h, col]
                            row = acc[(t * r_ + r) * s_ + s]
                            for c in range(c_):
                                row[c] += cells[c] * g[c]
