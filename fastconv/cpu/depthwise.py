"""Depthwise convolution (channel multiplier 1) vectorised over channels.

A depthwise conv with one filter per channel is a per-channel weighted window sum: for each
output pixel, :func:`~.window_reduce.make_window_dot` runs the taps over the contiguous channel
run with vector FMAs. Where a row's windows lie inside the input and the kernel is 3 or 5
wide with width stride 1 or 2, :func:`~.window_reduce.make_depthwise_block` runs blocks of
neighbouring pixels per channel vector instead: the same sums in the same order, each weight
and input vector loaded once per block (1.2-1.5x). The bias and relu/relu6 are added in
registers before each store. (Through the generic grouped conv, each group would fill one
lane of a 32-lane block.) Padding is never copied: a pixel whose window leaves the input passes only the
taps inside it, which matters at stride 2 where a padded copy cost as much as the conv. TF's
kernels multiply padding zeros by the weights, so an infinite or NaN weight over padding gives
NaN (0 * inf); the skipped taps reproduce that through ``w_nonfinite``.
"""

import numpy as np
from numba import njit, prange

from .activation import apply_activation
from .conv_blocked import _target_has_avx512
from .irtools import store_fence
from .window_reduce import VECTOR_BYTES, make_depthwise_block, make_window_dot

window_dot = make_window_dot()

#: Output pixels per row block: the accumulators, a kernel row's weights and an input vector
#: fit the 32 registers of AVX-512; AVX2 has 16 (and a 64-byte vector is two of them).
BLOCK_PIXELS = 8 if _target_has_avx512() else 4
#: The kernel widths and width strides with a row-block kernel, in the order of the
#: ``block`` codes :func:`row_block_code` gives (0: none, per-pixel sums only).
ROW_BLOCKS = ((3, 1), (3, 2), (5, 1), (5, 2))
block_3_1, block_3_2, block_5_1, block_5_2 = (
    make_depthwise_block(BLOCK_PIXELS, width, stride) for width, stride in ROW_BLOCKS)


def row_block_code(kernel_width, width_stride, width_dilation):
    """The ``block`` argument of :func:`depthwise_ndhwc` for a layer: 1 + the index of its
    (width, stride) in :data:`ROW_BLOCKS` (undilated widths only), else 0.

    Examples
    --------
    >>> row_block_code(3, 1, 1), row_block_code(3, 1, 2), row_block_code(7, 1, 1)
    (1, 0, 0)
    """
    if width_dilation != 1 or (kernel_width, width_stride) not in ROW_BLOCKS:
        return 0
    return 1 + ROW_BLOCKS.index((kernel_width, width_stride))


#: Outputs of at least this many bytes are stored past the caches by the row blocks: they would
#: not stay in cache anyway, and a plain store first reads each line from memory.
STREAMING_MIN_BYTES = 8 << 20


def streams_output(out_bytes, channels, itemsize):
    """Whether a channels-last depthwise output should be written with streaming stores
    (large, and each pixel's channels a whole number of 64-byte vectors, so that an output
    allocated 64-byte aligned keeps every block store aligned)."""
    return out_bytes >= STREAMING_MIN_BYTES and (channels * itemsize) % VECTOR_BYTES == 0


@njit(inline="always", cache=True)
def _row_block(block, xf, x_base, rows, n_rows, c_, wf, w_rows, of, o, bias, c0, act, streaming):
    """One block of BLOCK_PIXELS outputs for one channel vector (``block`` as above), with
    ``bias`` (or empty) and relu/relu6 (``act`` <= 2) fused; ``streaming``: cache-bypassing
    stores (``of`` aligned to a vector at every block)."""
    if block == 1:
        block_3_1(xf, x_base, rows, n_rows, c_, wf, w_rows, c_, of, o, c_, bias, c0, act,
                  streaming)
    elif block == 2:
        block_3_2(xf, x_base, rows, n_rows, c_, wf, w_rows, c_, of, o, c_, bias, c0, act,
                  streaming)
    elif block == 3:
        block_5_1(xf, x_base, rows, n_rows, c_, wf, w_rows, c_, of, o, c_, bias, c0, act,
                  streaming)
    else:
        block_5_2(xf, x_base, rows, n_rows, c_, wf, w_rows, c_, of, o, c_, bias, c0, act,
                  streaming)


