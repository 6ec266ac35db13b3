"""PyTorch's argument forms and size rules, in pure Python: ints or tuples for window
arguments, ``padding="same"``, the pooling output size with ``ceil_mode``."""

from __future__ import annotations

from ..shapes import as_int, check_int32
from .errors import FunctionalError, FunctionalTypeError

#: The spatial dims and the kernel dims of each rank as PyTorch's docs name them (docstrings).
SPATIAL_LETTERS = {1: "L", 2: "H, W", 3: "D, H, W"}
KERNEL_LETTERS = {1: "kW", 2: "kH, kW", 3: "kD, kH, kW"}


def ntuple(value, n, name, minimum=1):
    """``value`` (an int, or a sequence of 1 or ``n`` ints) as a tuple of ``n`` ints, each at
    least ``minimum``.

    Examples
    --------
    >>> ntuple(3, 2, "kernel_size"), ntuple((2, 1), 2, "stride")
    ((3, 3), (2, 1))
    """
    if type(value) is int and value >= minimum:  # the common case, without the checks below
        if value > 2**31 - 1:
            check_int32((value,), name)
        return (value,) * n
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        values = tuple(as_int(v, name) for v in value)
        if len(values) == 1:
            values = values * n
        elif len(values) != n:
            raise FunctionalError(f"{name} must be a single int or a tuple of {n} ints, got "
                                  f"{list(value)}")
    else:
        values = (as_int(value, name),) * n
    if min(values) < minimum:
        rule = "positive" if minimum == 1 else "non-negative"
        raise FunctionalError(f"{name} must be {rule}, got {values}")
    check_int32(values, name)
    return values


def conv_padding(padding, n, kernel, dilation, stride):
    """``(before, after)`` pairs of a conv's ``padding``: an int or tuple (symmetric), or
    ``"valid"`` / ``"same"`` (PyTorch's split of an odd total: the extra cell after).

    Examples
    --------
    >>> conv_padding("same", 2, (4, 3), (1, 1), (1, 1))
    ((1, 2), (1, 1))
    """
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * n
        if padding != "same":
            raise FunctionalError(f"Invalid padding string {padding!r}, should be one of "
                                  f"{{'valid', 'same'}}")
        if any(s != 1 for s in stride):
            raise FunctionalError("padding='same' is not supported for strided convolutions")
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    if not isinstance(padding, (int, list, tuple)) or isinstance(padding, bool):
        raise FunctionalTypeError(f"padding must be an int, a tuple of ints, 'valid' or 'same', "
                                  f"got {type(padding).__name__}")
    return tuple((p, p) for p in ntuple(padding, n, "padding", minimum=0))


def pool_output_size(size, k, stride, pad, dilation, ceil_mode):
    """PyTorch's pooling output length (``pooling_output_shape``): with ``ceil_mode`` a last
    window that would start in the padding after the input is dropped.

    Examples
    --------
    >>> pool_output_size(5, 2, 2, 0, 1, False), pool_output_size(5, 2, 2, 0, 1, True)
    (2, 3)
    """
    span = dilation * (k - 1) + 1
    out = (size + 2 * pad - span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def check_pool_window(name, sizes, kernel, stride, padding, dilation, ceil_mode):
    """The output sizes of a pooling, or FunctionalError as PyTorch words it: padding at most
    half the window, and every output size positive."""
    for p, k in zip(padding, kernel):
        if p > k // 2:
            raise FunctionalError(f"{name}: pad should be at most half of effective kernel "
                                  f"size, but got pad={list(padding)}, kernel_size="
                                  f"{list(kernel)}")
    outs = tuple(pool_output_size(*args, ceil_mode)
                 for args in zip(sizes, kernel, stride, padding, dilation))
    if min(outs) < 1:
        raise FunctionalError(f"{name}: Given input size: {tuple(sizes)}. Calculated output "
                              f"size: {outs}. Output size is too small")
    return outs
