"""The public, ``tf.nn``-compatible entry points: validate, normalise, dispatch.

Each function checks every argument (raising ValueError/TypeError that names it) before any
kernel runs, builds a problem object from :mod:`fastconv.problems`, and hands it to
:mod:`fastconv.dispatch`, which picks the device and the algorithm.
"""

from __future__ import annotations

import collections
import functools
import itertools

import numpy as np

from . import dispatch
from .half import widening
from . import ops as _ops
from .ops import NAMES
from .problems import (ConvProblem, ConvTransposeProblem, GlobalPoolProblem, PadProblem,
                       PoolProblem, WindowMaxProblem, layout_shape, pad_to_3d)
from .shapes import (LAYOUTS, as_int, check_int32, normalize_window, parse_data_format,
                     parse_padding, window_geometry)
from .validation import (array_dtype, as_host_array, check_device, check_float_dtype,
                         check_rank, check_same_dtype, is_dask_array, is_device_array,
                         resolve_activation)

__all__ = list(NAMES)  # the op table (fastconv.ops) lists every public op once

_FILTER_LAYOUT = {1: "(W, in_channels, out_channels)", 2: "(H, W, in_channels, out_channels)",
                  3: "(D, H, W, in_channels, out_channels)"}
_TORCH_TO_TF_AXES = {1: "(2, 1, 0)", 2: "(2, 3, 1, 0)", 3: "(2, 3, 4, 1, 0)"}


def _torch_layout_advice(w_shape, channels, n_spatial, channels_first):
    """A sentence for filters that read as PyTorch's (out, in/groups, *kernel) layout."""
    if not channels_first or channels % w_shape[1]:
        return ""
    return (f"; filters of shape {tuple(w_shape)} look like PyTorch's (out_channels, "
            f"in_channels, *kernel) layout: fastconv takes TF's {_FILTER_LAYOUT[n_spatial]} in "
            f"every data_format (convert with w.transpose{_TORCH_TO_TF_AXES[n_spatial]})")


def _warn_if_torch_layout(w_shape, channels, n_spatial, channels_first):
    """Warn when channels-first filters fit both layouts and only PyTorch's reading gives a
    cubic kernel: (8, 3, 3, 3) with 3 input channels is an 8x3 kernel to TF, a 3x3 one to
    PyTorch, and both run."""
    if not channels_first or w_shape[1] != channels:
        return
    torch_kernel, tf_kernel = w_shape[2:], w_shape[:n_spatial]
    if len(set(torch_kernel)) == 1 and len(set(tf_kernel)) > 1:
        import warnings

        warnings.warn(f"filters of shape {tuple(w_shape)} are read as TF's "
                      f"{_FILTER_LAYOUT[n_spatial]} (a {'x'.join(map(str, tf_kernel))} kernel), "
                      f"the layout fastconv uses in every data_format; if they are PyTorch's "
                      f"(out_channels, in_channels, *kernel), convert them with "
                      f"w.transpose{_TORCH_TO_TF_AXES[n_spatial]}", UserWarning,
                      stacklevel=_user_stacklevel())


def _user_stacklevel():
    """The ``stacklevel`` that points a warning at the first caller outside fastconv (the
    public op, its dask wrapper and fastconv.chunked are frames of ours)."""
    import os
    import sys

    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(2), 2  # 1: the function that warns
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


# ----------------------------------------------------------------------------- arguments

def _is_array_like_with_dtype(value):
    return isinstance(value, np.ndarray) or is_device_array(value) or (
        hasattr(value, "dtype") and hasattr(value, "shape"))


def _data(value, name, device, dtype=None):
    """Return ``value`` as an array for ``device``; lists take ``dtype`` (TF's float32 default).

    Arrays (NumPy, TF tensors, device arrays) keep their dtype, which is then checked; plain
    Python lists and scalars are converted to ``dtype``, as ``tf.convert_to_tensor`` would.
    """
    if device == "cuda" and is_device_array(value):
        # Stays on the GPU; strided numba device arrays are copied there so reshape works.
        value = dispatch.prepare_array(device, value)
    else:
        if not _is_array_like_with_dtype(value):
            host = as_host_array(value, name)
            if host.dtype.kind not in "biuf":
                raise TypeError(f"{name} must contain numbers, got dtype {host.dtype}")
            value = host.astype(dtype or np.float32)
        value = as_host_array(value, name)
    check_float_dtype(array_dtype(value), name)
    return value


def _layout_hint(n_spatial, channels_first):
    last, first = LAYOUTS[n_spatial]
    return first if channels_first else last


def _split(shape, channels_first):
    """Return (batch, channels, spatial sizes) of a data-layout shape."""
    if channels_first:
        return shape[0], shape[1], tuple(shape[2:])
    shape = tuple(shape)  # the CUDA simulator's shapes refuse negative indices
    return shape[0], shape[-1], tuple(shape[1:-1])


def _to_5d(array, n_spatial, channels_first):
    """View an (n_spatial + 2)-D array as 5-D by inserting unit spatial dims before the others."""
    batch, channels, spatial = _split(array.shape, channels_first)
    return array.reshape(layout_shape(batch, channels, (1,) * (3 - n_spatial) + spatial, channels_first))


def _finish(out5, out_shape):
    """Reshape a backend's 5-D output to the caller's rank."""
    return out5.reshape(out_shape)


def _prepare_input(input, n_spatial, data_format, device, arrays=()):
    device = check_device(device)
    channels_first = parse_data_format(data_format, n_spatial)
    device = dispatch.choose_device((input,) + tuple(arrays), device)
    x = _data(input, "input", device)
    check_rank(x.shape, n_spatial + 2, "input", _layout_hint(n_spatial, channels_first))
    return x, channels_first, device


# ----------------------------------------------------------------------------- convolution

def _conv(n_spatial, input, filters, strides, padding, data_format, dilations, bias, activation,
          device, strides_name="strides", alpha=None):
    x, channels_first, device = _prepare_input(input, n_spatial, data_format, device,
                                               (filters, bias))
    dtype = array_dtype(x)
    w = _data(filters, "filters", device, dtype)
    check_same_dtype(dtype, "input", array_dtype(w), "filters")
    check_rank(w.shape, n_spatial + 2, "filters", _FILTER_LAYOUT[n_spatial])
    window = _conv_window(n_spatial, strides, padding, dilations, channels_first, strides_name)
    batch, channels, spatial = _split(x.shape, channels_first)
    *kernel, group_in, out_channels = tuple(w.shape)
    kernel = tuple(kernel)
    if min(kernel, default=1) < 1 or group_in < 1 or out_channels < 1:
        raise ValueError(f"filters must have non-zero sizes, got shape {tuple(w.shape)}")
    if channels % group_in:
        raise ValueError(f"input has {channels} channels, which is not a multiple of the "
                         f"filters' in_channels ({group_in}); filters shape {tuple(w.shape)}"
                         + _torch_layout_advice(w.shape, channels, n_spatial, channels_first))
    groups = channels // group_in
    if out_channels % groups:
        raise ValueError(f"filters' out_channels ({out_channels}) must be a multiple of the number "
                         f"of groups ({groups} = {channels} input channels / {group_in})"
                         + _torch_layout_advice(w.shape, channels, n_spatial, channels_first))
    _warn_if_torch_layout(tuple(w.shape), channels, n_spatial, channels_first)
    bias = _bias(bias, out_channels, device, dtype)
    act = resolve_activation(activation, alpha)
    return _activate_after(_run_conv(x, w, bias, window, groups, act.code, channels_first,
                                     n_spatial, device), act)


def _activate_after(out, act):
    """``out`` through the part of activation ``act`` the kernels did not fuse (leaky_relu
    with a non-default alpha, a callable): in NumPy on the host, the slow path."""
    if act.fused:
        return out
    if is_device_array(out) and not isinstance(out, np.ndarray):
        return dispatch.to_device_like(act.post(as_host_array(out, "output")), out)
    return act.post(out)


def _bias(bias, out_channels, device, dtype):
    """``bias`` checked (one value per output channel, the input's dtype), or None."""
    if bias is None:
        return None
    bias = _data(bias, "bias", device, dtype)
    check_same_dtype(dtype, "input", array_dtype(bias), "bias")
    _check_bias_shape(tuple(bias.shape), out_channels)
    return bias


def _check_bias_shape(shape, out_channels):
    if shape != (out_channels,):
        raise ValueError(f"bias must have shape ({out_channels},) (one value per output "
                         f"channel), got {shape}")


