"""Output sizes, padding rules and layouts, in pure Python (no NumPy, no Numba).

Everything here follows TensorFlow's conventions:

* ``VALID``: no padding, ``out = ceil((n - (k - 1) * d) / s)``.
* ``SAME``: ``out = ceil(n / s)``; the total padding
  ``max((out - 1) * s + (k - 1) * d + 1 - n, 0)`` is split with ``total // 2`` before and the
  rest (the extra cell) after.
* explicit: a list of ``(before, after)`` pairs, one per dimension of the input (TF style, batch
  and channel pairs must be zero) or one per spatial dimension.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

#: data_format strings per number of spatial dimensions: (channels-last, channels-first).
LAYOUTS = {1: ("NWC", "NCW"), 2: ("NHWC", "NCHW"), 3: ("NDHWC", "NCDHW")}
_KERAS_FORMATS = {"channels_last": False, "channels_first": True}
#: The largest window size, stride, dilation, padding or output size accepted: TF's attributes
#: are int32, and every index a kernel computes from two of them then fits in int64.
INT32_MAX = 2**31 - 1


def check_int32(values, name):
    """Raise ValueError naming ``name`` when an entry of ``values`` exceeds :data:`INT32_MAX`."""
    for v in values:
        if v > INT32_MAX:
            raise ValueError(f"{name} must be at most {INT32_MAX} (TF's int32 limit), got {v}")


def as_int(value, name):
    """Return ``value`` as a Python int, or raise TypeError naming the argument."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must contain integers, got a bool ({value!r})")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must contain integers, got {value!r} of type "
                        f"{type(value).__name__}") from None


def parse_data_format(data_format, n_spatial, name="data_format"):
    """Return True when ``data_format`` is channels-first for ``n_spatial`` dimensions.

    Accepts TF strings (``"NHWC"``, ``"NCHW"``, ...) and Keras' ``"channels_last"`` /
    ``"channels_first"``. ``None`` means channels-last.

    Examples
    --------
    >>> parse_data_format("NCHW", 2)
    True
    >>> parse_data_format(None, 1)
    False
    """
    if data_format is None:
        return False
    if not isinstance(data_format, str):
        raise TypeError(f"{name} must be a string, got {type(data_format).__name__}")
    if data_format in _KERAS_FORMATS:
        return _KERAS_FORMATS[data_format]
    last, first = LAYOUTS[n_spatial]
    if data_format == last:
        return False
    if data_format == first:
        return True
    raise ValueError(f"{name} must be {last!r} or {first!r} (or 'channels_last'/'channels_first') "
                     f"for a {n_spatial}-D op, got {data_format!r}")


def normalize_window(value, n_spatial, name, channels_first=False, allow_none_default=None):
    """Normalise a TF-style ``strides``/``ksize``/``dilations`` argument to a tuple of ints.

    ``value`` may be an int, a sequence of length ``n_spatial``, or a sequence of length
    ``n_spatial + 2`` whose batch and channel entries are 1 (TF's full form, laid out like the
    data). Every entry must be at least 1.

    Examples
    --------
    >>> normalize_window(2, 2, "strides")
    (2, 2)
    >>> normalize_window([1, 3, 2, 1], 2, "strides")
    (3, 2)
    >>> normalize_window([1, 1, 3, 2], 2, "strides", channels_first=True)
    (3, 2)
    """
    if value is None:
        if allow_none_default is None:
            raise TypeError(f"{name} is required")
        value = allow_none_default
    if hasattr(value, "numpy") and not isinstance(value, (list, tuple)):
        value = value.numpy()  # TF tensors
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
        value = value.tolist()  # NumPy arrays and scalars
    if isinstance(value, (list, tuple)):
        values = [as_int(v, name) for v in value]
        if len(values) == 1:
            values = values * n_spatial
        elif len(values) == n_spatial + 2:
            outer = (values[0], values[1]) if channels_first else (values[0], values[-1])
            if outer != (1, 1):
                raise ValueError(f"{name} must be 1 on the batch and channel dimensions, got {list(value)}")
            values = values[2:] if channels_first else values[1:-1]
        elif len(values) != n_spatial:
            raise ValueError(f"{name} must be an int or have length 1, {n_spatial} or {n_spatial + 2}, "
                             f"got length {len(values)}: {list(value)}")
    else:
        values = [as_int(value, name)] * n_spatial
    for v in values:
        if v < 1:
            raise ValueError(f"{name} must be positive (>= 1), got {values}")
    check_int32(values, name)
    return tuple(values)


