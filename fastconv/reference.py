"""An independent NumPy oracle for every op: obviously correct, slow, and sharing nothing.

It imports nothing from fastconv: its argument forms, its SAME rule and its window view are
written here again, so a bug in fastconv's shapes, validation, dispatch or kernels cannot hide
in the oracle too (JAX's ``lax_reference.py`` and stumpy's ``tests/naive.py`` are the models).
Convolutions are computed in float64 over a zero-padded copy (``np.pad``) viewed as windows
(``sliding_window_view``) and rounded to the input's dtype at the end; averages add their cells
in the data's dtype, in window order, as TF does (so they overflow where TF's do). TensorFlow's
CPU result stays the definition: ``tests/test_reference.py`` checks this oracle against TF and
the golden corpus; the rest of the suite checks fastconv against this oracle.

Two layers: functions with fastconv's public signatures (``conv2d(input, filters, strides,
padding, data_format="NHWC", dilations=None, *, bias=None, activation=None)``, ...), and the
core they call, on channels-last arrays with normalised arguments (:func:`conv`,
:func:`transposed_conv`, :func:`pool`, :func:`global_pool`, :func:`zero_pad`).

Examples
--------
>>> import numpy as np
>>> from fastconv import reference
>>> x = np.arange(16.0).reshape(1, 4, 4, 1)
>>> reference.max_pool2d(x, 2, 2, "VALID")[0, :, :, 0]
array([[ 5.,  7.],
       [13., 15.]])
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

_CHANNELS_FIRST = {"NCW", "NCHW", "NCDHW", "channels_first"}


# ----------------------------------------------------------------------------- arguments

def _check_float(array, name):
    if array.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got {array.dtype}")


def _spatial_values(value, n, channels_first, default=None):
    """An int, 1 value, n values or TF's n + 2 values (1 on batch and channels) -> n ints."""
    if value is None:
        value = default
    values = [int(v) for v in np.atleast_1d(np.asarray(value)).ravel()]
    if len(values) == 1:
        return (values[0],) * n
    if len(values) == n + 2:
        return tuple(values[2:] if channels_first else values[1:-1])
    return tuple(values)


def _pads(padding, in_sizes, kernel, strides, dilations, channels_first):
    """(before, after) per spatial dim: TF's SAME rule (odd cell after), VALID, or pairs."""
    n = len(in_sizes)
    if isinstance(padding, str):
        if padding.upper() == "VALID":
            return [(0, 0)] * n
        pads = []
        for size, k, s, d in zip(in_sizes, kernel, strides, dilations):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        return pads
    pairs = [tuple(int(v) for v in pair) for pair in np.asarray(padding).tolist()]
    if len(pairs) == n + 2:
        pairs = pairs[2:] if channels_first else pairs[1:-1]
    return pairs


def _to_last(x, channels_first):
    return np.moveaxis(x, 1, -1) if channels_first else x


def _from_last(y, channels_first):
    return np.ascontiguousarray(np.moveaxis(y, -1, 1) if channels_first else y)


def _activate(values, activation, alpha=None):
    """``activation`` of float64 ``values``, written from the definitions (tf.nn and Keras),
    not from fastconv's kernels."""
    if callable(activation) and not isinstance(activation, str):
        return np.asarray(activation(values))
    activation = activation.lower() if isinstance(activation, str) else activation
    if activation in (None, "linear"):
        return values
    sigmoid = lambda v: 0.5 * (1 + np.tanh(0.5 * v))  # noqa: E731  (no overflow warning)
    relu6 = lambda v: np.clip(v, 0, 6)  # noqa: E731
    if activation in ("silu", "swish"):
        return values * sigmoid(values)
    # tf.nn.gelu's constants 1/sqrt(2) and 0.044715 pass through float32 (its
    # math_ops.cast of a Python float), in float64 too.
    if activation == "gelu":
        erfc = np.vectorize(math.erfc, otypes=[np.float64])
        return values * erfc(-values * float(np.float32(1 / math.sqrt(2)))) / 2
    if activation == "gelu_tanh":
        return 0.5 * values * (1 + np.tanh(math.sqrt(2 / math.pi) * (
            values + float(np.float32(0.044715)) * values ** 3)))
    if activation == "leaky_relu":
        slope = float(np.float32(0.2 if alpha is None else alpha))  # TF's float32 attr
        return np.where(values > 0, values, slope * values)
    if activation == "elu":
        return np.where(values > 0, values, np.expm1(np.minimum(values, 0)))
    if activation in ("hard_swish", "hard_silu"):
        return values * relu6(values + 3) / 6
    if activation == "hard_sigmoid":
        return relu6(values + 3) / 6
    if activation == "relu":
        return np.where(values < 0, 0, values)  # NaN passes through, as in tf.nn.relu
    if activation == "relu6":
        return np.where(values < 0, 0, np.where(values > 6, 6, values))
    if activation == "sigmoid":
        with np.errstate(over="ignore"):
            return 1 / (1 + np.exp(-values))
    if activation == "tanh":
        return np.tanh(values)
    raise ValueError(f"unknown activation {activation!r}")


