"""Max and average pooling that read and write float16/bfloat16 directly (TF's rules).

Pooling is memory-bound: run through float32 copies (:mod:`fastconv.half`) a half-precision
call moves three times the bytes of a float32 one. These kernels load the half-precision bits,
convert each value to float32 in registers (F16C for float16, a shift for bfloat16), reduce in
float32 and round each output once, so a call moves half the bytes of the float32 call. The
results are those of the float32 kernels rounded once: max pooling selects a value (exact),
averages sum the real cells in float32 and divide by their count, as :mod:`.pool` does.

Arrays are the uint16 views of the data: channels-last ``(N, D, H, W, C)`` (vectors along the
channels) or channels-first planes ``(N * C, D, H, W)`` (vectors along the rows, the window's
rows first reduced into a float32 row buffer, as :func:`.pool.pool_ncdhw` does).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit, prange

from .. import config
from ..problems import GlobalPoolProblem
from .half_convert import HAS_F16C, scalar_converters
from .pool import (AVG, FIXED_WINDOW_MAX, MAX, _max_cells, _window, planar_fixed_kernel,
                   window_offsets)
from .threads import parallel_region
from .window_reduce import make_half_window_reduce

ROW_CHUNKS = config.CPU_ROW_CHUNKS


@functools.lru_cache(maxsize=None)
def kernels(dtype_name):
    """``(pool_channels_last, pool_planes)`` for ``dtype_name`` ("float16" or "bfloat16")."""
    load, store = scalar_converters(dtype_name)

    reduce_half = make_half_window_reduce(dtype_name == "bfloat16")

    @njit(parallel=True, cache=True, nogil=True)
    def pool_channels_last(x, out, kd, kh, kw, sd, sh, sw, pd, ph, pw, is_max, lowest):
        """``out[n, od, oh, ow, c]``: max (from ``lowest``, NaN never wins) or mean of the
        real cells of the window, for uint16 views ``x`` and ``out`` (as
        :func:`.pool.pool_ndhwc`: each clipped window a list of cell offsets, reduced over
        the channel run in vector registers)."""
        n_, d_, h_, w_, c_ = x.shape
        _, od_, oh_, ow_, _ = out.shape
        xf = x.reshape(-1)
        of = out.reshape(-1)
        max_cells = _max_cells(kd, kh, kw, d_, h_, w_)
        rows = n_ * od_ * oh_
        chunks = min(rows, ROW_CHUNKS)
        for chunk in prange(chunks):
            offsets = np.empty(max_cells, dtype=np.intp)
            for job in range(chunk * rows // chunks, (chunk + 1) * rows // chunks):
                n = job // (od_ * oh_)
                od = (job // oh_) % od_
                oh = job % oh_
                d0, d1 = _window(od, sd, pd, kd, d_)
                h0, h1 = _window(oh, sh, ph, kh, h_)
                for ow in range(ow_):
                    w0, w1 = _window(ow, sw, pw, kw, w_)
                    cells = window_offsets(offsets, n, d0, d1, h0, h1, w0, w1, d_, h_, w_,
                                           c_)
                    reduce_half(xf, 0, offsets, cells, of, (job * ow_ + ow) * c_, c_, is_max,
                                np.float32(cells), lowest)

    @njit(parallel=True, cache=True, nogil=True)
    def pool_planes(x, out, kd, kh, kw, sd, sh, sw, pd, ph, pw, is_max, lowest):
        """The same for channels-first planes: uint16 ``x`` (P, D, H, W), ``out`` (P, OD, OH,
        OW). The window's rows reduce into a float32 row (contiguous, vectorised), then the
        width window slides over it."""
        p_, d_, h_, w_ = x.shape
        _, od_, oh_, ow_ = out.shape
        start = np.float32(lowest) if is_max else np.float32(0)
        for plane in prange(p_):
            row = np.empty(w_, np.float32)
            for od in range(od_):
                d0, d1 = _window(od, sd, pd, kd, d_)
                for oh in range(oh_):
                    h0, h1 = _window(oh, sh, ph, kh, h_)
                    for w in range(w_):
                        row[w] = start
                    for d in range(d0, d1):
                        for h in range(h0, h1):
                            src = x[plane, d, h]
                            if is_max:
                                for w in range(w_):
                                    v = load(src[w])
                                    a = row[w]
                                    row[w] = v if v > a else a
                            else:
                                for w in range(w_):
                                    row[w] += load(src[w])
                    rows = (d1 - d0) * (h1 - h0)
                    dst = out[plane, od, oh]
                    for ow in range(ow_):
                        w0, w1 = _window(ow, sw, pw, kw, w_)
                        acc = start
                        if is_max:
                            for w in range(w0, w1):
                                v = row[w]
                                acc = v if v > acc else acc
                            dst[ow] = store(acc)
                        else:
                            for w in range(w0, w1):
                                acc += row[w]
                            dst[ow] = store(acc / np.float32(rows * (w1 - w0)))

    return pool_channels_last, pool_planes


@functools.lru_cache(maxsize=None)
def global_kernel(dtype_name):
    """Global max/mean over the middle axis of uint16 views ``x`` (N, S, C) into ``out``
    (N, C): float32 accumulators, one rounding per output (the float32 kernel's sums and
    NaN rule, :func:`.pool.global_pool_nsc`)."""
    load, store = scalar_converters(dtype_name)

    @njit(parallel=True, cache=True, nogil=True)
    def global_channels_last(x, out, is_max):
        n_, s_, c_ = x.shape
        for n in prange(n_):
            acc = np.empty(c_, np.float32)
            for c in range(c_):
                acc[c] = -np.inf if is_max else 0
            for s in range(s_):
                row = x[n, s]
                if is_max:
                    for c in range(c_):
                        v = load(row[c])
                        m = acc[c]
                        if v > m or v != v:  # NaN propagates, as tf.reduce_max
                            acc[c] = v if m == m else m
                else:
                    for c in range(c_):
                        acc[c] += load(row[c])
            dst = out[n]
            if is_max:
                for c in range(c_):
                    dst[c] = store(acc[c])
            else:
                for c in range(c_):
                    dst[c] = store(acc[c] / np.float32(s_))

    return global_channels_last


def run_global(problem, x):
    """Global max or mean of channels-last ``x`` (float16 or bfloat16, the shape of
    ``problem.x``); an array of ``x``'s dtype shaped ``problem.out_shape``."""
    n, channels = problem.out_shape
    out = np.empty((n, channels), x.dtype)
    bits = np.ascontiguousarray(x).view(np.uint16).reshape(n, -1, channels)
    with parallel_region(x.size / 2e3):
        global_kernel(np.dtype(x.dtype).name)(bits, out.view(np.uint16), problem.kind == "max")
    return out


