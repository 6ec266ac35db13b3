"""Vector reduction of one pooling window over a run of contiguous channels, as LLVM IR.

``reduce_window(x, x_base, offsets, n_cells, out, out_base, n_channels, mode, count)``
computes, for every channel ``c < n_channels``::

    out[out_base + c] = REDUCE(x[x_base + offsets[i] + c] for i in range(n_cells))

with REDUCE = max (mode 0: start at ``count``, which the caller sets to the dtype's lowest
value, and let NaN never win, as TF's CPU kernel does) or sum divided by ``count`` (mode 1).
Channels go in whole vectors (plus a scalar tail), each output is stored once, and the running
value lives in a register: pooling is memory-bound, and this keeps it at one load per input cell
and one store per output.
Numba's loop vectoriser would not do this for us: the reduction runs across the *outer* loop.
"""

from __future__ import annotations

import functools

import llvmlite.ir as ir
from numba import types
from numba.extending import intrinsic

from .microkernel import (_loop, _masked_load, _masked_store, declare_fma, lanes_below, splat,
                          vector_lanes, vector_types)

#: Bytes per vector step: 64 = one zmm or two ymm registers, several steps in flight.
VECTOR_BYTES = 64


@functools.lru_cache(maxsize=None)
def make_window_reduce(vector_bytes: int = VECTOR_BYTES):
    """Return the ``reduce_window`` intrinsic for vectors of ``vector_bytes`` bytes."""

    @intrinsic
    def reduce_window(typingctx, x, x_base, offsets, n_cells, out, out_base, n_channels, mode,
                      count):
        if not (isinstance(x, types.Array) and isinstance(out, types.Array)
                and x.dtype == out.dtype and x.dtype in (types.float32, types.float64)):
            return None
        sig = types.void(x, types.intp, offsets, types.intp, out, types.intp, types.intp,
                         types.intp, x.dtype)
        lanes = vector_lanes(x.dtype, vector_bytes)

        def codegen(context, builder, signature, args):
            x_v, x_base_v, off_v, n_cells_v, out_v, out_base_v, n_ch_v, mode_v, count_v = args
            x_a = context.make_array(signature.args[0])(context, builder, x_v)
            off_a = context.make_array(signature.args[2])(context, builder, off_v)
            out_a = context.make_array(signature.args[4])(context, builder, out_v)
            scalar, vector, align = vector_types(context, signature.args[0].dtype, lanes)
            intp = context.get_value_type(types.intp)
            x_ptr = builder.gep(x_a.data, [x_base_v])
            out_ptr = builder.gep(out_a.data, [out_base_v])
            is_max = builder.icmp_signed("==", mode_v, ir.Constant(intp, 0))
            count_vec = splat(builder, count_v, vector)

            def reduce_at(b, channel, width_type, zero_init):
                """Reduce the window at ``channel`` for a value of type width_type."""
                start = b.select(is_max, count_vec if width_type is vector else count_v,
                                 zero_init)
                ptr_type = width_type.as_pointer()

                def cell(b2, i, carried):
                    (acc,) = carried
                    offset = b2.load(b2.gep(off_a.data, [i]))
                    address = b2.gep(x_ptr, [b2.add(offset, channel)])
                    value = b2.load(b2.bitcast(address, ptr_type), align=align)
                    larger = b2.select(b2.fcmp_ordered(">", value, acc), value, acc)
                    return [b2.select(is_max, larger, b2.fadd(acc, value))]

                (acc,) = _loop(b, n_cells_v, [start], cell, "cell")
                result = b.select(is_max, acc, b.fdiv(acc, count_vec if width_type is vector
                                                      else count_v))
                target = b.bitcast(b.gep(out_ptr, [channel]), ptr_type)
                b.store(result, target, align=align)

            n_vectors = builder.sdiv(n_ch_v, ir.Constant(intp, lanes))

            def vector_step(b, j, carried):
                reduce_at(b, b.mul(j, ir.Constant(intp, lanes)), vector, ir.Constant(vector, None))
                return []

            _loop(builder, n_vectors, [], vector_step, "vec")
            tail_start = builder.mul(n_vectors, ir.Constant(intp, lanes))
            n_tail = builder.sub(n_ch_v, tail_start)

            def scalar_step(b, j, carried):
                reduce_at(b, b.add(tail_start, j), scalar, ir.Constant(scalar, 0.0))
                return []

            _loop(builder, n_tail, [], scalar_step, "tail")
            return context.get_dummy_value()

        return sig, codegen

    return reduce_window


