"""The Winograd F(2x2, 3x3) tile transforms as LLVM IR, vectorised over channels.

Written as IR for the same reason as the micro-kernel: Numba's loop over channels touches 16
input and 16 output streams per tile, and LLVM gave up vectorising it (it cannot prove the
streams do not alias), which left the transforms scalar and as slow as the matrix products
they feed. Here every step is one vector of ``L`` channels; the last, partial vector uses
masked loads and stores, so no channel count needs padding.
"""

from __future__ import annotations

import functools

import llvmlite.ir as ir
from numba import types
from numba.extending import intrinsic

from .microkernel import (_loop, _masked_load, _masked_store, activation_flags, fused_activation,
                          lanes_below, load_if, store_partial, vector_lanes, vector_types)


def _vector_access(builder, vector, align, mask):
    """``load(pointer)`` / ``store(value, pointer)`` for whole (``mask`` None) or masked vectors."""
    def load(pointer):
        pointer = builder.bitcast(pointer, vector.as_pointer())
        if mask is None:
            return builder.load(pointer, align=align)
        return _masked_load(builder, pointer, mask, vector, align)

    def store(value, pointer):
        pointer = builder.bitcast(pointer, vector.as_pointer())
        if mask is None:
            builder.store(value, pointer, align=align)
        else:
            _masked_store(builder, value, pointer, mask, align)

    return load, store


def _over_channel_vectors(builder, count, lanes, intp, carried, step):
    """Run ``step(builder, offset, mask, values)`` over ``count`` channels in vectors of
    ``lanes``: whole vectors first (mask None), then one masked vector for the rest.
    Returns the carried values."""
    lanes_c = ir.Constant(intp, lanes)
    whole = builder.sdiv(count, lanes_c)

    def body(b, q, values):
        return step(b, b.mul(q, lanes_c), None, values)

    carried = _loop(builder, whole, carried, body, "vec")
    offset = builder.mul(whole, lanes_c)
    rest = builder.sub(count, offset)
    before = builder.block
    with builder.if_then(builder.icmp_signed(">", rest, ir.Constant(intp, 0))):
        tail_values = step(builder, offset, lanes_below(builder, rest, lanes), carried)
        tail_block = builder.block
    merged = []
    for value, tail_value in zip(carried, tail_values):
        phi = builder.phi(value.type)
        phi.add_incoming(value, before)
        phi.add_incoming(tail_value, tail_block)
        merged.append(phi)
    return merged


@functools.lru_cache(maxsize=None)
def make_input_transform(vector_bytes: int):
    """Return ``transform(src, base, row_step, col_step, channels, v, v_base, xi_step)``.

    For one 4x4 tile ``d[a, b, c] = src[base + a*row_step + b*col_step + c]`` it writes
    ``V[xi, c] = (B^T d B)[xi]`` to ``v[v_base + xi*xi_step + c]`` for every channel, with
    ``B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]``.
    """

    @intrinsic
    def transform(typingctx, src, base, row_step, col_step, channels, v, v_base, xi_step):
        if not (isinstance(src, types.Array) and isinstance(v, types.Array)
                and src.dtype == v.dtype and src.dtype in (types.float32, types.float64)):
            return None
        sig = types.void(src, types.intp, types.intp, types.intp, types.intp, v, types.intp,
                         types.intp)
        lanes = vector_lanes(src.dtype, vector_bytes)

        def codegen(context, builder, signature, args):
            src_v, base_v, row_v, col_v, count_v, v_v, v_base_v, xi_v = args
            src_a = context.make_array(signature.args[0])(context, builder, src_v)
            v_a = context.make_array(signature.args[5])(context, builder, v_v)
            _, vector, align = vector_types(context, signature.args[0].dtype, lanes)
            intp = context.get_value_type(types.intp)
            src_ptr = builder.gep(src_a.data, [base_v])
            v_ptr = builder.gep(v_a.data, [v_base_v])

            def step(b, offset, mask, values):
                load, store = _vector_access(b, vector, align, mask)
                d = [[load(b.gep(src_ptr, [b.add(b.add(b.mul(ir.Constant(intp, r), row_v),
                                                       b.mul(ir.Constant(intp, c), col_v)),
                                                 offset)]))
                      for c in range(4)] for r in range(4)]
                rows = [[b.fsub(d[0][c], d[2][c]) for c in range(4)],
                        [b.fadd(d[1][c], d[2][c]) for c in range(4)],
                        [b.fsub(d[2][c], d[1][c]) for c in range(4)],
                        [b.fsub(d[1][c], d[3][c]) for c in range(4)]]
                for r, row in enumerate(rows):
                    cells = [b.fsub(row[0], row[2]), b.fadd(row[1], row[2]),
                             b.fsub(row[2], row[1]), b.fsub(row[1], row[3])]
                    for c, value in enumerate(cells):
                        index = b.add(b.mul(ir.Constant(intp, 4 * r + c), xi_v), offset)
                        store(value, b.gep(v_ptr, [index]))
                return []

            _over_channel_vectors(builder, count_v, lanes, intp, [], step)
            return context.get_dummy_value()

        return sig, codegen

    return transform


