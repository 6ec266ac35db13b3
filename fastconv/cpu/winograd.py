"""Winograd F(2x2, 3x3) convolution for 3x3, stride-1, undilated, ungrouped layers.

Each 2x2 block of outputs comes from a 4x4 input tile ``d`` as ``A^T [(G g G^T) * (B^T d B)] A``:
16 multiplications per tile and channel pair instead of 36, i.e. 2.25x fewer than a direct
convolution, which is the only way past the direct kernel's FMA ceiling.

One parallel job is one row of tiles (two output rows) of one image, and all three stages run
on data that stays in the core's cache:

1. input transform: ``V[xi, tile, c] = (B^T d B)[xi]`` for the row's tiles, vectorised over
   channels (tiles that overlap the zero padding are copied into a zeroed patch first, so the
   input itself is never padded);
2. 16 matrix products ``M[xi] = V[xi] @ U[xi]`` per block of KB output channels, each run by
   the register-blocked micro-kernel of :mod:`.microkernel` (tiles play the role of pixels,
   the filters are transformed once to ``U[xi] = (G g G^T)[xi]``);
3. output transform: ``A^T M A`` per tile, plus bias and activation, stored once.

The transforms mix the 16 cells of a tile, so a NaN or infinity would spread to outputs that a
direct convolution keeps finite. The output transform therefore reports whether any
pre-activation output is not finite, and the caller then recomputes with a direct kernel: the
result is TF's in every case, and finite data (the common case) pays only a comparison.
"""

import numpy as np
from numba import njit, prange

from .. import config
from .conv_blocked import ONE, VECTOR_BYTES, _block_width, _run_block, _target_has_avx512
from .winograd_transforms import (make_input_transform, make_output_transform,
                                  make_stage_transpose)

# One vector register of channels per transform step (16 inputs of a tile stay in registers).
_TRANSFORM_BYTES = 64 if _target_has_avx512() else 32
input_transform = make_input_transform(_TRANSFORM_BYTES)
#: Tiles per depth slice one job transforms and multiplies together, and the fewest jobs
#: worth splitting into.
TILES_PER_JOB, MIN_JOBS = config.WINOGRAD_TILES_PER_JOB, config.WINOGRAD_MIN_JOBS
#: Input depth slices one job transforms (it covers that many output depths, less T - 1).
SLICES_PER_JOB = config.WINOGRAD_SLICES_PER_JOB
output_transform = make_output_transform(_TRANSFORM_BYTES)
stage_transpose = make_stage_transpose(_TRANSFORM_BYTES)

