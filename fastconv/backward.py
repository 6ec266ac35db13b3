"""``fastconv.vjp``: run an op, get its output and a function computing its gradients.

Each op's backward is one entry of :data:`RULES` (op name -> rule), looked up through the op
table (``fastconv.ops.Op.vjp``); ``tests/test_gradients.py`` checks that every op has one. A
rule binds the call's arguments to the op's signature, runs the forward op once, keeps what
the backward pass reads (the input, the filters, the output: the fused activation's
derivative and the max pooling rule read the output, not a recomputed pre-activation; for
silu, gelu and hard_swish, whose derivative the output does not give, the saved
pre-activation) and
returns ``(output, backward)``.

The gradients equal ``tf.GradientTape().gradient`` of the same TF computation (with
``tf.nn.bias_add`` and the activation for the fused forms): the conv and pooling parts run
the named kernels of :mod:`fastconv.gradients`; the element-wise parts run in NumPy on the
host (for GPU arrays too: the kernels run on the GPU, the activation derivative, bias sum,
global pooling and zero padding gradients are copied to the host and back).

Examples
--------
>>> import numpy as np, fastconv
>>> x = np.ones((1, 4, 4, 1), np.float32)
>>> w = np.ones((3, 3, 1, 2), np.float32)
>>> y, backward = fastconv.vjp(fastconv.conv2d, x, w, 1, "VALID", bias=np.zeros(2, np.float32))
>>> dx, dw, db = backward(np.ones_like(y))
>>> dx.shape, dw[0, 0, 0], db
((1, 4, 4, 1), array([4., 4.], dtype=float32), array([4., 4.], dtype=float32))
"""

from __future__ import annotations

import inspect

import numpy as np

from . import activations, gradients
from .shapes import LAYOUTS, parse_data_format
from .validation import array_dtype, as_host_array, is_device_array, resolve_activation


def vjp(op, *args, **kwargs):
    """Run ``op(*args, **kwargs)`` and return ``(output, backward)``.

    ``backward(grad_output)`` returns one gradient per array argument given, in positional
    order: input, filters (the depthwise and pointwise filters for ``separable_conv2d``), then
    bias when given: ``dx, dw, db = backward(dy)``; ``(dx,)`` for pooling and padding.

    Parameters
    ----------
    op : callable or str
        A fastconv op (``fastconv.conv2d``) or its name.
    *args, **kwargs
        The op's arguments.

    Returns
    -------
    output : ndarray
        ``op(*args, **kwargs)``.
    backward : callable
        ``backward(grad_output) -> tuple of ndarray``. ``grad_output`` must have the output's
        shape and dtype. It may be called more than once. The convolutions' takes
        ``needs=(True, False, ...)``, one flag per array argument: the gradients flagged
        False are not computed and come back as None (a first layer's input gradient, which
        training never reads).

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.array([[[1.], [3.], [2.], [0.]]], np.float32)
    >>> y, backward = fastconv.vjp("max_pool1d", x, 2, 2, "VALID")
    >>> y[0, :, 0], backward(np.ones_like(y))[0][0, :, 0]
    (array([3., 2.], dtype=float32), array([0., 1., 1., 0.], dtype=float32))
    """
    from . import ops

    name = op if isinstance(op, str) else getattr(op, "__name__", None)
    if name not in RULES:
        raise ValueError(f"vjp: no fastconv op named {name!r}; ops with gradients: "
                         f"{', '.join(ops.NAMES)}")
    function = ops.get(name).function
    bound = inspect.signature(function).bind(*args, **kwargs)
    bound.apply_defaults()
    return RULES[name](function, bound.arguments)


# ----------------------------------------------------------------------------- helpers

def _host(array):
    return array if isinstance(array, np.ndarray) else as_host_array(array, "array")


def _checked_grad(grad_output, output):
    """``grad_output`` as an array of the output's shape and dtype, or an error naming it."""
    on_device = is_device_array(grad_output) and not isinstance(grad_output, np.ndarray)
    dy = grad_output if on_device else as_host_array(grad_output, "grad_output")
    if tuple(dy.shape) != tuple(output.shape):
        raise ValueError(f"grad_output must have the output's shape {tuple(output.shape)}, got "
                         f"{tuple(dy.shape)}")
    if np.dtype(array_dtype(dy)) != np.dtype(array_dtype(output)):
        raise TypeError(f"grad_output must have the output's dtype {array_dtype(output)}, got "
                        f"{array_dtype(dy)}")
    return dy