def applies(problem, dtype):
    """Whether :func:`run` takes ``problem`` of ``dtype`` (TF's rules; PyTorch's, and float16
    on a host without F16C, go through float32 copies)."""
    if isinstance(problem, GlobalPoolProblem) and problem.channels_first:
        return False  # NumPy's pairwise row reductions there: the float32 path keeps them
    return not getattr(problem, "nan_wins", False) and \
        not getattr(problem, "count_padding", False) and \
        (HAS_F16C or np.dtype(dtype).name != "float16")


def run(problem, x):
    """Pool ``x`` (float16 or bfloat16, the shape of ``problem.x``) by ``problem``'s geometry
    and kind; returns an array of ``x``'s dtype shaped ``problem.out_shape``."""
    g = problem.geometry
    pool_last, pool_planes = kernels(np.dtype(x.dtype).name)
    bits = np.ascontiguousarray(x).view(np.uint16)
    out = np.empty(problem.out_shape, x.dtype)
    pads = tuple(before for before, _ in g.pads)
    is_max = problem.kind == "max"
    lowest = np.float32(np.finfo(np.float32).min)  # as the float32 kernels, then rounded
    with parallel_region(out.size * max(1, int(np.prod(g.kernel))) / 2e3):
        fixed = g.in_sizes[0] == 1 and max(g.kernel[1:] + g.strides[1:]) <= FIXED_WINDOW_MAX
        if problem.channels_first and fixed:  # vectorised rows, compiled for the window
            n, c, _, h, w = bits.shape
            planar_fixed_kernel(*g.kernel[1:], *g.strides[1:], half=np.dtype(x.dtype).name)(
                bits.reshape(n * c, h, w), out.view(np.uint16).reshape(n * c, *out.shape[3:]),
                pads[1], pads[2], MAX if is_max else AVG, lowest)
        elif problem.channels_first:
            n, c = bits.shape[:2]
            pool_planes(bits.reshape(n * c, *bits.shape[2:]),
                        out.view(np.uint16).reshape(n * c, *out.shape[2:]),
                        *g.kernel, *g.strides, *pads, is_max, lowest)
        else:
            pool_last(bits, out.view(np.uint16), *g.kernel, *g.strides, *pads, is_max, lowest)
    return out