def convolution(input, filters, strides=None, padding="VALID", data_format=None, dilations=None,
                *, bias=None, activation=None, alpha=None, device=None):
    """Convolution of any spatial rank, as ``tf.nn.convolution``: the input's rank decides
    (3-D input: :func:`conv1d`, 4-D: :func:`conv2d`, 5-D: :func:`conv3d`).

    Parameters
    ----------
    input : array_like, 3-D to 5-D
        Channels-last (``NWC``/``NHWC``/``NDHWC``) or, with ``data_format`` starting with
        ``"NC"``, channels-first; float32 or float64.
    filters : array_like (*kernel, in_channels // groups, out_channels)
        TF's layout: as many dims as the input.
    strides : int or sequence, optional
        An int, one value per spatial dim, or TF's full form; None means 1.
    padding : {"SAME", "VALID"} or list of pairs
    data_format : str, optional
        None means channels-last.
    dilations : int or sequence, optional
    bias : array_like (out_channels,), optional
    activation : str or callable, optional
        Fused: None, "relu", "relu6", "sigmoid", "tanh", "silu" (or "swish"), "gelu",
        "gelu_tanh", "leaky_relu", "elu", "hard_swish", "hard_sigmoid"; or any NumPy-vectorised
        callable of the output array (applied after the kernel, on the host: slow but correct).
    alpha : float, optional
        leaky_relu's negative slope; TF's default 0.2 is fused, another runs after the kernel.
    device : {None, "cpu", "cuda"}

    Returns
    -------
    ndarray
        As the 1-D/2-D/3-D conv of the input's rank.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> fastconv.convolution(np.ones((1, 5, 5, 5, 2)), np.ones((3, 3, 3, 2, 4))).shape
    (1, 3, 3, 3, 4)
    >>> fastconv.convolution(np.ones((1, 5, 1)), np.ones((3, 1, 1)), padding="SAME")[0, :, 0]
    array([2., 3., 3., 3., 2.])
    """
    n_spatial = _spatial_rank(input)
    return _conv(n_spatial, input, filters, 1 if strides is None else strides, padding,
                 data_format, dilations, bias, activation, device, alpha=alpha)


def _conv_window(n_spatial, strides, padding, dilations, channels_first, strides_name):
    """(strides, padding, dilations) normalised, each checked and named in errors."""
    return (normalize_window(strides, n_spatial, strides_name, channels_first),
            parse_padding(padding, n_spatial, channels_first),
            normalize_window(dilations, n_spatial, "dilations", channels_first,
                             allow_none_default=1))


def _run_conv(x, w, bias, window, groups, act, channels_first, n_spatial, device):
    """Dispatch a validated conv: ``w`` in TF's layout, ``window`` from :func:`_conv_window`."""
    strides, padding, dilations = window
    batch, _, spatial = _split(x.shape, channels_first)
    w_shape = tuple(w.shape)  # device arrays' shapes may not take negative indices
    out_channels = w_shape[-1]
    geometry = window_geometry(spatial, w_shape[:n_spatial], strides, dilations, padding)
    w5 = w.reshape((1,) * (3 - n_spatial) + w_shape)
    geometry3 = pad_to_3d(geometry)
    out_shape = layout_shape(batch, out_channels, geometry.out_sizes, channels_first)
    problem = ConvProblem(_to_5d(x, n_spatial, channels_first), w5, bias, geometry3, groups, act,
                          channels_first, layout_shape(batch, out_channels, geometry3.out_sizes,
                                                   channels_first),
                          array_dtype(x), prepared=dispatch.prepared_cache(w_shape))
    return _finish(dispatch.run("conv", device, problem), out_shape)


def conv1d(input, filters, stride, padding, data_format="NWC", dilations=None, *, bias=None,
           activation=None, alpha=None, device=None):
    """1-D convolution, as ``tf.nn.conv1d``, with optional fused bias and activation.

    Parameters
    ----------
    input : array_like (N, W, C) or (N, C, W) for ``data_format="NCW"``
        float32 or float64.
    filters : array_like (K_w, C // groups, out_channels)
        TF's layout in every ``data_format`` (PyTorch's ``(out, in, K_w)`` weights:
        ``w.transpose(2, 1, 0)``); grouped when ``C`` is a multiple of the filters' in_channels.
    stride : int or sequence
        An int, ``[s]`` or TF's ``[1, s, 1]``.
    padding : {"SAME", "VALID"} or list of pairs
        TF's rules; the odd SAME cell goes after.
    data_format : {"NWC", "NCW"}
    dilations : int or sequence, optional
    bias : array_like (out_channels,), optional
    activation : str or callable, optional
        Fused: None, "relu", "relu6", "sigmoid", "tanh", "silu" (or "swish"), "gelu",
        "gelu_tanh", "leaky_relu", "elu", "hard_swish", "hard_sigmoid"; or any NumPy-vectorised
        callable of the output array (applied after the kernel, on the host: slow but correct).
    alpha : float, optional
        leaky_relu's negative slope; TF's default 0.2 is fused, another runs after the kernel.
    device : {None, "cpu", "cuda"}
        None follows the data.

    Returns
    -------
    ndarray
        (N, W_out, out_channels), the input's dtype.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.arange(5, dtype=np.float32).reshape(1, 5, 1)
    >>> fastconv.conv1d(x, np.ones((2, 1, 1), np.float32), 1, "VALID")[0, :, 0]
    array([1., 3., 5., 7.], dtype=float32)
    """
    return _conv(1, input, filters, stride, padding, data_format, dilations, bias, activation,
                 device, strides_name="stride", alpha=alpha)


def conv2d(input, filters, strides, padding, data_format="NHWC", dilations=None, *, bias=None,
           activation=None, alpha=None, device=None):
    """2-D convolution, as ``tf.nn.conv2d``, with optional fused bias and activation.

    ``fastconv.conv2d(x, w, 1, "SAME", bias=b, activation="relu")`` is the Keras layer
    ``Conv2D(filters, kernel_size, padding="same", activation="relu")`` in one call.

    Parameters
    ----------
    input : array_like (N, H, W, C), or (N, C, H, W) for ``data_format="NCHW"``
        float32 or float64. NCHW works on the CPU too (TF refuses it there).
    filters : array_like (K_h, K_w, C // groups, out_channels)
        TF's filter layout, in every ``data_format`` (NCHW too; PyTorch's ``(out, in, K_h,
        K_w)`` weights: ``w.transpose(2, 3, 1, 0)``); grouped when ``C`` is a multiple of the
        filters' in_channels.
    strides : int or sequence
        An int, ``[s_h, s_w]`` or TF's 4-element form with 1 on batch and channels.
    padding : {"SAME", "VALID"} or list of pairs
        Either case; explicit pairs as in TF (``[[0, 0], [t, b], [l, r], [0, 0]]``).
    data_format : {"NHWC", "NCHW"}
    dilations : int or sequence, optional
    bias : array_like (out_channels,), optional
    activation : str or callable, optional
        Fused: None, "relu", "relu6", "sigmoid", "tanh", "silu" (or "swish"), "gelu",
        "gelu_tanh", "leaky_relu", "elu", "hard_swish", "hard_sigmoid"; or any NumPy-vectorised
        callable of the output array (applied after the kernel, on the host: slow but correct).
    alpha : float, optional
        leaky_relu's negative slope; TF's default 0.2 is fused, another runs after the kernel.
    device : {None, "cpu", "cuda"}
        None follows the data (GPU arrays run on the GPU).

    Returns
    -------
    ndarray
        (N, H_out, W_out, out_channels) (or channels-first), the input's dtype.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.ones((1, 28, 28, 1), np.float32)
    >>> w = np.ones((3, 3, 1, 32), np.float32)
    >>> fastconv.conv2d(x, w, 1, "SAME", activation="relu").shape
    (1, 28, 28, 32)
    >>> fastconv.conv2d(x, w, 1, "VALID").shape
    (1, 26, 26, 32)
    """
    return _conv(2, input, filters, strides, padding, data_format, dilations, bias, activation,
                 device, alpha=alpha)


