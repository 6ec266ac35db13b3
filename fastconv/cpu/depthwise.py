"""Depthwise convolution (channel multiplier 1) vectorised over channels.

A depthwise conv with one filter per channel is a per-channel weighted window sum: for each
output pixel, :func:`~.window_reduce.make_window_dot` runs the taps over the contiguous channel
run with vector FMAs. (Through the generic grouped conv, each group would fill one lane of a
32-lane block.) The input arrives padded and channels-last.
"""

import numpy as np
from numba import njit, prange

from .activation import apply_activation
from .window_reduce import make_window_dot

window_dot = make_window_dot()


@njit(parallel=True, cache=True, nogil=True)
def depthwise_ndhwc(xp, taps, w, bias, out, sd, sh, sw, act):
    """Depthwise conv of padded ``xp`` (N, Dp, Hp, Wp, C) into ``out`` (N, OD, OH, OW, C).

    ``taps`` holds the element offset of each kernel tap (dilation included); ``w`` is
    (taps, C) flattened; ``bias`` is (C,) or empty; ``act`` an activation code.
    """
    n_, dp, hp, wp_, c_ = xp.shape
    _, od_, oh_, ow_, _ = out.shape
    xf = xp.reshape(-1)
    of = out.reshape(-1)
    has_bias = bias.shape[0] > 0
    for job in prange(n_ * od_ * oh_):
        n = job // (od_ * oh_)
        od = (job // oh_) % od_
        oh = job % oh_
        row = ((n * dp + od * sd) * hp + oh * sh) * wp_
        for ow in range(ow_):
            o = (job * ow_ + ow) * c_
            window_dot(xf, (row + ow * sw) * c_, taps, w, of, o, c_)
            if has_bias or act != 0:
                for c in range(c_):
                    v = of[o + c]
                    if has_bias:
                        v += bias[c]
                    of[o + c] = apply_activation(v, act)
