"""Max and average pooling on channels-last 5-D arrays ``(N, D, H, W, C)``.

Padding is never materialised: windows are clipped to the input, which gives TF's semantics
directly (max ignores padded cells, average divides by the count of real cells). For each
output pixel the clipped window becomes a list of cell offsets, and
:mod:`.window_reduce` reduces it over the contiguous channel run in vector registers, storing
each output once.
"""

import functools

import numpy as np
from numba import njit, prange

from .. import config
from .window_reduce import make_pair_max_rows, make_window_reduce

reduce_window = make_window_reduce()
pair_max_rows = make_pair_max_rows()
pair_max_rows_nan = make_pair_max_rows(nan_wins=True)
#: Modes: TF's max (NaN never wins), average over real cells, PyTorch's max (NaN wins and
#: stays), average dividing by the cells inside the padded input (PyTorch's
#: ``count_include_pad``, padding ``pad`` on both sides). Averages are the odd modes.
MAX, AVG, MAX_NAN, AVG_PAD = 0, 1, 2, 3
#: Output-row chunks handed to the thread pool (a few per thread, for balance).
ROW_CHUNKS = config.CPU_ROW_CHUNKS


@njit(inline="always", cache=True)
def _window(o, stride, pad, k, size):
    """First and one-past-last input index of window ``o`` along one dim, clipped to the input."""
    start = o * stride - pad
    stop = min(start + k, size)
    return max(start, 0), stop


@njit(inline="always", cache=True)
def nan_wins_max(best, value):
    """PyTorch's max of two values: a NaN wins and stays (``|``, not ``or``: no branch, so the
    loops around it vectorise)."""
    return best if ((best != best) | (best >= value)) else value


@njit(inline="always", cache=True)
def _padded_extent(o, stride, pad, k, size):
    """Cells of window ``o`` inside the input padded by ``pad`` on both sides (PyTorch's
    ``count_include_pad`` divisor along one dim)."""
    start = o * stride - pad
    return min(start + k, size + pad) - start


@njit(inline="always", cache=True)
def in_dtype(value, scratch):
    """``value`` converted to ``scratch``'s dtype (a one-element array)."""
    scratch[0] = value
    return scratch[0]


@njit(inline="always", cache=True)
def _max_cells(kd, kh, kw, d_, h_, w_):
    """The most real cells a window clipped to the input can hold: what per-window tables
    need (a window larger than the input must not size them: ksize may be up to 2**31 - 1)."""
    return min(kd, d_) * min(kh, h_) * min(kw, w_)


@njit(inline="always", cache=True)
def window_offsets(offsets, n, d0, d1, h0, h1, w0, w1, d_, h_, w_, c_):
    """Fill ``offsets`` with the flat offsets of a clipped window's cells in a channels-last
    (N, D, H, W, C) array, row-major; return their count."""
    cells = 0
    for d in range(d0, d1):
        for h in range(h0, h1):
            for w in range(w0, w1):
                offsets[cells] = (((n * d_ + d) * h_ + h) * w_ + w) * c_
                cells += 1
    return cells


@njit(inline="always", cache=True)
def _typed_constants(cells, start, like):
    """The cell counts 0..``cells`` and, at index ``cells + 1``, the start value, in ``like``'s
    dtype (averages divide in the data's dtype, as TF does). Made once per call: an allocation
    per plane or output row costs as much as pooling a small one."""
    typed = np.arange(cells + 2).astype(like.dtype)
    typed[cells + 1] = start
    return typed


