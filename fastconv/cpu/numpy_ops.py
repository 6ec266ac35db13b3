"""Every CPU op in plain NumPy, vectorised, with nothing to compile: the first-call tier.

A kernel's first call in a new environment would wait seconds for Numba to compile it (issue
10: 32 s for a CNN's first calls). :mod:`.compiling` runs these functions instead while the
kernels compile in a background process, so a new user's first calls cost about what
TensorFlow's do. They follow the kernels' (TF's) semantics exactly; only the order of the
floating-point sums differs (results agree to the suite's tolerance, not bit for bit).

Each loop runs over kernel taps or window offsets, never over pixels, and only over the taps
and offsets that reach the input: no padded copy is made, so SAME padding with a huge
dilation or window costs what the input and output do. A tap holding inf or NaN that meets
the padding gives NaN (0 * inf), as TF's zero-padded sum does
(:func:`nan_where_nonfinite_taps_meet_padding`).

Every function takes a problem from :mod:`fastconv.problems` and returns the result in the
caller's layout, C-contiguous.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from .. import activations


def _channels_last(x5, channels_first):
    return np.moveaxis(x5, 1, -1) if channels_first else x5


def _in_layout(out_cl, channels_first):
    return np.ascontiguousarray(np.moveaxis(out_cl, -1, 1) if channels_first else out_cl)


def _reach(out_size, stride, pad, offset, in_size):
    """Outputs ``o`` whose tap at ``offset`` reads inside the input, ``0 <= o*stride - pad +
    offset < in_size``: returns (first output, count, first input index)."""
    shift = offset - pad
    first = max(0, -(-(-shift) // stride))
    stop = min(out_size, -(-(in_size - shift) // stride))
    count = max(0, stop - first)
    return first, count, first * stride + shift


def _tap_slices(g, offsets):
    """The (output, input) spatial slices of one kernel tap, or None when it never reads the
    input."""
    out_slices, in_slices = [], []
    for axis, j in enumerate(offsets):
        first, count, start = _reach(g.out_sizes[axis], g.strides[axis], g.pads[axis][0],
                                     j * g.dilations[axis], g.in_sizes[axis])
        if count == 0:
            return None
        out_slices.append(slice(first, first + count))
        in_slices.append(slice(start, start + (count - 1) * g.strides[axis] + 1, g.strides[axis]))
    return tuple(out_slices), tuple(in_slices)


def activate(values, code):
    """The fused activations as the kernels compute them (in float64, rounded once)."""
    return activations.apply(values, code, activations.tf_alpha(activations.LEAKY_ALPHA))


def nan_where_nonfinite_taps_meet_padding(out_cl, w, g):
    """Set NaN in channels-last ``out_cl`` wherever a filter tap holding inf or NaN reads the
    zero padding, as a zero-padded copy would give (0 * inf is NaN).

    ``w`` is (T, R, S, Cg, K) and ``g`` the op's 3-D geometry.
    """
    bad = ~np.isfinite(w).all(axis=3)  # (T, R, S, K)
    if not bad.any() or not any(sum(g.pads, ())):
        return
    for t, r, s, k in zip(*np.nonzero(bad)):
        outside = np.zeros(g.out_sizes, dtype=bool)
        for axis, tap in enumerate((t, r, s)):
            positions = (np.arange(g.out_sizes[axis]) * g.strides[axis] - g.pads[axis][0]
                         + tap * g.dilations[axis])
            mask = (positions < 0) | (positions >= g.in_sizes[axis])
            outside |= mask.reshape([-1 if i == axis else 1 for i in range(3)])
        out_cl[:, outside, k] = np.nan


def conv(problem):
    """Convolution, tap by tap."""
    g = problem.geometry
    x = _channels_last(np.asarray(problem.x), problem.channels_first)
    w = np.asarray(problem.w)
    _, _, _, cg, k_total = w.shape
    groups = problem.groups
    kg = k_total // groups
    out = np.zeros((x.shape[0], *g.out_sizes, k_total), dtype=problem.dtype)
    for offsets in itertools.product(*(range(k) for k in g.kernel)):
        slices = _tap_slices(g, offsets)
        if slices is None:
            continue
        dst = out[(slice(None),) + slices[0]]
        src = x[(slice(None),) + slices[1]]
        taps = w[offsets]  # (Cg, K)
        if groups == 1:
            dst += src @ taps
        elif cg == 1:  # depthwise: output c * M + m reads input channel c
            shape = dst.shape[:-1] + (groups, kg)
            dst.reshape(shape)[...] += src[..., :, None] * taps[0].reshape(groups, kg)
        else:
            for group in range(groups):
                dst[..., group * kg:(group + 1) * kg] += (
                    src[..., group * cg:(group + 1) * cg] @ taps[:, group * kg:(group + 1) * kg])
    nan_where_nonfinite_taps_meet_padding(out, w, g)
    if problem.bias is not None:
        out += np.asarray(problem.bias, dtype=problem.dtype)
    return _in_layout(activate(out, problem.activation), problem.channels_first)


def gather_cells(problem):
    """The (positions, taps x C) matrix of every output position's window cells, channels
    last, zeros where a window reads the padding (so 0 * inf is NaN, as in a zero-padded
    conv): the left operand of the ``im2col`` conv's product with the filters."""
    g = problem.geometry
    x = _channels_last(np.asarray(problem.x), problem.channels_first)
    taps = list(itertools.product(*(range(k) for k in g.kernel)))
    batch, channels = x.shape[0], x.shape[-1]
    cells = np.zeros((batch, *g.out_sizes, len(taps), channels), dtype=problem.dtype)
    for index, offsets in enumerate(taps):
        slices = _tap_slices(g, offsets)
        if slices is not None:
            cells[(slice(None),) + slices[0] + (index,)] = x[(slice(None),) + slices[1]]
    return cells.reshape(-1, len(taps) * channels)