@functools.lru_cache(maxsize=None)
def make_window_dot(vector_bytes: int = VECTOR_BYTES):
    """Return ``window_dot(x, x_base, taps, w_taps, n_taps, w, out, out_base, n_channels)``.

    For every channel ``c``:
    ``out[out_base + c] = sum_{t < n_taps} x[x_base + taps[t] + c] * w[w_taps[t] + c]`` — one
    output pixel of a depthwise convolution (channel multiplier 1) on a channels-last input,
    vectorised over channels with FMA. Passing only the taps inside the input (and their
    weights' offsets) handles the borders without a padded copy.
    """

    @intrinsic
    def window_dot(typingctx, x, x_base, taps, w_taps, n_taps, w, out, out_base, n_channels):
        if not (isinstance(x, types.Array) and isinstance(out, types.Array)
                and isinstance(w, types.Array) and x.dtype == out.dtype == w.dtype
                and x.dtype in (types.float32, types.float64)):
            return None
        sig = types.void(x, types.intp, taps, w_taps, types.intp, w, out, types.intp, types.intp)
        lanes = vector_lanes(x.dtype, vector_bytes)

        def codegen(context, builder, signature, args):
            x_v, x_base_v, taps_v, w_taps_v, n_taps, w_v, out_v, out_base_v, n_ch_v = args
            x_a = context.make_array(signature.args[0])(context, builder, x_v)
            taps_a = context.make_array(signature.args[2])(context, builder, taps_v)
            w_taps_a = context.make_array(signature.args[3])(context, builder, w_taps_v)
            w_a = context.make_array(signature.args[5])(context, builder, w_v)
            out_a = context.make_array(signature.args[6])(context, builder, out_v)
            scalar, vector, align = vector_types(context, signature.args[0].dtype, lanes)
            intp = context.get_value_type(types.intp)
            x_ptr = builder.gep(x_a.data, [x_base_v])
            out_ptr = builder.gep(out_a.data, [out_base_v])
            fma_vec = declare_fma(builder, vector)
            fma_one = declare_fma(builder, scalar)

            def dot_at(b, channel, value_type, fma, group=1):
                """``group`` consecutive vectors from ``channel``, each its own FMA chain (one
                chain per vector would wait on the FMA latency at every tap)."""
                ptr_type = value_type.as_pointer()
                width = value_type.count if isinstance(value_type, ir.VectorType) else 1

                def tap(b2, t, accs):
                    offset = b2.add(b2.load(b2.gep(taps_a.data, [t])), channel)
                    w_index = b2.add(b2.load(b2.gep(w_taps_a.data, [t])), channel)
                    updated = []
                    for g, acc in enumerate(accs):
                        step = ir.Constant(intp, g * width)
                        xv = b2.load(b2.bitcast(b2.gep(x_ptr, [b2.add(offset, step)]), ptr_type),
                                     align=align)
                        wv = b2.load(b2.bitcast(b2.gep(w_a.data, [b2.add(w_index, step)]),
                                                ptr_type), align=align)
                        updated.append(b2.call(fma, [xv, wv, acc]))
                    return updated

                accs = _loop(b, n_taps, [ir.Constant(value_type, None)] * group, tap, "tap")
                for g, acc in enumerate(accs):
                    target = b.gep(out_ptr, [b.add(channel, ir.Constant(intp, g * width))])
                    b.store(acc, b.bitcast(target, ptr_type), align=align)

            # Whole vectors in groups of 8, 4, 2, then 1; then the scalar tail.
            n_vectors = builder.sdiv(n_ch_v, ir.Constant(intp, lanes))
            done = ir.Constant(intp, 0)
            for group in (8, 4, 2, 1):
                count = builder.sdiv(builder.sub(n_vectors, done), ir.Constant(intp, group))

                def group_step(b, j, carried, first=done, group=group):
                    vector_index = b.add(first, b.mul(j, ir.Constant(intp, group)))
                    dot_at(b, b.mul(vector_index, ir.Constant(intp, lanes)), vector, fma_vec,
                           group)
                    return []

                _loop(builder, count, [], group_step, f"group{group}")
                done = builder.add(done, builder.mul(count, ir.Constant(intp, group)))
            tail_start = builder.mul(n_vectors, ir.Constant(intp, lanes))

            def scalar_step(b, j, carried):
                dot_at(b, b.add(tail_start, j), scalar, fma_one)
                return []

            _loop(builder, builder.sub(n_ch_v, tail_start), [], scalar_step, "tail")
            return context.get_dummy_value()

        return sig, codegen

    return window_dot


