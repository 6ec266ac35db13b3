"""Argument checks shared by every public op: array conversion, dtypes, ranks, activations.

Everything here runs before any kernel, so bad input fails with a ValueError/TypeError that
names the argument, never inside compiled code.
"""

from __future__ import annotations

import numpy as np

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# The activation table lives in fastconv.activations (names, kernel codes, NumPy forms).
from .activations import resolve as resolve_activation  # noqa: E402


def is_device_array(value):
    """True for arrays living on a CUDA device (``__cuda_array_interface__``).

    The CUDA simulator's device arrays have no such attribute; their type's module names them.
    """
    return (hasattr(value, "__cuda_array_interface__")
            or type(value).__module__.startswith("numba.cuda.simulator"))


def is_dask_array(value):
    """True for dask arrays, checked without importing dask."""
    return (type(value).__module__.startswith("dask.") and hasattr(value, "chunks")
            and hasattr(value, "dask"))


def array_dtype(value):
    """Return the NumPy dtype of a host or device array without copying it."""
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return None
    try:
        return np.dtype(dtype)
    except TypeError:
        # torch.dtype and similar: map through the name ("torch.float32" -> float32).
        return np.dtype(str(dtype).rsplit(".", 1)[-1])


def as_host_array(value, name):
    """Return ``value`` as a NumPy array (no copy when it already is one).

    Accepts NumPy arrays of any strides (read-only too), TF tensors, nested lists and scalars.
    Strings, objects and ragged lists raise TypeError naming the argument.
    """
    if value is None:
        raise TypeError(f"{name} must be an array, got None")
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        value = value.detach()  # an nn.Parameter / tensor that requires grad refuses numpy()
    if is_device_array(value) and not isinstance(value, np.ndarray):
        copy_to_host = getattr(value, "copy_to_host", None) or getattr(value, "get", None)
        if copy_to_host is not None:
            return np.asarray(copy_to_host())
        cpu = getattr(value, "cpu", None)
        if cpu is not None:
            return np.asarray(cpu().numpy())
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name} must be array-like (a NumPy array, tensor or nested list of "
                        f"numbers): {exc}") from None
    return array


def check_float_dtype(dtype, name):
    """Raise TypeError unless ``dtype`` is float32 or float64."""
    if dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {dtype}"
                        + (" (cast it with .astype(np.float32))" if dtype is not None and
                           dtype.kind in "iub" else "")
                        + "; float16 and bfloat16 run as float32")


def check_same_dtype(dtype_a, name_a, dtype_b, name_b):
    """Raise TypeError when two arguments have different dtypes (TF refuses mixing too)."""
    if dtype_a != dtype_b:
        raise TypeError(f"{name_b} has dtype {dtype_b} but {name_a} has dtype {dtype_a}; "
                        f"they must match")


def check_rank(shape, rank, name, layout_hint):
    """Raise ValueError unless ``shape`` has exactly ``rank`` dimensions."""
    if len(shape) != rank:
        raise ValueError(f"{name} must be {rank}-D ({layout_hint}), got shape {tuple(shape)}")


def activation_code(activation, alpha=None):
    """Return the kernel code of ``activation`` or raise ValueError listing the choices
    (:func:`fastconv.activations.resolve` gives the whole spec, unfused parts included)."""
    return resolve_activation(activation, alpha).code


def check_device(device):
    """Return the normalised device request: None, ``"cpu"`` or ``"cuda"``."""
    if device is None:
        return None
    if not isinstance(device, str):
        raise TypeError(f"device must be None, 'cpu' or 'cuda', got {type(device).__name__}")
    key = device.lower()
    if key.startswith("gpu") or key.startswith("cuda"):
        return "cuda"
    if key == "cpu":
        return "cpu"
    raise ValueError(f"device must be None, 'cpu' or 'cuda', got {device!r}")
