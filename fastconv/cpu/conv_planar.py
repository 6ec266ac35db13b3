"""Channels-first convolution with the vector along the output row ("planar" blocking).

In NCHW data one input channel's row is contiguous, so for stride-1 convolutions the natural
register block is ``L`` consecutive output pixels (one vector load per tap and channel) x
``BLOCK_ROWS`` output channels (one broadcast weight each): the channels-last kernel with the
roles of pixels and channels swapped. Reading a vector of pixels needs no transposes and touches
one input plane at a time, where the channels-last blocking would gather a pixel from every
plane per step.
"""

import numpy as np
from numba import njit, prange

from .activation import apply_activation
from .conv_blocked import BLOCK_PIXELS as BLOCK_ROWS
from .conv_blocked import VECTOR_BYTES
from .layout import pad_spatial
from .microkernel import make_planar_microkernel, make_planar_store

planar_micro = make_planar_microkernel(BLOCK_ROWS, VECTOR_BYTES)
planar_store = make_planar_store(VECTOR_BYTES)


def planar_lanes(dtype):
    """Output pixels per vector along a row (L)."""
    return VECTOR_BYTES // np.dtype(dtype).itemsize


def pad_for_planar(x, pads, out_width, kernel_width, dilation_width):
    """Zero-pad NCDHW ``x`` by ``pads`` and widen its rows for whole-vector loads."""
    lanes = VECTOR_BYTES // x.itemsize
    width = x.shape[4] + sum(pads[2])
    needed = -(-out_width // lanes) * lanes + (kernel_width - 1) * dilation_width
    return pad_spatial(x, pads, True, extra_width=max(0, needed - width))


@njit(cache=True, nogil=True)
def _pack_rows(w, packed):
    """(taps, C, K) filters -> (n_kblocks, taps, C, BLOCK_ROWS), zero-filling K."""
    n_kblocks, taps, channels, rows = packed.shape
    k_total = w.shape[2]
    for blk in range(n_kblocks):
        for t in range(taps):
            for c in range(channels):
                for i in range(rows):
                    k = blk * rows + i
                    packed[blk, t, c, i] = w[t, c, k] if k < k_total else 0


@njit(inline="always", cache=True)
def _row_taps(t_, r_, s_, hp, wp_, dd, dh, dw):
    """Element offsets of a (T, R, S) window's taps in a padded plane of rows ``wp_`` long."""
    taps = np.empty(t_ * r_ * s_, dtype=np.int64)
    i = 0
    for t in range(t_):
        for r in range(r_):
            for s in range(s_):
                taps[i] = (t * dd * hp + r * dh) * wp_ + s * dw
                i += 1
    return taps


@njit(parallel=True, cache=True, nogil=True)
def conv_planar(xp, w, bias, out, sd, sh, dd, dh, dw, act):
    """Stride-1-along-width conv of padded NCDHW ``xp`` into NCDHW ``out``.

    ``xp``'s rows must extend to ``ceil(OW / L) * L + (S - 1) * dw`` (zeros past the real
    padding), so every vector load stays inside the array. ``w`` is (T, R, S, C, K).
    """
    n_, c_, dp, hp, wp_ = xp.shape
    _, k_, od_, oh_, ow_ = out.shape
    t_, r_, s_, _, _ = w.shape
    n_taps = t_ * r_ * s_
    n_kb = -(-k_ // BLOCK_ROWS)
    packed = np.empty((n_kb, n_taps, c_, BLOCK_ROWS), dtype=xp.dtype)
    _pack_rows(w.reshape((n_taps, c_, k_)), packed)
    wf = packed.reshape(-1)
    taps = _row_taps(t_, r_, s_, hp, wp_, dd, dh, dw)
    xf = xp.reshape(-1)
    plane = dp * hp * wp_
    vec = VECTOR_BYTES // xp.itemsize
    has_bias = bias.shape[0] > 0
    zero = np.zeros(1, dtype=out.dtype)[0]
    of = out.reshape(-1)
    plane_out = od_ * oh_ * ow_
    rows_total = n_ * od_ * oh_
    for row in prange(rows_total):
        n = row // (od_ * oh_)
        od = (row // oh_) % od_
        oh = row % oh_
        acc = np.empty(BLOCK_ROWS * vec, dtype=out.dtype)  # once per row: allocation is not free
        x_row = n * c_ * plane + (od * sd * hp + oh * sh) * wp_
        for blk in range(n_kb):
            k0 = blk * BLOCK_ROWS
            k_count = min(BLOCK_ROWS, k_ - k0)
            w_base = blk * n_taps * c_ * BLOCK_ROWS
            for ow0 in range(0, ow_, vec):
                planar_micro(acc, xf, x_row + ow0, taps, plane, c_, wf, w_base)
                width = min(vec, ow_ - ow0)
                o = ((n * k_ + k0) * od_ + od) * oh_ * ow_ + oh * ow_ + ow0
                if act <= 2:  # bias and relu/relu6 fused into vector (masked) stores
                    planar_store(acc, k_count, width, of, o, plane_out, bias, k0, act)
                else:
                    for j in range(k_count):
                        b = bias[k0 + j] if has_bias else zero
                        for p in range(width):
                            of[o + j * plane_out + p] = apply_activation(acc[j * vec + p] + b, act)


depthwise_micro = make_planar_microkernel(1, VECTOR_BYTES)


@njit(parallel=True, cache=True, nogil=True)
def depthwise_planar(xp, w, bias, out, sd, sh, dd, dh, dw, act):
    """Depthwise conv (multiplier 1) of padded NCDHW ``xp`` into NCDHW ``out``, stride 1 along
    the width: each channel's plane on its own, vectors of ``L`` output pixels along a row,
    the taps' FMAs in registers (:func:`make_planar_microkernel` with one row and one channel).

    ``xp`` is padded as for :func:`conv_planar` (its zeros make TF's 0 * inf = NaN over padding
    come out by themselves); ``w`` is (T, R, S, C).
    """
    n_, c_, dp, hp, wp_ = xp.shape
    _, _, od_, oh_, ow_ = out.shape
    t_, r_, s_, _ = w.shape
    n_taps = t_ * r_ * s_
    w_by_channel = np.ascontiguousarray(w.reshape((n_taps, c_)).T).reshape(-1)  # (C, taps)
    taps = _row_taps(t_, r_, s_, hp, wp_, dd, dh, dw)
    xf = xp.reshape(-1)
    of = out.reshape(-1)
    plane = dp * hp * wp_
    vec = VECTOR_BYTES // xp.itemsize
    has_bias = bias.shape[0] > 0
    zero = np.zeros(1, dtype=out.dtype)[0]
    plane_out = od_ * oh_ * ow_
    for job in prange(n_ * c_ * od_):
        nc = job // od_
        od = job % od_
        c = nc % c_
        acc = np.empty(vec, dtype=out.dtype)
        for oh in range(oh_):
            x_row = nc * plane + (od * sd * hp + oh * sh) * wp_
            o = nc * plane_out + (od * oh_ + oh) * ow_
            for ow0 in range(0, ow_, vec):
                depthwise_micro(acc, xf, x_row + ow0, taps, plane, 1, w_by_channel, c * n_taps)
                width = min(vec, ow_ - ow0)
                if act <= 2:
                    planar_store(acc, 1, width, of, o + ow0, plane_out, bias, c, act)
                else:
                    b = bias[c] if has_bias else zero
                    for p in range(width):
                        of[o + ow0 + p] = apply_activation(acc[p] + b, act)
