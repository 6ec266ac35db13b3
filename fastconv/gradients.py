"""Gradients: TensorFlow's named backprop kernels and :func:`vjp` for every op.

The named kernels take TF's arguments (``tf.compat.v1.nn.conv2d_backprop_input``,
``conv3d_backprop_filter_v2``, ``depthwise_conv2d_native_backprop_*``,
``tf.raw_ops.MaxPoolGradV2`` / ``MaxPool3DGrad`` / ``AvgPoolGrad`` / ``AvgPool3DGrad``) and
dispatch like the forward ops, on the CPU or CUDA:

* a conv's input gradient is the transposed conv of the output gradient (family
  ``conv_transpose``, grouped where the conv was); on the CPU a stride-1 one is the forward
  conv of the flipped filters instead (family ``conv``: its depthwise, Winograd and blocked
  algorithms);
* a conv's filter gradient is family ``conv_filter_grad``: a reduction over the batch and the
  output positions (per kernel tap one BLAS product on the CPU);
* pooling gradients are families ``max_pool_grad`` / ``avg_pool_grad``, with TF's CPU rule
  for where a max window's gradient goes (:class:`fastconv.problems.PoolGradProblem`).

:func:`vjp` runs an op and returns its output with a ``backward`` function; the element-wise
parts (the fused activation's derivative, the bias gradient, global pooling and zero padding)
are NumPy.

Examples
--------
>>> import numpy as np, fastconv
>>> x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
>>> y, backward = fastconv.vjp(fastconv.max_pool2d, x, 2, 2, "VALID")
>>> backward(np.ones_like(y))[0][0, :, :, 0]
array([[0., 0., 0., 0.],
       [0., 1., 0., 1.],
       [0., 0., 0., 0.],
       [0., 1., 0., 1.]], dtype=float32)
"""

from __future__ import annotations

import numpy as np

from . import dispatch
from .problems import (ConvFilterGradProblem, ConvProblem, ConvTransposeProblem,
                       PoolGradProblem, layout_shape, pad_to_3d)
from .shapes import (LAYOUTS, check_int32, normalize_window, parse_data_format, parse_padding,
                     window_geometry)
from .validation import array_dtype, check_device, check_rank, check_same_dtype

# The names this module adds to ``fastconv`` (fastconv.__all__).
NAMED_KERNELS = tuple(
    [f"conv{n}d_backprop_{what}" for n in (1, 2, 3) for what in ("input", "filter")]
    + ["depthwise_conv2d_backprop_input", "depthwise_conv2d_backprop_filter"]
    + [f"{kind}_pool{n}d_grad" for kind in ("max", "avg") for n in (1, 2, 3)])
__all__ = list(NAMED_KERNELS)


# ----------------------------------------------------------------------------- arguments

def _api():
    from . import api  # the forward ops' argument helpers (api imports this module's users)

    return api


def _prepare(value, name, n_spatial, channels_first, device, dtype=None):
    """``value`` as an array on ``device``, checked to be a float data-layout array."""
    api = _api()
    array = api._data(value, name, device, dtype)
    last, first = LAYOUTS[n_spatial]
    check_rank(array.shape, n_spatial + 2, name, first if channels_first else last)
    return array


def _start(n_spatial, data_format, device, arrays):
    """(channels_first, device) of a named kernel's call."""
    device = check_device(device)
    channels_first = parse_data_format(data_format, n_spatial)
    return channels_first, dispatch.choose_device(arrays, device)


def _sizes(value, name, rank):
    """A shape argument (``input_sizes``, ``filter_sizes``, ``orig_input_shape``): ints."""
    values = _api()._shape_values(value, name)
    if len(values) != rank:
        raise ValueError(f"{name} must have {rank} entries, got {list(values)}")
    if min(values) < 0:
        raise ValueError(f"{name} must not be negative, got {list(values)}")
    check_int32(values, name)
    return values