def transform_filters(w, dtype):
    """(T, 3, 3, C, K) filters -> U packed (n_kblocks, 16, T, C, KB) with ``U[.., 4 i + j, t,
    ..] = (G g_t G^T)[i, j]``, zero-filled past K (KB output channels per block, as the
    micro-kernel reads them)."""
    depth, _, _, channels, k = w.shape
    kb = VECTOR_BYTES // np.dtype(dtype).itemsize
    packed = np.zeros((-(-k // kb), 16, depth, channels, kb), dtype=dtype)
    w = np.ascontiguousarray(w, dtype=dtype)
    for t in range(depth):
        _pack_transformed(w[t], packed[:, :, t])
    return packed


@njit(inline="always", cache=True)
def _row_transform(packed, blk, xi, c, lane, r0, r1, r2):
    """Store ``(row of G g) G^T``: the four transformed taps of one row ``xi // 4``."""
    packed[blk, xi, c, lane] = r0
    packed[blk, xi + 1, c, lane] = 0.5 * (r0 + r1 + r2)
    packed[blk, xi + 2, c, lane] = 0.5 * (r0 - r1 + r2)
    packed[blk, xi + 3, c, lane] = r2


@njit(parallel=True, cache=True, nogil=True)
def _pack_transformed(w, packed):
    """``packed[blk, 4 i + j, c, lane] = (G g G^T)[i, j]`` of filter (c, blk * KB + lane), in
    float64, with ``G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]``; ``packed``
    arrives zeroed (lanes past K stay zero)."""
    n_kb, _, channels, kb = packed.shape
    k_ = w.shape[3]
    for job in prange(n_kb * channels):
        blk = job // channels
        c = job % channels
        for lane in range(min(kb, k_ - blk * kb)):
            k = blk * kb + lane
            a0, a1, a2 = (np.float64(w[0, 0, c, k]), np.float64(w[0, 1, c, k]),
                          np.float64(w[0, 2, c, k]))
            b0, b1, b2 = (np.float64(w[1, 0, c, k]), np.float64(w[1, 1, c, k]),
                          np.float64(w[1, 2, c, k]))
            d0, d1, d2 = (np.float64(w[2, 0, c, k]), np.float64(w[2, 1, c, k]),
                          np.float64(w[2, 2, c, k]))
            _row_transform(packed, blk, 0, c, lane, a0, a1, a2)
            _row_transform(packed, blk, 4, c, lane, 0.5 * (a0 + b0 + d0), 0.5 * (a1 + b1 + d1),
                           0.5 * (a2 + b2 + d2))
            _row_transform(packed, blk, 8, c, lane, 0.5 * (a0 - b0 + d0), 0.5 * (a1 - b1 + d1),
                           0.5 * (a2 - b2 + d2))
            _row_transform(packed, blk, 12, c, lane, d0, d1, d2)


@njit(cache=True, nogil=True)
def _fill_slab(slab, xf, n, dz, y0, slab_h, slab_w, pad_left, c_, d_, h_, w_, zero):
    """``slab[r, col, c] = x[n, c, dz, y0 + r, col - pad_left]`` (channels-first ``x``), zero
    outside the input: input rows transposed to channels-last by :func:`stage_transpose`."""
    plane = d_ * h_ * w_
    width = min(w_, slab_w - pad_left)  # input columns the slab holds
    for r in range(slab_h):
        row = r * slab_w * c_
        if 0 <= y0 + r < h_ and width > 0:
            for i in range(pad_left * c_):
                slab[row + i] = zero
            for i in range((pad_left + width) * c_, slab_w * c_):
                slab[row + i] = zero
            stage_transpose(xf, ((n * c_ * d_ + dz) * h_ + y0 + r) * w_, c_, plane, width, slab,
                            row + pad_left * c_, c_)
        else:
            for i in range(slab_w * c_):
                slab[row + i] = zero


@njit(parallel=True, cache=True, nogil=True)
def conv3x3_winograd(x, x_first, u, bias, out, o_strides, out_sizes, pads_before, act):
    """Winograd F(2x2, 3x3) of ``x``, unpadded, into ``out``.

    ``x`` is channels-last (N, D, H, W, C), or channels-first (N, C, D, H, W) when
    ``x_first``: then each job first transposes the input rows it reads into a zero-padded
    channels-last slab, in registers (no separate transpose pass over the input).

    The filters are (T, 3, 3): the T depth taps (stride and dilation 1; T = 1 for conv2d) are
    summed in the Winograd domain, as more terms of each tile's product. ``u`` comes from
    :func:`transform_filters`. ``out`` is the flat output, channels-last or channels-first
    (then with contiguous rows, a unit width stride): ``o_strides`` are its element strides as
    (batch, channel, depth, height, width) and
    ``out_sizes`` is (N, K, OD, OH, OW); ``pads_before`` is (front, top, left). ``act`` is
    applied when it is relu or relu6 (others are the caller's). Returns False when some output
    was not finite before the activation: the caller must then recompute the layer with a
    direct kernel (the transforms spread NaN and infinity across a tile).
    """
    if x_first:
        n_, c_, d_, h_, w_ = x.shape
    else:
        n_, d_, h_, w_, c_ = x.shape
    n_kb, _, t_, _, kb = u.shape
    k_, od_, oh_, ow_ = out_sizes[1], out_sizes[2], out_sizes[3], out_sizes[4]
    os_n, os_c, os_d, os_h, os_w = (o_strides[0], o_strides[1], o_strides[2], o_strides[3],
                                    o_strides[4])
    pad_front, pad_top, pad_left = pads_before[0], pads_before[1], pads_before[2]
    # Channels-first outputs go through a per-job channels-last buffer, transposed row by row
    # while it is in cache (a vector of channels is the transforms' natural unit).
    staged = os_c != 1
    th_, tw_ = (oh_ + 1) // 2, (ow_ + 1) // 2
    xf = x.reshape(-1)
    uf = u.reshape(-1)
    zero = np.zeros(1, dtype=x.dtype)[0]
    # A job is a few rows of tiles of one image, over a run of output depths: enough tiles that
    # each block of U is reused a while (U of wide layers is larger than L2), few enough that
    # V and M stay in cache. Each input slice is transformed once per job and serves the T
    # output depths that read it.
    per_job = max(1, min(TILES_PER_JOB // tw_, n_ * th_ // MIN_JOBS))
    row_groups = -(-th_ // per_job)
    per_job = -(-th_ // row_groups)  # the same number of rows in every group
    depths_per_job = max(1, min(od_, SLICES_PER_JOB - t_ + 1))
    depth_groups = -(-od_ // depths_per_job)
    jobs = n_ * depth_groups * row_groups
    bad = np.zeros(jobs, dtype=np.int64)
    for job in prange(jobs):
        n = job // (depth_groups * row_groups)
        od0 = (job // row_groups) % depth_groups * depths_per_job
        th0 = job % row_groups * per_job
        rows = min(per_job, th_ - th0)
        depths = min(depths_per_job, od_ - od0)
        slices = depths + t_ - 1
        tiles = rows * tw_
        slice_size = 16 * tiles * c_
        # V[slice, xi, tile, c]: input depth od0 - pad_front + slice (zeros outside the input).
        v = np.empty(slices * slice_size, dtype=x.dtype)
        m = np.empty(16 * tiles * kb, dtype=x.dtype)
        patch = np.empty(16 * c_, dtype=x.dtype)
        stage = np.empty(2 * rows * ow_ * kb if staged else 0, dtype=x.dtype)
        taps = np.arange(t_) * slice_size  # the depth taps, as the micro-kernel's taps
        w_taps = np.arange(t_) * (c_ * kb)
        # Channels-first input: the job's rows of one slice, channels-last and zero-padded.
        slab_h, slab_w = 2 * rows + 2, 2 * tw_ + 2
        slab = np.empty(slab_h * slab_w * c_ if x_first else 0, dtype=x.dtype)
        for sl in range(slices):
            dz = od0 - pad_front + sl
            if x_first and 0 <= dz < d_:
                _fill_slab(slab, xf, n, dz, 2 * th0 - pad_top, slab_h, slab_w, pad_left, c_, d_,
                           h_, w_, zero)
                for tile in range(tiles):
                    v_base = sl * slice_size + tile * c_
                    input_transform(slab, ((2 * (tile // tw_)) * slab_w + 2 * (tile % tw_)) * c_,
                                    slab_w * c_, c_, c_, v, v_base, tiles * c_)
                continue
            for tile in range(tiles):
                h0 = 2 * (th0 + tile // tw_) - pad_top
                w0 = 2 * (tile % tw_) - pad_left
                v_base = sl * slice_size + tile * c_
                if dz < 0 or dz >= d_:  # a depth in the padding contributes zeros
                    for xi in range(16):
                        for c in range(c_):
                            v[v_base + xi * tiles * c_ + c] = zero
                elif h0 >= 0 and h0 + 4 <= h_ and w0 >= 0 and w0 + 4 <= w_:
                    input_transform(xf, (((n * d_ + dz) * h_ + h0) * w_ + w0) * c_, w_ * c_,
                                    c_, c_, v, v_base, tiles * c_)
                else:  # the tile overlaps the padding: transform a zero-filled copy
                    for a in range(4):
                        for b in range(4):
                            cell = (4 * a + b) * c_
                            if 0 <= h0 + a < h_ and 0 <= w0 + b < w_:
                                src = (((n * d_ + dz) * h_ + h0 + a) * w_ + w0 + b) * c_
                                for c in range(c_):  # explicit loops: slice copies are slower
                                    patch[cell + c] = xf[src + c]
                            else:
                                for c in range(c_):
                                    patch[cell + c] = zero
                    input_transform(patch, 0, 4 * c_, c_, c_, v, v_base, tiles * c_)
        for dd in range(depths):
            od = od0 + dd
            for blk in range(n_kb):
                for xi in range(16):
                    t0 = 0
                    while t0 < tiles:
                        width = _block_width(tiles - t0)
                        _run_block(width, m[(xi * tiles + t0) * kb:], v,
                                   dd * slice_size + (xi * tiles + t0) * c_, taps, w_taps, t_,
                                   c_, ONE, c_, uf, (blk * 16 + xi) * t_ * c_ * kb)
                        t0 += width
                k0 = blk * kb
                count = min(kb, k_ - k0)
                for tile in range(tiles):
                    oh0 = 2 * (th0 + tile // tw_)
                    ow0 = 2 * (tile % tw_)
                    if staged:  # (local output row, column, channel in block)
                        target, h_step, w_step = stage, ow_ * kb, kb
                        base = (2 * (tile // tw_) * ow_ + ow0) * kb
                    else:
                        target, h_step, w_step = out, os_h, os_w
                        base = n * os_n + od * os_d + oh0 * os_h + ow0 * os_w + k0
                    flag = output_transform(m, tile * kb, tiles * kb, count, target, base,
                                            h_step, w_step, oh0 + 1 < oh_, ow0 + 1 < ow_, bias,
                                            k0, act)
                    if not flag == 0:
                        bad[job] = 1
                if staged:
                    for local_row in range(min(2 * rows, oh_ - 2 * th0)):
                        o_row = n * os_n + od * os_d + (2 * th0 + local_row) * os_h
                        # Tiles transposed in registers into contiguous channels-first rows.
                        stage_transpose(stage, local_row * ow_ * kb, ow_, kb, count, out,
                                        o_row + k0 * os_c, os_c)
    return bad.max() == 0
