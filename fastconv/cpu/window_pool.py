"""Pooling over window tables: PyTorch's max, average and Lp pooling rules on the CPU.

A :class:`~fastconv.problems.WindowPoolProblem` gives, per spatial dim and output index, the
first input cell of the window, its number of taps and (for averages) its divisor, so one
kernel serves dilated and ceil-mode windows, padding counted or not in the divisor, and
adaptive pooling's uneven windows. TF's rules (NaN never wins the max, the divisor is the
count of real cells) stay with :mod:`.pool`; here the max follows PyTorch's CPU kernels: a
window starts from -inf and a NaN wins and stays (``val > max || isnan(val)``), and the
argmax is the index of the last such update, scanning depth, then height, then width.

Channels-first planes without indices are reduced separably (the window's rows into one row
buffer, then the width taps), as :func:`.pool.pool_ncdhw` does; with indices every window is
scanned in PyTorch's order. Channels-last runs the channel loop innermost (contiguous).
"""

import numpy as np
from numba import njit, prange

from .. import config
from .pool import in_dtype, nan_wins_max

MAX, AVG, LP = 0, 1, 2
#: Output-row chunks handed to the thread pool (a few per thread, for balance).
ROW_CHUNKS = config.CPU_ROW_CHUNKS


@njit(inline="always", cache=True)
def _wins(value, best):
    """PyTorch's max update rule: greater, or NaN (so the last NaN's index is kept)."""
    return (value > best) | (value != value)