def _geometry(spatial, kernel, window, out_spatial, name):
    """The forward conv's geometry, checked to map ``spatial`` to ``out_spatial``."""
    strides, padding, dilations = window
    geometry = window_geometry(tuple(spatial), tuple(kernel), strides, dilations, padding)
    if geometry.out_sizes != tuple(out_spatial):
        raise ValueError(f"{name} has spatial shape {tuple(out_spatial)}, but the forward op "
                         f"maps spatial size {tuple(spatial)} to {geometry.out_sizes} with "
                         f"these arguments")
    return geometry


def _groups(channels, group_in, out_channels, what):
    if group_in < 1 or channels % group_in:
        raise ValueError(f"the input's {channels} channels must be a multiple of the filters' "
                         f"in_channels ({group_in}) {what}")
    groups = channels // group_in
    if out_channels % groups:
        raise ValueError(f"the filters' out_channels ({out_channels}) must be a multiple of "
                         f"the number of groups ({groups}) {what}")
    return groups


# ----------------------------------------------------------------------------- the cores

def _input_grad(dy, w, in_spatial, window, groups, channels_first, n_spatial, device,
                allow_forward=True):
    """The input gradient of a validated conv: ``w`` (*kernel, C // groups, K)
    (``allow_forward=False``: always through the transposed conv, as tests check it)."""
    api = _api()
    batch, _, out_spatial = api._split(dy.shape, channels_first)
    w_shape = tuple(w.shape)
    kernel = w_shape[:n_spatial]
    channels = w_shape[n_spatial] * groups
    geometry = _geometry(in_spatial, kernel, window, out_spatial, "out_backprop")
    dtype = array_dtype(dy)
    out_shape = layout_shape(batch, channels, geometry.in_sizes, channels_first)
    shape5 = layout_shape(batch, channels, pad_to_3d(geometry).in_sizes, channels_first)
    w5 = w.reshape((1,) * (3 - n_spatial) + w_shape)
    dy5 = api._to_5d(dy, n_spatial, channels_first)
    reach = [((k - 1) * d - before, (k - 1) * d - after)
             for k, d, (before, after) in zip(kernel, geometry.dilations, geometry.pads)]
    few_channels = channels < 8  # the forward conv's lanes would be mostly empty: col2im
    if (allow_forward and device == "cpu" and set(geometry.strides) == {1} and not few_channels and min(sum(reach, ())) >= 0
            and np.isfinite(w).all()):
        # The forward conv of the flipped filters over the output gradient: the conv family's
        # algorithms (depthwise, Winograd, blocked) instead of the transposed conv's.
        from .cpu.transpose import flipped_filters  # the CPU path: Numba is loaded anyway

        flipped = flipped_filters(w5, groups)
        forward = pad_to_3d(window_geometry(out_spatial, kernel, (1,) * n_spatial,
                                            geometry.dilations, tuple(reach)))
        problem = ConvProblem(dy5, flipped, None, forward, groups, 0, channels_first, shape5,
                              dtype)
        return dispatch.run("conv", device, problem).reshape(out_shape)
    problem = ConvTransposeProblem(dy5, w5, pad_to_3d(geometry), channels_first, shape5, dtype,
                                   None, groups)
    return dispatch.run("conv_transpose", device, problem).reshape(out_shape)


