"""Vector reduction of one pooling window over a run of contiguous channels, as LLVM IR.

``reduce_window(x, x_base, offsets, n_cells, out, out_base, n_channels, mode, count)``
computes, for every channel ``c < n_channels``::

    out[out_base + c] = REDUCE(x[x_base + offsets[i] + c] for i in range(n_cells))

with REDUCE = max (mode 0: start at ``count``, which the caller sets to the dtype's lowest
value, and let NaN never win, as TF's CPU kernel does; mode 2: PyTorch's max, where a NaN
wins and stays) or sum divided by ``count`` (mode 1).
Channels go in whole vectors (plus a scalar tail), each output is stored once, and the running
value lives in a register: pooling is memory-bound, and this keeps it at one load per input cell
and one store per output.
Numba's loop vectoriser would not do this for us: the reduction runs across the *outer* loop.
"""

from __future__ import annotations

import functools

import llvmlite.ir as ir
from numba import types

from .irtools import (FLAG, FLOATS, INDEX, OFFSETS, SCALAR, activation_flags,
                      fused_activation, keep_max, keep_max_nan, lanes_below, load_if, loop,
                      splat, store_streaming, vector_intrinsic)

#: Bytes per vector step: 64 = one zmm or two ymm registers, several steps in flight.
VECTOR_BYTES = 64


@functools.lru_cache(maxsize=None)
def make_window_reduce(vector_bytes: int = VECTOR_BYTES):
    """Return the ``reduce_window`` intrinsic for vectors of ``vector_bytes`` bytes (see the
    module docstring; ``offsets`` an intp array). NumPy equivalent::

        cells = x[x_base + offsets[:n_cells, None] + np.arange(n_channels)]
        out[out_base:][:n_channels] = (np.fmax.reduce(cells, initial=count)   # mode 0
                                       if mode == 0 else cells.sum(0) / count)  # mode 1
    """
    @vector_intrinsic(vector_bytes, FLOATS, INDEX, OFFSETS, INDEX, FLOATS, INDEX, INDEX, INDEX,
                      SCALAR)
    def reduce_window(code, x, x_base, offsets, n_cells, out, out_base, n_channels, mode, count):
        b0 = code.builder
        x_ptr = b0.gep(x.data, [x_base])
        out_ptr = b0.gep(out.data, [out_base])
        is_max = b0.icmp_signed("!=", mode, code.index(1))
        nan_wins = b0.icmp_signed("==", mode, code.index(2))
        count_vec = splat(b0, count, code.vector)

        def reduce_at(b, channel, width_type):
            """Reduce the window at ``channel`` for a value of type width_type."""
            divisor = count_vec if width_type is code.vector else count
            with loop(b, n_cells, [b.select(is_max, divisor, code.zeros(width_type))],
                      "cell") as cell:
                (acc,) = cell.values
                offset = b.load(b.gep(offsets.data, [cell.index]))
                value = code.load(b.gep(x_ptr, [b.add(offset, channel)]), value_type=width_type)
                larger = b.select(nan_wins, keep_max_nan(b, acc, value), keep_max(b, acc, value))
                cell.carry([b.select(is_max, larger, b.fadd(acc, value))])
            (acc,) = cell.values
            result = b.select(is_max, acc, b.fdiv(acc, divisor))
            code.store(result, b.gep(out_ptr, [channel]))

        n_vectors = b0.sdiv(n_channels, code.index(code.lanes))
        with loop(b0, n_vectors, [], "vec") as vec:
            reduce_at(b0, b0.mul(vec.index, code.index(code.lanes)), code.vector)
        tail_start = b0.mul(n_vectors, code.index(code.lanes))
        with loop(b0, b0.sub(n_channels, tail_start), [], "tail") as tail:
            reduce_at(b0, b0.add(tail_start, tail.index), code.scalar)

    return reduce_window


