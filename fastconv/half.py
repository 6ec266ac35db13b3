"""Half precision (float16 and bfloat16) for every op: widened to float32, rounded back once.

TF's oneDNN kernels accumulate half-precision convolutions and averages in float32 and round
the result once; max pooling and padding select values, which a float32 round trip keeps
exactly. :func:`widening` wraps a public op so that half-precision arrays (NumPy float16,
``ml_dtypes.bfloat16`` as TF and JAX use it, torch float16 tensors) run the float32 kernels
and the result comes back in the input's dtype (indices, e.g. ``max_pool_with_argmax``'s,
unchanged). Mixing a half-precision argument with another dtype raises TypeError, as TF does.

Ops whose images are independent (forward convolutions, pooling, morphology: ``batched``) run
a large NumPy input batch chunk by batch chunk: each chunk is widened into one float32 buffer
of about ``config.CHUNK_BYTES`` (cache-resident), run, and its result rounded straight
into the half-precision output, so the float32 copies never travel to memory and the call
moves half the bytes a float32 one does. Each image sees the same float32 kernels either way.

Imports nothing but NumPy; ``ml_dtypes`` is only needed by callers that hold bfloat16 arrays.

Examples
--------
>>> import numpy as np, fastconv
>>> x = np.ones((1, 4, 4, 1), np.float16)
>>> y = fastconv.conv2d(x, np.ones((3, 3, 1, 2), np.float16), 1, "SAME")
>>> y.dtype, y[0, 1, 1]
(dtype('float16'), array([9., 9.], dtype=float16))
"""

from __future__ import annotations

import functools
import inspect

import numpy as np

from . import batching, config, dispatch
from .validation import as_host_array, is_dask_array, is_device_array

HALF = ("float16", "bfloat16")


def _dtype_name(value):
    if isinstance(value, type):  # np.int32 passed as a dtype argument, not an array
        return None
    dtype = getattr(value, "dtype", None)
    if dtype is None or not hasattr(value, "shape"):
        return None
    if isinstance(dtype, np.dtype) and dtype.char in _PLAIN_CHARS:  # the per-call fast path
        return _PLAIN_CHARS[dtype.char]
    return str(getattr(dtype, "name", dtype)).rsplit(".", 1)[-1]


#: dtype characters of the common dtypes, named without asking NumPy (``dtype.name`` costs
#: microseconds a call).
_PLAIN_CHARS = {"f": "float32", "d": "float64", "e": "float16", "i": "int32", "l": "int64",
                "q": "int64"}


def _widen(value):
    """A float32 copy of a half-precision array, of the same kind where that is cheap."""
    if isinstance(value, np.ndarray):
        from .cpu.half_convert import widen  # parallel, bit for bit NumPy's cast

        return widen(value)
    if is_dask_array(value):  # lazily
        return value.astype(np.float32)
    if type(value).__module__.startswith("torch"):
        return value.float()
    if is_device_array(value):
        from . import dispatch

        return dispatch.to_device_like(as_host_array(value, "array").astype(np.float32), value)
    return np.asarray(value).astype(np.float32)


def _narrow(result, like):
    """``result`` (float32) in the dtype and kind of ``like``; integer arrays unchanged."""
    if isinstance(result, tuple):
        return type(result)(*(_narrow(part, like) for part in result)) \
            if hasattr(result, "_fields") else tuple(_narrow(part, like) for part in result)
    if result is None or _dtype_name(result) not in ("float32",):
        return result
    if type(result).__module__.startswith("torch"):
        return result.to(like.dtype)
    if isinstance(result, np.ndarray):
        from .cpu.half_convert import narrow  # round to nearest even, as NumPy's cast

        return narrow(result, like.dtype)
    if is_dask_array(result):
        return result.astype(like.dtype)
    if is_device_array(result):
        from . import dispatch

        return dispatch.to_device_like(as_host_array(result, "result").astype(like.dtype), like)
    return result


