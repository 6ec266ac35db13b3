"""``max_pool_with_argmax``, ``dilation2d`` and ``erosion2d`` on the GPU: one thread per output
element, its window clipped to the input, the rules of :mod:`fastconv.cpu.window_max` (TF's
MaxPoolWithArgmax takes a window's first real cell whatever it holds, then strictly greater
ones; Dilation2D starts from the lowest finite value, so NaN never wins; erosion is the
negated dilation of the negated input by the reversed filters).

Both layouts run on a channels-last view, ``(N, H, W, C)`` or ``(N * C, H, W, 1)`` for
channels-first data, so the fastest thread index walks the fastest array dim either way.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from . import kernels


@kernels.factory
def window_max_kernel(dtype, has_filter, first_wins, want_index, negate, channels_first,
                      threads, device):
    """``kernel(x, f, out, idx, window, lowest, planes_per_image, include_batch)`` on
    channels-last views; ``window`` is int64 (kh, kw, sh, sw, rh, rw, ph, pw)."""

    @kernels.jit(threads)
    def window_max(x, f, out, idx, window, lowest, planes_per_image, include_batch):
        i = cuda.grid(1)
        p_, oh_, ow_, c_ = out.shape
        if i >= p_ * oh_ * ow_ * c_:
            return
        c = i % c_
        ow = (i // c_) % ow_
        oh = (i // (c_ * ow_)) % oh_
        p = i // (c_ * ow_ * oh_)
        h_, w_ = x.shape[1], x.shape[2]
        kh, kw, sh, sw, rh, rw, ph, pw = (window[0], window[1], window[2], window[3],
                                          window[4], window[5], window[6], window[7])
        image = p if include_batch else p % planes_per_image
        channel = p % planes_per_image if channels_first else c
        best = lowest
        best_at = -1
        first = True
        for a in range(kh):
            h = oh * sh - ph + a * rh
            if h < 0 or h >= h_:
                continue
            for b in range(kw):
                w = ow * sw - pw + b * rw
                if w < 0 or w >= w_:
                    continue
                v = -x[p, h, w, c] if negate else x[p, h, w, c]
                if has_filter:
                    v = v + f[a, b, channel]
                if (first and first_wins) or v > best:
                    best = v
                    best_at = image * (h_ * w_ * c_) + (h * w_ + w) * c_ + c
                first = False
        out[p, oh, ow, c] = -best if negate else best
        if want_index:
            idx[p, oh, ow, c] = best_at

    return window_max


def launch_window_max(x, f, out, idx, problem, device):
    """Run a :class:`fastconv.problems.WindowMaxProblem` on device arrays in its layout."""
    from .. import config

    g = problem.geometry
    threads = config.CUDA_THREADS_PER_BLOCK
    dtype = np.dtype(problem.dtype)
    if problem.channels_first:
        n, c, h, w = x.shape
        planes, per_image = (n * c, h, w, 1), c
        out_planes = (n * c, g.out_sizes[0], g.out_sizes[1], 1)
    else:
        planes, per_image, out_planes = tuple(x.shape), 1, tuple(out.shape)
    window = cuda.to_device(np.array([*g.kernel, *g.strides, *g.dilations, g.pads[0][0],
                                      g.pads[1][0]], np.int64))
    kernel = window_max_kernel(dtype.name, f is not None, bool(problem.first_wins),
                               bool(problem.with_indices), bool(problem.negate),
                               bool(problem.channels_first), threads, device)
    if f is None:
        f = cuda.to_device(np.zeros((1, 1, 1), dtype))
    if idx is None:
        idx = cuda.to_device(np.zeros((1, 1, 1, 1), np.int64))
    else:
        idx = idx.reshape(out_planes)
    size = int(np.prod(out_planes))
    if size:
        kernel[max(1, -(-size // threads)), threads](
            x.reshape(planes), f, out.reshape(out_planes), idx, window,
            dtype.type(np.finfo(dtype).min), per_image, bool(problem.include_batch))
