"""Pooling with ``torch.nn.functional``'s arguments and rules, on fastconv's kernels.

PyTorch's rules differ from TF's in ways that are index arithmetic: windows are given per
dim as tables (first cell, taps, divisor) and run by the ``window_pool`` kernels
(:mod:`fastconv.cpu.window_pool`, and their CUDA twin), which follow PyTorch's max (NaN wins,
windows start from -inf; the argmax is the last winning cell) and its divisors
(``count_include_pad`` counts the padding inside the padded input, ``divisor_override``
replaces the count). Where PyTorch's result is TF's (an average over real cells; a global
pool) the TF-rule kernels run instead.
"""

from __future__ import annotations

import math

import numpy as np

from .. import api, dispatch
from ..problems import (GlobalPoolProblem, PoolProblem, UnpoolProblem, WindowPoolProblem,
                        layout_shape, pad_to_3d)
from ..shapes import Geometry, as_int
from . import tensors
from .arguments import SPATIAL_LETTERS, check_pool_window, ntuple
from .errors import FunctionalError, FunctionalTypeError, torch_errors


def _run(call, out_spatial, family, problem, finish=True):
    """Dispatch a pooling problem and give its result (and indices) back to the caller
    (``finish=False``: in the call's layout, for more work first)."""
    shape = layout_shape(call.batch, call.channels, out_spatial, call.channels_first)
    result = dispatch.run(family, call.device, problem)
    if isinstance(result, tuple):
        return tuple(call.finish(part.reshape(shape)) for part in result)
    return call.finish(result.reshape(shape)) if finish else result.reshape(shape)


def _window_pool(call, out_spatial, starts, sizes, divisors, dilations, kind, **options):
    """Run a ``WindowPoolProblem``: per-dim tables padded to three dims with unit windows."""
    lead = 3 - call.n_spatial
    unit = np.zeros(1, np.int64), np.ones(1, np.int64)
    tables = [[unit[0]] * lead + [np.asarray(t, np.int64) for t in starts],
              [unit[1]] * lead + [np.asarray(t, np.int64) for t in sizes],
              [unit[1]] * lead + [np.asarray(t, np.int64) for t in divisors]]
    out5 = layout_shape(call.batch, call.channels, (1,) * lead + tuple(out_spatial),
                        call.channels_first)
    problem = WindowPoolProblem(api._to_5d(call.x, call.n_spatial, call.channels_first),
                                *map(tuple, tables[:2]), (1,) * lead + tuple(dilations),
                                tuple(tables[2]), call.channels_first, out5, call.dtype, kind,
                                **options)
    return _run(call, out_spatial, "window_pool", problem)


def _tf_pool(call, kind, kernel, stride, padding, out_spatial, finish=True,
             count_padding=False):
    """Run a clipped-window pooling (the windows of PyTorch's ``padding`` and output sizes,
    clipped to the input) on TF's kernels with PyTorch's max (NaN wins) and averages over
    the real cells, or with ``count_padding`` over the cells inside the padded input."""
    pads = [(p, max(0, (o - 1) * s + k - size - p))
            for p, o, s, k, size in zip(padding, out_spatial, stride, kernel, call.spatial)]
    geometry = pad_to_3d(Geometry(call.spatial, tuple(kernel), tuple(stride),
                                  (1,) * call.n_spatial, tuple(pads), tuple(out_spatial)))
    out5 = layout_shape(call.batch, call.channels, geometry.out_sizes, call.channels_first)
    problem = PoolProblem(api._to_5d(call.x, call.n_spatial, call.channels_first), geometry,
                          call.channels_first, out5, call.dtype, kind, nan_wins=kind == "max",
                          count_padding=count_padding)
    return _run(call, out_spatial, f"{kind}_pool", problem, finish)


def _regular_windows(kernel, stride, padding, out_spatial):
    """Tables of evenly spaced windows: output ``o`` starts at ``o * stride - padding``."""
    starts = [np.arange(out, dtype=np.int64) * s - p
              for out, s, p in zip(out_spatial, stride, padding)]
    sizes = [np.full(out, k, np.int64) for out, k in zip(out_spatial, kernel)]
    return starts, sizes