def _forward(op, a):
    """Run ``op(**a)``; return ``(output, pre-activation or None, Activation)``.

    The activations whose derivative the output does not determine (silu, gelu, hard_swish;
    leaky_relu with alpha <= 0) run unfused: the op without its activation, which is saved,
    then the activation in NumPy (an element-wise pass, far cheaper than a second conv).
    """
    act = resolve_activation(a.get("activation"), a.get("alpha"))
    if act.function is not None:
        raise ValueError("vjp needs a named activation: the derivative of a callable "
                         "activation is not known (apply it after the op instead)")
    if not activations.needs_preactivation(act):
        return op(**a), None, act
    z = op(**{**a, "activation": None, "alpha": None})
    y = activations.apply(_host(z), act.kind, act.alpha)
    return _back_to(z, y), z, act


def _activation_grad(act, y, z, dy):
    """The output gradient through the fused activation (TF's ReluGrad, Relu6Grad,
    SigmoidGrad, TanhGrad, EluGrad read the output; silu's, gelu's, hard_swish's read the
    saved pre-activation)."""
    if act.kind == activations.NONE:
        return dy
    return activations.gradient(act, _host(dy), _host(y), None if z is None else _host(z))


def _needs(needs, count):
    """``backward``'s ``needs``: which gradients to compute (None: all of them)."""
    if needs is None:
        return (True,) * count
    needs = tuple(bool(n) for n in needs)
    if len(needs) != count:
        raise ValueError(f"needs must have one flag per array argument ({count}), got "
                         f"{len(needs)}")
    return needs


def _channel_axis(rank, channels_first):
    return 1 if channels_first else rank - 1


def _bias_grad(dz, channels_first):
    """``tf.nn.bias_add``'s gradient (BiasAddGrad): the sum over all but the channel axis."""
    dz = _host(dz)
    axis = _channel_axis(dz.ndim, channels_first)
    return dz.sum(axis=tuple(i for i in range(dz.ndim) if i != axis)).astype(dz.dtype)


def _layout(data_format, n_spatial, default=None):
    fmt = default if data_format is None else data_format
    return parse_data_format(fmt, n_spatial)


def _rank(value):
    return len(getattr(value, "shape", None) or np.shape(value)) - 2


def _shape(value):
    return tuple(int(n) for n in getattr(value, "shape", None) or np.shape(value))


# ----------------------------------------------------------------------------- conv rules

def _conv_rule(n_spatial, x, w, strides, padding, data_format, dilations, bias, forward,
               depthwise=False):
    """``(output, backward)`` of a conv of ``n_spatial`` dims; ``forward`` is
    :func:`_forward`'s result."""
    output, preactivation, act = forward
    fmt = data_format if data_format is not None else LAYOUTS[n_spatial][0]
    name = "depthwise_conv2d" if depthwise else f"conv{n_spatial}d"
    backprop_input = getattr(gradients, f"{name}_backprop_input")
    backprop_filter = getattr(gradients, f"{name}_backprop_filter")

    def backward(grad_output, needs=None):
        wanted = _needs(needs, 2 if bias is None else 3)
        dz = _activation_grad(act, output, preactivation, _checked_grad(grad_output, output))
        dx = (backprop_input(_shape(x), w, dz, strides, padding, fmt, dilations)
              if wanted[0] else None)
        dw = (backprop_filter(x, _shape(w), dz, strides, padding, fmt, dilations)
              if wanted[1] else None)
        if bias is None:
            return dx, dw
        return dx, dw, _bias_grad(dz, _layout(fmt, n_spatial)) if wanted[2] else None

    return output, backward


def _conv_nd(n_spatial):
    def rule(op, a):
        stride = a["stride"] if n_spatial == 1 else a["strides"]
        return _conv_rule(n_spatial, a["input"], a["filters"], stride, a["padding"],
                          a["data_format"], a["dilations"], a["bias"], _forward(op, a))
    return rule


def _convolution(op, a):
    strides = 1 if a["strides"] is None else a["strides"]
    return _conv_rule(_rank(a["input"]), a["input"], a["filters"], strides, a["padding"],
                      a["data_format"], a["dilations"], a["bias"], _forward(op, a))


def _depthwise(op, a):
    return _conv_rule(2, a["input"], a["filter"], a["strides"], a["padding"], a["data_format"],
                      a["dilations"], a["bias"], _forward(op, a), depthwise=True)