def conv3d(input, filters, strides, padding, data_format="NDHWC", dilations=None, *, bias=None,
           activation=None, alpha=None, device=None):
    """3-D convolution, as ``tf.nn.conv3d``, with optional fused bias and activation.

    Parameters
    ----------
    input : array_like (N, D, H, W, C), or (N, C, D, H, W) for ``data_format="NCDHW"``
    filters : array_like (K_d, K_h, K_w, C // groups, out_channels)
        TF's layout in every ``data_format`` (PyTorch's weights: ``w.transpose(2, 3, 4, 1, 0)``).
    strides : int or sequence
        An int, 3 values, or TF's 5-element form.
    padding : {"SAME", "VALID"} or list of pairs
    data_format : {"NDHWC", "NCDHW"}
    dilations : int or sequence, optional
    bias : array_like (out_channels,), optional
    activation : str or callable, optional
        Fused: None, "relu", "relu6", "sigmoid", "tanh", "silu" (or "swish"), "gelu",
        "gelu_tanh", "leaky_relu", "elu", "hard_swish", "hard_sigmoid"; or any NumPy-vectorised
        callable of the output array (applied after the kernel, on the host: slow but correct).
    alpha : float, optional
        leaky_relu's negative slope; TF's default 0.2 is fused, another runs after the kernel.
    device : {None, "cpu", "cuda"}

    Returns
    -------
    ndarray
        (N, D_out, H_out, W_out, out_channels) (or channels-first), the input's dtype.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.ones((1, 4, 4, 4, 2))
    >>> fastconv.conv3d(x, np.ones((3, 3, 3, 2, 5)), 1, "VALID").shape
    (1, 2, 2, 2, 5)
    """
    return _conv(3, input, filters, strides, padding, data_format, dilations, bias, activation,
                 device, alpha=alpha)


def depthwise_conv2d(input, filter, strides, padding, data_format="NHWC", dilations=None, *,
                     bias=None, activation=None, alpha=None, device=None):
    """Depthwise 2-D convolution, as ``tf.nn.depthwise_conv2d``.

    Output channel ``c * M + m`` is input channel ``c`` convolved with ``filter[:, :, c, m]``.

    Parameters
    ----------
    input : array_like (N, H, W, C) or (N, C, H, W)
    filter : array_like (K_h, K_w, C, M)
        M is the channel multiplier; this layout in every ``data_format`` (PyTorch's
        depthwise weights ``(C * M, 1, K_h, K_w)``: ``w.reshape(C, M, K_h, K_w).transpose(2, 3,
        0, 1)``).
    strides : int or sequence
        An int, 2 values or TF's 4-element form.
    padding : {"SAME", "VALID"} or list of pairs
    data_format : {"NHWC", "NCHW"}
    dilations : int or sequence, optional
        TF's ``rate``.
    bias : array_like (C * M,), optional
        Added inside the kernel, as ``tf.nn.bias_add`` after the conv.
    activation : str or callable, optional
        Fused: None, "relu", "relu6", "sigmoid", "tanh", "silu" (or "swish"), "gelu",
        "gelu_tanh", "leaky_relu", "elu", "hard_swish", "hard_sigmoid"; or any NumPy-vectorised
        callable of the output array (applied after the kernel, on the host: slow but correct).
    alpha : float, optional
        leaky_relu's negative slope; TF's default 0.2 is fused, another runs after the kernel.
        Applied after the bias, inside the kernel.
    device : {None, "cpu", "cuda"}

    Returns
    -------
    ndarray
        (N, H_out, W_out, C * M) (or channels-first).

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.ones((1, 5, 5, 3), np.float32)
    >>> fastconv.depthwise_conv2d(x, np.ones((3, 3, 3, 2), np.float32), 1, "SAME").shape
    (1, 5, 5, 6)
    """
    x, channels_first, device = _prepare_input(input, 2, data_format, device, (filter, bias))
    dtype = array_dtype(x)
    w = _data(filter, "filter", device, dtype)
    check_same_dtype(dtype, "input", array_dtype(w), "filter")
    check_rank(w.shape, 4, "filter", "(H, W, in_channels, channel_multiplier)")
    channels = _split(x.shape, channels_first)[1]
    if w.shape[2] != channels:
        raise ValueError(f"filter has {w.shape[2]} in_channels but input has {channels} channels; "
                         f"filter shape {tuple(w.shape)}")
    multiplier = w.shape[3]
    if min(w.shape) < 1:
        raise ValueError(f"filter must have non-zero sizes, got shape {tuple(w.shape)}")
    # A depthwise conv is a grouped conv with one input channel per group.
    grouped = w.reshape((w.shape[0], w.shape[1], 1, channels * multiplier))
    window = _conv_window(2, strides, padding, dilations, channels_first, "strides")
    bias = _bias(bias, channels * multiplier, device, dtype)
    act = resolve_activation(activation, alpha)
    return _activate_after(_run_conv(x, grouped, bias, window, channels, act.code,
                                     channels_first, 2, device), act)


def separable_conv2d(input, depthwise_filter, pointwise_filter, strides, padding,
                     data_format=None, dilations=None, *, bias=None, activation=None, alpha=None,
                     device=None):
    """Depthwise-separable 2-D convolution, as ``tf.nn.separable_conv2d``: a depthwise conv
    (:func:`depthwise_conv2d`) then a 1x1 conv mixing its channels.

    Parameters
    ----------
    input : array_like (N, H, W, C) or (N, C, H, W)
    depthwise_filter : array_like (K_h, K_w, C, M)
    pointwise_filter : array_like (1, 1, C * M, out_channels)
    strides : int or sequence
        The depthwise conv's strides (the 1x1 conv has stride 1).
    padding : {"SAME", "VALID"} or list of pairs
        The depthwise conv's padding.
    data_format : {None, "NHWC", "NCHW"}
        None means channels-last.
    dilations : int or sequence, optional
        TF's ``rate`` of the depthwise conv.
    bias : array_like (out_channels,), optional
    activation : str or callable, optional
        Fused: None, "relu", "relu6", "sigmoid", "tanh", "silu" (or "swish"), "gelu",
        "gelu_tanh", "leaky_relu", "elu", "hard_swish", "hard_sigmoid"; or any NumPy-vectorised
        callable of the output array (applied after the kernel, on the host: slow but correct).
    alpha : float, optional
        leaky_relu's negative slope; TF's default 0.2 is fused, another runs after the kernel.
        Both fused into the 1x1 conv (extensions: Keras' ``SeparableConv2D`` adds them).
    device : {None, "cpu", "cuda"}

    Returns
    -------
    ndarray
        (N, H_out, W_out, out_channels) (or channels-first).

    Notes
    -----
    Two passes: the depthwise result is rounded to the input's dtype before the 1x1 conv, as
    TF's two kernels do. (Running a large batch a few images at a time, so that the depthwise
    result stays in cache, measured 0.63-0.89x of the two whole-batch passes: benchmarks/
    RESULTS.md.)

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.ones((1, 5, 5, 3), np.float32)
    >>> fastconv.separable_conv2d(x, np.ones((3, 3, 3, 2), np.float32),
    ...                           np.ones((1, 1, 6, 4), np.float32), 1, "SAME").shape
    (1, 5, 5, 4)
    """
    fmt = "NHWC" if data_format is None else data_format
    depthwise_shape = _shape_of(depthwise_filter)
    pointwise_shape = _shape_of(pointwise_filter)
    if len(pointwise_shape) != 4 or pointwise_shape[:2] != (1, 1):
        raise ValueError(f"pointwise_filter must have shape (1, 1, in_channels * "
                         f"channel_multiplier, out_channels), got {pointwise_shape}")
    if len(depthwise_shape) == 4 and \
            pointwise_shape[2] != depthwise_shape[2] * depthwise_shape[3]:
        raise ValueError(f"pointwise_filter's in_channels ({pointwise_shape[2]}) must be the "
                         f"depthwise output's {depthwise_shape[2] * depthwise_shape[3]} channels "
                         f"(in_channels x channel_multiplier of depthwise_filter "
                         f"{depthwise_shape})")
    if bias is not None:  # checked again by the 1x1 conv, but before the depthwise runs
        _check_bias_shape(_shape_of(bias), pointwise_shape[3])
    check_device(device)
    resolve_activation(activation, alpha)
    middle = depthwise_conv2d(input, depthwise_filter, strides, padding, fmt, dilations,
                              device=device)
    return conv2d(middle, pointwise_filter, 1, "VALID", fmt, bias=bias, activation=activation,
                  alpha=alpha, device=device)


def _shape_of(value):
    """The shape of an array-like argument without converting it (device arrays stay put)."""
    shape = getattr(value, "shape", None)
    return tuple(int(n) for n in (np.shape(value) if shape is None else shape))


