"""Register-blocked direct convolution (the fast CPU conv path).

The output is cut into blocks of ``BLOCK_PIXELS`` consecutive pixels of one output row x ``KB``
output channels; each block is one call of the micro-kernel in :mod:`.microkernel`, which
keeps the whole block in vector registers while it reduces over kernel taps and input
channels. Weights are repacked once per call to ``[group, k_block, tap, channel, KB]`` so the
micro-kernel streams them contiguously.

Inputs arrive padded and in either layout: every index is computed from element strides, so
NHWC and NCHW (and the 1-D/3-D cases) run the same code with no transposes.
"""

from __future__ import annotations

from typing import NamedTuple

import llvmlite.binding as llvm
import numba
import numpy as np
from numba import njit, prange

from .. import config
from .activation import apply_activation
from .microkernel import make_block_store, make_microkernel


def _target_has_avx512():
    """Whether the CPU Numba compiles for has AVX-512 (so 32 vector registers)."""
    if config.REGISTER_BLOCK in ("avx2", "avx512"):
        return config.REGISTER_BLOCK == "avx512"
    features = numba.config.CPU_FEATURES
    if features is None and numba.config.CPU_NAME:
        features = ""  # a named target CPU: only trust explicit features
    if features is not None:
        return "+avx512f" in features
    try:
        return bool(llvm.get_host_cpu_features().get("avx512f"))
    except Exception:  # pragma: no cover - exotic hosts: assume the common AVX2 register file
        return False


# Block shapes that keep the accumulator in registers, measured in benchmarks/RESULTS.md:
# AVX-512 has 32 vector registers, so 12 pixels x 2 zmm (24 accumulators) fit and halve the
# weight traffic of smaller blocks; AVX2 has 16, where 3 pixels x 4 ymm (12 accumulators) was
# fastest. Numba's disk cache is keyed by CPU, so the choice frozen into a cached kernel holds.
if _target_has_avx512():
    BLOCK_PIXELS, VECTOR_BYTES = 12, 128
else:
    BLOCK_PIXELS, VECTOR_BYTES = 3, 128

# Micro-kernels for the full block and for tails of 8, 4, 2 and 1 pixels: a row's remainder
# runs as a few power-of-two blocks, which keeps compile time down (each width is a separate
# unrolled kernel) at a small cost on the last pixels of a row.
micro_full = make_microkernel(BLOCK_PIXELS, VECTOR_BYTES)
micro_8, micro_4, micro_2, micro_1 = (make_microkernel(width, VECTOR_BYTES)
                                      for width in (8, 4, 2, 1))
store_block = make_block_store(VECTOR_BYTES)

# Integer constants passed to the helpers below as plain int64, not as Numba literals: a
# literal argument makes Numba compile the callee once more for each value (and again when
# type inference widens it), which multiplied the first call's compile time.
ZERO, ONE, FULL = np.int64(0), np.int64(1), np.int64(BLOCK_PIXELS)
#: Row chunks handed to the thread pool (a few per thread, for balance).
ROW_CHUNKS = config.CPU_ROW_CHUNKS
#: Zero-padded column copies per row: the left edge and up to two blocks at the right end.
EDGE_REGIONS = 3


def block_channels(dtype):
    """Output channels per block (KB) for ``dtype``."""
    return VECTOR_BYTES // np.dtype(dtype).itemsize