def _atrous(op, a):
    return _conv_rule(2, a["value"], a["filters"], 1, a["padding"], "NHWC", a["rate"],
                      a["bias"], _forward(op, a))


def _separable(op, a):
    from . import api

    fmt = "NHWC" if a["data_format"] is None else a["data_format"]
    middle, depthwise_backward = vjp(api.depthwise_conv2d, a["input"], a["depthwise_filter"],
                                     a["strides"], a["padding"], fmt, a["dilations"],
                                     device=a["device"])
    y, pointwise_backward = vjp(api.conv2d, middle, a["pointwise_filter"], 1, "VALID", fmt,
                                bias=a["bias"], activation=a["activation"], alpha=a["alpha"],
                                device=a["device"])

    def backward(grad_output):
        d_middle, d_pointwise, *d_bias = pointwise_backward(grad_output)
        dx, d_depthwise = depthwise_backward(d_middle)
        return (dx, d_depthwise, d_pointwise, *d_bias)

    return y, backward


def _transpose_rule(n_spatial, x, w, strides, padding, data_format, dilations, bias, forward):
    """A transposed conv is the input gradient of a conv: its input gradient is that conv
    of ``grad_output`` (grouped as the transposed conv is), its filter gradient the conv's
    filter gradient with the roles of input and output gradient swapped."""
    from . import api

    output, preactivation, act = forward
    fmt = data_format if data_format is not None else LAYOUTS[n_spatial][0]
    conv = {1: api.conv1d, 2: api.conv2d, 3: api.conv3d}[n_spatial]
    backprop_filter = getattr(gradients, f"conv{n_spatial}d_backprop_filter")
    channels_first = _layout(fmt, n_spatial)

    def backward(grad_output):
        dz = _activation_grad(act, output, preactivation, _checked_grad(grad_output, output))
        dx = conv(dz, w, strides, padding, fmt, dilations)
        dw = backprop_filter(dz, _shape(w), x, strides, padding, fmt, dilations)
        if bias is None:
            return dx, dw
        return dx, dw, _bias_grad(dz, channels_first)

    return output, backward


def _transpose_nd(n_spatial):
    def rule(op, a):
        return _transpose_rule(n_spatial, a["input"], a["filters"], a["strides"], a["padding"],
                               a["data_format"], a["dilations"], a["bias"], _forward(op, a))
    return rule


def _transpose_any(op, a):
    return _transpose_rule(_rank(a["input"]), a["input"], a["filters"], a["strides"],
                           a["padding"], a["data_format"], a["dilations"], a["bias"],
                           _forward(op, a))


def _atrous_transpose(op, a):
    return _transpose_rule(2, a["value"], a["filters"], 1, a["padding"], "NHWC", a["rate"],
                           a["bias"], _forward(op, a))


# ----------------------------------------------------------------------------- pool rules

def _pool_rule(kind, n_spatial, x, ksize, strides, padding, data_format, output):
    fmt = data_format if data_format is not None else LAYOUTS[n_spatial][0]
    grad = getattr(gradients, f"{kind}_pool{n_spatial}d_grad")

    def backward(grad_output):
        dy = _checked_grad(grad_output, output)
        if kind == "max":
            return (grad(x, output, dy, ksize, strides, padding, fmt),)
        return (grad(_shape(x), dy, ksize, strides, padding, fmt),)

    return output, backward


def _pool_nd(kind, n_spatial):
    def rule(op, a):
        y = op(**a)
        return _pool_rule(kind, n_spatial, a["input"], a["ksize"], a["strides"], a["padding"],
                          a["data_format"], y)
    return rule


def _pool_any(kind):
    def rule(op, a):
        y = op(**a)
        return _pool_rule(kind, _rank(a["input"]), a["input"], a["ksize"], a["strides"],
                          a["padding"], a["data_format"], y)
    return rule


