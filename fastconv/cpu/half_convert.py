"""float16 / bfloat16 <-> float32 conversions at memory speed (NumPy's float16 casts run
element by element in software: 15-20 ms for 6.4 M values here, longer than the layer).

Parallel loops on the raw bits: widening is exact; narrowing rounds to nearest, ties to even,
as NumPy's ``astype`` and ml_dtypes do (overflow to inf, subnormals kept, NaN stays NaN; a
signalling NaN may come back quiet). float16 uses the CPU's conversion instructions (F16C:
every x86 CPU since 2012, LLVM vectorises ``fpext``/``fptrunc`` of ``half`` into them) where
the host has them, bit manipulation otherwise.
"""

import llvmlite.binding as llvm
import llvmlite.ir as ir
import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

#: Whether the host converts float16 in hardware (without F16C, LLVM would call compiler-rt
#: helpers that Numba's JIT does not link).
HAS_F16C = bool(llvm.get_host_cpu_features().get("f16c", False))


@intrinsic
def _f16_bits_to_f32_bits_hw(typingctx, bits):
    """float32 bits of the float16 with ``bits`` (uint16 -> uint32), one ``fpext``."""
    if bits != types.uint16:
        return None

    def codegen(context, builder, signature, args):
        wide = builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())
        return builder.bitcast(wide, ir.IntType(32))

    return types.uint32(types.uint16), codegen


@intrinsic
def _f32_bits_to_f16_bits_hw(typingctx, bits):
    """float16 bits of the float32 with ``bits`` rounded to nearest even (uint32 -> uint16)."""
    if bits != types.uint32:
        return None

    def codegen(context, builder, signature, args):
        narrow = builder.fptrunc(builder.bitcast(args[0], ir.FloatType()), ir.HalfType())
        return builder.bitcast(narrow, ir.IntType(16))

    return types.uint16(types.uint32), codegen


@njit(inline="always", cache=True)
def _f16_to_f32_bits(h):
    sign = np.uint32(h & 0x8000) << 16
    exp = (h >> 10) & 0x1F
    mant = np.uint32(h & 0x3FF)
    if exp == 0x1F:  # inf / NaN
        return sign | np.uint32(0x7F800000) | (mant << 13)
    if exp == 0:
        if mant == 0:
            return sign
        e = np.int32(-14)  # subnormal: normalise
        while (mant & 0x400) == 0:
            mant <<= 1
            e -= 1
        mant &= 0x3FF
        return sign | (np.uint32(e + 127) << 23) | (mant << 13)
    return sign | (np.uint32(exp - 15 + 127) << 23) | (mant << 13)


@njit(inline="always", cache=True)
def _f32_to_f16_bits(u):
    sign = (u >> 16) & 0x8000
    exp = np.int32((u >> 23) & 0xFF)
    mant = u & 0x7FFFFF
    if exp == 0xFF:  # inf / NaN (quiet)
        return np.uint16(sign | 0x7C00 | (0x200 if mant else 0) | (mant >> 13))
    e = exp - 127 + 15
    if e >= 0x1F:
        return np.uint16(sign | 0x7C00)
    if e <= 0:
        if e < -10:
            return np.uint16(sign)
        mant |= 0x800000
        shift = np.uint32(14 - e)
        half = mant >> shift
        rem = mant & ((np.uint32(1) << shift) - 1)
        halfway = np.uint32(1) << (shift - 1)
        if rem > halfway or (rem == halfway and (half & 1)):
            half += 1
        return np.uint16(sign | half)
    half = (np.uint32(e) << 10) | (mant >> 13)
    rem = mant & 0x1FFF
    if rem > 0x1000 or (rem == 0x1000 and (half & 1)):
        half += 1  # a carry into the exponent is right (up to inf)
    return np.uint16(sign | half)


@njit(cache=True)
def _f16_table():
    table = np.empty(65536, np.uint32)
    for h in range(65536):
        table[h] = _f16_to_f32_bits(np.uint16(h))
    return table


@njit(parallel=True, cache=True, nogil=True)
def widen_f16(bits, out, table):
    """A gather from the 256 KiB table of all 65536 values (cache-resident; the subnormal
    branch of the bit form would keep the loop from vectorising)."""
    for i in prange(bits.size):
        out[i] = table[bits[i]]


