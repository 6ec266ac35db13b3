"""Normalised descriptions of one op call, handed from the API layer to a backend.

Every array is 5-D: one to three spatial dims are padded with leading unit dims so that conv1d,
conv2d and conv3d (and the pools) share one kernel per backend. Arrays stay in the caller's
layout (``channels_first`` says which); each backend decides how to handle it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .shapes import Geometry


def pad_to_3d(geometry: Geometry) -> Geometry:
    """Return ``geometry`` with unit leading spatial dims so it describes three dims."""
    missing = 3 - len(geometry.in_sizes)
    ones = (1,) * missing
    return Geometry(ones + geometry.in_sizes, ones + geometry.kernel, ones + geometry.strides,
                    ones + geometry.dilations, ((0, 0),) * missing + geometry.pads,
                    ones + geometry.out_sizes)


def layout_shape(batch, channels, spatial, channels_first):
    """The shape (N, C, *spatial) or (N, *spatial, C) of data in the given layout."""
    spatial = tuple(spatial)
    return (batch, channels) + spatial if channels_first else (batch,) + spatial + (channels,)


@dataclass
class ConvProblem:
    """A (grouped, strided, dilated) convolution: ``out = act(conv(x, w) + bias)``."""

    x: Any  # (N, C, D, H, W) or (N, D, H, W, C)
    w: Any  # (T, R, S, C // groups, K)
    bias: Any  # (K,) or None
    geometry: Geometry  # three spatial dims
    groups: int
    activation: int
    channels_first: bool
    out_shape: tuple  # 5-D, data layout
    dtype: Any
    #: A prepared-filter plan's cache (:mod:`fastconv.plans`): what an algorithm derives from
    #: ``w`` alone (Winograd transforms, packed weights, device copies), kept for the plan's
    #: next calls (:func:`prepared`). None for plain calls: everything is derived per call.
    prepared: Any = None


def prepared(problem, name, make):
    """``make()`` (something derived from ``problem.w`` alone), kept in the problem's plan
    cache under ``name``, the dtype and the filters' shape when it has one.

    Examples
    --------
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> cache = {}
    >>> problem = SimpleNamespace(w=np.ones((1, 1, 1, 2, 3)), dtype=np.dtype("float64"),
    ...                           prepared=cache)
    >>> prepared(problem, "sum", lambda: problem.w.sum()), len(cache)
    (6.0, 1)
    >>> prepared(problem, "sum", lambda: None)  # the kept value, not make()'s
    6.0
    """
    cache = getattr(problem, "prepared", None)
    if cache is None:
        return make()
    key = (name, str(problem.dtype), tuple(problem.w.shape))
    value = cache.get(key)
    if value is None:
        value = cache[key] = make()
    return value


@dataclass
class ConvTransposeProblem:
    """A transposed convolution (the gradient of a conv with respect to its input).

    ``geometry`` is that of the *forward* conv, which maps the output's spatial sizes to the
    input's: every input pixel scatters ``w`` over the output at ``stride`` steps.
    """

    x: Any  # (N, C, D, H, W) or (N, D, H, W, C)
    w: Any  # (T, R, S, out_channels, in_channels), TF's layout
    geometry: Geometry  # the forward conv's, three spatial dims
    channels_first: bool
    out_shape: tuple  # 5-D, data layout
    dtype: Any
    bias: Any = None  # (out_channels,) or None: added to every output
    #: Grouped (the gradient of a grouped conv): ``w`` is then that conv's filters,
    #: ``(T, R, S, out_channels // groups, in_channels)``, group ``g``'s input channels
    #: scattering into its block of output channels.
    groups: int = 1
    #: Fused activation code (``fastconv.activations``), applied after the bias.
    activation: int = 0


@dataclass
class PoolProblem:
    """A windowed max or average pooling."""

    x: Any
    geometry: Geometry
    channels_first: bool
    out_shape: tuple
    dtype: Any
    kind: str = "max"  # "max" or "avg"
    #: PyTorch's max: windows start from -inf and a NaN wins (TF's: NaN never wins, and an
    #: all -inf window gives the dtype's lowest value).
    nan_wins: bool = False
    #: PyTorch's ``count_include_pad``: averages divide by the cells inside the input padded
    #: by the padding *before* on both sides (TF's: by the real cells).
    count_padding: bool = False


@dataclass
class GlobalPoolProblem:
    """A max or mean over every spatial position."""

    x: Any  # 5-D, data layout
    channels_first: bool
    out_shape: tuple  # (N, C)
    dtype: Any
    kind: str = "max"


@dataclass
class PadProblem:
    """Zero padding of the spatial dims."""

    x: Any  # 5-D, data layout
    pads: tuple  # three (before, after) pairs
    channels_first: bool
    out_shape: tuple
    dtype: Any


@dataclass
class ModePadProblem:
    """Padding of any dims, as ``torch.nn.functional.pad``: ``mode`` ``"constant"`` (with
    ``value``), ``"reflect"``, ``"replicate"`` or ``"circular"``; pads are non-negative
    (PyTorch's negative pads are crops, made before)."""

    x: Any  # up to 5-D
    pads: tuple  # one (before, after) pair per dim of x
    mode: str
    value: float
    out_shape: tuple
    dtype: Any


@dataclass
class UnpoolProblem:
    """Max unpooling: ``out`` zeros, then each input value stored at its index in its
    (batch, channel) plane of the output (flat, ``(d * H + h) * W + w``)."""

    x: Any  # (N, C, *spatial) or (N, *spatial, C)
    indices: Any  # integers, the shape of x, indices into the output's planes
    channels_first: bool
    out_shape: tuple  # data layout
    dtype: Any


@dataclass
class WindowPoolProblem:
    """Pooling over windows given per spatial dim as tables (PyTorch's rules).

    Output ``o`` of dim ``a`` reads input cells ``starts[a][o] + j * dilations[a]`` for
    ``j < sizes[a][o]``, those outside ``[0, in_size)`` being padding: this holds dilated and
    ceil-mode windows as well as adaptive pooling's uneven ones. ``kind`` is ``"max"`` (NaN
    wins, windows start from -inf, as PyTorch's CPU kernels), ``"avg"`` (the sum divided by
    ``divisor_override`` or by the product of ``divisors[a][o]``) or ``"lp"`` (``(sum of x **
    power / divisor * lp_scale) ** (1 / power)``, as ``torch.nn.functional.lp_pool*``).
    With ``return_indices`` the run returns ``(out, indices)``: each max's flat index in its
    (batch, channel) plane, ``(d * H + h) * W + w``, int64.
    """

    x: Any  # (N, C, D, H, W) or (N, D, H, W, C)
    starts: tuple  # three int64 arrays (out_size,)
    sizes: tuple  # three int64 arrays (out_size,)
    dilations: tuple  # three ints
    divisors: tuple  # three int64 arrays (out_size,); unused by max
    channels_first: bool
    out_shape: tuple  # 5-D, data layout
    dtype: Any
    kind: str = "max"
    return_indices: bool = False
    divisor_override: int = 0  # 0: divide by the product of the divisors
    power: float = 1.0
    lp_scale: float = 1.0

    def tables(self):
        """The tables as one (9, M) int64 array: per spatial dim (depth, height, width) the
        windows' first cells, tap counts and divisors (one array: one transfer to a GPU)."""
        longest = max(len(table) for table in self.starts)
        tables = np.zeros((9, max(longest, 1)), dtype=np.int64)
        for axis in range(3):
            for row, table in enumerate((self.starts, self.sizes, self.divisors)):
                values = table[axis]
                tables[3 * axis + row, :len(values)] = values
        return tables


@dataclass
class ConvFilterGradProblem:
    """The gradient of a conv with respect to its filters: ``out[t, r, s, c, k]`` sums
    ``x[n, od*s_d + t*d_d - p_d, ..., g*C/g + c] * grad[n, od, ..., k]`` over the batch and the
    output positions, ``g`` being output channel ``k``'s group."""

    ARRAYS: ClassVar = ("x", "grad")
    OUT_BATCHED: ClassVar = False

    x: Any  # the conv's input, 5-D, data layout
    grad: Any  # the gradient of the conv's output, 5-D, data layout
    geometry: Geometry  # the forward conv's, three spatial dims
    groups: int
    channels_first: bool
    out_shape: tuple  # (T, R, S, C // groups, K)
    dtype: Any


@dataclass
class PoolGradProblem:
    """The gradient of max or average pooling with respect to its input.

    ``kind="max"`` sends each window's gradient to the cell TF's CPU kernels pick: with
    ``ties="first"`` (MaxPoolGrad, 1-D and 2-D pooling) the first real cell of the window in
    row-major order unless a later one is strictly greater (so a NaN in first place keeps the
    gradient, a later NaN never takes it); with ``ties="all"`` (MaxPool3DGrad) every cell equal
    to the window's forward output ``y``. ``kind="avg"`` spreads it evenly over the real cells
    (``x`` is then only a shape: None).
    """

    ARRAYS: ClassVar = ("x", "y", "grad")

    x: Any  # the forward input, 5-D, data layout (None for avg)
    y: Any  # the forward output (ties="all" only, else None)
    grad: Any  # the gradient of the output, 5-D, data layout
    geometry: Geometry
    channels_first: bool
    out_shape: tuple  # the forward input's shape, 5-D
    dtype: Any
    kind: str = "max"
    ties: str = "first"


@dataclass
class WindowMaxProblem:
    """A 2-D window maximum: ``max_pool_with_argmax`` (``w`` None, ``with_indices``) or
    grayscale dilation (``w`` the (K_h, K_w, C) structuring function added to each cell).

    ``first_wins`` is MaxPoolWithArgmax's rule (a window's first real cell in row-major order
    is taken whatever it holds, then any strictly greater cell); without it, Dilation2D's (the
    maximum starts from the dtype's lowest finite value, so NaN never wins). Padding cells never
    take part. Indices are flat positions in the input as stored: ``((n * H + h) * W + w) * C +
    c`` channels-last, ``((n * C + c) * H + h) * W + w`` channels-first, the batch term only
    with ``include_batch``.
    """

    x: Any  # (N, H, W, C) or (N, C, H, W)
    w: Any  # (K_h, K_w, C) or None
    geometry: Geometry  # two spatial dims
    channels_first: bool
    out_shape: tuple  # 4-D, data layout
    dtype: Any
    first_wins: bool = True
    with_indices: bool = False
    include_batch: bool = False
    index_dtype: Any = np.int64
    #: Erosion: the maximum of ``-x + w`` (``w`` reversed by the caller), stored negated.
    negate: bool = False