def same_padding(n, k, stride, dilation=1):
    """Return TF's SAME padding ``(before, after)`` for one dimension.

    The total is ``max((out - 1) * stride + (k - 1) * dilation + 1 - n, 0)`` with
    ``out = ceil(n / stride)``; the odd cell goes after, as in TensorFlow.

    Examples
    --------
    >>> same_padding(28, 3, 1)
    (1, 1)
    >>> same_padding(28, 2, 2)
    (0, 0)
    >>> same_padding(5, 4, 1)
    (1, 2)
    """
    out = -(-n // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - n, 0)
    return total // 2, total - total // 2


def padding_after(n, out, k, stride, dilation, before):
    """The padding after a dimension that an ``out``-long output of windows needs beyond the
    input and the padding ``before``: what the last window reaches past the end, never
    negative. Pure arithmetic, so the raw kernels compile it (``numba.njit``) unchanged.

    Examples
    --------
    >>> padding_after(28, 28, 3, 1, 1, 1)   # SAME: one cell after
    1
    >>> padding_after(5, 2, 2, 2, 1, 0)     # VALID: the last column is never read
    0
    """
    return max((out - 1) * stride + (k - 1) * dilation + 1 - n - before, 0)


def conv_output_size(n, k, stride, padding, dilation=1):
    """Return the output length of a convolution or pooling window along one dimension.

    ``padding`` is ``"SAME"``, ``"VALID"`` (either case), an int (symmetric padding, the seeds'
    ``(n + 2p - f) / s + 1``) or a ``(before, after)`` pair. Raises ValueError, naming the sizes,
    when the window does not fit (TF's "Negative dimension size" error).

    Examples
    --------
    >>> conv_output_size(28, 3, 1, "valid")
    26
    >>> conv_output_size(28, 3, 2, "VALID")
    13
    >>> conv_output_size(427, 3, 2, "SAME")
    214
    >>> conv_output_size(28, 3, 1, 1)
    28
    """
    n, k, stride, dilation = (as_int(v, name) for v, name in
                              ((n, "n"), (k, "k"), (stride, "stride"), (dilation, "dilation")))
    if n < 0 or k < 1 or stride < 1 or dilation < 1:
        raise ValueError(f"need n >= 0, k >= 1, stride >= 1, dilation >= 1; got n={n}, k={k}, "
                         f"stride={stride}, dilation={dilation}")
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "SAME":
            return -(-n // stride)
        if mode != "VALID":
            raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
        before = after = 0
    elif isinstance(padding, (list, tuple)):
        if len(padding) != 2:
            raise ValueError(f"padding must be a (before, after) pair, got {padding!r}")
        before, after = (as_int(p, "padding") for p in padding)
    else:
        before = after = as_int(padding, "padding")
    if before < 0 or after < 0:
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    span = (k - 1) * dilation + 1
    padded = n + before + after
    if span > padded:
        raise ValueError(f"Negative dimension size: a window of effective size {span} "
                         f"(kernel {k}, dilation {dilation}) does not fit an input of size {n} "
                         f"padded to {padded}")
    return (padded - span) // stride + 1


def parse_padding(padding, n_spatial, channels_first, allow_explicit=True, name="padding"):
    """Return ``"SAME"``, ``"VALID"`` or a tuple of ``(before, after)`` pairs per spatial dim.

    Explicit padding follows TF: a list of ``n_spatial + 2`` pairs laid out like the data
    (batch and channel pairs must be ``(0, 0)``), or ``n_spatial`` pairs for the spatial dims.

    Examples
    --------
    >>> parse_padding("same", 2, False)
    'SAME'
    >>> parse_padding([[0, 0], [1, 2], [3, 4], [0, 0]], 2, False)
    ((1, 2), (3, 4))
    """
    if isinstance(padding, str):
        mode = padding.upper()
        if mode not in ("SAME", "VALID"):
            raise ValueError(f"{name} must be 'SAME', 'VALID' or a list of (before, after) pairs, "
                             f"got {padding!r}")
        return mode
    if not allow_explicit:
        raise ValueError(f"{name} must be 'SAME' or 'VALID' for this op (TF allows explicit "
                         f"padding only for convolutions and max pooling), got {padding!r}")
    if hasattr(padding, "numpy"):
        padding = padding.numpy()  # TF tensors
    if hasattr(padding, "tolist"):
        padding = padding.tolist()
    if not isinstance(padding, (list, tuple)):
        raise TypeError(f"{name} must be a string or a list of (before, after) pairs, "
                        f"got {type(padding).__name__}")
    try:
        pairs = [tuple(as_int(v, name) for v in pair) for pair in padding]
    except TypeError:
        raise TypeError(f"{name} must be a list of (before, after) integer pairs, got {padding!r}") from None
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError(f"{name} must be a list of (before, after) pairs, got {padding!r}")
    if len(pairs) == n_spatial + 2:
        outer = (pairs[0], pairs[1]) if channels_first else (pairs[0], pairs[-1])
        if outer != ((0, 0), (0, 0)):
            raise ValueError(f"{name} must be (0, 0) on the batch and channel dimensions, got {padding!r}")
        pairs = pairs[2:] if channels_first else pairs[1:-1]
    elif len(pairs) != n_spatial:
        raise ValueError(f"{name} must have {n_spatial + 2} (or {n_spatial}) (before, after) pairs, "
                         f"got {len(pairs)}: {padding!r}")
    for before, after in pairs:
        if before < 0 or after < 0:
            raise ValueError(f"{name} must be non-negative, got {padding!r}")
        check_int32((before, after), name)
    return tuple(pairs)


@dataclass(frozen=True)
class Geometry:
    """Sizes of one windowed op over the spatial dims: input, window, output and padding."""

    in_sizes: tuple
    kernel: tuple
    strides: tuple
    dilations: tuple
    pads: tuple  # ((before, after), ...) per spatial dim
    out_sizes: tuple


def window_geometry(in_sizes, kernel, strides, dilations, padding):
    """Return the :class:`Geometry` of a window op, or raise ValueError naming the sizes.

    ``padding`` is ``"SAME"``, ``"VALID"`` or per-dim ``(before, after)`` pairs as returned by
    :func:`parse_padding`.

    Examples
    --------
    >>> window_geometry((28, 28), (3, 3), (1, 1), (1, 1), "SAME").out_sizes
    (28, 28)
    """
    if not isinstance(padding, str):
        padding = tuple(tuple(pair) for pair in padding)
    return _window_geometry(tuple(in_sizes), tuple(kernel), tuple(strides), tuple(dilations),
                            padding)


@functools.lru_cache(maxsize=4096)
def _window_geometry(in_sizes, kernel, strides, dilations, padding):
    """:func:`window_geometry` of hashable arguments, memoised: a layer calls it with the same
    sizes every time (and a Geometry is immutable), which saves ~2 us a call."""
    pads, outs = [], []
    for axis, (n, k, s, d) in enumerate(zip(in_sizes, kernel, strides, dilations)):
        if padding == "SAME":
            pair = same_padding(n, k, s, d)
        elif padding == "VALID":
            pair = (0, 0)
        else:
            pair = tuple(padding[axis])
        span = (k - 1) * d + 1
        if padding != "SAME" and span > n + pair[0] + pair[1]:
            raise ValueError(
                f"Negative dimension size: a window of size {k} (dilation {d}, effective {span}) "
                f"does not fit spatial dimension {axis} of size {n}"
                + (f" padded by {pair}" if pair != (0, 0) else "")
                + f"; input spatial shape {tuple(in_sizes)}, window {tuple(kernel)}")
        out = -(-n // s) if padding == "SAME" else (n + pair[0] + pair[1] - span) // s + 1
        pads.append(pair)
        outs.append(out)
    return Geometry(tuple(in_sizes), tuple(kernel), tuple(strides), tuple(dilations),
                    tuple(pads), tuple(outs))


def transposed_pads_before(geometry):
    """Padding before each dim of the stride-1 conv that computes a transposed conv over its
    input spread by the strides: ``(k - 1) * d - pad_before`` of the forward conv ``geometry``
    describes (negative values crop).

    Examples
    --------
    >>> g = window_geometry((8, 8), (3, 3), (2, 2), (1, 1), "SAME")
    >>> transposed_pads_before(g)
    (2, 2)
    """
    return tuple((k - 1) * d - before for k, d, (before, _) in
                 zip(geometry.kernel, geometry.dilations, geometry.pads))


def transposed_output_size(n, k, stride, padding, dilation=1):
    """The smallest output length a transposed conv of an ``n``-long input can have, as TF's
    Keras layers infer it: ``n * stride`` for SAME, ``(n - 1) * stride + (k - 1) * dilation + 1``
    for VALID.

    Examples
    --------
    >>> transposed_output_size(4, 3, 2, "SAME"), transposed_output_size(4, 3, 2, "VALID")
    (8, 9)
    """
    if str(padding).upper() == "SAME":
        return n * stride
    return (n - 1) * stride + (k - 1) * dilation + 1
