"""Launch plumbing for the CUDA kernels: availability, array interop, grid sizes.

Array interop follows the CUDA Array Interface: any object exposing
``__cuda_array_interface__`` (numba device arrays, CuPy arrays, PyTorch CUDA tensors) is viewed
as a numba device array without a copy, and results go back as the caller's kind of array.
Host (NumPy) arguments are copied to the device once per call.
"""

from __future__ import annotations

import numpy as np

_AVAILABLE = False  # set once a GPU (or the simulator) answered; never reset


def cuda_unavailable_reason():
    """Return None when numba.cuda can run kernels here, else a sentence saying why not.

    Every way CUDA can be missing gives a sentence, never an exception: no ``numba-cuda``
    (ImportError), no CUDA runtime library (numba-cuda's ``DynamicLibNotFoundError``, a
    RuntimeError, raised on import or on first use), no driver, no device.
    """
    global _AVAILABLE
    if _AVAILABLE:
        return None
    try:
        from numba import cuda
    except ImportError as exc:  # numba-cuda missing (or too old a numba)
        return (f"numba.cuda could not be imported ({exc}); install the CUDA extra with "
                f"`pip install 'fastconv[cuda]'`")
    except Exception as exc:  # a CUDA library numba-cuda loads on import is missing
        return f"numba.cuda failed to import ({_describe(exc)})"
    try:
        usable = cuda.is_available()
    except Exception as exc:  # no libcudart / libnvrtc: raised instead of answering False
        return f"numba.cuda cannot load the CUDA libraries ({_describe(exc)})"
    if not usable:
        return f"numba.cuda found no usable GPU ({_driver_error(cuda)})"
    from . import backend

    if backend.IMPORT_ERROR is not None:  # the kernel modules need what this CUDA lacks
        return f"the CUDA kernels failed to import ({_describe(backend.IMPORT_ERROR)})"
    _AVAILABLE = True
    return None


def _describe(exc):
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _driver_error(cuda):
    try:
        cuda.current_context()
    except Exception as exc:  # the driver's own words: no library, no device, ...
        return " ".join(str(exc).split()) or type(exc).__name__
    return "numba.cuda.is_available() is False"


def require_cuda():
    """Raise RuntimeError, saying why, unless the CUDA kernels can run here."""
    reason = cuda_unavailable_reason()
    if reason is not None:
        raise RuntimeError(
            f"device='cuda' was requested but the CUDA backend cannot run: {reason}. Run on the "
            f"CPU instead (device='cpu', or pass NumPy arrays), or set NUMBA_ENABLE_CUDASIM=1 "
            f"before numba is imported to use the (slow) CUDA simulator.")


# ----------------------------------------------------------------------------- array kinds

def array_kind(value):
    """Return ``"numba"``, ``"cupy"``, ``"torch"``, ``"cai"`` (another GPU array) or ``"host"``.

    Decided from the type's module, so neither CuPy nor torch is imported to ask.
    The simulator's device arrays have no ``__cuda_array_interface__`` but are ``"numba"``.
    """
    module = type(value).__module__
    if module.startswith("numba.cuda") or module.startswith("numba_cuda"):
        return "numba"
    if module.startswith("cupy"):
        return "cupy"
    if module.startswith("torch"):
        return "torch" if hasattr(value, "__cuda_array_interface__") else "host"
    if hasattr(value, "__cuda_array_interface__"):
        return "cai"
    return "host"


def to_device(value, dtype=None):
    """Return ``value`` as a numba device array: a zero-copy view of a GPU array, or a copy
    of a host array (made C-contiguous with ``dtype`` on the way)."""
    from numba import cuda

    kind = array_kind(value)
    if kind == "numba":
        return value
    if kind == "torch":
        return cuda.as_cuda_array(value.detach())  # a tensor that requires grad has no CAI
    if kind != "host":
        return cuda.as_cuda_array(value)
    return cuda.to_device(np.ascontiguousarray(value, dtype=dtype))


def device_contiguous(value):
    """Return a C-contiguous version of a GPU array, copying on the device only if needed.

    The API layer reshapes arrays, which a strided numba device array cannot do in place; CuPy
    and torch copy on their own when they reshape, so they pass through unchanged.
    """
    if array_kind(value) != "numba" or value.is_c_contiguous():
        return value
    from numba import cuda

    out = cuda.device_array(value.shape, value.dtype)
    out[...] = value  # numba's strided assignment kernel, on the device
    return out


def result_like(out, template):
    """Return the device result ``out`` as the kind of array ``template`` is.

    NumPy in -> NumPy out (one copy back); CuPy in -> CuPy out and torch in -> torch out (both
    zero-copy views that keep ``out`` alive); any other GPU array -> the numba device array.
    """
    kind = array_kind(template)
    if kind == "host":
        return out.copy_to_host()
    if kind == "cupy":
        import cupy

        return cupy.asarray(out)
    if kind == "torch":
        import torch

        return torch.as_tensor(out, device=template.device)
    return out


def empty(shape, dtype):
    """An uninitialised device array."""
    from numba import cuda

    return cuda.device_array(tuple(shape), dtype=dtype)


def output(shape, dtype, template):
    """Allocate an op's result for an input ``template``: return ``(device_array, finish)``.

    The kernel writes ``device_array``; ``finish()`` returns the result as the caller's kind
    of array. CuPy and torch results are allocated by CuPy / torch themselves (their memory
    pools make this cheaper than a fresh ``cudaMalloc``) and handed back as they are; a host
    input gets a NumPy copy of a numba device array.
    """
    shape = tuple(int(size) for size in shape)
    kind = array_kind(template)
    if kind == "torch":
        import torch

        tensor = torch.empty(shape, dtype=getattr(torch, np.dtype(dtype).name),
                             device=template.device)
        return to_device(tensor), lambda: tensor
    if kind == "cupy":
        import cupy

        with template.device:
            array = cupy.empty(shape, dtype=dtype)
        return to_device(array), lambda: array
    out = empty(shape, dtype)
    if kind == "host":
        return out, out.copy_to_host
    return out, lambda: out


# ----------------------------------------------------------------------------- launch shapes

def device_key():
    """Identify the current GPU for kernel caches: its id and compute capability."""
    from numba import cuda

    device = cuda.get_current_device()
    return getattr(device, "id", 0), tuple(device.compute_capability)


def numba_float(dtype):
    """The numba scalar type of float32 / float64."""
    from numba import float32, float64

    return float32 if np.dtype(dtype) == np.float32 else float64
