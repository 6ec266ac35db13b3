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

from .irtools import (DTYPE, FLAG, FLOATS, INDEX, activation_flags, fused_activation,
                      lanes_below, load_if, loop, over_vectors, store_partial, vector_intrinsic)


@functools.lru_cache(maxsize=None)
def make_input_transform(vector_bytes: int):
    """Return ``transform(src, base, row_step, col_step, channels, v, v_base, xi_step)``.

    For one 4x4 tile ``d[a, b, c] = src[base + a*row_step + b*col_step + c]`` it writes
    ``V[xi, c] = (B^T d B)[xi]`` to ``v[v_base + xi*xi_step + c]`` for every channel, with
    ``B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]``. NumPy equivalent::

        v[v_base + xi_step * np.arange(16)[:, None] + np.arange(channels)] = \
            np.einsum("ia,abc,jb->ijc", BT, d, BT).reshape(16, channels)
    """
    @vector_intrinsic(vector_bytes, FLOATS, INDEX, INDEX, INDEX, INDEX, FLOATS, INDEX, INDEX)
    def transform(code, src, base, row_step, col_step, channels, v, v_base, xi_step):
        src_ptr = code.builder.gep(src.data, [base])
        v_ptr = code.builder.gep(v.data, [v_base])

        def step(b, offset, mask, values):
            d = [[code.load(b.gep(src_ptr, [b.add(b.add(b.mul(code.index(r), row_step),
                                                        b.mul(code.index(c), col_step)),
                                                  offset)]), mask, builder=b)
                  for c in range(4)] for r in range(4)]
            rows = [[b.fsub(d[0][c], d[2][c]) for c in range(4)],
                    [b.fadd(d[1][c], d[2][c]) for c in range(4)],
                    [b.fsub(d[2][c], d[1][c]) for c in range(4)],
                    [b.fsub(d[1][c], d[3][c]) for c in range(4)]]
            for r, row in enumerate(rows):
                cells = [b.fsub(row[0], row[2]), b.fadd(row[1], row[2]),
                         b.fsub(row[2], row[1]), b.fsub(row[1], row[3])]
                for c, value in enumerate(cells):
                    index = b.add(b.mul(code.index(4 * r + c), xi_step), offset)
                    code.store(value, b.gep(v_ptr, [index]), mask, builder=b)
            return []

        over_vectors(code.builder, channels, code.lanes, [], step)

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
    otherwise (the caller then recomputes the layer with a direct kernel). NumPy equivalent::

        y = np.einsum("ia,abj,kb->ikj", AT, M.reshape(4, 4, count), AT) + bias[k0:][:count]
        out[base + r * h_step + c * w_step:][:count] = act(y[r, c])   # the cells asked for
        return 0.0 if np.isfinite(y).all() else np.nan                  # all four cells
    """
    @vector_intrinsic(vector_bytes, FLOATS, INDEX, INDEX, INDEX, FLOATS, INDEX, INDEX, INDEX,
                      FLAG, FLAG, FLOATS, INDEX, INDEX, returns=DTYPE)
    def transform(code, m, m_base, xi_step, count, out, base, h_step, w_step, second_row,
                  second_col, bias, k0, act):
        zero = code.zeros()
        b0 = code.builder
        m_ptr = b0.gep(m.data, [m_base])
        out_ptr = b0.gep(out.data, [base])
        bias_ptr = b0.gep(bias.data, [k0])
        has_bias = b0.icmp_signed(">", bias.size, code.index(0))
        flags = activation_flags(b0, act)

        def step(b, offset, mask, values):
            (bad,) = values

            def store(value, at):
                code.store(value, b.gep(out_ptr, [at]), mask, builder=b)

            # M rows are KB >= count wide, so whole-vector loads stay inside them.
            mm = [code.load(b.gep(m_ptr, [b.add(b.mul(code.index(xi), xi_step), offset)]),
                            builder=b) for xi in range(16)]
            s = [b.fadd(b.fadd(mm[c], mm[4 + c]), mm[8 + c]) for c in range(4)]
            t = [b.fsub(b.fsub(mm[4 + c], mm[8 + c]), mm[12 + c]) for c in range(4)]
            bias_vec = load_if(b, has_bias,
                               lambda: code.load(b.gep(bias_ptr, [offset]), mask, builder=b),
                               zero)
            ys = [b.fadd(b.fsub(b.fsub(r[1], r[2]), r[3]) if second else
                         b.fadd(b.fadd(r[0], r[1]), r[2]), bias_vec)
                  for r in (s, t) for second in (False, True)]
            total = b.fadd(b.fadd(ys[0], ys[1]), b.fadd(ys[2], ys[3]))
            bad = b.fadd(bad, b.fmul(total, zero))  # NaN once anything was not finite
            results = [fused_activation(b, y, flags) for y in ys]
            store(results[0], offset)
            with b.if_then(second_col):
                store(results[1], b.add(w_step, offset))
            with b.if_then(second_row):
                store(results[2], b.add(h_step, offset))
                with b.if_then(second_col):
                    store(results[3], b.add(b.add(h_step, w_step), offset))
            return [bad]

        (bad,) = over_vectors(b0, count, code.lanes, [zero], step)
        total = code.zeros(code.scalar)
        for lane in range(code.lanes):
            total = b0.fadd(total, b0.extract_element(bad, ir.Constant(ir.IntType(32), lane)))
        return total

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
    @vector_intrinsic(vector_bytes, FLOATS, INDEX, INDEX, INDEX, INDEX, FLOATS, INDEX, INDEX)
    def transpose(code, stage, src, pixels, pixel_step, channels, out, dst, channel_step):
        b, lanes = code.builder, code.lanes
        lanes_c = code.index(lanes)
        n_channel_tiles = b.sdiv(b.add(channels, code.index(lanes - 1)), lanes_c)
        n_pixel_tiles = b.sdiv(b.add(pixels, code.index(lanes - 1)), lanes_c)
        with loop(b, n_channel_tiles, [], "channels") as channel_tile:
            j0 = b.mul(channel_tile.index, lanes_c)
            # Loads stop at ``channels`` (the source row may end at the array's end).
            load_mask = lanes_below(b, b.sub(channels, j0), lanes)
            with loop(b, n_pixel_tiles, [], "pixels") as pixel_tile:
                p0 = b.mul(pixel_tile.index, lanes_c)
                left = b.sub(pixels, p0)  # pixels in this tile (may exceed L)

                def load_row(i):  # pixel p0 + i, channels j0 .. j0 + L
                    offset = b.add(b.add(src, b.mul(b.add(p0, code.index(i)), pixel_step)), j0)
                    return code.load(b.gep(stage.data, [offset]), load_mask)

                rows = [load_if(b, b.icmp_signed("<", code.index(i), left),
                                lambda i=i: load_row(i), code.zeros())
                        for i in range(lanes)]
                columns = _transpose_square(b, rows)
                mask = lanes_below(b, left, lanes)
                whole = b.icmp_signed(">=", left, lanes_c)
                for j, column in enumerate(columns):  # channel j0 + j, pixels p0 .. p0 + L
                    channel = b.add(j0, code.index(j))
                    with b.if_then(b.icmp_signed("<", channel, channels)):
                        target = b.bitcast(b.gep(out.data, [b.add(b.add(
                            dst, b.mul(channel, channel_step)), p0)]), code.vector.as_pointer())
                        store_partial(b, column, target, whole, mask, code.align)

    return transpose