@functools.lru_cache(maxsize=None)
def make_pair_max_rows(vector_bytes: int = VECTOR_BYTES):
    """Return ``pair_max(x, row0, row1, out, out_base, count, lowest) -> done``.

    Channels-first 2x2 stride-2 max pooling of one output row: ``out[out_base + q] = max of
    x[row0 + 2q], x[row0 + 2q + 1], x[row1 + 2q], x[row1 + 2q + 1]`` for ``q`` in whole
    vectors of ``L`` outputs (two input vectors per row, the pairs split by constant shuffles),
    the last partial vector with masked loads and stores; returns ``count``. As in
    :func:`make_window_reduce`, the max starts from ``lowest`` and NaN never wins, so the
    result is the sequential scan's (TF's).
    """

    @intrinsic
    def pair_max(typingctx, x, row0, row1, out, out_base, count, lowest):
        if not (isinstance(x, types.Array) and isinstance(out, types.Array)
                and x.dtype == out.dtype and x.dtype in (types.float32, types.float64)):
            return None
        sig = types.intp(x, types.intp, types.intp, out, types.intp, types.intp, lowest)
        lanes = vector_lanes(x.dtype, vector_bytes)

        def codegen(context, builder, signature, args):
            x_v, row0_v, row1_v, out_v, out_base_v, count_v, lowest_v = args
            x_a = context.make_array(signature.args[0])(context, builder, x_v)
            out_a = context.make_array(signature.args[3])(context, builder, out_v)
            scalar, vector, align = vector_types(context, signature.args[0].dtype, lanes)
            wide = ir.VectorType(scalar, 2 * lanes)
            intp = context.get_value_type(types.intp)
            i32 = ir.IntType(32)
            low = context.cast(builder, lowest_v, signature.args[6], signature.args[0].dtype)
            floor = splat(builder, low, wide)
            even = ir.Constant(ir.VectorType(i32, lanes), list(range(0, 2 * lanes, 2)))
            odd = ir.Constant(ir.VectorType(i32, lanes), list(range(1, 2 * lanes, 2)))
            n_vectors = builder.sdiv(count_v, ir.Constant(intp, lanes))

            def keep_max(b, m, v):  # v > m ? v : m, so NaN (never greater) never wins
                return b.select(b.fcmp_ordered(">", v, m), v, m)

            def pool(b, q, in_mask=None, out_mask=None):
                offset = b.mul(q, ir.Constant(intp, 2 * lanes))
                rows = []
                for row in (row0_v, row1_v):
                    source = b.bitcast(b.gep(x_a.data, [b.add(row, offset)]), wide.as_pointer())
                    rows.append(b.load(source, align=align) if in_mask is None else
                                _masked_load(b, source, in_mask, wide, align))
                m = keep_max(b, keep_max(b, floor, rows[0]), rows[1])
                pairs = keep_max(b, b.shuffle_vector(m, m, even), b.shuffle_vector(m, m, odd))
                target = b.bitcast(b.gep(out_a.data, [b.add(out_base_v,
                                                            b.mul(q, ir.Constant(intp, lanes)))]),
                                   vector.as_pointer())
                if out_mask is None:
                    b.store(pairs, target, align=align)
                else:
                    _masked_store(b, pairs, target, out_mask, align)

            def body(b, q, carried):
                pool(b, q)
                return []

            _loop(builder, n_vectors, [], body, "pairs")
            # The last count % L outputs: masked loads and stores (rows shorter than a vector
            # are the common case for small feature maps).
            rest = builder.sub(count_v, builder.mul(n_vectors, ir.Constant(intp, lanes)))
            with builder.if_then(builder.icmp_signed(">", rest, ir.Constant(intp, 0))):
                pool(builder, n_vectors,
                     lanes_below(builder, builder.mul(rest, ir.Constant(intp, 2)), 2 * lanes),
                     lanes_below(builder, rest, lanes))
            return count_v

        return sig, codegen

    return pair_max