def _pool_generic(op, a):
    """``tf.nn.pool``: the rank-generic pools' rule, or for dilated windows each phase's
    (TF pools every phase of the input undilated and so does its gradient)."""
    import itertools

    from . import api

    kind = a["pooling_type"].lower()
    n = _rank(a["input"])
    window = api._pool_list(a["window_shape"], n, "window_shape")
    rates = (1,) * n if a["dilations"] is None else api._pool_list(a["dilations"], n,
                                                                   "dilations")
    y = op(**a)
    if max(rates) == 1:
        strides = (1,) * n if a["strides"] is None else a["strides"]
        return _pool_rule(kind, n, a["input"], window, strides, a["padding"], a["data_format"],
                          y)
    channels_first = _layout(a["data_format"], n)
    first_axis = 2 if channels_first else 1
    fmt = a["data_format"] if a["data_format"] is not None else LAYOUTS[n][0]
    grad = getattr(gradients, f"{kind}_pool{n}d_grad")

    def backward(grad_output):
        dy = _host(_checked_grad(grad_output, y))
        x = _host(a["input"])
        yh = _host(y)
        dx = np.zeros_like(x)
        for phase in itertools.product(*(range(r) for r in rates)):
            index = (slice(None),) * first_axis + tuple(slice(p, None, r)
                                                        for p, r in zip(phase, rates))
            part = np.ascontiguousarray(x[index])
            spatial = part.shape[2:] if channels_first else part.shape[1:-1]
            if any(size < k for size, k in zip(spatial, window)):
                continue
            g = np.ascontiguousarray(dy[index])
            if kind == "max":
                dx[index] = grad(part, np.ascontiguousarray(yh[index]), g, window, 1, "VALID",
                                 fmt)
            else:
                dx[index] = grad(part.shape, g, window, 1, "VALID", fmt)
        return (_back_to(grad_output, dx),)

    return y, backward


def _global_pool(kind):
    def rule(op, a):
        y = op(**a)
        channels_first = _layout(a["data_format"], 2)

        def backward(grad_output):
            dy = _host(_checked_grad(grad_output, y))
            x = _host(a["input"])
            keep = dy.reshape((x.shape[0], x.shape[1], 1, 1) if channels_first
                              else (x.shape[0], 1, 1, x.shape[3]))
            spatial = (2, 3) if channels_first else (1, 2)
            if kind == "avg":  # tf.reduce_mean's gradient: the gradient over the count
                return ((np.broadcast_to(keep, x.shape) / x.dtype.type(x.shape[spatial[0]]
                                                                     * x.shape[spatial[1]]))
                        .astype(x.dtype),)
            # tf.reduce_max's: split evenly between the cells equal to the maximum.
            maxima = _host(y).reshape(keep.shape)
            hits = (x == maxima).astype(x.dtype)
            with np.errstate(invalid="ignore", divide="ignore"):
                return ((hits / hits.sum(axis=spatial, keepdims=True) * keep).astype(x.dtype),)

        return y, backward
    return rule


def _zero_pad(op, a):
    from . import api

    y = op(**a)
    channels_first = _layout(a["data_format"], 2)
    pairs = api._zero_pad_pairs(a["padding"])

    def backward(grad_output):
        dy = _host(_checked_grad(grad_output, y))
        crop = tuple(slice(before, size - after) for (before, after), size in
                     zip(pairs, dy.shape[2:] if channels_first else dy.shape[1:3]))
        index = (slice(None), slice(None)) + crop if channels_first else \
            (slice(None),) + crop + (slice(None),)
        return (np.ascontiguousarray(dy[index]),)

    return y, backward


#: op name -> rule(function, bound arguments) -> (output, backward)
# ----------------------------------------------------------------------------- window maxima

def _back_to(like, array):
    """``array`` (host) on the device when ``like`` lives there."""
    if is_device_array(like) and not isinstance(like, np.ndarray):
        from . import dispatch

        return dispatch.to_device_like(array, like)
    return array


def _max_pool_with_argmax(op, a):
    """TF's MaxPoolGradWithArgmax: each output gradient added at its argmax."""
    result = op(**a)
    output, argmax = result
    x_shape = _shape(a["input"])

    def backward(grad_output):
        dy = _host(_checked_grad(grad_output, output))
        idx = _host(argmax).astype(np.int64)
        if not a["include_batch_in_index"]:
            per_image = int(np.prod(x_shape[1:]))
            idx = idx + (np.arange(x_shape[0]) * per_image).reshape((-1,) + (1,) * (idx.ndim - 1))
        dx = np.zeros(int(np.prod(x_shape)), dy.dtype)
        np.add.at(dx, idx.reshape(-1), dy.reshape(-1))
        return (_back_to(grad_output, dx.reshape(x_shape)),)

    return result, backward