@njit(parallel=True, cache=True, nogil=True)
def pool_ndhwc(x, out, kd, kh, kw, sd, sh, sw, pd, ph, pw, mode, lowest):
    """Max (``mode == MAX``, TF's CPU semantics) or average pooling of ``x`` into ``out``.

    Max starts from ``lowest`` (the dtype's most negative finite value, as in TF, so an all-NaN
    or all -inf window gives ``lowest``) and NaN inputs never win (``MAX_NAN``: they do, as
    in PyTorch, which passes -inf as ``lowest``). Average divides the sum of the real cells
    by their count in the data's dtype, as TF does (``AVG_PAD``: by the cells inside the
    input padded by ``pd, ph, pw`` on both sides, PyTorch's ``count_include_pad``).
    """
    n_, d_, h_, w_, c_ = x.shape
    _, od_, oh_, ow_, _ = out.shape
    xf = x.reshape(-1)
    of = out.reshape(-1)
    max_cells = _max_cells(kd, kh, kw, d_, h_, w_)
    typed = _typed_constants(max_cells, lowest, x)
    rows = n_ * od_ * oh_
    chunks = min(rows, ROW_CHUNKS)  # scratch allocated per chunk: allocation is not free
    reduce_mode = AVG if mode == AVG_PAD else mode  # the vector reduction's modes: 0, 1, 2
    for chunk in prange(chunks):
        offsets = np.empty(max_cells, dtype=np.intp)
        scratch = np.empty(1, dtype=x.dtype)
        for job in range(chunk * rows // chunks, (chunk + 1) * rows // chunks):
            n = job // (od_ * oh_)
            od = (job // oh_) % od_
            oh = job % oh_
            d0, d1 = _window(od, sd, pd, kd, d_)
            h0, h1 = _window(oh, sh, ph, kh, h_)
            for ow in range(ow_):
                w0, w1 = _window(ow, sw, pw, kw, w_)
                cells = window_offsets(offsets, n, d0, d1, h0, h1, w0, w1, d_, h_, w_, c_)
                if mode == AVG_PAD:
                    scalar = in_dtype(_padded_extent(od, sd, pd, kd, d_)
                                       * _padded_extent(oh, sh, ph, kh, h_)
                                       * _padded_extent(ow, sw, pw, kw, w_), scratch)
                else:
                    scalar = typed[max_cells + 1] if mode % 2 == 0 else typed[cells]
                reduce_window(xf, 0, offsets, cells, of, (job * ow_ + ow) * c_, c_, reduce_mode,
                              scalar)


@njit(cache=True)
def max_pool_ndhwc(x, out, kd, kh, kw, sd, sh, sw, pd, ph, pw, lowest):
    """Max pooling with TF's CPU semantics (see :func:`pool_ndhwc`)."""
    pool_ndhwc(x, out, kd, kh, kw, sd, sh, sw, pd, ph, pw, MAX, lowest)


@njit(cache=True)
def avg_pool_ndhwc(x, out, kd, kh, kw, sd, sh, sw, pd, ph, pw):
    """Average pooling that divides by the number of real (unpadded) cells, as TF does."""
    pool_ndhwc(x, out, kd, kh, kw, sd, sh, sw, pd, ph, pw, AVG, 0.0)


@njit(parallel=True, cache=True, nogil=True)
def global_pool_nsc(x, out, is_max):
    """Global max/mean over the middle axis of ``(N, S, C)``; max propagates NaN like tf.reduce_max."""
    n_, s_, c_ = x.shape
    for n in prange(n_):
        for c in range(c_):
            out[n, c] = -np.inf if is_max else 0
        for s in range(s_):
            for c in range(c_):
                v = x[n, s, c]
                if is_max:
                    m = out[n, c]
                    if v > m or v != v:
                        out[n, c] = v if m == m else m
                else:
                    out[n, c] += v
        if not is_max:
            for c in range(c_):
                out[n, c] /= s_


@njit(parallel=True, cache=True, nogil=True)
def pool_ncdhw(x, out, kd, kh, kw, sd, sh, sw, pd, ph, pw, mode, lowest):
    """Channels-first pooling, in place (no transposes): separable over the window.

    Max and sum are separable, so each output row first reduces its ``kd * kh`` input rows
    into one row buffer (contiguous loads, branch-free selects: vectorised), then slides the
    width window over that buffer. Average divides by the real-cell count in the data's dtype.
    NaN never wins the max, as in :func:`pool_ndhwc` (``MAX_NAN``: a NaN wins, as PyTorch's),
    and the order of the comparisons cannot change a max, so the result equals TF's.
    """
    n_, c_, d_, h_, w_ = x.shape
    _, _, od_, oh_, ow_ = out.shape
    max_cells = _max_cells(kd, kh, kw, d_, h_, w_)
    typed = _typed_constants(max_cells, lowest if mode % 2 == 0 else 0, x)
    init = typed[max_cells + 1]
    for plane in prange(n_ * c_):
        n = plane // c_
        c = plane % c_
        # A buffer per plane, not per output row: allocations would dominate small rows.
        row = np.empty(w_, dtype=x.dtype)
        scratch = np.empty(1, dtype=x.dtype)
        for od in range(od_):
            d0, d1 = _window(od, sd, pd, kd, d_)
            for oh in range(oh_):
                h0, h1 = _window(oh, sh, ph, kh, h_)
                for w in range(w_):
                    row[w] = init
                # PyTorch's max (MAX_NAN) runs TF's and notes NaNs; rows that had one are
                # combined again with PyTorch's rule (rare: NaN-free data pays one OR a cell).
                seen_nan = False
                for d in range(d0, d1):
                    for h in range(h0, h1):
                        src = x[n, c, d, h]
                        if mode == MAX:
                            for w in range(w_):
                                v = src[w]
                                m = row[w]
                                row[w] = v if v > m else m
                        elif mode == MAX_NAN:
                            for w in range(w_):
                                v = src[w]
                                m = row[w]
                                row[w] = v if v > m else m
                                seen_nan |= v != v
                        else:
                            for w in range(w_):
                                row[w] += src[w]
                if seen_nan:
                    for w in range(w_):
                        row[w] = init
                    for d in range(d0, d1):
                        for h in range(h0, h1):
                            src = x[n, c, d, h]
                            for w in range(w_):
                                v = src[w]
                                m = row[w]
                                row[w] = nan_wins_max(m, v)
                rows = (d1 - d0) * (h1 - h0)
                dst = out[n, c, od, oh]
                for ow in range(ow_):
                    w0, w1 = _window(ow, sw, pw, kw, w_)
                    acc = init
                    if mode == MAX:
                        for w in range(w0, w1):
                            v = row[w]
                            acc = v if v > acc else acc
                        dst[ow] = acc
                    elif mode == MAX_NAN and seen_nan:
                        for w in range(w0, w1):
                            v = row[w]
                            acc = nan_wins_max(acc, v)
                        dst[ow] = acc
                    elif mode == MAX_NAN:  # no NaN in these rows: TF's max from -inf
                        for w in range(w0, w1):
                            v = row[w]
                            acc = v if v > acc else acc
                        dst[ow] = acc
                    elif mode == AVG:
                        for w in range(w0, w1):
                            acc += row[w]
                        dst[ow] = acc / typed[rows * (w1 - w0)]
                    else:
                        for w in range(w0, w1):
                            acc += row[w]
                        dst[ow] = acc / in_dtype(_padded_extent(od, sd, pd, kd, d_)
                                                  * _padded_extent(oh, sh, ph, kh, h_)
                                                  * _padded_extent(ow, sw, pw, kw, w_), scratch)


#: Channels-first windows up to this size (and stride) get a kernel compiled for their shape.
FIXED_WINDOW_MAX = config.POOL_FIXED_WINDOW_MAX


@njit(inline="always", cache=True)
def _no_buffers(in_size, out_size):
    return np.empty(0, np.float32), np.empty(0, np.float32)


@njit(inline="always", cache=True)
def _plane_in_place(xf, plane_buffer, start, size):
    """Where a plane's cells are read: ``xf`` itself, from ``start``."""
    return xf, start


@njit(inline="always", cache=True)
def _nothing_to_flush(of, plane_buffer, start, size):
    pass


def _half_plane_helpers(half):
    """The helpers of :func:`planar_fixed_kernel` for ``half`` data: each plane widened into
    a float32 buffer (cache-resident), its output computed there by the float32 loops and
    rounded once into ``out``."""
    from .half_convert import scalar_converters

    load, store = scalar_converters(half)

    @njit(inline="always", cache=True)
    def buffers(in_size, out_size):
        return np.empty(in_size, np.float32), np.empty(out_size, np.float32)

    @njit(inline="always", cache=True)
    def widened_plane(xf, plane_buffer, start, size):
        cells = xf[start:start + size]  # indices from range(): no wraparound, vectorised
        for i in range(size):
            plane_buffer[i] = load(cells[i])
        return plane_buffer, 0

    @njit(inline="always", cache=True)
    def out_plane(of, plane_buffer, start, size):
        return plane_buffer, 0

    @njit(inline="always", cache=True)
    def flush(of, plane_buffer, start, size):
        outputs = of[start:start + size]
        for i in range(size):
            outputs[i] = store(plane_buffer[i])

    return buffers, widened_plane, out_plane, flush


@functools.lru_cache(maxsize=None)
def planar_fixed_kernel(kh, kw, sh, sw, half=None, separable=None):
    """Channels-first 1-D/2-D pooling compiled for one window shape and stride.

    With the window and stride as compile-time constants, the interior loop over output
    columns reads ``x[row + ow * SW + j]``, which LLVM vectorises with interleaved loads and
    shuffles; at run time the stride would force a scalar loop (the generic ``pool_ncdhw``).
    ``x`` is (planes, H, W), ``out`` (planes, OH, OW); borders clip the window as
    :func:`pool_ndhwc` does, and the modes and semantics are the same (the max modes share
    one compiled kernel: each has its own interior loop).

    ``half`` ("float16" or "bfloat16"): ``x`` and ``out`` are uint16 views of that dtype; each
    plane is widened into a float32 buffer (cache-resident), its output computed by the same
    float32 loops and rounded once into ``out`` (:mod:`.pool_half`); ``lowest`` is then a
    float32.
    """
    KH, KW, SH, SW = kh, kw, sh, sw  # frozen into the compiled kernel (and its cache entry)
    # Strided windows reduce their rows first: measured in one process, alternating, kernel
    # alone, 1024x56x56 3x3/2 1.67 -> 1.22 ms, 512x112x112 3x3/2 max 2.74 -> 2.64, avg 2.85 ->
    # 2.37; at stride 1 (contiguous taps already) both forms are even.
    SEPARABLE = KH > 1 and (SW > 1 if separable is None else separable)
    if half is None:
        BUFFERS, PLANE, OUT, FLUSH = _no_buffers, _plane_in_place, _plane_in_place, \
            _nothing_to_flush
    else:
        BUFFERS, PLANE, OUT, FLUSH = _half_plane_helpers(half)

    @njit(parallel=True, cache=True, nogil=True)
    def kernel(x, out, ph, pw, mode, lowest):
        p_, h_, w_ = x.shape
        _, oh_, ow_ = out.shape
        xf = x.reshape(-1)
        of = out.reshape(-1)
        lo = min(-(-pw // SW), ow_)
        hi = max(min((w_ + pw - KW) // SW + 1, ow_), lo)
        is_max = mode % 2 == 0
        typed = _typed_constants(KH * KW, lowest if is_max else 0, np.full(1, lowest))
        init = typed[KH * KW + 1]
        for plane in prange(p_):
            in_buffer, out_buffer = BUFFERS(h_ * w_, oh_ * ow_)
            columns = np.empty(w_ + KW, typed.dtype)  # the separable interior's column row
            src, first_cell = PLANE(xf, in_buffer, plane * h_ * w_, h_ * w_)
            dst, first_out = OUT(of, out_buffer, plane * oh_ * ow_, oh_ * ow_)
            for oh in range(oh_):
                h0, h1 = _window(oh, SH, ph, KH, h_)
                d = first_out + oh * ow_
                first = lo if h1 - h0 == KH else ow_  # interior columns, when no row is clipped
                last = hi if h1 - h0 == KH else ow_
                row0 = first_cell + h0 * w_
                base = row0 - pw
                if is_max:
                    start = first
                    if KH == 2 and KW == 2 and SH == 2 and SW == 2:  # the common 2x2/2 window
                        if mode == MAX_NAN:
                            start += pair_max_rows_nan(src, base + first * 2,
                                                       base + w_ + first * 2, dst, d + first,
                                                       last - first, init)
                        else:
                            start += pair_max_rows(src, base + first * 2, base + w_ + first * 2,
                                                   dst, d + first, last - first, init)
                    if mode == MAX_NAN:
                        # TF's max plus a NaN flag: fewer operations per tap than PyTorch's
                        # update rule, and the same result (init is -inf, so nan is NaN).
                        nan = init - init
                        for ow in range(start, last):
                            m = init
                            seen_nan = False
                            for r in range(KH):
                                for j in range(KW):
                                    v = src[np.uintp(base + r * w_ + ow * SW + j)]
                                    m = v if v > m else m
                                    seen_nan |= v != v
                            dst[d + ow] = nan if seen_nan else m
                    elif SEPARABLE and last > start:
                        # Separable: the KH rows reduced column by column (contiguous loads),
                        # then the width window slid over that row: KH + KW loads an output
                        # column instead of KH * KW strided ones. NaN never wins either way.
                        c0 = start * SW
                        for w in range((last - 1) * SW + KW - c0):
                            at = np.uintp(base + c0 + w)
                            m = init
                            for r in range(KH):
                                v = src[at + np.uintp(r * w_)]
                                m = v if v > m else m
                            columns[w] = m
                        for ow in range(start, last):
                            m = init
                            for j in range(KW):
                                v = columns[np.uintp(ow * SW + j - c0)]
                                m = v if v > m else m
                            dst[d + ow] = m
                    else:
                        for ow in range(start, last):
                            m = init
                            for r in range(KH):
                                for j in range(KW):
                                    v = src[np.uintp(base + r * w_ + ow * SW + j)]
                                    m = v if v > m else m
                            dst[d + ow] = m
                elif SEPARABLE and last > first:  # separable sums, as the max above
                    count = typed[KH * KW]
                    c0 = first * SW
                    for w in range((last - 1) * SW + KW - c0):
                        at = np.uintp(base + c0 + w)
                        total = init
                        for r in range(KH):
                            total += src[at + np.uintp(r * w_)]
                        columns[w] = total
                    for ow in range(first, last):
                        total = init
                        for j in range(KW):
                            total += columns[np.uintp(ow * SW + j - c0)]
                        dst[d + ow] = total / count
                else:
                    count = typed[KH * KW]
                    for ow in range(first, last):
                        total = init
                        for r in range(KH):
                            for j in range(KW):
                                total += src[np.uintp(base + r * w_ + ow * SW + j)]
                        dst[d + ow] = total / count
                for border in range(ow_ - (last - first)):  # clipped windows: borders, clipped rows
                    ow = border if border < first else border + (last - first)
                    w0, w1 = _window(ow, SW, pw, KW, w_)
                    acc = init
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            v = src[row0 + (h - h0) * w_ + w]
                            if mode == MAX_NAN:
                                acc = nan_wins_max(acc, v)
                            elif mode == MAX:
                                acc = v if v > acc else acc
                            else:
                                acc += v
                    if is_max:
                        dst[d + ow] = acc
                    elif mode == AVG_PAD:  # at most KH * KW: PyTorch's padding <= k / 2
                        dst[d + ow] = acc / typed[_padded_extent(oh, SH, ph, KH, h_)
                                                  * _padded_extent(ow, SW, pw, KW, w_)]
                    else:
                        dst[d + ow] = acc / typed[(h1 - h0) * (w1 - w0)]
            FLUSH(of, out_buffer, plane * oh_ * ow_, oh_ * ow_)

    return kernel