@functools.lru_cache(maxsize=None)
def make_window_dot(vector_bytes: int = VECTOR_BYTES):
    """Return ``window_dot(x, x_base, taps, w_taps, n_taps, w, out, out_base, n_channels,
    bias, bias_base, act)``.

    For every channel ``c``:
    ``out[out_base + c] = act(bias[bias_base + c] + sum_{t < n_taps} x[x_base + taps[t] + c]
    * w[w_taps[t] + c])`` — one output pixel of a depthwise convolution (channel multiplier 1)
    on a channels-last input, vectorised over channels with FMA, the bias added when ``bias``
    is not empty and relu (``act`` 1) or relu6 (2) applied before the store. (Done as a
    separate pass, its scalar loads of the vectors just stored missed store forwarding and
    cost 10x the convolution.) Passing only the taps inside the input (and their weights'
    offsets) handles the borders without a padded copy. NumPy equivalent::

        c = np.arange(n_channels)
        out[out_base + c] = act((x[x_base + taps[:n_taps, None] + c]
                                 * w[w_taps[:n_taps, None] + c]).sum(0) + bias[bias_base + c])
    """
    @vector_intrinsic(vector_bytes, FLOATS, INDEX, OFFSETS, OFFSETS, INDEX, FLOATS, FLOATS,
                      INDEX, INDEX, FLOATS, INDEX, INDEX)
    def window_dot(code, x, x_base, taps, w_taps, n_taps, w, out, out_base, n_channels, bias,
                   bias_base, act):
        b0, lanes = code.builder, code.lanes
        x_ptr = b0.gep(x.data, [x_base])
        out_ptr = b0.gep(out.data, [out_base])
        bias_ptr = b0.gep(bias.data, [bias_base])
        has_bias = b0.icmp_signed(">", bias.size, code.index(0))
        flags = activation_flags(b0, act)

        def dot_at(b, channel, value_type, group=1):
            """``group`` consecutive vectors from ``channel``, each its own FMA chain (one
            chain per vector would wait on the FMA latency at every tap)."""
            width = value_type.count if isinstance(value_type, ir.VectorType) else 1
            with loop(b, n_taps, [code.zeros(value_type)] * group, "tap") as tap:
                offset = b.add(b.load(b.gep(taps.data, [tap.index])), channel)
                w_index = b.add(b.load(b.gep(w_taps.data, [tap.index])), channel)
                updated = []
                for g, acc in enumerate(tap.values):
                    step = code.index(g * width)
                    xv = code.load(b.gep(x_ptr, [b.add(offset, step)]), value_type=value_type)
                    wv = code.load(b.gep(w.data, [b.add(w_index, step)]), value_type=value_type)
                    updated.append(code.fma(b, xv, wv, acc))
                tap.carry(updated)
            for g, acc in enumerate(tap.values):
                at = b.add(channel, code.index(g * width))
                bias_value = load_if(b, has_bias, lambda: code.load(
                    b.gep(bias_ptr, [at]), value_type=value_type), code.zeros(value_type))
                value = fused_activation(b, b.fadd(acc, bias_value), flags)
                code.store(value, b.gep(out_ptr, [at]))

        # Whole vectors in groups of 8, 4, 2, then 1; then the scalar tail.
        n_vectors = b0.sdiv(n_channels, code.index(lanes))
        done = code.index(0)
        for group in (8, 4, 2, 1):
            count = b0.sdiv(b0.sub(n_vectors, done), code.index(group))
            with loop(b0, count, [], f"group{group}") as groups:
                vector_index = b0.add(done, b0.mul(groups.index, code.index(group)))
                dot_at(b0, b0.mul(vector_index, code.index(lanes)), code.vector, group)
            done = b0.add(done, b0.mul(count, code.index(group)))
        tail_start = b0.mul(n_vectors, code.index(lanes))
        with loop(b0, b0.sub(n_channels, tail_start), [], "tail") as tail:
            dot_at(b0, b0.add(tail_start, tail.index), code.scalar)

    return window_dot