def im2col_bytes(problem):
    """Bytes of :func:`gather_cells`' matrix."""
    g, w = problem.geometry, problem.w  # plain ints: this runs on every conv's dispatch
    positions = problem.x.shape[0] * math.prod(g.out_sizes)
    return positions * math.prod(w.shape[:4]) * problem.x.itemsize


def conv_transpose(problem):
    """Scatter form: input pixel ``i`` adds ``x[i] @ w[offset].T`` at ``i*stride - pad +
    offset*dilation`` of the output (the geometry is that of the forward conv)."""
    g = problem.geometry
    x = _channels_last(np.asarray(problem.x), problem.channels_first)
    w = np.asarray(problem.w)  # (T, R, S, out // groups, in)
    groups = problem.groups
    out_g, in_g = w.shape[3], w.shape[4] // groups
    out = np.zeros((x.shape[0], *g.in_sizes, out_g * groups), dtype=problem.dtype)
    for offsets in itertools.product(*(range(k) for k in g.kernel)):
        slices = _tap_slices(g, offsets)
        if slices is None:
            continue
        src = x[(slice(None),) + slices[0]]
        dst = out[(slice(None),) + slices[1]]
        for group in range(groups):
            dst[..., group * out_g:(group + 1) * out_g] += (
                src[..., group * in_g:(group + 1) * in_g]
                @ w[offsets][:, group * in_g:(group + 1) * in_g].T)
    if problem.bias is not None:
        out += np.asarray(problem.bias, problem.dtype)
    return _in_layout(activate(out, problem.activation), problem.channels_first)


def _pool_axis(x, axis, size_out, k, stride, pad, reduce, fill, count_padding=False):
    """One separable pass of a clipped window along ``axis``: ``reduce`` over each window's
    real cells, starting from ``fill``; also returns each output's count of real cells."""
    n = x.shape[axis]
    shape = list(x.shape)
    shape[axis] = size_out
    acc = np.full(shape, fill, dtype=x.dtype)
    # Only offsets that reach the input matter: a window far larger than the input (ksize up
    # to 2**31 - 1) loops over the input's cells, not the window's.
    first_offset = max(0, pad - (size_out - 1) * stride)
    for j in range(first_offset, min(k, pad + n)):
        first, count, start = _reach(size_out, stride, pad, j, n)
        if count:
            dst = [slice(None)] * x.ndim
            src = [slice(None)] * x.ndim
            dst[axis] = slice(first, first + count)
            src[axis] = slice(start, start + (count - 1) * stride + 1, stride)
            view = acc[tuple(dst)]
            reduce(view, x[tuple(src)], out=view)
    starts = np.arange(size_out) * stride - pad
    if count_padding:  # PyTorch's count_include_pad: the cells inside the padded input
        return acc, np.minimum(starts + k, n + pad) - starts
    counts = np.minimum(starts + k, n) - np.maximum(starts, 0)
    return acc, counts


def pool(problem):
    """Max (TF's CPU semantics: NaN never wins, floor at the dtype's lowest; or PyTorch's with
    ``nan_wins``) or average (divided by the count of real cells, in the data's dtype)
    pooling, one dim at a time."""
    g = problem.geometry
    x = _channels_last(np.asarray(problem.x), problem.channels_first)
    is_max = problem.kind == "max"
    dtype = np.dtype(problem.dtype)
    fill = (-np.inf if problem.nan_wins else np.finfo(dtype).min) if is_max else 0
    reduce = (np.maximum if problem.nan_wins else np.fmax) if is_max else np.add
    counts = np.ones((1, 1, 1), dtype=np.int64)
    out = x.astype(dtype, copy=False)
    for axis in (2, 1, 0):  # width first: the cheapest order for channels-last data
        out, per_axis = _pool_axis(out, axis + 1, g.out_sizes[axis], g.kernel[axis],
                                   g.strides[axis], g.pads[axis][0], reduce, fill,
                                   problem.count_padding)
        counts = counts * per_axis.reshape([-1 if i == axis else 1 for i in range(3)])
    if not is_max:
        out = out / counts[None, ..., None].astype(dtype)
    return _in_layout(out.astype(dtype, copy=False), problem.channels_first)


