"""TensorFlow computing every op: the definition fastconv is checked and timed against.

One function per op of :data:`fastconv.ops.OPS`, with the op's public signature (as
:mod:`fastconv.reference`, the NumPy oracle, has), returning TensorFlow's result as a NumPy
array in the caller's layout and dtype. The golden corpus (``tests/golden/make_golden.py``),
the suite's TF oracle (``tests/conftest.py``, ``FASTCONV_TEST_ORACLE=tf``) and the TF side of
``fastconv compare`` (:mod:`fastconv.workloads`) all read these, through
:attr:`fastconv.ops.Op.tf_function`, so TensorFlow's equivalent of each op is written once.

Where TF's CPU kernels have a gap, it is filled here by an exact rewrite in TF ops, each with
its reason beside it:

* channels-first data runs channels-last between two ``tf.transpose`` (TF's CPU refuses NCHW
  for convolutions and windowed pooling); global pooling and zero padding run in the caller's
  layout, as Keras does;
* ``conv1d`` with explicit padding is ``tf.nn.conv2d`` with a unit height;
* ``conv3d`` with dilation, groups, explicit padding or float64 strides runs stride 1 on the
  padded input, group by group, with a zero-inserted filter, and is subsampled;
* ``depthwise_conv2d`` with dilation and strides, or unequal strides, runs stride 1 and is
  subsampled;
* ``conv2d_transpose`` with dilation uses a zero-inserted filter;
* 3-D max pooling in float64 or with explicit padding is 2-D then 1-D max pooling; 3-D
  average pooling in float64 adds each window's cells (``tf.extract_volume_patches``, or a
  reshape when the windows tile the input) and divides by their count.

Fused ``bias``/``activation`` are ``tf.nn.bias_add`` and ``tf.nn.<activation>``. SAME pads,
where a rewrite needs them explicitly, come from TF's documented rule written out here; nothing
is imported from fastconv's shapes, validation, dispatch or kernels.

Two layers, as in :mod:`fastconv.reference`: the public functions, and the core they call, on
tensors with normalised arguments, channels-last but for the last two (:func:`conv`,
:func:`depthwise`, :func:`transposed_conv`, :func:`pool`, :func:`global_pool`,
:func:`zero_pad`), which uses TF ops only. Each public function ``f`` has ``f.prepare(...)``,
with the same arguments: it converts the arrays to tensors once and returns a zero-argument
callable computing the op with TF ops alone and returning a ``tf.Tensor`` (what ``fastconv
compare`` times); ``f(...)`` is ``f.prepare(...)().numpy()``. The ``device`` argument is
accepted and ignored.

Importing this module imports no TensorFlow; calling a function does
(:func:`import_tensorflow`).

Examples
--------
>>> import numpy as np
>>> from fastconv import tf_reference
>>> x = np.arange(16.0).reshape(1, 4, 4, 1)
>>> tf_reference.max_pool2d(x, 2, 2, "VALID")[0, :, :, 0]
array([[ 5.,  7.],
       [13., 15.]])
>>> call = tf_reference.max_pool2d.prepare(x, 2, 2, "VALID")
>>> type(call()).__name__
'EagerTensor'
"""

from __future__ import annotations

import functools

import numpy as np


def import_tensorflow():
    """Import TensorFlow quietly, or raise ImportError saying how to install it.

    TensorFlow's C++ start-up notices (oneDNN, absl) bypass ``TF_CPP_MIN_LOG_LEVEL``; they are
    held back from stderr and shown only if the import fails.
    """
    import os
    import sys
    import tempfile

    if sys.modules.get("tensorflow") is not None:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow as tf
        except BaseException as error:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            if isinstance(error, ImportError):
                raise ImportError(
                    "TensorFlow is needed for the comparison rows but is not installed; install "
                    "it with: pip install 'fastconv[tf]'  (tensorflow-cpu)") from error
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return tf


# ----------------------------------------------------------------------------- arguments

def _channels_first(data_format):
    return data_format is not None and (data_format.startswith("NC") or
                                        data_format == "channels_first")


def _spatial(value, n, channels_first, default=None):
    """An int, 1 value, n values or TF's n + 2 values (1 on batch and channels) -> n ints."""
    values = [int(v) for v in np.atleast_1d(np.asarray(default if value is None else value))
              .ravel()]
    if len(values) == 1:
        return (values[0],) * n
    if len(values) == n + 2:
        return tuple(values[2:] if channels_first else values[1:-1])
    return tuple(values)


def _padding(padding, n, channels_first):
    """``"SAME"``/``"VALID"`` (either case) or spatial (before, after) pairs."""
    if isinstance(padding, str):
        return padding.upper()
    pairs = tuple(tuple(int(v) for v in pair) for pair in np.asarray(padding).tolist())
    if len(pairs) == n + 2:
        pairs = pairs[2:] if channels_first else pairs[1:-1]
    return pairs


