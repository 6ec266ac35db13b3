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

import llvmlite.ir as ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _loop(builder, count, carried, body, name):
    """Emit ``for idx in range(count)`` carrying the values ``carried`` (a list of IR values).

    ``body(builder, idx, values) -> new values``; returns the values after the loop. Handles
    ``count == 0`` (the body never runs).
    """
    pre = builder.block
    header = builder.append_basic_block(f"{name}.header")
    loop = builder.append_basic_block(f"{name}.body")
    done = builder.append_basic_block(f"{name}.done")
    builder.branch(header)
    builder.position_at_end(header)
    index = builder.phi(count.type, name=f"{name}.i")
    index.add_incoming(ir.Constant(count.type, 0), pre)
    phis = []
    for value in carried:
        phi = builder.phi(value.type)
        phi.add_incoming(value, pre)
        phis.append(phi)
    builder.cbranch(builder.icmp_signed("<", index, count), loop, done)
    builder.position_at_end(loop)
    new_values = body(builder, index, phis)
    next_index = builder.add(index, ir.Constant(count.type, 1))
    latch = builder.block
    index.add_incoming(next_index, latch)
    for phi, value in zip(phis, new_values):
        phi.add_incoming(value, latch)
    builder.branch(header)
    builder.position_at_end(done)
    return phis


def vector_lanes(dtype, vector_bytes):
    """Lanes of a ``vector_bytes`` vector of Numba float ``dtype`` (float32 or float64)."""
    return vector_bytes // (4 if dtype == types.float32 else 8)


def vector_types(context, dtype, lanes):
    """(scalar IR type, vector IR type of ``lanes``, element alignment) for a float dtype."""
    scalar = context.get_value_type(dtype)
    return scalar, ir.VectorType(scalar, lanes), 4 if dtype == types.float32 else 8


def declare_fma(builder, value_type):
    """Declare ``llvm.fma`` for a float scalar or vector IR type and return it."""
    if isinstance(value_type, ir.VectorType):
        bits = 32 if isinstance(value_type.element, ir.FloatType) else 64
        name = f"llvm.fma.v{value_type.count}f{bits}"
    else:
        name = f"llvm.fma.f{32 if isinstance(value_type, ir.FloatType) else 64}"
    return cgutils.get_or_insert_function(builder.module,
                                          ir.FunctionType(value_type, [value_type] * 3), name)


def splat(builder, value, vector):
    """Broadcast scalar ``value`` to every lane of IR type ``vector``."""
    i32 = ir.IntType(32)
    undef = ir.Constant(vector, ir.Undefined)
    first = builder.insert_element(undef, value, ir.Constant(i32, 0))
    return builder.shuffle_vector(first, undef, ir.Constant(ir.VectorType(i32, vector.count),
                                                            [0] * vector.count))


