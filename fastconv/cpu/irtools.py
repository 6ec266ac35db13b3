"""The toolkit the hand-written LLVM IR kernels are built from.

fastconv writes its innermost loops as LLVM IR (see :mod:`.microkernel` for why): accumulators
carried in vector registers by phi nodes, masked loads and stores for partial vectors, FMA.
This module holds what every such kernel needs, so that each kernel is only its arithmetic:

- :func:`vector_intrinsic`, a decorator that makes a Numba intrinsic of an ``emit`` function:
  it checks the argument types (float arrays of one dtype, integer offsets, flags), builds the
  signature, unpacks arrays to data pointers and hands ``emit`` a :class:`VectorCode` with the
  IR types of that dtype's vectors;
- :class:`loop`, ``for i in range(count)`` as a context manager that carries values (the
  accumulators) from one iteration to the next, as numba's ``cgutils.for_range`` does without
  carried values;
- :func:`over_vectors`, a loop over a run of elements in whole vectors then one masked vector;
- masked loads and stores, lane masks, guarded loads, FMA, the fused relu/relu6 selects.

Each kernel's docstring states its NumPy equivalent, and ``tests/test_ir.py`` checks every
kernel against it on sizes that leave partial vectors.

Examples
--------
A kernel that doubles ``n`` elements of ``x`` into ``out``, in vectors of 64 bytes (a sketch;
the real kernels live in :mod:`.microkernel`, :mod:`.winograd_transforms` and
:mod:`.window_reduce`):

>>> import numpy as np
>>> from numba import njit
>>> from fastconv.cpu.irtools import FLOATS, INDEX, over_vectors, vector_intrinsic
>>> @vector_intrinsic(64, FLOATS, FLOATS, INDEX)
... def double(code, x, out, n):
...     def step(b, offset, mask, values):
...         value = code.load(b.gep(x.data, [offset]), mask, builder=b)
...         code.store(b.fadd(value, value), b.gep(out.data, [offset]), mask, builder=b)
...         return []
...     over_vectors(code.builder, n, code.lanes, [], step)
>>> @njit
... def run(x):
...     out = np.empty_like(x)
...     double(x, out, x.size)
...     return out
>>> run(np.arange(5.0))
array([0., 2., 4., 6., 8.])
"""

from __future__ import annotations

import inspect
from typing import NamedTuple

import llvmlite.ir as ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# -- argument kinds of vector_intrinsic

#: A float32 or float64 array; every FLOATS argument of one call has the same dtype.
FLOATS = "floats"
#: Such an array, or the integer address of its first element (callers that choose between
#: two sources per block select plain integers, with no reference counting).
FLOATS_OR_ADDRESS = "floats or address"
#: An array of intp element offsets, or its address.
OFFSETS = "offsets"
#: An integer, passed as intp.
INDEX = "index"
#: A boolean, passed as an i1.
FLAG = "flag"
#: A float, converted to the arrays' dtype.
SCALAR = "scalar"
#: ``returns=DTYPE``: the intrinsic returns a float of the arrays' dtype.
DTYPE = "dtype"

_FLOAT_DTYPES = (types.float32, types.float64)


class Buffer(NamedTuple):
    """An array argument inside ``emit``: its data pointer and its element count (None when
    the caller passed an address)."""

    data: ir.Value
    size: ir.Value | None


def vector_lanes(dtype, vector_bytes):
    """Lanes of a ``vector_bytes`` vector of Numba float ``dtype`` (float32 or float64)."""
    return vector_bytes // (4 if dtype == types.float32 else 8)


