"""Every op on dask arrays: a lazy result, computed block by block by the ordinary kernels.

A public op given a dask array as its ``input`` comes here (:func:`run`). The call is first
validated exactly as an in-memory call: the op runs on a zero-strided stand-in of the input's
shape and dtype under :func:`fastconv.dispatch.capture_problems`, which records the normalised
problem (window geometry, groups, fused bias and activation) without computing or allocating.
The lazy result is then built from that problem, one task per output block.

How blocks map (docs/dask.md says more):

* **Batch** chunks are independent: output batch chunks are the input's.
* **Spatial** chunks (:func:`window_segments`): output ``j`` belongs to the input block holding
  its anchor, cell ``j * stride`` (a SAME window's centre at stride 1, so SAME stride-1 ops keep
  the chunks and stride ``s`` divides them by ``s``; zero padding anchors at the window start,
  so the edge blocks take the padding). A block reads its windows' cells: its input block plus
  a halo of at most the window taken from the neighbouring blocks, however small they are,
  gathered into one array; its op gets the padding made explicit where the block meets the
  input's border and none inside. Input blocks holding no anchor (smaller than the stride) give
  no output block, so output chunks are never empty. Transposed convs
  (:func:`transposed_segments`) map the other way: output block ``i`` starts at output
  ``a_i * stride`` and gathers the input cells whose taps reach it.
* **Channels** stay chunked for the ops that treat channels independently (pools, zero padding,
  global pools) and for grouped and depthwise convs whose channel chunks hold whole groups;
  other convolutions and transposed convs need every input channel in a block, so the channel
  axis is rechunked to one chunk (the only rechunk).
* **Global pools** are tree reductions (``dask.array.reduction``): each block is reduced by the
  ordinary global-pool kernel, partial maxima combine by ``max`` (NaN propagates as in memory),
  partial means by their float64 sums over the known total count.

Blocks are NumPy or CuPy arrays (CUDA kernels run on CuPy blocks); filters and bias stay NumPy
and travel in the graph, which is written directly (one task per output block, one ``getitem``
per neighbouring chunk it reads: only halos move between workers). Results equal the in-memory
call: bit for bit for the ops that only select or copy (max pools, zero padding), within the
suite's float tolerance otherwise (a conv's sums are the same; the algorithm chosen per block
may differ).

Importing this module imports dask; ``import fastconv`` does not import this module.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np

from . import dispatch
from .problems import layout_shape
from .shapes import Geometry
from .validation import check_device, is_dask_array


def _import_dask_array():
    try:
        import dask.array as da
    except ImportError:  # pragma: no cover - the input is a dask array, so dask is installed
        raise ImportError("fastconv's dask support needs dask[array]: pip install "
                          "'fastconv[dask]'") from None
    return da


class Segment(NamedTuple):
    """One output block along one dim: the input cells it reads and how the op sees them.

    ``start``/``stop`` are the input slice; ``pad_before``/``pad_after`` the explicit padding
    the block's op gets; ``out`` the block's output length. For transposed convs the padding is
    that of the block's *forward* conv (the output block is that conv's input).
    """

    start: int
    stop: int
    pad_before: int
    pad_after: int
    out: int


def _ceil_div(a, b):
    return -(-a // b)


def _bounds(chunks):
    """Block boundaries ``[0, a_1, ..., n]`` of a dim's chunk sizes."""
    return np.concatenate([[0], np.cumsum(chunks)]).astype(int).tolist()


