"""The register-blocked outer-product micro-kernel, emitted as LLVM IR.

One call computes a block of ``WB`` output pixels x ``KB`` output channels::

    for tap in taps:                     # kernel offsets (t, r, s), as element offsets into x
        for c in range(n_channels):
            w_vec = w[tap, c, 0:KB]      # one vector of KB weights (repacked, contiguous)
            for i in range(WB):
                acc[i, :] += x[base + tap + i * pixel_stride + c * channel_stride] * w_vec

Why IR and not a Numba loop nest: the accumulators must stay in vector registers across the
whole reduction. Numba's default pipeline leaves SLP vectorisation off and heap-allocates local
arrays, so a plain loop nest reaches a fraction of the FMA throughput; here the WB x KB
accumulator is a set of LLVM vectors carried by phi nodes, which LLVM maps straight to
``ymm``/``zmm`` registers (``KB`` lanes split into as many registers as the target needs).
Only the pointer arithmetic is generic, so the same kernel serves NHWC and NCHW inputs.
"""

from __future__ import annotations

import functools

from .irtools import (FLOATS, FLOATS_OR_ADDRESS, INDEX, OFFSETS, activation_flags,
                      fused_activation, lanes_below, load_if, loop, splat, store_partial,
                      vector_intrinsic)


@functools.lru_cache(maxsize=None)
def make_microkernel(block_pixels: int, vector_bytes: int, strided_weights: bool = False):
    """Return an intrinsic ``micro(acc, x, x_base, taps, w_taps, n_taps, pixel_stride,
    channel_stride, n_channels, w, w_base)`` for a ``block_pixels x KB`` accumulator.

    ``KB = vector_bytes // itemsize`` output channels (so float64 blocks have half the lanes
    and the same register footprint). ``acc`` (at least WB*KB elements) receives the block
    row-major (pixel, channel). The first ``n_taps`` entries of ``taps`` are element offsets
    into ``x`` (from ``x_base``) and of ``w_taps`` the matching offsets into ``w`` (from
    ``w_base``), where ``n_channels`` consecutive vectors of KB weights start: a caller can
    drop the taps that fall into padding, or start a tap part-way through its channels.
    ``x`` and ``taps`` may be arrays or their addresses. NumPy equivalent::

        for i in range(block_pixels):
            for t in range(n_taps):
                for c in range(n_channels):
                    acc[i, :] += (x[x_base + taps[t] + i * pixel_stride + c * channel_stride]
                                  * w[w_base + w_taps[t] + c * KB:][:KB])

    With ``strided_weights`` the intrinsic takes one more argument, ``w_channel_stride``, and
    the weights of channel ``c`` start at ``w_base + w_taps[t] + c * w_channel_stride``: the
    filters read in place (e.g. a (cells, K) matrix, K contiguous) instead of repacked.
    (Software prefetches of the weights 4-16 cells ahead measured no faster: the hardware
    follows the stride.)
    """
    def emit(code, acc, x, x_base, taps, w_taps, n_taps, pixel_stride, channel_stride,
             n_channels, w, w_base, w_step):
        b, vector = code.builder, code.vector
        x_ptr = b.gep(x.data, [x_base])
        w_start = b.gep(w.data, [w_base])
        with loop(b, n_taps, [code.zeros()] * block_pixels, "tap") as tap:
            tap_ptr = b.gep(x_ptr, [b.load(b.gep(taps.data, [tap.index]))])
            w_first = b.gep(w_start, [b.load(b.gep(w_taps.data, [tap.index]))])
            with loop(b, n_channels, [w_first] + tap.values, "chan") as chan:
                w_ptr, *accs = chan.values
                w_vec = code.load(w_ptr)
                x_c = b.gep(tap_ptr, [b.mul(chan.index, channel_stride)])
                updated = [code.fma(b, splat(b, b.load(b.gep(x_c, [b.mul(code.index(i),
                                                                          pixel_stride)])),
                                             vector), w_vec, a)
                           for i, a in enumerate(accs)]
                chan.carry([b.gep(w_ptr, [w_step])] + updated)
            tap.carry(chan.values[1:])
        acc_ptr = b.bitcast(acc.data, vector.as_pointer())
        for i, value in enumerate(tap.values):
            b.store(value, b.gep(acc_ptr, [code.index(i)]), align=code.align)

    kinds = (FLOATS, FLOATS_OR_ADDRESS, INDEX, OFFSETS, OFFSETS, INDEX, INDEX, INDEX, INDEX,
             FLOATS, INDEX)
    if strided_weights:
        @vector_intrinsic(vector_bytes, *kinds, INDEX)
        def micro(code, acc, x, x_base, taps, w_taps, n_taps, pixel_stride, channel_stride,
                  n_channels, w, w_base, w_channel_stride):
            emit(code, acc, x, x_base, taps, w_taps, n_taps, pixel_stride, channel_stride,
                 n_channels, w, w_base, w_channel_stride)
    else:
        @vector_intrinsic(vector_bytes, *kinds)
        def micro(code, acc, x, x_base, taps, w_taps, n_taps, pixel_stride, channel_stride,
                  n_channels, w, w_base):
            emit(code, acc, x, x_base, taps, w_taps, n_taps, pixel_stride, channel_stride,
                 n_channels, w, w_base, code.index(code.lanes))

    return micro