class VectorCode:
    """What ``emit`` works with: the builder, and the IR types of one dtype's vectors.

    Attributes: ``builder``, ``context``, ``dtype`` (Numba float type), ``scalar`` and
    ``vector`` (IR types; ``lanes`` elements per vector), ``align`` (the element size: vector
    accesses are only element-aligned), ``intp`` (IR integer type of indices).
    """

    def __init__(self, context, builder, dtype, vector_bytes):
        self.context = context
        self.builder = builder
        self.dtype = dtype
        self.lanes = vector_lanes(dtype, vector_bytes)
        self.scalar = context.get_value_type(dtype)
        self.vector = ir.VectorType(self.scalar, self.lanes)
        self.align = 4 if dtype == types.float32 else 8
        self.intp = context.get_value_type(types.intp)

    def index(self, value):
        """An intp constant."""
        return ir.Constant(self.intp, value)

    def zeros(self, value_type=None):
        """The zero vector (or the zero of ``value_type``, a vector or scalar IR type)."""
        value_type = value_type or self.vector
        if isinstance(value_type, ir.VectorType):
            return ir.Constant(value_type, None)
        return ir.Constant(value_type, 0.0)

    def load(self, pointer, mask=None, value_type=None, builder=None):
        """Load a vector at element ``pointer``: every lane, or the lanes of ``mask`` (zeros
        elsewhere, the memory there never touched)."""
        b = builder or self.builder
        value_type = value_type or self.vector
        pointer = b.bitcast(pointer, value_type.as_pointer())
        if mask is None:
            return b.load(pointer, align=self.align)
        return masked_load(b, pointer, mask, value_type, self.align)

    def store(self, value, pointer, mask=None, builder=None):
        """Store vector ``value`` at element ``pointer``: every lane, or the lanes of ``mask``."""
        b = builder or self.builder
        pointer = b.bitcast(pointer, value.type.as_pointer())
        if mask is None:
            b.store(value, pointer, align=self.align)
        else:
            masked_store(b, value, pointer, mask, self.align)

    def fma(self, builder, a, b, c):
        """``a * b + c`` rounded once (``llvm.fma``), for scalars or vectors."""
        return builder.call(declare_fma(builder, a.type), [a, b, c])


def _unpack(code, kind, numba_type, value):
    context, builder = code.context, code.builder
    if kind in (FLOATS, FLOATS_OR_ADDRESS, OFFSETS) and isinstance(numba_type, types.Array):
        array = context.make_array(numba_type)(context, builder, value)
        # 1-D arrays (every kernel's, today) give their length, as the hand-written kernels
        # read it: nitems makes LLVM move the array struct differently around the call.
        size = (builder.extract_value(array.shape, 0) if numba_type.ndim == 1
                else array.nitems)
        return Buffer(array.data, size)
    if kind in (FLOATS_OR_ADDRESS, OFFSETS):  # an address
        element = code.intp if kind == OFFSETS else code.scalar
        return Buffer(builder.inttoptr(value, element.as_pointer()), None)
    if kind == FLAG and value.type != ir.IntType(1):
        return builder.trunc(value, ir.IntType(1))
    return value


def _signature(params, args, returns):
    """(dtype, signature) for argument types ``args``, or None when they do not fit."""
    if len(args) != len(params):
        return None
    dtypes = {a.dtype for kind, a in zip(params, args)
              if kind in (FLOATS, FLOATS_OR_ADDRESS) and isinstance(a, types.Array)}
    if len(dtypes) != 1 or next(iter(dtypes)) not in _FLOAT_DTYPES:
        return None
    (dtype,) = dtypes
    sig_args = []
    for kind, a in zip(params, args):
        if kind == FLOATS and not isinstance(a, types.Array):
            return None
        if kind in (FLOATS_OR_ADDRESS, OFFSETS):
            if isinstance(a, types.Integer):
                sig_args.append(types.intp)
                continue
            if not isinstance(a, types.Array) or (kind == OFFSETS and a.dtype != types.intp):
                return None
            sig_args.append(a)
        elif kind == FLOATS:
            sig_args.append(a)
        elif kind == INDEX:
            if not isinstance(a, types.Integer):
                return None
            sig_args.append(types.intp)
        elif kind == FLAG:
            sig_args.append(types.boolean)
        elif kind == SCALAR:
            sig_args.append(dtype)
        else:
            raise ValueError(f"unknown argument kind {kind!r}")
    result = dtype if returns == DTYPE else (returns or types.void)
    return dtype, result(*sig_args)