def window_segments(chunks, kernel, stride, dilation, pads, out_size, shift=None):
    """Output blocks of a windowed op (conv, pool, padding) along one dim.

    Output ``j``'s window starts at input cell ``j * stride - pads[0]``. Output ``j`` belongs
    to the input block holding its *anchor*, cell ``j * stride - pads[0] + shift`` (anchors
    before the input count for the first block, after it for the last); blocks holding no
    anchor give no output block. ``shift`` defaults to ``pads[0]``: the anchor is
    ``j * stride``, a SAME window's centre at stride 1, so SAME stride-1 ops keep the chunks and
    stride ``s`` divides them by ``s``; zero padding uses 0, so the first and last blocks take
    the padding. A block reads its windows' cells: ``pads[0] - shift`` cells before its input
    block at most and ``(kernel - 1) * dilation - pads[0] + shift`` after it (the halo).

    Examples
    --------
    >>> [tuple(s) for s in window_segments((4, 4), 3, 1, 1, (1, 1), 8)]
    [(0, 5, 1, 0, 4), (3, 8, 0, 1, 4)]
    >>> [s.out for s in window_segments((3, 3, 3), 2, 2, 1, (0, 0), 4)]
    [2, 1, 1]
    >>> [s.out for s in window_segments((4, 4), 1, 1, 1, (2, 1), 11, shift=0)]
    [6, 5]
    """
    span = (kernel - 1) * dilation + 1
    before = pads[0]
    shift = before if shift is None else shift
    bounds = _bounds(chunks)
    size = bounds[-1]
    # The first output anchored at or after a_i: j * stride - before + shift >= a_i.
    starts = ([0] + [min(out_size, max(0, _ceil_div(a + before - shift, stride)))
                     for a in bounds[1:-1]] + [out_size])
    segments = []
    for first, end in zip(starts[:-1], starts[1:]):
        if end <= first:
            continue
        low = first * stride - before  # the first window's first cell (may be padding)
        high = (end - 1) * stride - before + span  # one past the last window's last cell
        start, stop = max(low, 0), min(high, size)
        segments.append(Segment(start, stop, start - low, high - stop, end - first))
    return segments


