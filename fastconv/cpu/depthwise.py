"""Depthwise convolution (channel multiplier 1) vectorised over channels.

A depthwise conv with one filter per channel is a per-channel weighted window sum: for each
output pixel, :func:`~.window_reduce.make_window_dot` runs the taps over the contiguous channel
run with vector FMAs. (Through the generic grouped conv, each group would fill one lane of a
32-lane block.) Padding is never copied: a pixel whose window leaves the input passes only the
taps inside it, which matters at stride 2 where a padded copy cost as much as the conv. TF's
kernels multiply padding zeros by the weights, so an infinite or NaN weight over padding gives
NaN (0 * inf); the skipped taps reproduce that through ``w_nonfinite``.
"""

import numpy as np
from numba import njit, prange

from .activation import apply_activation
from .window_reduce import make_window_dot

window_dot = make_window_dot()


@njit(parallel=True, cache=True, nogil=True)
def depthwise_ndhwc(x, w, w_nonfinite, bias, out, sd, sh, sw, dd, dh, dw, pd, ph, pw, act):
    """Depthwise conv of unpadded ``x`` (N, D, H, W, C) into ``out`` (N, OD, OH, OW, C).

    ``w`` is (T, R, S, C) filters; ``w_nonfinite`` is ``~isfinite(w)`` flattened, or empty when
    every weight is finite; ``pd``/``ph``/``pw`` the padding before each dim; ``bias`` (C,) or
    empty; ``act`` an activation code.
    """
    n_, d_, h_, w_, c_ = x.shape
    _, od_, oh_, ow_, _ = out.shape
    t_, r_, s_, _ = w.shape
    n_taps = t_ * r_ * s_
    xf = x.reshape(-1)
    wf = w.reshape(-1)
    of = out.reshape(-1)
    has_bias = bias.shape[0] > 0
    check_padding = w_nonfinite.shape[0] > 0
    nan = np.full(1, np.nan, dtype=out.dtype)[0]
    for job in prange(n_ * od_ * oh_):
        n = job // (od_ * oh_)
        od = (job // oh_) % od_
        oh = job % oh_
        taps = np.empty(n_taps, dtype=np.int64)
        w_taps = np.empty(n_taps, dtype=np.int64)
        padded_taps = np.empty(n_taps, dtype=np.int64)
        for ow in range(ow_):
            d0, h0, w0 = od * sd - pd, oh * sh - ph, ow * sw - pw
            count = 0
            skipped = 0
            for t in range(t_):
                d = d0 + t * dd
                for r in range(r_):
                    h = h0 + r * dh
                    for s in range(s_):
                        col = w0 + s * dw
                        tap = ((t * r_ + r) * s_ + s) * c_
                        if d < 0 or d >= d_ or h < 0 or h >= h_ or col < 0 or col >= w_:
                            padded_taps[skipped] = tap
                            skipped += 1
                        else:
                            taps[count] = (((n * d_ + d) * h_ + h) * w_ + col) * c_
                            w_taps[count] = tap
                            count += 1
            o = (job * ow_ + ow) * c_
            window_dot(xf, 0, taps, w_taps, count, wf, of, o, c_)
            if check_padding:
                for i in range(skipped):
                    for c in range(c_):
                        if w_nonfinite[padded_taps[i] + c]:
                            of[o + c] = nan  # 0 * inf or 0 * NaN over padding
            if has_bias or act != 0:
                for c in range(c_):
                    v = of[o + c]
                    if has_bias:
                        v += bias[c]
                    of[o + c] = apply_activation(v, act)