@functools.lru_cache(maxsize=None)
def make_microkernel(block_pixels: int, vector_bytes: int):
    """Return an intrinsic ``micro(acc, x, x_base, taps, w_taps, n_taps, pixel_stride,
    channel_stride, n_channels, w, w_base)`` for a ``block_pixels x KB`` accumulator.

    ``KB = vector_bytes // itemsize`` output channels (so float64 blocks have half the lanes
    and the same register footprint). ``acc`` (at least WB*KB elements) receives the block
    row-major (pixel, channel). The first ``n_taps`` entries of ``taps`` are element offsets
    into ``x`` (from ``x_base``) and of ``w_taps`` the matching offsets into ``w`` (from
    ``w_base``), where ``n_channels`` consecutive vectors of KB weights start: a caller can
    drop the taps that fall into padding, or start a tap part-way through its channels.
    """
    wb = block_pixels

    @intrinsic
    def micro(typingctx, acc, x, x_base, taps, w_taps, n_taps, pixel_stride, channel_stride,
              n_channels, w, w_base):
        # ``x`` is an array, or the address of its first element (an integer: callers that
        # pick one of two sources per block select plain integers, with no reference counting;
        # and ``taps`` likewise an int64 array or its address).
        x_is_address = isinstance(x, types.Integer)
        taps_is_address = isinstance(taps, types.Integer)
        if not ((x_is_address or isinstance(x, types.Array) and x.dtype == w.dtype)
                and isinstance(w, types.Array) and isinstance(acc, types.Array)
                and w.dtype == acc.dtype and w.dtype in (types.float32, types.float64)):
            return None
        x_type = types.intp if x_is_address else x
        taps_type = types.intp if taps_is_address else taps
        sig = types.void(acc, x_type, types.intp, taps_type, w_taps, types.intp, types.intp,
                         types.intp, types.intp, w, types.intp)

        kb = vector_lanes(w.dtype, vector_bytes)

        def codegen(context, builder, signature, args):
            (acc_v, x_v, x_base_v, taps_v, w_taps_v, n_taps_v, pix_v, chan_v, nch_v, w_v,
             w_base_v) = args
            arrays = [context.make_array(t)(context, builder, v) for t, v in
                      zip((signature.args[0], signature.args[4], signature.args[9]),
                          (acc_v, w_taps_v, w_v))]
            acc_a, w_taps_a, w_a = arrays
            scalar, vector, align = vector_types(context, signature.args[9].dtype, kb)
            fma = declare_fma(builder, vector)
            intp = context.get_value_type(types.intp)
            if x_is_address:
                x_data = builder.inttoptr(x_v, scalar.as_pointer())
            else:
                x_data = context.make_array(signature.args[1])(context, builder, x_v).data
            x_ptr = builder.gep(x_data, [x_base_v])
            if taps_is_address:
                taps_data = builder.inttoptr(taps_v, intp.as_pointer())
            else:
                taps_data = context.make_array(signature.args[3])(context, builder, taps_v).data
            w_start = builder.gep(w_a.data, [w_base_v])
            zero = ir.Constant(vector, None)

            def tap_body(b, t, accs):
                tap_ptr = b.gep(x_ptr, [b.load(b.gep(taps_data, [t]))])
                w_first = b.gep(w_start, [b.load(b.gep(w_taps_a.data, [t]))])

                def channel_body(b2, c, inner):
                    w_ptr, *accs2 = inner
                    w_vec = b2.load(b2.bitcast(w_ptr, vector.as_pointer()), align=align)
                    x_c = b2.gep(tap_ptr, [b2.mul(c, chan_v)])
                    updated = []
                    for i, a in enumerate(accs2):
                        xi = b2.load(b2.gep(x_c, [b2.mul(ir.Constant(intp, i), pix_v)]))
                        updated.append(b2.call(fma, [splat(b2, xi, vector), w_vec, a]))
                    return [b2.gep(w_ptr, [ir.Constant(intp, kb)])] + updated

                return _loop(b, nch_v, [w_first] + accs, channel_body, "chan")[1:]

            final = _loop(builder, n_taps_v, [zero] * wb, tap_body, "tap")
            acc_ptr = builder.bitcast(acc_a.data, vector.as_pointer())
            for i, value in enumerate(final):
                builder.store(value, builder.gep(acc_ptr, [ir.Constant(intp, i)]), align=align)
            return context.get_dummy_value()

        return sig, codegen

    return micro


