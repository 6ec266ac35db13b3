"""``conv1d/2d/3d`` and ``conv_transpose1d/2d/3d`` with ``torch.nn.functional``'s arguments,
on fastconv's convolution kernels.

PyTorch's weights ``(out, in / groups, *kernel)`` (transposed: ``(in, out / groups,
*kernel)``) are read through a permuted view in TF's ``(*kernel, in, out)`` layout, which
the kernels pack as they do any filters; padding becomes explicit ``(before, after)`` pairs.
A transposed conv's ``output_padding`` is extra length after the output: the forward conv's
padding after is shortened to fit it, and where even none is too much the input gets zero
rows after it (they add nothing). Grouped transposed convs run one transposed conv per group.
"""

from __future__ import annotations

from .. import api
from . import tensors
from .arguments import KERNEL_LETTERS, SPATIAL_LETTERS, conv_padding, ntuple
from .errors import FunctionalError, torch_errors


def _checked_weight(call, weight, bias, op, transposed, groups):
    """The weight and bias of a conv call, checked as PyTorch checks them."""
    n = call.n_spatial
    w = tensors.parameter(weight, "weight", call, op)
    if len(w.shape) != n + 2:
        layout = "(in, out / groups, *kernel)" if transposed else "(out, in / groups, *kernel)"
        raise FunctionalError(f"{op}(): weight must be {n + 2}-D {layout}, got size "
                              f"{list(w.shape)}")
    if isinstance(groups, bool) or not isinstance(groups, int):
        raise FunctionalError(f"{op}(): groups must be an int, got {groups!r}")
    if groups < 1:
        raise FunctionalError(f"{op}(): non-positive groups is not supported")
    if call.channels < 1:
        raise FunctionalError(f"{op}(): input has zero channels: {call.shape_text()}")
    if min(w.shape) < 1:
        raise FunctionalError(f"{op}(): weight must have non-zero sizes, got {list(w.shape)}")
    if transposed:
        expected, out_channels = int(w.shape[0]), int(w.shape[1]) * groups
        if call.channels != expected or expected % groups:
            raise FunctionalError(
                f"Given transposed=1, weight of size {list(w.shape)}, expected input"
                f"{call.shape_text()} to have {expected} channels (divisible by groups="
                f"{groups}), but got {call.channels} channels instead")
    else:
        out_channels = int(w.shape[0])
        if out_channels % groups:
            raise FunctionalError(f"Given groups={groups}, expected weight to be divisible by "
                                  f"{groups} at dimension 0, but got weight of size "
                                  f"{list(w.shape)} instead")
        if call.channels != int(w.shape[1]) * groups:
            raise FunctionalError(
                f"Given groups={groups}, weight of size {list(w.shape)}, expected input"
                f"{call.shape_text()} to have {int(w.shape[1]) * groups} channels, but got "
                f"{call.channels} channels instead")
    if bias is not None:
        bias = tensors.parameter(bias, "bias", call, op)
        if tuple(bias.shape) != (out_channels,):
            raise FunctionalError(f"Given weight of size {list(w.shape)}, expected bias to be "
                                  f"1-dimensional with {out_channels} elements, but got bias "
                                  f"of size {list(bias.shape)} instead")
    return w, bias, out_channels


def _tf_filters(w, n):
    """PyTorch's (a, b, *kernel) weight as TF's (*kernel, b, a): a view where possible."""
    return tensors.permute(w, tuple(range(2, n + 2)) + (1, 0))