@functools.lru_cache(maxsize=None)
def make_block_store(vector_bytes: int):
    """Return an intrinsic ``store(acc, width, out, out_base, out_pixel_stride, bias, bias_base,
    act)`` writing ``width`` rows of KB accumulators to contiguous channel runs of ``out``.

    Adds ``bias[bias_base:bias_base + KB]`` when ``bias`` is non-empty and applies relu
    (``act == 1``) or relu6 (``act == 2``) with vector selects: ``v < 0`` is false for NaN, so
    NaN passes through as in ``tf.nn.relu``. Other activations are the caller's job. NumPy
    equivalent::

        for i in range(width):
            out[out_base + i * out_pixel_stride:][:KB] = act(acc[i] + bias[bias_base:][:KB])
    """
    @vector_intrinsic(vector_bytes, FLOATS, INDEX, FLOATS, INDEX, INDEX, FLOATS, INDEX, INDEX)
    def store(code, acc, width, out, out_base, out_pixel_stride, bias, bias_base, act):
        b, vector = code.builder, code.vector
        has_bias = b.icmp_signed(">", bias.size, code.index(0))
        bias_vec = load_if(b, has_bias, lambda: code.load(b.gep(bias.data, [bias_base])),
                           code.zeros())
        acc_ptr = b.bitcast(acc.data, vector.as_pointer())
        out_ptr = b.gep(out.data, [out_base])
        flags = activation_flags(b, act)
        with loop(b, width, [], "store") as row:
            value = b.load(b.gep(acc_ptr, [row.index]), align=code.align)
            value = fused_activation(b, b.fadd(value, bias_vec), flags)
            code.store(value, b.gep(out_ptr, [b.mul(row.index, out_pixel_stride)]))

    return store


@functools.lru_cache(maxsize=None)
def make_planar_microkernel(block_rows: int, vector_bytes: int):
    """Return ``micro(acc, x, x_base, taps, plane_stride, n_channels, w, w_base)``: the
    channels-first twin of :func:`make_microkernel`, with the roles of pixels and channels swapped.

    The vector runs over ``L = vector_bytes // itemsize`` consecutive output pixels of one row
    (contiguous in a channels-first input when the stride is 1) and the ``block_rows``
    accumulators over output channels, each updated with a broadcast weight. NumPy equivalent::

        for t in range(len(taps)):
            for c in range(n_channels):
                x_vec = x[x_base + taps[t] + c * plane_stride:][:L]
                for i in range(block_rows):
                    acc[i, :] += w[w_base + (t * n_channels + c) * block_rows + i] * x_vec
    """
    @vector_intrinsic(vector_bytes, FLOATS, FLOATS, INDEX, OFFSETS, INDEX, INDEX, FLOATS, INDEX)
    def micro(code, acc, x, x_base, taps, plane_stride, n_channels, w, w_base):
        b, vector = code.builder, code.vector
        x_ptr = b.gep(x.data, [x_base])
        w_start = b.gep(w.data, [w_base])
        with loop(b, taps.size, [w_start] + [code.zeros()] * block_rows, "tap") as tap:
            tap_ptr = b.gep(x_ptr, [b.load(b.gep(taps.data, [tap.index]))])
            with loop(b, n_channels, tap.values, "chan") as chan:
                w_ptr, *accs = chan.values
                x_vec = code.load(b.gep(tap_ptr, [b.mul(chan.index, plane_stride)]))
                updated = [code.fma(b, splat(b, b.load(b.gep(w_ptr, [code.index(i)])), vector),
                                    x_vec, a) for i, a in enumerate(accs)]
                chan.carry([b.gep(w_ptr, [code.index(block_rows)])] + updated)
            tap.carry(chan.values)
        acc_ptr = b.bitcast(acc.data, vector.as_pointer())
        for i, value in enumerate(tap.values[1:]):
            b.store(value, b.gep(acc_ptr, [code.index(i)]), align=code.align)

    return micro


@functools.lru_cache(maxsize=None)
def make_planar_store(vector_bytes: int):
    """Return an intrinsic ``store(acc, rows, width, out, out_base, row_stride, bias, bias_base,
    act)`` writing the first ``width`` lanes of ``rows`` accumulator vectors to ``out``.

    The channels-first twin of :func:`make_block_store`: accumulator ``i`` (L consecutive output
    pixels of one channel) goes to ``out[out_base + i * row_stride:][:width]`` with
    ``bias[bias_base + i]`` added and relu/relu6 applied as vector selects. A row shorter than
    a vector is written with a masked store, so neighbouring rows (another thread's) are never
    touched. NumPy equivalent::

        for i in range(rows):
            out[out_base + i * row_stride:][:width] = act(acc[i, :width] + bias[bias_base + i])
    """
    @vector_intrinsic(vector_bytes, FLOATS, INDEX, INDEX, FLOATS, INDEX, INDEX, FLOATS, INDEX,
                      INDEX)
    def store(code, acc, rows, width, out, out_base, row_stride, bias, bias_base, act):
        b, vector = code.builder, code.vector
        has_bias = b.icmp_signed(">", bias.size, code.index(0))
        flags = activation_flags(b, act)
        mask = lanes_below(b, width, code.lanes)
        full = b.icmp_signed(">=", width, code.index(code.lanes))
        acc_ptr = b.bitcast(acc.data, vector.as_pointer())
        out_ptr = b.gep(out.data, [out_base])
        bias_ptr = b.gep(bias.data, [bias_base])
        with loop(b, rows, [], "store") as row:
            i = row.index
            value = b.load(b.gep(acc_ptr, [i]), align=code.align)
            bias_i = load_if(b, has_bias, lambda: b.load(b.gep(bias_ptr, [i])),
                             code.zeros(code.scalar))
            value = fused_activation(b, b.fadd(value, splat(b, bias_i, vector)), flags)
            target = b.bitcast(b.gep(out_ptr, [b.mul(i, row_stride)]), vector.as_pointer())
            store_partial(b, value, target, full, mask, code.align)

    return store