def _chunk_images(first_parameter, bound, like):
    """Images per chunk when a call ``bound`` (its input named ``first_parameter``) should run
    in batch chunks, else 0."""
    x = bound.get(first_parameter)
    if (x is not like or not isinstance(x, np.ndarray) or x.ndim < 3
            or bound.get("device") not in (None, "cpu")
            or bound.get("include_batch_in_index")):  # indices counted over the batch
        return 0
    return batching.images_per_chunk(x.shape[0], 4 * (x.size // max(x.shape[0], 1)),
                                     config.CHUNK_BYTES)


def _in_chunks(op, args, kwargs, x, images):
    """``op`` on ``x`` (its first argument, half precision) ``images`` images at a time, each
    chunk widened into one reused float32 buffer; the other arguments are float32 already."""
    from .cpu.half_convert import narrow, widen

    buffer = np.empty((images, *x.shape[1:]), np.float32)

    def run(start, stop):
        return op(widen(x[start:stop], buffer[:stop - start]), *args, **kwargs)

    def store(part, out):
        if out is None:
            return x.dtype if part.dtype == np.float32 else part.dtype
        if part.dtype == np.float32:
            narrow(part, x.dtype, out)
        else:
            out[...] = part

    return batching.run_in_chunks(x.shape[0], images, run, store)


def _native_pool(op, args, kwargs, x):
    """``op(x, ...)`` by the pooling kernels that read half precision (``cpu.pool_half``:
    windowed max and average pooling, channels-last global pooling),
    or None where they do not apply. The call is validated and normalised as a float32 call
    of ``x``'s shape (a zero-strided stand-in, no memory), and its problem run on ``x``."""
    standin = np.broadcast_to(np.zeros((), np.float32), x.shape)
    with dispatch.capture_problems() as seen:
        shaped = op(standin, *args, **kwargs)
    if len(seen) != 1 or not isinstance(shaped, np.ndarray):
        return None
    (family, device, problem), = seen
    from .cpu import pool_half

    if family not in ("max_pool", "avg_pool", "global_pool") or device != "cpu" or \
            not pool_half.applies(problem, x.dtype) or 0 in problem.out_shape or x.size == 0:
        return None
    run = pool_half.run_global if family == "global_pool" else pool_half.run
    return run(problem, x.reshape(problem.x.shape)).reshape(shaped.shape)


def widening(op, batched=False, native_pool=False):
    """``op`` that takes float16/bfloat16 arrays: they run as float32, the result is rounded
    back to their dtype once (``batched``: ``op``'s images are independent, so a large input
    runs in cache-sized batch chunks; ``native_pool``: ``op`` is a max or average pooling,
    run by kernels that read half precision where they apply)."""
    signature = inspect.signature(op)  # once: it costs microseconds a call
    first_parameter = next(iter(signature.parameters))

    @functools.wraps(op)
    def wrapped(*args, **kwargs):
        halves = [v for v in (*args, *kwargs.values())
                  if getattr(getattr(v, "dtype", None), "itemsize", 0) == 2
                  and _dtype_name(v) in HALF]
        if not halves:
            return op(*args, **kwargs)
        like = halves[0]
        name = _dtype_name(like)
        bound = signature.bind_partial(*args, **kwargs).arguments
        first = next(key for key, value in bound.items() if value is like)
        for key, value in bound.items():
            other = _dtype_name(value)
            if other is not None and other != name and (other in HALF
                                                        or np.dtype(other).kind == "f"):
                raise TypeError(f"{key} has dtype {other} but {first} has dtype {name}; they "
                                f"must match")
        if native_pool and args and args[0] is like and isinstance(like, np.ndarray) \
                and bound.get("device") in (None, "cpu"):
            pooled = _native_pool(op, args[1:], kwargs, like)
            if pooled is not None:
                return pooled
        images = _chunk_images(first_parameter, bound, like) if batched else 0
        if images and args:
            rest = [_widen(v) if _dtype_name(v) in HALF else v for v in args[1:]]
            kwargs = {k: _widen(v) if _dtype_name(v) in HALF else v for k, v in kwargs.items()}
            return _in_chunks(op, rest, kwargs, args[0], images)
        args = [_widen(v) if _dtype_name(v) in HALF else v for v in args]
        kwargs = {k: _widen(v) if _dtype_name(v) in HALF else v for k, v in kwargs.items()}
        return _narrow(op(*args, **kwargs), like)

    return wrapped