@njit(parallel=True, cache=True, nogil=True)
def depthwise_ndhwc(x, w, w_nonfinite, bias, out, sd, sh, sw, dd, dh, dw, pd, ph, pw, act,
                    block=0, streaming=False):
    """Depthwise conv of unpadded ``x`` (N, D, H, W, C) into ``out`` (N, OD, OH, OW, C).

    ``w`` is (T, R, S, C) filters; ``w_nonfinite`` is ``~isfinite(w)`` flattened, or empty when
    every weight is finite; ``pd``/``ph``/``pw`` the padding before each dim; ``bias`` (C,) or
    empty; ``act`` an activation code; ``block`` the :func:`row_block_code` of the layer: the
    interior of each output row then runs in blocks of BLOCK_PIXELS pixels per channel vector
    (the same sums in the same order, with fewer loads); ``streaming``: the row blocks store
    past the caches (``out`` 64-byte aligned, whole vectors of channels: see
    :func:`streams_output`).
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
    lanes = VECTOR_BYTES // x.itemsize
    vector_channels = (c_ // lanes) * lanes if block != 0 else 0
    n_blocks = (ow_hi - ow_lo) // BLOCK_PIXELS if vector_channels > 0 else 0
    blocked_hi = ow_lo + n_blocks * BLOCK_PIXELS  # [ow_lo, blocked_hi): row blocks
    # The kernel rows (t, r) of an interior window, as input and weight offsets.
    n_rows = t_ * r_
    inner_rows = np.empty(n_rows, dtype=np.int64)
    w_rows = np.empty(n_rows, dtype=np.int64)
    for t in range(t_):
        for r in range(r_):
            inner_rows[t * r_ + r] = (t * dd * h_ + r * dh) * w_ * c_
            w_rows[t * r_ + r] = (t * r_ + r) * s_ * c_
    tail_w = wf[vector_channels:]
    zero = np.zeros(1, dtype=out.dtype)[0]
    # The bias and relu/relu6 go into the kernels' stores; other activations are a pass over
    # each pixel after them.
    fused = act <= 2
    fused_bias = bias if fused else bias[:0]
    fused_act = act if fused else 0
    after = not fused
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
        if rows_inside and n_blocks > 0:
            row_base = ((n * d_ + d0) * h_ + h0) * w_ * c_
            for c0 in range(0, vector_channels, lanes):
                for blk in range(n_blocks):
                    ow = ow_lo + blk * BLOCK_PIXELS
                    _row_block(block, xf, row_base + (ow * sw - pw) * c_ + c0, inner_rows,
                               n_rows, c_, wf[c0:], w_rows, of, (job * ow_ + ow) * c_ + c0,
                               fused_bias, c0, fused_act, streaming)
            for ow in range(ow_lo, blocked_hi):
                o = (job * ow_ + ow) * c_
                if vector_channels < c_:  # the channels after the last whole vector
                    window_dot(xf, row_base + (ow * sw - pw) * c_ + vector_channels,
                               inner_taps, inner_w_taps, n_taps, tail_w, of,
                               o + vector_channels, c_ - vector_channels, fused_bias,
                               vector_channels, fused_act)
        for ow in range(ow_):
            if rows_inside and ow_lo <= ow < blocked_hi:
                continue  # done in row blocks
            w0 = ow * sw - pw
            if rows_inside and ow_lo <= ow < ow_hi:
                o = (job * ow_ + ow) * c_
                window_dot(xf, (((n * d_ + d0) * h_ + h0) * w_ + w0) * c_, inner_taps,
                           inner_w_taps, n_taps, wf, of, o, c_, fused_bias, 0, fused_act)
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
            window_dot(xf, 0, taps, w_taps, count, wf, of, o, c_, fused_bias, 0, fused_act)
            if check_padding:
                for i in range(skipped):
                    for c in range(c_):
                        if w_nonfinite[padded_taps[i] + c]:
                            of[o + c] = nan  # 0 * inf or 0 * NaN over padding
        if streaming:
            store_fence()
        if after:  # once the row is stored: reading vectors just stored stalls each load
            for ow in range(ow_):
                _bias_activation(of, (job * ow_ + ow) * c_, c_, bias, has_bias, act, zero)


@njit(inline="always", cache=True)
def _bias_activation(of, o, channels, bias, has_bias, act, zero):
    """``of[o:o + channels] = act(of[...] + bias)`` for the activations not fused into the
    stores (sigmoid, tanh, ...; ``zero`` of the dtype from the caller: an array made here,
    per pixel, cost more than the convolution)."""
    for c in range(channels):
        v = of[o + c] + (bias[c] if has_bias else zero)
        of[o + c] = apply_activation(v, act)