def _filter_grad(x, dy, kernel, window, groups, channels_first, n_spatial, device):
    """The filter gradient (*kernel, C // groups, K) of a validated conv."""
    api = _api()
    batch, channels, spatial = api._split(x.shape, channels_first)
    _, k_total, out_spatial = api._split(dy.shape, channels_first)
    geometry = _geometry(spatial, kernel, window, out_spatial, "out_backprop")
    shape = tuple(kernel) + (channels // groups, k_total)
    problem = ConvFilterGradProblem(api._to_5d(x, n_spatial, channels_first),
                                    api._to_5d(dy, n_spatial, channels_first),
                                    pad_to_3d(geometry), groups, channels_first,
                                    (1,) * (3 - n_spatial) + shape, array_dtype(x))
    return dispatch.run("conv_filter_grad", device, problem).reshape(shape)


def _pool_grad(kind, n_spatial, x, in_shape, y, dy, ksize, strides, padding, channels_first,
               device, ties):
    """The input gradient of a validated pooling (``x`` None for the average)."""
    api = _api()
    batch, channels, spatial = api._split(in_shape, channels_first)
    _, dy_channels, out_spatial = api._split(dy.shape, channels_first)
    if (dy.shape[0], dy_channels) != (batch, channels):
        raise ValueError(f"grad has shape {tuple(dy.shape)}: its batch and channels must be "
                         f"the input's ({batch}, {channels})")
    geometry = _geometry(spatial, ksize, (strides, padding, (1,) * n_spatial), out_spatial,
                         "grad")
    api._check_pool_padding(padding, geometry, ksize)
    to_5d = (lambda a: None if a is None else api._to_5d(a, n_spatial, channels_first))
    geometry3 = pad_to_3d(geometry)
    problem = PoolGradProblem(to_5d(x), to_5d(y), to_5d(dy), geometry3, channels_first,
                              layout_shape(batch, channels, geometry3.in_sizes, channels_first),
                              array_dtype(dy), kind, ties)
    return dispatch.run(f"{kind}_pool_grad", device, problem).reshape(tuple(in_shape))


# ----------------------------------------------------------------------------- named kernels

def _conv_backprop_input(n_spatial, input_sizes, filters, out_backprop, strides, padding,
                         data_format, dilations, device, depthwise=False):
    api = _api()
    channels_first, device = _start(n_spatial, data_format, device, (filters, out_backprop))
    dy = _prepare(out_backprop, "out_backprop", n_spatial, channels_first, device)
    dtype = array_dtype(dy)
    w = api._data(filters, "filter" if depthwise else "filters", device, dtype)
    check_same_dtype(dtype, "out_backprop", array_dtype(w), "filters")
    check_rank(w.shape, n_spatial + 2, "filters", api._FILTER_LAYOUT[n_spatial])
    sizes = _sizes(input_sizes, "input_sizes", n_spatial + 2)
    batch, channels, spatial = api._split(sizes, channels_first)
    w_shape = tuple(w.shape)
    if depthwise:
        if w_shape[2] != channels:
            raise ValueError(f"filter's in_channels ({w_shape[2]}) must be the input's "
                             f"{channels} channels (input_sizes {list(sizes)})")
        w = w.reshape(w_shape[:2] + (1, w_shape[2] * w_shape[3]))
        w_shape = tuple(w.shape)
    _, k_total, _ = api._split(dy.shape, channels_first)
    if w_shape[-1] != k_total:
        raise ValueError(f"out_backprop has {k_total} channels, the filters' out_channels are "
                         f"{w_shape[-1]}")
    if dy.shape[0] != batch:
        raise ValueError(f"out_backprop's batch ({dy.shape[0]}) must be input_sizes' ({batch})")
    groups = _groups(channels, w_shape[n_spatial], k_total, f"(input_sizes {list(sizes)})")
    window = api._conv_window(n_spatial, strides, padding, dilations, channels_first,
                              "strides")
    if 0 in sizes or 0 in dy.shape:
        return np.zeros(sizes, dtype)
    return _input_grad(dy, w, spatial, window, groups, channels_first, n_spatial, device)


def _conv_backprop_filter(n_spatial, input, filter_sizes, out_backprop, strides, padding,
                          data_format, dilations, device, depthwise=False):
    api = _api()
    channels_first, device = _start(n_spatial, data_format, device, (input, out_backprop))
    x = _prepare(input, "input", n_spatial, channels_first, device)
    dtype = array_dtype(x)
    dy = _prepare(out_backprop, "out_backprop", n_spatial, channels_first, device, dtype)
    check_same_dtype(dtype, "input", array_dtype(dy), "out_backprop")
    sizes = _sizes(filter_sizes, "filter_sizes", n_spatial + 2)
    batch, channels, spatial = api._split(x.shape, channels_first)
    dy_batch, k_total, _ = api._split(dy.shape, channels_first)
    if dy_batch != batch:
        raise ValueError(f"out_backprop's batch ({dy_batch}) must be the input's ({batch})")
    if depthwise:
        if sizes[2] != channels or sizes[2] * sizes[3] != k_total:
            raise ValueError(f"filter_sizes {list(sizes)} must be (K_h, K_w, {channels}, "
                             f"multiplier) with {channels} x multiplier = out_backprop's "
                             f"{k_total} channels")
        grouped = tuple(sizes[:2]) + (1, k_total)
    else:
        grouped = tuple(sizes)
        if grouped[-1] != k_total:
            raise ValueError(f"filter_sizes' out_channels ({grouped[-1]}) must be "
                             f"out_backprop's {k_total} channels")
    if min(grouped[:n_spatial]) < 1:
        raise ValueError(f"filter_sizes must have positive kernel sizes, got {list(sizes)}")
    groups = _groups(channels, grouped[n_spatial], k_total, f"(filter_sizes {list(sizes)})")
    window = api._conv_window(n_spatial, strides, padding, dilations, channels_first,
                              "strides")
    if 0 in x.shape or 0 in dy.shape:
        _geometry(spatial, grouped[:n_spatial], window, api._split(dy.shape, channels_first)[2],
                  "out_backprop")
        return np.zeros(sizes, dtype)
    dw = _filter_grad(x, dy, grouped[:n_spatial], window, groups, channels_first, n_spatial,
                      device)
    return dw.reshape(tuple(sizes))


def _backprop_doc(n_spatial, what, depthwise=False):
    last, first = LAYOUTS[n_spatial]
    name = "depthwise_conv2d" if depthwise else f"conv{n_spatial}d"
    tf_name = ("tf.compat.v1.nn.depthwise_conv2d_native_backprop_" + what if depthwise else
               f"tf.compat.v1.nn.conv{n_spatial}d_backprop_{what}"
               + ("_v2" if n_spatial == 3 else "") if n_spatial > 1 else
               f"conv1d's {what} gradient (TF has no named op: conv2d's with a unit height)")
    filt = "(K_h, K_w, C, multiplier)" if depthwise else "(*kernel, C // groups, K)"
    x_shape = {1: "(1, 6, 2)", 2: "(1, 5, 5, 2)", 3: "(1, 4, 4, 4, 2)"}[n_spatial]
    w_shape = {1: "(3, 2, 4)", 2: "(3, 3, 2, 4)", 3: "(2, 2, 2, 2, 4)"}[n_spatial]
    if depthwise:
        w_shape = "(3, 3, 2, 2)"
    dy_shape = {1: "(1, 4, 4)", 2: "(1, 3, 3, 4)", 3: "(1, 3, 3, 3, 4)"}[n_spatial]
    first_arg = ("input_sizes : sequence of ints\n        The shape of the conv's input."
                 if what == "input" else
                 "input : array_like\n        The conv's input, float32 or float64.")
    second_arg = (f"filter{'' if depthwise else 's'} : array_like {filt}\n        The conv's filters."
                  if what == "input" else
                  f"filter_sizes : sequence of ints\n        The filters' shape, {filt}.")
    call = (f"fastconv.{name}_backprop_input({x_shape}, np.ones({w_shape}, np.float32), dy, 1, "
            f'"VALID")' if what == "input" else
            f"fastconv.{name}_backprop_filter(np.ones({x_shape}, np.float32), {w_shape}, dy, "
            f'1, "VALID")')
    result = x_shape if what == "input" else w_shape
    return f"""The gradient of :func:`fastconv.{name}` with respect to its {what}, as
    ``{tf_name}``.

    Parameters
    ----------
    {first_arg}
    {second_arg}
    out_backprop : array_like
        The gradient of the conv's output, {last} or {first}.
    strides, padding, data_format, dilations
        The forward conv's (every form it takes; grouped convs too).
    device : {{None, "cpu", "cuda"}}

    Returns
    -------
    ndarray
        Shape ``{'input_sizes' if what == 'input' else 'filter_sizes'}``, out_backprop's dtype.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> dy = np.ones({dy_shape}, np.float32)
    >>> {call}.shape
    {result}
    """


def _make_conv_backprop(n_spatial, what, depthwise=False):
    fmt = LAYOUTS[n_spatial][0]
    core = _conv_backprop_input if what == "input" else _conv_backprop_filter

    if what == "input":
        def backprop(input_sizes, filters, out_backprop, strides, padding, data_format=fmt,
                     dilations=None, *, device=None):
            return core(n_spatial, input_sizes, filters, out_backprop, strides, padding,
                        data_format, dilations, device, depthwise)
    else:
        def backprop(input, filter_sizes, out_backprop, strides, padding, data_format=fmt,
                     dilations=None, *, device=None):
            return core(n_spatial, input, filter_sizes, out_backprop, strides, padding,
                        data_format, dilations, device, depthwise)
    name = f"{'depthwise_conv2d' if depthwise else f'conv{n_spatial}d'}_backprop_{what}"
    backprop.__name__ = backprop.__qualname__ = name
    backprop.__doc__ = _backprop_doc(n_spatial, what, depthwise)
    backprop.__module__ = "fastconv"
    return backprop


conv1d_backprop_input = _make_conv_backprop(1, "input")
conv2d_backprop_input = _make_conv_backprop(2, "input")
conv3d_backprop_input = _make_conv_backprop(3, "input")
conv1d_backprop_filter = _make_conv_backprop(1, "filter")
conv2d_backprop_filter = _make_conv_backprop(2, "filter")
conv3d_backprop_filter = _make_conv_backprop(3, "filter")
depthwise_conv2d_backprop_input = _make_conv_backprop(2, "input", depthwise=True)
depthwise_conv2d_backprop_filter = _make_conv_backprop(2, "filter", depthwise=True)


def _pool_backprop(kind, n_spatial, orig_input, orig_output, grad, ksize, strides, padding,
                   data_format, device):
    arrays = (grad,) if kind == "avg" else (orig_input, orig_output, grad)
    channels_first, device = _start(n_spatial, data_format, device, arrays)
    dy = _prepare(grad, "grad", n_spatial, channels_first, device)
    dtype = array_dtype(dy)
    ksize = normalize_window(ksize, n_spatial, "ksize", channels_first)
    strides = normalize_window(strides, n_spatial, "strides", channels_first)
    padding = parse_padding(padding, n_spatial, channels_first, allow_explicit=kind == "max")
    x = y = None
    ties = "all" if n_spatial == 3 else "first"
    if kind == "avg":
        in_shape = _sizes(orig_input, "orig_input_shape", n_spatial + 2)
    else:
        x = _prepare(orig_input, "orig_input", n_spatial, channels_first, device, dtype)
        check_same_dtype(dtype, "grad", array_dtype(x), "orig_input")
        in_shape = tuple(x.shape)
        out = _prepare(orig_output, "orig_output", n_spatial, channels_first, device, dtype)
        check_same_dtype(dtype, "grad", array_dtype(out), "orig_output")
        if tuple(out.shape) != tuple(dy.shape):
            raise ValueError(f"orig_output has shape {tuple(out.shape)}, grad "
                             f"{tuple(dy.shape)}: they must be the same")
        y = out if ties == "all" else None  # MaxPoolGrad recomputes the maxima from the input
    if 0 in in_shape or 0 in dy.shape:
        return np.zeros(in_shape, dtype)
    return _pool_grad(kind, n_spatial, x, in_shape, y, dy, ksize, strides, padding,
                      channels_first, device, ties)


def _pool_grad_doc(kind, n_spatial):
    last, first = LAYOUTS[n_spatial]
    tf_name = {("max", 1): "tf.raw_ops.MaxPoolGradV2 (on the 2-D view TF's max_pool1d uses)",
               ("max", 2): "tf.raw_ops.MaxPoolGradV2", ("max", 3): "tf.raw_ops.MaxPool3DGrad",
               ("avg", 1): "tf.raw_ops.AvgPoolGrad (on the 2-D view TF's avg_pool1d uses)",
               ("avg", 2): "tf.raw_ops.AvgPoolGrad", ("avg", 3): "tf.raw_ops.AvgPool3DGrad"}
    shape = {1: (1, 4, 1), 2: (1, 4, 4, 1), 3: (1, 4, 4, 4, 1)}[n_spatial]
    out = {1: (1, 2, 1), 2: (1, 2, 2, 1), 3: (1, 2, 2, 2, 1)}[n_spatial]
    if kind == "max":
        rule = ("every cell equal to the window's ``orig_output`` receives its gradient "
                "(ties all do)" if n_spatial == 3 else
                "the first real cell of each window in row-major order receives its gradient, "
                "unless a later cell is strictly greater (ties: the first; a NaN in first "
                "place keeps it)")
        head = ("orig_input : array_like\n        The pooling's input.\n    orig_output : "
                "array_like\n        The pooling's output (its shape is checked"
                + (")." if n_spatial == 3 else "; TF's CPU kernel recomputes the maxima).")
                if n_spatial != 3 else
                "orig_input : array_like\n        The pooling's input.\n    orig_output : "
                "array_like\n        The pooling's output.")
        call = (f"x = np.arange({int(np.prod(shape))}, dtype=np.float32).reshape({shape})\n    "
                f">>> y = fastconv.max_pool{n_spatial}d(x, 2, 2, 'VALID')\n    "
                f">>> fastconv.max_pool{n_spatial}d_grad(x, y, np.ones_like(y), 2, 2, "
                f"'VALID').sum()")
        result = "np.float32(" + str(float(np.prod(out))) + ")"
    else:
        rule = "each window's gradient is spread evenly over its real (unpadded) cells"
        head = "orig_input_shape : sequence of ints\n        The pooling input's shape."
        call = (f"fastconv.avg_pool{n_spatial}d_grad({shape}, np.ones({out}, np.float32), 2, "
                f"2, 'VALID').sum()")
        result = "np.float32(" + str(float(np.prod(out))) + ")"
    return f"""The gradient of :func:`fastconv.{kind}_pool{n_spatial}d` with respect to its
    input, as ``{tf_name[kind, n_spatial]}``: {rule}.

    Parameters
    ----------
    {head}
    grad : array_like
        The gradient of the output, {last} or {first}.
    ksize, strides, padding, data_format
        The pooling's.
    device : {{None, "cpu", "cuda"}}

    Returns
    -------
    ndarray
        The input's shape, grad's dtype.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> {call}
    {result}
    """


def _make_pool_grad(kind, n_spatial):
    fmt = LAYOUTS[n_spatial][0]
    if kind == "max":
        def pool_grad(orig_input, orig_output, grad, ksize, strides, padding, data_format=fmt,
                      *, device=None):
            return _pool_backprop(kind, n_spatial, orig_input, orig_output, grad, ksize,
                                  strides, padding, data_format, device)
    else:
        def pool_grad(orig_input_shape, grad, ksize, strides, padding, data_format=fmt, *,
                      device=None):
            return _pool_backprop(kind, n_spatial, orig_input_shape, None, grad, ksize,
                                  strides, padding, data_format, device)
    pool_grad.__name__ = pool_grad.__qualname__ = f"{kind}_pool{n_spatial}d_grad"
    pool_grad.__doc__ = _pool_grad_doc(kind, n_spatial)
    pool_grad.__module__ = "fastconv"
    return pool_grad


max_pool1d_grad = _make_pool_grad("max", 1)
max_pool2d_grad = _make_pool_grad("max", 2)
max_pool3d_grad = _make_pool_grad("max", 3)
avg_pool1d_grad = _make_pool_grad("avg", 1)
avg_pool2d_grad = _make_pool_grad("avg", 2)
avg_pool3d_grad = _make_pool_grad("avg", 3)

from .half import widening as _widening  # noqa: E402  (float16 / bfloat16 kernels)

for _name in NAMED_KERNELS:
    globals()[_name] = _widening(globals()[_name])
