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
from .layout import SMALL_PAD_ELEMENTS, pad_spatial
from .microkernel import make_planar_microkernel, make_planar_store
from .threads import parallel_region

planar_micro = make_planar_microkernel(BLOCK_ROWS, VECTOR_BYTES)
planar_store = make_planar_store(VECTOR_BYTES)
#: A second block height for output-channel counts that BLOCK_ROWS divides badly (16 or 32
#: outputs in blocks of 12 leave a third or a ninth of the FMAs on zero weights).
SHORT_ROWS = 8 if BLOCK_ROWS > 8 else BLOCK_ROWS
planar_micro_short = make_planar_microkernel(SHORT_ROWS, VECTOR_BYTES)


def block_rows(out_channels):
    """The planar kernel's block height for ``out_channels``: SHORT_ROWS where it needs no
    more blocks than BLOCK_ROWS (fewer FMAs on zero weights for as many input reads: 16
    outputs 1.08-1.20x, 8 outputs 1.10x), else BLOCK_ROWS (32 outputs in 4 blocks of 8
    instead of 3 of 12 measured 0.93x: each block reads the input again).

    Examples
    --------
    >>> block_rows(32) == BLOCK_ROWS, block_rows(16) == SHORT_ROWS
    (True, True)
    """
    blocks = -(-out_channels // BLOCK_ROWS)
    short_blocks = -(-out_channels // SHORT_ROWS)
    short_waste = short_blocks * SHORT_ROWS - out_channels
    waste = blocks * BLOCK_ROWS - out_channels
    return SHORT_ROWS if short_blocks <= blocks and short_waste < waste else BLOCK_ROWS


def planar_lanes(dtype):
    """Output pixels per vector along a row (L)."""
    return VECTOR_BYTES // np.dtype(dtype).itemsize


def pad_for_planar(x, pads, out_width, kernel_width, dilation_width, stride_width=1):
    """Zero-pad NCDHW ``x`` by ``pads`` and widen its rows for whole-vector loads; with a
    width stride, rows split into phases (:func:`pad_phases`)."""
    lanes = VECTOR_BYTES // x.itemsize
    width = x.shape[4] + sum(pads[2])
    reach = (kernel_width - 1) * dilation_width
    needed = -(-out_width // lanes) * lanes + reach // stride_width
    if stride_width == 1 and x.size <= SMALL_PAD_ELEMENTS:
        return pad_spatial(x, pads, True, extra_width=max(0, needed - width))
    phase = max(-(-width // stride_width), needed)
    (d0, d1), (h0, h1), (w0, _) = pads
    out = np.empty(x.shape[:2] + (x.shape[2] + d0 + d1, x.shape[3] + h0 + h1,
                                  stride_width * phase), x.dtype)
    with parallel_region(x.size / 1e3):
        pad_phases(np.ascontiguousarray(x), d0, h0, w0, stride_width, phase, out)
    return out


@njit(parallel=True, cache=True, nogil=True)
def pad_phases(x, d0, h0, w0, sw, phase, out):
    """Copy NCDHW ``x`` into ``out`` (any contents on entry) padded with zeros by (d0, h0, w0)
    before and to ``out``'s size after, each row split into ``sw`` phases of ``phase``
    columns: padded column ``col`` goes to ``(col % sw) * phase + col // sw``, so a
    width-strided window's taps read consecutive outputs from consecutive cells (whole-vector
    loads, as at stride 1). Every row is zeroed as it is written (in L1), not beforehand."""
    n_, c_, d_, h_, w_ = x.shape
    dp_, hp_ = out.shape[2], out.shape[3]
    for job in prange(n_ * c_ * dp_):
        n, c, dp = job // (c_ * dp_), (job // dp_) % c_, job % dp_
        d = dp - d0
        for hp in range(hp_):
            target = out[n, c, dp, hp]
            target[:] = 0
            h = hp - h0
            if d < 0 or d >= d_ or h < 0 or h >= h_:
                continue
            source = x[n, c, d, h]
            for p in range(sw):
                # The input columns of phase p are consecutive cells of the phase (unsigned
                # indices, no division per cell: 5.6 -> 1.2 ms for 8x32x112x112).
                first = (p - w0) % sw
                if first >= w_:
                    continue
                count = np.uintp((w_ - 1 - first) // sw + 1)
                start = np.uintp(p * phase + (first + w0) // sw)
                step, begin = np.uintp(sw), np.uintp(first)
                for i in range(count):
                    target[start + i] = source[begin + i * step]


@njit(cache=True, nogil=True)
def _pack_rows(w, packed):
    """(taps, C, K) filters -> (n_kblocks, taps, C, rows), zero-filling K."""
    n_kblocks, taps, channels, rows = packed.shape
    k_total = w.shape[2]
    for blk in range(n_kblocks):
        for t in range(taps):
            for c in range(channels):
                for i in range(rows):
                    k = blk * rows + i
                    packed[blk, t, c, i] = w[t, c, k] if k < k_total else 0


@njit(inline="always", cache=True)
def _row_taps(t_, r_, s_, hp, wp_, dd, dh, dw, sw=1):
    """Element offsets of a (T, R, S) window's taps in a padded plane of rows ``wp_`` long;
    with a width stride ``sw`` > 1 the rows are split into ``sw`` phases of ``wp_ // sw``
    (:func:`pad_phases`), so that a tap's cells for consecutive outputs are consecutive."""
    taps = np.empty(t_ * r_ * s_, dtype=np.int64)
    phase = wp_ // sw
    i = 0
    for t in range(t_):
        for r in range(r_):
            for s in range(s_):
                column = s * dw
                taps[i] = ((t * dd * hp + r * dh) * wp_ + (column % sw) * phase
                           + column // sw)
                i += 1
    return taps


@njit(parallel=True, cache=True, nogil=True)
def conv_planar(xp, w, bias, out, sd, sh, dd, dh, dw, act, sw=1, rows=BLOCK_ROWS):
    """Conv of padded NCDHW ``xp`` into NCDHW ``out``.

    ``xp`` comes from :func:`pad_for_planar` (rows long enough that every vector load stays
    inside the array; with a width stride ``sw`` > 1, rows split into phases). ``w`` is
    (T, R, S, C, K). ``rows``: output channels per block, BLOCK_ROWS or SHORT_ROWS
    (:func:`block_rows`).
    """
    n_, c_, dp, hp, wp_ = xp.shape
    _, k_, od_, oh_, ow_ = out.shape
    t_, r_, s_, _, _ = w.shape
    n_taps = t_ * r_ * s_
    n_kb = -(-k_ // rows)
    packed = np.empty((n_kb, n_taps, c_, rows), dtype=xp.dtype)
    _pack_rows(w.reshape((n_taps, c_, k_)), packed)
    wf = packed.reshape(-1)
    taps = _row_taps(t_, r_, s_, hp, wp_, dd, dh, dw, sw)
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
        acc = np.empty(rows * vec, dtype=out.dtype)  # once per row: allocation is not free
        x_row = n * c_ * plane + (od * sd * hp + oh * sh) * wp_
        for blk in range(n_kb):
            k0 = blk * rows
            k_count = min(rows, k_ - k0)
            w_base = blk * n_taps * c_ * rows
            for ow0 in range(0, ow_, vec):
                if rows == BLOCK_ROWS:
                    planar_micro(acc, xf, x_row + ow0, taps, plane, c_, wf, w_base)
                else:
                    planar_micro_short(acc, xf, x_row + ow0, taps, plane, c_, wf, w_base)
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
def depthwise_planar(xp, w, bias, out, sd, sh, dd, dh, dw, act, sw=1):
    """Depthwise conv (multiplier 1) of padded NCDHW ``xp`` into NCDHW ``out``: each channel's
    plane on its own, vectors of ``L`` output pixels along a row, the taps' FMAs in registers
    (:func:`make_planar_microkernel` with one row and one channel).

    ``xp`` is padded by :func:`pad_for_planar` (its zeros make TF's 0 * inf = NaN over padding
    come out by themselves; with a width stride ``sw`` > 1 its rows are split into phases);
    ``w`` is (T, R, S, C).
    """
    n_, c_, dp, hp, wp_ = xp.shape
    _, _, od_, oh_, ow_ = out.shape
    t_, r_, s_, _ = w.shape
    n_taps = t_ * r_ * s_
    w_by_channel = np.ascontiguousarray(w.reshape((n_taps, c_)).T).reshape(-1)  # (C, taps)
    taps = _row_taps(t_, r_, s_, hp, wp_, dd, dh, dw, sw)
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