@functools.lru_cache(maxsize=None)
def make_depthwise_block(pixels: int, width: int, stride: int,
                         vector_bytes: int = VECTOR_BYTES):
    """Return ``block(x, x_base, rows, n_rows, column_step, w, w_rows, weight_step, out,
    out_base, out_step, bias, bias_base, act, streaming)``: ``pixels`` neighbouring output pixels of a
    depthwise convolution (channel multiplier 1) for one vector of channels, with a kernel
    ``width`` columns wide, ``stride`` along the width and no width dilation (all three
    compiled in).

    For ``p < pixels`` and the vector's lanes ``c``::

        out[out_base + p * out_step + c] = act(bias[bias_base + c] + sum over r < n_rows,
            s < width of x[x_base + rows[r] + (p * stride + s) * column_step + c]
                         * w[w_rows[r] + s * weight_step + c])

    summed in (r, s) order, as :func:`make_window_dot` does, then the bias added (when
    ``bias`` is not empty) and relu (``act`` 1) or relu6 (2) applied; ``streaming`` stores
    past the caches (:func:`~.irtools.store_streaming`: every output vector 64-byte
    aligned). ``rows`` are the element offsets
    of the kernel rows (depth and height taps) inside the input; the caller passes only rows
    inside it. Why a block: per pixel, :func:`make_window_dot` loads an input and a weight
    vector for every multiply-add (load-bound, two loads per FMA); here a row's weights are
    loaded once for the block and each input column once for all the pixels whose windows
    cover it (stride 1, 3 wide, 8 pixels: 13 loads for 24 FMAs).
    """
    columns = (pixels - 1) * stride + width

    @vector_intrinsic(vector_bytes, FLOATS, INDEX, OFFSETS, INDEX, INDEX, FLOATS, OFFSETS,
                      INDEX, FLOATS, INDEX, INDEX, FLOATS, INDEX, INDEX, FLAG)
    def block(code, x, x_base, rows, n_rows, column_step, w, w_rows, weight_step, out,
              out_base, out_step, bias, bias_base, act, streaming):
        b = code.builder
        x_ptr = b.gep(x.data, [x_base])
        with loop(b, n_rows, [code.zeros()] * pixels, "row") as row:
            row_ptr = b.gep(x_ptr, [b.load(b.gep(rows.data, [row.index]))])
            w_ptr = b.gep(w.data, [b.load(b.gep(w_rows.data, [row.index]))])
            weights = [code.load(b.gep(w_ptr, [b.mul(code.index(s), weight_step)]))
                       for s in range(width)]
            accs = list(row.values)
            for column in range(columns):
                value = code.load(b.gep(row_ptr, [b.mul(code.index(column), column_step)]))
                for p in range(pixels):
                    s = column - p * stride
                    if 0 <= s < width:
                        accs[p] = code.fma(b, value, weights[s], accs[p])
            row.carry(accs)
        has_bias = b.icmp_signed(">", bias.size, code.index(0))
        bias_vec = load_if(b, has_bias, lambda: code.load(b.gep(bias.data, [bias_base])),
                           code.zeros())
        flags = activation_flags(b, act)
        out_ptr = b.gep(out.data, [out_base])
        values = [fused_activation(b, b.fadd(acc, bias_vec), flags) for acc in row.values]
        targets = [b.gep(out_ptr, [b.mul(code.index(p), out_step)]) for p in range(pixels)]
        with b.if_else(streaming) as (stream, plain):
            with stream:
                for value, target in zip(values, targets):
                    store_streaming(b, value, target)
            with plain:
                for value, target in zip(values, targets):
                    code.store(value, target)

    return block


