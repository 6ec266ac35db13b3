"""The op table: one record per public op, read by everything that lists the ops.

``fastconv.__all__``, the exactness rule (:mod:`fastconv.testing`), the benchmark workloads'
op groups (:mod:`fastconv.workloads`), the memory and layout tests and the docs read
:data:`OPS` instead of writing the op list out again (PyTorch's OpInfo and scipy.ndimage's
delegators are the models). Each record leads to the op's three implementations, all with the
same signature: :attr:`Op.function` (fastconv's, :mod:`.api`), :attr:`Op.oracle` (the NumPy
oracle, :mod:`.reference`) and :attr:`Op.tf_function` (TensorFlow's, :mod:`.tf_reference`,
which the golden corpus builder, the suite's TF oracle and ``fastconv compare`` read). Adding
an op is one record here, its function in :mod:`.api`, its oracle in :mod:`.reference`, its
TensorFlow equivalent in :mod:`.tf_reference` and its kernels; the tests that iterate over
:data:`OPS` then cover it (see docs/design.md, "Adding an op").

Importing this module imports neither Numba nor TensorFlow.

Examples
--------
>>> from fastconv import ops
>>> ops.get("max_pool2d").family, ops.get("max_pool2d").exact
('max_pool', True)
>>> [op.name for op in ops.OPS if op.kind == "global"]
['global_max_pool2d', 'global_avg_pool2d']
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One small call of an op: ``call(module, **arrays)`` with arrays of ``shapes`` (channels
    as the ``data_format`` in ``call`` says), used by the op-table, memory and layout tests
    and the docs."""

    label: str
    call: object  # function of the module and the arrays: fastconv, reference or tf_reference
    shapes: dict


@dataclass(frozen=True)
class Op:
    """One public op.

    Attributes
    ----------
    name : str
        The function's name in ``fastconv`` and in :mod:`fastconv.reference`.
    family : str
        The dispatch family its problems run in (``conv``, ``conv_transpose``, ``max_pool``,
        ``avg_pool``, ``global_pool``, ``zero_pad``).
    kind : {"conv", "pool", "global", "pad"}
        What the benchmark work model counts: FLOPs (conv) or bytes moved (the rest).
    n_spatial : int or None
        Spatial rank, None when the input's rank decides (rank-generic ops).
    tf : str
        The TensorFlow (or Keras) equivalent.
    exact : bool
        Results must match TF bit for bit (the op only selects or copies values).
    samples : tuple of Sample
    """

    name: str
    family: str
    kind: str
    n_spatial: int | None
    tf: str
    exact: bool = False
    samples: tuple = field(default=(), compare=False)

    @property
    def function(self):
        import fastconv

        return getattr(fastconv, self.name)

    @property
    def oracle(self):
        """The independent NumPy oracle (:mod:`fastconv.reference`)."""
        from fastconv import reference

        return getattr(reference, self.name)

    @property
    def vjp(self):
        """``vjp(*args, **kwargs) -> (output, backward)`` of this op (:func:`fastconv.vjp`)."""
        import functools

        from .backward import vjp

        return functools.partial(vjp, self.name)

    @property
    def tf_function(self):
        """TensorFlow computing the op (:mod:`fastconv.tf_reference`; imports TF when called),
        with ``tf_function.prepare`` for timing it."""
        from fastconv import tf_reference

        return getattr(tf_reference, self.name)