def blocked_fills_lanes(groups, out_channels, itemsize):
    """Whether the blocked kernel suits a conv: one group, or enough output channels per group
    to fill half a block (depthwise-like convs, a few channels per group, would waste most
    lanes and run faster on the direct kernel). The one rule for the dispatcher and the raw
    kernels (which compile it: plain arithmetic)."""
    return groups == 1 or (out_channels // groups) * 2 * itemsize >= VECTOR_BYTES


@njit(cache=True, nogil=True)
def _pack(w, packed):
    """Repack (taps, Cg, K) filters into (G, n_kblocks, taps, Cg, KB), zero-filling K."""
    groups, n_kblocks, taps, cg, kb = packed.shape
    kg = w.shape[2] // groups
    for g in range(groups):
        for blk in range(n_kblocks):
            for t in range(taps):
                for c in range(cg):
                    for j in range(kb):
                        k = blk * kb + j
                        packed[g, blk, t, c, j] = w[t, c, g * kg + k] if k < kg else 0


@njit(cache=True, nogil=True)
def conv_blocked_strided(xf, x_strides, in_sizes, pads_before, w, groups, bias, out, o_strides,
                         out_sizes, strides, dilations, act):
    """Blocked convolution of an input given by element strides; the shared entry point.

    Packs the (T, R, S, Cg, K) filters and runs :func:`conv_blocked`. The input is not padded:
    ``pads_before`` (front, top, left) shifts the windows and taps outside ``in_sizes`` (D, H,
    W) are skipped, which is what zero padding computes. ``x_strides`` / ``o_strides`` /
    ``out_sizes`` are int64 arrays ordered (batch, channel, depth, height, width);
    ``strides`` and ``dilations`` have three entries.
    """
    t_, r_, s_, cg, k_ = w.shape
    kb = VECTOR_BYTES // xf.itemsize
    taps_rs = t_ * r_ * s_
    # Channels-last, one group, no width dilation: a window row's (s, c) pairs are contiguous,
    # so they form one longer channel loop (fewer, longer inner loops: this is what makes 1-3
    # channel layers fast). The packed weights have that order already.
    merged = x_strides[1] == 1 and groups == 1 and dilations[2] == 1
    n_taps, channels = (t_ * r_, s_ * cg) if merged else (taps_rs, cg)
    packed = np.empty((groups, -(-(k_ // groups) // kb), n_taps, channels, kb), dtype=xf.dtype)
    _pack(w.reshape((taps_rs, cg, k_)), packed.reshape((groups, packed.shape[1], taps_rs, cg, kb)))
    conv_blocked(xf, x_strides, in_sizes, pads_before, packed, t_, r_, s_, merged, bias, out,
                 o_strides, out_sizes, strides, dilations, groups, act)


@njit(inline="always", cache=True)
def _block_width(remaining):
    """Pixels in the next block: a full block, else the largest power of two that fits."""
    if remaining >= BLOCK_PIXELS:
        return BLOCK_PIXELS
    width = 1
    while width * 2 <= remaining and width < 8:
        width *= 2
    return width


@njit(cache=True, nogil=True)
def _run_block(width, acc, xf, base, taps, w_taps, n_taps, pix, chan, cg, wf, wbase):
    """:func:`_micro` as a real function, for call sites off the hot path: every inlined call
    site carries all five unrolled kernels, and compile time grows with each copy."""
    _micro(width, acc, xf, base, taps, w_taps, n_taps, pix, chan, cg, wf, wbase)


@njit(inline="always", cache=True)
def _micro(width, acc, xf, base, taps, w_taps, n_taps, pix, chan, cg, wf, wbase):
    """Run the micro-kernel compiled for ``width`` pixels (as chosen by ``_block_width``)."""
    if width == BLOCK_PIXELS:
        micro_full(acc, xf, base, taps, w_taps, n_taps, pix, chan, cg, wf, wbase)
    elif width == 8:
        micro_8(acc, xf, base, taps, w_taps, n_taps, pix, chan, cg, wf, wbase)
    elif width == 4:
        micro_4(acc, xf, base, taps, w_taps, n_taps, pix, chan, cg, wf, wbase)
    elif width == 2:
        micro_2(acc, xf, base, taps, w_taps, n_taps, pix, chan, cg, wf, wbase)
    else:
        micro_1(acc, xf, base, taps, w_taps, n_taps, pix, chan, cg, wf, wbase)


@njit(inline="always", cache=True)
def _store_channel_major(acc, width, kb, k_count, out, base, os_c, os_w, bias, k0, act, zero):
    """Store a (width, kb) block channel by channel: the path for channels-first outputs.

    Bias and activation are hoisted out of the pixel loop so that, for a unit pixel stride,
    the loop is a gather from ``acc`` and a contiguous store that LLVM vectorises.
    """
    for j in range(k_count):
        b = bias[k0 + j] if bias.shape[0] > 0 else zero
        o = base + (k0 + j) * os_c
        if act == 0:
            for i in range(width):
                out[o + i * os_w] = acc[i * kb + j] + b
        elif act == 1:
            for i in range(width):
                v = acc[i * kb + j] + b
                out[o + i * os_w] = zero if v < zero else v
        else:
            for i in range(width):
                out[o + i * os_w] = apply_activation(acc[i * kb + j] + b, act)


@njit(cache=True, nogil=True)
def _store(acc, width, kb, k_count, out, base, os_c, os_w, bias, k0, act, zero):
    """Store a block: whole vectors for full channels-last blocks (bias, relu/relu6 fused),
    else channel by channel (channels-first, a partial channel block, sigmoid/tanh)."""
    if os_c == 1 and k_count == kb and act <= 2:
        store_block(acc, width, out, base + k0, os_w, bias, k0, act)
    else:
        _store_channel_major(acc, width, kb, k_count, out, base, os_c, os_w, bias, k0, act, zero)


@njit(parallel=True, cache=True, nogil=True)
def conv_blocked(xf, x_strides, in_sizes, pads_before, wp, t_, r_, s_, merged, bias, out,
                 o_strides, out_sizes, strides, dilations, groups, act):
    """Blocked convolution of a flattened input into a flattened output, zero padding implied.

    Parameters
    ----------
    xf : 1-D ndarray
        The input, flattened (any layout), not padded.
    x_strides : int64 array (5,)
        Its element strides: (batch, channel, depth, height, width).
    in_sizes, pads_before : int64 arrays (3,)
        Its spatial sizes, and the zero padding before each spatial dim.
    wp : ndarray (G, n_kblocks, taps, channels, KB)
        Weights from :func:`_pack`; with ``merged`` the taps are (t, r) and the channels
        (s, c), else the taps are (t, r, s).
    t_, r_, s_ : int
        Kernel sizes.
    bias : ndarray (K,) or (0,)
    out : 1-D ndarray
        The output, flattened; ``o_strides`` are its element strides like ``x_strides``.
    out_sizes : int64 array (5,)
        (N, K, OD, OH, OW).
    strides, dilations : int64 arrays (3,)
    groups, act : int
    """
    n_, od_, oh_, ow_ = out_sizes[0], out_sizes[2], out_sizes[3], out_sizes[4]
    _, n_kb, n_taps, channels, kb = wp.shape
    cg = channels // s_ if merged else channels
    sw, dw, w_ = strides[2], dilations[2], in_sizes[2]
    wf = wp.reshape(-1)
    zero = np.zeros(1, dtype=out.dtype)[0]
    # Output columns whose whole window row is inside the input; the others (a few at each
    # end when there is padding) read zero-padded column copies (channels-last rows) or run
    # one pixel at a time with their out-of-range taps dropped.
    ow_lo = max(0, min(ow_, -(-pads_before[2] // sw)))
    ow_hi = max(ow_lo, min(ow_, (w_ - 1 - (s_ - 1) * dw + pads_before[2]) // sw + 1))
    edge_span = (BLOCK_PIXELS - 1) * sw + (s_ - 1) * dw + 1  # input columns of a block
    rows = n_ * od_ * oh_
    x_address = xf.ctypes.data
    # Rows go to the threads in chunks, each with its scratch arrays allocated once:
    # allocation is not free, and these kernels run in tens of microseconds.
    chunks = min(rows, ROW_CHUNKS)
    for chunk in prange(chunks):
        acc = np.empty(BLOCK_PIXELS * kb, dtype=out.dtype)
        scratch = np.empty(5 * n_taps, dtype=np.int64)
        edges = np.empty(EDGE_REGIONS * n_taps * edge_span * cg if merged else 0, dtype=xf.dtype)
        plan = np.empty((ow_ // BLOCK_PIXELS + 4, PLAN_FIELDS), dtype=np.int64)
        # Each merged-row block reads the input or a copy, and the taps list for it: passed as
        # addresses, since choosing between arrays per block costs reference counting.
        # (input, copies, taps, copies' taps).
        addresses = (x_address, edges.ctypes.data, scratch.ctypes.data,
                     scratch[3 * n_taps:].ctypes.data)
        work = Work(acc, scratch, edges, plan, addresses)
        # Built inside the parallel loop: a parfor cannot capture a tuple holding arrays.
        layer = Layer(x_strides, in_sizes, pads_before, o_strides, out_sizes, strides,
                      dilations, (t_, r_, s_), (ow_lo, ow_hi), n_kb, n_taps, channels, cg, kb,
                      groups, act, merged, edge_span)
        for row in range((chunk * rows) // chunks, ((chunk + 1) * rows) // chunks):
            _conv_row(row, layer, work, xf, wf, bias, out, zero)


class Layer(NamedTuple):
    """The geometry of one :func:`conv_blocked` call, as its row functions read it."""

    x_strides: np.ndarray  # (5,) element strides: batch, channel, depth, height, width
    in_sizes: np.ndarray  # (3,) spatial sizes of the (unpadded) input
    pads_before: np.ndarray  # (3,) implied zero padding before each spatial dim
    o_strides: np.ndarray  # (5,) the output's element strides
    out_sizes: np.ndarray  # (5,) N, K, OD, OH, OW
    strides: np.ndarray  # (3,)
    dilations: np.ndarray  # (3,)
    kernel: tuple  # (T, R, S)
    interior: tuple  # (ow_lo, ow_hi): output columns whose window row is inside the input
    n_kb: int  # blocks of KB output channels per group
    n_taps: int  # taps of the packed weights
    channels: int  # channels per tap of the packed weights
    cg: int  # input channels per group
    kb: int  # output channels per block (vector lanes)
    groups: int
    act: int  # activation code
    merged: bool  # the (s, c) pairs run as one loop (see _pack)
    edge_span: int  # input columns one block reads


class Work(NamedTuple):
    """One thread's scratch arrays, allocated once per chunk of rows."""

    acc: np.ndarray  # the accumulator block
    scratch: np.ndarray  # 5 x n_taps offsets: taps, weight taps, tap columns, edge taps...
    edges: np.ndarray  # zero-padded column copies of merged rows
    plan: np.ndarray  # (segments, PLAN_FIELDS): a merged row's blocks
    addresses: tuple  # (input, copies, taps, copies' taps) as integers


#: The fields of one segment (one row of ``Work.plan``) of a merged row: which source it reads
#: (0 the input, 1 the copies), the element offset of its first window, the micro-kernel
#: width, the pixels stored and the first output column.
PLAN_SOURCE, PLAN_BASE, PLAN_WIDTH, PLAN_PIXELS, PLAN_FIRST = range(5)
PLAN_FIELDS = 5


@njit(cache=True, nogil=True)
def _conv_row(row, layer, work, xf, wf, bias, out, zero):
    """One output row of :func:`conv_blocked`, every group and block of output channels."""
    t_, r_, s_ = layer.kernel
    ow_lo, ow_hi = layer.interior
    x_strides, o_strides, pads_before = layer.x_strides, layer.o_strides, layer.pads_before
    n_taps, channels, kb, cg = layer.n_taps, layer.channels, layer.kb, layer.cg
    acc, scratch = work.acc, work.scratch
    k_, od_, oh_, ow_ = (layer.out_sizes[1], layer.out_sizes[2], layer.out_sizes[3],
                         layer.out_sizes[4])
    kg = k_ // layer.groups
    d_, h_, w_ = layer.in_sizes[0], layer.in_sizes[1], layer.in_sizes[2]
    sd, sh, sw = layer.strides[0], layer.strides[1], layer.strides[2]
    dd, dh, dw = layer.dilations[0], layer.dilations[1], layer.dilations[2]
    xs_n, xs_c, xs_d, xs_h, xs_w = (x_strides[0], x_strides[1], x_strides[2], x_strides[3],
                                    x_strides[4])
    os_n, os_c, os_d, os_h, os_w = (o_strides[0], o_strides[1], o_strides[2], o_strides[3],
                                    o_strides[4])
    w_block = n_taps * channels * kb
    pix = sw * xs_w
    n = row // (od_ * oh_)
    od = (row // oh_) % od_
    oh = row % oh_
    # This row's taps inside the input, as x offsets and packed-weight offsets.
    taps = scratch[:n_taps]
    w_taps = scratch[n_taps:2 * n_taps]
    tap_s = scratch[2 * n_taps:3 * n_taps]
    edge_taps = scratch[3 * n_taps:4 * n_taps]
    edge_w_taps = scratch[4 * n_taps:]
    z0 = od * sd - pads_before[0]
    y0 = oh * sh - pads_before[1]
    count = ZERO
    for t in range(t_):
        if not 0 <= z0 + t * dd < d_:
            continue
        for r in range(r_):
            if not 0 <= y0 + r * dh < h_:
                continue
            if layer.merged:
                taps[count] = t * dd * xs_d + r * dh * xs_h
                w_taps[count] = (t * r_ + r) * channels * kb
                count += 1
            else:
                for s in range(s_):
                    taps[count] = t * dd * xs_d + r * dh * xs_h + s * dw * xs_w
                    w_taps[count] = ((t * r_ + r) * s_ + s) * channels * kb
                    tap_s[count] = s
                    count += 1
    if layer.merged and ow_lo <= BLOCK_PIXELS and ow_ - ow_hi <= BLOCK_PIXELS:
        _merged_row(layer, work, row_start(n, z0, y0, x_strides), taps, w_taps, edge_taps,
                    count, xf, wf, bias, out, n * os_n + od * os_d + oh * os_h, zero)
        return
    for job in range(layer.groups * layer.n_kb):
        g = job // layer.n_kb
        blk = job % layer.n_kb
        k0 = g * kg + blk * kb
        k_count = min(kb, kg - blk * kb)
        wbase = (g * layer.n_kb + blk) * w_block
        row_base = n * xs_n + g * cg * xs_c + z0 * xs_d + y0 * xs_h - pads_before[2] * xs_w
        out_row = n * os_n + od * os_d + oh * os_h
        ow0 = ow_lo
        while ow0 < ow_hi:
            width = _block_width(ow_hi - ow0)
            _run_block(width, acc, xf, row_base + ow0 * pix, taps, w_taps, count, pix, xs_c,
                       channels, wf, wbase)
            _store(acc, width, kb, k_count, out, out_row + ow0 * os_w, os_c, os_w, bias, k0,
                   layer.act, zero)
            ow0 += width
        for edge in range(ow_lo + ow_ - ow_hi):
            ow = edge if edge < ow_lo else ow_hi + edge - ow_lo
            x0 = ow * sw - pads_before[2]  # window columns x0 + s * dw, some outside
            s_lo = 0
            while s_lo < s_ and x0 + s_lo * dw < 0:
                s_lo += 1
            s_hi = s_
            while s_hi > s_lo and x0 + (s_hi - 1) * dw >= w_:
                s_hi -= 1
            base = row_base + (ow * sw + s_lo * dw) * xs_w
            if layer.merged:  # a sub-range of each tap's (s, c) channels
                _run_block(ONE, acc, xf, base, taps, w_taps, count, pix, xs_c, (s_hi - s_lo) * cg,
                           wf, wbase + s_lo * cg * kb)
            else:
                kept = ZERO
                for i in range(count):
                    if s_lo <= tap_s[i] < s_hi:
                        edge_taps[kept] = taps[i] - s_lo * dw * xs_w
                        edge_w_taps[kept] = w_taps[i]
                        kept += 1
                _run_block(ONE, acc, xf, base, edge_taps, edge_w_taps, kept, pix, xs_c, channels,
                           wf, wbase)
            _store(acc, ONE, kb, k_count, out, out_row + ow * os_w, os_c, os_w, bias, k0,
                   layer.act, zero)


@njit(inline="always", cache=True)
def row_start(n, z0, y0, x_strides):
    """Element offset of input column 0, channel 0 of an output row's first window row."""
    return n * x_strides[0] + z0 * x_strides[2] + y0 * x_strides[3]


@njit(inline="always", cache=True)
def _edge_width(pixels):
    """Block width for an edge region of ``pixels`` (at most a block): 1 or 2 exactly, else
    rounded up to 4/8/12 (a wider kernel computing a few discarded pixels beats several narrow
    ones), never wider than a block: AVX2's blocks are 3 pixels, and a 4-wide one overran the
    accumulators and the edge copies (a crash on AVX2 machines only)."""
    if pixels <= 2:
        return pixels
    return min(BLOCK_PIXELS, 4 if pixels <= 4 else (8 if pixels <= 8 else BLOCK_PIXELS))


@njit(cache=True, nogil=True)
def _fill_edge(edge, slab, start, width, count, taps, xf, x_strides, pads_before, w_, cg, sw,
               edge_span):
    """Copy the input columns that a block of ``width`` pixels from ``start`` reads, for each of
    the row's ``count`` window rows (``taps``: absolute offsets of their column 0), into slab
    ``slab`` of ``edge`` laid out (window row, column, channel): zeros outside the input."""
    x0 = start * sw - pads_before[2]
    span = (width - 1) * sw + edge_span - (BLOCK_PIXELS - 1) * sw
    for i in range(count):
        dst = (slab * count + i) * edge_span * cg
        for col in range(span):
            xc = x0 + col
            if 0 <= xc < w_:
                src = taps[i] + xc * x_strides[4]
                for c in range(cg):
                    edge[dst + col * cg + c] = xf[src + c]
            else:
                for c in range(cg):
                    edge[dst + col * cg + c] = 0


@njit(inline="always", cache=True)
def _merged_row(layer, work, start_offset, taps, w_taps, edge_taps, count, xf, wf, bias, out,
                out_row, zero):
    """One output row of a channels-last, one-group conv whose (s, c) pairs form one loop.

    Full blocks run on the input itself; the pixels next to the padding and the row's last
    few run as one or two blocks on small zero-padded copies of the columns they read, so no
    pixel needs a narrow, slow block of its own. The row is planned first as segments (rows
    of ``work.plan``, fields ``PLAN_*``) so that the block loop has one micro-kernel call
    site (each inlined call site carries five unrolled kernels).
    """
    ow_lo, ow_hi = layer.interior
    os_c, os_w = layer.o_strides[1], layer.o_strides[4]
    ow_, sw, cg, kb = layer.out_sizes[4], layer.strides[2], layer.cg, layer.kb
    edge_span, plan, addresses = layer.edge_span, work.plan, work.addresses
    pix = sw * cg  # == the input's pixel stride: merged rows are contiguous channels-last
    w_block = wf.shape[0] // layer.n_kb  # one group
    # Regions: [0, left) on a copy (when there is left padding), full blocks on the input up
    # to ``middle``, then the rest: on the input where it stays inside, else on copies.
    left = min(ow_, _edge_width(ow_lo)) if ow_lo > 0 else ZERO
    middle = left + max(0, ow_hi - left) // BLOCK_PIXELS * BLOCK_PIXELS
    for i in range(count):
        taps[i] += start_offset  # absolute offsets of the window rows' column 0
        edge_taps[i] = i * edge_span * cg
    segments = ZERO
    slabs = ZERO
    ow0 = ZERO
    while ow0 < ow_:
        pixels = min(BLOCK_PIXELS, ow_ - ow0)
        if ow0 < left or ow0 >= middle and ow0 + pixels > ow_hi:  # a zero-padded copy
            if ow0 < left:
                pixels = left
            width = _edge_width(pixels)
            _fill_edge(work.edges, slabs, ow0, width, count, taps, xf, layer.x_strides,
                       layer.pads_before, layer.in_sizes[2], cg, sw, edge_span)
            plan[segments, PLAN_SOURCE] = 1
            plan[segments, PLAN_BASE] = slabs * count * edge_span * cg
            slabs += 1
        else:
            width = _block_width(pixels)
            pixels = width
            plan[segments, PLAN_SOURCE] = 0
            plan[segments, PLAN_BASE] = start_offset + (ow0 * sw - layer.pads_before[2]) * cg
        plan[segments, PLAN_WIDTH] = width
        plan[segments, PLAN_PIXELS] = pixels
        plan[segments, PLAN_FIRST] = ow0
        segments += 1
        ow0 += pixels
    for i in range(count):
        taps[i] -= start_offset
    for blk in range(layer.n_kb):
        k0 = blk * kb
        k_count = min(kb, layer.out_sizes[1] - k0)
        wbase = blk * w_block
        for seg in range(segments):
            source = plan[seg, PLAN_SOURCE]
            _micro(plan[seg, PLAN_WIDTH], work.acc, addresses[source], plan[seg, PLAN_BASE],
                   addresses[2 + source], w_taps, count, pix, ONE, layer.channels, wf, wbase)
            _store(work.acc, plan[seg, PLAN_PIXELS], kb, k_count, out,
                   out_row + plan[seg, PLAN_FIRST] * os_w, os_c, os_w, bias, k0, layer.act, zero)