@functools.lru_cache(maxsize=None)
def make_pair_max_rows(vector_bytes: int = VECTOR_BYTES, nan_wins: bool = False):
    """Return ``pair_max(x, row0, row1, out, out_base, count, lowest) -> done``.

    Channels-first 2x2 stride-2 max pooling of one output row: ``out[out_base + q] = max of
    x[row0 + 2q], x[row0 + 2q + 1], x[row1 + 2q], x[row1 + 2q + 1]`` for ``q`` in whole
    vectors of ``L`` outputs (two input vectors per row, the pairs split by constant shuffles),
    the last partial vector with masked loads and stores; returns ``count``. As in
    :func:`make_window_reduce`, the max starts from ``lowest`` and NaN never wins, so the
    result is the sequential scan's (TF's); with ``nan_wins`` a NaN wins (PyTorch's max).
    NumPy equivalent (``np.maximum`` with ``nan_wins``)::

        q = np.arange(count)
        cells = [x[row + 2 * q + d] for row in (row0, row1) for d in (0, 1)]
        out[out_base + q] = np.fmax.reduce(cells, initial=lowest)
    """
    @vector_intrinsic(vector_bytes, FLOATS, INDEX, INDEX, FLOATS, INDEX, INDEX, SCALAR,
                      returns=types.intp)
    def pair_max(code, x, row0, row1, out, out_base, count, lowest):
        b0, lanes = code.builder, code.lanes
        wide = ir.VectorType(code.scalar, 2 * lanes)
        i32 = ir.IntType(32)
        floor = splat(b0, lowest, wide)
        even = ir.Constant(ir.VectorType(i32, lanes), list(range(0, 2 * lanes, 2)))
        odd = ir.Constant(ir.VectorType(i32, lanes), list(range(1, 2 * lanes, 2)))
        n_vectors = b0.sdiv(count, code.index(lanes))

        def pool(b, q, in_mask=None, out_mask=None):
            offset = b.mul(q, code.index(2 * lanes))
            rows = [code.load(b.gep(x.data, [b.add(row, offset)]), in_mask, value_type=wide,
                              builder=b) for row in (row0, row1)]
            larger = keep_max_nan if nan_wins else keep_max
            m = larger(b, larger(b, floor, rows[0]), rows[1])
            pairs = larger(b, b.shuffle_vector(m, m, even), b.shuffle_vector(m, m, odd))
            code.store(pairs, b.gep(out.data, [b.add(out_base, b.mul(q, code.index(lanes)))]),
                       out_mask, builder=b)

        with loop(b0, n_vectors, [], "pairs") as pairs:
            pool(b0, pairs.index)
        # The last count % L outputs: masked loads and stores (rows shorter than a vector
        # are the common case for small feature maps).
        rest = b0.sub(count, b0.mul(n_vectors, code.index(lanes)))
        with b0.if_then(b0.icmp_signed(">", rest, code.index(0))):
            pool(b0, n_vectors, lanes_below(b0, b0.mul(rest, code.index(2)), 2 * lanes),
                 lanes_below(b0, rest, lanes))
        return count

    return pair_max


def _half_to_float(b, bits, bfloat16):
    """float32 values (scalar or vector) of float16/bfloat16 ``bits`` (i16 or a vector of
    them): ``fpext`` of ``half`` (F16C), or the bits shifted into a float32's high half."""
    vector = isinstance(bits.type, ir.VectorType)
    count = bits.type.count if vector else None

    def typed(element):
        return ir.VectorType(element, count) if vector else element

    if not bfloat16:
        return b.fpext(b.bitcast(bits, typed(ir.HalfType())), typed(ir.FloatType()))
    wide = b.zext(bits, typed(ir.IntType(32)))
    sixteen = ir.Constant(typed(ir.IntType(32)), [16] * count if vector else 16)
    return b.bitcast(b.shl(wide, sixteen), typed(ir.FloatType()))


def _float_to_half(b, value, bfloat16):
    """float16/bfloat16 bits of float32 ``value`` rounded to nearest even (NaN stays NaN)."""
    vector = isinstance(value.type, ir.VectorType)
    count = value.type.count if vector else None

    def typed(element):
        return ir.VectorType(element, count) if vector else element

    def const(v):
        return ir.Constant(typed(ir.IntType(32)), [v] * count if vector else v)

    if not bfloat16:
        return b.bitcast(b.fptrunc(value, typed(ir.HalfType())), typed(ir.IntType(16)))
    u = b.bitcast(value, typed(ir.IntType(32)))
    high = b.lshr(u, const(16))
    rounded = b.lshr(b.add(b.add(u, const(0x7FFF)), b.and_(high, const(1))), const(16))
    is_nan = b.icmp_unsigned(">", b.and_(u, const(0x7FFFFFFF)), const(0x7F800000))
    return b.trunc(b.select(is_nan, b.or_(high, const(0x40)), rounded), typed(ir.IntType(16)))