def _samples(name):
    """The sample calls of op ``name``, written with ``f`` standing for the module whose
    function is called (``fastconv``, ``fastconv.reference`` or ``fastconv.tf_reference``)."""
    table = {
        "conv1d": [("conv1d", lambda f, x, w, b: f.conv1d(x, w, 2, "SAME", bias=b,
                                                           activation="relu"),
                    dict(x=(2, 9, 3), w=(3, 3, 4), b=(4,)))],
        "conv2d": [("conv2d", lambda f, x, w, b: f.conv2d(x, w, 1, "SAME", bias=b,
                                                           activation="tanh"),
                    dict(x=(2, 7, 6, 3), w=(3, 2, 3, 20), b=(20,))),
                   ("conv2d-nchw", lambda f, x, w, b: f.conv2d(x, w, 2, [[1, 0], [0, 2]], "NCHW",
                                                                bias=b),
                    dict(x=(2, 3, 7, 6), w=(3, 3, 3, 4), b=(4,))),
                   ("conv2d-grouped", lambda f, x, w: f.conv2d(x, w, 1, "VALID"),
                    dict(x=(1, 6, 5, 4), w=(2, 2, 2, 6))),
                   ("conv2d-gelu", lambda f, x, w, b: f.conv2d(x, w, 1, "SAME", bias=b,
                                                                activation="gelu"),
                    dict(x=(2, 5, 6, 3), w=(3, 3, 3, 4), b=(4,))),
                   ("conv2d-leaky-alpha", lambda f, x, w: f.conv2d(
                       x, w, 2, "VALID", "NCHW", activation="leaky_relu", alpha=0.1),
                    dict(x=(1, 3, 7, 6), w=(3, 3, 3, 4)))],
        "conv3d": [("conv3d-ncdhw", lambda f, x, w, b: f.conv3d(x, w, 1, "SAME", "NCDHW", bias=b),
                    dict(x=(1, 2, 4, 5, 3), w=(2, 2, 2, 2, 3), b=(3,)))],
        "convolution": [("convolution-ncw", lambda f, x, w: f.convolution(x, w, 2, "SAME", "NCW"),
                         dict(x=(2, 3, 9), w=(3, 3, 4))),
                        ("convolution-rank5", lambda f, x, w, b: f.convolution(
                            x, w, bias=b, activation="relu"),
                         dict(x=(1, 4, 5, 3, 2), w=(2, 2, 2, 2, 3), b=(3,)))],
        "depthwise_conv2d": [("depthwise", lambda f, x, w: f.depthwise_conv2d(x, w, 1, "SAME"),
                              dict(x=(2, 6, 5, 3), w=(3, 3, 3, 1))),
                             ("depthwise-swish", lambda f, x, w, b: f.depthwise_conv2d(
                                 x, w, 1, "SAME", bias=b, activation="swish"),
                              dict(x=(1, 5, 5, 4), w=(3, 3, 4, 2), b=(8,)))],
        "separable_conv2d": [("separable", lambda f, x, dw, pw, b: f.separable_conv2d(
                                  x, dw, pw, 2, "SAME", bias=b, activation="relu"),
                              dict(x=(2, 7, 6, 3), dw=(3, 3, 3, 2), pw=(1, 1, 6, 4), b=(4,))),
                             ("separable-nchw-dilated", lambda f, x, dw, pw: f.separable_conv2d(
                                 x, dw, pw, 1, "VALID", "NCHW", 2),
                              dict(x=(1, 3, 8, 7), dw=(2, 3, 3, 1), pw=(1, 1, 3, 5)))],
        "conv2d_transpose": [("transpose-nchw",
                              lambda f, x, w: f.conv2d_transpose(x, w, (2, 2, 8, 10), 2, "SAME",
                                                                 "NCHW"),
                              dict(x=(2, 3, 4, 5), w=(3, 3, 2, 3))),
                             ("transpose-grouped-hard-swish",
                              lambda f, x, w, b: f.conv2d_transpose(
                                  x, w, (2, 8, 10, 6), 2, "SAME", bias=b,
                                  activation="hard_swish"),
                              dict(x=(2, 4, 5, 4), w=(3, 3, 3, 4), b=(6,)))],
        "conv1d_transpose": [("transpose1d",
                              lambda f, x, w: f.conv1d_transpose(x, w, (2, 10, 2), 2, "SAME"),
                              dict(x=(2, 5, 3), w=(3, 2, 3))),
                             ("transpose1d-elu",
                              lambda f, x, w, b: f.conv1d_transpose(x, w, (2, 10, 2), 2, "SAME",
                                                                    bias=b, activation="elu"),
                              dict(x=(2, 5, 3), w=(3, 2, 3), b=(2,)))],
        "conv3d_transpose": [("transpose3d-ncdhw",
                              lambda f, x, w: f.conv3d_transpose(x, w, (1, 2, 4, 6, 4), 2,
                                                                 "SAME", "NCDHW"),
                              dict(x=(1, 3, 2, 3, 2), w=(2, 2, 2, 2, 3)))],
        "conv_transpose": [("transpose-rank3-explicit",
                            lambda f, x, w: f.conv_transpose(x, w, (2, 9, 2), 2, [[1, 0]]),
                            dict(x=(2, 4, 3), w=(3, 2, 3))),
                           ("transpose-rank4-dilated",
                            lambda f, x, w: f.conv_transpose(x, w, (1, 2, 7, 6), 1, "SAME",
                                                             "NCHW", 2),
                            dict(x=(1, 3, 7, 6), w=(3, 3, 2, 3)))],
        "atrous_conv2d": [("atrous", lambda f, x, w: f.atrous_conv2d(x, w, 2, "SAME"),
                           dict(x=(1, 7, 6, 2), w=(3, 3, 2, 3)))],
        "atrous_conv2d_transpose": [("atrous-transpose",
                                     lambda f, x, w: f.atrous_conv2d_transpose(
                                         x, w, (1, 5, 4, 2), 2, "SAME"),
                                     dict(x=(1, 5, 4, 3), w=(3, 3, 2, 3)))],
        "max_pool1d": [("max_pool1d-ncw", lambda f, x: f.max_pool1d(x, 3, 2, "SAME", "NCW"),
                        dict(x=(2, 3, 9)))],
        "max_pool2d": [("max_pool2d", lambda f, x: f.max_pool2d(x, 3, 2, "SAME"),
                        dict(x=(2, 7, 6, 19)))],
        "max_pool3d": [("max_pool3d", lambda f, x: f.max_pool3d(x, 2, 1, [[1, 0]] * 3),
                        dict(x=(1, 4, 5, 3, 2)))],
        "avg_pool1d": [("avg_pool1d", lambda f, x: f.avg_pool1d(x, 2, 1, "VALID"),
                        dict(x=(2, 9, 3)))],
        "avg_pool2d": [("avg_pool2d-nchw", lambda f, x: f.avg_pool2d(x, 2, 1, "SAME", "NCHW"),
                        dict(x=(2, 3, 7, 6)))],
        "avg_pool3d": [("avg_pool3d-ncdhw", lambda f, x: f.avg_pool3d(x, 2, 2, "SAME", "NCDHW"),
                        dict(x=(1, 2, 5, 4, 3)))],
        "max_pool": [("max_pool-rank4", lambda f, x: f.max_pool(x, 2, 2, "VALID"),
                      dict(x=(2, 6, 7, 3))),
                     ("max_pool-ncdhw", lambda f, x: f.max_pool(x, 2, 1, "SAME", "NCDHW"),
                      dict(x=(1, 2, 4, 5, 3)))],
        "avg_pool": [("avg_pool-rank3", lambda f, x: f.avg_pool(x, 3, 2, "SAME"),
                      dict(x=(2, 9, 3))),
                     ("avg_pool-nchw", lambda f, x: f.avg_pool(x, [1, 1, 2, 2], [1, 1, 2, 1],
                                                               "VALID", "NCHW"),
                      dict(x=(2, 3, 6, 5)))],
        "pool": [("pool-max-dilated", lambda f, x: f.pool(x, [2, 3], "MAX", dilations=[2, 1]),
                  dict(x=(2, 7, 6, 3))),
                 ("pool-avg-ncw-strided", lambda f, x: f.pool(x, [3], "AVG", [2], "SAME",
                                                              "NCW"), dict(x=(2, 3, 9))),
                 ("pool-avg-dilated-ncw", lambda f, x: f.pool(x, [3], "AVG", None, "VALID",
                                                              "NCW", [2]),
                  dict(x=(2, 3, 9)))],
        "global_max_pool2d": [("global_max", lambda f, x: f.global_max_pool2d(x),
                               dict(x=(2, 4, 5, 3)))],
        "global_avg_pool2d": [("global_avg-nchw",
                               lambda f, x: f.global_avg_pool2d(x, "NCHW", keepdims=True),
                               dict(x=(2, 3, 4, 5)))],
        "zero_pad2d": [("zero_pad", lambda f, x: f.zero_pad2d(x, ((1, 2), (0, 1))),
                        dict(x=(2, 4, 5, 3))),
                       ("zero_pad-nchw", lambda f, x: f.zero_pad2d(x, 1, "NCHW"),
                        dict(x=(2, 3, 4, 5)))],
        "max_pool_with_argmax": [
            ("argmax", lambda f, x: f.max_pool_with_argmax(x, 3, 2, "SAME"),
             dict(x=(2, 7, 6, 3))),
            ("argmax-nchw-batch-int32", lambda f, x: f.max_pool_with_argmax(
                x, [2, 3], [1, 2], "VALID", "NCHW", np.int32, True), dict(x=(2, 3, 5, 7)))],
        "dilation2d": [("dilation2d", lambda f, x, w: f.dilation2d(x, w, 1, "SAME", "NHWC", 2),
                        dict(x=(2, 7, 6, 3), w=(3, 2, 3))),
                       ("dilation2d-nchw", lambda f, x, w: f.dilation2d(
                           x, w, [1, 1, 2, 1], "VALID", "NCHW", 1), dict(x=(1, 2, 6, 5),
                                                                         w=(2, 3, 2)))],
        "erosion2d": [("erosion2d", lambda f, x, w: f.erosion2d(x, w, 2, "SAME", "NHWC", 1),
                       dict(x=(2, 7, 6, 3), w=(3, 3, 3)))],
    }
    return tuple(Sample(label, call, shapes) for label, call, shapes in table[name])