@functools.lru_cache(maxsize=None)
def make_block_store(vector_bytes: int):
    """Return an intrinsic ``store(acc, width, out, out_base, out_pixel_stride, bias, bias_base,
    act)`` writing ``width`` rows of KB accumulators to contiguous channel runs of ``out``.

    Adds ``bias[bias_base:bias_base + KB]`` when ``bias`` is non-empty and applies relu
    (``act == 1``) or relu6 (``act == 2``) with vector selects: ``v < 0`` is false for NaN, so
    NaN passes through as in ``tf.nn.relu``. Other activations are the caller's job.
    """

    @intrinsic
    def store(typingctx, acc, width, out, out_base, out_pixel_stride, bias, bias_base, act):
        if not (isinstance(acc, types.Array) and isinstance(out, types.Array)
                and isinstance(bias, types.Array) and acc.dtype == out.dtype == bias.dtype
                and acc.dtype in (types.float32, types.float64)):
            return None
        sig = types.void(acc, types.intp, out, types.intp, types.intp, bias, types.intp,
                         types.intp)
        kb = vector_lanes(acc.dtype, vector_bytes)

        def codegen(context, builder, signature, args):
            acc_v, width_v, out_v, out_base_v, stride_v, bias_v, bias_base_v, act_v = args
            acc_a = context.make_array(signature.args[0])(context, builder, acc_v)
            out_a = context.make_array(signature.args[2])(context, builder, out_v)
            bias_a = context.make_array(signature.args[5])(context, builder, bias_v)
            _, vector, align = vector_types(context, signature.args[0].dtype, kb)
            intp = context.get_value_type(types.intp)
            has_bias = builder.icmp_signed(">", builder.extract_value(bias_a.shape, 0),
                                           ir.Constant(intp, 0))
            bias_ptr = builder.bitcast(builder.gep(bias_a.data, [bias_base_v]), vector.as_pointer())
            bias_vec = load_if(builder, has_bias, lambda: builder.load(bias_ptr, align=align),
                               ir.Constant(vector, None))
            acc_ptr = builder.bitcast(acc_a.data, vector.as_pointer())
            out_ptr = builder.gep(out_a.data, [out_base_v])
            flags = activation_flags(builder, act_v)

            def row(b, i, carried):
                value = b.load(b.gep(acc_ptr, [i]), align=align)
                value = fused_activation(b, b.fadd(value, bias_vec), flags)
                target = b.bitcast(b.gep(out_ptr, [b.mul(i, stride_v)]), vector.as_pointer())
                b.store(value, target, align=align)
                return []

            _loop(builder, width_v, [], row, "store")
            return context.get_dummy_value()

        return sig, codegen

    return store


@functools.lru_cache(maxsize=None)
def make_planar_microkernel(block_rows: int, vector_bytes: int):
    """Return ``micro(acc, x, x_base, taps, plane_stride, n_channels, w, w_base)``: the
    channels-first twin of :func:`make_microkernel`, with the roles of pixels and channels swapped.

    The vector runs over ``L = vector_bytes // itemsize`` consecutive output pixels of one row
    (contiguous in a channels-first input when the stride is 1) and the ``block_rows``
    accumulators over output channels, each updated with a broadcast weight::

        for tap in taps:
            for c in range(n_channels):
                x_vec = x[x_base + tap + c * plane_stride : ... + L]
                for i in range(block_rows):
                    acc[i, :] += w[w_base + (tap_index * n_channels + c) * block_rows + i] * x_vec
    """
    rows = block_rows

    @intrinsic
    def micro(typingctx, acc, x, x_base, taps, plane_stride, n_channels, w, w_base):
        if not (isinstance(x, types.Array) and isinstance(w, types.Array)
                and isinstance(acc, types.Array) and x.dtype == w.dtype == acc.dtype
                and x.dtype in (types.float32, types.float64)):
            return None
        sig = types.void(acc, x, types.intp, taps, types.intp, types.intp, w, types.intp)
        lanes = vector_lanes(x.dtype, vector_bytes)

        def codegen(context, builder, signature, args):
            acc_v, x_v, x_base_v, taps_v, plane_v, nch_v, w_v, w_base_v = args
            acc_a = context.make_array(signature.args[0])(context, builder, acc_v)
            x_a = context.make_array(signature.args[1])(context, builder, x_v)
            taps_a = context.make_array(signature.args[3])(context, builder, taps_v)
            w_a = context.make_array(signature.args[6])(context, builder, w_v)
            scalar, vector, align = vector_types(context, signature.args[1].dtype, lanes)
            fma = declare_fma(builder, vector)
            intp = context.get_value_type(types.intp)
            x_ptr = builder.gep(x_a.data, [x_base_v])
            w_start = builder.gep(w_a.data, [w_base_v])
            n_taps = builder.extract_value(taps_a.shape, 0)

            def tap_body(b, t, carried):
                w_cur, *accs = carried
                tap_ptr = b.gep(x_ptr, [b.load(b.gep(taps_a.data, [t]))])

                def channel_body(b2, c, inner):
                    w_ptr, *accs2 = inner
                    x_vec = b2.load(b2.bitcast(b2.gep(tap_ptr, [b2.mul(c, plane_v)]),
                                               vector.as_pointer()), align=align)
                    updated = []
                    for i, a in enumerate(accs2):
                        wi = b2.load(b2.gep(w_ptr, [ir.Constant(intp, i)]))
                        updated.append(b2.call(fma, [splat(b2, wi, vector), x_vec, a]))
                    return [b2.gep(w_ptr, [ir.Constant(intp, rows)])] + updated

                return _loop(b, nch_v, [w_cur] + accs, channel_body, "chan")

            final = _loop(builder, n_taps, [w_start] + [ir.Constant(vector, None)] * rows,
                          tap_body, "tap")
            acc_ptr = builder.bitcast(acc_a.data, vector.as_pointer())
            for i, value in enumerate(final[1:]):
                builder.store(value, builder.gep(acc_ptr, [ir.Constant(intp, i)]), align=align)
            return context.get_dummy_value()

        return sig, codegen

    return micro