def _windows(xp, kernel, strides, dilations):
    """(N, *out, C, *kernel) view of the windows of padded channels-last ``xp``."""
    n = len(kernel)
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    for axis, (span, size) in enumerate(zip(spans, xp.shape[1:1 + n])):
        if span > size:
            raise ValueError(f"Negative dimension size: a window of effective size {span} does "
                             f"not fit spatial dimension {axis} of padded size {size}")
    view = sliding_window_view(xp, spans, axis=tuple(range(1, n + 1)))
    return view[(slice(None),) + tuple(slice(None, None, s) for s in strides) + (slice(None),)
                + tuple(slice(None, None, d) for d in dilations)]


# ----------------------------------------------------------------------------- the core

def conv(x, w, strides, pads, dilations, bias=None, activation=None, alpha=None):
    """Grouped convolution of channels-last ``x`` with (*kernel, C // groups, K) ``w``."""
    n = x.ndim - 2
    xp = np.pad(x.astype(np.float64), [(0, 0)] + list(pads) + [(0, 0)])
    win = _windows(xp, w.shape[:n], strides, dilations)  # (N, *out, C, *kernel)
    group_in, out_channels = w.shape[-2], w.shape[-1]
    groups = x.shape[-1] // group_in
    win = win.reshape(win.shape[:n + 1] + (groups, group_in) + win.shape[n + 2:])
    wg = w.astype(np.float64).reshape(w.shape[:n] + (group_in, groups, out_channels // groups))
    letters = "abc"[:n]
    y = np.einsum(f"n{letters}gi{letters.upper()},{letters.upper()}igk->n{letters}gk", win, wg)
    y = y.reshape(y.shape[:n + 1] + (out_channels,))
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    return _activate(y, activation, alpha).astype(x.dtype)


def transposed_conv(x, w, out_sizes, strides, pads, dilations, groups=1, bias=None,
                    activation=None, alpha=None):
    """The gradient of :func:`conv` with respect to its input, for channels-last ``x``: every
    input pixel adds ``x @ w[offset].T`` at ``position * stride - pad + offset * dilation``;
    ``w`` is (*kernel, out_channels / groups, in_channels), group ``g``'s input channels
    filling its block of output channels; then the bias and the activation."""
    in_g = x.shape[-1] // groups
    y = np.concatenate([_transposed_group(x[..., g * in_g:(g + 1) * in_g],
                                          w[..., g * in_g:(g + 1) * in_g], out_sizes, strides,
                                          pads, dilations) for g in range(groups)], axis=-1)
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    return _activate(y, activation, alpha).astype(x.dtype)


def _transposed_group(x, w, out_sizes, strides, pads, dilations):
    n = x.ndim - 2
    kernel = w.shape[:n]
    before = [p[0] for p in pads]
    full = [max((size - 1) * s + (k - 1) * d + 1, b + out)
            for size, s, k, d, b, out in zip(x.shape[1:-1], strides, kernel, dilations, before,
                                             out_sizes)]
    y = np.zeros((x.shape[0], *full, w.shape[-2]))
    xw = x.astype(np.float64)
    for offset in itertools.product(*(range(k) for k in kernel)):
        target = tuple(slice(o * d, o * d + (size - 1) * s + 1, s) for o, d, s, size in
                       zip(offset, dilations, strides, x.shape[1:-1]))
        y[(slice(None),) + target] += xw @ w[offset].astype(np.float64).T
    crop = tuple(slice(b, b + out) for b, out in zip(before, out_sizes))
    return y[(slice(None),) + crop]


def pool_windows(kind, x, ksize, strides, pads):
    """TF's CPU pooling of channels-last ``x``: max starts from the dtype's lowest finite value
    and a NaN never wins; average adds each window's real (unpadded) cells in the data's dtype,
    in row-major window order, and divides by their count in that dtype (TF's rule: a float32
    window of 4 x 3e38 overflows to inf, and B + B - B - B is inf, not 0)."""
    n = x.ndim - 2
    width = [(0, 0)] + list(pads) + [(0, 0)]
    axes = tuple(range(-n, 0))
    ones = (1,) * n
    if kind == "max":
        cells = x.astype(np.float64)
        padded = np.pad(np.where(np.isnan(cells), -np.inf, cells), width,
                        constant_values=-np.inf)
        y = _windows(padded, ksize, strides, ones).max(axis=axes)
        return np.maximum(y, np.finfo(x.dtype).min).astype(x.dtype)
    windows = _windows(np.pad(x, width), ksize, strides, ones)
    sums = np.zeros(windows.shape[:-n], dtype=x.dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        for offset in itertools.product(*(range(k) for k in ksize)):
            sums += windows[(Ellipsis,) + offset]  # padding adds zeros
    counts = _windows(np.pad(np.ones(x.shape[:-1] + (1,)), width), ksize, strides, ones)
    with np.errstate(invalid="ignore"):
        return sums / counts.sum(axis=axes).astype(x.dtype)


def global_pool(kind, x):
    """Max (NaN propagates, as ``tf.reduce_max``) or mean over the spatial dims: (N, C); the
    mean adds the cells in the data's dtype, as Keras does, then divides by their count."""
    cells = x.reshape(x.shape[0], -1, x.shape[-1])
    if kind == "max":
        return cells.astype(np.float64).max(axis=1).astype(x.dtype)
    total = np.zeros((cells.shape[0], cells.shape[2]), dtype=x.dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        for position in range(cells.shape[1]):
            total += cells[:, position]
        return total / x.dtype.type(cells.shape[1])


def zero_pad(x, pads):
    """Zeros around the spatial dims of channels-last ``x``."""
    return np.pad(x, [(0, 0)] + [tuple(p) for p in pads] + [(0, 0)])


# ----------------------------------------------------------------------------- public signatures

def _conv_nd(n, input, filters, strides, padding, data_format, dilations, bias, activation,
             alpha=None):
    first = data_format in _CHANNELS_FIRST
    x = np.asarray(input)
    _check_float(x, "input")
    w = np.asarray(filters, dtype=x.dtype)
    xl = _to_last(x, first)
    strides = _spatial_values(strides, n, first)
    dilations = _spatial_values(dilations, n, first, default=1)
    pads = _pads(padding, xl.shape[1:-1], w.shape[:n], strides, dilations, first)
    return _from_last(conv(xl, w, strides, pads, dilations, bias, activation, alpha), first)


def conv1d(input, filters, stride, padding, data_format="NWC", dilations=None, *, bias=None,
           activation=None, alpha=None, device=None):
    """Oracle for :func:`fastconv.conv1d` (same arguments)."""
    return _conv_nd(1, input, filters, stride, padding, data_format, dilations, bias, activation,
                    alpha)


def conv2d(input, filters, strides, padding, data_format="NHWC", dilations=None, *, bias=None,
           activation=None, alpha=None, device=None):
    """Oracle for :func:`fastconv.conv2d` (same arguments)."""
    return _conv_nd(2, input, filters, strides, padding, data_format, dilations, bias,
                    activation, alpha)


def conv3d(input, filters, strides, padding, data_format="NDHWC", dilations=None, *, bias=None,
           activation=None, alpha=None, device=None):
    """Oracle for :func:`fastconv.conv3d` (same arguments)."""
    return _conv_nd(3, input, filters, strides, padding, data_format, dilations, bias,
                    activation, alpha)


def convolution(input, filters, strides=None, padding="VALID", data_format=None, dilations=None,
                *, bias=None, activation=None, alpha=None, device=None):
    """Oracle for :func:`fastconv.convolution` (any spatial rank; the input's rank decides)."""
    return _conv_nd(np.ndim(input) - 2, input, filters, 1 if strides is None else strides,
                    padding, data_format, dilations, bias, activation, alpha)


def depthwise_conv2d(input, filter, strides, padding, data_format="NHWC", dilations=None, *,
                     bias=None, activation=None, alpha=None, device=None):
    """Oracle for :func:`fastconv.depthwise_conv2d`: output channel ``c * M + m`` is input
    channel ``c`` convolved with ``filter[..., c, m]``; then the bias and the activation."""
    w = np.asarray(filter)
    grouped = w.reshape(w.shape[0], w.shape[1], 1, w.shape[2] * w.shape[3])
    return conv2d(input, grouped, strides, padding, data_format, dilations, bias=bias,
                  activation=activation, alpha=alpha)


def separable_conv2d(input, depthwise_filter, pointwise_filter, strides, padding,
                     data_format=None, dilations=None, *, bias=None, activation=None, alpha=None,
                     device=None):
    """Oracle for :func:`fastconv.separable_conv2d`: the depthwise conv (rounded to the input's
    dtype), then the 1x1 conv with the bias and the activation."""
    fmt = "NHWC" if data_format is None else data_format
    middle = depthwise_conv2d(input, depthwise_filter, strides, padding, fmt, dilations)
    return conv2d(middle, pointwise_filter, 1, "VALID", fmt, bias=bias, activation=activation,
                  alpha=alpha)


def _conv_transpose_nd(n, input, filters, output_shape, strides, padding, data_format,
                       dilations, bias=None, activation=None, alpha=None):
    first = data_format is not None and data_format in _CHANNELS_FIRST
    x = np.asarray(input)
    _check_float(x, "input")
    w = np.asarray(filters, dtype=x.dtype)
    shape = [int(v) for v in np.asarray(output_shape).ravel()]
    out_sizes = tuple(shape if len(shape) == n else shape[2:] if first else shape[1:n + 1])
    strides = _spatial_values(strides, n, first)
    dilations = _spatial_values(dilations, n, first, default=1)
    pads = _pads(padding, out_sizes, w.shape[:n], strides, dilations, first)
    out_channels = shape[1 if first else -1] if len(shape) == n + 2 else w.shape[-2]
    groups = out_channels // w.shape[-2]
    return _from_last(transposed_conv(_to_last(x, first), w, out_sizes, strides, pads, dilations,
                                      groups, bias, activation, alpha), first)


def conv1d_transpose(input, filters, output_shape, strides, padding="SAME", data_format="NWC",
                     dilations=None, *, bias=None,
                     activation=None, alpha=None, device=None):
    """Oracle for :func:`fastconv.conv1d_transpose` (same arguments)."""
    return _conv_transpose_nd(1, input, filters, output_shape, strides, padding, data_format,
                              dilations, bias, activation, alpha)


def conv2d_transpose(input, filters, output_shape, strides, padding="SAME", data_format="NHWC",
                     dilations=None, *, bias=None,
                     activation=None, alpha=None, device=None):
    """Oracle for :func:`fastconv.conv2d_transpose` (same arguments)."""
    return _conv_transpose_nd(2, input, filters, output_shape, strides, padding, data_format,
                              dilations, bias, activation, alpha)


def conv3d_transpose(input, filters, output_shape, strides, padding="SAME",
                     data_format="NDHWC", dilations=None, *, bias=None,
                     activation=None, alpha=None, device=None):
    """Oracle for :func:`fastconv.conv3d_transpose` (same arguments)."""
    return _conv_transpose_nd(3, input, filters, output_shape, strides, padding, data_format,
                              dilations, bias, activation, alpha)


def conv_transpose(input, filters, output_shape, strides, padding="SAME", data_format=None,
                   dilations=None, *, bias=None,
                   activation=None, alpha=None, device=None):
    """Oracle for :func:`fastconv.conv_transpose` (the output shape's length decides)."""
    n = len(np.asarray(output_shape).ravel()) - 2
    return _conv_transpose_nd(n, input, filters, output_shape, strides, padding, data_format,
                              dilations, bias, activation, alpha)


def atrous_conv2d(value, filters, rate, padding, *, bias=None, activation=None, alpha=None, device=None):
    """Oracle for :func:`fastconv.atrous_conv2d`: conv2d, stride 1, dilation ``rate``."""
    return conv2d(value, filters, 1, padding, "NHWC", rate, bias=bias, activation=activation,
                  alpha=alpha)


def atrous_conv2d_transpose(value, filters, output_shape, rate, padding, *, bias=None,
                            activation=None, alpha=None, device=None):
    """Oracle for :func:`fastconv.atrous_conv2d_transpose`: conv2d_transpose, stride 1,
    dilation ``rate``."""
    return conv2d_transpose(value, filters, output_shape, 1, padding, "NHWC", rate, bias=bias,
                            activation=activation, alpha=alpha)


def _pool_nd(kind, n, input, ksize, strides, padding, data_format):
    first = data_format in _CHANNELS_FIRST
    x = np.asarray(input)
    _check_float(x, "input")
    xl = _to_last(x, first)
    ksize = _spatial_values(ksize, n, first)
    strides = _spatial_values(strides, n, first)
    pads = _pads(padding, xl.shape[1:-1], ksize, strides, (1,) * n, first)
    return _from_last(pool_windows(kind, xl, ksize, strides, pads), first)


def _make_pool(kind, n, default_format):
    def pool_op(input, ksize, strides, padding, data_format=default_format, *, device=None):
        return _pool_nd(kind, n, input, ksize, strides, padding, data_format)

    pool_op.__name__ = pool_op.__qualname__ = f"{kind}_pool{n}d"
    pool_op.__doc__ = f"Oracle for :func:`fastconv.{kind}_pool{n}d` (same arguments)."
    return pool_op


max_pool1d, max_pool2d, max_pool3d = (_make_pool("max", n, f) for n, f in
                                      ((1, "NWC"), (2, "NHWC"), (3, "NDHWC")))
avg_pool1d, avg_pool2d, avg_pool3d = (_make_pool("avg", n, f) for n, f in
                                      ((1, "NWC"), (2, "NHWC"), (3, "NDHWC")))


def max_pool(input, ksize, strides, padding, data_format=None, *, device=None):
    """Oracle for :func:`fastconv.max_pool` (any spatial rank; the input's rank decides)."""
    return _pool_nd("max", np.ndim(input) - 2, input, ksize, strides, padding, data_format)


def avg_pool(input, ksize, strides, padding, data_format=None, *, device=None):
    """Oracle for :func:`fastconv.avg_pool` (any spatial rank; the input's rank decides)."""
    return _pool_nd("avg", np.ndim(input) - 2, input, ksize, strides, padding, data_format)


def pool(input, window_shape, pooling_type, strides=None, padding="VALID", data_format=None,
         dilations=None, *, device=None):
    """Oracle for :func:`fastconv.pool` (``tf.nn.pool``): undilated windows as
    :func:`max_pool`/:func:`avg_pool`; dilated (VALID, stride 1) windows read every cell
    ``dilations`` apart, the max TF's (from the lowest value, NaN never wins), the average
    over the window's cells."""
    n = np.ndim(input) - 2
    kind = pooling_type.lower()
    rates = (1,) * n if dilations is None else tuple(int(r) for r in np.ravel(dilations))
    steps = (1,) * n if strides is None else tuple(int(s) for s in np.ravel(strides))
    if max(rates) == 1:
        return _pool_nd(kind, n, input, list(window_shape), list(steps), padding, data_format)
    first = data_format in _CHANNELS_FIRST
    x = np.asarray(input)
    _check_float(x, "input")
    win = _windows(_to_last(x, first), tuple(window_shape), (1,) * n, rates)
    cells = win.reshape(win.shape[:n + 2] + (-1,))  # (N, *out, C, cells)
    if kind == "max":
        with np.errstate(invalid="ignore"):
            y = np.maximum(np.where(np.isnan(cells), -np.inf, cells).max(axis=-1),
                           np.finfo(x.dtype).min)
    else:
        y = cells.astype(np.float64).mean(axis=-1)
    return _from_last(y.astype(x.dtype), first)


def _global(kind, input, data_format, keepdims):
    first = data_format in _CHANNELS_FIRST
    x = np.asarray(input)
    _check_float(x, "input")
    y = global_pool(kind, _to_last(x, first))
    if keepdims:
        return y[:, :, None, None] if first else y[:, None, None, :]
    return y


def global_max_pool2d(input, data_format="NHWC", keepdims=False, *, device=None):
    """Oracle for :func:`fastconv.global_max_pool2d` (same arguments)."""
    return _global("max", input, data_format, keepdims)


def global_avg_pool2d(input, data_format="NHWC", keepdims=False, *, device=None):
    """Oracle for :func:`fastconv.global_avg_pool2d` (same arguments)."""
    return _global("avg", input, data_format, keepdims)


def zero_pad2d(input, padding=1, data_format="NHWC", *, device=None):
    """Oracle for :func:`fastconv.zero_pad2d` (Keras' padding forms)."""
    first = data_format in _CHANNELS_FIRST
    x = np.asarray(input)
    if np.ndim(padding) == 0:
        pads = [(int(padding),) * 2] * 2
    else:
        pads = [(int(p),) * 2 if np.ndim(p) == 0 else tuple(int(v) for v in p) for p in padding]
    return _from_last(zero_pad(_to_last(x, first), pads), first)


# ----------------------------------------------------------------------------- gradients
#
# The gradients of the core ops, written from their definitions: a conv's input gradient adds
# each output's gradient times the filter tap back onto the cell the tap read; its filter
# gradient sums input cell times output gradient; a pool's gradient goes to the cell(s) TF's
# CPU kernels pick (MaxPoolGrad: the first real cell of the window in row-major order unless a
# later one is strictly greater; MaxPool3DGrad: every cell equal to the output) or, for the
# average, to every real cell divided by their count. All in float64, rounded at the end.

def conv_grads(x, w, dy, strides, pads, dilations):
    """(input gradient, filter gradient) of :func:`conv` (no bias or activation) for
    channels-last ``x`` and output gradient ``dy``."""
    n = x.ndim - 2
    kernel = w.shape[:n]
    group_in, out_channels = w.shape[-2], w.shape[-1]
    groups = x.shape[-1] // group_in
    group_out = out_channels // groups
    xp = np.pad(x.astype(np.float64), [(0, 0)] + list(pads) + [(0, 0)])
    dxp = np.zeros_like(xp)
    dw = np.zeros(w.shape)
    g = dy.astype(np.float64)
    wf = w.astype(np.float64)
    for offset in itertools.product(*(range(k) for k in kernel)):
        cells = (slice(None),) + tuple(
            slice(o * d, o * d + (size - 1) * s + 1, s)
            for o, d, s, size in zip(offset, dilations, strides, dy.shape[1:-1]))
        for group in range(groups):
            ins = slice(group * group_in, (group + 1) * group_in)
            outs = slice(group * group_out, (group + 1) * group_out)
            tap = wf[offset][:, outs]  # (group_in, group_out)
            dxp[cells + (ins,)] += g[..., outs] @ tap.T
            axes = list(range(n + 1))  # batch and positions
            dw[offset][:, outs] += np.tensordot(xp[cells + (ins,)], g[..., outs], (axes, axes))
    crop = (slice(None),) + tuple(slice(b, b + size) for (b, _), size in
                                  zip(pads, x.shape[1:-1]))
    return dxp[crop].astype(x.dtype), dw.astype(x.dtype)


def pool_grad(kind, x, dy, ksize, strides, pads, ties="first", y=None):
    """The input gradient of :func:`pool` for channels-last ``x`` (a shape's worth of zeros
    will do for ``"avg"``), output gradient ``dy`` and, for ``ties="all"``, forward output
    ``y``."""
    dx = np.zeros(x.shape)
    g = dy.astype(np.float64)
    for out in itertools.product(*(range(size) for size in dy.shape[1:-1])):
        ranges = [range(max(o * s - p, 0), min(o * s - p + k, size)) for o, s, (p, _), k, size
                  in zip(out, strides, pads, ksize, x.shape[1:-1])]
        cells = list(itertools.product(*ranges))  # row-major
        grad = g[(slice(None),) + out]  # (N, C)
        if kind == "avg":
            for cell in cells:
                dx[(slice(None),) + cell] += grad / len(cells)
        elif ties == "all":
            for cell in cells:
                hit = x[(slice(None),) + cell] == y[(slice(None),) + out]
                dx[(slice(None),) + cell] += np.where(hit, grad, 0)
        else:
            best = x[(slice(None),) + cells[0]].copy()
            chosen = np.zeros(best.shape, int)
            for index, cell in enumerate(cells[1:], 1):
                value = x[(slice(None),) + cell]
                greater = best < value
                best = np.where(greater, value, best)
                chosen = np.where(greater, index, chosen)
            for index, cell in enumerate(cells):
                dx[(slice(None),) + cell] += np.where(chosen == index, grad, 0)
    return dx.astype(dy.dtype)


def _conv_backprop(n, input_or_sizes, filters, out_backprop, strides, padding, data_format,
                   dilations, want):
    first = data_format in _CHANNELS_FIRST
    dy = np.asarray(out_backprop)
    _check_float(dy, "out_backprop")
    dyl = _to_last(dy, first)
    if want == "input":
        w = np.asarray(filters, dtype=dy.dtype)
        sizes = [int(v) for v in np.asarray(input_or_sizes).ravel()]
        shape = (sizes[0], *sizes[2:], sizes[1]) if first else tuple(sizes)
        xl = np.zeros(shape, dy.dtype)
    else:
        xl = _to_last(np.asarray(input_or_sizes, dtype=dy.dtype), first)
        w = np.zeros([int(v) for v in np.asarray(filters).ravel()], dy.dtype)
    strides = _spatial_values(strides, n, first)
    dilations = _spatial_values(dilations, n, first, default=1)
    pads = _pads(padding, xl.shape[1:-1], w.shape[:n], strides, dilations, first)
    dx, dw = conv_grads(xl, w, dyl, strides, pads, dilations)
    return _from_last(dx, first) if want == "input" else dw


def _make_conv_backprop(n, want, default_format):
    def backprop(input_or_sizes, filters, out_backprop, strides, padding,
                 data_format=default_format, dilations=None, *, device=None):
        return _conv_backprop(n, input_or_sizes, filters, out_backprop, strides, padding,
                              data_format, dilations, want)

    backprop.__name__ = backprop.__qualname__ = f"conv{n}d_backprop_{want}"
    backprop.__doc__ = f"Oracle for :func:`fastconv.conv{n}d_backprop_{want}`."
    return backprop


conv1d_backprop_input, conv2d_backprop_input, conv3d_backprop_input = (
    _make_conv_backprop(n, "input", f) for n, f in ((1, "NWC"), (2, "NHWC"), (3, "NDHWC")))
conv1d_backprop_filter, conv2d_backprop_filter, conv3d_backprop_filter = (
    _make_conv_backprop(n, "filter", f) for n, f in ((1, "NWC"), (2, "NHWC"), (3, "NDHWC")))


def depthwise_conv2d_backprop_input(input_sizes, filter, out_backprop, strides, padding,
                                    data_format="NHWC", dilations=None, *, device=None):
    """Oracle for :func:`fastconv.depthwise_conv2d_backprop_input`."""
    w = np.asarray(filter)
    grouped = w.reshape(w.shape[0], w.shape[1], 1, -1)
    return conv2d_backprop_input(input_sizes, grouped, out_backprop, strides, padding,
                                 data_format, dilations)


def depthwise_conv2d_backprop_filter(input, filter_sizes, out_backprop, strides, padding,
                                     data_format="NHWC", dilations=None, *, device=None):
    """Oracle for :func:`fastconv.depthwise_conv2d_backprop_filter`."""
    kh, kw, channels, multiplier = [int(v) for v in np.asarray(filter_sizes).ravel()]
    dw = conv2d_backprop_filter(input, (kh, kw, 1, channels * multiplier), out_backprop,
                                strides, padding, data_format, dilations)
    return dw.reshape(kh, kw, channels, multiplier)


def _pool_backprop(kind, n, orig_input, orig_output, grad, ksize, strides, padding,
                   data_format):
    first = data_format in _CHANNELS_FIRST
    dy = np.asarray(grad)
    _check_float(dy, "grad")
    if kind == "avg":
        sizes = [int(v) for v in np.asarray(orig_input).ravel()]
        xl = np.zeros((sizes[0], *sizes[2:], sizes[1]) if first else tuple(sizes), dy.dtype)
    else:
        xl = _to_last(np.asarray(orig_input), first)
    ksize = _spatial_values(ksize, n, first)
    strides = _spatial_values(strides, n, first)
    pads = _pads(padding, xl.shape[1:-1], ksize, strides, (1,) * n, first)
    ties = "all" if n == 3 else "first"
    y = None if orig_output is None else _to_last(np.asarray(orig_output), first)
    return _from_last(pool_grad(kind, xl, _to_last(dy, first), ksize, strides, pads, ties, y),
                      first)


def _make_pool_grad(kind, n, default_format):
    if kind == "max":
        def pool_grad_op(orig_input, orig_output, grad, ksize, strides, padding,
                         data_format=default_format, *, device=None):
            return _pool_backprop(kind, n, orig_input, orig_output, grad, ksize, strides,
                                  padding, data_format)
    else:
        def pool_grad_op(orig_input_shape, grad, ksize, strides, padding,
                         data_format=default_format, *, device=None):
            return _pool_backprop(kind, n, orig_input_shape, None, grad, ksize, strides,
                                  padding, data_format)
    pool_grad_op.__name__ = pool_grad_op.__qualname__ = f"{kind}_pool{n}d_grad"
    pool_grad_op.__doc__ = f"Oracle for :func:`fastconv.{kind}_pool{n}d_grad`."
    return pool_grad_op


max_pool1d_grad, max_pool2d_grad, max_pool3d_grad = (
    _make_pool_grad("max", n, f) for n, f in ((1, "NWC"), (2, "NHWC"), (3, "NDHWC")))
avg_pool1d_grad, avg_pool2d_grad, avg_pool3d_grad = (
    _make_pool_grad("avg", n, f) for n, f in ((1, "NWC"), (2, "NHWC"), (3, "NDHWC")))


# ----------------------------------------------------------------------------- window maxima

def _window_cells(pads, kernel, strides, dilations, in_sizes, oh, ow):
    """The real input cells (h, w) of output (oh, ow)'s window, in row-major window order."""
    cells = []
    for i in range(kernel[0]):
        h = oh * strides[0] - pads[0][0] + i * dilations[0]
        for j in range(kernel[1]):
            w = ow * strides[1] - pads[1][0] + j * dilations[1]
            if 0 <= h < in_sizes[0] and 0 <= w < in_sizes[1]:
                cells.append((i, j, h, w))
    return cells


def _out_size(size, k, stride, dilation, padding):
    span = (k - 1) * dilation + 1
    return -(-size // stride) if padding.upper() == "SAME" else (size - span) // stride + 1


def _window_setup(x, ksize, strides, dilations, padding, first):
    xl = _to_last(np.asarray(x), first)
    kernel = tuple(int(k) for k in ksize)
    out = tuple(_out_size(s, k, st, d, padding) for s, k, st, d in
                zip(xl.shape[1:3], kernel, strides, dilations))
    pads = _pads(padding, xl.shape[1:3], kernel, strides, dilations, False)
    return xl, kernel, out, pads


def max_pool_with_argmax(input, ksize, strides, padding, data_format="NHWC",
                         output_dtype=np.int64, include_batch_in_index=False, *, device=None):
    """Oracle for :func:`fastconv.max_pool_with_argmax`: per window, its first real cell in
    row-major order, replaced by each later cell strictly greater (TF's MaxPoolWithArgmax)."""
    first = data_format in _CHANNELS_FIRST
    _check_float(np.asarray(input), "input")
    ksize = _spatial_values(ksize, 2, first)
    strides = _spatial_values(strides, 2, first)
    xl, kernel, (oh_, ow_), pads = _window_setup(input, ksize, strides, (1, 1), padding, first)
    n_, h_, w_, c_ = xl.shape
    out = np.empty((n_, oh_, ow_, c_), xl.dtype)
    arg = np.empty((n_, oh_, ow_, c_), np.int64)
    for n, oh, ow, c in itertools.product(range(n_), range(oh_), range(ow_), range(c_)):
        best = None
        for _, _, h, w in _window_cells(pads, kernel, strides, (1, 1), (h_, w_), oh, ow):
            if best is None or xl[n, h, w, c] > best[0]:
                where = ((c * h_ + h) * w_ + w) if first else ((h * w_ + w) * c_ + c)
                best = (xl[n, h, w, c], where)
        image = (n * h_ * w_ * c_) if include_batch_in_index else 0
        out[n, oh, ow, c], arg[n, oh, ow, c] = best[0], best[1] + image
    dtype = np.dtype(getattr(output_dtype, "as_numpy_dtype", output_dtype))
    return _from_last(out, first), _from_last(arg, first).astype(dtype)


def _dilation(x, filters, strides, padding, data_format, dilations, erode):
    first = data_format in _CHANNELS_FIRST
    _check_float(np.asarray(x), "input")
    strides = _spatial_values(strides, 2, first)
    dilations = _spatial_values(dilations, 2, first)
    f = np.asarray(filters, np.asarray(x).dtype)
    xl, kernel, (oh_, ow_), pads = _window_setup(x, f.shape[:2], strides, dilations, padding,
                                                 first)
    if erode:
        xl, f = -xl, f[::-1, ::-1]
    n_, h_, w_, c_ = xl.shape
    lowest = np.finfo(xl.dtype).min
    out = np.full((n_, oh_, ow_, c_), lowest, xl.dtype)
    for n, oh, ow, c in itertools.product(range(n_), range(oh_), range(ow_), range(c_)):
        for i, j, h, w in _window_cells(pads, kernel, strides, dilations, (h_, w_), oh, ow):
            with np.errstate(invalid="ignore"):  # inf + -inf: NaN, which never wins
                total = xl[n, h, w, c] + f[i, j, c]  # in the data's dtype, as TF adds
            if total > out[n, oh, ow, c]:  # NaN never wins
                out[n, oh, ow, c] = total
    return _from_last(-out if erode else out, first)


def dilation2d(input, filters, strides, padding, data_format, dilations, *, device=None):
    """Oracle for :func:`fastconv.dilation2d`: the maximum of ``input + filters`` over each
    window's real cells, starting from the dtype's lowest value (TF's Dilation2D)."""
    return _dilation(input, filters, strides, padding, data_format, dilations, False)


def erosion2d(value, filters, strides, padding, data_format, dilations, *, device=None):
    """Oracle for :func:`fastconv.erosion2d`: ``-dilation2d(-value, reversed filters)``."""
    return _dilation(value, filters, strides, padding, data_format, dilations, True)