@njit(inline="always", cache=True)
def _real_taps(start, taps, dilation, size):
    """First real tap ``j0`` and one past the last ``j1`` of a window: cells
    ``start + j * dilation`` inside ``[0, size)``."""
    j0 = 0 if start >= 0 else (-start + dilation - 1) // dilation
    j1 = min(taps, (size - start + dilation - 1) // dilation) if size > start else 0
    return j0, max(j1, j0)


@njit(inline="always", cache=True)
def _flat(d, h, w, h_, w_):
    """A cell's flat index in its (batch, channel) plane: PyTorch's argmax index."""
    return (d * h_ + h) * w_ + w


@njit(inline="always", cache=True)
def _row_of(job, od_, oh_):
    """(batch or plane, od, oh) of output row ``job``."""
    return job // (od_ * oh_), (job // oh_) % od_, job % oh_


@njit(inline="always", cache=True)
def _finish(acc, count, mode, power, scale, scratch):
    """An average's or Lp norm's value from its sum, in the data's dtype (``scratch``: a
    one-element array of that dtype, so the division does not widen float32)."""
    value = acc / in_dtype(count, scratch)
    if mode == LP:
        value = (value * in_dtype(scale, scratch)) ** in_dtype(1.0 / power, scratch)
    return value


@njit(parallel=True, cache=True, nogil=True)
def window_pool_planar(x, out, idx, t, dil_d, dil_h, dil_w, mode, override, power, scale):
    """Channels-first pooling of planes ``x`` (P, D, H, W) into ``out`` (P, OD, OH, OW), with
    argmax into ``idx`` (same shape) unless it is empty. ``t`` (9, M) holds the tables
    (:meth:`~fastconv.problems.WindowPoolProblem.tables`)."""
    p_, d_, h_, w_ = x.shape
    _, od_, oh_, ow_ = out.shape
    sd, nd, dvd, sh, nh, dvh, sw, nw, dvw = t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8]
    with_indices = idx.shape[0] > 0
    rows = p_ * od_ * oh_
    chunks = min(rows, ROW_CHUNKS)
    for chunk in prange(chunks):
        row = np.empty(w_, dtype=x.dtype)
        scratch = np.empty(1, dtype=x.dtype)
        typed_power = in_dtype(power, scratch)
        init = in_dtype(-np.inf if mode == MAX else 0.0, scratch)
        for job in range(chunk * rows // chunks, (chunk + 1) * rows // chunks):
            plane, od, oh = _row_of(job, od_, oh_)
            d0, d1 = _real_taps(sd[od], nd[od], dil_d, d_)
            h0, h1 = _real_taps(sh[oh], nh[oh], dil_h, h_)
            if with_indices:
                for ow in range(ow_):
                    w0, w1 = _real_taps(sw[ow], nw[ow], dil_w, w_)
                    best = init
                    where = _flat(sd[od] + d0 * dil_d, sh[oh] + h0 * dil_h, sw[ow] + w0 * dil_w,
                                  h_, w_)
                    for jd in range(d0, d1):
                        d = sd[od] + jd * dil_d
                        for jh in range(h0, h1):
                            h = sh[oh] + jh * dil_h
                            for jw in range(w0, w1):
                                w = sw[ow] + jw * dil_w
                                v = x[plane, d, h, w]
                                if _wins(v, best):
                                    best = v
                                    where = _flat(d, h, w, h_, w_)
                    out[plane, od, oh, ow] = best
                    idx[plane, od, oh, ow] = where
                continue
            for w in range(w_):
                row[w] = init
            for jd in range(d0, d1):
                d = sd[od] + jd * dil_d
                for jh in range(h0, h1):
                    src = x[plane, d, sh[oh] + jh * dil_h]
                    if mode == MAX:
                        for w in range(w_):
                            v = src[w]
                            m = row[w]
                            row[w] = nan_wins_max(m, v)
                    elif mode == AVG:
                        for w in range(w_):
                            row[w] += src[w]
                    elif typed_power == 2:  # the common norm: no pow call, vectorised
                        for w in range(w_):
                            row[w] += src[w] * src[w]
                    else:
                        for w in range(w_):
                            row[w] += src[w] ** typed_power
            for ow in range(ow_):
                w0, w1 = _real_taps(sw[ow], nw[ow], dil_w, w_)
                acc = init
                for jw in range(w0, w1):
                    v = row[sw[ow] + jw * dil_w]
                    if mode == MAX:
                        acc = nan_wins_max(acc, v)
                    else:
                        acc += v
                if mode == MAX:
                    out[plane, od, oh, ow] = acc
                else:
                    count = override if override > 0 else dvd[od] * dvh[oh] * dvw[ow]
                    out[plane, od, oh, ow] = _finish(acc, count, mode, power, scale, scratch)


@njit(parallel=True, cache=True, nogil=True)
def window_pool_ndhwc(x, out, idx, t, dil_d, dil_h, dil_w, mode, override, power, scale):
    """Channels-last pooling of ``x`` (N, D, H, W, C) into ``out`` (N, OD, OH, OW, C), the
    channel loop innermost; argmax into ``idx`` unless it is empty."""
    n_, d_, h_, w_, c_ = x.shape
    _, od_, oh_, ow_, _ = out.shape
    sd, nd, dvd, sh, nh, dvh, sw, nw, dvw = t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8]
    with_indices = idx.shape[0] > 0
    rows = n_ * od_ * oh_
    chunks = min(rows, ROW_CHUNKS)
    for chunk in prange(chunks):
        acc = np.empty(c_, dtype=x.dtype)
        where = np.empty(c_, dtype=np.int64)
        scratch = np.empty(1, dtype=x.dtype)
        typed_power = in_dtype(power, scratch)
        init = in_dtype(-np.inf if mode == MAX else 0.0, scratch)
        for job in range(chunk * rows // chunks, (chunk + 1) * rows // chunks):
            n, od, oh = _row_of(job, od_, oh_)
            d0, d1 = _real_taps(sd[od], nd[od], dil_d, d_)
            h0, h1 = _real_taps(sh[oh], nh[oh], dil_h, h_)
            for ow in range(ow_):
                w0, w1 = _real_taps(sw[ow], nw[ow], dil_w, w_)
                first = _flat(sd[od] + d0 * dil_d, sh[oh] + h0 * dil_h, sw[ow] + w0 * dil_w,
                              h_, w_)
                for c in range(c_):
                    acc[c] = init
                    where[c] = first
                for jd in range(d0, d1):
                    d = sd[od] + jd * dil_d
                    for jh in range(h0, h1):
                        h = sh[oh] + jh * dil_h
                        for jw in range(w0, w1):
                            w = sw[ow] + jw * dil_w
                            src = x[n, d, h, w]
                            if mode == MAX and with_indices:
                                cell = _flat(d, h, w, h_, w_)
                                for c in range(c_):
                                    v = src[c]
                                    if _wins(v, acc[c]):
                                        acc[c] = v
                                        where[c] = cell
                            elif mode == MAX:
                                for c in range(c_):
                                    v = src[c]
                                    m = acc[c]
                                    acc[c] = nan_wins_max(m, v)
                            elif mode == AVG:
                                for c in range(c_):
                                    acc[c] += src[c]
                            elif typed_power == 2:
                                for c in range(c_):
                                    acc[c] += src[c] * src[c]
                            else:
                                for c in range(c_):
                                    acc[c] += src[c] ** typed_power
                dst = out[n, od, oh, ow]
                if mode == MAX:
                    for c in range(c_):
                        dst[c] = acc[c]
                    if with_indices:
                        for c in range(c_):
                            idx[n, od, oh, ow, c] = where[c]
                else:
                    count = override if override > 0 else dvd[od] * dvh[oh] * dvw[ow]
                    for c in range(c_):
                        dst[c] = _finish(acc[c], count, mode, power, scale, scratch)
