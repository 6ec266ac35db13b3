"""The product of gathered window cells and filters read in place (the ``im2col`` conv's GEMM).

A conv on a small map with large filters (a 3x3 512 -> 512 layer on a 4x4 map: 32 output
positions, 9.4 MB of filters) is one matrix product ``out (P, K) = cells (P, D) @ w (D, K)``
with few rows. A BLAS ``sgemm`` packs all of ``w`` for every call (reading and writing 9.4 MB
to multiply 32 rows), and the blocked conv kernel repacks it and re-reads it for every row of
outputs. Here the filters are read where they are: HWIO filters viewed as (D, K) keep each
cell's K weights contiguous, so the register-blocked micro-kernel (:mod:`.microkernel`, with
``strided_weights``) loads one vector of KB weights per cell from the matrix itself, stepping
K elements from cell to cell.

Each job owns one block of KB output channels (and, when there are few channel blocks, a
range of rows): its D x KB slice of the filters is read from memory once and then from the
core's cache for every further block of rows, and no two jobs write the same output. Bias and
the activation are fused into the store. Only whole channel blocks are read this way; a K that
is not a multiple of KB runs on a copy padded with zero columns.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .conv_blocked import BLOCK_PIXELS, VECTOR_BYTES, _block_width, _store
from .microkernel import make_microkernel

micro_full, micro_8, micro_4, micro_2, micro_1 = (
    make_microkernel(width, VECTOR_BYTES, strided_weights=True)
    for width in (BLOCK_PIXELS, 8, 4, 2, 1))

#: Rows per job at least (a few blocks of BLOCK_PIXELS): fewer and the filters' slice would be
#: read from memory by more jobs than it saves in balance.
MIN_ROWS_PER_JOB = 4 * BLOCK_PIXELS


@njit(inline="always", cache=True)
def _micro(width, acc, a, base, taps, n_taps, pixel_stride, cells, w, w_base, w_stride):
    if width == BLOCK_PIXELS:
        micro_full(acc, a, base, taps, taps, n_taps, pixel_stride, 1, cells, w, w_base, w_stride)
    elif width == 8:
        micro_8(acc, a, base, taps, taps, n_taps, pixel_stride, 1, cells, w, w_base, w_stride)
    elif width == 4:
        micro_4(acc, a, base, taps, taps, n_taps, pixel_stride, 1, cells, w, w_base, w_stride)
    elif width == 2:
        micro_2(acc, a, base, taps, taps, n_taps, pixel_stride, 1, cells, w, w_base, w_stride)
    else:
        micro_1(acc, a, base, taps, taps, n_taps, pixel_stride, 1, cells, w, w_base, w_stride)


@njit(parallel=True, cache=True, nogil=True)
def cells_matmul(a, w, bias, out, row_chunks, act):
    """``out = act(a @ w + bias)`` for C-contiguous ``a`` (P, D), ``w`` (D, K) and ``out``
    (P, K), K a multiple of the block's KB lanes; ``bias`` (K,) or empty; ``row_chunks`` row
    ranges per channel block (jobs = channel blocks x row chunks, channel blocks outermost);
    ``act`` an activation code (as the blocked kernel's store takes it)."""
    p_, d_ = a.shape
    k_ = w.shape[1]
    kb = VECTOR_BYTES // a.itemsize
    n_kb = k_ // kb
    af, wf, of = a.reshape(-1), w.reshape(-1), out.reshape(-1)
    zero = np.zeros(1, dtype=out.dtype)[0]
    taps = np.zeros(1, dtype=np.int64)  # one "tap": the whole row of D cells
    for job in prange(n_kb * row_chunks):
        block, chunk = job // row_chunks, job % row_chunks
        acc = np.empty(BLOCK_PIXELS * kb, dtype=out.dtype)
        k0 = block * kb
        p = (chunk * p_) // row_chunks
        stop = ((chunk + 1) * p_) // row_chunks
        while p < stop:
            width = _block_width(stop - p)
            _micro(width, acc, af, p * d_, taps, 1, d_, d_, wf, k0, k_)
            _store(acc, width, kb, kb, of, p * k_, 1, k_, bias, k0, act, zero)
            p += width


def row_chunks(rows, out_channels, itemsize, threads):
    """Row ranges per channel block so that the jobs keep ``threads`` busy, each at least
    :data:`MIN_ROWS_PER_JOB` rows.

    Examples
    --------
    >>> row_chunks(32, 512, 4, 2), row_chunks(4096, 32, 4, 2)
    (1, 4)
    """
    blocks = max(1, out_channels // (VECTOR_BYTES // itemsize))
    wanted = -(-2 * threads // blocks)  # two jobs a thread, for balance
    return int(max(1, min(wanted, rows // MIN_ROWS_PER_JOB)))