def _pool_arguments(call, op, kernel_size, stride, padding, dilation, ceil_mode):
    n = call.n_spatial
    kernel = ntuple(kernel_size, n, "kernel_size")
    stride = kernel if stride is None or (isinstance(stride, (list, tuple)) and not stride) \
        else ntuple(stride, n, "stride")
    padding = ntuple(padding, n, "padding", minimum=0)
    dilation = ntuple(dilation, n, "dilation")
    out = check_pool_window(op, call.spatial, kernel, stride, padding, dilation,
                            bool(ceil_mode))
    return kernel, stride, padding, dilation, out


@torch_errors
def _max_pool(n, op, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    call = tensors.begin(input, n, op)
    kernel, stride, padding, dilation, out = _pool_arguments(call, op, kernel_size, stride,
                                                             padding, dilation, ceil_mode)
    if not return_indices and all(d == 1 for d in dilation):
        return _tf_pool(call, "max", kernel, stride, padding, out)
    starts, sizes = _regular_windows(kernel, stride, padding, out)
    return _window_pool(call, out, starts, sizes, sizes, dilation, "max",
                        return_indices=bool(return_indices))


def _padded_counts(starts, k, size, pad):
    """PyTorch's ``count_include_pad`` divisor per window: cells inside the padded input."""
    return np.minimum(starts + k, size + pad) - starts


def _real_counts(starts, k, size):
    """The real (unpadded) cells of each window."""
    return np.minimum(starts + k, size) - np.maximum(starts, 0)


@torch_errors
def _avg_pool(n, op, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
              divisor_override):
    call = tensors.begin(input, n, op)
    kernel, stride, padding, dilation, out = _pool_arguments(call, op, kernel_size, stride,
                                                             padding, 1, ceil_mode)
    if divisor_override is not None:
        divisor_override = as_int(divisor_override, "divisor_override")
        if divisor_override == 0:
            raise FunctionalError(f"{op}(): divisor must be not zero")
    if divisor_override is None:
        return _tf_pool(call, "avg", kernel, stride, padding, out,
                        count_padding=bool(count_include_pad) and any(padding))
    starts, sizes = _regular_windows(kernel, stride, padding, out)
    divisors = [_padded_counts(st, k, size, p)
                for st, k, size, p in zip(starts, kernel, call.spatial, padding)]
    return _window_pool(call, out, starts, sizes, divisors, dilation, "avg",
                        divisor_override=divisor_override)


@torch_errors
def _lp_pool(n, op, input, norm_type, kernel_size, stride, ceil_mode):
    if isinstance(norm_type, bool) or not isinstance(norm_type, (int, float)):
        raise FunctionalTypeError(f"{op}(): norm_type must be a number, got {norm_type!r}")
    if math.isinf(norm_type):  # PyTorch: the max (or min) of the absolute values
        try:
            magnitude = abs(input.detach() if tensors.is_torch(input) else input)
        except TypeError:
            raise FunctionalTypeError(f"{op}(): norm_type={norm_type} takes |input| on the "
                                      f"input's own device: pass a NumPy or CuPy array or a "
                                      f"torch tensor, not {type(input).__name__}") from None
        if norm_type > 0:
            return _max_pool(n, op, magnitude, kernel_size, stride, 0, 1, ceil_mode, False)
        return -_max_pool(n, op, -magnitude, kernel_size, stride, 0, 1, ceil_mode, False)
    if norm_type == 0 or math.isnan(norm_type):
        raise FunctionalError(f"{op}(): norm_type must be non-zero, got {norm_type}")
    call = tensors.begin(input, n, op)
    kernel, stride, padding, dilation, out = _pool_arguments(call, op, kernel_size, stride, 0,
                                                             1, ceil_mode)
    starts, sizes = _regular_windows(kernel, stride, padding, out)
    divisors = [_real_counts(st, k, size) for st, k, size in zip(starts, kernel, call.spatial)]
    return _window_pool(call, out, starts, sizes, divisors, dilation, "lp",
                        power=float(norm_type), lp_scale=float(math.prod(kernel)))


def _adaptive_sizes(call, op, output_size):
    n = call.n_spatial
    if hasattr(output_size, "tolist") and not isinstance(output_size, (list, tuple)):
        output_size = output_size.tolist()
    if isinstance(output_size, (list, tuple)):
        if len(output_size) not in (1, n) or (len(output_size) == 1 and n > 1 and
                                               output_size[0] is None):
            raise FunctionalError(f"{op}(): output_size must be an int or a tuple of {n} ints "
                                  f"(None keeps the input's size), got {list(output_size)}")
        values = list(output_size) * (n if len(output_size) == 1 else 1)
    else:
        values = [output_size] * n
    sizes = tuple(size if v is None else as_int(v, "output_size")
                  for v, size in zip(values, call.spatial))
    if min(sizes) < 0:
        raise FunctionalError(f"{op}(): elements of output_size must be greater than or equal "
                              f"to 0 but received {list(sizes)}")
    return sizes


def _adaptive_windows(call, out):
    """PyTorch's adaptive windows: ``[floor(o * L / O), ceil((o + 1) * L / O))``."""
    starts, sizes = [], []
    for size, o_size in zip(call.spatial, out):
        o = np.arange(o_size, dtype=np.int64)
        first = (o * size) // o_size
        sizes.append(((o + 1) * size + o_size - 1) // o_size - first)
        starts.append(first)
    return starts, sizes


def _empty(call, out, return_indices):
    shape = layout_shape(call.batch, call.channels, out, call.channels_first)
    zeros = np.zeros(shape, call.dtype)
    if call.device == "cuda":
        from ..cuda import launch

        zeros = launch.result_like(launch.to_device(zeros), call.x)
    result = call.finish(zeros)
    if return_indices:
        indices = np.zeros(shape, np.int64)
        if call.device == "cuda":
            indices = launch.result_like(launch.to_device(indices), call.x)
        return result, call.finish(indices)
    return result


def _global(call, kind, out):
    problem = GlobalPoolProblem(api._to_5d(call.x, call.n_spatial, call.channels_first),
                                call.channels_first, (call.batch, call.channels), call.dtype,
                                kind)
    return _run(call, out, "global_pool", problem)


@torch_errors
def _adaptive_pool(n, op, kind, input, output_size, return_indices=False):
    call = tensors.begin(input, n, op)
    out = _adaptive_sizes(call, op, output_size)
    if 0 in out or call.batch == 0 or call.channels == 0:
        return _empty(call, out, return_indices)
    if all(o == 1 for o in out) and not return_indices:
        return _global(call, kind, out)
    if not return_indices and all(size % o == 0 for size, o in zip(call.spatial, out)):
        kernel = tuple(size // o for size, o in zip(call.spatial, out))
        return _tf_pool(call, kind, kernel, kernel, (0,) * n, out)
    starts, sizes = _adaptive_windows(call, out)
    return _window_pool(call, out, starts, sizes, sizes, (1,) * n, kind,
                        return_indices=bool(return_indices))


@torch_errors
def _max_unpool(n, op, input, indices, kernel_size, stride, padding, output_size):
    call = tensors.begin(input, n, op)
    kernel = ntuple(kernel_size, n, "kernel_size")
    stride = kernel if stride is None else ntuple(stride, n, "stride")
    padding = ntuple(padding, n, "padding", minimum=0)
    default = tuple((size - 1) * s + k - 2 * p
                    for size, s, k, p in zip(call.spatial, stride, kernel, padding))
    if output_size is None:
        out = default
    else:
        if hasattr(output_size, "tolist") and not isinstance(output_size, (list, tuple)):
            output_size = output_size.tolist()
        out = tuple(as_int(v, "output_size") for v in output_size)
        if len(out) == n + 2:
            out = out[2:]
        if len(out) != n:
            raise FunctionalError(f"output_size should be a sequence containing {n} or {n + 2} "
                                  f"elements, but it has a length of '{len(out)}'")
        for d, (size, low, s) in enumerate(zip(out, default, stride)):
            if not low - s < size < low + s:
                raise FunctionalError(f'invalid output_size "{list(out)}" (dim {d} must be '
                                      f'between {low - s} and {low + s})')
    if min(out) < 0:
        raise FunctionalError(f"{op}(): output_size must contain non-negative spatial "
                              f"dimensions, got {list(out)}")
    idx = tensors.parameter(indices, "indices", call, op)
    batched_shape = tuple(call.x.shape) if call.channels_first else (
        call.batch, call.channels) + call.spatial
    given = tuple(int(v) for v in idx.shape)
    if given != (batched_shape if call.batched else batched_shape[1:]):
        raise FunctionalError(f"Expected shape of indices to be same as that of the input "
                              f"tensor ({call.shape_text()}) but got indices tensor with shape: "
                              f"{list(given)}")
    if api.array_dtype(idx).kind not in "iu":
        raise FunctionalTypeError(f"{op}(): indices must be integers, got {api.array_dtype(idx)}")
    total = math.prod(out)
    if 0 not in given:
        low, high = tensors.flat_index_range(idx)
        if low < 0 or high >= total:
            bad = low if low < 0 else high
            raise FunctionalError(f"Found an invalid max index: {bad} (output volumes are of "
                                  f"size {'x'.join(map(str, out))}")
    if not call.batched:
        idx = idx.reshape((1,) + given)
    if not call.channels_first:  # indices in PyTorch's (N, C, *spatial) order, like the input
        idx = idx.movedim(1, -1) if tensors.is_torch(idx) else np.moveaxis(idx, 1, -1)
    if tensors.is_torch(idx):
        idx = idx.contiguous()  # the GPU scatter views it as (N, C, S) planes
    problem = UnpoolProblem(call.x, idx, call.channels_first,
                            layout_shape(call.batch, call.channels, out, call.channels_first),
                            call.dtype)
    return _run(call, out, "max_unpool", problem)


# ----------------------------------------------------------------------------- public functions

_EXAMPLE = {1: ("(1, 2, 8)", "(1, 2, 4)"), 2: ("(1, 2, 8, 8)", "(1, 2, 4, 4)"),
            3: ("(1, 2, 8, 8, 8)", "(1, 2, 4, 4, 4)")}


def _doc(summary, n, parameters, returns, example):
    shape, _ = _EXAMPLE[n]
    letters = SPATIAL_LETTERS[n]
    return f"""{summary}

    Parameters
    ----------
    input : ndarray or torch.Tensor (N, C, {letters}) or unbatched (C, {letters})
        float32 or float64, CPU or CUDA.
{parameters}

    Returns
    -------
{returns}

    Examples
    --------
    >>> import numpy as np
    >>> import fastconv.functional as F
    >>> x = np.arange(np.prod({shape}), dtype=np.float32).reshape({shape})
    {example}
    """


def _make_max_pool(n):
    def max_pool(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                 return_indices=False):
        return _max_pool(n, f"max_pool{n}d", input, kernel_size, stride, padding, dilation,
                         ceil_mode, return_indices)

    out = _EXAMPLE[n][1]
    max_pool.__doc__ = _doc(
        f"{n}-D max pooling, as ``torch.nn.functional.max_pool{n}d``: NaN wins its window, "
        f"padding never does.", n,
        """    kernel_size, stride, padding, dilation : int or tuple
        ``stride`` defaults to ``kernel_size``; ``padding`` at most half the window.
    ceil_mode : bool
        Round the output size up (a last window starting in the padding is dropped).
    return_indices : bool
        Also return each max's flat index in its (batch, channel) plane (int64).""",
        """    ndarray or torch.Tensor, or (output, indices)""",
        f""">>> F.max_pool{n}d(x, 2).shape
    {out}""")
    max_pool.__name__ = max_pool.__qualname__ = f"max_pool{n}d"
    return max_pool


def _make_avg_pool(n):
    if n == 1:
        def avg_pool(input, kernel_size, stride=None, padding=0, ceil_mode=False,
                     count_include_pad=True):
            return _avg_pool(1, "avg_pool1d", input, kernel_size, stride, padding, ceil_mode,
                             count_include_pad, None)
    else:
        def avg_pool(input, kernel_size, stride=None, padding=0, ceil_mode=False,
                     count_include_pad=True, divisor_override=None):
            return _avg_pool(n, f"avg_pool{n}d", input, kernel_size, stride, padding, ceil_mode,
                             count_include_pad, divisor_override)

    override = "" if n == 1 else """
    divisor_override : int, optional
        Divide every window's sum by this instead."""
    avg_pool.__doc__ = _doc(
        f"{n}-D average pooling, as ``torch.nn.functional.avg_pool{n}d``.", n,
        f"""    kernel_size, stride, padding : int or tuple
    ceil_mode : bool
    count_include_pad : bool
        Count the zero padding in the divisor (PyTorch's default).{override}""",
        """    ndarray or torch.Tensor""",
        f""">>> F.avg_pool{n}d(x, 2).shape
    {_EXAMPLE[n][1]}""")
    avg_pool.__name__ = avg_pool.__qualname__ = f"avg_pool{n}d"
    return avg_pool


def _make_lp_pool(n):
    def lp_pool(input, norm_type, kernel_size, stride=None, ceil_mode=False):
        return _lp_pool(n, f"lp_pool{n}d", input, norm_type, kernel_size, stride, ceil_mode)

    lp_pool.__doc__ = _doc(
        f"{n}-D power-average pooling, as ``torch.nn.functional.lp_pool{n}d``: "
        f"``(sum of x ** p) ** (1 / p)`` over each window (no padding).", n,
        """    norm_type : float
        ``p``; ``inf`` gives the max of ``|x|``, ``-inf`` the min.
    kernel_size, stride : int or tuple
    ceil_mode : bool""",
        """    ndarray or torch.Tensor""",
        f""">>> F.lp_pool{n}d(x, 2, 2).shape
    {_EXAMPLE[n][1]}""")
    lp_pool.__name__ = lp_pool.__qualname__ = f"lp_pool{n}d"
    return lp_pool


def _make_adaptive(kind, n):
    if kind == "max":
        def adaptive(input, output_size, return_indices=False):
            return _adaptive_pool(n, f"adaptive_max_pool{n}d", "max", input, output_size,
                                  return_indices)
    else:
        def adaptive(input, output_size):
            return _adaptive_pool(n, f"adaptive_avg_pool{n}d", "avg", input, output_size)

    indices = """
    return_indices : bool
        Also return each max's flat index in its plane.""" if kind == "max" else ""
    adaptive.__doc__ = _doc(
        f"{n}-D adaptive {kind} pooling, as ``torch.nn.functional.adaptive_{kind}_pool{n}d``: "
        f"output ``o`` of a dim of size L reads ``[floor(o L / O), ceil((o + 1) L / O))``.", n,
        f"""    output_size : int or tuple of ints (None keeps the input's size){indices}""",
        """    ndarray or torch.Tensor""",
        f""">>> F.adaptive_{kind}_pool{n}d(x, 4).shape
    {_EXAMPLE[n][1]}""")
    adaptive.__name__ = adaptive.__qualname__ = f"adaptive_{kind}_pool{n}d"
    return adaptive


def _make_max_unpool(n):
    def max_unpool(input, indices, kernel_size, stride=None, padding=0, output_size=None):
        return _max_unpool(n, f"max_unpool{n}d", input, indices, kernel_size, stride, padding,
                           output_size)

    max_unpool.__doc__ = _doc(
        f"{n}-D max unpooling, as ``torch.nn.functional.max_unpool{n}d``: the inverse of "
        f":func:`max_pool{n}d` with ``return_indices=True`` (zeros elsewhere).", n,
        """    indices : integer array or tensor, the input's shape
    kernel_size, stride, padding : int or tuple
        Those of the pooling; the output size is ``(L - 1) * stride + kernel - 2 * padding``
        unless ``output_size`` says otherwise (within a stride of it).
    output_size : sequence of ints, optional""",
        """    ndarray or torch.Tensor""",
        f""">>> y, i = F.max_pool{n}d(x, 2, return_indices=True)
    >>> F.max_unpool{n}d(y, i, 2).shape == x.shape
    True""")
    max_unpool.__name__ = max_unpool.__qualname__ = f"max_unpool{n}d"
    return max_unpool


max_pool1d, max_pool2d, max_pool3d = (_make_max_pool(n) for n in (1, 2, 3))
avg_pool1d, avg_pool2d, avg_pool3d = (_make_avg_pool(n) for n in (1, 2, 3))
lp_pool1d, lp_pool2d, lp_pool3d = (_make_lp_pool(n) for n in (1, 2, 3))
adaptive_max_pool1d, adaptive_max_pool2d, adaptive_max_pool3d = (
    _make_adaptive("max", n) for n in (1, 2, 3))
adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d = (
    _make_adaptive("avg", n) for n in (1, 2, 3))
max_unpool1d, max_unpool2d, max_unpool3d = (_make_max_unpool(n) for n in (1, 2, 3))
