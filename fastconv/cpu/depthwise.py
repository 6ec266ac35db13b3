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
    # Pixels whose whole window is inside the input share one list of relative tap offsets;
    # only the others (next to the padding) build their own.
    inner_taps = np.empty(n_taps, dtype=np.int64)
    inner_w_taps = np.empty(n_taps, dtype=np.int64)
    i = 0
    for t in range(t_):
        for r in range(r_):
            for s in range(s_):
                inner_taps[i] = ((t * dd * h_ + r * dh) * w_ + s * dw) * c_
                inner_w_taps[i] = i * c_
                i += 1
    ow_lo = min(ow_, -(-pw // sw))
    ow_hi = max(ow_lo, min(ow_, (w_ - 1 - (s_ - 1) * dw + pw) // sw + 1))
    for job in prange(n_ * od_ * oh_):
        n = job // (od_ * oh_)
        od = (job // oh_) % od_
        oh = job % oh_
        taps = np.empty(n_taps, dtype=np.int64)
        w_taps = np.empty(n_taps, dtype=np.int64)
        padded_taps = np.empty(n_taps, dtype=np.int64)
        d0, h0 = od * sd - pd, oh * sh - ph
        rows_inside = (d0 >= 0 and d0 + (t_ - 1) * dd < d_ and h0 >= 0
                       and h0 + (r_ - 1) * dh < h_)
        for ow in range(ow_):
            w0 = ow * sw - pw
            if rows_inside and ow_lo <= ow < ow_hi:
                o = (job * ow_ + ow) * c_
                window_dot(xf, (((n * d_ + d0) * h_ + h0) * w_ + w0) * c_, inner_taps,
                           inner_w_taps, n_taps, wf, of, o, c_)
                if has_bias or act != 0:
                    _bias_activation(of, o, c_, bias, has_bias, act)
                continue
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
                _bias_activation(of, o, c_, bias, has_bias, act)


@njit(inline="always", cache=True)
def _bias_activation(of, o, channels, bias, has_bias, act):
    """``of[o:o + channels] = act(of[...] + bias)``, in loops LLVM vectorises for relu."""
    zero = np.zeros(1, dtype=of.dtype)[0]
    if act <= 1:
        for c in range(channels):
            v = of[o + c] + (bias[c] if has_bias else zero)
            of[o + c] = zero if act == 1 and v < zero else v
    else:
        for c in range(channels):
            v = of[o + c] + (bias[c] if has_bias else zero)
            of[o + c] = apply_activation(v, act)
