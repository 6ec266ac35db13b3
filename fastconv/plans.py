"""Prepared-filter convolutions: filters checked, copied and transformed once, many inputs run.

An inference loop calls the same layer with the same filters thousands of times; a plain call
re-derives from the filters, every time, what its algorithm needs (the Winograd transform of
every 3x3 filter, the transposed 1x1 weights, a device copy), which on a small feature map
costs more than the convolution. :func:`prepare_conv2d` returns a :class:`Conv2DPlan` that
keeps a private, read-only copy of the filters (so a caller mutating their array afterwards
changes nothing) and a cache of those derived forms, filled on the first call of each
algorithm and dtype and reused by every later call.

Plain ``fastconv.conv2d`` calls never cache: identifying a user's array safely would need a
fingerprint of its values on every call, which costs about what the transform does.
"""

from __future__ import annotations

import threading

import numpy as np

from . import dispatch
from .shapes import normalize_window, parse_data_format
from .validation import as_host_array, is_device_array


class Conv2DPlan:
    """``fastconv.conv2d(input, filters, ...)`` for fixed filters and arguments, with what
    the algorithms derive from the filters computed once (see :func:`prepare_conv2d`).

    Calling the plan takes any input :func:`fastconv.conv2d` takes (NumPy, dask, GPU and
    half-precision arrays; the input's channels a multiple of the filters' in_channels) and
    returns what ``conv2d`` returns for it.

    Attributes
    ----------
    filters : ndarray
        The plan's read-only copy of the filters.
    bias : ndarray or None
        Its read-only copy of the bias.
    """

    def __init__(self, filters, strides, padding, data_format, dilations, bias, activation,
                 alpha, device):
        # Private writable copies (kernels compile for writable arrays: read-only ones would
        # be re-viewed on every call), shown as read-only views.
        self._filters = _private_copy(filters)
        self._bias = None if bias is None else _private_copy(bias)
        self.filters = _read_only(self._filters)
        self.bias = None if bias is None else _read_only(self._bias)
        self._arguments = dict(strides=strides, padding=padding, data_format=data_format,
                               dilations=dilations)
        self._fused = dict(bias=self._bias, activation=activation, alpha=alpha, device=device)
        self._cache = {}
        # the cache is filled once per algorithm and dtype, perhaps by threads at once
        self._locked_cache = _LockedCache(self._cache, threading.Lock())

    def __call__(self, input):
        from . import api

        with dispatch.preparing(self._locked_cache, self._filters.shape):
            return api.conv2d(input, self._filters, **self._arguments, **self._fused)

    def __repr__(self):
        h, w, c, k = self.filters.shape
        return (f"Conv2DPlan({h}x{w}, {c} -> {k} channels, {self._arguments}, "
                f"{len(self._cache)} prepared form(s))")


class _LockedCache:
    """The plan's cache as :func:`fastconv.problems.prepared` uses it (``get``, item
    assignment), safe when threads call one plan at once."""

    def __init__(self, cache, lock):
        self._cache = cache
        self._lock = lock

    def get(self, key):
        with self._lock:
            return self._cache.get(key)

    def __setitem__(self, key, value):
        with self._lock:
            self._cache.setdefault(key, value)


def _private_copy(value):
    if is_device_array(value):
        value = as_host_array(value, "filters")
    return np.array(value, copy=True)


def _read_only(array):
    view = array.view()
    view.flags.writeable = False
    return view


def prepare_conv2d(filters, strides, padding, data_format="NHWC", dilations=None, *, bias=None,
                   activation=None, alpha=None, device=None):
    """A :func:`fastconv.conv2d` with these filters and arguments, prepared once for many
    inputs: ``plan = prepare_conv2d(w, 1, "SAME"); y = plan(x)``.

    The filters (and bias) are copied, so later changes to the caller's arrays do not reach
    the plan; what the chosen algorithm derives from them (Winograd transforms, packed
    weights, the GPU copy) is computed on the first call and kept for the next ones. The
    arguments are checked here, as ``conv2d`` checks them, before any input is seen.

    Parameters
    ----------
    filters, strides, padding, data_format, dilations, bias, activation, alpha, device
        As :func:`fastconv.conv2d`.

    Returns
    -------
    Conv2DPlan
        ``plan(input)`` equals ``fastconv.conv2d(input, filters, strides, padding,
        data_format, dilations, bias=bias, activation=activation, alpha=alpha,
        device=device)``.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> w = np.ones((3, 3, 8, 16), np.float32)
    >>> plan = fastconv.prepare_conv2d(w, 1, "SAME", activation="relu")
    >>> w[...] = 0  # the plan kept its own copy
    >>> plan(np.ones((2, 6, 6, 8), np.float32))[0, 2, 2, :3]
    array([72., 72., 72.], dtype=float32)
    """
    from . import api

    plan = Conv2DPlan(filters, strides, padding, data_format, dilations, bias, activation,
                      alpha, device)
    filters = plan.filters
    # Validate every argument now, on a zero-strided stand-in input (no memory, no kernel):
    # the filters' own channels, a spatial size the dilated window fits in.
    if filters.ndim != 4:
        raise ValueError(f"filters must have rank 4, (H, W, in_channels, out_channels), got "
                         f"shape {filters.shape}")
    channels_first = parse_data_format(data_format, 2)
    rates = normalize_window(dilations, 2, "dilations", channels_first, allow_none_default=1)
    spatial = tuple(max(1, (k - 1) * r + 1) for k, r in zip(filters.shape[:2], rates))
    channels = filters.shape[2]
    shape = (1, channels, *spatial) if channels_first else (1, *spatial, channels)
    standin = np.broadcast_to(np.zeros((), filters.dtype), shape)
    with dispatch.capture_problems():
        api.conv2d(standin, filters, strides, padding, data_format, dilations,
                   bias=plan.bias, activation=activation, alpha=alpha, device=device)
    return plan
