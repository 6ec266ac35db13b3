"""The gradient problems in plain NumPy: the first-call tier of the pooling gradients and the
CPU algorithm of the filter gradient.

The filter gradient is a reduction over the batch and the output positions: for each kernel
tap it is one matrix product ``x_tap^T @ grad`` of the input cells the tap reads (``M`` rows:
batch times outputs) with the output gradient, done by BLAS on all cores. Memory beyond the
result: one tap's gathered input cells (the size of ``grad`` times ``C / K``), never a copy of
the filter per thread.

Like :mod:`.numpy_ops`, loops run over taps or window offsets only, and take a problem from
:mod:`fastconv.problems`.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..shapes import Geometry
from . import numpy_ops
from .numpy_ops import _channels_last, _in_layout, _tap_slices


def conv_filter_grad(problem):
    """``dw[t, r, s, c, k] = sum over n and outputs of x[tap cell, c of k's group] * grad[k]``."""
    g = problem.geometry
    x = _channels_last(np.asarray(problem.x), problem.channels_first)
    dy = _channels_last(np.asarray(problem.grad), problem.channels_first)
    channels, k_total, groups = x.shape[-1], dy.shape[-1], problem.groups
    cg, kg = channels // groups, k_total // groups
    out = np.zeros(problem.out_shape, problem.dtype)
    taps = list(itertools.product(*(range(k) for k in g.kernel)))
    if groups == 1 and dy.size // k_total * channels * len(taps) * dy.itemsize <= \
            IM2COL_MAX_BYTES:
        # One product of every tap's cells at once (BLAS runs one large GEMM faster than
        # one per tap): (taps x C, M) @ (M, K). Taps that read padding read a zero-padded
        # copy (0 * an infinite gradient is NaN there, as in TF).
        if not _reads_every_tap(g, taps):
            x = np.pad(x, [(0, 0)] + list(g.pads) + [(0, 0)])
            g = Geometry(tuple(x.shape[1:4]), g.kernel, g.strides, g.dilations,
                         ((0, 0),) * 3, g.out_sizes)
        # Image by image (batch chunks of at most IM2COL_CHUNK_ROWS rows of cells): the
        # gathered cells stay in cache between the gather and the product.
        slices = [_tap_slices(g, offsets)[1] for offsets in taps]
        rows = int(np.prod(g.out_sizes))
        step = max(1, IM2COL_CHUNK_ROWS // max(rows, 1))
        flat = out.reshape(-1, k_total)
        for first in range(0, x.shape[0], step):
            images = slice(first, first + step)
            cells = np.stack([x[(images,) + tap] for tap in slices], axis=-2)
            ds = dy[images].reshape(-1, k_total)
            flat += cells.reshape(ds.shape[0], -1).T @ ds
        return out  # no tap read padding here: 0 * inf came from the padded copy
    for offsets in taps:
        slices = _tap_slices(g, offsets)
        if slices is None:
            continue
        xs = x[(slice(None),) + slices[1]].reshape(-1, channels)
        ds = dy[(slice(None),) + slices[0]].reshape(-1, k_total)
        if groups == 1:
            out[offsets] = xs.T @ ds
        elif cg == 1 and kg == 1:  # depthwise, multiplier 1: channel by channel
            out[offsets] = np.einsum("mc,mc->c", xs, ds)
        elif cg == 1:  # depthwise: output c * M + m reads input channel c
            out[offsets] = np.einsum("mc,mck->ck", xs, ds.reshape(-1, groups, kg)).reshape(1, -1)
        else:
            per_group = np.matmul(xs.reshape(-1, groups, cg).transpose(1, 2, 0),
                                  ds.reshape(-1, groups, kg).transpose(1, 0, 2))
            out[offsets] = per_group.transpose(1, 0, 2).reshape(cg, k_total)
    nan_where_nonfinite_grads_meet_padding(out, dy, g, groups)
    return out


#: Largest gathered-cells matrix (bytes) the filter gradient builds for its one-GEMM form.
IM2COL_MAX_BYTES = 64 << 20
#: Rows of gathered cells per product in the filter gradient's one-GEMM form (a few MB).
IM2COL_CHUNK_ROWS = 4096


def depthwise_filter_grad(problem):
    """The filter gradient of a depthwise conv (one filter per input channel, multiplier 1) by
    the compiled kernel of :mod:`.depthwise_grad` (channels-first data is moved to
    channels-last first)."""
    import numba

    from .depthwise_grad import depthwise_filter_grad_ndhwc
    from .threads import parallel_region

    g = problem.geometry
    x = np.ascontiguousarray(_channels_last(np.asarray(problem.x), problem.channels_first))
    dy = np.ascontiguousarray(_channels_last(np.asarray(problem.grad), problem.channels_first))
    taps, channels = int(np.prod(g.kernel)), x.shape[-1]
    rows = dy.shape[0] * dy.shape[1] * dy.shape[2]
    work = dy.size * taps  # multiply-adds
    chunks = max(1, min(rows, 2 * numba.get_num_threads()))
    partial = np.zeros((chunks, taps, channels), problem.dtype)
    with parallel_region(work / 2e3):
        depthwise_filter_grad_ndhwc(x, dy, partial, *g.strides, *g.dilations,
                                    *(before for before, _ in g.pads), *g.kernel)
    out = partial.sum(axis=0).reshape(problem.out_shape)
    nan_where_nonfinite_grads_meet_padding(out, dy, g, problem.groups)
    return out


def depthwise_filter_grad_applies(problem):
    """Depthwise with multiplier 1: every group one input channel and one output channel."""
    return problem.out_shape[3] == 1 and problem.out_shape[4] == problem.groups


def _reads_every_tap(g, taps):
    """Whether every tap reads the input at every output position (VALID-like: then all
    taps' cell slices have the output's shape and stack into one matrix)."""
    for offsets in taps:
        slices = _tap_slices(g, offsets)
        if slices is None or any(s.stop - s.start != n for s, n in zip(slices[0], g.out_sizes)):
            return False
    return True


def nan_where_nonfinite_grads_meet_padding(out, dy, g, groups):
    """NaN in the taps whose zero padding meets a non-finite output gradient (0 * inf), as the
    zero-padded products of TF's kernels give."""
    if not any(sum(g.pads, ())):
        return
    bad = ~np.isfinite(dy)
    if not bad.any():
        return
    for offsets in itertools.product(*(range(k) for k in g.kernel)):
        outside = np.zeros(g.out_sizes, dtype=bool)
        for axis, tap in enumerate(offsets):
            positions = (np.arange(g.out_sizes[axis]) * g.strides[axis] - g.pads[axis][0]
                         + tap * g.dilations[axis])
            mask = (positions < 0) | (positions >= g.in_sizes[axis])
            outside |= mask.reshape([-1 if i == axis else 1 for i in range(3)])
        if outside.any():
            hit = bad[:, outside, :].any(axis=(0, 1))  # (K,)
            out[offsets][:, hit] = np.nan


def col2im_bytes(problem):
    """The bytes of the column matrix of the transposed conv's ``col2im`` algorithm
    (:func:`fastconv.cpu.backend.run_conv_transpose_col2im`)."""
    x = problem.x
    pixels = x.size // x.shape[1 if problem.channels_first else 4]
    return pixels * int(np.prod(problem.geometry.kernel)) * problem.w.shape[3] * x.itemsize


def _windows(g, axis):
    """Per output of ``axis``: its clipped window's first and one-past-last input index."""
    starts = np.arange(g.out_sizes[axis]) * g.strides[axis] - g.pads[axis][0]
    return np.maximum(starts, 0), np.minimum(starts + g.kernel[axis], g.in_sizes[axis])


def pool_grad(problem):
    """Max or average pooling's input gradient, window offset by window offset."""
    g = problem.geometry
    dy = _channels_last(np.asarray(problem.grad), problem.channels_first)
    n, channels = problem.out_shape[0], problem.out_shape[1 if problem.channels_first else 4]
    dx = np.zeros((n, *g.in_sizes, channels), problem.dtype)
    if 0 in dy.shape:
        return _in_layout(dx, problem.channels_first)
    bounds = [_windows(g, axis) for axis in range(3)]
    # Window offsets are taken from each window's clipped start, so offset (0, 0, 0) is its
    # first real cell and row-major order over offsets is row-major order over cells.
    reach = [int((stop - start).max()) for start, stop in bounds]
    if problem.kind == "avg":
        d, h, w = [(stop - start) for start, stop in bounds]
        cells = d[:, None, None] * h[None, :, None] * w[None, None, :]
        share = dy / cells[None, ..., None].astype(problem.dtype)
        return _in_layout(_scatter(dx, share, bounds, reach, lambda offsets, valid: valid),
                          problem.channels_first)
    x = _channels_last(np.asarray(problem.x), problem.channels_first)
    if problem.ties == "all":
        y = _channels_last(np.asarray(problem.y), problem.channels_first)
        return _in_layout(_scatter(dx, dy, bounds, reach,
                                   lambda offsets, valid: valid & (_gather(x, bounds, offsets)
                                                                   == y)),
                          problem.channels_first)
    best = arg = None
    order = list(itertools.product(*(range(k) for k in reach)))
    for index, offsets in enumerate(order):
        valid = _valid(bounds, offsets)
        values = _gather(x, bounds, offsets)
        if best is None:
            best, arg = values.copy(), np.zeros(values.shape, np.int64)
            continue
        take = valid & (best < values)
        best = np.where(take, values, best)
        arg = np.where(take, index, arg)
    position = {offsets: index for index, offsets in enumerate(order)}
    return _in_layout(_scatter(dx, dy, bounds, reach,
                               lambda offsets, valid: valid & (arg == position[offsets])),
                      problem.channels_first)


def _valid(bounds, offsets):
    """(OD, OH, OW, 1) mask: the window's cell at ``offsets`` (from its clipped start) is real."""
    mask = True
    for axis, ((start, stop), j) in enumerate(zip(bounds, offsets)):
        shape = [1, 1, 1]
        shape[axis] = -1
        mask = mask & (start + j < stop).reshape(shape)
    return np.asarray(mask)[None, ..., None]


def _cells(bounds, offsets, sizes):
    """Input indices per axis of each window's cell at ``offsets``, clipped into the input."""
    return [np.minimum(start + j, size - 1) for (start, _), j, size in zip(bounds, offsets, sizes)]


def _gather(x, bounds, offsets):
    d, h, w = _cells(bounds, offsets, x.shape[1:4])
    return x[:, d[:, None, None], h[None, :, None], w[None, None, :], :]


def _scatter(dx, dy, bounds, reach, selects):
    """``dx`` plus, for each window offset, ``dy`` where ``selects(offsets, valid)`` holds."""
    for offsets in itertools.product(*(range(k) for k in reach)):
        valid = _valid(bounds, offsets)
        chosen = np.where(selects(offsets, valid), dy, 0).astype(dx.dtype)
        d, h, w = _cells(bounds, offsets, dx.shape[1:4])
        np.add.at(dx, (slice(None), d[:, None, None], h[None, :, None], w[None, None, :]),
                  chosen)
    return dx


# The first-call tier of the gradient families (fastconv.cpu.compiling reads it there).
numpy_ops.BY_FAMILY.update(max_pool_grad=pool_grad, avg_pool_grad=pool_grad,
                           conv_filter_grad=conv_filter_grad)
