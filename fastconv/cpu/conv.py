"""Direct convolution on channels-last 5-D arrays ``(N, D, H, W, C)``.

conv1d and conv2d are the same kernel with unit leading spatial dims, so every conv shares one
tested mechanism. The input arrives already padded (see :func:`pad_ndhwc`), which keeps bounds
checks out of the inner loops.
"""

import numpy as np
from numba import njit, prange

from .activation import apply_activation

# fastmath 'contract' gives FMA without giving up NaN/Inf semantics (fastmath=True would).
_FLAGS = dict(cache=True, fastmath={"contract"}, nogil=True)


@njit(parallel=True, **_FLAGS)
def pad_ndhwc(x, d0, d1, h0, h1, w0, w1):
    """Return a zero-padded copy of a 5-D channels-last array (pads before/after per dim).

    Each padded row is written once, zeros and data together, in parallel: zero-filling the
    whole array first and copying the interior over it (NumPy's way) touches memory twice.
    """
    n_, d_, h_, w_, c_ = x.shape
    dp, hp, wp = d_ + d0 + d1, h_ + h0 + h1, w_ + w0 + w1
    out = np.empty((n_, dp, hp, wp, c_), dtype=x.dtype)
    xf = x.reshape(-1)
    of = out.reshape(-1)
    row = wp * c_
    for job in prange(n_ * dp * hp):
        n = job // (dp * hp)
        d = (job // hp) % dp - d0
        h = job % hp - h0
        o = job * row
        if d < 0 or d >= d_ or h < 0 or h >= h_:
            for i in range(row):
                of[o + i] = 0
            continue
        for i in range(w0 * c_):
            of[o + i] = 0
        src = ((n * d_ + d) * h_ + h) * w_ * c_
        inner = w_ * c_
        for i in range(inner):
            of[o + w0 * c_ + i] = xf[src + i]
        for i in range(w1 * c_):
            of[o + (w0 + w_) * c_ + i] = 0
    return out


@njit(parallel=True, **_FLAGS)
def conv_direct_ndhwc(xp, w, bias, out, sd, sh, sw, dd, dh, dw, groups, act):
    """Grouped, strided, dilated convolution of a padded input; writes ``out``.

    Parameters
    ----------
    xp : ndarray (N, Dp, Hp, Wp, C)
        Input, already padded.
    w : ndarray (T, R, S, C // groups, K)
        Filters, TF layout.
    bias : ndarray (K,) or (0,)
        Added before the activation; empty for no bias.
    out : ndarray (N, OD, OH, OW, K)
        Output, C-contiguous; its shape fixes the output sizes.
    sd, sh, sw, dd, dh, dw : int
        Strides and dilations per spatial dim.
    groups : int
        Number of channel groups (1 for an ordinary conv).
    act : int
        Activation code (``fastconv.validation.ACTIVATIONS``).
    """
    n_, od_, oh_, ow_, k_ = out.shape
    t_, r_, s_, cg_, _ = w.shape
    kg_ = k_ // groups
    has_bias = bias.shape[0] > 0
    for job in prange(n_ * od_ * oh_):
        n = job // (od_ * oh_)
        od = (job // oh_) % od_
        oh = job % oh_
        acc = np.zeros((ow_, k_), dtype=out.dtype)
        for t in range(t_):
            zd = od * sd + t * dd
            for r in range(r_):
                zh = oh * sh + r * dh
                for s in range(s_):
                    for g in range(groups):
                        for c in range(cg_):
                            cin = g * cg_ + c
                            for ow in range(ow_):
                                xv = xp[n, zd, zh, ow * sw + s * dw, cin]
                                for k in range(kg_):
                                    acc[ow, g * kg_ + k] += xv * w[t, r, s, c, g * kg_ + k]
        for ow in range(ow_):
            for k in range(k_):
                v = acc[ow, k]
                if has_bias:
                    v += bias[k]
                out[n, od, oh, ow, k] = apply_activation(v, act)
