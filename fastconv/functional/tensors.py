"""What :mod:`fastconv.functional` takes and gives back.

Inputs are NumPy arrays, torch tensors (CPU or CUDA) or CUDA device arrays (numba, CuPy),
batched ``(N, C, *spatial)`` or unbatched ``(C, *spatial)`` as PyTorch accepts them. CPU
tensors are read zero-copy (``.detach().numpy()``) and results come back as tensors sharing
the result's memory; CUDA tensors stay on the GPU (``__cuda_array_interface__``). A 4-D or 5-D
input laid out channels-last in memory (PyTorch's ``channels_last`` format, or a NumPy view
of an NHWC array) runs the channels-last kernels on it in place, and the result has the same
memory format, as PyTorch's would. Importing this module imports neither torch nor CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import api, dispatch
from ..validation import array_dtype, is_device_array
from .errors import FunctionalError, FunctionalTypeError


def is_torch(value):
    """True for torch tensors, checked without importing torch."""
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def kind_of(value):
    """"torch", "numpy", "cupy", "numba" (any other CUDA array) or None for anything else."""
    if is_torch(value):
        return "torch"
    if isinstance(value, np.ndarray):
        return "numpy"
    if type(value).__module__.startswith("cupy"):
        return "cupy"
    if is_device_array(value):
        return "numba"
    return None


def _channels_last_view(x, kind):
    """``x`` (N, C, *spatial) viewed as (N, *spatial, C) when that view is C-contiguous and
    ``x`` itself is not (channels-last memory), else None."""
    if len(x.shape) < 4:
        return None
    if kind == "numpy":
        if x.flags.c_contiguous:
            return None
        view = np.moveaxis(x, 1, -1)
        return view if view.flags.c_contiguous else None
    if kind == "torch":
        if x.is_contiguous():
            return None
        view = x.movedim(1, -1)
        return view if view.is_contiguous() else None
    return None


@dataclass
class Call:
    """One call's input as the kernels take it, and how results go back to the caller."""

    x: object  # (N, C, *spatial) when channels_first, else (N, *spatial, C)
    channels_first: bool
    device: str
    batched: bool
    to_torch: bool  # a CPU tensor came in: results go back as CPU tensors
    dtype: np.dtype
    n_spatial: int
    batch: int = 0
    channels: int = 0
    spatial: tuple = ()

    def __post_init__(self):
        shape = tuple(int(v) for v in self.x.shape)
        self.batch = shape[0]
        self.channels, self.spatial = ((shape[1], shape[2:]) if self.channels_first
                                       else (shape[-1], shape[1:-1]))

    def shape_text(self):
        """The input's shape as the caller gave it (PyTorch's order), for messages."""
        shape = (self.batch, self.channels) + self.spatial
        return list(shape if self.batched else shape[1:])

    def finish(self, out):
        """A result in the call's layout, given back in the caller's form."""
        if not self.channels_first:
            out = out.movedim(-1, 1) if is_torch(out) else np.moveaxis(out, -1, 1)
        if not self.batched:
            out = out[0]
        if self.to_torch:
            import torch

            out = torch.from_numpy(np.asarray(out))
        return out


def begin(input, n_spatial, name):
    """The :class:`Call` of ``input`` to op ``name`` of ``n_spatial`` spatial dims; raises
    FunctionalTypeError/FunctionalError as PyTorch words it for a bad input."""
    kind = kind_of(input)
    if kind is None:
        raise FunctionalTypeError(f"{name}(): input must be a torch tensor or an array (NumPy, "
                                  f"CuPy, numba), got {type(input).__name__}")
    to_torch = False
    if kind == "torch":
        input = input.detach()
        if input.device.type == "cpu":
            input, kind, to_torch = input.numpy(), "numpy", True
        elif input.device.type != "cuda":
            raise FunctionalTypeError(f"{name}(): tensors on {input.device} are not supported "
                                      f"(CPU and CUDA are)")
    dtype = array_dtype(input)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise FunctionalTypeError(f"{name}(): input must be float32 or float64, got {dtype}")
    rank = len(input.shape)
    if rank not in (n_spatial + 1, n_spatial + 2):
        raise FunctionalError(f"Expected {n_spatial + 1}D (unbatched) or {n_spatial + 2}D "
                              f"(batched) input to {name}, but got input of size: "
                              f"{list(input.shape)}")
    device = "cpu" if kind == "numpy" else "cuda"
    if device == "cuda":  # strided numba device arrays are copied on the device to reshape
        input = api._data(input, "input", device)
    batched = rank == n_spatial + 2
    if not batched:
        input = input.reshape((1,) + tuple(input.shape))
    view = _channels_last_view(input, kind)
    channels_first = view is None
    x = input if channels_first else view
    call = Call(x, channels_first, device, batched, to_torch, dtype, n_spatial)
    if 0 in call.spatial:
        raise FunctionalError(f"{name}(): Expected input to have non-zero size for non-batch "
                              f"dimensions, but got input of size: {call.shape_text()}")
    return call


def parameter(value, name, call, op):
    """A weight, bias or index argument of ``call``: an array on the call's device (host
    arrays are copied to the GPU by the CUDA backend), float arguments in the input's dtype."""
    kind = kind_of(value)
    if kind is None:
        raise FunctionalTypeError(f"{op}(): {name} must be a torch tensor or an array, got "
                                  f"{type(value).__name__}")
    if kind == "torch":
        value = value.detach()
        if value.device.type == "cpu":
            value = value.numpy()
    if name != "indices" and array_dtype(value) != call.dtype:
        raise FunctionalTypeError(f"{op}(): Input type ({call.dtype}) and {name} type "
                                  f"({array_dtype(value)}) should be the same")
    if call.device == "cpu" and not isinstance(value, np.ndarray):
        raise FunctionalTypeError(f"{op}(): {name} is on the GPU but the input is not")
    return value


def permute(value, axes):
    """``value`` with its axes permuted, on the device it is on (a small weight: numba device
    arrays, which cannot permute, make the trip through the host)."""
    kind = kind_of(value)
    if kind == "numpy":
        return np.transpose(value, axes)
    if kind == "torch":
        return value.permute(*axes)
    if kind == "cupy":
        import cupy

        return cupy.transpose(value, axes)
    from numba import cuda

    return cuda.to_device(np.ascontiguousarray(np.transpose(value.copy_to_host(), axes)))


def take_channels(value, start, stop, channels_first):
    """The channels ``start:stop`` of a data-layout array (a view where the kind allows)."""
    if channels_first:
        part = value[:, start:stop]
    else:
        part = value[..., start:stop]
    return dispatch.prepare_array("cuda", part) if kind_of(part) == "numba" else part


def concatenate_channels(parts, channels_first):
    """Join data-layout arrays along the channel axis, on their device."""
    axis = 1 if channels_first else len(parts[0].shape) - 1
    kind = kind_of(parts[0])
    if kind == "numpy":
        return np.concatenate(parts, axis=axis)
    if kind == "torch":
        import torch

        return torch.cat(parts, dim=axis)
    if kind == "cupy":
        import cupy

        return cupy.concatenate(parts, axis=axis)
    from numba import cuda

    return cuda.to_device(np.concatenate([p.copy_to_host() for p in parts], axis=axis))


def flat_index_range(indices):
    """(min, max) of a non-empty index array on any device (numba device arrays, which have no
    reductions, are copied back: indices are checked before anything is written)."""
    if kind_of(indices) == "numba":
        indices = indices.copy_to_host()
    return int(indices.min()), int(indices.max())