@functools.lru_cache(maxsize=None)
def make_output_transform(vector_bytes: int):
    """Return ``transform(m, m_base, xi_step, count, out, base, h_step, w_step, second_row,
    second_col, bias, k0, act) -> float``.

    For one tile and ``count`` channels (``M[xi, j] = m[m_base + xi*xi_step + j]``) it stores
    ``Y = A^T M A`` (``A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]``) plus ``bias[k0 + j]`` (when
    ``bias`` is non-empty) to ``out[base + j]``, ``+ w_step`` (when ``second_col``), ``+ h_step``
    (when ``second_row``) and both, applying relu (``act == 1``) or relu6 (``act == 2``); other
    activations are the caller's. Returns 0 when every pre-activation value was finite and NaN
    otherwise (the caller then recomputes the layer with a direct kernel).
    """

    @intrinsic
    def transform(typingctx, m, m_base, xi_step, count, out, base, h_step, w_step, second_row,
                  second_col, bias, k0, act):
        if not (isinstance(m, types.Array) and isinstance(out, types.Array)
                and isinstance(bias, types.Array) and m.dtype == out.dtype == bias.dtype
                and m.dtype in (types.float32, types.float64)):
            return None
        sig = m.dtype(m, types.intp, types.intp, types.intp, out, types.intp, types.intp,
                      types.intp, types.boolean, types.boolean, bias, types.intp, types.intp)
        lanes = vector_lanes(m.dtype, vector_bytes)

        def codegen(context, builder, signature, args):
            (m_v, m_base_v, xi_v, count_v, out_v, base_v, h_v, w_v, row2_v, col2_v, bias_v,
             k0_v, act_v) = args
            m_a = context.make_array(signature.args[0])(context, builder, m_v)
            out_a = context.make_array(signature.args[4])(context, builder, out_v)
            bias_a = context.make_array(signature.args[10])(context, builder, bias_v)
            scalar, vector, align = vector_types(context, signature.args[0].dtype, lanes)
            intp = context.get_value_type(types.intp)
            zero = ir.Constant(vector, None)
            m_ptr = builder.gep(m_a.data, [m_base_v])
            out_ptr = builder.gep(out_a.data, [base_v])
            bias_ptr = builder.gep(bias_a.data, [k0_v])
            has_bias = builder.icmp_signed(">", builder.extract_value(bias_a.shape, 0),
                                           ir.Constant(intp, 0))
            flags = activation_flags(builder, act_v)
            row2 = builder.trunc(row2_v, ir.IntType(1)) if row2_v.type != ir.IntType(1) else row2_v
            col2 = builder.trunc(col2_v, ir.IntType(1)) if col2_v.type != ir.IntType(1) else col2_v

            def step(b, offset, mask, values):
                (bad,) = values
                load, store = _vector_access(b, vector, align, mask)
                # M rows are KB >= count wide, so whole-vector loads stay inside them.
                mm = [b.load(b.bitcast(b.gep(m_ptr, [b.add(b.mul(ir.Constant(intp, xi), xi_v),
                                                            offset)]), vector.as_pointer()),
                             align=align) for xi in range(16)]
                s = [b.fadd(b.fadd(mm[c], mm[4 + c]), mm[8 + c]) for c in range(4)]
                t = [b.fsub(b.fsub(mm[4 + c], mm[8 + c]), mm[12 + c]) for c in range(4)]
                bias_vec = load_if(b, has_bias, lambda: load(b.gep(bias_ptr, [offset])), zero)
                ys = [b.fadd(b.fsub(b.fsub(r[1], r[2]), r[3]) if second else
                             b.fadd(b.fadd(r[0], r[1]), r[2]), bias_vec)
                      for r in (s, t) for second in (False, True)]
                total = b.fadd(b.fadd(ys[0], ys[1]), b.fadd(ys[2], ys[3]))
                bad = b.fadd(bad, b.fmul(total, zero))  # NaN once anything was not finite
                results = [fused_activation(b, y, flags) for y in ys]
                store(results[0], b.gep(out_ptr, [offset]))
                with b.if_then(col2):
                    store(results[1], b.gep(out_ptr, [b.add(w_v, offset)]))
                with b.if_then(row2):
                    store(results[2], b.gep(out_ptr, [b.add(h_v, offset)]))
                    with b.if_then(col2):
                        store(results[3], b.gep(out_ptr, [b.add(b.add(h_v, w_v), offset)]))
                return [bad]

            (bad,) = _over_channel_vectors(builder, count_v, lanes, intp, [zero], step)
            total = ir.Constant(scalar, 0.0)
            for lane in range(lanes):
                lane_index = ir.Constant(ir.IntType(32), lane)
                total = builder.fadd(total, builder.extract_element(bad, lane_index))
            return total

        return sig, codegen

    return transform


