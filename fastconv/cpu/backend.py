"""Registers the CPU implementations with :mod:`fastconv.dispatch`.

Each ``run_*`` takes a problem from :mod:`fastconv.problems`, runs its kernel on the data in
the layout that kernel wants (some read channels-first data in place, others get a
channels-last copy), and returns the result in the caller's layout. ``applies`` predicates say
what an algorithm can compute, ``pays_off`` ones when it is worth choosing (the rule derived
from the measurements in benchmarks/RESULTS.md).
"""

import functools
import math

import numpy as np

from .. import config
from ..problems import prepared
from ..dispatch import Implementation, register
from . import cells_gemm, col2im, conv_filter_grad, numpy_grads, numpy_ops, window_max
from .compiling import compiled
from .conv import conv_direct_ndhwc, pad_ndhwc
from .conv_blocked import BLOCK_PIXELS, block_channels, blocked_fills_lanes, conv_blocked_strided
from .activation import RELU6, bias_activation_ncp
from .blas import batched_matmul, rows_matmul
from .conv_planar import block_rows, conv_planar, depthwise_planar, pad_for_planar, planar_lanes
from .depthwise import depthwise_ndhwc, row_block_code, streams_output
from .layout import (aligned_empty, channels_last_shape, from_channels_last, pad_spatial,
                     to_channels_last)
from .pool import AVG as POOL_AVG
from .pool import MAX as POOL_MAX
from .pool import AVG_PAD as POOL_AVG_PAD
from .pool import MAX_NAN as POOL_MAX_NAN
from .pool_grad import avg_pool_grad_ndhwc, max_pool_grad_ndhwc
from .pool import FIXED_WINDOW_MAX, global_pool_nsc, planar_fixed_kernel, pool_ncdhw, pool_ndhwc
from .threads import get_num_threads, parallel_region
from .transpose import as_conv_filters, flipped_filters, transpose_phases, upsample_and_pad
from .winograd import conv3x3_winograd, transform_filters
from .window_pool import window_pool_ndhwc, window_pool_planar
from .window_pool import MAX as WINDOW_MAX, AVG as WINDOW_AVG, LP as WINDOW_LP


def _skips_empty(run):
    """Wrap a ``run_*`` so empty inputs or outputs (batch 0, ...) return zeros of the shape."""
    def checked(problem):
        arrays = [getattr(problem, name) for name in getattr(problem, "ARRAYS", ("x",))]
        if 0 in problem.out_shape or any(a is not None and 0 in a.shape for a in arrays):
            return np.zeros(problem.out_shape, dtype=problem.dtype)
        return run(problem)

    checked.__name__ = checked.__qualname__ = run.__name__
    checked.__doc__ = run.__doc__
    return checked


def _bias_or_empty(bias, dtype):
    return np.empty(0, dtype=dtype) if bias is None else np.ascontiguousarray(bias, dtype=dtype)


def _conv_flops(problem):
    return 2.0 * math.prod(problem.out_shape) * math.prod(problem.w.shape[:4])


def _conv_microseconds(problem, algorithm):
    """Estimated single-core time of a conv problem run by ``algorithm`` (see
    threads.parallel_region), from ``config.SERIAL_GFLOPS``."""
    return _conv_flops(problem) / (config.SERIAL_GFLOPS[algorithm] * 1e3)


def _pool_microseconds(problem):
    """Estimated single-core time of a pooling problem: ~2 cells per nanosecond."""
    return math.prod(problem.out_shape) * math.prod(problem.geometry.kernel) / 2e3


@_skips_empty
def run_conv_direct(problem):
    """Direct convolution of a zero-padded copy of the input."""
    g = problem.geometry
    x = to_channels_last(problem.x, problem.channels_first)
    out = np.empty(channels_last_shape(problem.out_shape, problem.channels_first), problem.dtype)
    with parallel_region(_conv_microseconds(problem, "direct")):
        (d0, d1), (h0, h1), (w0, w1) = g.pads
        xp = pad_ndhwc(x, d0, d1, h0, h1, w0, w1) if any(sum(g.pads, ())) else x
        conv_direct_ndhwc(xp, np.ascontiguousarray(problem.w),
                          _bias_or_empty(problem.bias, problem.dtype), out, *g.strides,
                          *g.dilations, problem.groups, problem.activation)
    return from_channels_last(out, problem.channels_first)


@_skips_empty
def run_conv_transpose_direct(problem):
    """Transposed conv as the direct stride-1 conv of the input spread by the strides and
    padded (:mod:`.transpose`) with the flipped filters."""
    g = problem.geometry
    x = to_channels_last(problem.x, problem.channels_first)
    out = np.empty(channels_last_shape(problem.out_shape, problem.channels_first), problem.dtype)
    with parallel_region(_conv_microseconds(problem, "direct")):
        conv_direct_ndhwc(upsample_and_pad(x, g), flipped_filters(problem.w, problem.groups),
                          _bias_or_empty(problem.bias, problem.dtype), out, 1, 1, 1,
                          *g.dilations, problem.groups, problem.activation)
    return from_channels_last(out, problem.channels_first)


