"""The filter gradient of a dense or grouped conv, compiled on the forward pass's micro-kernel.

``dw[tap, c, k] = sum over n and output positions p of x[p's cell under tap, c] * grad[p, k]``
is a matrix product whose reduction runs over every output position of the batch. The NumPy
form gathers each tap's input cells into a matrix (im2col) and hands it to BLAS; the gather
costs as much as the product and, for few input channels (an RGB stem: 3 of them), the matrix
is thin and BLAS runs far below its peak. Here the forward pass's register-blocked
micro-kernel (:mod:`.microkernel`) computes the product in place, with the roles renamed::

    forward                          filter gradient
    block of WB output pixels   ->   block of WB input channels (x's channel stride apart)
    KB output channels (lanes)  ->   KB output channels of the gradient (lanes)
    taps (offset table)         ->   output rows of a chunk (offset table)
    channels of a tap           ->   output columns of a row (x's column stride x sw apart)
    packed weights              ->   the output gradient packed as (K blocks, rows, OW, KB)

so for each kernel tap, block of input channels and block of KB output channels one call sums
over a chunk of output rows with the accumulator in registers, and no input cell is copied.
Channels-last inputs with few channels (an RGB stem) merge a tap row's (s, c) cells, which are
contiguous, into one block dimension, as the forward kernel's merged rows do.
Output columns whose tap falls into the padding are left out of the call (the same column
range holds for every row of a tap) and rows whose tap row is padding are left out of the
table; that is what zero padding sums to, and :func:`.numpy_grads.
nan_where_nonfinite_grads_meet_padding` restores TF's NaN where a non-finite gradient meets
the padding (0 * inf).

Threads split the (K block, tap row, cell block) jobs of one chunk of rows: each job writes its
own block of the result, so there is no per-thread copy of the filter gradient and no
reduction at the end. Chunks are sized so that a chunk's input and gradient stay in the
cores' L2 caches while every job of the chunk reads them.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .conv_blocked import BLOCK_PIXELS, _block_width, _micro

#: Bytes of input and output gradient per chunk of output rows. Each job of a chunk reads
#: its slice (a few hundred KB) from L2; the chunk itself stays in L3. Measured on Zen 4
#: (2 threads, ResNet 3x3 / stride 2 / stem): 384 KB 10.8 / 8.0 / 4.8 ms, 1.5 MB 10.3 / 6.7 /
#: 4.2 ms, 4 MB 10.5 / 6.7 / 4.2 ms; the whole problem at once (no chunks) halves the speed
#: of a 25 MB batch.
CHUNK_BYTES = 1536 << 10


@njit(parallel=True, cache=True, nogil=True)
def pack_grad(dyf, dy_strides, od_, oh_, kg, packed):
    """Copy the output gradient (flat, element strides ``dy_strides`` ordered (n, k, d, h, w),
    ``kg`` channels per group) into ``packed`` (groups x K blocks per group, N * OD * OH, OW,
    KB), zero-filling the lanes past each group's channels; return how many values are not
    finite."""
    n_blocks, rows, ow_, kb = packed.shape
    per_group = -(-kg // kb)
    not_finite = 0
    for job in prange(n_blocks * rows):
        block, row = job // rows, job % rows
        group, first = block // per_group, (block % per_group) * kb
        n, od, oh = row // (od_ * oh_), (row // oh_) % od_, row % oh_
        base = n * dy_strides[0] + od * dy_strides[2] + oh * dy_strides[3]
        out = packed[block, row]
        for ow in range(ow_):
            cell = base + ow * dy_strides[4]
            for j in range(kb):
                k = first + j
                if k < kg:
                    value = dyf[cell + (group * kg + k) * dy_strides[1]]
                    out[ow, j] = value
                    if not np.isfinite(value):
                        not_finite += 1
                else:
                    out[ow, j] = 0
    return not_finite


@njit(parallel=True, cache=True, nogil=True)
def filter_grad_blocked(xf, x_strides, in_sizes, pads_before, packed, kernel, strides,
                        dilations, od_, oh_, cg, groups, out):
    """Sum the filter gradient into ``out`` (taps, Cg, K blocks x KB), zero on entry.

    ``xf`` is the input flattened (any layout) with element strides ``x_strides`` ordered
    (n, c, d, h, w), unpadded (``pads_before`` implied); ``packed`` the output gradient from
    :func:`pack_grad`; ``kernel``, ``strides``, ``dilations`` have three entries; ``cg``
    input channels per group of ``groups`` (K block ``b`` belongs to group ``b // blocks per
    group``).
    """
    n_blocks, rows, ow_, kb = packed.shape
    t_, r_, s_ = kernel[0], kernel[1], kernel[2]
    per_group = n_blocks // groups
    # Channels-last, one group, no width dilation: the (s, c) cells of a tap row are
    # contiguous, so blocks can run over them together (as the forward kernel's merged rows
    # do): an RGB stem's 7 x 3 cells fill a 12-wide block where 3 channels alone would not
    # (6.7 -> 5.5 ms on one Zen 4 core). Only for fewer channels than a block: with 64 the
    # per-tap blocks are full already and merging measured 10% slower.
    merged = (cg < BLOCK_PIXELS and x_strides[1] == 1 and x_strides[4] == cg
              and groups == 1 and dilations[2] == 1 and s_ > 1)
    spans = s_ * cg if merged else cg
    firsts = _block_starts(spans)
    n_mb = firsts.shape[0] - 1
    jobs = n_blocks * t_ * r_ * n_mb
    # Bytes one output row reads: its gradient, and the input cells its stride spans.
    row_bytes = ow_ * (strides[1] * strides[2] * cg * groups + n_blocks * kb) * xf.itemsize
    rows_per_chunk = max(1, CHUNK_BYTES // row_bytes)
    flat = packed.reshape(-1)
    for first_row in range(0, rows, rows_per_chunk):
        last_row = min(rows, first_row + rows_per_chunk)
        for job in prange(jobs):
            block = job // (t_ * r_ * n_mb)
            t = (job // (r_ * n_mb)) % t_
            r = (job // n_mb) % r_
            mb = job % n_mb
            x_rows = np.empty(last_row - first_row, np.int64)
            g_rows = np.empty(last_row - first_row, np.int64)
            count = 0
            for row in range(first_row, last_row):
                n, od, oh = row // (od_ * oh_), (row // oh_) % od_, row % oh_
                d = od * strides[0] - pads_before[0] + t * dilations[0]
                h = oh * strides[1] - pads_before[1] + r * dilations[1]
                if d < 0 or d >= in_sizes[0] or h < 0 or h >= in_sizes[1]:
                    continue
                x_rows[count] = n * x_strides[0] + d * x_strides[2] + h * x_strides[3]
                g_rows[count] = row * ow_ * kb
                count += 1
            if count == 0:
                continue
            acc = np.empty(BLOCK_PIXELS * kb, out.dtype)
            rows_table = (x_rows, g_rows, count)
            channel0 = (block // per_group) * cg  # the block's group's first input channel
            tap_row = (t * r_ + r) * s_
            m0, m1 = firsts[mb], firsts[mb + 1]
            if merged:
                # Columns where every tap of the row is inside the input: one call for the
                # block's (s, c) cells; the columns left at each end run tap by tap below.
                lo, _ = _columns(0, ow_, in_sizes[2], strides[2], dilations[2], pads_before[2])
                _, hi = _columns(s_ - 1, ow_, in_sizes[2], strides[2], dilations[2],
                                 pads_before[2])
                hi = max(lo, hi)
                if hi > lo:
                    col = lo * strides[2] - pads_before[2]
                    _sum_block(acc, m1 - m0, xf, col * x_strides[4] + m0, rows_table, 1,
                               strides[2] * x_strides[4], hi - lo, flat,
                               (block * rows * ow_ + lo) * kb, out, tap_row, m0, cg, block * kb)
                first_s, last_s = m0 // cg, (m1 - 1) // cg
            else:
                lo = hi = 0
                first_s, last_s = 0, s_ - 1
            for s in range(first_s, last_s + 1):
                c_lo, c_hi = (max(m0, s * cg) - s * cg, min(m1, (s + 1) * cg) - s * cg) \
                    if merged else (m0, m1)
                s_lo, s_hi = _columns(s, ow_, in_sizes[2], strides[2], dilations[2],
                                      pads_before[2])
                # The tap's valid columns outside [lo, hi): all of them when not merged.
                for side in range(2):
                    a, z = (s_lo, min(s_hi, lo)) if side == 0 else (max(s_lo, hi), s_hi)
                    if z <= a:
                        continue
                    col = a * strides[2] + s * dilations[2] - pads_before[2]
                    c = c_lo
                    while c < c_hi:
                        width = _block_width(c_hi - c)
                        _sum_block(acc, width, xf,
                                   col * x_strides[4] + (channel0 + c) * x_strides[1],
                                   rows_table, x_strides[1], strides[2] * x_strides[4], z - a,
                                   flat, (block * rows * ow_ + a) * kb, out, tap_row + s, c,
                                   cg, block * kb)
                        c += width


@njit(cache=True, nogil=True)
def _block_starts(n):
    """Starts of the blocks ``n`` cells split into (full micro-kernel widths, then powers of
    two), and ``n`` at the end."""
    count, remaining = 0, n
    while remaining > 0:
        remaining -= _block_width(remaining)
        count += 1
    firsts = np.empty(count + 1, np.int64)
    start = 0
    for i in range(count):
        firsts[i] = start
        start += _block_width(n - start)
    firsts[count] = n
    return firsts


@njit(inline="always", cache=True)
def _columns(s, ow_, w_, sw, dw, pw):
    """The output columns ``[lo, hi)`` whose cell under width tap ``s`` is inside the input."""
    col0 = s * dw - pw  # the input column of output column 0
    return max(0, -(col0 // sw)), min(ow_, max(0, (w_ - 1 - col0) // sw + 1))


@njit(cache=True, nogil=True)
def _sum_block(acc, width, xf, x_base, rows_table, pixel_stride, column_stride, columns, flat,
               g_base, out, tap, m0, cg, k0):
    """One micro-kernel call over a chunk's rows, added into ``out``: block cell ``i`` is
    cell ``m0 + i`` of the taps from ``tap`` on (``cg`` channels per tap)."""
    x_rows, g_rows, count = rows_table
    _micro(width, acc, xf, x_base, x_rows, g_rows, count, pixel_stride, column_stride, columns,
           flat, g_base)
    kb = acc.shape[0] // BLOCK_PIXELS
    for i in range(width):
        m = m0 + i
        target = out[tap + m // cg, m % cg]
        for j in range(kb):
            target[k0 + j] += acc[i * kb + j]