def transposed_segments(chunks, kernel, stride, dilation, pad_before, out_size):
    """Output blocks of a transposed conv along one dim (``chunks`` are its input's).

    The forward conv maps the transposed conv's output (``out_size`` cells) to its input with
    ``pad_before``: input cell ``i`` and tap ``t`` reach output ``i * stride - pad_before +
    t * dilation``. Output block ``i`` starts at output ``a_i * stride`` (the inverse of
    :func:`window_segments`' anchor: SAME stride-1 chunks are kept, stride ``s`` multiplies
    them by ``s``); it gathers the input cells whose taps reach it (at least one, so that the
    block's forward conv has a non-negative padding on both sides).

    Examples
    --------
    >>> [tuple(s) for s in transposed_segments((2, 2), 3, 2, 1, 0, 9)]
    [(0, 2, 0, 1, 4), (1, 4, 2, 0, 5)]
    """
    span = (kernel - 1) * dilation + 1
    bounds = _bounds(chunks)
    size = bounds[-1]
    edges = [0] + [min(out_size, a * stride) for a in bounds[1:-1]] + [out_size]
    segments = []
    for first, end in zip(edges[:-1], edges[1:]):
        if end <= first:
            continue
        # The first input cell whose taps reach output `first` (or, where none does, the last
        # one before it), and the last one that reaches output end - 1 (or the next after it).
        start = min(_ceil_div(first + pad_before - span + 1, stride),
                    (first + pad_before) // stride)
        start = min(max(start, 0), size - 1)
        last = max((end - 1 + pad_before) // stride, _ceil_div(end + pad_before - span, stride))
        last = max(min(last, size - 1), start)
        before = first + pad_before - start * stride
        # Negative only at the input's end where the forward conv leaves its last rows unread
        # (by less than a stride): the block then has the same unread rows, padding 0.
        after = max(last * stride + span - (end + pad_before), 0)
        segments.append(Segment(start, last + 1, before, after, end - first))
    return segments


def _channel_axis(ndim, channels_first):
    return 1 if channels_first else ndim - 1


def _spatial_axes(ndim, channels_first):
    return tuple(range(2, ndim)) if channels_first else tuple(range(1, ndim - 1))


@dataclasses.dataclass(frozen=True)
class _Channels:
    """How the channel axis maps: input slices and, for convs, the filters each block takes."""

    segments: tuple  # ((start, stop) of input channels, (start, stop) of output channels)
    grouped: bool  # convs: blocks take a slice of the filters (whole groups per chunk)


def _conv_channels(x, problem):
    """Keep channel chunks holding whole groups of a grouped conv, else one chunk."""
    axis = _channel_axis(x.ndim, problem.channels_first)
    chunks = x.chunks[axis]
    group_in = problem.w.shape[-2]
    per_group = problem.w.shape[-1] // problem.groups
    bounds = _bounds(chunks)
    if problem.groups > 1 and len(chunks) > 1 and all(b % group_in == 0 for b in bounds):
        segments = tuple(((a, b), (a // group_in * per_group, b // group_in * per_group))
                         for a, b in zip(bounds[:-1], bounds[1:]) if b > a)
        return x, _Channels(segments, True)
    return _whole_channels(x, problem.channels_first, problem.w.shape[-1])


def _whole_channels(x, channels_first, out_channels):
    """``x`` with its channel axis in one chunk (every input channel in every block)."""
    axis = _channel_axis(x.ndim, channels_first)
    if len(x.chunks[axis]) > 1:
        x = x.rechunk({axis: -1})
    return x, _Channels((((0, x.shape[axis]), (0, out_channels)),), False)


def _independent_channels(x, channels_first):
    bounds = _bounds(x.chunks[_channel_axis(x.ndim, channels_first)])
    return _Channels(tuple(((a, b), (a, b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a),
                     False)


def _block_problem(template, family, x5, geometry, out5, channel_slices):
    """The template's problem for one block: its input, geometry, output shape and filters."""
    changes = dict(x=x5, out_shape=out5)
    if family == "zero_pad":
        changes["pads"] = tuple(geometry.pads)
    else:
        changes["geometry"] = geometry
    if channel_slices is not None:  # a grouped conv's block of whole groups
        (c0, c1), (k0, k1) = channel_slices
        group_in = template.w.shape[-2]
        changes.update(w=template.w[..., k0:k1], groups=(c1 - c0) // group_in,
                       bias=None if template.bias is None else template.bias[k0:k1])
        if hasattr(template, "prepared"):  # a plan's cache holds the whole filters' forms
            changes["prepared"] = None
    return dataclasses.replace(template, **changes)


def compute_block(block, template, family, geometry, out_shape, channel_slices, device):
    """Run one block: ``block`` is the input slice (caller's layout), ``geometry`` the block's
    three-dim geometry with explicit padding, ``out_shape`` its output in the caller's layout.

    Called by dask's workers (module-level, so it pickles by name).
    """
    channels_first = template.channels_first
    in_sizes, out_sizes = geometry.in_sizes, geometry.out_sizes
    if family == "conv_transpose":  # the geometry is the forward conv's, output -> input
        in_sizes, out_sizes = out_sizes, in_sizes
    axis = _channel_axis(block.ndim, channels_first)
    x5 = block.reshape(layout_shape(block.shape[0], block.shape[axis], in_sizes, channels_first))
    out_channels = out_shape[_channel_axis(len(out_shape), channels_first)]
    out5 = layout_shape(out_shape[0], out_channels, out_sizes, channels_first)
    problem = _block_problem(template, family, x5, geometry, out5, channel_slices)
    return dispatch.run(family, dispatch.choose_device((block,), device), problem).reshape(
        out_shape)


def _zeros_block(in_shape, template, geometry, out_shape, channel_slices, device):
    """A conv block whose windows read only padding: computed from zeros (bias, activation)."""
    return compute_block(np.zeros(in_shape, template.dtype), template, "conv", geometry,
                         out_shape, channel_slices, device)


def _standin(x):
    """A zero-strided NumPy array of ``x``'s shape and dtype: validation without memory."""
    if any(isinstance(n, float) and math.isnan(n) for n in x.shape):
        raise ValueError(f"input is a dask array with unknown chunk sizes (shape {x.shape}); "
                         f"call input.compute_chunk_sizes() first")
    return np.broadcast_to(np.zeros((), x.dtype), tuple(int(n) for n in x.shape))


def _materialise_small(value):
    """Filters and bias given as dask arrays are small: compute them once, here."""
    return np.asarray(value) if is_dask_array(value) else value


def run(op, input, args, kwargs):
    """``op(input, *args, **kwargs)`` for a dask array ``input``: a lazy dask array.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastconv
    >>> x = da.ones((1, 10, 10, 1), dtype=np.float32, chunks=(1, 4, 4, 1))
    >>> y = fastconv.conv2d(x, np.ones((3, 3, 1, 1), np.float32), 1, "SAME")
    >>> y.chunks[1:3], float(y[0, 0, 0, 0].compute()), float(y[0, 5, 5, 0].compute())
    (((4, 4, 2), (4, 4, 2)), 4.0, 9.0)
    """
    da = _import_dask_array()
    args = tuple(_materialise_small(a) for a in args)
    kwargs = {k: _materialise_small(v) for k, v in kwargs.items()}
    device = check_device(kwargs.get("device"))
    with dispatch.capture_problems() as seen:
        standin_result = op(_standin(input), *args, **kwargs)
    out_shape = tuple(standin_result.shape)
    (family, _, problem), = seen
    if 0 in input.shape:  # nothing to chunk: the in-memory op on the empty input
        return da.from_array(op(np.zeros(input.shape, input.dtype), *args, **kwargs))
    meta = da.utils.meta_from_array(input, len(out_shape), problem.dtype)
    template = dataclasses.replace(problem, x=None)
    if family == "global_pool":
        return _global_pool(da, input, template, out_shape, device, meta)
    return _windowed(da, input, template, family, out_shape, device, meta)


def _segments_per_dim(x, template, family):
    """One list of :class:`Segment` per spatial dim of ``x``."""
    n_spatial = x.ndim - 2
    axes = _spatial_axes(x.ndim, template.channels_first)
    per_dim = []
    for dim, axis in enumerate(axes):
        chunks = x.chunks[axis]
        if family == "zero_pad":
            before, after = template.pads[3 - n_spatial + dim]
            size = x.shape[axis]
            per_dim.append(window_segments(chunks, 1, 1, 1, (before, after),
                                           size + before + after, shift=0))
            continue
        g = template.geometry
        d3 = 3 - n_spatial + dim
        if family == "conv_transpose":
            per_dim.append(transposed_segments(chunks, g.kernel[d3], g.strides[d3],
                                               g.dilations[d3], g.pads[d3][0], g.in_sizes[d3]))
        else:
            per_dim.append(window_segments(chunks, g.kernel[d3], g.strides[d3], g.dilations[d3],
                                           g.pads[d3], g.out_sizes[d3]))
    return per_dim


def _block_geometry(template, family, segments, n_spatial):
    """The three-dim geometry of one block (unit leading dims as the template's)."""
    lead = 3 - n_spatial
    if family == "zero_pad":
        ones = (1,) * lead
        return Geometry(ones + tuple(s.stop - s.start for s in segments), (1,) * 3, (1,) * 3,
                        (1,) * 3, ((0, 0),) * lead + tuple((s.pad_before, s.pad_after)
                                                           for s in segments),
                        ones + tuple(s.out for s in segments))
    g = template.geometry
    pads = g.pads[:lead] + tuple((s.pad_before, s.pad_after) for s in segments)
    reads, outs = tuple(s.stop - s.start for s in segments), tuple(s.out for s in segments)
    if family == "conv_transpose":  # the block's forward conv: output block -> input slice
        reads, outs = outs, reads
    return Geometry(g.in_sizes[:lead] + reads, g.kernel, g.strides, g.dilations, pads,
                    g.out_sizes[:lead] + outs)


def _only_padding(family, segments):
    """True when a conv block's windows read no input cell along some dim (explicit padding
    wider than the window): its input is all zeros, so the block is computed from zeros."""
    return family == "conv" and any(s.stop <= s.start for s in segments)


def _zeros_geometry(template, segments, n_spatial):
    """A padding-only block's geometry over a zero input of the windows' full extent."""
    lead = 3 - n_spatial
    g = template.geometry
    sizes = tuple(s.stop - s.start + s.pad_before + s.pad_after for s in segments)
    return Geometry(g.in_sizes[:lead] + sizes, g.kernel, g.strides, g.dilations,
                    g.pads[:lead] + ((0, 0),) * n_spatial,
                    g.out_sizes[:lead] + tuple(s.out for s in segments))


def _overlapping_chunks(bounds, start, stop):
    """``[(chunk index, slice within it)]`` of the chunks holding cells ``start .. stop - 1``."""
    first = int(np.searchsorted(bounds, start, side="right")) - 1
    parts = []
    for index in range(max(first, 0), len(bounds) - 1):
        low, high = bounds[index], bounds[index + 1]
        if low >= stop:
            break
        if high > start and high > low:
            parts.append((index, slice(max(start, low) - low, min(stop, high) - low)))
    return parts


def _windowed(da, x, template, family, out_shape, device, meta):
    """Convs, transposed convs, pools and zero padding: one task per output block.

    The graph is written directly, as dask's own ``map_overlap`` does: a block's task takes the
    pieces of the input chunks it reads (a ``getitem`` task per neighbouring chunk, so only the
    halo moves between workers, or the chunk's own key when the whole chunk is read), assembles
    them and runs the kernel. Building it costs a few tens of microseconds per block, whatever
    the size of the input's graph (slicing the dask array per block cost milliseconds, growing
    with the graph).
    """
    import itertools
    import operator

    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    channels_first = template.channels_first
    n_spatial = x.ndim - 2
    if family in ("conv", "conv_transpose"):
        if family == "conv_transpose":  # filters (T, R, S, out_channels, in_channels)
            x, channels = _whole_channels(x, channels_first, template.w.shape[-2])
        else:
            x, channels = _conv_channels(x, template)
    else:
        channels = _independent_channels(x, channels_first)
    per_dim = _segments_per_dim(x, template, family)
    spatial_axes = _spatial_axes(x.ndim, channels_first)
    spatial_bounds = [_bounds(x.chunks[axis]) for axis in spatial_axes]
    channel_bounds = _bounds(x.chunks[_channel_axis(x.ndim, channels_first)])
    batch_chunks = [(i, n) for i, n in enumerate(x.chunks[0]) if n > 0]
    token = tokenize(x.name, family, template, per_dim, channels, device)
    name, parts_name = f"fastconv-{family}-{token}", f"fastconv-{family}-halo-{token}"

    def caller_order(batch, spatial, channel):
        return (batch, channel, *spatial) if channels_first else (batch, *spatial, channel)

    dsk = {}
    grid = (range(len(batch_chunks)), *(range(len(s)) for s in per_dim),
            range(len(channels.segments)))
    for index in itertools.product(*grid):
        batch_chunk, batch = batch_chunks[index[0]]
        segments = [per_dim[d][i] for d, i in enumerate(index[1:-1])]
        (c0, c1), (k0, k1) = channels.segments[index[-1]]
        channel_chunk = int(np.searchsorted(channel_bounds, c0, side="right")) - 1
        block_out = layout_shape(batch, k1 - k0, tuple(s.out for s in segments), channels_first)
        channel_slices = ((c0, c1), (k0, k1)) if channels.grouped else None
        key = (name, *caller_order(index[0], index[1:-1], index[-1]))
        if _only_padding(family, segments):
            geometry = _zeros_geometry(template, segments, n_spatial)
            in_shape = layout_shape(batch, c1 - c0, geometry.in_sizes[3 - n_spatial:],
                                    channels_first)
            dsk[key] = (_zeros_block, in_shape, template, geometry, block_out, channel_slices,
                        device)
            continue
        per_dim_parts = [_overlapping_chunks(bounds, seg.start, seg.stop)
                         for bounds, seg in zip(spatial_bounds, segments)]
        within_channel = slice(c0 - channel_bounds[channel_chunk],
                               c1 - channel_bounds[channel_chunk])

        def piece(where):
            """The key of the piece of one input chunk (``where``: its place in the block)."""
            chunk_ids = tuple(per_dim_parts[d][i][0] for d, i in enumerate(where))
            slices = caller_order(slice(None), tuple(per_dim_parts[d][i][1]
                                                     for d, i in enumerate(where)),
                                  within_channel)
            source = (x.name, *caller_order(batch_chunk, chunk_ids, channel_chunk))
            if all(sl == slice(None) or (sl.start == 0 and sl.stop == x.chunks[a][source[1 + a]])
                   for a, sl in enumerate(slices)):
                return source  # the whole chunk
            part_key = (parts_name, *key[1:], *where)
            dsk[part_key] = (operator.getitem, source, slices)
            return part_key

        def nested(where=()):
            """Nested lists of piece keys over the spatial dims, leaves wrapped for channels."""
            if len(where) == n_spatial:
                return piece(where) if channels_first else [piece(where)]
            return [nested(where + (i,)) for i in range(len(per_dim_parts[len(where)]))]

        parts = [[nested()]] if channels_first else [nested()]
        dsk[key] = (_block_from_parts, parts, template, family,
                    _block_geometry(template, family, segments, n_spatial), block_out,
                    channel_slices, device)
    chunks = caller_order(tuple(n for _, n in batch_chunks),
                          tuple(tuple(s.out for s in segs) for segs in per_dim),
                          tuple(k1 - k0 for _, (k0, k1) in channels.segments))
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[x])
    result = da.Array(graph, name, chunks, meta=meta)
    assert result.shape == out_shape, (result.shape, out_shape)
    return result


def _assemble(parts, axis=0):
    """Concatenate nested lists of arrays, the outer list along ``axis`` (``np.concatenate``
    dispatches to CuPy for CuPy pieces)."""
    if not isinstance(parts, list):
        return parts
    pieces = [_assemble(part, axis + 1) for part in parts]
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=axis)


def _block_from_parts(parts, template, family, geometry, out_shape, channel_slices, device):
    """A block's task: assemble the pieces of the input it reads, then :func:`compute_block`."""
    return compute_block(_assemble(parts), template, family, geometry, out_shape,
                         channel_slices, device)


# ----------------------------------------------------------------------------- global pools

def _global_partial(block, axis, keepdims, kind, data_format, device):
    """One block's partial result: its maximum, or its float64 sum (mean times count)."""
    import fastconv

    if kind == "max":
        return fastconv.global_max_pool2d(block, data_format, keepdims=True, device=device)
    count = math.prod(block.shape[a] for a in axis)
    mean = fastconv.global_avg_pool2d(block, data_format, keepdims=True, device=device)
    return mean.astype(np.float64) * count


def _global_combine(partials, axis, keepdims, kind):
    if kind == "max":
        return partials.max(axis=axis, keepdims=True)
    return partials.sum(axis=axis, keepdims=True)


def _global_aggregate(partials, axis, keepdims, kind, count, dtype):
    combined = _global_combine(partials, axis, keepdims, kind)
    if kind == "avg":
        combined = (combined / count).astype(dtype)
    return combined if keepdims else combined.squeeze(axis=axis)


def _global_pool(da, x, template, out_shape, device, meta):
    """A tree reduction of the blocks' global pools (keepdims follows ``out_shape``)."""
    import functools

    axes = _spatial_axes(x.ndim, template.channels_first)
    keepdims = len(out_shape) == x.ndim
    data_format = "NCHW" if template.channels_first else "NHWC"
    count = math.prod(x.shape[a] for a in axes)
    kind = template.kind
    return da.reduction(
        x, functools.partial(_global_partial, kind=kind, data_format=data_format, device=device),
        functools.partial(_global_aggregate, kind=kind, count=count, dtype=template.dtype),
        combine=functools.partial(_global_combine, kind=kind), axis=axes, keepdims=keepdims,
        dtype=template.dtype, meta=meta)
