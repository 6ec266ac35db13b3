"""Window maxima with a rule: ``max_pool_with_argmax`` and grayscale dilation (``dilation2d``;
``erosion2d`` is the dilation of the negated input by the reversed filters, as TF computes it).

Both layouts run one kernel on a channels-last view: channels-last data is ``(N, H, W, C)``,
channels-first data ``(N * C, H, W, 1)`` (each plane a one-channel image), so neither is
copied. Each output keeps its window's best value in the output array itself, channels
innermost (contiguous loads and stores).

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
    window_max_planes(planes, f, out_planes, idx_planes, *g.kernel, *g.strides, *g.dilations,
                      g.pads[0][0], g.pads[1][0], np.finfo(dtype).min, has_filter,
                      problem.first_wins, problem.with_indices,
                      channels if problem.channels_first else 1, problem.include_batch,
                      problem.channels_first, problem.negate)
    if not problem.with_indices:
        return out
    return out, idx.astype(problem.index_dtype, copy=False)