def _element_strides(array, channels_first):
    """Element strides of a 5-D array as (batch, channel, depth, height, width)."""
    order = (0, 1, 2, 3, 4) if channels_first else (0, 4, 1, 2, 3)
    return _strides_array(array.strides, array.itemsize, order,
                          array.shape[order[1]] == 1)


@functools.lru_cache(maxsize=1024)
def _strides_array(strides, itemsize, order, one_channel):
    result = np.array([strides[axis] // itemsize for axis in order], dtype=np.int64)
    if one_channel:
        # One channel: channels-first and channels-last are the same memory. A unit channel
        # stride lets the blocked kernel merge a window row's taps into one channel loop.
        result[1] = 1
    return result


@functools.lru_cache(maxsize=4096)
def _int64s(values):
    """``values`` (a tuple) as an int64 array, memoised: the kernels take their sizes and
    strides as arrays (never writing them), and a layer asks for the same ones every call."""
    return np.array(values, dtype=np.int64)


@_skips_empty
def run_conv_blocked(problem):
    """Register-blocked convolution in the caller's layout (no transposes for NCHW)."""
    g = problem.geometry
    channels_first = problem.channels_first
    x, pads_before = _input_and_padding(problem, g.pads)
    out = np.empty(problem.out_shape, problem.dtype)
    _blocked(x, channels_first, pads_before, problem.w, problem.groups,
             problem.bias, out, channels_first, out.reshape(-1),
             _element_strides(out, channels_first), _spatial(out, channels_first), g.strides,
             g.dilations, problem.activation, _conv_microseconds(problem, "blocked"))
    if any(pads_before):  # the padding was skipped, not read: 0 * inf taps give NaN there
        numpy_ops.nan_where_nonfinite_taps_meet_padding(
            np.moveaxis(out, 1, -1) if channels_first else out, problem.w, g)
    return out


@_skips_empty
def run_filter_grad_blocked(problem):
    """A conv's filter gradient on the blocked micro-kernel, in the caller's layout (see
    :mod:`.conv_filter_grad`)."""
    g = problem.geometry
    channels_first = problem.channels_first
    x, dy = np.ascontiguousarray(problem.x), np.ascontiguousarray(problem.grad)
    t_, r_, s_, cg, k_total = problem.out_shape
    groups = problem.groups
    kg, kb = k_total // groups, block_channels(problem.dtype)
    per_group = -(-kg // kb)
    n_, (od_, oh_, ow_) = dy.shape[0], _spatial(dy, channels_first)
    packed = np.empty((groups * per_group, n_ * od_ * oh_, ow_, kb), problem.dtype)
    work = t_ * r_ * s_ * cg * k_total * n_ * od_ * oh_ * ow_  # multiply-adds
    with parallel_region(work / 2e4):
        not_finite = conv_filter_grad.pack_grad(dy.reshape(-1), _element_strides(dy, channels_first),
                                                od_, oh_, kg, packed)
        out = np.zeros((t_ * r_ * s_, cg, groups * per_group * kb), problem.dtype)
        conv_filter_grad.filter_grad_blocked(
            x.reshape(-1), _element_strides(x, channels_first),
            _int64s(tuple(_spatial(x, channels_first))),
            _int64s(tuple(before for before, _ in g.pads)), packed, _int64s(g.kernel),
            _int64s(g.strides), _int64s(g.dilations), od_, oh_, cg, groups, out)
    out = out.reshape(t_ * r_ * s_, cg, groups, per_group * kb)[..., :kg]
    out = np.ascontiguousarray(out).reshape(problem.out_shape)
    if not_finite:
        numpy_grads.nan_where_nonfinite_grads_meet_padding(
            out, np.moveaxis(dy, 1, -1) if channels_first else dy, g, groups)
    return out


def _filter_grad_blocked_applies(problem):
    """Enough output channels per group to fill the micro-kernel's lanes (see
    :func:`.conv_blocked.blocked_fills_lanes`)."""
    return blocked_fills_lanes(problem.groups, problem.out_shape[4], problem.x.itemsize)


def _filter_grad_blocked_pays_off(problem):
    """Measured against BLAS on the gathered cells (benchmarks/RESULTS.md): the blocked form
    wins once its reductions are long (a few hundred output positions) and its blocks hold at
    least 4 cells (a tap row's width x channels); a one-channel first layer (3 cells) and a
    4x4 map (32 positions) run faster as one BLAS product."""
    _, _, s_, cg, _ = problem.out_shape
    positions = math.prod(problem.grad.shape) // problem.grad.shape[
        1 if problem.channels_first else 4]
    cells = s_ * cg if cg < conv_filter_grad.BLOCK_PIXELS and problem.groups == 1 else cg
    return positions >= 256 and cells >= 4


def _im2col_applies(problem):
    """One group, and a gathered-cells matrix of at most 64 MiB."""
    return problem.groups == 1 and numpy_ops.im2col_bytes(problem) <= 64 << 20


def _im2col_pays_off(problem):
    """Small maps with large filters, where the other algorithms re-read or transform the
    filters for little work (benchmarks/RESULTS.md: 3x3 512 -> 512 on a 4x4 map, batch 2:
    6.8 ms by Winograd, whose filter transform is the whole cost, 7-11 ms blocked, which
    re-reads the 9.4 MB of filters for each row of outputs, 0.6 ms here; 14x14x256 batch 1:
    1.3 ms by Winograd, 0.86 ms here): filters at least as large as the gathered cells, and
    those at most 8 MiB (28x28x128 batch 1, cells 6x the filters: Winograd 1.7x faster)."""
    filters = problem.w.nbytes
    if filters < 1 << 16:  # most convs: decided without computing the cells' size
        return False
    cells = numpy_ops.im2col_bytes(problem)
    return cells <= 8 << 20 and filters >= cells


@_skips_empty
def run_conv_im2col(problem):
    """The gathered window cells times the filters read in place (:mod:`.cells_gemm`): for
    small maps with large filters, which BLAS would pack again on every call."""
    cells = numpy_ops.gather_cells(problem)
    w = np.ascontiguousarray(problem.w, dtype=problem.dtype).reshape(cells.shape[1], -1)
    k_total = w.shape[1]
    # Whole channel blocks only: zero columns (and bias) up to the next multiple.
    extra = -k_total % block_channels(problem.dtype)
    bias = _bias_or_empty(problem.bias, problem.dtype)
    if extra:
        w = np.pad(w, ((0, 0), (0, extra)))
        bias = np.pad(bias, (0, extra)) if bias.shape[0] else bias
    out = np.empty((cells.shape[0], w.shape[1]), problem.dtype)
    chunks = cells_gemm.row_chunks(cells.shape[0], w.shape[1], cells.itemsize,
                                   get_num_threads())
    with parallel_region(_conv_microseconds(problem, "blocked")):
        cells_gemm.cells_matmul(cells, w, bias, out, chunks, problem.activation)
    if extra:
        out = out[:, :k_total]
    out = out.reshape((problem.x.shape[0], *problem.geometry.out_sizes, k_total))
    return np.ascontiguousarray(np.moveaxis(out, -1, 1)) if problem.channels_first else out


@_skips_empty
def run_conv_transpose_col2im(problem):
    """A transposed conv (a conv's input gradient) as one matrix product and a compiled
    scatter by output rows: ``cols = w @ x^T`` gives every tap's contribution of every input
    pixel, then each output row adds the taps landing on it (:mod:`.col2im`). For few output
    channels (one group), where the blocked kernels' vector lanes would be mostly empty."""
    g = problem.geometry
    x = to_channels_last(problem.x, problem.channels_first)
    w = np.asarray(problem.w)  # (T, R, S, out, in)
    taps, out_channels = math.prod(g.kernel), w.shape[3]
    cols = (w.reshape(taps * out_channels, -1) @ x.reshape(-1, x.shape[-1]).T).astype(
        problem.dtype, copy=False).reshape(tuple(g.kernel) + (out_channels,) + x.shape[:4])
    out = np.empty((x.shape[0], *g.in_sizes, out_channels), problem.dtype)
    axes = [col2im.landing_taps(g.in_sizes[a], g.out_sizes[a], g.kernel[a], g.strides[a],
                                g.dilations[a], g.pads[a][0]) for a in range(2)]
    columns = col2im.column_runs(g.in_sizes[2], g.out_sizes[2], g.kernel[2], g.strides[2],
                                 g.dilations[2], g.pads[2][0])
    with parallel_region(cols.size / 1e3):
        col2im.col2im_rows(cols, out, *axes, columns, g.strides[2])
    if problem.bias is not None:
        out += np.asarray(problem.bias, problem.dtype)
    return from_channels_last(numpy_ops.activate(out, problem.activation),
                              problem.channels_first)


# Padded copies: config.PAD_COPY_MAX_ELEMENTS (cache-resident inputs are padded by a copy) and
# config.PAD_COPY_MAX_RATIO (algorithms reading a padded copy run only while it stays within a
# multiple of the op's own size: SAME padding with a huge dilation would allocate far more).


def _padded_elements(problem, pads):
    """Elements of ``problem.x`` zero-padded by ``pads`` (three (before, after) pairs)."""
    spatial = _spatial(problem.x, problem.channels_first)
    batch, channels = problem.x.shape[0], problem.x.shape[1 if problem.channels_first else 4]
    return batch * channels * math.prod(n + a + b for n, (a, b) in zip(spatial, pads))


def _padded_copy_limit(problem):
    """The most elements a padded copy of the input may hold: a multiple of the op's size."""
    return (config.PAD_COPY_MAX_RATIO * (problem.x.size + math.prod(problem.out_shape))
            + config.PAD_COPY_MAX_ELEMENTS)


def _padded_copy_is_bounded(problem, pads):
    return _padded_elements(problem, pads) <= _padded_copy_limit(problem)


def _input_and_padding(problem, pads):
    """The blocked kernel's input and the zero padding it must imply before each dim.

    The kernel skips taps that fall into the padding instead of reading a padded copy, which
    is the same sum unless a filter holds inf or NaN: TF's kernels then give NaN (0 * inf)
    where such a tap meets the padding, so those filters get a real zero-padded copy (or, when
    that copy would be unbounded, :func:`.numpy_ops.nan_where_nonfinite_taps_meet_padding`
    afterwards).
    Small inputs get one too: copying them costs less than the kernel's edge handling per row.
    """
    if any(sum(pads, ())) and (_padded_elements(problem, pads) <= config.PAD_COPY_MAX_ELEMENTS
                               or (not np.isfinite(problem.w).all()
                                   and _padded_copy_is_bounded(problem, pads))):
        return pad_spatial(problem.x, pads, problem.channels_first), [0, 0, 0]
    return np.ascontiguousarray(problem.x), [before for before, _ in pads]


def _spatial(array, channels_first):
    return array.shape[2:] if channels_first else array.shape[1:4]


def _blocked(x, x_first, pads_before, w, groups, bias, out, out_first, out_flat, out_strides,
             out_spatial, strides, dilations, activation, microseconds):
    """Run the blocked kernel on unpadded ``x`` (zero padding ``pads_before`` implied) into
    ``out_flat`` (a flat view with strides)."""
    batch, channels = out.shape[0], out.shape[1 if out_first else 4]
    with parallel_region(microseconds):
        conv_blocked_strided(x.reshape(-1), _element_strides(x, x_first),
                             _int64s(tuple(_spatial(x, x_first))), _int64s(tuple(pads_before)),
                             np.ascontiguousarray(w, dtype=out.dtype), groups,
                             _bias_or_empty(bias, out.dtype), out_flat, out_strides,
                             _int64s((batch, channels, *out_spatial)), _int64s(tuple(strides)),
                             _int64s(tuple(dilations)), activation)


@_skips_empty
def run_conv_transpose_blocked(problem):
    """Transposed conv as one small stride-1 blocked conv per output phase (sub-pixel form)."""
    g = problem.geometry
    channels_first = problem.channels_first
    pads, phases = transpose_phases(tuple(_spatial(problem.x, channels_first)), g)
    x, shift = _input_and_padding(problem, pads)
    covered = all(all(phase["taps"]) for phase in phases)
    # Phases with no taps (stride > kernel) stay zero (or the bias); otherwise every output
    # is written.
    out = (np.empty if covered else np.zeros)(problem.out_shape, problem.dtype)
    if not covered and (problem.bias is not None or problem.activation):
        # The outputs no tap reaches hold act(bias) (act(0) without a bias).
        bias = (np.zeros(problem.out_shape[1 if channels_first else 4], problem.dtype)
                if problem.bias is None else np.asarray(problem.bias, problem.dtype))
        out[...] = numpy_ops.activate(bias, problem.activation).reshape(
            (-1, 1, 1, 1) if channels_first else (-1,))
    out_strides = _element_strides(out, channels_first)
    phase_strides = out_strides.copy()
    phase_strides[2:] *= np.array(g.strides, dtype=np.int64)
    for phase in phases:
        if not all(phase["taps"]) or 0 in phase["count"]:
            continue
        # (T, R, S, out, in) -> this phase's taps in offset order, as (T, R, S, in, out).
        w = as_conv_filters(problem.w[phase["tap_slices"]], problem.groups)
        out_start = int(np.dot(phase["start"], out_strides[2:]))
        # The phase reads padded x from ``offset``: x itself with this much padding before.
        pads_before = [before - offset for before, offset in zip(shift, phase["offset"])]
        _blocked(x, channels_first, pads_before, w, problem.groups, problem.bias, out,
                 channels_first,
                 out.reshape(-1)[out_start:], phase_strides, phase["count"], (1, 1, 1),
                 phase["dilation"], problem.activation,
                 _conv_microseconds(problem, "blocked") / len(phases))
    return out


@_skips_empty
def run_conv_planar(problem):
    """Conv with vectors along output rows: channels-first data in place, channels-last data
    (few channels in and out, where the channels-last kernels would leave lanes idle)
    through transposes."""
    g = problem.geometry
    first = problem.channels_first
    x = problem.x if first else from_channels_last(problem.x, True)
    out = np.empty(problem.out_shape if first else
                   (problem.out_shape[0], problem.out_shape[4]) + problem.out_shape[1:4],
                   problem.dtype)
    with parallel_region(_conv_microseconds(problem, "planar")):
        xp = pad_for_planar(x, g.pads, out.shape[4], g.kernel[2], g.dilations[2], g.strides[2])
        conv_planar(xp, np.ascontiguousarray(problem.w, dtype=problem.dtype),
                    _bias_or_empty(problem.bias, problem.dtype), out, g.strides[0],
                    g.strides[1], *g.dilations, problem.activation, g.strides[2],
                    block_rows(problem.w.shape[4]))
    return out if first else to_channels_last(out, True)


@_skips_empty
def run_conv_gemm(problem):
    """1x1 stride-1 conv as BLAS matrix products, BLAS on one thread per share and the shares
    on fastconv's threads (see :mod:`.blas`): channels-first ``W^T @ X[n]`` per image,
    channels-last ``X @ W`` over all pixels."""
    batch = problem.x.shape[0]
    channels = problem.x.shape[1 if problem.channels_first else 4]
    out = np.empty(problem.out_shape, problem.dtype)
    bias = _bias_or_empty(problem.bias, problem.dtype)
    if problem.channels_first:
        out3 = out.reshape(batch, out.shape[1], -1)
        weights = prepared(problem, "gemm", lambda: np.ascontiguousarray(
            problem.w.reshape(channels, -1).T, dtype=problem.dtype))
        batched_matmul(weights, np.ascontiguousarray(problem.x).reshape(batch, channels, -1),
                       out3)
    else:
        out2 = out.reshape(-1, out.shape[4])
        weights = prepared(problem, "gemm_last", lambda: np.ascontiguousarray(
            problem.w.reshape(channels, -1), dtype=problem.dtype))
        rows_matmul(np.ascontiguousarray(problem.x).reshape(-1, channels), weights, out2)
        out3 = out2.reshape(out2.shape[0], out2.shape[1], 1)  # bias along the middle axis
    if problem.bias is not None or problem.activation:
        with parallel_region(out.size / 1e3):
            bias_activation_ncp(out3, bias, problem.activation)
    return out


def _gemm_applies(problem):
    g = problem.geometry
    return (problem.groups == 1 and g.kernel == (1, 1, 1) and g.strides == (1, 1, 1)
            and not any(sum(g.pads, ())))


def _gemm_pays_off(problem):
    """When the conv expands the channels 2x or more (channels-last 8x56x56 64 -> 256: blocked
    6.55 ms, BLAS 5.13; channels-first 5.9 / 4.3), and, channels-first, also where the blocked
    kernel cannot fill its blocks: with AVX2's 3-pixel blocks always (NCHW 256 -> 64 b8:
    blocked 9.3 ms, BLAS 4.5), with AVX-512's 12-pixel blocks for fewer output channels than a
    block (32 -> 16: 0.37 / 0.24 ms). Otherwise the blocked kernel, reading NCHW in place, beat
    BLAS on AVX-512 (256 -> 64 b8 3.1 / 4.3 ms, 128 -> 128 28x28 0.83 / 1.00, 1024 -> 256
    14x14 1.3 / 2.2; benchmarks/RESULTS.md)."""
    k_out, k_in = problem.w.shape[4], problem.w.shape[3]
    if k_out >= 2 * k_in:
        return True
    return problem.channels_first and (BLOCK_PIXELS < 12
                                       or k_out < block_channels(problem.dtype))


def _planar_pays_off(problem):
    # Measured (benchmarks/RESULTS.md): vectors along rows win only with a few input
    # channels; with many, each step reads another plane and the prefetchers lose track.
    # Channels-last data pays two transposes, worth it where the channels-last kernels leave
    # most lanes idle: a few channels in and at most half a lane block out (16 float32
    # outputs, CIFAR's first layer: 0.70 -> 0.40 ms; 32 outputs: 0.75 -> 1.21 ms).
    if not problem.channels_first:
        return (problem.x.shape[4] <= config.PLANAR_MAX_CHANNELS
                and 2 * problem.w.shape[4] <= block_channels(problem.dtype))
    return problem.x.shape[1] <= config.PLANAR_MAX_CHANNELS


def _planar_applies(problem):
    return (problem.groups == 1 and problem.geometry.strides[2] <= 4
            and _padded_copy_is_bounded(problem, problem.geometry.pads))


@_skips_empty
def run_conv_winograd(problem):
    """Winograd F(2x2, 3x3): 2.25x fewer multiplications for 3x3 stride-1 layers.

    Falls back to the blocked direct kernel when an output is not finite (NaN or infinity in
    the data: the transforms would spread it across a tile).
    """
    g = problem.geometry
    x = np.ascontiguousarray(problem.x)
    out = np.empty(problem.out_shape, problem.dtype)
    fused = problem.activation if problem.activation <= RELU6 else 0
    sizes = np.array([out.shape[0], problem.w.shape[4], *_spatial(out, problem.channels_first)],
                     dtype=np.int64)
    with parallel_region(_conv_microseconds(problem, "winograd")):
        finite = conv3x3_winograd(x, problem.channels_first,
                                  prepared(problem, "winograd", lambda: transform_filters(
                                      problem.w, problem.dtype)),
                                  _bias_or_empty(problem.bias, problem.dtype), out.reshape(-1),
                                  _element_strides(out, problem.channels_first), sizes,
                                  np.array([before for before, _ in g.pads], dtype=np.int64),
                                  fused)
        if finite and fused != problem.activation:
            bias_activation_ncp(out.reshape(out.shape[0], 1, -1), np.empty(0, problem.dtype),
                                problem.activation)
    if not finite:  # outside the region above: regions do not nest
        return run_conv_blocked(problem)
    return out


def _winograd_applies(problem):
    # 3x3 in height and width, any depth taps (summed in the Winograd domain), all stride 1.
    g = problem.geometry
    return (problem.groups == 1 and g.kernel[1:] == (3, 3)
            and g.strides == (1, 1, 1) and g.dilations == (1, 1, 1))


def _winograd_pays_off(problem):
    # Measured (benchmarks/RESULTS.md): 1.3-2.5x faster than the blocked kernel from 16 input
    # channels up (channels-first too, transposes included); slower with 8, and on tiny
    # layers (< 50 MFLOP), where transforming the filters costs more than it saves.
    channels = problem.x.shape[1 if problem.channels_first else 4]
    return (channels >= config.WINOGRAD_MIN_CHANNELS
            and _conv_flops(problem) >= config.WINOGRAD_MIN_MFLOP * 1e6)


def _blocked_pays_off(problem):
    return blocked_fills_lanes(problem.groups, problem.w.shape[4], problem.dtype.itemsize)


@_skips_empty
def run_conv_depthwise(problem):
    """One filter per input channel (groups == channels, one output each): vector tap sums
    across channels, or on channels-first data with rows of at least a vector (and stride 1
    along them), along each plane's rows in place."""
    g = problem.geometry
    w = prepared(problem, "depthwise", lambda: np.ascontiguousarray(
        problem.w[..., 0, :], dtype=problem.dtype))  # (T, R, S, C)
    if _depthwise_in_planes(problem):
        out = np.empty(problem.out_shape, problem.dtype)
        with parallel_region(_conv_microseconds(problem, "depthwise")):
            xp = pad_for_planar(problem.x, g.pads, out.shape[4], g.kernel[2], g.dilations[2],
                                g.strides[2])
            depthwise_planar(xp, w, _bias_or_empty(problem.bias, problem.dtype), out,
                             g.strides[0], g.strides[1], *g.dilations, problem.activation,
                             g.strides[2])
        return out
    x = to_channels_last(problem.x, problem.channels_first)
    shape = channels_last_shape(problem.out_shape, problem.channels_first)
    block = row_block_code(g.kernel[2], g.strides[2], g.dilations[2])
    streaming = bool(block) and streams_output(math.prod(shape) * problem.dtype.itemsize,
                                               shape[-1], problem.dtype.itemsize)
    out = aligned_empty(shape, problem.dtype) if streaming else np.empty(shape, problem.dtype)
    nonfinite = ~np.isfinite(w)  # weights that turn skipped padding into NaN, as in TF
    nonfinite = nonfinite.reshape(-1) if nonfinite.any() else np.empty(0, dtype=bool)
    with parallel_region(_conv_microseconds(problem, "depthwise")):
        depthwise_ndhwc(x, w, nonfinite, _bias_or_empty(problem.bias, problem.dtype), out,
                        *g.strides, *g.dilations, *(before for before, _ in g.pads),
                        problem.activation, block, streaming)
    return from_channels_last(out, problem.channels_first)


def _depthwise_in_planes(problem):
    # Measured (benchmarks/RESULTS.md): on channels-first data, per-plane row vectors beat
    # transposing to channels-last and back 1.2-2x once an output row fills a vector; on
    # narrower rows most lanes idle and the transposes win. Width strides read rows split
    # into phases (conv_planar.pad_phases).
    g = problem.geometry
    return (problem.channels_first and g.strides[2] <= 4
            and problem.out_shape[4] >= planar_lanes(problem.dtype)
            and _padded_copy_is_bounded(problem, g.pads))


def _depthwise_applies(problem):
    return problem.w.shape[3] == 1 and problem.w.shape[4] == problem.groups


@_skips_empty
def run_pool_direct(problem):
    """Max or average pooling with clipped windows."""
    g = problem.geometry
    x = to_channels_last(problem.x, problem.channels_first)
    out = np.empty(channels_last_shape(problem.out_shape, problem.channels_first), problem.dtype)
    pads_before = tuple(before for before, _ in g.pads)
    mode, lowest = _pool_mode(problem)
    with parallel_region(_pool_microseconds(problem)):
        pool_ndhwc(x, out, *g.kernel, *g.strides, *pads_before, mode, lowest)
    return from_channels_last(out, problem.channels_first)


def _pool_mode(problem):
    """The kernels' mode and the max's starting value: TF's max starts from the dtype's
    lowest value, PyTorch's from -inf."""
    if problem.kind != "max":
        return POOL_AVG_PAD if problem.count_padding else POOL_AVG, problem.dtype.type(0)
    if problem.nan_wins:
        return POOL_MAX_NAN, problem.dtype.type(-np.inf)
    return POOL_MAX, np.finfo(problem.dtype).min


@_skips_empty
def run_pool_planar(problem):
    """Channels-first pooling in place: separable row reduction per (batch, channel) plane."""
    g = problem.geometry
    out = np.empty(problem.out_shape, problem.dtype)
    pads_before = tuple(before for before, _ in g.pads)
    mode, lowest = _pool_mode(problem)
    x = np.ascontiguousarray(problem.x)
    with parallel_region(_pool_microseconds(problem)):
        if g.in_sizes[0] == 1 and max(g.kernel[1:] + g.strides[1:]) <= FIXED_WINDOW_MAX:
            # Common 1-D/2-D windows: a kernel compiled for the shape (vectorised rows).
            n, c, _, h, w = x.shape
            kernel = planar_fixed_kernel(*g.kernel[1:], *g.strides[1:])
            kernel(x.reshape(n * c, h, w), out.reshape(n * c, *out.shape[3:]),
                   pads_before[1], pads_before[2], mode, lowest)
        else:
            pool_ncdhw(x, out, *g.kernel, *g.strides, *pads_before, mode, lowest)
    return out


_WINDOW_MODES = {"max": WINDOW_MAX, "avg": WINDOW_AVG, "lp": WINDOW_LP}


def run_window_pool(problem):
    """PyTorch-rule pooling over window tables (:mod:`.window_pool`): the output, or
    ``(output, indices)`` when the problem asks for indices."""
    out = np.empty(problem.out_shape, problem.dtype)
    idx = np.zeros(problem.out_shape if problem.return_indices else (0,) * 5, np.int64)
    if out.size and problem.x.size:
        x = np.ascontiguousarray(problem.x)
        args = (problem.tables(), *problem.dilations, _WINDOW_MODES[problem.kind],
                int(problem.divisor_override), float(problem.power), float(problem.lp_scale))
        cells = math.prod(max(sizes, default=1) for sizes in problem.sizes)
        with parallel_region(out.size * cells / 2e3):  # ~2 cells per ns, as pooling
            if problem.channels_first:
                planes = x.shape[0] * x.shape[1]
                idx4 = (idx.reshape(planes, *idx.shape[2:]) if problem.return_indices
                        else np.zeros((0,) * 4, np.int64))
                window_pool_planar(x.reshape(planes, *x.shape[2:]),
                                   out.reshape(planes, *out.shape[2:]), idx4, *args)
            else:
                window_pool_ndhwc(x, out, idx, *args)
    return (out, idx) if problem.return_indices else out


def _is_channels_first(problem):
    return problem.channels_first


def run_global_pool(problem):
    """Global max / mean over the spatial dims."""
    n, channels = problem.out_shape
    if problem.channels_first and problem.x.size:
        # Each (batch, channel) plane is one contiguous row: NumPy's SIMD reductions read it
        # in place (the kernel below wants channels-last, which would cost a transposed copy
        # of the whole input). max propagates NaN, as tf.reduce_max does.
        rows = np.ascontiguousarray(problem.x).reshape(n, channels, -1)
        if problem.kind == "max":
            return rows.max(axis=2)
        return rows.mean(axis=2, dtype=problem.dtype)
    x = to_channels_last(problem.x, problem.channels_first)
    out = np.empty((n, channels), problem.dtype)
    if out.size == 0:
        return out
    with parallel_region(x.size / 2e3):
        global_pool_nsc(x.reshape(n, -1, channels), out, problem.kind == "max")
    return out


@_skips_empty
def run_pool_grad(problem):
    """Max or average pooling's input gradient, scattered window by window; channels-first
    planes are viewed as one-channel channels-last arrays (no copies)."""
    g = problem.geometry
    dtype = problem.dtype

    def as_5d(array):
        array = np.ascontiguousarray(array, dtype=dtype)
        if problem.channels_first:
            n, c, d, h, w = array.shape
            return array.reshape(n * c, d, h, w, 1)
        return array

    dx = np.empty(problem.out_shape, dtype)
    grad = as_5d(problem.grad)
    pads = [before for before, _ in g.pads]
    with parallel_region(_pool_microseconds(problem)):
        if problem.kind == "avg":
            avg_pool_grad_ndhwc(grad, as_5d(dx), *g.kernel, *g.strides, *pads)
        else:
            x = as_5d(problem.x)
            ties_all = problem.ties == "all"
            max_pool_grad_ndhwc(x, as_5d(problem.y) if ties_all else x, grad, as_5d(dx),
                                *g.kernel, *g.strides, *pads, ties_all)
    return dx


def run_zero_pad(problem):
    """Zero padding: one allocation, one copy of the input into the interior."""
    return pad_spatial(problem.x, problem.pads, problem.channels_first)


def _direct_applies(problem):
    return _padded_copy_is_bounded(problem, problem.geometry.pads)


def _transpose_direct_applies(problem):
    # Reads the input spread by the strides and padded by the filter's reach on each side.
    g = problem.geometry
    pads = tuple(((k - 1) * d, (k - 1) * d) for k, d in zip(g.kernel, g.dilations))
    return _padded_elements(problem, pads) * math.prod(g.strides) <= _padded_copy_limit(problem)


def _planar_pool_window(problem):
    """The window and stride compiled into the planar pooling kernel, when it uses one."""
    g = problem.geometry
    if g.in_sizes[0] == 1 and max(g.kernel[1:] + g.strides[1:]) <= FIXED_WINDOW_MAX:
        return g.kernel[1:] + g.strides[1:]
    return ()


def _register(family, name, run, applies=None, extra=None, **options):
    """Register a compiled algorithm; its first calls follow :mod:`.compiling`'s policy."""
    if applies is not None:
        options["applies"] = applies
    register(Implementation(family, "cpu", name, compiled(family, name, extra)(run), **options))


_register("conv", "direct", run_conv_direct, _direct_applies)
_register("conv", "blocked", run_conv_blocked, priority=10, pays_off=_blocked_pays_off)
_register("conv", "planar", run_conv_planar, _planar_applies, priority=12,
          pays_off=_planar_pays_off)
_register("conv", "gemm", run_conv_gemm, _gemm_applies, priority=13, pays_off=_gemm_pays_off)
_register("conv", "winograd", run_conv_winograd, _winograd_applies, priority=15,
          pays_off=_winograd_pays_off)
_register("conv", "depthwise", run_conv_depthwise, _depthwise_applies, priority=20)
# One product of the gathered cells and the filters read in place.
_register("conv", "im2col", run_conv_im2col, _im2col_applies, pays_off=_im2col_pays_off,
          priority=16)
_register("conv_transpose", "direct", run_conv_transpose_direct, _transpose_direct_applies)
_register("conv_transpose", "blocked", run_conv_transpose_blocked, priority=10)
# Few output channels per group (a first layer's input gradient, an RGB stem's): one BLAS
# product and a scatter beat the blocked kernels, whose vector lanes would be mostly empty.
_register("conv_transpose", "col2im", run_conv_transpose_col2im,
          lambda problem: (problem.groups == 1
                           and numpy_grads.col2im_bytes(problem) <= numpy_grads.IM2COL_MAX_BYTES),
          priority=12,
          pays_off=lambda problem: problem.w.shape[3] < config.COL2IM_MAX_OUT_CHANNELS)
for _family in ("max_pool", "avg_pool"):
    _register(_family, "direct", run_pool_direct)
    _register(_family, "planar", run_pool_planar, _is_channels_first, _planar_pool_window,
              priority=10)
_register("global_pool", "direct", run_global_pool)
_register("window_max", "direct", window_max.run)
_register("window_pool", "tables", run_window_pool)
_register("zero_pad", "direct", run_zero_pad)
for _family in ("max_pool_grad", "avg_pool_grad"):
    _register(_family, "direct", run_pool_grad)
# A sum of BLAS matrix products (one per kernel tap): nothing to compile.
register(Implementation("conv_filter_grad", "cpu", "gemm",
                        _skips_empty(numpy_grads.conv_filter_grad)))
# Dense and grouped filters: the forward micro-kernel reducing over the output positions.
_register("conv_filter_grad", "blocked", run_filter_grad_blocked, _filter_grad_blocked_applies,
          priority=5, pays_off=_filter_grad_blocked_pays_off)
# Depthwise (multiplier 1): one compiled pass instead of a NumPy einsum per tap.
_register("conv_filter_grad", "depthwise", numpy_grads.depthwise_filter_grad,
          numpy_grads.depthwise_filter_grad_applies, priority=10)
# Unpooling is one scatter, which NumPy does at memory speed: nothing to compile.
register(Implementation("max_unpool", "cpu", "scatter", numpy_ops.max_unpool))
register(Implementation("pad", "cpu", "copy", numpy_ops.mode_pad))
# The first-call tier (plain NumPy, nothing to compile): chosen by the policy, or when forced.
for _family, _run in numpy_ops.BY_FAMILY.items():
    register(Implementation(_family, "cpu", "numpy", _skips_empty(_run), auto=False))