def vector_intrinsic(vector_bytes, *params, returns=None):
    """Make a Numba intrinsic of ``emit(code, *args)``, one argument per entry of ``params``.

    ``params`` are argument kinds (:data:`FLOATS`, :data:`FLOATS_OR_ADDRESS`, :data:`OFFSETS`,
    :data:`INDEX`, :data:`FLAG`, :data:`SCALAR`). Calls whose types do not fit (mixed float
    dtypes, a non-array where an array belongs) are not typed, so Numba reports them as a
    typing error at compile time. Inside ``emit``, array arguments are :class:`Buffer` values,
    flags i1 values, the rest IR values of the signature; ``code`` is a :class:`VectorCode` for
    the arrays' dtype and ``vector_bytes``. ``emit`` returns the result's IR value (``returns``:
    None for no result, :data:`DTYPE`, or a Numba type) or None.
    """
    def wrap(emit):
        def typer(typingctx, *args):
            fitted = _signature(params, args, returns)
            if fitted is None:
                return None
            dtype, sig = fitted

            def codegen(context, builder, signature, llvm_args):
                code = VectorCode(context, builder, dtype, vector_bytes)
                values = [_unpack(code, kind, t, v)
                          for kind, t, v in zip(params, signature.args, llvm_args)]
                result = emit(code, *values)
                return context.get_dummy_value() if result is None else result

            return sig, codegen

        typer.__name__ = typer.__qualname__ = emit.__name__
        typer.__doc__ = emit.__doc__
        # Numba folds call arguments by the typing function's signature, which cannot be
        # variadic: give it emit's parameter names (minus ``code``), positional only.
        names = list(inspect.signature(emit).parameters)[1:]
        if len(names) != len(params):
            raise TypeError(f"{emit.__name__} takes {len(names)} arguments after ``code``; "
                            f"{len(params)} kinds were given")
        typer.__signature__ = inspect.Signature(
            [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD)
             for name in ["typingctx", *names]])
        return intrinsic(typer)

    return wrap


class loop:  # noqa: N801 - used like a statement: ``with loop(...) as tap:``
    """``for index in range(count)`` carrying values from one iteration to the next.

    ::

        with loop(builder, n_taps, [zero] * 4, "tap") as tap:
            updated = [builder.fadd(acc, x) for acc in tap.values]   # tap.index is the index
            tap.carry(updated)                                       # values for the next one
        accumulators = tap.values                                    # after the loop

    The body is emitted once, between ``__enter__`` and ``__exit__``; ``values`` are phi nodes
    (the initial values, then what the previous iteration carried), and after the loop they are
    the final values (the initial ones when ``count <= 0``: the body never runs).
    """

    def __init__(self, builder, count, carried=(), name="loop"):
        self.builder = builder
        self.count = count
        self._initial = list(carried)
        self.name = name
        self._carried = [] if not self._initial else None

    def __enter__(self):
        b, name = self.builder, self.name
        before = b.block
        self._header = b.append_basic_block(f"{name}.header")
        body = b.append_basic_block(f"{name}.body")
        self._done = b.append_basic_block(f"{name}.done")
        b.branch(self._header)
        b.position_at_end(self._header)
        self.index = b.phi(self.count.type, name=f"{name}.i")
        self.index.add_incoming(ir.Constant(self.count.type, 0), before)
        self.values = []
        for value in self._initial:
            phi = b.phi(value.type)
            phi.add_incoming(value, before)
            self.values.append(phi)
        b.cbranch(b.icmp_signed("<", self.index, self.count), body, self._done)
        b.position_at_end(body)
        return self

    def carry(self, values):
        """Set the values the next iteration starts from (one per carried value)."""
        values = list(values)
        if len(values) != len(self.values):
            raise ValueError(f"loop {self.name!r} carries {len(self.values)} values, "
                             f"got {len(values)}")
        self._carried = values

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is not None:
            return False
        if self._carried is None:
            raise ValueError(f"loop {self.name!r} carries values: call carry() in its body")
        b = self.builder
        following = b.add(self.index, ir.Constant(self.count.type, 1))
        latch = b.block
        self.index.add_incoming(following, latch)
        for phi, value in zip(self.values, self._carried):
            phi.add_incoming(value, latch)
        b.branch(self._header)
        b.position_at_end(self._done)
        return False


def over_vectors(builder, count, lanes, carried, step):
    """Run ``step(builder, offset, mask, values) -> values`` over ``count`` elements in
    vectors of ``lanes``: whole vectors first (``mask`` None), then, if elements are left, once
    more with the mask of the rest. Returns the carried values.

    ``step`` is emitted twice (the whole-vector and the masked form), so it is a function.
    """
    lanes_c = ir.Constant(count.type, lanes)
    whole = builder.sdiv(count, lanes_c)
    with loop(builder, whole, carried, "vec") as vectors:
        vectors.carry(step(builder, builder.mul(vectors.index, lanes_c), None, vectors.values))
    carried = vectors.values
    offset = builder.mul(whole, lanes_c)
    rest = builder.sub(count, offset)
    before = builder.block
    with builder.if_then(builder.icmp_signed(">", rest, ir.Constant(count.type, 0))):
        tail_values = step(builder, offset, lanes_below(builder, rest, lanes), carried)
        tail_block = builder.block
    merged = []
    for value, tail_value in zip(carried, tail_values):
        phi = builder.phi(value.type)
        phi.add_incoming(value, before)
        phi.add_incoming(tail_value, tail_block)
        merged.append(phi)
    return merged


