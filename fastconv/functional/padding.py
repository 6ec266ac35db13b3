"""``pad`` as ``torch.nn.functional.pad``: constant, reflect, replicate and circular modes.

PyTorch lists the pads from the last dim backwards, ``(left, right, top, bottom, ...)``;
negative pads crop. Crops are views taken first (as PyTorch's result shows: a circular pad
wraps the cropped input), then the padding is one gather on the array's device.
"""

from __future__ import annotations

import math

from .. import api, dispatch
from ..problems import ModePadProblem
from ..shapes import as_int
from ..validation import array_dtype
from . import tensors
from .errors import FunctionalError, FunctionalTypeError, torch_errors

MODES = ("constant", "reflect", "replicate", "circular")


@torch_errors
def pad(input, pad, mode="constant", value=None):
    """Pad ``input``, as ``torch.nn.functional.pad``.

    Parameters
    ----------
    input : ndarray or torch.Tensor
        float32 or float64, CPU or CUDA. Constant padding takes any rank up to 5; the other
        modes pad the last 1, 2 or 3 dims of a 2-3, 3-4 or 4-5-D input, as PyTorch.
    pad : sequence of ints, even length
        ``(before_last, after_last, before_second_last, ...)``; negative values crop.
    mode : {"constant", "reflect", "replicate", "circular"}
    value : float, optional
        The constant mode's fill (default 0).

    Returns
    -------
    ndarray or torch.Tensor
        Of the input's kind.

    Examples
    --------
    >>> import numpy as np
    >>> import fastconv.functional as F
    >>> F.pad(np.arange(4.0).reshape(1, 1, 4), (2, 1), mode="reflect")[0, 0]
    array([2., 1., 0., 1., 2., 3., 2.])
    """
    if mode not in MODES:
        raise FunctionalError(f"Unrecognised padding mode {mode!r}; one of {MODES}")
    if hasattr(pad, "tolist") and not isinstance(pad, (list, tuple)):
        pad = pad.tolist()
    if not isinstance(pad, (list, tuple)):
        raise FunctionalTypeError(f"pad must be a sequence of ints, got {type(pad).__name__}")
    pad = [as_int(p, "pad") for p in pad]
    if len(pad) % 2:
        raise FunctionalError(f"Padding length must be divisible by 2, got {len(pad)}")
    kind = tensors.kind_of(input)
    if kind is None:
        raise FunctionalTypeError(f"pad(): input must be a torch tensor or an array, got "
                                  f"{type(input).__name__}")
    to_torch = kind == "torch" and input.device.type == "cpu"
    x = input.detach() if kind == "torch" else input
    if to_torch:
        x = x.numpy()
    dtype = array_dtype(x)
    if dtype.kind != "f" or dtype.itemsize not in (4, 8):
        raise FunctionalTypeError(f"pad(): input must be float32 or float64, got {dtype}")
    rank, dims = len(x.shape), len(pad) // 2
    if dims > rank:
        raise FunctionalError(f"Padding length should be less than or equal to two times the "
                              f"input dimension but got padding length {len(pad)} and input "
                              f"of dimension {rank}")
    if mode != "constant" and not (dims <= 3 and rank in (dims + 1, dims + 2)):
        raise FunctionalError(f"Padding size {len(pad)} is not supported for {rank}D input "
                              f"tensor (mode {mode!r} pads the last 1-3 dims of a 2-5D input)")
    if mode != "constant" and value is not None and value != 0:
        raise FunctionalError(f"Padding mode {mode!r} doesn't take in value argument")
    if rank > 5:
        raise FunctionalError(f"pad(): inputs of up to 5 dims are supported, got {rank}")
    shape = tuple(int(v) for v in x.shape)
    pairs = [(0, 0)] * (rank - dims) + [(pad[2 * i], pad[2 * i + 1])
                                        for i in reversed(range(dims))]
    crops, pads = [], []
    for axis, ((before, after), size) in enumerate(zip(pairs, shape)):
        kept = size - max(-before, 0) - max(-after, 0)
        if kept + max(before, 0) + max(after, 0) < (1 if mode != "constant" else 0) or kept < 0:
            raise FunctionalError(f"pad(): input size {size} of dim {axis} is too small for "
                                  f"padding ({before}, {after}): calculated output size "
                                  f"{kept + max(before, 0) + max(after, 0)}")
        if mode == "reflect" and max(before, after) >= kept:
            raise FunctionalError(f"Padding size should be less than the corresponding input "
                                  f"dimension, but got: padding ({before}, {after}) at "
                                  f"dimension {axis} of input {list(shape)}")
        if mode == "circular" and max(before, after) > kept:
            raise FunctionalError("Padding value causes wrapping around more than once.")
        if mode == "replicate" and kept == 0 and (before > 0 or after > 0):
            raise FunctionalError(f"pad(): dim {axis} is empty after cropping; nothing to "
                                  f"replicate")
        crops.append(slice(max(-before, 0), size - max(-after, 0)))
        pads.append((max(before, 0), max(after, 0)))
    if any(c.start or c.stop != size for c, size in zip(crops, shape)):
        x = x[tuple(crops)]
        if tensors.kind_of(x) == "numba":
            x = dispatch.prepare_array("cuda", x)
    out_shape = tuple(int(size) + a + b for size, (a, b) in zip(x.shape, pads))
    device = "cpu" if tensors.kind_of(x) == "numpy" else "cuda"
    if (mode == "constant" and (value is None or (value == 0 and math.copysign(1, value) > 0))
            and 3 <= rank <= 5 and all(p == (0, 0) for p in pads[:2])):
        # Zeros around the spatial dims of (N, C, *spatial): the zero-padding kernels.
        out = api._run_zero_pad(x, tuple(pads[2:]), True, device)
    else:
        problem = ModePadProblem(x, tuple(pads), mode, 0.0 if value is None else float(value),
                                 out_shape, dtype)
        out = dispatch.run("pad", device, problem)
    if to_torch:
        import torch

        out = torch.from_numpy(out)
    return out
