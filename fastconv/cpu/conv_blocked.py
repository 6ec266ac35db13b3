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


def block_channels(dtype):
    """Output channels per block (KB) for ``dtype``."""
    return VECTOR_BYTES // np.dtype(dtype).itemsize


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
def conv_blocked_strided(xf, x_strides, w, groups, bias, out, o_strides, out_sizes, strides,
                         dilations, act):
    """Blocked convolution of a padded input given by element strides; the shared entry point.

    Packs the (T, R, S, Cg, K) filters, builds the tap offsets and runs :func:`conv_blocked`.
    ``x_strides`` / ``o_strides`` / ``out_sizes`` are int64 arrays ordered (batch, channel,
    depth, height, width); ``strides`` and ``dilations`` have three entries.
    """
    t_, r_, s_, cg, k_ = w.shape
    kb = VECTOR_BYTES // xf.itemsize
    kernel_w = s_
    taps_rs = t_ * r_ * s_
    n_taps, channels = taps_rs, cg
    if x_strides[1] == 1 and groups == 1 and dilations[2] == 1:
        # Channels-last, one group, no width dilation: a window row's (s, c) pairs are
        # contiguous, so they form one longer channel loop (fewer, longer inner loops: this
        # is what makes 1-3 channel layers fast). The packed weights have that order already.
        n_taps, channels, kernel_w = t_ * r_, s_ * cg, 1
    packed = np.empty((groups, -(-(k_ // groups) // kb), n_taps, channels, kb), dtype=xf.dtype)
    _pack(w.reshape((taps_rs, cg, k_)), packed.reshape((groups, packed.shape[1], taps_rs, cg, kb)))
    taps = np.empty(n_taps, dtype=np.int64)
    i = 0
    for t in range(t_):
        for r in range(r_):
            for s in range(kernel_w):
                taps[i] = (t * dilations[0] * x_strides[2] + r * dilations[1] * x_strides[3]
                           + s * dilations[2] * x_strides[4])
                i += 1
    conv_blocked(xf, x_strides, taps, packed, bias, out, o_strides, out_sizes, strides, groups,
                 act)


@njit(inline="always", cache=True)
def _block_width(remaining):
    """Pixels in the next block: a full block, else the largest power of two that fits."""
    if remaining >= BLOCK_PIXELS:
        return BLOCK_PIXELS
    width = 1
    while width * 2 <= remaining and width < 8:
        width *= 2
    return width


@njit(inline="always", cache=True)
def _run_block(width, acc, xf, base, taps, pix, chan, cg, wf, wbase):
    """Run the micro-kernel compiled for ``width`` pixels (as chosen by ``_block_width``)."""
    args = (acc, xf, base, taps, pix, chan, cg, wf, wbase)
    if width == BLOCK_PIXELS:
        micro_full(*args)
    elif width == 8:
        micro_8(*args)
    elif width == 4:
        micro_4(*args)
    elif width == 2:
        micro_2(*args)
    else:
        micro_1(*args)


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


@njit(parallel=True, cache=True, nogil=True)
def conv_blocked(xf, x_strides, taps, wp, bias, out, o_strides, out_sizes, strides, groups, act):
    """Blocked convolution of a padded, flattened input into a flattened output.

    Parameters
    ----------
    xf : 1-D ndarray
        The padded input, flattened (any layout).
    x_strides : int64 array (5,)
        Element strides of the padded input: (batch, channel, depth, height, width).
    taps : int64 array
        Element offset of each kernel tap (t, r, s), dilation included.
    wp : ndarray (G, n_kblocks, taps, Cg, KB)
        Weights from :func:`pack_weights`.
    bias : ndarray (K,) or (0,)
    out : 1-D ndarray
        The output, flattened; ``o_strides`` are its element strides like ``x_strides``.
    out_sizes : int64 array (5,)
        (N, K, OD, OH, OW).
    strides : int64 array (3,)
    groups, act : int
    """
    n_, k_, od_, oh_, ow_ = out_sizes[0], out_sizes[1], out_sizes[2], out_sizes[3], out_sizes[4]
    _, n_kb, n_taps, cg, kb = wp.shape
    kg = k_ // groups
    sd, sh, sw = strides[0], strides[1], strides[2]
    xs_n, xs_c, xs_d, xs_h, xs_w = x_strides[0], x_strides[1], x_strides[2], x_strides[3], x_strides[4]
    os_n, os_c, os_d, os_h, os_w = o_strides[0], o_strides[1], o_strides[2], o_strides[3], o_strides[4]
    wf = wp.reshape(-1)
    w_block = n_taps * cg * kb
    zero = np.zeros(1, dtype=out.dtype)[0]
    pix = sw * xs_w
    rows = n_ * od_ * oh_
    for row in prange(rows):
        n = row // (od_ * oh_)
        od = (row // oh_) % od_
        oh = row % oh_
        acc = np.empty(BLOCK_PIXELS * kb, dtype=out.dtype)  # once per row: allocation is not free
        for job in range(groups * n_kb):
            g = job // n_kb
            blk = job % n_kb
            k0 = g * kg + blk * kb
            k_count = min(kb, kg - blk * kb)
            wbase = (g * n_kb + blk) * w_block
            row_base = n * xs_n + g * cg * xs_c + od * sd * xs_d + oh * sh * xs_h
            out_row = n * os_n + od * os_d + oh * os_h
            # Channels-last full blocks are stored as whole vectors (bias and relu/relu6 fused);
            # anything else (channels-first, a partial channel block, sigmoid/tanh) element-wise.
            fast_store = os_c == 1 and k_count == kb and act <= 2
            ow0 = 0
            while ow0 < ow_:
                width = _block_width(ow_ - ow0)
                _run_block(width, acc, xf, row_base + ow0 * pix, taps, pix, xs_c, cg, wf, wbase)
                if fast_store:
                    store_block(acc, width, out, out_row + ow0 * os_w + k0, os_w, bias, k0, act)
                else:
                    _store_channel_major(acc, width, kb, k_count, out, out_row + ow0 * os_w,
                                         os_c, os_w, bias, k0, act, zero)
                ow0 += width