@torch_errors
def _conv(n, op, input, weight, bias, stride, padding, dilation, groups):
    call = tensors.begin(input, n, op)
    w, bias, _ = _checked_weight(call, weight, bias, op, False, groups)
    kernel = tuple(int(k) for k in w.shape[2:])
    stride = ntuple(stride, n, "stride")
    dilation = ntuple(dilation, n, "dilation")
    pads = conv_padding(padding, n, kernel, dilation, stride)
    for size, k, d, (before, after) in zip(call.spatial, kernel, dilation, pads):
        if size + before + after < d * (k - 1) + 1:
            raise FunctionalError(
                f"{op}(): Calculated padded input size per channel: "
                f"{tuple(s + b + a for s, (b, a) in zip(call.spatial, pads))}. Kernel size: "
                f"{kernel} (dilation {dilation}). Kernel size can't be greater than actual "
                f"input size")
    w_tf = _tf_filters(w, n)
    if call.device == "cuda":
        w_tf = api._data(w_tf, "weight", call.device, call.dtype)
    out = api._run_conv(call.x, w_tf, bias, (stride, pads, dilation), groups, 0,
                        call.channels_first, n, call.device)
    return call.finish(out)


def _transposed_window(size, k, stride, pad, out_pad, dilation):
    """(output size, forward padding after, zero rows to add after the input) of one dim of
    a transposed conv with PyTorch's arguments."""
    out = (size - 1) * stride - 2 * pad + dilation * (k - 1) + out_pad + 1
    if out_pad < stride:
        return out, pad, 0
    after = pad + stride - 1 - out_pad
    if after >= 0:
        return out, after, 0
    span = dilation * (k - 1) + 1
    return out, 0, (out + pad - span) // stride + 1 - size


@torch_errors
def _conv_transpose(n, op, input, weight, bias, stride, padding, output_padding, groups,
                    dilation):
    call = tensors.begin(input, n, op)
    w, bias, out_channels = _checked_weight(call, weight, bias, op, True, groups)
    kernel = tuple(int(k) for k in w.shape[2:])
    stride = ntuple(stride, n, "stride")
    dilation = ntuple(dilation, n, "dilation")
    if isinstance(padding, str):
        raise FunctionalError(f"{op}(): padding must be an int or a tuple of ints for "
                              f"transposed convolutions, got {padding!r}")
    padding = ntuple(padding, n, "padding", minimum=0)
    output_padding = ntuple(output_padding, n, "output_padding", minimum=0)
    for op_, s, d in zip(output_padding, stride, dilation):
        if op_ >= max(s, d):
            raise FunctionalError(f"{op}(): output padding must be smaller than either stride "
                                  f"or dilation, got output_padding={output_padding}, stride="
                                  f"{stride}, dilation={dilation}")
    dims = [_transposed_window(*args) for args in
            zip(call.spatial, kernel, stride, padding, output_padding, dilation)]
    out_spatial = tuple(out for out, _, _ in dims)
    if min(out_spatial) < 1:
        raise FunctionalError(f"{op}(): Given input size per channel: {call.spatial}. "
                              f"Calculated output size per channel: {out_spatial}. Output "
                              f"size is too small")
    pads = tuple((p, after) for p, (_, after, _) in zip(padding, dims))
    x = call.x
    extra = tuple(rows for _, _, rows in dims)
    if any(extra):  # output_padding beyond what forward padding can absorb: zeros after x
        x = api._run_zero_pad(x, tuple((0, rows) for rows in extra), call.channels_first,
                              call.device)
    w_tf = _tf_filters(w, n)  # (*kernel, out / groups, in)
    group_in, group_out = call.channels // groups, out_channels // groups
    parts = []
    for g in range(groups):
        x_g = x if groups == 1 else tensors.take_channels(x, g * group_in, (g + 1) * group_in,
                                                          call.channels_first)
        w_g = w_tf if groups == 1 else w_tf[..., g * group_in:(g + 1) * group_in]
        b_g = bias if bias is None or groups == 1 else bias[g * group_out:(g + 1) * group_out]
        w_g = api._data(w_g, "weight", call.device, call.dtype)
        parts.append(api._run_conv_transpose(x_g, w_g, b_g, out_spatial,
                                             (stride, pads, dilation), call.channels_first, n,
                                             call.device))
    out = parts[0] if groups == 1 else tensors.concatenate_channels(parts, call.channels_first)
    return call.finish(out)


