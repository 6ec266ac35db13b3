"""Window maxima with a rule: ``max_pool_with_argmax`` and grayscale dilation (``dilation2d``;
``erosion2d`` is the dilation of the negated input by the reversed filters, as TF computes it).

Neither layout is copied: channels-last data runs with the channels innermost
(:func:`window_max_planes`), channels-first data as ``(N * C, H, W)`` planes with each output
row innermost (:func:`window_max_rows`: a tap's valid outputs are one contiguous range).
Each output keeps its window's best value in the output array itself.

TF's two CPU kernels differ in how a window starts (see :class:`fastconv.problems.
WindowMaxProblem`): MaxPoolWithArgmax takes the window's first real cell whatever it holds
(NaN or -inf included) and then any strictly greater one; Dilation2D starts from the dtype's
lowest finite value, so a NaN never wins and a window of NaN or -inf sums gives the lowest
value. Padding never takes part.
"""

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True, nogil=True)
def window_max_planes(x, f, out, idx, kh, kw, sh, sw, rh, rw, ph, pw, lowest, has_filter,
                      first_wins, want_index, planes_per_image, include_batch, channels_first,
                      negate):
    """``out[p, oh, ow, c]``: the maximum of ``x (+ f)`` over the window, ``idx`` its flat
    index in the input (``((image * H + h) * W + w) * C + c`` channels-last, ``((image * C +
    c) * H + h) * W + w`` channels-first; the image term only with ``include_batch``).

    With ``negate`` the maximum is of ``-x + f`` and ``-maximum`` is stored: erosion, exactly
    as TF computes it (``-dilation2d(-x, reversed f)``; ``x - f`` would differ in the sign
    of zero)."""
    p_, h_, w_, c_ = x.shape
    oh_, ow_ = out.shape[1], out.shape[2]
    for job in prange(p_ * oh_):
        p = job // oh_
        oh = job % oh_
        h0 = oh * sh - ph
        image = p if include_batch else p % planes_per_image
        base = image * (h_ * w_ * c_)
        plane_channel = p % planes_per_image
        for ow in range(ow_):
            w0 = ow * sw - pw
            for c in range(c_):
                out[p, oh, ow, c] = lowest
                if want_index:
                    idx[p, oh, ow, c] = -1
            first = True
            for i in range(kh):
                h = h0 + i * rh
                if h < 0 or h >= h_:
                    continue
                for j in range(kw):
                    w = w0 + j * rw
                    if w < 0 or w >= w_:
                        continue
                    take_any = first and first_wins
                    at = base + (h * w_ + w) * c_
                    if not (want_index or take_any):  # a select per channel: vectorises
                        for c in range(c_):
                            v = -x[p, h, w, c] if negate else x[p, h, w, c]
                            if has_filter:
                                v = v + f[i, j, plane_channel if channels_first else c]
                            best = out[p, oh, ow, c]
                            out[p, oh, ow, c] = v if v > best else best
                    else:
                        for c in range(c_):
                            v = -x[p, h, w, c] if negate else x[p, h, w, c]
                            if has_filter:
                                v = v + f[i, j, plane_channel if channels_first else c]
                            if take_any or v > out[p, oh, ow, c]:
                                out[p, oh, ow, c] = v
                                if want_index:
                                    idx[p, oh, ow, c] = at + c
                    first = False
            if negate:
                for c in range(c_):
                    out[p, oh, ow, c] = -out[p, oh, ow, c]
    return out