def _masked_load(builder, pointer, mask, vector, align):
    """``llvm.masked.load`` of ``vector`` at ``pointer`` (zeros where ``mask`` is off)."""
    bits = 32 if isinstance(vector.element, ir.FloatType) else 64
    i32 = ir.IntType(32)
    function = cgutils.get_or_insert_function(
        builder.module,
        ir.FunctionType(vector, [pointer.type, i32, mask.type, vector]),
        f"llvm.masked.load.v{vector.count}f{bits}.p0")
    return builder.call(function, [pointer, ir.Constant(i32, align), mask,
                                   ir.Constant(vector, None)])


def _masked_store(builder, value, pointer, mask, align):
    """``llvm.masked.store`` of vector ``value`` at ``pointer``: only lanes where ``mask`` holds."""
    vector = value.type
    bits = 32 if isinstance(vector.element, ir.FloatType) else 64
    i32 = ir.IntType(32)
    mask_type = ir.VectorType(ir.IntType(1), vector.count)
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [vector, pointer.type, i32, mask_type]),
        f"llvm.masked.store.v{vector.count}f{bits}.p0")
    builder.call(function, [value, pointer, ir.Constant(i32, align), mask])


def lanes_below(builder, limit, lanes):
    """The mask of the lanes ``i < limit`` of a ``lanes``-wide vector (``limit`` an integer)."""
    index = ir.VectorType(limit.type, lanes)
    return builder.icmp_signed("<", ir.Constant(index, list(range(lanes))),
                               splat(builder, limit, index))


def store_partial(builder, value, pointer, whole, mask, align):
    """Store vector ``value`` at ``pointer``: every lane when ``whole`` (an i1) holds, else
    the lanes of ``mask`` only (the rest of the memory may be another thread's)."""
    with builder.if_else(whole) as (then, otherwise):
        with then:
            builder.store(value, pointer, align=align)
        with otherwise:
            _masked_store(builder, value, pointer, mask, align)


def load_if(builder, condition, load, default):
    """``load()`` where ``condition`` (an i1) holds, else ``default``: for pointers that must
    not be dereferenced otherwise (an empty array's data, a row past the end)."""
    with builder.if_else(condition) as (then, otherwise):
        with then:
            loaded = load()
            then_block = builder.block
        with otherwise:
            otherwise_block = builder.block
    value = builder.phi(default.type)
    value.add_incoming(loaded, then_block)
    value.add_incoming(default, otherwise_block)
    return value


