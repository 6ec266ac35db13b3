"""Max/avg pooling, global pooling and zero padding on the GPU.

All three are memory-bound, so the kernels are arranged for coalesced memory access: the
fastest-varying thread index walks the fastest-varying array dim (channels for channels-last,
columns for channels-first), and every output element is written exactly once.

Windowed pooling gives each thread one output element and clips its window to the input, which
gives TF's CPU semantics without materialising padding: max starts from the dtype's lowest
finite value and ``v > m`` skips NaN; avg divides by the number of real cells. The window and
strides are compile-time constants of each kernel.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda, int64, uint32, uint64

from . import kernels
from .launch import numba_float

#: CUDA's limit on gridDim.y and gridDim.z; larger counts are covered by grid-stride loops.
GRID_YZ_LIMIT = 65535


def _grid(inner, outer, threads):
    """Grid covering ``inner`` elements along x (one per thread) and ``outer`` rows along y."""
    return (max(1, -(-inner // threads)), max(1, min(outer, GRID_YZ_LIMIT)))


#: Arrays with at least this many elements index outputs with 64-bit integers.
WIDE_ELEMENTS = 1 << 32


def wide_indexing(*arrays):
    """Whether a launch over ``arrays`` needs 64-bit output positions (see
    :func:`_element_indexing`): never below 2**32 elements (16 GiB of float32)."""
    return any(array.size >= WIDE_ELEMENTS for array in arrays)


@functools.lru_cache(maxsize=None)
def _element_indexing(channels_first, wide=False):
    """Device functions shared by the one-thread-per-output kernels (pooling, zero padding).

    ``sizes(x, out)`` gives (channels, in_d, in_h, in_w, out_d, out_h, out_w, inner_size,
    outer_size) for the launch layout of :func:`_grid`; ``position(inner, outer, ...)`` turns a
    thread's (inner, outer) pair into (n, c, od, oh, ow). The fastest-varying ``inner`` walks
    the array's fastest dim (columns channels-first, channels channels-last) for coalescing.

    Positions are unsigned (Python's floor division and modulo of signed ints cost sign
    fix-ups) and 32-bit unless ``wide``: 64-bit divisions are long instruction sequences whose
    registers kept every pooling kernel above 64 registers, i.e. below 50% occupancy.
    """
    index = uint64 if wide else uint32

    @cuda.jit(device=True)
    def sizes(x, out):
        if channels_first:
            channels, in_d, in_h, in_w = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
            out_d, out_h, out_w = out.shape[2], out.shape[3], out.shape[4]
            return (channels, in_d, in_h, in_w, out_d, out_h, out_w, out_h * out_w,
                    x.shape[0] * channels * out_d)
        in_d, in_h, in_w, channels = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
        out_d, out_h, out_w = out.shape[1], out.shape[2], out.shape[3]
        return (channels, in_d, in_h, in_w, out_d, out_h, out_w, out_w * channels,
                x.shape[0] * out_d * out_h)

    @cuda.jit(device=True)
    def position(inner, outer, channels, out_d, out_h, out_w):
        inner, outer, channels = index(inner), index(outer), index(channels)
        out_d, out_h, out_w = index(out_d), index(out_h), index(out_w)
        if channels_first:
            n, c, od = outer // (out_d * channels), (outer // out_d) % channels, outer % out_d
            oh, ow = inner // out_w, inner % out_w
        else:
            n, c, od = outer // (out_h * out_d), inner % channels, (outer // out_h) % out_d
            oh, ow = outer % out_h, inner // channels
        # Signed again for the callers' arithmetic (window starts go negative), where numba
        # and the simulator's NumPy scalars would otherwise disagree on the type.
        return int64(n), int64(c), int64(od), int64(oh), int64(ow)

    return sizes, position


@kernels.factory
def pool_kernel(kind, dtype, window, strides, channels_first, threads, device, nan_wins=False,
                count_padding=False, wide=False):
    """Build (once per static configuration) a max or avg pooling kernel.

    Returns ``kernel(x, out, pad_d, pad_h, pad_w)`` over 5-D arrays in the data layout, to be
    launched on :func:`_grid` of (inner, outer) where inner is ``OW * C`` (channels-last) or
    ``OH * OW`` (channels-first) and outer the product of the remaining output dims.
    """
    k_d, k_h, k_w = window
    s_d, s_h, s_w = strides
    is_max = kind == "max"
    ftype = numba_float(dtype)
    lowest = -np.inf if nan_wins else float(np.finfo(dtype).min)
    sizes, position = _element_indexing(channels_first, wide)

    @kernels.jit(threads)
    def pool(x, out, pad_d, pad_h, pad_w):
        (channels, in_d, in_h, in_w, out_d, out_h, out_w, inner_size,
         outer_size) = sizes(x, out)
        inner = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        if inner >= inner_size:
            return
        for outer in range(cuda.blockIdx.y, outer_size, cuda.gridDim.y):
            n, c, od, oh, ow = position(inner, outer, channels, out_d, out_h, out_w)
            d_first = od * s_d - pad_d
            h_first = oh * s_h - pad_h
            w_first = ow * s_w - pad_w
            # PyTorch's count_include_pad divisor: the cells inside the padded input
            padded = ((min(d_first + k_d, in_d + pad_d) - d_first)
                      * (min(h_first + k_h, in_h + pad_h) - h_first)
                      * (min(w_first + k_w, in_w + pad_w) - w_first))
            d_stop = min(d_first + k_d, in_d)
            h_stop = min(h_first + k_h, in_h)
            w_stop = min(w_first + k_w, in_w)
            d_first = max(d_first, 0)
            h_first = max(h_first, 0)
            w_first = max(w_first, 0)
            result = ftype(lowest) if is_max else ftype(0)
            # Unsigned indices (all in range): a signed index costs a negative-index fix-up
            # per access, and registers the kernel's launch bound does not have.
            un, uc = uint64(n), uint64(c)
            for d in range(d_first, d_stop):
                for h in range(h_first, h_stop):
                    for w in range(w_first, w_stop):
                        if channels_first:
                            value = x[un, uc, uint64(d), uint64(h), uint64(w)]
                        else:
                            value = x[un, uint64(d), uint64(h), uint64(w), uc]
                        if is_max:
                            # False for NaN: NaN never wins, as on TF's CPU (unless nan_wins,
                            # PyTorch's rule)
                            if value > result or (nan_wins and value != value):
                                result = value
                        else:
                            result += value
            if is_max:
                stored = result
            elif count_padding:
                stored = result / ftype(padded)
            else:  # a new name: reassigning ``result`` would retype the sum as float64
                stored = result / ((d_stop - d_first) * (h_stop - h_first) * (w_stop - w_first))
            if channels_first:
                out[un, uc, uint64(od), uint64(oh), uint64(ow)] = stored
            else:
                out[un, uint64(od), uint64(oh), uint64(ow), uc] = stored

    return pool


def launch_pool(x, out, geometry, kind, channels_first, device, nan_wins=False,
                count_padding=False):
    """Run max or avg pooling of device array ``x`` into ``out`` (both 5-D, data layout)."""
    from .. import config

    threads = config.CUDA_THREADS_PER_BLOCK
    kernel = pool_kernel(kind, str(out.dtype), tuple(geometry.kernel), tuple(geometry.strides),
                         bool(channels_first), threads, device, bool(nan_wins),
                         bool(count_padding), wide=wide_indexing(x, out))
    if channels_first:
        n, c, out_d, out_h, out_w = out.shape
        inner, outer = out_h * out_w, n * c * out_d
    else:
        n, out_d, out_h, out_w, c = out.shape
        inner, outer = out_w * c, n * out_d * out_h
    pads = tuple(before for before, _ in geometry.pads)
    kernel[_grid(inner, outer, threads), threads](x, out, *pads)
    return out


# ----------------------------------------------------------------------------- window tables

@kernels.factory
def window_pool_kernel(dtype, channels_first, mode, threads, device, wide=False):
    """PyTorch-rule pooling over window tables (see ``WindowPoolProblem``), one thread per
    output element: ``kernel(x, out, idx, tables, dil_d, dil_h, dil_w, override, power,
    scale)`` with ``tables`` (9, M) int64 and mode 0 max (NaN wins; ``idx`` gets the argmax
    unless it is empty), 1 average, 2 Lp, as :mod:`fastconv.cpu.window_pool`."""
    ftype = numba_float(dtype)
    sizes, position = _element_indexing(channels_first, wide)

    # Lp pooling takes a pow per cell (libdevice's, ~30 registers: 24 B of spills under the
    # 64-register bound in float64): compute-bound, bounded like the conv kernel.
    @kernels.jit(threads, kernels.COMPUTE_BOUND_THREADS if mode == 2
                 else kernels.MEMORY_BOUND_THREADS)
    def window_pool(x, out, idx, t, dil_d, dil_h, dil_w, override, power, scale):
        (channels, in_d, in_h, in_w, out_d, out_h, out_w, inner_size,
         outer_size) = sizes(x, out)
        inner = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        if inner >= inner_size:
            return
        with_indices = idx.shape[0] > 0
        exponent = ftype(power)
        for outer in range(cuda.blockIdx.y, outer_size, cuda.gridDim.y):
            n, c, od, oh, ow = position(inner, outer, channels, out_d, out_h, out_w)
            acc = ftype(-np.inf) if mode == 0 else ftype(0)
            where = -1
            for jd in range(t[1, od]):
                d = t[0, od] + jd * dil_d
                if d < 0 or d >= in_d:
                    continue
                for jh in range(t[4, oh]):
                    h = t[3, oh] + jh * dil_h
                    if h < 0 or h >= in_h:
                        continue
                    for jw in range(t[7, ow]):
                        w = t[6, ow] + jw * dil_w
                        if w < 0 or w >= in_w:
                            continue
                        if channels_first:
                            value = x[n, c, d, h, w]
                        else:
                            value = x[n, d, h, w, c]
                        if mode == 0:
                            if where < 0:
                                where = (d * in_h + h) * in_w + w  # the first real cell
                            if value > acc or value != value:  # PyTorch's rule: NaN wins
                                acc = value
                                where = (d * in_h + h) * in_w + w
                        elif mode == 1:
                            acc += value
                        else:
                            acc += value ** exponent
            if mode == 0:
                stored = acc
            else:
                count = override if override > 0 else t[2, od] * t[5, oh] * t[8, ow]
                stored = acc / ftype(count)
                if mode == 2:
                    stored = (stored * ftype(scale)) ** ftype(1.0 / power)
            if channels_first:
                out[n, c, od, oh, ow] = stored
                if with_indices:
                    idx[n, c, od, oh, ow] = where
            else:
                out[n, od, oh, ow, c] = stored
                if with_indices:
                    idx[n, od, oh, ow, c] = where

    return window_pool


def launch_window_pool(x, out, idx, tables, problem, device):
    """Run a ``WindowPoolProblem`` of device array ``x`` into ``out`` (and ``idx``)."""
    from .. import config

    threads = config.CUDA_THREADS_PER_BLOCK
    # The mode is compiled in: one kernel holding all three paths (and Lp's pow) needed more
    # than the 64 registers of 50% occupancy in float64.
    modes = {"max": 0, "avg": 1, "lp": 2}
    kernel = window_pool_kernel(str(out.dtype), bool(problem.channels_first),
                                modes[problem.kind], threads, device,
                                wide=wide_indexing(x, out))
    if problem.channels_first:
        n, c, out_d, out_h, out_w = out.shape
        inner, outer = out_h * out_w, n * c * out_d
    else:
        n, out_d, out_h, out_w, c = out.shape
        inner, outer = out_w * c, n * out_d * out_h
    kernel[_grid(inner, outer, threads), threads](
        x, out, idx, tables, *problem.dilations, int(problem.divisor_override),
        float(problem.power), float(problem.lp_scale))
    return out


@kernels.factory
def unpool_kernel(dtype, channels_first, threads, device):
    """``kernel(x, indices, out)`` on (N, C, S) / (N, S, C) views (channels-first / last): one
    thread per input element stores it at its index of ``out`` (zeroed before)."""

    @kernels.jit(threads)
    def unpool(x, indices, out):
        i = cuda.grid(1)
        if channels_first:
            n_, c_, s_ = x.shape
        else:
            n_, s_, c_ = x.shape
        if i >= n_ * c_ * s_:
            return
        if channels_first:
            n, c, s = i // (c_ * s_), (i // s_) % c_, i % s_
            out[n, c, indices[n, c, s]] = x[n, c, s]
        else:
            n, s, c = i // (s_ * c_), (i // c_) % s_, i % c_
            out[n, indices[n, s, c], c] = x[n, s, c]

    return unpool


@kernels.factory
def fill_zeros_kernel(dtype, threads, device):
    """``kernel(out)``: zeros into a 1-D device array, one thread per element."""

    @kernels.jit(threads)
    def fill(out):
        i = cuda.grid(1)
        if i < out.shape[0]:
            out[i] = 0

    return fill


def launch_max_unpool(x, indices, out, channels_first, device):
    """Zero ``out`` and scatter ``x`` into it (all device arrays, data layout)."""
    from .. import config

    threads = config.CUDA_THREADS_PER_BLOCK
    n = out.shape[0]
    channels = out.shape[1] if channels_first else out.shape[-1]
    planes = (n, channels, -1) if channels_first else (n, -1, channels)
    flat = out.reshape(-1)
    fill = fill_zeros_kernel(str(out.dtype), threads, device)
    fill[max(1, -(-flat.size // threads)), threads](flat)
    if x.size:
        kernel = unpool_kernel(str(out.dtype), bool(channels_first), threads, device)
        kernel[max(1, -(-x.size // threads)), threads](x.reshape(planes),
                                                       indices.reshape(planes),
                                                       out.reshape(planes))
    return out


_PAD_MODES = {"constant": 0, "reflect": 1, "replicate": 2, "circular": 3}


@kernels.factory
def mode_pad_kernel(dtype, threads, device):
    """``kernel(x, out, before, mode, value)`` on 5-D arrays: each output element reads the
    input cell its index maps to (``before``: the padding before each dim), as
    ``torch.nn.functional.pad``'s modes do, or ``value`` (constant mode) outside."""
    ftype = numba_float(dtype)

    @cuda.jit(device=True)
    def source(o, before, size, mode):
        s = o - before
        if 0 <= s < size:
            return s
        if mode == 1:  # reflect (pads below the size: one reflection)
            return -s if s < 0 else 2 * (size - 1) - s
        if mode == 2:  # replicate
            return 0 if s < 0 else size - 1
        if mode == 3:  # circular (pads at most the size)
            return s + size if s < 0 else s - size
        return -1

    @kernels.jit(threads)
    def pad(x, out, before, mode, value):
        i = cuda.grid(1)
        s0, s1, s2, s3, s4 = out.shape
        if i >= s0 * s1 * s2 * s3 * s4:
            return
        o4 = i % s4
        o3 = (i // s4) % s3
        o2 = (i // (s4 * s3)) % s2
        o1 = (i // (s4 * s3 * s2)) % s1
        o0 = i // (s4 * s3 * s2 * s1)
        a = source(o0, before[0], x.shape[0], mode)
        b = source(o1, before[1], x.shape[1], mode)
        c = source(o2, before[2], x.shape[2], mode)
        d = source(o3, before[3], x.shape[3], mode)
        e = source(o4, before[4], x.shape[4], mode)
        if a < 0 or b < 0 or c < 0 or d < 0 or e < 0:
            out[o0, o1, o2, o3, o4] = ftype(value)
        else:
            out[o0, o1, o2, o3, o4] = x[a, b, c, d, e]

    return pad


def launch_mode_pad(x, out, pads, mode, value, device):
    """Pad device array ``x`` into ``out`` (both up to 5-D, viewed as 5-D)."""
    from .. import config

    lead = 5 - len(x.shape)
    x5 = x.reshape((1,) * lead + tuple(x.shape))
    out5 = out.reshape((1,) * lead + tuple(out.shape))
    before = np.array([0] * lead + [b for b, _ in pads], dtype=np.int64)
    threads = config.CUDA_THREADS_PER_BLOCK
    size = int(np.prod(out5.shape))
    if size:
        kernel = mode_pad_kernel(str(out.dtype), threads, device)
        kernel[max(1, -(-size // threads)), threads](x5, out5, cuda.to_device(before),
                                                      _PAD_MODES[mode], float(value))
    return out


# ----------------------------------------------------------------------------- global pooling

#: Global pooling splits the positions over more blocks until the grid has about this many.
GLOBAL_POOL_TARGET_BLOCKS = 1024


@kernels.factory
def global_pool_kernel(kind, dtype, channels_first, block_channels, block_rows, device):
    """Build a global max/sum kernel over ``(N, S, C)`` (or ``(N, C, S)``) arrays.

    Returns ``kernel(x, out, chunk, divisor)`` writing ``out[n, split, c]``: the max (or sum
    divided by ``divisor``) of positions ``[split * chunk, (split + 1) * chunk)``. A block
    owns one batch item, ``block_channels`` channels and one split (``blockIdx.y``); its
    ``block_rows`` rows of threads stride over the positions, then combine their results in
    shared memory (a tree; ``block_rows`` is a power of two). Max propagates NaN, like
    ``tf.reduce_max``.
    """
    is_max = kind == "max"
    ftype = numba_float(dtype)

    @cuda.jit(device=True)
    def combine(a, b):
        if is_max:
            if a != a:
                return a
            if b != b or b > a:
                return b
            return a
        return a + b

    @kernels.jit(block_channels * block_rows)
    def global_pool(x, out, chunk, divisor):
        partial = cuda.shared.array((block_rows, block_channels), ftype)
        if channels_first:
            channels, size = x.shape[1], x.shape[2]
            row = cuda.threadIdx.x % block_rows  # consecutive threads: consecutive positions
            column = cuda.threadIdx.x // block_rows
        else:
            size, channels = x.shape[1], x.shape[2]
            column = cuda.threadIdx.x % block_channels  # consecutive threads: channels
            row = cuda.threadIdx.x // block_channels
        channel_blocks = (channels + block_channels - 1) // block_channels
        n = cuda.blockIdx.x // channel_blocks
        c = (cuda.blockIdx.x % channel_blocks) * block_channels + column
        split = cuda.blockIdx.y
        stop = min(size, (split + 1) * chunk)
        result = ftype(-np.inf) if is_max else ftype(0)
        if c < channels:
            for s in range(split * chunk + row, stop, block_rows):
                if channels_first:
                    result = combine(result, x[n, c, s])
                else:
                    result = combine(result, x[n, s, c])
        partial[row, column] = result
        cuda.syncthreads()
        half = block_rows // 2
        while half > 0:
            if row < half:
                partial[row, column] = combine(partial[row, column], partial[row + half, column])
            cuda.syncthreads()
            half //= 2
        if row == 0 and c < channels:
            if is_max:
                out[n, split, c] = partial[0, column]
            else:
                out[n, split, c] = partial[0, column] / divisor

    return global_pool


def launch_global_pool(x3, out, kind, channels_first, device):
    """Global max/mean of a contiguous 3-D device array ``(N, S, C)`` / ``(N, C, S)``.

    When batch x channel blocks alone would leave most of the GPU idle (a large image with a
    small batch), the positions are split over several blocks writing partial results, which
    a second launch of the same kernel (channels-last, one split) combines.
    """
    from numba import cuda

    from .. import config

    threads = config.CUDA_THREADS_PER_BLOCK
    n, channels = out.shape
    size = x3.shape[2] if channels_first else x3.shape[1]
    first = _global_launch(kind, out.dtype, channels_first, channels, threads, device)
    kernel, block_threads, channel_blocks, block_rows = first
    splits = max(1, min(GLOBAL_POOL_TARGET_BLOCKS // max(1, n * channel_blocks),
                        size // (4 * block_rows), GRID_YZ_LIMIT))
    chunk = -(-size // splits)
    splits = -(-size // chunk)
    divisor = size if kind == "avg" else 1
    if splits == 1:
        kernel[(n * channel_blocks, 1), block_threads](x3, out.reshape((n, 1, channels)),
                                                       size, divisor)
        return out
    partial = cuda.device_array((n, splits, channels), dtype=out.dtype)
    kernel[(n * channel_blocks, splits), block_threads](x3, partial, chunk, 1)
    kernel, block_threads, channel_blocks, _ = _global_launch(kind, out.dtype, False, channels,
                                                              threads, device)
    kernel[(n * channel_blocks, 1), block_threads](partial, out.reshape((n, 1, channels)),
                                                   splits, divisor)
    return out


def _global_launch(kind, dtype, channels_first, channels, threads, device):
    """The global pooling kernel for a layout, with its block shape."""
    if channels_first:
        block_channels = 1  # a block per (n, c); its threads walk the contiguous positions
    else:
        block_channels = max(1, min(32, channels, threads))
    block_rows = 1 << max(0, (threads // block_channels).bit_length() - 1)  # a power of two
    kernel = global_pool_kernel(kind, str(dtype), bool(channels_first), block_channels,
                                block_rows, device)
    return kernel, block_channels * block_rows, -(-channels // block_channels), block_rows


# ----------------------------------------------------------------------------- zero padding

@kernels.factory
def zero_pad_kernel(dtype, channels_first, threads, device, wide=False):
    """Build a kernel writing every output element once: an input value or zero."""
    ftype = numba_float(dtype)
    sizes, position = _element_indexing(channels_first, wide)

    @kernels.jit(threads)
    def zero_pad(x, out, pad_d, pad_h, pad_w):
        (channels, in_d, in_h, in_w, out_d, out_h, out_w, inner_size,
         outer_size) = sizes(x, out)
        inner = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        if inner >= inner_size:
            return
        for outer in range(cuda.blockIdx.y, outer_size, cuda.gridDim.y):
            n, c, od, oh, ow = position(inner, outer, channels, out_d, out_h, out_w)
            d, h, w = od - pad_d, oh - pad_h, ow - pad_w
            value = ftype(0)
            if 0 <= d < in_d and 0 <= h < in_h and 0 <= w < in_w:
                if channels_first:
                    value = x[n, c, d, h, w]
                else:
                    value = x[n, d, h, w, c]
            if channels_first:
                out[n, c, od, oh, ow] = value
            else:
                out[n, od, oh, ow, c] = value

    return zero_pad


def launch_zero_pad(x, out, pads, channels_first, device):
    """Copy device array ``x`` into the interior of ``out`` and zero the border (5-D arrays)."""
    from .. import config

    threads = config.CUDA_THREADS_PER_BLOCK
    kernel = zero_pad_kernel(str(out.dtype), bool(channels_first), threads, device,
                             wide=wide_indexing(x, out))
    if channels_first:
        n, c, out_d, out_h, out_w = out.shape
        inner, outer = out_h * out_w, n * c * out_d
    else:
        n, out_d, out_h, out_w, c = out.shape
        inner, outer = out_w * c, n * out_d * out_h
    kernel[_grid(inner, outer, threads), threads](x, out, *(before for before, _ in pads))
    return out