def conv2d_transpose(input, filters, output_shape, strides, padding="SAME", data_format="NHWC",
                     dilations=None, *, bias=None,
                     activation=None, alpha=None, device=None):
    """Transposed 2-D convolution (the gradient of conv2d), as ``tf.nn.conv2d_transpose``.

    Parameters
    ----------
    input : array_like (N, H, W, in_channels) or channels-first
    filters : array_like (K_h, K_w, out_channels, in_channels)
        TF's layout in every ``data_format``: note output channels come before input channels
        (PyTorch's ``(in, out, K_h, K_w)`` weights: ``w.transpose(2, 3, 1, 0)``). Grouped
        (PyTorch's ``groups``; TF has none) when ``output_shape`` has a multiple of the
        filters' out_channels: ``(K_h, K_w, out_channels / groups, in_channels)``, each group
        of ``in_channels / groups`` input channels filling its block of output channels.
    output_shape : sequence of 4 ints (or 2 spatial sizes)
        The shape of the result; conv2d with the same arguments must map it back to
        ``input``'s spatial shape.
    strides : int or sequence
    padding : {"SAME", "VALID"} or list of pairs
    data_format : {"NHWC", "NCHW"}
    dilations : int or sequence, optional
    bias : array_like (out_channels,), optional
        Added to every output (an extension: tf.nn has none).
    activation : str or callable, optional
        Fused: None, "relu", "relu6", "sigmoid", "tanh", "silu" (or "swish"), "gelu",
        "gelu_tanh", "leaky_relu", "elu", "hard_swish", "hard_sigmoid"; or any NumPy-vectorised
        callable of the output array (applied after the kernel, on the host: slow but correct).
    alpha : float, optional
        leaky_relu's negative slope; TF's default 0.2 is fused, another runs after the kernel.
    device : {None, "cpu", "cuda"}

    Returns
    -------
    ndarray
        ``output_shape``, the input's dtype.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.ones((1, 4, 4, 8), np.float32)
    >>> w = np.ones((3, 3, 16, 8), np.float32)
    >>> fastconv.conv2d_transpose(x, w, (1, 8, 8, 16), 2, "SAME").shape
    (1, 8, 8, 16)
    """
    return _conv_transpose(2, input, filters, output_shape, strides, padding, data_format,
                           dilations, device, bias, activation, alpha)


_TRANSPOSED_FILTER_LAYOUT = {1: "(W, out_channels, in_channels)",
                             2: "(H, W, out_channels, in_channels)",
                             3: "(D, H, W, out_channels, in_channels)"}


def _conv_transpose(n_spatial, input, filters, output_shape, strides, padding, data_format,
                    dilations, device, bias=None, activation=None, alpha=None):
    """Validate and run a transposed conv of ``n_spatial`` dims (TF's filter layout; grouped
    when the output has a multiple of the filters' out_channels)."""
    x, channels_first, device = _prepare_input(input, n_spatial, data_format, device,
                                               (filters, bias))
    dtype = array_dtype(x)
    w = _data(filters, "filters", device, dtype)
    check_same_dtype(dtype, "input", array_dtype(w), "filters")
    check_rank(w.shape, n_spatial + 2, "filters", _TRANSPOSED_FILTER_LAYOUT[n_spatial])
    strides = normalize_window(strides, n_spatial, "strides", channels_first)
    dilations = normalize_window(dilations, n_spatial, "dilations", channels_first,
                                 allow_none_default=1)
    padding = parse_padding(padding, n_spatial, channels_first)
    batch, channels, spatial = _split(x.shape, channels_first)
    w_shape = tuple(w.shape)  # device arrays' shapes may not take negative indices
    if min(w_shape) < 1:
        raise ValueError(f"filters must have non-zero sizes, got shape {w_shape}")
    if w_shape[-1] != channels:
        raise ValueError(f"filters' in_channels (last dim, {w_shape[-1]}) must equal the "
                         f"input's {channels} channels (grouped too: (*kernel, out_channels / "
                         f"groups, in_channels), as PyTorch's (in, out / groups, *kernel) "
                         f"weights transposed); filters shape {w_shape}")
    group_out = w_shape[-2]
    output_shape = _output_shape(output_shape, batch, group_out, channels_first, n_spatial,
                                 in_channels=channels)
    out_channels = _split(output_shape, channels_first)[1]
    groups = out_channels // group_out
    out_spatial = _split(output_shape, channels_first)[2]
    bias = _bias(bias, out_channels, device, dtype)
    act = resolve_activation(activation, alpha)
    return _activate_after(_run_conv_transpose(x, w, bias, out_spatial,
                                               (strides, padding, dilations), channels_first,
                                               n_spatial, device, output_shape, groups,
                                               act.code), act)


def conv1d_transpose(input, filters, output_shape, strides, padding="SAME", data_format="NWC",
                     dilations=None, *, bias=None,
                     activation=None, alpha=None, device=None):
    """Transposed 1-D convolution (the gradient of conv1d), as ``tf.nn.conv1d_transpose``.

    Parameters
    ----------
    input : array_like (N, W, in_channels) or channels-first
    filters : array_like (K_w, out_channels, in_channels)
        TF's layout in every ``data_format`` (PyTorch's ``(in, out, K_w)``:
        ``w.transpose(2, 1, 0)``).
    output_shape : sequence of 3 ints (or 1 spatial size)
        The shape of the result; conv1d with the same arguments must map it back to
        ``input``'s width.
    strides : int or sequence
    padding : {"SAME", "VALID"} or list of pairs
    data_format : {"NWC", "NCW"}
    dilations : int or sequence, optional
    bias : array_like (out_channels,), optional
        Added to every output (an extension: tf.nn has none).
    activation : str or callable, optional
        Fused: None, "relu", "relu6", "sigmoid", "tanh", "silu" (or "swish"), "gelu",
        "gelu_tanh", "leaky_relu", "elu", "hard_swish", "hard_sigmoid"; or any NumPy-vectorised
        callable of the output array (applied after the kernel, on the host: slow but correct).
    alpha : float, optional
        leaky_relu's negative slope; TF's default 0.2 is fused, another runs after the kernel.
    device : {None, "cpu", "cuda"}

    Returns
    -------
    ndarray
        ``output_shape``, the input's dtype.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> fastconv.conv1d_transpose(np.ones((1, 3, 1)), np.ones((2, 1, 1)), (1, 6, 1), 2)[0, :, 0]
    array([1., 1., 1., 1., 1., 1.])
    """
    return _conv_transpose(1, input, filters, output_shape, strides, padding, data_format,
                           dilations, device, bias, activation, alpha)


def conv3d_transpose(input, filters, output_shape, strides, padding="SAME",
                     data_format="NDHWC", dilations=None, *, bias=None,
                     activation=None, alpha=None, device=None):
    """Transposed 3-D convolution (the gradient of conv3d), as ``tf.nn.conv3d_transpose``.

    Parameters
    ----------
    input : array_like (N, D, H, W, in_channels) or channels-first
    filters : array_like (K_d, K_h, K_w, out_channels, in_channels)
        TF's layout in every ``data_format`` (PyTorch's ``(in, out, K_d, K_h, K_w)``:
        ``w.transpose(2, 3, 4, 1, 0)``).
    output_shape : sequence of 5 ints (or 3 spatial sizes)
    strides : int or sequence
    padding : {"SAME", "VALID"} or list of pairs
    data_format : {"NDHWC", "NCDHW"}
    dilations : int or sequence, optional
    bias : array_like (out_channels,), optional
        Added to every output (an extension: tf.nn has none).
    activation : str or callable, optional
        Fused: None, "relu", "relu6", "sigmoid", "tanh", "silu" (or "swish"), "gelu",
        "gelu_tanh", "leaky_relu", "elu", "hard_swish", "hard_sigmoid"; or any NumPy-vectorised
        callable of the output array (applied after the kernel, on the host: slow but correct).
    alpha : float, optional
        leaky_relu's negative slope; TF's default 0.2 is fused, another runs after the kernel.
    device : {None, "cpu", "cuda"}

    Returns
    -------
    ndarray
        ``output_shape``, the input's dtype.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x, w = np.ones((1, 2, 2, 2, 3)), np.ones((3, 3, 3, 4, 3))
    >>> fastconv.conv3d_transpose(x, w, (1, 4, 4, 4, 4), 2).shape
    (1, 4, 4, 4, 4)
    """
    return _conv_transpose(3, input, filters, output_shape, strides, padding, data_format,
                           dilations, device, bias, activation, alpha)