def _op(name, family, kind, n_spatial, tf, exact=False):
    return Op(name, family, kind, n_spatial, tf, exact, _samples(name))


OPS: tuple[Op, ...] = (
    _op("conv1d", "conv", "conv", 1, "tf.nn.conv1d"),
    _op("conv2d", "conv", "conv", 2, "tf.nn.conv2d"),
    _op("conv3d", "conv", "conv", 3, "tf.nn.conv3d"),
    _op("convolution", "conv", "conv", None, "tf.nn.convolution"),
    _op("depthwise_conv2d", "conv", "conv", 2, "tf.nn.depthwise_conv2d"),
    _op("separable_conv2d", "conv", "conv", 2, "tf.nn.separable_conv2d"),
    _op("conv2d_transpose", "conv_transpose", "conv", 2, "tf.nn.conv2d_transpose"),
    _op("conv1d_transpose", "conv_transpose", "conv", 1, "tf.nn.conv1d_transpose"),
    _op("conv3d_transpose", "conv_transpose", "conv", 3, "tf.nn.conv3d_transpose"),
    _op("conv_transpose", "conv_transpose", "conv", None, "tf.nn.conv_transpose"),
    _op("atrous_conv2d", "conv", "conv", 2, "tf.nn.atrous_conv2d"),
    _op("atrous_conv2d_transpose", "conv_transpose", "conv", 2,
        "tf.nn.atrous_conv2d_transpose"),
    *(_op(f"{kind}_pool{n}d", f"{kind}_pool", "pool", n, f"tf.nn.{kind}_pool{n}d", kind == "max")
      for kind in ("max", "avg") for n in (1, 2, 3)),
    _op("max_pool", "max_pool", "pool", None, "tf.nn.max_pool", exact=True),
    _op("avg_pool", "avg_pool", "pool", None, "tf.nn.avg_pool"),
    _op("pool", "avg_pool", "pool", None, "tf.nn.pool"),
    _op("global_max_pool2d", "global_pool", "global", 2, "keras.layers.GlobalMaxPooling2D",
        exact=True),
    _op("global_avg_pool2d", "global_pool", "global", 2, "keras.layers.GlobalAveragePooling2D"),
    _op("zero_pad2d", "zero_pad", "pad", 2, "keras.layers.ZeroPadding2D", exact=True),
    _op("max_pool_with_argmax", "window_max", "pool", 2, "tf.nn.max_pool_with_argmax",
        exact=True),
    _op("dilation2d", "window_max", "pool", 2, "tf.nn.dilation2d", exact=True),
    _op("erosion2d", "window_max", "pool", 2, "tf.nn.erosion2d", exact=True),
)
_BY_NAME = {op.name: op for op in OPS}
NAMES = tuple(_BY_NAME)


def get(name):
    """The record of op ``name``."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no op named {name!r}; fastconv's ops are {', '.join(NAMES)}") from None


def samples():
    """``{label: (op, sample)}`` over every op's sample calls."""
    return {sample.label: (op, sample) for op in OPS for sample in op.samples}