def _same_pads(size, k, stride, dilation):
    """TF's documented SAME rule: output ceil(size / stride), the odd padded cell after."""
    total = max((-(-size // stride) - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _pads(padding, sizes, kernel, strides, dilations):
    """Explicit (before, after) pairs of SAME, VALID or pairs, for the rewrites that pad."""
    if padding == "SAME":
        return [_same_pads(*args) for args in zip(sizes, kernel, strides, dilations)]
    if padding == "VALID":
        return [(0, 0)] * len(sizes)
    return [tuple(pair) for pair in padding]


def _tf_padding(padding):
    """TF's channels-last form: the string, or pairs with (0, 0) on batch and channels."""
    if isinstance(padding, str):
        return padding
    return [[0, 0]] + [list(pair) for pair in padding] + [[0, 0]]


def _array(value, dtype=None):
    """A C-contiguous NumPy array; Python lists and scalars become float32, TF's default."""
    if dtype is None and not hasattr(value, "dtype"):
        dtype = np.float32
    return np.ascontiguousarray(np.asarray(value, dtype=dtype))


def _tensors(input, *others):
    """``input`` and the other arrays (None stays None) as tensors of ``input``'s dtype."""
    tf = import_tensorflow()
    x = _array(input)
    made = (tf.constant(x),) + tuple(None if a is None else tf.constant(_array(a, x.dtype))
                                     for a in others)
    tape = _TAPE["tape"]
    if tape is not None:  # inside vjp: the gradients are taken with respect to these
        for tensor in made:
            if tensor is not None:
                tape.watch(tensor)
                _TAPE["watched"].append(tensor)
    return made


#: The tape :func:`vjp` records on, and the tensors :func:`_tensors` made under it.
_TAPE = {"tape": None, "watched": None}


def _to_last(x, channels_first):
    if not channels_first:
        return x
    rank = len(x.shape)
    return import_tensorflow().transpose(x, (0, *range(2, rank), 1))


def _from_last(y, channels_first):
    if not channels_first:
        return y
    rank = len(y.shape)
    return import_tensorflow().transpose(y, (0, rank - 1, *range(1, rank - 1)))


def _dilate_filter(w, dilations):
    """Insert ``d - 1`` zeros between filter taps: a dilated conv as an undilated one."""
    tf = import_tensorflow()
    for axis, d in enumerate(dilations):
        if d > 1:
            shape = list(w.shape)
            spread = tf.stack([w] + [tf.zeros_like(w)] * (d - 1), axis=axis + 1)
            spread = tf.reshape(spread, shape[:axis] + [shape[axis] * d] + shape[axis + 1:])
            w = spread[(slice(None),) * axis + (slice(0, (shape[axis] - 1) * d + 1),)]
    return w


def _subsample(y, strides):
    return y[(slice(None),) + tuple(slice(None, None, s) for s in strides)]


# ----------------------------------------------------------------------------- the core

def conv(x, w, strides, padding, dilations, bias=None, activation=None, alpha=None):
    """Grouped convolution of channels-last ``x`` with (*kernel, C // groups, K) ``w``, then
    ``tf.nn.bias_add`` and ``tf.nn.<activation>``."""
    tf = import_tensorflow()
    n = len(strides)
    if n == 3:
        y = _conv3d(x, w, strides, padding, dilations)
    elif n == 2:
        y = tf.nn.conv2d(x, w, [1, *strides, 1], _tf_padding(padding),
                         dilations=[1, *dilations, 1])
    elif isinstance(padding, str):
        y = tf.nn.conv1d(x, w, strides[0], padding, dilations=dilations[0])
    else:  # tf.nn.conv1d has no explicit padding; it is conv2d with a unit height anyway
        y = tf.nn.conv2d(x[:, None], w[None], [1, 1, strides[0], 1],
                         [[0, 0], [0, 0], list(padding[0]), [0, 0]],
                         dilations=[1, 1, dilations[0], 1])[:, 0]
    return epilogue(y, bias, activation, alpha)


def epilogue(y, bias=None, activation=None, alpha=None):
    """``tf.nn.bias_add`` then the activation of channels-last ``y`` (either optional):
    ``tf.nn.<activation>``, ``tf.nn.gelu(approximate=...)`` for gelu/gelu_tanh,
    ``tf.nn.leaky_relu(alpha=...)``, Keras' ``hard_silu``/``hard_sigmoid`` (``x *
    relu6(x + 3) / 6``, ``relu6(x + 3) / 6``), or a callable applied to the values."""
    tf = import_tensorflow()
    if bias is not None:
        y = tf.nn.bias_add(y, bias)
    if callable(activation) and not isinstance(activation, str):
        return tf.constant(np.asarray(activation(y.numpy())).astype(y.dtype.as_numpy_dtype))
    name = activation.lower() if isinstance(activation, str) else None
    if name in (None, "linear"):
        return y
    three = tf.constant(3, y.dtype)
    if name in ("gelu", "gelu_tanh"):
        return tf.nn.gelu(y, approximate=name == "gelu_tanh")
    if name == "leaky_relu":
        return tf.nn.leaky_relu(y, alpha=0.2 if alpha is None else float(alpha))
    if name in ("hard_swish", "hard_silu"):
        return y * (tf.nn.relu6(y + three) / tf.constant(6, y.dtype))
    if name == "hard_sigmoid":
        return tf.nn.relu6(y + three) / tf.constant(6, y.dtype)
    return getattr(tf.nn, "silu" if name == "swish" else name)(y)


def _conv3d(x, w, strides, padding, dilations):
    tf = import_tensorflow()
    group_in, out_channels = w.shape[-2], w.shape[-1]
    groups = x.shape[-1] // group_in
    if (groups == 1 and max(dilations) == 1 and isinstance(padding, str)
            and (x.dtype == tf.float32 or max(strides) == 1)):
        return tf.nn.conv3d(x, w, [1, *strides, 1], padding)
    # TF's CPU Conv3D has no dilation, no groups and no explicit padding: zero-insert the
    # filter, split the groups, pad explicitly. Its float64 kernel is also wrong for some
    # strided 1-wide filters (e.g. a 1x1x1 filter with strides (1, 2, 3)), so run stride 1 on
    # the padded input and subsample, which is exact.
    pads = _pads(padding, x.shape[1:-1], w.shape[:3], strides, dilations)
    if max(dilations) > 1:
        w = _dilate_filter(w, dilations)
    x = tf.pad(x, [(0, 0)] + pads + [(0, 0)])
    group_out = out_channels // groups
    parts = [tf.nn.conv3d(x[..., g * group_in:(g + 1) * group_in],
                          w[..., g * group_out:(g + 1) * group_out], [1, 1, 1, 1, 1], "VALID")
             for g in range(groups)]
    return _subsample(tf.concat(parts, axis=-1), strides)


def depthwise(x, w, strides, padding, dilations):
    """``tf.nn.depthwise_conv2d`` of channels-last ``x`` with (K_h, K_w, C, M) ``w``."""
    tf = import_tensorflow()
    if (max(dilations) > 1 and max(strides) > 1) or strides[0] != strides[1]:
        # TF warns and returns wrong shapes for dilation with strides, and its CPU kernel
        # refuses unequal strides: run stride 1 on the same padded input and subsample.
        pads = _pads(padding, x.shape[1:-1], w.shape[:2], strides, dilations)
        y = tf.nn.depthwise_conv2d(x, w, [1, 1, 1, 1], _tf_padding(pads),
                                   dilations=list(dilations))
        return _subsample(y, strides)
    return tf.nn.depthwise_conv2d(x, w, [1, *strides, 1], _tf_padding(padding),
                                  dilations=list(dilations))


def grouped(transposed, x, w, groups, *args):
    """A transposed conv with ``groups`` (TF has none): one per group, concatenated; ``w`` is
    (*kernel, out / groups, in)."""
    tf = import_tensorflow()
    if groups == 1:
        return transposed(x, w, *args)
    in_g = x.shape[-1] // groups
    return tf.concat([transposed(x[..., g * in_g:(g + 1) * in_g], w[..., g * in_g:(g + 1) * in_g],
                                 *args) for g in range(groups)], axis=-1)


def _groups(shape, n, first, w):
    """Groups of a transposed conv: the output's channels over the filters' out_channels."""
    if len(shape) != n + 2:
        return 1
    return shape[1 if first else -1] // int(w.shape[-2])


def transposed_conv(x, w, out_sizes, strides, padding, dilations):
    """``tf.nn.conv2d_transpose`` of channels-last ``x`` with (K_h, K_w, out, in) ``w`` to
    spatial ``out_sizes``."""
    tf = import_tensorflow()
    if max(dilations) > 1:  # TF's CPU Conv2DBackpropInput refuses dilation with strides
        w = _dilate_filter(w, dilations)
    shape = (x.shape[0], *out_sizes, w.shape[2])
    return tf.nn.conv2d_transpose(x, w, shape, [1, *strides, 1], _tf_padding(padding))


def pool_windows(kind, x, ksize, strides, padding):
    """``tf.nn.{kind}_pool{n}d`` of channels-last ``x`` (``kind`` is ``"max"`` or ``"avg"``)."""
    tf = import_tensorflow()
    n = len(ksize)
    if kind == "avg" and not isinstance(padding, str):
        raise ValueError("TensorFlow's average pooling takes 'SAME' or 'VALID' padding only")
    if n == 3 and (x.dtype in (tf.float64, tf.float16) or not isinstance(padding, str)):
        return _pool3d_rewrite(kind, x, ksize, strides, padding)
    op = getattr(tf.nn, f"{kind}_pool{n}d")
    return op(x, list(ksize), list(strides), _tf_padding(padding))


def _pool3d_rewrite(kind, x, ksize, strides, padding):
    """3-D pooling where TF's CPU MaxPool3D/AvgPool3D have no kernel (float64, float16) or refuse the
    padding (explicit), from TF ops (:func:`_max_pool3d_by_axes`, :func:`_avg_pool3d_windows`)."""
    if kind == "max":
        return _max_pool3d_by_axes(x, ksize, strides, padding)
    return _avg_pool3d_windows(x, ksize, strides, padding)


def _max_pool3d_by_axes(x, ksize, strides, padding):
    """Max over (H, W) with TF's 2-D max pooling, then over D with its 1-D one: exact, as a max
    is the same in any grouping and TF's CPU rule (start from the lowest finite value, NaN
    never wins) composes; SAME pads are per axis, explicit pads go to each stage."""
    tf = import_tensorflow()
    n, d, h, w, c = x.shape
    hw = padding if isinstance(padding, str) else [[0, 0], *map(list, padding[1:]), [0, 0]]
    depth = padding if isinstance(padding, str) else [[0, 0], list(padding[0]), [0, 0]]
    y = tf.nn.max_pool2d(tf.reshape(x, (n * d, h, w, c)), list(ksize[1:]), list(strides[1:]),
                         hw)
    out_h, out_w = y.shape[1], y.shape[2]
    y = tf.nn.max_pool1d(tf.reshape(y, (n, d, out_h * out_w * c)), ksize[0], strides[0], depth)
    return tf.reshape(y, (n, -1, out_h, out_w, c))


def _avg_pool3d_windows(x, ksize, strides, padding):
    """Each window's cells added in window order (row-major), divided by the count of real
    (unpadded) cells. An average of 2-D then 1-D averages would round differently."""
    tf = import_tensorflow()
    pads = [(0, 0)] + _pads(padding, x.shape[1:-1], ksize, strides, (1, 1, 1)) + [(0, 0)]
    cells = int(np.prod(ksize))

    def windows(a):  # (N, *out, cells, C)
        if any(map(any, pads)):
            a = tf.pad(a, pads)
        n, *sizes, c = a.shape
        if tuple(ksize) != tuple(strides):
            patches = tf.extract_volume_patches(a, [1, *ksize, 1], [1, *strides, 1], "VALID")
            return tf.reshape(patches, list(patches.shape[:-1]) + [cells, c])
        # Windows that tile the input: the same tensor as extract_volume_patches gives, by a
        # reshape and a transpose (several times faster).
        out = [size // k for size, k in zip(sizes, ksize)]
        if [o * k for o, k in zip(out, ksize)] != sizes:
            a = a[:, :out[0] * ksize[0], :out[1] * ksize[1], :out[2] * ksize[2]]
        a = tf.reshape(a, (n, out[0], ksize[0], out[1], ksize[1], out[2], ksize[2], c))
        a = tf.transpose(a, (0, 1, 3, 5, 2, 4, 6, 7))
        return tf.reshape(a, (n, *out, cells, c))

    sums = tf.reduce_sum(windows(x), axis=-2)
    if not any(map(any, pads)):  # every window is whole
        return sums / tf.constant(cells, x.dtype)
    return sums / tf.reduce_sum(windows(tf.ones((1, *x.shape[1:-1], 1), x.dtype)), axis=-2)


def global_pool(kind, x, channels_first=False, keepdims=False):
    """Keras' ``GlobalMaxPooling2D``/``GlobalAveragePooling2D``: ``tf.reduce_max`` (NaN
    propagates) or ``tf.reduce_mean`` over the spatial axes, in the caller's layout."""
    tf = import_tensorflow()
    reduce = tf.reduce_max if kind == "max" else tf.reduce_mean
    return reduce(x, axis=[2, 3] if channels_first else [1, 2], keepdims=keepdims)


def zero_pad(x, pads, channels_first=False):
    """Keras' ``ZeroPadding2D``: ``tf.pad`` of the spatial dims, in the caller's layout."""
    tf = import_tensorflow()
    spatial = [list(pair) for pair in pads]
    return tf.pad(x, [[0, 0], [0, 0]] + spatial if channels_first else
                  [[0, 0]] + spatial + [[0, 0]])


# ----------------------------------------------------------------------------- public signatures

def _op(prepare):
    """The public op made from ``prepare`` (the op's signature, returning the TF callable): it
    returns the result as a NumPy array and keeps ``prepare`` as ``op.prepare``."""
    @functools.wraps(prepare)
    def op(*args, **kwargs):
        result = prepare(*args, **kwargs)()
        if isinstance(result, tuple):  # max_pool_with_argmax: (output, argmax)
            return tuple(t.numpy() for t in result)
        return result.numpy()

    op.prepare = prepare
    return op


def _prepare_conv(n, input, filters, strides, padding, data_format, dilations, bias,
                  activation, alpha=None):
    first = _channels_first(data_format)
    x, w, b = _tensors(input, filters, bias)
    strides = _spatial(strides, n, first)
    dilations = _spatial(dilations, n, first, default=1)
    padding = _padding(padding, n, first)

    def call():
        y = conv(_to_last(x, first), w, strides, padding, dilations, b, activation, alpha)
        return _from_last(y, first)

    return call


@_op
def conv1d(input, filters, stride, padding, data_format="NWC", dilations=None, *, bias=None,
           activation=None, alpha=None, device=None):
    """TensorFlow's :func:`fastconv.conv1d`: ``tf.nn.conv1d`` (same arguments)."""
    return _prepare_conv(1, input, filters, stride, padding, data_format, dilations, bias,
                         activation, alpha)


@_op
def conv2d(input, filters, strides, padding, data_format="NHWC", dilations=None, *, bias=None,
           activation=None, alpha=None, device=None):
    """TensorFlow's :func:`fastconv.conv2d`: ``tf.nn.conv2d`` (same arguments)."""
    return _prepare_conv(2, input, filters, strides, padding, data_format, dilations, bias,
                         activation, alpha)


@_op
def conv3d(input, filters, strides, padding, data_format="NDHWC", dilations=None, *, bias=None,
           activation=None, alpha=None, device=None):
    """TensorFlow's :func:`fastconv.conv3d`: ``tf.nn.conv3d`` (same arguments)."""
    return _prepare_conv(3, input, filters, strides, padding, data_format, dilations, bias,
                         activation, alpha)


@_op
def convolution(input, filters, strides=None, padding="VALID", data_format=None, dilations=None,
                *, bias=None, activation=None, alpha=None, device=None):
    """TensorFlow's :func:`fastconv.convolution`: ``tf.nn.convolution``, which runs the conv of
    the input's rank, as this does."""
    n = len(getattr(input, "shape", np.shape(input))) - 2
    return _prepare_conv(n, input, filters, 1 if strides is None else strides, padding,
                         data_format, dilations, bias, activation, alpha)


@_op
def depthwise_conv2d(input, filter, strides, padding, data_format="NHWC", dilations=None, *,
                     bias=None, activation=None, alpha=None, device=None):
    """TensorFlow's :func:`fastconv.depthwise_conv2d`: ``tf.nn.depthwise_conv2d`` (then
    ``tf.nn.bias_add`` and the activation)."""
    first = _channels_first(data_format)
    x, w, b = _tensors(input, filter, bias)
    strides = _spatial(strides, 2, first)
    dilations = _spatial(dilations, 2, first, default=1)
    padding = _padding(padding, 2, first)

    def call():
        y = depthwise(_to_last(x, first), w, strides, padding, dilations)
        return _from_last(epilogue(y, b, activation, alpha), first)

    return call


@_op
def separable_conv2d(input, depthwise_filter, pointwise_filter, strides, padding,
                     data_format=None, dilations=None, *, bias=None, activation=None, alpha=None,
                     device=None):
    """TensorFlow's :func:`fastconv.separable_conv2d`: ``tf.nn.separable_conv2d`` (then
    ``tf.nn.bias_add`` and the activation); where TF's CPU refuses the arguments (unequal
    strides, dilation with strides, explicit padding) its two convs, computed as
    :func:`depthwise` and :func:`conv` do."""
    tf = import_tensorflow()
    first = _channels_first(data_format)
    x, dw, pw, b = _tensors(input, depthwise_filter, pointwise_filter, bias)
    strides = _spatial(strides, 2, first)
    dilations = _spatial(dilations, 2, first, default=1)
    padding = _padding(padding, 2, first)
    direct = (isinstance(padding, str) and strides[0] == strides[1]
              and (max(dilations) == 1 or max(strides) == 1))

    def call():
        xl = _to_last(x, first)
        if direct:
            y = tf.nn.separable_conv2d(xl, dw, pw, [1, *strides, 1], padding,
                                       dilations=list(dilations))
            return _from_last(epilogue(y, b, activation, alpha), first)
        y = depthwise(xl, dw, strides, padding, dilations)
        return _from_last(conv(y, pw, (1, 1), "VALID", (1, 1), b, activation, alpha), first)

    return call


@_op
def conv2d_transpose(input, filters, output_shape, strides, padding="SAME", data_format="NHWC",
                     dilations=None, *, bias=None, activation=None, alpha=None, device=None):
    """TensorFlow's :func:`fastconv.conv2d_transpose`: ``tf.nn.conv2d_transpose`` (one per
    group, then ``tf.nn.bias_add`` and the activation)."""
    first = _channels_first(data_format)
    x, w, b = _tensors(input, filters, bias)
    shape = [int(v) for v in np.asarray(output_shape).ravel()]
    out_sizes = tuple(shape if len(shape) == 2 else shape[2:] if first else shape[1:3])
    strides = _spatial(strides, 2, first)
    dilations = _spatial(dilations, 2, first, default=1)
    padding = _padding(padding, 2, first)

    groups = _groups(shape, 2, first, w)

    def call():
        y = grouped(transposed_conv, _to_last(x, first), w, groups, out_sizes, strides, padding,
                    dilations)
        return _from_last(epilogue(y, b, activation, alpha), first)

    return call


def transposed_conv_nd(x, w, out_sizes, strides, padding, dilations):
    """A transposed conv of any rank on channels-last ``x``, ``w`` (*kernel, out, in):
    ``tf.nn.conv_transpose`` itself for SAME/VALID without dilation; otherwise its VALID form
    with the filter dilated by zeros (TF's CPU refuses dilation with strides, and 1-D/3-D
    explicit padding), then the output window cut out of it (zeros past its end)."""
    tf = import_tensorflow()
    n = len(out_sizes)
    shape = (x.shape[0], *out_sizes, w.shape[-2])
    if isinstance(padding, str) and max(dilations) == 1:
        return tf.nn.conv_transpose(x, w, shape, [1, *strides, 1], padding)
    pads = _pads(padding, out_sizes, w.shape[:n], strides, dilations)  # of the forward conv
    w = _dilate_filter(w, dilations)
    full = [(size - 1) * s + k for size, s, k in zip(x.shape[1:-1], strides, w.shape[:n])]
    y = tf.nn.conv_transpose(x, w, (x.shape[0], *full, w.shape[-2]), [1, *strides, 1], "VALID")
    extra = [max(0, before + out - size) for (before, _), out, size in zip(pads, out_sizes, full)]
    y = tf.pad(y, [[0, 0]] + [[0, e] for e in extra] + [[0, 0]])
    return y[(slice(None),) + tuple(slice(before, before + out)
                                    for (before, _), out in zip(pads, out_sizes))]


def _prepare_conv_transpose(n, input, filters, output_shape, strides, padding, data_format,
                            dilations, bias=None, activation=None, alpha=None):
    first = _channels_first(data_format)
    x, w, b = _tensors(input, filters, bias)
    shape = [int(v) for v in np.asarray(output_shape).ravel()]
    out_sizes = tuple(shape if len(shape) == n else shape[2:] if first else shape[1:n + 1])
    strides = _spatial(strides, n, first)
    dilations = _spatial(dilations, n, first, default=1)
    padding = _padding(padding, n, first)
    convolve = transposed_conv if n == 2 else transposed_conv_nd

    groups = _groups(shape, n, first, w)

    def call():
        y = grouped(convolve, _to_last(x, first), w, groups, out_sizes, strides, padding,
                    dilations)
        return _from_last(epilogue(y, b, activation, alpha), first)

    return call


@_op
def conv1d_transpose(input, filters, output_shape, strides, padding="SAME", data_format="NWC",
                     dilations=None, *, bias=None,
                     activation=None, alpha=None, device=None):
    """TensorFlow's :func:`fastconv.conv1d_transpose`: ``tf.nn.conv1d_transpose``."""
    return _prepare_conv_transpose(1, input, filters, output_shape, strides, padding,
                                   data_format, dilations, bias, activation, alpha)


@_op
def conv3d_transpose(input, filters, output_shape, strides, padding="SAME",
                     data_format="NDHWC", dilations=None, *, bias=None,
                     activation=None, alpha=None, device=None):
    """TensorFlow's :func:`fastconv.conv3d_transpose`: ``tf.nn.conv3d_transpose``."""
    return _prepare_conv_transpose(3, input, filters, output_shape, strides, padding,
                                   data_format, dilations, bias, activation, alpha)


@_op
def conv_transpose(input, filters, output_shape, strides, padding="SAME", data_format=None,
                   dilations=None, *, bias=None,
                   activation=None, alpha=None, device=None):
    """TensorFlow's :func:`fastconv.conv_transpose`: ``tf.nn.conv_transpose`` (the output
    shape's length decides the rank)."""
    n = len(np.asarray(output_shape).ravel()) - 2
    return _prepare_conv_transpose(n, input, filters, output_shape, strides, padding,
                                   data_format, dilations, bias, activation, alpha)


@_op
def atrous_conv2d(value, filters, rate, padding, *, bias=None, activation=None, alpha=None, device=None):
    """TensorFlow's :func:`fastconv.atrous_conv2d`: ``tf.nn.atrous_conv2d`` (then
    ``tf.nn.bias_add`` and the activation)."""
    tf = import_tensorflow()
    x, w, b = _tensors(value, filters, bias)
    return lambda: epilogue(tf.nn.atrous_conv2d(x, w, int(rate), padding.upper()), b,
                            activation, alpha)


@_op
def atrous_conv2d_transpose(value, filters, output_shape, rate, padding, *, bias=None,
                            activation=None, alpha=None, device=None):
    """TensorFlow's :func:`fastconv.atrous_conv2d_transpose`:
    ``tf.nn.atrous_conv2d_transpose`` (then ``tf.nn.bias_add`` and the activation)."""
    tf = import_tensorflow()
    x, w, b = _tensors(value, filters, bias)
    shape = [int(v) for v in np.asarray(output_shape).ravel()]
    return lambda: epilogue(tf.nn.atrous_conv2d_transpose(x, w, shape, int(rate),
                                                          padding.upper()), b, activation, alpha)


def _prepare_pool(kind, n, input, ksize, strides, padding, data_format):
    first = _channels_first(data_format)
    (x,) = _tensors(input)
    n = len(x.shape) - 2 if n is None else n
    ksize, strides = _spatial(ksize, n, first), _spatial(strides, n, first)
    padding = _padding(padding, n, first)

    def call():
        return _from_last(pool_windows(kind, _to_last(x, first), ksize, strides, padding), first)

    return call


def _make_pool(kind, n, default_format):
    def pool_op(input, ksize, strides, padding, data_format=default_format, *, device=None):
        return _prepare_pool(kind, n, input, ksize, strides, padding, data_format)

    pool_op.__name__ = pool_op.__qualname__ = f"{kind}_pool{n}d"
    pool_op.__doc__ = (f"TensorFlow's :func:`fastconv.{kind}_pool{n}d`: "
                       f"``tf.nn.{kind}_pool{n}d`` (same arguments).")
    return _op(pool_op)


max_pool1d, max_pool2d, max_pool3d = (_make_pool("max", n, f) for n, f in
                                      ((1, "NWC"), (2, "NHWC"), (3, "NDHWC")))
avg_pool1d, avg_pool2d, avg_pool3d = (_make_pool("avg", n, f) for n, f in
                                      ((1, "NWC"), (2, "NHWC"), (3, "NDHWC")))


@_op
def max_pool(input, ksize, strides, padding, data_format=None, *, device=None):
    """TensorFlow's :func:`fastconv.max_pool`: ``tf.nn.max_pool`` (the input's rank decides)."""
    return _prepare_pool("max", None, input, ksize, strides, padding, data_format)


@_op
def avg_pool(input, ksize, strides, padding, data_format=None, *, device=None):
    """TensorFlow's :func:`fastconv.avg_pool`: ``tf.nn.avg_pool`` (the input's rank decides)."""
    return _prepare_pool("avg", None, input, ksize, strides, padding, data_format)


@_op
def pool(input, window_shape, pooling_type, strides=None, padding="VALID", data_format=None,
         dilations=None, *, device=None):
    """TensorFlow's :func:`fastconv.pool`: ``tf.nn.pool`` (channels-last: TF's CPU pools
    NHWC only, so channels-first data is transposed in and out)."""
    tf = import_tensorflow()
    first = _channels_first(data_format)
    (x,) = _tensors(input)
    n = len(x.shape) - 2
    pads = padding if isinstance(padding, str) else [list(p) for p in _padding(padding, n,
                                                                                first)]
    if not isinstance(pads, str):
        pads = [[0, 0]] + pads + [[0, 0]]

    dilated = dilations is not None and max(np.ravel(dilations)) > 1

    def call():
        xl = _to_last(x, first)
        if not dilated:  # tf.nn.pool runs tf.nn.max_pool/avg_pool: their CPU gaps rewritten
            return _from_last(pool_windows(pooling_type.lower(), xl, tuple(window_shape),
                                           _spatial(strides, n, False, default=1),
                                           _padding(padding, n, first)), first)
        y = tf.nn.pool(xl, list(window_shape), pooling_type.upper(),
                       None if strides is None else list(strides), pads,
                       dilations=list(dilations))
        return _from_last(y, first)

    return call


def _prepare_global(kind, input, data_format, keepdims):
    first = _channels_first(data_format)
    (x,) = _tensors(input)
    return lambda: global_pool(kind, x, first, keepdims)


@_op
def global_max_pool2d(input, data_format="NHWC", keepdims=False, *, device=None):
    """TensorFlow's :func:`fastconv.global_max_pool2d`: Keras ``GlobalMaxPooling2D``."""
    return _prepare_global("max", input, data_format, keepdims)


@_op
def global_avg_pool2d(input, data_format="NHWC", keepdims=False, *, device=None):
    """TensorFlow's :func:`fastconv.global_avg_pool2d`: Keras ``GlobalAveragePooling2D``."""
    return _prepare_global("avg", input, data_format, keepdims)


@_op
def zero_pad2d(input, padding=1, data_format="NHWC", *, device=None):
    """TensorFlow's :func:`fastconv.zero_pad2d`: Keras ``ZeroPadding2D`` (its padding forms)."""
    first = _channels_first(data_format)
    (x,) = _tensors(input)
    if np.ndim(padding) == 0:
        pads = [(int(padding),) * 2] * 2
    else:
        pads = [(int(p),) * 2 if np.ndim(p) == 0 else tuple(int(v) for v in p) for p in padding]
    return lambda: zero_pad(x, pads, first)


# ----------------------------------------------------------------------------- window maxima

@_op
def max_pool_with_argmax(input, ksize, strides, padding, data_format="NHWC",
                         output_dtype=np.int64, include_batch_in_index=False, *, device=None):
    """TensorFlow's :func:`fastconv.max_pool_with_argmax`: ``tf.nn.max_pool_with_argmax``
    (NHWC only in TF: NCHW data is transposed in, and its indices mapped to positions in the
    NCHW input)."""
    tf = import_tensorflow()
    first = _channels_first(data_format)
    (x,) = _tensors(input)
    ksize, strides = _spatial(ksize, 2, first), _spatial(strides, 2, first)
    dtype = getattr(output_dtype, "as_numpy_dtype", output_dtype)
    index_dtype = tf.int32 if np.dtype(dtype) == np.int32 else tf.int64

    def call():
        xl = _to_last(x, first)
        # Under vjp's tape: int64 indices, cast after (TF's CPU has no int32 gradient kernel).
        taped = _TAPE["tape"] is not None and index_dtype == tf.int32
        out, arg = tf.nn.max_pool_with_argmax(xl, [1, *ksize, 1], [1, *strides, 1],
                                              padding.upper(), "NHWC",
                                              tf.int64 if taped else index_dtype,
                                              bool(include_batch_in_index))
        if taped:
            arg = tf.cast(arg, tf.int32)
        if first:  # NHWC position -> NCHW position, in the same image
            n_, h_, w_, c_ = xl.shape
            image, rest = arg // (h_ * w_ * c_), arg % (h_ * w_ * c_)
            h, w, c = rest // (w_ * c_), (rest // c_) % w_, rest % c_
            arg = image * (h_ * w_ * c_) + (c * h_ + h) * w_ + w
        return _from_last(out, first), _from_last(arg, first)

    return call


def _prepare_morphology(name, input, filters, strides, padding, data_format, dilations):
    tf = import_tensorflow()
    first = _channels_first(data_format)
    x, f = _tensors(input, filters)
    strides, dilations = _spatial(strides, 2, first), _spatial(dilations, 2, first)
    op = getattr(tf.nn, name)

    def call():
        y = op(_to_last(x, first), f, [1, *strides, 1], padding.upper(), "NHWC",
               [1, *dilations, 1])
        return _from_last(y, first)

    return call


@_op
def dilation2d(input, filters, strides, padding, data_format, dilations, *, device=None):
    """TensorFlow's :func:`fastconv.dilation2d`: ``tf.nn.dilation2d`` (NHWC; NCHW transposed
    in and out)."""
    return _prepare_morphology("dilation2d", input, filters, strides, padding, data_format,
                               dilations)


@_op
def erosion2d(value, filters, strides, padding, data_format, dilations, *, device=None):
    """TensorFlow's :func:`fastconv.erosion2d`: ``tf.nn.erosion2d`` (NHWC; NCHW transposed in
    and out)."""
    return _prepare_morphology("erosion2d", value, filters, strides, padding, data_format,
                               dilations)


# ----------------------------------------------------------------------------- gradients

def vjp(name, grad_output, *args, **kwargs):
    """``tf.GradientTape().gradient`` of op ``name``'s TF computation (the function of this
    module, bias and activation included) with respect to each array argument it converts
    (input, filters, bias when given), for output gradient ``grad_output``: a tuple of NumPy
    arrays (zeros where TF returns None)."""
    tf = import_tensorflow()
    prepare = globals()[name].prepare
    with tf.GradientTape() as tape:
        _TAPE.update(tape=tape, watched=[])
        try:
            y = prepare(*args, **kwargs)()
        finally:
            watched, _TAPE["tape"], _TAPE["watched"] = _TAPE["watched"], None, None
    if isinstance(y, tuple):  # (output, argmax): the gradient is the output's
        y = y[0]
    dy = tf.constant(np.asarray(grad_output, dtype=y.dtype.as_numpy_dtype))
    grads = tape.gradient(y, watched, output_gradients=dy)
    return tuple(np.zeros(t.shape, t.dtype.as_numpy_dtype) if g is None else g.numpy()
                 for g, t in zip(grads, watched))


def _nhwc_shape(shape, first):
    shape = [int(v) for v in np.asarray(shape).ravel()]
    return [shape[0], *shape[2:], shape[1]] if first else shape


def _backprop(n, what, first_arg, filters, out_backprop, strides, padding, data_format,
              dilations, depthwise=False):
    """TF's named backprop kernel of a conv (channels-last; 1-D as 2-D with a unit height)."""
    tf = import_tensorflow()
    first = _channels_first(data_format)
    dy = _to_last(tf.constant(_array(out_backprop)), first)
    strides = _spatial(strides, n, first)
    dilations = _spatial(dilations, n, first, default=1)
    padding = _padding(padding, n, first)
    if what == "input":
        sizes = _nhwc_shape(first_arg, first)
        w = tf.constant(_array(filters, dy.dtype.as_numpy_dtype))
    else:
        x = _to_last(tf.constant(_array(first_arg, dy.dtype.as_numpy_dtype)), first)
        sizes = [int(v) for v in np.asarray(filters).ravel()]
    if n == 1:  # conv2d's kernels with a unit height
        dy = dy[:, None]
        strides, dilations = (1, *strides), (1, *dilations)
        padding = padding if isinstance(padding, str) else ((0, 0), *padding)
        if what == "input":
            sizes, w = [sizes[0], 1, *sizes[1:]], w[None]
        else:
            x, sizes = x[:, None], [1, *sizes]
    rank = len(strides)
    full = lambda values: [1, *values, 1]  # noqa: E731
    if depthwise or rank == 2:
        prefix = "depthwise_conv2d_native" if depthwise else "conv2d"
        kernel = getattr(tf.compat.v1.nn, f"{prefix}_backprop_{what}")
        known = (sizes, w) if what == "input" else (x, sizes)
        out = kernel(*known, dy, full(strides), _tf_padding(padding), dilations=full(dilations))
    elif what == "input":
        out = tf.raw_ops.Conv3DBackpropInputV2(input_sizes=sizes, filter=w, out_backprop=dy,
                                               strides=full(strides), padding=padding,
                                               dilations=full(dilations))
    else:
        out = tf.raw_ops.Conv3DBackpropFilterV2(input=x, filter_sizes=sizes, out_backprop=dy,
                                                strides=full(strides), padding=padding,
                                                dilations=full(dilations))
    if n == 1:
        out = out[:, 0] if what == "input" else out[0]
    if what == "input":
        out = _from_last(out, first)
    return out.numpy()


def _make_backprop(n, what, depthwise=False):
    fmt = {1: "NWC", 2: "NHWC", 3: "NDHWC"}[n]

    def backprop(first_arg, filters, out_backprop, strides, padding, data_format=fmt,
                 dilations=None, *, device=None):
        return _backprop(n, what, first_arg, filters, out_backprop, strides, padding,
                         data_format, dilations, depthwise)

    name = f"{'depthwise_conv2d' if depthwise else f'conv{n}d'}_backprop_{what}"
    backprop.__name__ = backprop.__qualname__ = name
    backprop.__doc__ = f"TensorFlow's :func:`fastconv.{name}`."
    return backprop


conv1d_backprop_input, conv2d_backprop_input, conv3d_backprop_input = (
    _make_backprop(n, "input") for n in (1, 2, 3))
conv1d_backprop_filter, conv2d_backprop_filter, conv3d_backprop_filter = (
    _make_backprop(n, "filter") for n in (1, 2, 3))
depthwise_conv2d_backprop_input = _make_backprop(2, "input", True)
depthwise_conv2d_backprop_filter = _make_backprop(2, "filter", True)


def _pool_grad(kind, n, orig_input, orig_output, grad, ksize, strides, padding, data_format):
    """tf.raw_ops.MaxPoolGradV2 / MaxPool3DGrad / AvgPoolGrad / AvgPool3DGrad, channels-last
    (1-D as 2-D with a unit height, as tf.nn.max_pool1d runs)."""
    tf = import_tensorflow()
    first = _channels_first(data_format)
    dy = _to_last(tf.constant(_array(grad)), first)
    dtype = dy.dtype.as_numpy_dtype
    ksize, strides = _spatial(ksize, n, first), _spatial(strides, n, first)
    padding = _padding(padding, n, first)
    if kind == "max":
        x = _to_last(tf.constant(_array(orig_input, dtype)), first)
        y = _to_last(tf.constant(_array(orig_output, dtype)), first)
    else:
        sizes = _nhwc_shape(orig_input, first)
    if n == 1:
        dy, ksize, strides = dy[:, None], (1, *ksize), (1, *strides)
        padding = padding if isinstance(padding, str) else ((0, 0), *padding)
        if kind == "max":
            x, y = x[:, None], y[:, None]
        else:
            sizes = [sizes[0], 1, *sizes[1:]]
    full = lambda values: [1, *values, 1]  # noqa: E731
    if kind == "max" and len(ksize) == 2:
        if isinstance(padding, str):
            out = tf.raw_ops.MaxPoolGradV2(orig_input=x, orig_output=y, grad=dy,
                                           ksize=full(ksize), strides=full(strides),
                                           padding=padding)
        else:
            out = tf.raw_ops.MaxPoolGrad(orig_input=x, orig_output=y, grad=dy,
                                         ksize=full(ksize), strides=full(strides),
                                         padding="EXPLICIT",
                                         explicit_paddings=sum(map(list, _tf_padding(padding)),
                                                               []))
    elif kind == "max":
        out = tf.raw_ops.MaxPool3DGrad(orig_input=x, orig_output=y, grad=dy, ksize=full(ksize),
                                       strides=full(strides), padding=padding)
    elif len(ksize) == 2:
        out = tf.raw_ops.AvgPoolGrad(orig_input_shape=sizes, grad=dy, ksize=full(ksize),
                                     strides=full(strides), padding=padding)
    else:
        out = tf.raw_ops.AvgPool3DGrad(orig_input_shape=sizes, grad=dy, ksize=full(ksize),
                                       strides=full(strides), padding=padding)
    if n == 1:
        out = out[:, 0]
    return _from_last(out, first).numpy()


def _make_pool_grad(kind, n):
    fmt = {1: "NWC", 2: "NHWC", 3: "NDHWC"}[n]
    if kind == "max":
        def pool_grad(orig_input, orig_output, grad, ksize, strides, padding, data_format=fmt,
                      *, device=None):
            return _pool_grad(kind, n, orig_input, orig_output, grad, ksize, strides, padding,
                              data_format)
    else:
        def pool_grad(orig_input_shape, grad, ksize, strides, padding, data_format=fmt, *,
                      device=None):
            return _pool_grad(kind, n, orig_input_shape, None, grad, ksize, strides, padding,
                              data_format)
    pool_grad.__name__ = pool_grad.__qualname__ = f"{kind}_pool{n}d_grad"
    pool_grad.__doc__ = f"TensorFlow's :func:`fastconv.{kind}_pool{n}d_grad`."
    return pool_grad


max_pool1d_grad, max_pool2d_grad, max_pool3d_grad = (_make_pool_grad("max", n) for n in (1, 2, 3))
avg_pool1d_grad, avg_pool2d_grad, avg_pool3d_grad = (_make_pool_grad("avg", n) for n in (1, 2, 3))