def global_pool(problem):
    """Max (NaN propagates, as ``tf.reduce_max``) or mean over the spatial dims: (N, C)."""
    x = _channels_last(np.asarray(problem.x), problem.channels_first)
    n, channels = problem.out_shape
    cells = x.reshape(n, -1, channels)
    out = cells.max(axis=1) if problem.kind == "max" else cells.mean(axis=1)
    return np.ascontiguousarray(out, dtype=problem.dtype)


def zero_pad(problem):
    """np.pad with zeros, in the data's layout."""
    pads = [(0, 0)] + [tuple(p) for p in problem.pads]
    pads = pads[:1] + [(0, 0)] + pads[1:] if problem.channels_first else pads + [(0, 0)]
    return np.pad(np.asarray(problem.x), pads)


def _window_cells(starts, sizes, dilation, n):
    """Each window's input cells along one dim, (out, taps), clipped into the input, and
    whether each is a real cell (not padding, not past the window's own size)."""
    starts, sizes = np.asarray(starts, np.int64), np.asarray(sizes, np.int64)
    taps = np.arange(max(int(sizes.max(initial=0)), 1))
    cells = starts[:, None] + taps[None, :] * dilation
    real = (taps[None, :] < sizes[:, None]) & (cells >= 0) & (cells < n)
    return np.clip(cells, 0, max(n - 1, 0)), real


def _spread(table, axis):
    """An (out, taps) table of spatial dim ``axis`` shaped to broadcast over
    (OD, OH, OW, KD, KH, KW)."""
    shape = [1] * 6
    shape[axis], shape[3 + axis] = table.shape
    return table.reshape(shape)


def window_pool(problem):
    """PyTorch-rule pooling over window tables (see ``WindowPoolProblem``) by gathering every
    window's cells: max with NaN winning (the index of the last NaN, else of the first max),
    average and Lp over the real cells with the problem's divisors."""
    x = _channels_last(np.asarray(problem.x), problem.channels_first)
    dtype = np.dtype(problem.dtype)
    _, d_, h_, w_, _ = x.shape
    (cd, rd), (ch, rh), (cw, rw) = (
        _window_cells(problem.starts[a], problem.sizes[a], problem.dilations[a], x.shape[1 + a])
        for a in range(3))
    cells = x[:, cd][:, :, :, ch][:, :, :, :, :, cw]  # (N, OD, KD, OH, KH, OW, KW, C)
    cells = cells.transpose(0, 1, 3, 5, 7, 2, 4, 6)
    cells = cells.reshape(cells.shape[:5] + (-1,))  # (N, OD, OH, OW, C, taps)
    real = _spread(rd, 0) & _spread(rh, 1) & _spread(rw, 2)  # (OD, OH, OW, KD, KH, KW)
    real = real.reshape(real.shape[:3] + (1, -1))  # (OD, OH, OW, 1, taps)
    if problem.kind == "max":
        values = np.where(real, cells, dtype.type(-np.inf))
        out = values.max(axis=-1)
        result = _in_layout(out.astype(dtype, copy=False), problem.channels_first)
        if not problem.return_indices:
            return result
        flat = (_spread(cd, 0) * h_ + _spread(ch, 1)) * w_ + _spread(cw, 2)
        flat = np.broadcast_to(flat.reshape(flat.shape[:3] + (1, -1)), values.shape[1:])
        nan = np.isnan(values)
        taps = values.shape[-1]
        last_nan = taps - 1 - np.argmax(nan[..., ::-1], axis=-1)
        first_real = np.broadcast_to(np.argmax(real, axis=-1), out.shape)
        which = np.where(nan.any(axis=-1), last_nan,
                         np.where(out == -np.inf, first_real, np.argmax(values, axis=-1)))
        index = np.take_along_axis(np.broadcast_to(flat, values.shape), which[..., None],
                                   axis=-1)[..., 0]
        return result, _in_layout(index.astype(np.int64), problem.channels_first)
    if problem.kind == "lp":
        cells = cells ** dtype.type(problem.power)
    sums = np.where(real, cells, dtype.type(0)).sum(axis=-1, dtype=dtype)
    if problem.divisor_override:
        count = np.asarray(problem.divisor_override)
    else:
        dd, dh, dw = (np.asarray(table, np.int64) for table in problem.divisors)
        count = (dd[:, None, None] * dh[None, :, None] * dw[None, None, :])[..., None]
    out = sums / count.astype(dtype)
    if problem.kind == "lp":
        out = (out * dtype.type(problem.lp_scale)) ** dtype.type(1.0 / problem.power)
    return _in_layout(out.astype(dtype, copy=False), problem.channels_first)