def _dilation_backprop(xl, f, dy, strides, dilations, pads):
    """TF's Dilation2DBackpropInput and Dilation2DBackpropFilter on channels-last host arrays:
    each output gradient goes to its window's winning cell and tap (the first strict maximum
    of ``x + f`` above the lowest value; where none wins, TF's defaults: the window's clipped
    first cell and tap (0, 0))."""
    n, h, w, c = xl.shape
    oh, ow = dy.shape[1:3]
    kh, kw = f.shape[:2]
    best = np.full(dy.shape, np.finfo(xl.dtype).min, xl.dtype)
    rows0 = np.arange(oh) * strides[0] - pads[0]
    cols0 = np.arange(ow) * strides[1] - pads[1]
    win_h = np.broadcast_to(np.maximum(rows0, 0)[None, :, None, None], dy.shape).copy()
    win_w = np.broadcast_to(np.maximum(cols0, 0)[None, None, :, None], dy.shape).copy()
    tap = np.zeros(dy.shape, np.int64)
    for i in range(kh):
        r = rows0 + i * dilations[0]
        for j in range(kw):
            q = cols0 + j * dilations[1]
            valid = ((r >= 0) & (r < h))[:, None] & ((q >= 0) & (q < w))[None, :]
            v = xl[:, np.clip(r, 0, h - 1)[:, None], np.clip(q, 0, w - 1)[None, :], :]
            with np.errstate(invalid="ignore"):
                v = v + f[i, j]
                take = (v > best) & valid[None, :, :, None]
            best = np.where(take, v, best)
            win_h = np.where(take, np.clip(r, 0, h - 1)[None, :, None, None], win_h)
            win_w = np.where(take, np.clip(q, 0, w - 1)[None, None, :, None], win_w)
            tap = np.where(take, i * kw + j, tap)
    dx = np.zeros_like(xl)
    images = np.arange(n)[:, None, None, None]
    channels = np.arange(c)[None, None, None, :]
    np.add.at(dx, (np.broadcast_to(images, dy.shape), win_h, win_w,
                   np.broadcast_to(channels, dy.shape)), dy)
    df = np.zeros(f.shape, xl.dtype)
    np.add.at(df, (tap // kw, tap % kw, np.broadcast_to(channels, dy.shape)), dy)
    return dx, df


def _morphology(erode):
    def rule(op, a):
        from . import api

        y = op(**a)
        x_name = "value" if erode else "input"
        first = _layout(a["data_format"], 2)
        channels_first = first

        def backward(grad_output):
            dy = _host(_checked_grad(grad_output, y))
            x = _host(a[x_name])
            f = np.asarray(_host(a["filters"]), x.dtype)
            xl = np.moveaxis(x, 1, -1) if channels_first else x
            dyl = np.moveaxis(dy, 1, -1) if channels_first else dy
            strides = api.normalize_window(a["strides"], 2, "strides", channels_first)
            dilations = api.normalize_window(a["dilations"], 2, "dilations", channels_first)
            geometry = api.window_geometry(xl.shape[1:3], f.shape[:2], strides, dilations,
                                           api.parse_padding(a["padding"], 2, channels_first))
            pads = [before for before, _ in geometry.pads]
            if erode:  # y = -dilation(-x, reversed f)
                dx, df = _dilation_backprop(-xl, f[::-1, ::-1], dyl, strides, dilations, pads)
                df = -df[::-1, ::-1]
            else:
                dx, df = _dilation_backprop(xl, f, dyl, strides, dilations, pads)
            dx = np.ascontiguousarray(np.moveaxis(dx, -1, 1) if channels_first else dx)
            return (_back_to(grad_output, dx.astype(x.dtype)),
                    _back_to(grad_output, np.ascontiguousarray(df, x.dtype)))

        return y, backward
    return rule


RULES = {
    "conv1d": _conv_nd(1), "conv2d": _conv_nd(2), "conv3d": _conv_nd(3),
    "convolution": _convolution, "depthwise_conv2d": _depthwise,
    "separable_conv2d": _separable, "atrous_conv2d": _atrous,
    "conv1d_transpose": _transpose_nd(1), "conv2d_transpose": _transpose_nd(2),
    "conv3d_transpose": _transpose_nd(3), "conv_transpose": _transpose_any,
    "atrous_conv2d_transpose": _atrous_transpose,
    **{f"{kind}_pool{n}d": _pool_nd(kind, n) for kind in ("max", "avg") for n in (1, 2, 3)},
    "max_pool": _pool_any("max"), "avg_pool": _pool_any("avg"), "pool": _pool_generic,
    "global_max_pool2d": _global_pool("max"), "global_avg_pool2d": _global_pool("avg"),
    "zero_pad2d": _zero_pad,
    "max_pool_with_argmax": _max_pool_with_argmax,
    "dilation2d": _morphology(False), "erosion2d": _morphology(True),
}