def activation_flags(builder, act):
    """(relu, relu6) as i1 values from the activation code ``act`` (see ``activation.py``)."""
    return (builder.icmp_signed(">=", act, ir.Constant(act.type, 1)),
            builder.icmp_signed("==", act, ir.Constant(act.type, 2)))


def fused_activation(builder, value, flags):
    """relu (``flags[0]``) or relu6 (``flags[1]``) of vector ``value`` as selects: ``v < 0`` is
    false for NaN, so NaN passes through as in ``tf.nn.relu``."""
    relu, relu6 = flags
    zero = ir.Constant(value.type, None)
    six = ir.Constant(value.type, [6.0] * value.type.count)
    clipped = builder.select(builder.fcmp_ordered("<", value, zero), zero, value)
    value = builder.select(relu, clipped, value)
    capped = builder.select(builder.fcmp_ordered(">", value, six), six, value)
    return builder.select(relu6, capped, value)


@functools.lru_cache(maxsize=None)
def make_planar_store(vector_bytes: int):
    """Return an intrinsic ``store(acc, rows, width, out, out_base, row_stride, bias, bias_base,
    act)`` writing the first ``width`` lanes of ``rows`` accumulator vectors to ``out``.

    The channels-first twin of :func:`make_block_store`: accumulator ``i`` (L consecutive output
    pixels of one channel) goes to ``out[out_base + i * row_stride:][:width]`` with
    ``bias[bias_base + i]`` added and relu/relu6 applied as vector selects. A row shorter than
    a vector is written with a masked store, so neighbouring rows (another thread's) are never
    touched.
    """

    @intrinsic
    def store(typingctx, acc, rows, width, out, out_base, row_stride, bias, bias_base, act):
        if not (isinstance(acc, types.Array) and isinstance(out, types.Array)
                and isinstance(bias, types.Array) and acc.dtype == out.dtype == bias.dtype
                and acc.dtype in (types.float32, types.float64)):
            return None
        sig = types.void(acc, types.intp, types.intp, out, types.intp, types.intp, bias,
                         types.intp, types.intp)
        lanes = vector_lanes(acc.dtype, vector_bytes)

        def codegen(context, builder, signature, args):
            (acc_v, rows_v, width_v, out_v, out_base_v, stride_v, bias_v, bias_base_v,
             act_v) = args
            acc_a = context.make_array(signature.args[0])(context, builder, acc_v)
            out_a = context.make_array(signature.args[3])(context, builder, out_v)
            bias_a = context.make_array(signature.args[6])(context, builder, bias_v)
            scalar, vector, align = vector_types(context, signature.args[0].dtype, lanes)
            intp = context.get_value_type(types.intp)
            has_bias = builder.icmp_signed(">", builder.extract_value(bias_a.shape, 0),
                                           ir.Constant(intp, 0))
            flags = activation_flags(builder, act_v)
            mask = lanes_below(builder, width_v, lanes)
            full = builder.icmp_signed(">=", width_v, ir.Constant(intp, lanes))
            acc_ptr = builder.bitcast(acc_a.data, vector.as_pointer())
            out_ptr = builder.gep(out_a.data, [out_base_v])
            bias_ptr = builder.gep(bias_a.data, [bias_base_v])

            def row(b, i, carried):
                value = b.load(b.gep(acc_ptr, [i]), align=align)
                bias_i = load_if(b, has_bias, lambda: b.load(b.gep(bias_ptr, [i])),
                                 ir.Constant(scalar, 0.0))
                value = fused_activation(b, b.fadd(value, splat(b, bias_i, vector)), flags)
                target = b.bitcast(b.gep(out_ptr, [b.mul(i, stride_v)]), vector.as_pointer())
                store_partial(b, value, target, full, mask, align)
                return []

            _loop(builder, rows_v, [], row, "store")
            return context.get_dummy_value()

        return sig, codegen

    return store