# -- single instructions and small patterns


def declare_fma(builder, value_type):
    """Declare ``llvm.fma`` for a float scalar or vector IR type and return it."""
    if isinstance(value_type, ir.VectorType):
        bits = 32 if isinstance(value_type.element, ir.FloatType) else 64
        name = f"llvm.fma.v{value_type.count}f{bits}"
    else:
        name = f"llvm.fma.f{32 if isinstance(value_type, ir.FloatType) else 64}"
    return cgutils.get_or_insert_function(builder.module,
                                          ir.FunctionType(value_type, [value_type] * 3), name)


def store_streaming(builder, value, pointer):
    """Store vector ``value`` at ``pointer`` bypassing the caches (``!nontemporal``:
    ``vmovntps``): for outputs too large to stay in cache, whose lines a plain store would
    first read from memory. ``pointer`` must be aligned to the vector's size or 64 bytes,
    whichever is less (LLVM splits a wider vector into 64-byte streaming stores). Stores made
    this way are weakly ordered: the writer calls :func:`store_fence` before others may read
    them."""
    target = builder.bitcast(pointer, value.type.as_pointer())
    size = value.type.count * _element_bits(value.type) // 8
    instruction = builder.store(value, target, align=min(size, 64))
    instruction.set_metadata("nontemporal", builder.module.add_metadata(
        [ir.Constant(ir.IntType(32), 1)]))


@intrinsic
def store_fence(typingctx):
    """``sfence``: streaming stores made so far become visible before any later store."""
    def codegen(context, builder, signature, args):
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse.sfence")
        builder.call(function, [])
        return context.get_dummy_value()

    return types.none(), codegen


def splat(builder, value, vector):
    """Broadcast scalar ``value`` to every lane of IR type ``vector``."""
    i32 = ir.IntType(32)
    undef = ir.Constant(vector, ir.Undefined)
    first = builder.insert_element(undef, value, ir.Constant(i32, 0))
    return builder.shuffle_vector(first, undef, ir.Constant(ir.VectorType(i32, vector.count),
                                                            [0] * vector.count))


def _element_bits(vector):
    return 32 if isinstance(vector.element, ir.FloatType) else 64


def masked_load(builder, pointer, mask, vector, align):
    """``llvm.masked.load`` of ``vector`` at ``pointer`` (zeros where ``mask`` is off)."""
    i32 = ir.IntType(32)
    function = cgutils.get_or_insert_function(
        builder.module,
        ir.FunctionType(vector, [pointer.type, i32, mask.type, vector]),
        f"llvm.masked.load.v{vector.count}f{_element_bits(vector)}.p0")
    return builder.call(function, [pointer, ir.Constant(i32, align), mask,
                                   ir.Constant(vector, None)])


def masked_store(builder, value, pointer, mask, align):
    """``llvm.masked.store`` of vector ``value`` at ``pointer``: only lanes where ``mask`` holds."""
    vector = value.type
    i32 = ir.IntType(32)
    mask_type = ir.VectorType(ir.IntType(1), vector.count)
    function = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [vector, pointer.type, i32, mask_type]),
        f"llvm.masked.store.v{vector.count}f{_element_bits(vector)}.p0")
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
            masked_store(builder, value, pointer, mask, align)


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
    """relu (``flags[0]``) or relu6 (``flags[1]``) of ``value`` (a vector or a scalar) as
    selects: ``v < 0`` is false for NaN, so NaN passes through as in ``tf.nn.relu``."""
    relu, relu6 = flags
    vector = isinstance(value.type, ir.VectorType)
    zero = ir.Constant(value.type, None if vector else 0.0)
    six = ir.Constant(value.type, [6.0] * value.type.count if vector else 6.0)
    clipped = builder.select(builder.fcmp_ordered("<", value, zero), zero, value)
    value = builder.select(relu, clipped, value)
    capped = builder.select(builder.fcmp_ordered(">", value, six), six, value)
    return builder.select(relu6, capped, value)


def keep_max_nan(builder, current, value):
    """PyTorch's CPU max: ``value`` when it is greater or NaN, else ``current`` (so a NaN
    wins and stays)."""
    keep = builder.and_(builder.fcmp_unordered("<=", value, current),
                        builder.fcmp_ordered("ord", value, value))
    return builder.select(keep, current, value)


def keep_max(builder, current, value):
    """``value > current ? value : current``: NaN is never greater, so NaN never wins (TF's
    CPU max pooling)."""
    return builder.select(builder.fcmp_ordered(">", value, current), value, current)