def conv_transpose(input, filters, output_shape, strides, padding="SAME", data_format=None,
                   dilations=None, *, bias=None,
                   activation=None, alpha=None, device=None):
    """Transposed convolution of any spatial rank, as ``tf.nn.conv_transpose``: the length of
    ``output_shape`` decides (3: :func:`conv1d_transpose`, 4: :func:`conv2d_transpose`, 5:
    :func:`conv3d_transpose`).

    Parameters
    ----------
    input : array_like, 3-D to 5-D
    filters : array_like (*kernel, out_channels, in_channels)
    output_shape : sequence of 3 to 5 ints
    strides : int or sequence
    padding : {"SAME", "VALID"} or list of pairs
    data_format : str, optional
        None means channels-last; a format starting with ``"NC"`` means channels-first.
    dilations : int or sequence, optional
    bias : array_like (out_channels,), optional
        Added to every output (an extension: tf.nn has none).
    activation : str or callable, optional
        Fused: None, "relu", "relu6", "sigmoid", "tanh", "silu" (or "swish"), "gelu",
        "gelu_tanh", "leaky_relu", "elu", "hard_swish", "hard_sigmoid"; or any NumPy-vectorised
        callable of the output array (applied after the kernel, on the host: slow but correct).
    alpha : float, optional
        leaky_relu's negative slope; TF's default 0.2 is fused, another runs after the kernel.
    device : {None, "cpu", "cuda"}

    Returns
    -------
    ndarray
        ``output_shape``, the input's dtype.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> fastconv.conv_transpose(np.ones((1, 4, 4, 8)), np.ones((3, 3, 2, 8)), (1, 8, 8, 2),
    ...                         2).shape
    (1, 8, 8, 2)
    """
    n_spatial = len(_shape_values(output_shape, "output_shape")) - 2
    if n_spatial not in (1, 2, 3):
        raise ValueError(f"output_shape must have 3, 4 or 5 entries (batch, spatial dims, "
                         f"channels), got {len(_shape_values(output_shape, 'output_shape'))}")
    return _conv_transpose(n_spatial, input, filters, output_shape, strides, padding,
                           data_format, dilations, device, bias, activation, alpha)


def atrous_conv2d(value, filters, rate, padding, *, bias=None, activation=None, alpha=None, device=None):
    """Atrous (dilated) 2-D convolution, as ``tf.nn.atrous_conv2d``: :func:`conv2d` with stride
    1 and ``dilations=rate``, channels-last.

    Parameters
    ----------
    value : array_like (N, H, W, in_channels)
    filters : array_like (K_h, K_w, in_channels, out_channels)
    rate : int
        The dilation, at least 1.
    padding : {"SAME", "VALID"}
    bias : array_like (out_channels,), optional
    activation : str or callable, optional
        Fused: None, "relu", "relu6", "sigmoid", "tanh", "silu" (or "swish"), "gelu",
        "gelu_tanh", "leaky_relu", "elu", "hard_swish", "hard_sigmoid"; or any NumPy-vectorised
        callable of the output array (applied after the kernel, on the host: slow but correct).
    alpha : float, optional
        leaky_relu's negative slope; TF's default 0.2 is fused, another runs after the kernel.
        Both fused as in :func:`conv2d` (extensions: tf.nn has neither).
    device : {None, "cpu", "cuda"}

    Returns
    -------
    ndarray

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> fastconv.atrous_conv2d(np.ones((1, 7, 7, 1)), np.ones((3, 3, 1, 1)), 2, "VALID").shape
    (1, 3, 3, 1)
    """
    return _conv(2, value, filters, 1, _atrous_padding(padding),
                 "NHWC", _atrous_rate(rate), bias, activation, device, alpha=alpha)


def atrous_conv2d_transpose(value, filters, output_shape, rate, padding, *, bias=None,
                            activation=None, alpha=None, device=None):
    """The transpose of :func:`atrous_conv2d`, as ``tf.nn.atrous_conv2d_transpose``:
    :func:`conv2d_transpose` with stride 1 and ``dilations=rate``, channels-last.

    Parameters
    ----------
    value : array_like (N, H, W, in_channels)
    filters : array_like (K_h, K_w, out_channels, in_channels)
    output_shape : sequence of 4 ints
    rate : int
        The dilation, at least 1.
    padding : {"SAME", "VALID"}
    bias : array_like (out_channels,), optional
        Added to every output (an extension: tf.nn has none).
    activation : str or callable, optional
        Fused: None, "relu", "relu6", "sigmoid", "tanh", "silu" (or "swish"), "gelu",
        "gelu_tanh", "leaky_relu", "elu", "hard_swish", "hard_sigmoid"; or any NumPy-vectorised
        callable of the output array (applied after the kernel, on the host: slow but correct).
    alpha : float, optional
        leaky_relu's negative slope; TF's default 0.2 is fused, another runs after the kernel.
    device : {None, "cpu", "cuda"}

    Returns
    -------
    ndarray
        ``output_shape``.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x, w = np.ones((1, 3, 3, 1)), np.ones((3, 3, 1, 1))
    >>> fastconv.atrous_conv2d_transpose(x, w, (1, 7, 7, 1), 2, "VALID").shape
    (1, 7, 7, 1)
    """
    return _conv_transpose(2, value, filters, output_shape, 1, _atrous_padding(padding),
                           "NHWC", _atrous_rate(rate), device, bias, activation, alpha)


def _atrous_rate(rate):
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)):
        raise TypeError(f"rate must be an int, got {type(rate).__name__}")
    if rate < 1:
        raise ValueError(f"rate {int(rate)} cannot be less than one")
    return int(rate)


def _atrous_padding(padding):
    if not isinstance(padding, str) or padding.upper() not in ("SAME", "VALID"):
        raise ValueError(f'padding must be "SAME" or "VALID" (tf.nn.atrous_conv2d), got '
                         f"{padding!r}")
    return padding


def _run_conv_transpose(x, w, bias, out_spatial, window, channels_first, n_spatial, device,
                        output_shape=None, groups=1, activation=0):
    """Dispatch a validated transposed conv: ``w`` (*kernel, out_channels, in_channels) in TF's
    layout, ``window`` (strides, padding, dilations) of the forward conv that maps
    ``out_spatial`` back to the input's spatial sizes (checked here)."""
    strides, padding, dilations = window
    batch, _, spatial = _split(x.shape, channels_first)
    w_shape = tuple(w.shape)
    out_channels = w_shape[n_spatial] * groups
    out_spatial = tuple(out_spatial)
    geometry = window_geometry(out_spatial, w_shape[:n_spatial], strides, dilations, padding)
    if geometry.out_sizes != spatial:
        shown = tuple(output_shape) if output_shape is not None else out_spatial
        raise ValueError(f"output_shape {shown} is inconsistent with the input: a "
                         f"conv with these strides/padding maps spatial size {out_spatial} to "
                         f"{geometry.out_sizes}, not to the input's {spatial}")
    w5 = w.reshape((1,) * (3 - n_spatial) + w_shape)
    geometry3 = pad_to_3d(geometry)
    problem = ConvTransposeProblem(_to_5d(x, n_spatial, channels_first), w5, geometry3,
                                   channels_first, layout_shape(batch, out_channels,
                                                                geometry3.in_sizes,
                                                                channels_first),
                                   array_dtype(x), bias, groups, activation)
    return _finish(dispatch.run("conv_transpose", device, problem),
                   layout_shape(batch, out_channels, out_spatial, channels_first))


def _shape_values(output_shape, name):
    """``output_shape`` (a sequence, NumPy array or TF tensor of ints) as a tuple of ints."""
    if hasattr(output_shape, "numpy"):
        output_shape = output_shape.numpy()
    if hasattr(output_shape, "tolist"):
        output_shape = output_shape.tolist()
    if not isinstance(output_shape, (list, tuple)):
        raise TypeError(f"{name} must be a sequence of ints, got "
                        f"{type(output_shape).__name__}")
    return tuple(as_int(v, name) for v in output_shape)