@functools.lru_cache(maxsize=None)
def make_half_window_reduce(bfloat16: bool, lanes: int = 16):
    """``reduce_window`` for float16 (``bfloat16`` False; F16C) or bfloat16 data: ``x`` and
    ``out`` are the uint16 views, ``is_max`` a flag, ``count`` and ``lowest`` float32.

    Each value is widened to float32 as it is loaded, reduced in float32 (max from
    ``lowest``, NaN never wins; or the sum divided by ``count``) and rounded once when
    stored: the float32 kernel's result, rounded. NumPy equivalent (``wide`` the float32
    values of ``x``, ``narrow`` the rounding)::

        cells = wide[x_base + offsets[:n_cells, None] + np.arange(n_channels)]
        out[out_base:][:n_channels] = narrow(np.fmax.reduce(cells, initial=lowest)
                                             if is_max else cells.sum(0) / count)
    """
    from numba.extending import intrinsic

    u16_1d = types.Array(types.uint16, 1, "C")

    @intrinsic
    def reduce_half(typingctx, x, x_base, offsets, n_cells, out, out_base, n_channels, is_max,
                    count, lowest):
        if not (x == u16_1d and out == u16_1d and isinstance(offsets, types.Array)
                and offsets.dtype == types.intp):
            return None
        sig = types.void(u16_1d, types.intp, offsets, types.intp, u16_1d, types.intp,
                         types.intp, types.boolean, types.float32, types.float32)

        def codegen(context, builder, signature, args):
            xa, x_base_v, off_a, n_cells_v, oa, out_base_v, n_ch, is_max_v, count_v, low_v = args
            b0 = builder
            x_arr = context.make_array(signature.args[0])(context, b0, xa)
            o_arr = context.make_array(signature.args[4])(context, b0, oa)
            off_arr = context.make_array(signature.args[2])(context, b0, off_a)
            intp = context.get_value_type(types.intp)
            flag = b0.trunc(is_max_v, ir.IntType(1)) if is_max_v.type != ir.IntType(1) \
                else is_max_v
            x_ptr = b0.gep(x_arr.data, [x_base_v])
            out_ptr = b0.gep(o_arr.data, [out_base_v])
            vec16 = ir.VectorType(ir.IntType(16), lanes)
            vecf = ir.VectorType(ir.FloatType(), lanes)

            def reduce_at(b, channel, vector):
                start = splat(b, b.select(flag, low_v, ir.Constant(ir.FloatType(), 0.0)),
                              vecf) if vector else \
                    b.select(flag, low_v, ir.Constant(ir.FloatType(), 0.0))
                with loop(b, n_cells_v, [start], "cell") as cell:
                    (acc,) = cell.values
                    offset = b.load(b.gep(off_arr.data, [cell.index]))
                    pointer = b.gep(x_ptr, [b.add(offset, channel)])
                    if vector:
                        bits = b.load(b.bitcast(pointer, vec16.as_pointer()), align=2)
                    else:
                        bits = b.load(pointer, align=2)
                    value = _half_to_float(b, bits, bfloat16)
                    cell.carry([b.select(flag, keep_max(b, acc, value), b.fadd(acc, value))])
                (acc,) = cell.values
                divisor = splat(b, count_v, vecf) if vector else count_v
                result = b.select(flag, acc, b.fdiv(acc, divisor))
                bits = _float_to_half(b, result, bfloat16)
                pointer = b.gep(out_ptr, [channel])
                if vector:
                    b.store(bits, b.bitcast(pointer, vec16.as_pointer()), align=2)
                else:
                    b.store(bits, pointer, align=2)

            n_vectors = b0.sdiv(n_ch, ir.Constant(intp, lanes))
            with loop(b0, n_vectors, [], "vec") as vec:
                reduce_at(b0, b0.mul(vec.index, ir.Constant(intp, lanes)), True)
            tail_start = b0.mul(n_vectors, ir.Constant(intp, lanes))
            with loop(b0, b0.sub(n_ch, tail_start), [], "tail") as tail:
                reduce_at(b0, b0.add(tail_start, tail.index), False)
            return context.get_dummy_value()

        return sig, codegen

    return reduce_half