@intrinsic
def float_from_bits(typingctx, bits):
    """The float32 whose bits are ``bits`` (uint32)."""
    if bits != types.uint32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


@intrinsic
def bits_from_float(typingctx, value):
    """The bits (uint32) of the float32 ``value``."""
    if value != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


# Scalar conversions for kernels that read and write half precision directly (the loops
# around them vectorise): bits (uint16) <-> float32 values.

@njit(inline="always", cache=True)
def bf16_load(bits):
    return float_from_bits(np.uint32(np.uint32(bits) << 16))


@njit(inline="always", cache=True)
def bf16_store(value):
    u = bits_from_float(value)
    if (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):  # NaN: keep it quiet
        return np.uint16((u >> np.uint32(16)) | np.uint32(0x40))
    return np.uint16((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
                     >> np.uint32(16))


@njit(inline="always", cache=True)
def f16_load_hw(bits):
    return float_from_bits(_f16_bits_to_f32_bits_hw(bits))


@njit(inline="always", cache=True)
def f16_store_hw(value):
    return _f32_bits_to_f16_bits_hw(bits_from_float(value))


@njit(inline="always", cache=True)
def f16_load_soft(bits):
    return float_from_bits(np.uint32(_f16_to_f32_bits(bits)))


@njit(inline="always", cache=True)
def f16_store_soft(value):
    return _f32_to_f16_bits(bits_from_float(value))


def scalar_converters(dtype_name):
    """``(load, store)`` for ``dtype_name`` ("float16" or "bfloat16"): inlinable njit
    functions between its bits (uint16) and float32 values."""
    if dtype_name != "float16":
        return bf16_load, bf16_store
    return (f16_load_hw, f16_store_hw) if HAS_F16C else (f16_load_soft, f16_store_soft)


_TABLE = []


@njit(parallel=True, cache=True, nogil=True)
def widen_f16_hw(bits, out):
    for i in prange(bits.size):
        out[i] = _f16_bits_to_f32_bits_hw(bits[i])


@njit(parallel=True, cache=True, nogil=True)
def narrow_f16_hw(bits, out):
    for i in prange(bits.size):
        out[i] = _f32_bits_to_f16_bits_hw(bits[i])


@njit(parallel=True, cache=True, nogil=True)
def narrow_f16(bits, out):
    for i in prange(bits.size):
        out[i] = _f32_to_f16_bits(bits[i])


@njit(parallel=True, cache=True, nogil=True)
def widen_bf16(bits, out):
    for i in prange(bits.size):
        out[i] = np.uint32(bits[i]) << 16


@njit(parallel=True, cache=True, nogil=True)
def narrow_bf16(bits, out):
    for i in prange(bits.size):
        u = bits[i]
        if (u & 0x7FFFFFFF) > 0x7F800000:  # NaN: keep it quiet
            out[i] = np.uint16((u >> 16) | 0x40)
        else:
            out[i] = np.uint16((u + 0x7FFF + ((u >> 16) & 1)) >> 16)


def widen(array, out=None):
    """float16 or bfloat16 NumPy ``array`` as float32: a new C-contiguous array, or written
    into ``out`` (C-contiguous, same shape)."""
    bits = np.ascontiguousarray(array).view(np.uint16).reshape(-1)
    if out is None:
        out = np.empty(array.shape, np.float32)
    wide = out.reshape(-1).view(np.uint32)
    if array.dtype == np.float16 and HAS_F16C:
        widen_f16_hw(bits, wide)
    elif array.dtype == np.float16:
        if not _TABLE:
            _TABLE.append(_f16_table())
        widen_f16(bits, wide, _TABLE[0])
    else:
        widen_bf16(bits, wide)
    return out


def narrow(array, dtype, out=None):
    """float32 NumPy ``array`` rounded to ``dtype`` (float16 or bfloat16): a new array, or
    written into ``out`` (C-contiguous, same shape)."""
    bits = np.ascontiguousarray(array, np.float32).view(np.uint32).reshape(-1)
    if out is None:
        out = np.empty(array.shape, dtype)
    if np.dtype(dtype) != np.float16:
        kernel = narrow_bf16
    else:
        kernel = narrow_f16_hw if HAS_F16C else narrow_f16
    kernel(bits, out.reshape(-1).view(np.uint16))
    return out