def _output_shape(output_shape, batch, out_channels, channels_first, n_spatial=2,
                  in_channels=None):
    """``output_shape`` checked against the batch and the filters' ``out_channels``; with
    ``in_channels`` (a transposed conv's input channels) a multiple of ``out_channels`` means
    a grouped transposed conv, whose groups must divide ``in_channels``."""
    values = _shape_values(output_shape, "output_shape")
    if len(values) == n_spatial:
        values = layout_shape(batch, out_channels, values, channels_first)
    if len(values) != n_spatial + 2:
        raise ValueError(f"output_shape must have {n_spatial + 2} entries, got {list(values)}")
    got_batch, got_channels, spatial = _split(values, channels_first)
    if got_batch != batch:
        raise ValueError(f"output_shape batch ({got_batch}) must equal the input's batch ({batch})")
    groups = got_channels // out_channels if got_channels % out_channels == 0 else 0
    if in_channels is not None and groups > 1 and in_channels % groups == 0:
        pass  # grouped: groups = output channels / the filters' out_channels
    elif got_channels != out_channels:
        raise ValueError(f"output_shape channels ({got_channels}) must equal the filters' "
                         f"out_channels ({out_channels})"
                         + ("" if in_channels is None else
                            f", or be a multiple of it by a number of groups that divides "
                            f"the input's {in_channels} channels"))
    if min(spatial) < 1:
        raise ValueError(f"output_shape spatial sizes must be positive, got {list(values)}")
    check_int32(spatial, "output_shape")
    return values


# ----------------------------------------------------------------------------- pooling

def _pool(kind, n_spatial, input, ksize, strides, padding, data_format, device):
    x, channels_first, device = _prepare_input(input, n_spatial, data_format, device)
    ksize = normalize_window(ksize, n_spatial, "ksize", channels_first)
    strides = normalize_window(strides, n_spatial, "strides", channels_first)
    padding = parse_padding(padding, n_spatial, channels_first, allow_explicit=kind == "max")
    batch, channels, spatial = _split(x.shape, channels_first)
    geometry = window_geometry(spatial, ksize, strides, (1,) * n_spatial, padding)
    _check_pool_padding(padding, geometry, ksize)
    geometry3 = pad_to_3d(geometry)
    problem = PoolProblem(_to_5d(x, n_spatial, channels_first), geometry3, channels_first,
                          layout_shape(batch, channels, geometry3.out_sizes, channels_first),
                          array_dtype(x), kind)
    out = dispatch.run(f"{kind}_pool", device, problem)
    return _finish(out, layout_shape(batch, channels, geometry.out_sizes, channels_first))


def _check_pool_padding(padding, geometry, ksize):
    """Explicit pooling padding must be smaller than the window (TF's rule)."""
    if padding not in ("SAME", "VALID"):
        for (before, after), k in zip(geometry.pads, ksize):
            if before >= k or after >= k:
                raise ValueError(f"explicit padding {padding} must be smaller than ksize {ksize}: "
                                 f"a window could hold only padding")


def _pool_doc(kind, n_spatial):
    last, first = LAYOUTS[n_spatial]
    what = ("Max pooling (padding counts as the lowest value; NaN never wins, as on TF's CPU)"
            if kind == "max" else "Average pooling (divides by the number of real, unpadded cells)")
    padding = ("{'SAME', 'VALID'} or list of pairs" if kind == "max" else "{'SAME', 'VALID'}")
    shape = {1: "(1, 10, 1)", 2: "(1, 5, 5, 1)", 3: "(1, 4, 4, 4, 1)"}[n_spatial]
    out = {1: "(1, 9, 1)", 2: "(1, 4, 4, 1)", 3: "(1, 3, 3, 3, 1)"}[n_spatial]
    return f"""{what}, as ``tf.nn.{kind}_pool{n_spatial}d``.

    Parameters
    ----------
    input : array_like, {last} or {first}
        float32 or float64; the output keeps the dtype (TF turns float64 into float32).
    ksize : int or sequence
        Window size: an int, {n_spatial} values, or TF's {n_spatial + 2}-element form.
    strides : int or sequence
    padding : {padding}
    data_format : {{"{last}", "{first}"}}
    device : {{None, "cpu", "cuda"}}

    Returns
    -------
    ndarray

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.arange(np.prod({shape}), dtype=np.float32).reshape({shape})
    >>> fastconv.{kind}_pool{n_spatial}d(x, 2, 1, "VALID").shape
    {out}
    """


def _make_pool(kind, n_spatial):
    default_format = LAYOUTS[n_spatial][0]

    def pool(input, ksize, strides, padding, data_format=default_format, *, device=None):
        return _pool(kind, n_spatial, input, ksize, strides, padding, data_format, device)

    pool.__name__ = pool.__qualname__ = f"{kind}_pool{n_spatial}d"
    pool.__doc__ = _pool_doc(kind, n_spatial)
    pool.__module__ = __name__
    return pool


max_pool1d = _make_pool("max", 1)
max_pool2d = _make_pool("max", 2)
max_pool3d = _make_pool("max", 3)
avg_pool1d = _make_pool("avg", 1)
avg_pool2d = _make_pool("avg", 2)
avg_pool3d = _make_pool("avg", 3)


def _spatial_rank(input):
    """The number of spatial dims of ``input`` for the rank-generic ops (1 to 3)."""
    shape = getattr(input, "shape", None)
    rank = len(shape) if shape is not None else np.ndim(as_host_array(input, "input"))
    if not 3 <= rank <= 5:
        raise ValueError(f"input must be 3-D, 4-D or 5-D (N, *spatial, C) or channels-first, "
                         f"got {rank}-D")
    return rank - 2


_RANK_GENERIC_DOC = {
    "max": ("Max", '{"SAME", "VALID"} or list of pairs', "TF's CPU max rule, as :func:`max_pool2d`",
            '>>> fastconv.max_pool(np.ones((1, 6, 6, 6, 2), np.float32), 2, 2, "VALID").shape\n'
            '    (1, 3, 3, 3, 2)\n'
            '    >>> fastconv.max_pool(np.arange(5.0).reshape(1, 5, 1), 2, 2, "SAME")[0, :, 0]\n'
            '    array([1., 3., 4.])'),
    "avg": ("Average", '{"SAME", "VALID"}', "the mean of each window's real (unpadded) cells",
            '>>> fastconv.avg_pool(np.arange(5.0).reshape(1, 5, 1), 2, 2, "SAME")[0, :, 0]\n'
            '    array([0.5, 2.5, 4. ])'),
}


def _make_rank_generic_pool(kind):
    what, padding, result, example = _RANK_GENERIC_DOC[kind]

    def pool(input, ksize, strides, padding, data_format=None, *, device=None):
        return _pool(kind, _spatial_rank(input), input, ksize, strides, padding, data_format,
                     device)

    pool.__name__ = pool.__qualname__ = f"{kind}_pool"
    pool.__module__ = __name__
    pool.__doc__ = f"""{what} pooling of any spatial rank, as ``tf.nn.{kind}_pool``: the input's
    rank decides.

    Parameters
    ----------
    input : array_like, 3-D to 5-D
        Channels-last (``NWC``/``NHWC``/``NDHWC``) or, with ``data_format`` starting with
        ``"NC"``, channels-first.
    ksize, strides : int or sequence
        An int, one value per spatial dim, or TF's full form.
    padding : {padding}
    data_format : str, optional
        None means channels-last.
    device : {{None, "cpu", "cuda"}}

    Returns
    -------
    ndarray
        As the 1-D/2-D/3-D op of the input's rank: {result}.

    Examples
    --------
    >>> import numpy as np, fastconv
    {example}
    """
    return pool


max_pool = _make_rank_generic_pool("max")
avg_pool = _make_rank_generic_pool("avg")