@njit(parallel=True, cache=True, nogil=True)
def window_max_rows(x, f, out, idx, kh, kw, sh, sw, rh, rw, ph, pw, lowest, has_filter,
                    first_wins, planes_per_image, include_batch, negate, track):
    """Channels-first planes ``x`` (P, H, W): as :func:`window_max_planes`, with the output
    row innermost (each tap's valid outputs are one contiguous range, so the loop vectorises
    instead of running one channel at a time). A window's first real cell is the first tap
    that reaches it, so ``idx == -1`` marks an output no tap has reached yet."""
    p_, h_, w_ = x.shape
    oh_, ow_ = out.shape[1], out.shape[2]
    for job in prange(p_ * oh_):
        p = job // oh_
        oh = job % oh_
        channel = p % planes_per_image
        base = (p if include_batch else channel) * (h_ * w_)  # ((n * C + c) * H + h) * W + w
        orow = out[p, oh]
        irow = idx[p, oh]
        for ow in range(ow_):
            orow[ow] = lowest
            irow[ow] = -1
        for i in range(kh):
            h = oh * sh - ph + i * rh
            if h < 0 or h >= h_:
                continue
            xrow = x[p, h]
            for j in range(kw):
                off = j * rw - pw
                lo = 0 if off >= 0 else (-off + sw - 1) // sw
                hi = min(ow_, (w_ - 1 - off) // sw + 1) if w_ - 1 - off >= 0 else 0
                add = f[i, j, channel] if has_filter else f[0, 0, 0]  # (the dummy is zeros)
                at = base + h * w_ + off
                if not track:  # dilation: a select per output, vectorised
                    for ow in range(lo, hi):
                        v = -xrow[ow * sw + off] if negate else xrow[ow * sw + off]
                        v = v + add
                        best = orow[ow]
                        orow[ow] = v if v > best else best
                    continue
                for ow in range(lo, hi):
                    w = ow * sw
                    v = -xrow[w + off] if negate else xrow[w + off]
                    if has_filter:
                        v = v + add
                    if v > orow[ow] or (first_wins and irow[ow] == -1):
                        orow[ow] = v
                        irow[ow] = at + w
        if negate:
            for ow in range(ow_):
                orow[ow] = -orow[ow]
    return out


def run(problem):
    """Run a :class:`fastconv.problems.WindowMaxProblem` (returns ``out`` or ``(out, idx)``)."""
    dtype = np.dtype(problem.dtype)
    g = problem.geometry
    if 0 in problem.out_shape or 0 in problem.x.shape:  # batch or channels 0
        out = np.zeros(problem.out_shape, dtype)
        return (out, np.zeros(problem.out_shape, problem.index_dtype)) \
            if problem.with_indices else out
    x = np.ascontiguousarray(problem.x, dtype=dtype)
    n = x.shape[0]
    if problem.channels_first:
        channels = x.shape[1]
        planes = x.reshape(n * channels, x.shape[2], x.shape[3], 1)
    else:
        channels = x.shape[3]
        planes = x
    out = np.empty(problem.out_shape, dtype)
    out_planes = out.reshape(planes.shape[0], g.out_sizes[0], g.out_sizes[1], planes.shape[3])
    idx = np.empty(out.shape if problem.with_indices else (1, 1, 1, 1), np.int64)
    idx_planes = idx.reshape(out_planes.shape) if problem.with_indices else idx
    has_filter = problem.w is not None
    # A copy: small, and never read-only (which Numba would type, and compile, apart).
    f = np.array(problem.w, dtype=dtype) if has_filter else np.zeros((1, 1, 1), dtype)
    window = (*g.kernel, *g.strides, *g.dilations, g.pads[0][0], g.pads[1][0])
    if problem.channels_first:
        rows_out = out.reshape(n * channels, *g.out_sizes)
        rows_idx = (idx.reshape(rows_out.shape) if problem.with_indices
                    else np.empty(rows_out.shape, np.int64))  # the first-cell marks
        window_max_rows(planes.reshape(n * channels, *planes.shape[1:3]), f, rows_out,
                        rows_idx, *window, np.finfo(dtype).min, has_filter, problem.first_wins,
                        channels, problem.include_batch, problem.negate,
                        problem.first_wins or problem.with_indices)
    else:
        window_max_planes(planes, f, out_planes, idx_planes, *window, np.finfo(dtype).min,
                          has_filter, problem.first_wins, problem.with_indices, 1,
                          problem.include_batch, False, problem.negate)
    if not problem.with_indices:
        return out
    return out, idx.astype(problem.index_dtype, copy=False)