def _transpose_square(builder, rows):
    """Transpose ``len(rows)`` vectors of as many lanes (a power of two) with two-input shuffles:
    at each stage the elements whose index bit ``s`` differs from their row's bit ``s`` swap."""
    n = len(rows)
    i32 = ir.IntType(32)
    s = 1
    while s < n:
        low = ir.Constant(ir.VectorType(i32, n), [p if not p & s else n + p - s for p in range(n)])
        high = ir.Constant(ir.VectorType(i32, n), [p + s if not p & s else n + p for p in range(n)])
        new = list(rows)
        for i in range(n):
            if i & s:
                continue
            new[i] = builder.shuffle_vector(rows[i], rows[i + s], low)
            new[i + s] = builder.shuffle_vector(rows[i], rows[i + s], high)
        rows = new
        s *= 2
    return rows


@functools.lru_cache(maxsize=None)
def make_stage_transpose(vector_bytes: int):
    """Return ``transpose(stage, src, pixels, pixel_step, channels, out, dst, channel_step)``.

    Writes ``out[dst + j * channel_step + p] = stage[src + p * pixel_step + j]`` for
    ``p < pixels`` and ``j < channels``: a channels-last block (pixels of one output row, a
    block of channels) to channels-first rows, or channels-first rows to a channels-last block,
    in L x L tiles transposed in registers, with masked loads and stores for partial tiles.
    """

    @intrinsic
    def transpose(typingctx, stage, src, pixels, pixel_step, channels, out, dst, channel_step):
        if not (isinstance(stage, types.Array) and isinstance(out, types.Array)
                and stage.dtype == out.dtype and stage.dtype in (types.float32, types.float64)):
            return None
        sig = types.void(stage, types.intp, types.intp, types.intp, types.intp, out, types.intp,
                         types.intp)
        lanes = vector_lanes(stage.dtype, vector_bytes)

        def codegen(context, builder, signature, args):
            stage_v, src_v, pixels_v, pstep_v, channels_v, out_v, dst_v, cstep_v = args
            stage_a = context.make_array(signature.args[0])(context, builder, stage_v)
            out_a = context.make_array(signature.args[5])(context, builder, out_v)
            _, vector, align = vector_types(context, signature.args[0].dtype, lanes)
            intp = context.get_value_type(types.intp)
            lanes_c = ir.Constant(intp, lanes)
            n_channel_tiles = builder.sdiv(builder.add(channels_v, ir.Constant(intp, lanes - 1)),
                                           lanes_c)
            n_pixel_tiles = builder.sdiv(builder.add(pixels_v, ir.Constant(intp, lanes - 1)),
                                         lanes_c)

            def channel_tile(b, ct, carried):
                j0 = b.mul(ct, lanes_c)
                # Loads stop at ``channels`` (the source row may end at the array's end).
                load_mask = lanes_below(b, b.sub(channels_v, j0), lanes)

                def pixel_tile(b2, pt, inner):
                    p0 = b2.mul(pt, lanes_c)
                    left = b2.sub(pixels_v, p0)  # pixels in this tile (may exceed L)
                    def load_row(i):  # pixel p0 + i, channels j0 .. j0 + L
                        offset = b2.add(b2.add(src_v, b2.mul(b2.add(p0, ir.Constant(intp, i)),
                                                             pstep_v)), j0)
                        pointer = b2.bitcast(b2.gep(stage_a.data, [offset]), vector.as_pointer())
                        return _masked_load(b2, pointer, load_mask, vector, align)

                    rows = [load_if(b2, b2.icmp_signed("<", ir.Constant(intp, i), left),
                                    lambda i=i: load_row(i), ir.Constant(vector, None))
                            for i in range(lanes)]
                    columns = _transpose_square(b2, rows)
                    mask = lanes_below(b2, left, lanes)
                    whole = b2.icmp_signed(">=", left, lanes_c)
                    for j, column in enumerate(columns):  # channel j0 + j, pixels p0 .. p0 + L
                        channel = b2.add(j0, ir.Constant(intp, j))
                        with b2.if_then(b2.icmp_signed("<", channel, channels_v)):
                            target = b2.bitcast(b2.gep(out_a.data, [b2.add(b2.add(
                                dst_v, b2.mul(channel, cstep_v)), p0)]), vector.as_pointer())
                            store_partial(b2, column, target, whole, mask, align)
                    return []

                _loop(b, n_pixel_tiles, [], pixel_tile, "pixels")
                return []

            _loop(builder, n_channel_tiles, [], channel_tile, "channels")
            return context.get_dummy_value()

        return sig, codegen

    return transpose