def pool(input, window_shape, pooling_type, strides=None, padding="VALID", data_format=None,
         dilations=None, *, device=None):
    """Max or average pooling of any spatial rank, dilated too, as ``tf.nn.pool``.

    Parameters
    ----------
    input : array_like, 3-D to 5-D
        Channels-last, or channels-first with a ``data_format`` starting with ``"NC"``.
    window_shape : sequence of ints
        One size per spatial dim (the input's rank decides how many).
    pooling_type : {"MAX", "AVG"}
        Either case (TF's spelling is upper case).
    strides : sequence of ints, optional
        None means 1; must be 1 where a dilation exceeds 1 (TF's rule).
    padding : {"SAME", "VALID"} or list of pairs
        Explicit pairs for "MAX" only; with a dilation above 1, "VALID" only (TF's rules:
        ``tf.nn.pool`` refuses the rest).
    data_format : str, optional
    dilations : sequence of ints, optional
        TF's ``dilation_rate``: window cells ``dilations`` apart.
    device : {None, "cpu", "cuda"}

    Returns
    -------
    ndarray
        As :func:`max_pool` / :func:`avg_pool`; dilated windows are pooled as TF pools them
        (space-to-batch: each phase of the input pooled undilated), so NaN never wins the max.

    Notes
    -----
    Dilated pooling of GPU arrays runs on the host (a copy each way).

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.arange(6.0).reshape(1, 6, 1)
    >>> fastconv.pool(x, [2], "MAX", dilations=[2])[0, :, 0]
    array([2., 3., 4., 5.])
    >>> fastconv.pool(x, [2], "AVG", strides=[2], padding="SAME")[0, :, 0]
    array([0.5, 2.5, 4.5])
    """
    n_spatial = _spatial_rank(input)
    if not isinstance(pooling_type, str) or pooling_type.upper() not in ("MAX", "AVG"):
        raise ValueError(f"pooling_type must be 'MAX' or 'AVG', got {pooling_type!r}")
    kind = pooling_type.lower()
    channels_first = parse_data_format(data_format, n_spatial)
    window = _pool_list(window_shape, n_spatial, "window_shape")
    strides = (1,) * n_spatial if strides is None else _pool_list(strides, n_spatial, "strides")
    rates = (1,) * n_spatial if dilations is None else _pool_list(dilations, n_spatial,
                                                                  "dilations")
    if max(rates) == 1:
        return _pool(kind, n_spatial, input, window, strides, padding, data_format, device)
    if max(strides) > 1:
        raise ValueError(f"strides must be 1 where dilations exceed 1 (tf.nn.pool's rule), got "
                         f"strides={list(strides)} and dilations={list(rates)}")
    if not (isinstance(padding, str) and padding.upper() == "VALID"):
        raise ValueError(f"padding must be 'VALID' where dilations exceed 1 (tf.nn.pool "
                         f"refuses the rest), got {padding!r}")
    check_device(device)
    on_device = is_device_array(input) and not isinstance(input, np.ndarray)
    x = as_host_array(input, "input")
    check_float_dtype(array_dtype(x), "input")
    check_rank(x.shape, n_spatial + 2, "input", _layout_hint(n_spatial, channels_first))
    batch, channels, spatial = _split(x.shape, channels_first)
    geometry = window_geometry(spatial, window, (1,) * n_spatial, rates, "VALID")
    out = np.empty(layout_shape(batch, channels, geometry.out_sizes, channels_first), x.dtype)
    first_axis = 2 if channels_first else 1
    for phase in itertools.product(*(range(r) for r in rates)):
        steps = tuple(slice(a, None, r) for a, r in zip(phase, rates))
        index = (slice(None),) * first_axis + steps
        part = np.ascontiguousarray(x[index])
        if any(size < k for size, k in zip(_split(part.shape, channels_first)[2], window)):
            continue  # this phase holds no whole window
        out[index] = _pool(kind, n_spatial, part, window, (1,) * n_spatial, "VALID",
                           data_format, "cpu")
    return dispatch.to_device_like(out, input) if on_device else out


def _pool_list(values, n_spatial, name):
    """``tf.nn.pool``'s per-spatial-dim lists (an int is taken for every dim)."""
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        values = [values] * n_spatial
    values = _shape_values(values, name)
    if len(values) != n_spatial:
        raise ValueError(f"{name} must have one value per spatial dim ({n_spatial}), got "
                         f"{list(values)}")
    if min(values) < 1:
        raise ValueError(f"{name} must be positive, got {list(values)}")
    return values


def _global_pool(kind, input, data_format, keepdims, device):
    x, channels_first, device = _prepare_input(input, 2, data_format, device)
    if not isinstance(keepdims, (bool, np.bool_)):
        raise TypeError(f"keepdims must be a bool, got {type(keepdims).__name__}")
    batch, channels, _ = _split(x.shape, channels_first)
    problem = GlobalPoolProblem(_to_5d(x, 2, channels_first), channels_first, (batch, channels),
                                array_dtype(x), kind)
    out = dispatch.run("global_pool", device, problem)
    if keepdims:
        return out.reshape((batch, channels, 1, 1) if channels_first else (batch, 1, 1, channels))
    return out


_GLOBAL_DOC = {"max": ("Maximum", "GlobalMaxPooling2D", " (NaN propagates)", "[[6., 7.]]"),
               "avg": ("Mean", "GlobalAveragePooling2D", "", "[[3., 4.]]")}


def _make_global_pool(kind):
    what, layer, nan, example = _GLOBAL_DOC[kind]

    def global_pool(input, data_format="NHWC", keepdims=False, *, device=None):
        return _global_pool(kind, input, data_format, keepdims, device)

    global_pool.__name__ = global_pool.__qualname__ = f"global_{kind}_pool2d"
    global_pool.__module__ = __name__
    global_pool.__doc__ = f"""{what} over all spatial positions, as Keras ``{layer}``{nan}.

    Parameters
    ----------
    input : array_like (N, H, W, C) or (N, C, H, W)
    data_format : {{"NHWC", "NCHW", "channels_last", "channels_first"}}
    keepdims : bool
        Keep the spatial dims as size 1.
    device : {{None, "cpu", "cuda"}}

    Returns
    -------
    ndarray
        (N, C), or (N, 1, 1, C) / (N, C, 1, 1) with ``keepdims``.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    >>> fastconv.global_{kind}_pool2d(x)
    array({example}, dtype=float32)
    """
    return global_pool


global_max_pool2d = _make_global_pool("max")
global_avg_pool2d = _make_global_pool("avg")


def _zero_pad_pairs(padding):
    """Keras ZeroPadding2D's forms: p, (ph, pw), or ((top, bottom), (left, right))."""
    if isinstance(padding, (list, tuple)):
        if len(padding) != 2:
            raise ValueError(f"padding must be an int, 2 ints or 2 (before, after) pairs, got {padding!r}")
        pairs = []
        for item in padding:
            if isinstance(item, (list, tuple)):
                if len(item) != 2:
                    raise ValueError(f"padding pairs must have 2 entries, got {padding!r}")
                pairs.append((as_int(item[0], "padding"), as_int(item[1], "padding")))
            else:
                value = as_int(item, "padding")
                pairs.append((value, value))
    else:
        value = as_int(padding, "padding")
        pairs = [(value, value), (value, value)]
    if min(min(pair) for pair in pairs) < 0:
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    check_int32(sum(pairs, ()), "padding")
    return tuple(pairs)


def zero_pad2d(input, padding=1, data_format="NHWC", *, device=None):
    """Pad the two spatial dims with zeros, as Keras ``ZeroPadding2D``.

    Parameters
    ----------
    input : array_like (N, H, W, C) or (N, C, H, W)
    padding : int, (int, int) or ((top, bottom), (left, right))
    data_format : {"NHWC", "NCHW", "channels_last", "channels_first"}
    device : {None, "cpu", "cuda"}

    Returns
    -------
    ndarray
        (N, H + top + bottom, W + left + right, C) (or channels-first).

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> fastconv.zero_pad2d(np.ones((1, 28, 28, 1), np.float32), 1).shape
    (1, 30, 30, 1)
    """
    x, channels_first, device = _prepare_input(input, 2, data_format, device)
    return _run_zero_pad(x, _zero_pad_pairs(padding), channels_first, device)


def _run_zero_pad(x, pairs, channels_first, device):
    """Dispatch zero padding of a validated data-layout array by ``pairs``, one
    ``(before, after)`` pair per spatial dim."""
    n_spatial = len(pairs)
    batch, channels, spatial = _split(x.shape, channels_first)
    out_spatial = tuple(n + a + b for n, (a, b) in zip(spatial, pairs))
    pads3 = ((0, 0),) * (3 - n_spatial) + tuple(pairs)
    problem = PadProblem(_to_5d(x, n_spatial, channels_first), pads3, channels_first,
                         layout_shape(batch, channels, (1,) * (3 - n_spatial) + out_spatial,
                                      channels_first),
                         array_dtype(x))
    out = dispatch.run("zero_pad", device, problem)
    return _finish(out, layout_shape(batch, channels, out_spatial, channels_first))


# ----------------------------------------------------------------------------- window maxima

#: What :func:`max_pool_with_argmax` returns, as ``tf.nn.max_pool_with_argmax`` does.
MaxPoolWithArgmax = collections.namedtuple("MaxPoolWithArgmax", ["output", "argmax"])


def _index_dtype(output_dtype):
    """``output_dtype`` (NumPy, a string or a TF dtype) as int32 or int64."""
    dtype = getattr(output_dtype, "as_numpy_dtype", output_dtype)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"output_dtype must be int32 or int64, got {output_dtype!r}") from None
    if dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
        raise TypeError(f"output_dtype must be int32 or int64, got {dtype}")
    return dtype