def _conv_doc(n):
    letters, kernel = SPATIAL_LETTERS[n], KERNEL_LETTERS[n]
    shape = {1: "(1, 2, 9)", 2: "(1, 2, 9, 9)", 3: "(1, 2, 9, 9, 9)"}[n]
    wshape = {1: "(4, 2, 3)", 2: "(4, 2, 3, 3)", 3: "(4, 2, 3, 3, 3)"}[n]
    out = {1: "(1, 4, 9)", 2: "(1, 4, 9, 9)", 3: "(1, 4, 9, 9, 9)"}[n]
    return f"""{n}-D convolution, as ``torch.nn.functional.conv{n}d``.

    Parameters
    ----------
    input : ndarray or torch.Tensor (N, C_in, {letters}) or unbatched (C_in, {letters})
        float32 or float64; CPU or CUDA; channels_last memory runs the channels-last kernels.
    weight : same kind (C_out, C_in / groups, {kernel})
    bias : (C_out,), optional
    stride, dilation : int or tuple of {n} ints
    padding : int, tuple of {n} ints, "valid" or "same"
        ``"same"`` splits an odd total padding with the extra cell after (stride 1 only).
    groups : int

    Returns
    -------
    ndarray or torch.Tensor
        (N, C_out, *out) of the input's kind, dtype and device.

    Examples
    --------
    >>> import numpy as np
    >>> import fastconv.functional as F
    >>> x = np.ones({shape}, np.float32)
    >>> F.conv{n}d(x, np.ones({wshape}, np.float32), padding="same").shape
    {out}
    """


def _conv_transpose_doc(n):
    letters, kernel = SPATIAL_LETTERS[n], KERNEL_LETTERS[n]
    shape = {1: "(1, 4, 5)", 2: "(1, 4, 5, 5)", 3: "(1, 4, 5, 5, 5)"}[n]
    wshape = {1: "(4, 2, 3)", 2: "(4, 2, 3, 3)", 3: "(4, 2, 3, 3, 3)"}[n]
    out = {1: "(1, 2, 10)", 2: "(1, 2, 10, 10)", 3: "(1, 2, 10, 10, 10)"}[n]
    return f"""Transposed {n}-D convolution, as ``torch.nn.functional.conv_transpose{n}d``.

    Parameters
    ----------
    input : ndarray or torch.Tensor (N, C_in, {letters}) or unbatched
    weight : same kind (C_in, C_out / groups, {kernel})
    bias : (C_out,), optional
    stride, padding, output_padding, dilation : int or tuple of {n} ints
        Output length ``(L - 1) * stride - 2 * padding + dilation * (k - 1) +
        output_padding + 1``; ``output_padding`` must be below the stride or the dilation.
    groups : int

    Returns
    -------
    ndarray or torch.Tensor
        (N, C_out, *out) of the input's kind.

    Examples
    --------
    >>> import numpy as np
    >>> import fastconv.functional as F
    >>> x = np.ones({shape}, np.float32)
    >>> F.conv_transpose{n}d(x, np.ones({wshape}, np.float32), stride=2, padding=1,
    ...                    output_padding=1).shape
    {out}
    """


def _make_conv(n):
    def conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        return _conv(n, f"conv{n}d", input, weight, bias, stride, padding, dilation, groups)

    conv.__name__ = conv.__qualname__ = f"conv{n}d"
    conv.__doc__ = _conv_doc(n)
    return conv


def _make_conv_transpose(n):
    def conv_transpose(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                       groups=1, dilation=1):
        return _conv_transpose(n, f"conv_transpose{n}d", input, weight, bias, stride, padding,
                               output_padding, groups, dilation)

    conv_transpose.__name__ = conv_transpose.__qualname__ = f"conv_transpose{n}d"
    conv_transpose.__doc__ = _conv_transpose_doc(n)
    return conv_transpose


conv1d, conv2d, conv3d = (_make_conv(n) for n in (1, 2, 3))
conv_transpose1d, conv_transpose2d, conv_transpose3d = (_make_conv_transpose(n)
                                                        for n in (1, 2, 3))