def max_unpool(problem):
    """Zeros, then every input value stored at its flat index in its (batch, channel) plane
    (the last of equal indices wins, as PyTorch's CPU loop)."""
    x = np.asarray(problem.x)
    indices = np.asarray(problem.indices, dtype=np.int64)
    n = x.shape[0]
    if problem.channels_first:
        planes, axis = (n, x.shape[1], -1), 2
    else:
        planes, axis = (n, -1, x.shape[-1]), 1
    out = np.zeros(problem.out_shape, dtype=problem.dtype)
    if x.size:
        np.put_along_axis(out.reshape(planes), indices.reshape(planes), x.reshape(planes),
                          axis=axis)
    return out


#: PyTorch's padding modes -> np.pad's.
PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def mode_pad(problem):
    """np.pad in PyTorch's modes (constant with its value, reflect, replicate, circular)."""
    x = np.asarray(problem.x)
    pads = [tuple(pair) for pair in problem.pads]
    if problem.mode == "constant":
        return np.pad(x, pads, constant_values=np.asarray(problem.value, problem.dtype))
    return np.pad(x, pads, mode=PAD_MODES[problem.mode])


#: family -> the NumPy function that computes it.
def window_max(problem):
    """NumPy's :class:`fastconv.problems.WindowMaxProblem` (the first-call tier of
    :mod:`.window_max`): one masked update of every window per kernel tap, in row-major tap
    order, so the first-cell rule and strict ``>`` pick the cells the kernel picks."""
    g = problem.geometry
    dtype = np.dtype(problem.dtype)
    x = _channels_last(np.asarray(problem.x, dtype), problem.channels_first)  # (N, H, W, C)
    if problem.negate:
        x = -x
    n, h, w, c = x.shape
    (pt, pb), (pl, pr) = g.pads
    oh, ow = g.out_sizes
    reach = [(k - 1) * r for k, r in zip(g.kernel, g.dilations)]
    pad_h = max(pb, (oh - 1) * g.strides[0] + reach[0] + 1 - h - pt, 0)
    pad_w = max(pr, (ow - 1) * g.strides[1] + reach[1] + 1 - w - pl, 0)
    xp = np.pad(x, ((0, 0), (pt, pad_h), (pl, pad_w), (0, 0)))
    real = np.pad(np.ones((h, w), bool), ((pt, pad_h), (pl, pad_w)))
    if problem.channels_first:
        flat = (np.arange(c)[:, None, None] * h + np.arange(h)[None, :, None]) * w \
            + np.arange(w)[None, None, :]
        flat = np.moveaxis(flat, 0, -1)  # (H, W, C)
        image_step = c * h * w
    else:
        flat = (np.arange(h)[:, None, None] * w + np.arange(w)[None, :, None]) * c \
            + np.arange(c)[None, None, :]
        image_step = h * w * c
    flat = np.pad(flat, ((pt, pad_h), (pl, pad_w), (0, 0)), constant_values=-1)
    out = np.full((n, oh, ow, c), np.finfo(dtype).min, dtype)
    idx = np.full((n, oh, ow, c), -1, np.int64)
    found = np.zeros((oh, ow), bool)
    rows = np.arange(oh) * g.strides[0]
    cols = np.arange(ow) * g.strides[1]
    for i in range(g.kernel[0]):
        for j in range(g.kernel[1]):
            r, q = rows + i * g.dilations[0], cols + j * g.dilations[1]
            v = xp[:, r[:, None], q[None, :], :]
            valid = real[r[:, None], q[None, :]]
            with np.errstate(invalid="ignore"):
                if problem.w is not None:
                    v = v + np.asarray(problem.w, dtype)[i, j]
                take = v > out
            if problem.first_wins:
                take |= (valid & ~found)[None, :, :, None]
            take &= valid[None, :, :, None]
            out = np.where(take, v, out)
            idx = np.where(take, flat[r[:, None], q[None, :]][None], idx)
            found |= valid
    if problem.include_batch:
        idx = np.where(idx >= 0, idx + (np.arange(n) * image_step)[:, None, None, None], idx)
    out = _in_layout(-out if problem.negate else out, problem.channels_first)
    if not problem.with_indices:
        return out
    return out, _in_layout(idx, problem.channels_first).astype(problem.index_dtype)


BY_FAMILY = {"window_max": window_max, "conv": conv, "conv_transpose": conv_transpose, "max_pool": pool, "avg_pool": pool,
             "global_pool": global_pool, "zero_pad": zero_pad, "window_pool": window_pool,
             "max_unpool": max_unpool, "pad": mode_pad}