def max_pool_with_argmax(input, ksize, strides, padding, data_format="NHWC",
                         output_dtype=np.int64, include_batch_in_index=False, *, device=None):
    """2-D max pooling that also returns where each maximum is, as
    ``tf.nn.max_pool_with_argmax``.

    Parameters
    ----------
    input : array_like (N, H, W, C), or (N, C, H, W) with ``data_format="NCHW"``
        float32 or float64. NCHW is an extension (TF accepts NHWC only).
    ksize, strides : int or sequence
        An int, 2 values or TF's 4-element form.
    padding : {"SAME", "VALID"}
    data_format : {"NHWC", "NCHW"}
    output_dtype : {np.int64, np.int32}
        The indices' dtype (TF's ``tf.int64``/``tf.int32`` are accepted too).
    include_batch_in_index : bool
        Whether the indices count the images before (TF's flag).
    device : {None, "cpu", "cuda"}

    Returns
    -------
    MaxPoolWithArgmax
        ``(output, argmax)``: the pooled values (as :func:`max_pool2d`, except that a window of
        NaN or -inf keeps its first cell's value, as TF's kernel does) and each maximum's flat
        index in the input as stored: ``(h * W + w) * C + c`` (plus ``n * H * W * C`` with
        ``include_batch_in_index``), for NCHW ``(c * H + h) * W + w`` (plus ``n * C * H * W``).
        Ties go to the window's first cell in row-major order; a NaN wins only in first place.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.array([[1., 3.], [3., 2.]], np.float32).reshape(1, 2, 2, 1)
    >>> out, argmax = fastconv.max_pool_with_argmax(x, 2, 2, "VALID")
    >>> out.ravel(), argmax.ravel()
    (array([3.], dtype=float32), array([1]))
    """
    if not isinstance(include_batch_in_index, (bool, np.bool_)):
        raise TypeError(f"include_batch_in_index must be a bool, got "
                        f"{type(include_batch_in_index).__name__}")
    index_dtype = _index_dtype(output_dtype)
    x, channels_first, device = _prepare_input(input, 2, data_format, device)
    ksize = normalize_window(ksize, 2, "ksize", channels_first)
    strides = normalize_window(strides, 2, "strides", channels_first)
    padding = parse_padding(padding, 2, channels_first, allow_explicit=False)
    batch, channels, spatial = _split(x.shape, channels_first)
    geometry = window_geometry(spatial, ksize, strides, (1, 1), padding)
    out_shape = layout_shape(batch, channels, geometry.out_sizes, channels_first)
    check_int32((int(np.prod(x.shape, dtype=np.int64)),) if index_dtype == np.int32 else (0,),
                "input size (int32 indices)")
    problem = WindowMaxProblem(x, None, geometry, channels_first, out_shape, array_dtype(x),
                               first_wins=True, with_indices=True,
                               include_batch=bool(include_batch_in_index),
                               index_dtype=index_dtype)
    return MaxPoolWithArgmax(*dispatch.run("window_max", device, problem))


def _morphology(input, filters, strides, padding, data_format, dilations, device, erode):
    x, channels_first, device = _prepare_input(input, 2, data_format, device, (filters,))
    dtype = array_dtype(x)
    w = _data(filters, "filters", device, dtype)
    check_same_dtype(dtype, "input", array_dtype(w), "filters")
    check_rank(w.shape, 3, "filters", "(K_h, K_w, channels)")
    batch, channels, spatial = _split(x.shape, channels_first)
    w_shape = tuple(w.shape)
    if min(w_shape) < 1:
        raise ValueError(f"filters must have non-zero sizes, got shape {w_shape}")
    if w_shape[2] != channels:
        raise ValueError(f"filters' depth ({w_shape[2]}) must equal the input's {channels} "
                         f"channels; filters shape {w_shape}")
    strides = normalize_window(strides, 2, "strides", channels_first)
    dilations = normalize_window(dilations, 2, "dilations", channels_first)
    padding = parse_padding(padding, 2, channels_first, allow_explicit=False)
    geometry = window_geometry(spatial, w_shape[:2], strides, dilations, padding)
    if erode:  # TF's erosion2d: -dilation2d(-x, filters reversed in both spatial dims)
        w = np.ascontiguousarray(as_host_array(w, "filters")[::-1, ::-1])
    problem = WindowMaxProblem(x, w, geometry, channels_first,
                               layout_shape(batch, channels, geometry.out_sizes, channels_first),
                               dtype, first_wins=False, negate=erode)
    return dispatch.run("window_max", device, problem)


_MORPHOLOGY_PARAMETERS = """Parameters
    ----------
    {x} : array_like (N, H, W, C), or (N, C, H, W) with ``data_format="NCHW"``
        float32 or float64.
    filters : array_like (K_h, K_w, C)
        The structuring function, one per channel (TF's layout).
    strides, dilations : int or sequence
        An int, 2 values or TF's 4-element form (``[1, s_h, s_w, 1]``).
    padding : {{"SAME", "VALID"}}
    data_format : {{"NHWC", "NCHW"}}
        TF requires "NHWC" (and the argument); NCHW is an extension.
    device : {{None, "cpu", "cuda"}}

    Returns
    -------
    ndarray
        (N, H_out, W_out, C) (or channels-first), the input's dtype."""


def dilation2d(input, filters, strides, padding, data_format, dilations, *, device=None):
    """Grayscale dilation, as ``tf.nn.dilation2d``: ``out[n, y, x, c] = max over (i, j) of
    input[n, y * s_h + i * r_h - pad_top, x * s_w + j * r_w - pad_left, c] + filters[i, j, c]``.

    Padding cells never take part; the maximum starts from the dtype's lowest finite value
    (TF's kernel), so NaN never wins and a window with no finite sum gives that value. The sums
    are rounded in the input's dtype, so results equal TF's bit for bit.

    {parameters}

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.array([0., 1., 5., 2.], np.float32).reshape(1, 1, 4, 1)
    >>> f = np.array([0., 1.], np.float32).reshape(1, 2, 1)
    >>> fastconv.dilation2d(x, f, 1, "VALID", "NHWC", 1).ravel()
    array([2., 6., 5.], dtype=float32)
    """
    return _morphology(input, filters, strides, padding, data_format, dilations, device, False)


def erosion2d(value, filters, strides, padding, data_format, dilations, *, device=None):
    """Grayscale erosion, as ``tf.nn.erosion2d``: ``-dilation2d(-value, filters reversed in
    height and width)``, computed exactly so: ``out[n, y, x, c] = min over (i, j) of
    value[n, y * s_h + i * r_h - pad_top, x * s_w + j * r_w - pad_left, c] -
    filters[K_h - 1 - i, K_w - 1 - j, c]``, the minimum starting from the largest finite value.

    {parameters}

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> x = np.array([0., 1., 5., 2.], np.float32).reshape(1, 1, 4, 1)
    >>> f = np.array([0., 1.], np.float32).reshape(1, 2, 1)
    >>> fastconv.erosion2d(x, f, 1, "VALID", "NHWC", 1).ravel()
    array([-1.,  0.,  2.], dtype=float32)
    """
    return _morphology(value, filters, strides, padding, data_format, dilations, device, True)


dilation2d.__doc__ = dilation2d.__doc__.format(
    parameters=_MORPHOLOGY_PARAMETERS.format(x="input"))
erosion2d.__doc__ = erosion2d.__doc__.format(parameters=_MORPHOLOGY_PARAMETERS.format(x="value"))


# ----------------------------------------------------------------------------- dask arrays

def _follows_dask(op):
    """``op`` that returns a lazy dask array when its input is one (:mod:`fastconv.chunked`)."""
    @functools.wraps(op)
    def follows(*args, **kwargs):
        if not is_dask_array(args[0] if args else kwargs.get("input")):
            return op(*args, **kwargs)
        from . import chunked

        if args:
            return chunked.run(op, args[0], args[1:], kwargs)
        kwargs = dict(kwargs)
        return chunked.run(op, kwargs.pop("input"), (), kwargs)
    return follows


#: Ops made of other ops: each inner op follows dask arrays itself.
_COMPOSITE = {"separable_conv2d"}

for _name in NAMES:
    if _name not in _COMPOSITE:
        globals()[_name] = _follows_dask(globals()[_name])
    # float16 / bfloat16: float32 kernels, rounded back once (fastconv.half); every op but the
    # transposed convs (whose output_shape names the batch) runs large batches in chunks
    globals()[_name] = widening(globals()[_name],
                                batched=_ops.get(_name).family != "conv_transpose",
                                native_pool=_ops.get(_name).family in ("max_pool", "avg_pool",
                                                                       "global_pool"))
