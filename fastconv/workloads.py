"""The benchmark workloads: one list of named cases shared by every benchmark.

``fastconv compare``, the asv suites (``benchmarks/bench_*.py``) and the pytest-benchmark file
(``benchmarks/test_speed.py``) all read :data:`CASES`, so a layer added here shows up everywhere.

A :class:`Case` is one call of one public op (or the seeds' small MNIST network) on fixed shapes.
Shapes and options are written once, channels-last, the way ``tf.nn`` takes them; a case listed
with the ``"channels_first"`` layout also runs on transposed data with ``data_format="NCHW"``
(``NCW``, ``NCDHW``). TensorFlow always runs channels-last (its CPU kernels refuse
channels-first), on the same numbers, and its result is transposed back for the comparison.

Each case knows its work: floating-point operations for convolutions (2 per multiply-add) and
bytes moved (input read + output written) for pooling and padding, so results can be shown as
GFLOP/s or GB/s against the machine's ceilings (:mod:`fastconv.timing`).

Importing this module imports neither Numba nor TensorFlow.

Examples
--------
>>> from fastconv import workloads
>>> case = workloads.get("mnist_conv1_same_b1")
>>> case.op, case.shapes["input"], case.unit
('conv2d', (1, 28, 28, 1), 'flop')
>>> call, to_numpy = workloads.prepare(case, "fastconv")
>>> to_numpy(call()).shape
(1, 28, 28, 32)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from math import prod

import numpy as np

from .ops import OPS
from .tf_reference import import_tensorflow  # noqa: F401  (the CLI and benchmarks call it here)

LAYOUTS = ("channels_last", "channels_first")
BACKENDS = ("fastconv", "tensorflow")
DTYPES = ("float32", "float64")

#: Issue 3's goals table: key -> (description, minimum speedup vs TF, minimum fraction of the
#: machine ceiling or None). Each case lists the goals it counts towards.
GOALS = {
    "every_conv": ("every conv layer", 1.0, None),
    "few_channels": ("layers with <= 4 input channels", 3.0, None),
    "large_3x3": ("large 3x3 layers (vs sgemm)", 1.2, 0.75),
    "1x1_strided": ("1x1 and strided layers", 1.2, None),
    "other_conv": ("depthwise, conv1d, conv3d, conv2d_transpose", 1.0, None),
    "mnist_cnn_b1": ("batch-1 seed MNIST CNN (conv-pool-conv-pool)", 3.0, None),
    "pooling": ("max/avg pooling 1d/2d/3d", 2.5, None),
    "pool_bandwidth": ("pooling on tens of MB (vs parallel copy)", 2.5, 0.70),
}

_CONV_OPS = {op.name for op in OPS if op.kind == "conv"}
_POOL_OPS = {op.name for op in OPS if op.kind == "pool" and op.n_spatial is not None}
_GLOBAL_OPS = {op.name for op in OPS if op.kind == "global"}
_MORPHOLOGY_OPS = {"dilation2d", "erosion2d"}
_DATA_FORMATS = {1: ("NWC", "NCW"), 2: ("NHWC", "NCHW"), 3: ("NDHWC", "NCDHW")}


@dataclass(frozen=True)
class Case:
    """One benchmark workload.

    Attributes
    ----------
    name : str
        Unique, used as the asv parameter and the pytest-benchmark group.
    op : str
        The fastconv function called (``tf.nn`` has the same name), or ``"mnist_cnn"``.
    shapes : dict
        Array argument name -> channels-last shape (TF's layouts for filters).
    options : dict
        The other arguments, as ``tf.nn`` names them (``strides`` as an int or spatial tuple),
        plus fastconv's ``bias`` (bool: add one) and ``activation``.
    tag : {"seed", "standard"}
        Seed workloads (../shared/SEEDS.md) form the ``--quick`` subset.
    goals : tuple of str
        Keys of :data:`GOALS` this case counts towards.
    layouts : tuple of str
        ``"channels_last"`` and/or ``"channels_first"``.
    """

    name: str
    op: str
    shapes: dict
    options: dict = field(default_factory=dict)
    tag: str = "standard"
    goals: tuple = ()
    layouts: tuple = ("channels_last",)

    @property
    def family(self):
        """``"conv"``, ``"pool"`` (windowed and global pooling, zero padding) or ``"network"``."""
        if self.op in _CONV_OPS:
            return "conv"
        return "network" if self.op == "mnist_cnn" else "pool"

    @property
    def n_spatial(self):
        return len(self.shapes["input"]) - 2

    @property
    def unit(self):
        """``"flop"`` when :attr:`work` counts operations, ``"byte"`` when it counts bytes."""
        return "byte" if self.family == "pool" else "flop"

    @property
    def in_shape(self):
        return self.shapes["input"]

    def out_shape(self):
        """Channels-last output shape (computed by fastconv's own shape rules)."""
        return _output_shape(self)

    def work(self, dtype="float32"):
        """FLOPs (convolutions, network) or bytes read + written (pooling) per call."""
        if self.family == "pool":
            return (prod(self.in_shape) + prod(self.out_shape())) * np.dtype(dtype).itemsize
        return _flops(self)

    def data_format(self, layout):
        return _DATA_FORMATS[self.n_spatial][layout == "channels_first"]

    def describe(self, layout="channels_last"):
        """A short human-readable shape, e.g. ``1x28x28x1 -> 32 3x3 SAME relu``."""
        shape = "x".join(map(str, _to_layout(self.in_shape, layout)))
        o = self.options
        if self.op == "mnist_cnn":
            return f"{shape} conv32-pool-conv64-pool"
        if self.family == "conv":
            window = "x".join(map(str, self.shapes[_filter_name(self.op)][:self.n_spatial]))
            out_channels = self.out_shape()[-1]
            stride = o.get("strides", o.get("stride", 1))
            text = f"{shape} -> {out_channels} {window}"
            text += f"/{_window_text(stride)}" if _window_text(stride) != "1" else ""
            text += f" {o['padding']}"
            return text + (f" {o['activation']}" if o.get("activation") else "")
        if self.op in _MORPHOLOGY_OPS:
            window = "x".join(map(str, self.shapes["filters"][:2]))
            return f"{shape} {window}/{_window_text(o['strides'])} {o['padding']}"
        if self.op in _POOL_OPS:
            window = "x".join(map(str, _spatial(o["ksize"], self.n_spatial)))
            return f"{shape} {window}/{_window_text(o['strides'])} {o['padding']}"
        if self.op == "zero_pad2d":
            return f"{shape} pad {o['padding']}"
        return shape


def _window_text(value):
    return "x".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def _filter_name(op):
    return "filter" if op == "depthwise_conv2d" else "filters"


# ----------------------------------------------------------------------------- the cases

def _conv(name, input, filters, strides=1, padding="SAME", *, op="conv2d", tag="standard",
          goals=(), layouts=("channels_last",), bias=False, activation=None, **extra):
    options = {"stride" if op == "conv1d" else "strides": strides, "padding": padding, **extra}
    if bias:
        options["bias"] = True
    if activation:
        options["activation"] = activation
    auto = ("every_conv",) + (("few_channels",) if input[-1] <= 4 else ())
    if op in ("depthwise_conv2d", "conv2d_transpose", "conv1d", "conv3d"):
        auto += ("other_conv",)
    shapes = {"input": tuple(input), _filter_name(op): tuple(filters)}
    return Case(name, op, shapes, options, tag, auto + tuple(goals), layouts)


def _pool(name, op, input, ksize, strides, padding="VALID", *, tag="standard", goals=(),
          layouts=("channels_last",)):
    options = {"ksize": ksize, "strides": strides, "padding": padding}
    return Case(name, op, {"input": tuple(input)}, options, tag, ("pooling",) + tuple(goals),
                layouts)


_BOTH = LAYOUTS  # seed MNIST layers run channels-last (Keras) and channels-first (PyTorch)


def _mnist_layers():
    """The seed MNIST CNN layers at batch 1 and 64 (Keras Conv2D: bias + relu fused)."""
    cases = []
    for batch in (1, 64):
        b = f"_b{batch}"
        keras = dict(op="conv2d", tag="seed", layouts=_BOTH, bias=True, activation="relu")
        cases += [
            _conv("mnist_conv1_same" + b, (batch, 28, 28, 1), (3, 3, 1, 32), 1, "SAME", **keras),
            _conv("mnist_conv1_valid" + b, (batch, 28, 28, 1), (3, 3, 1, 32), 1, "VALID", **keras),
            _conv("mnist_conv2_same" + b, (batch, 14, 14, 32), (3, 3, 32, 64), 1, "SAME", **keras),
            _conv("mnist_conv2_valid" + b, (batch, 26, 26, 32), (3, 3, 32, 64), 1, "VALID",
                  **keras),
            _pool("mnist_pool1" + b, "max_pool2d", (batch, 28, 28, 32), 2, 2, tag="seed",
                  layouts=_BOTH),
            _pool("mnist_pool2" + b, "max_pool2d", (batch, 26, 26, 64), 2, 2, tag="seed",
                  layouts=_BOTH),
        ]
    return cases


def _seed_cases():
    cases = _mnist_layers()
    cases += [
        # Seed 002: a 427x640 RGB photo through Conv2D(32, 3, 'same', relu) and MaxPool2D(2).
        _conv("photo_conv", (1, 427, 640, 3), (3, 3, 3, 32), 1, "SAME", tag="seed",
              bias=True, activation="relu"),
        _pool("photo_pool", "max_pool2d", (1, 427, 640, 32), 2, 2, tag="seed"),
        # Seed 004: strided conv 28 -> 13 and the pooling examples checked by hand there.
        _conv("seed004_conv_stride2", (1, 28, 28, 1), (3, 3, 1, 32), 2, "VALID", tag="seed",
              goals=("1x1_strided",)),
        _pool("seed004_max1d", "max_pool1d", (1, 10, 1), 2, 1, tag="seed"),
        _pool("seed004_avg1d", "avg_pool1d", (1, 10, 1), 2, 1, tag="seed"),
        _pool("seed004_max2d_5x5", "max_pool2d", (1, 5, 5, 1), 2, 1, tag="seed"),
        _pool("seed004_avg2d_5x5", "avg_pool2d", (1, 5, 5, 1), 2, 1, tag="seed"),
        _pool("seed004_max2d_5x5x3", "max_pool2d", (1, 5, 5, 3), 2, 2, tag="seed"),
        _pool("seed004_avg2d_5x5x3", "avg_pool2d", (1, 5, 5, 3), 2, 2, tag="seed"),
        _pool("seed004_max2d_28x28x3", "max_pool2d", (1, 28, 28, 3), 3, 2, tag="seed"),
        _pool("seed004_avg2d_28x28x3", "avg_pool2d", (1, 28, 28, 3), 3, 2, tag="seed"),
        Case("seed004_zero_pad", "zero_pad2d", {"input": (1, 28, 28, 1)}, {"padding": 1},
             tag="seed"),
        # Seed 001: the MNIST CNN's conv-pool-conv-pool at batch 1, as one latency case.
        Case("mnist_cnn_b1", "mnist_cnn",
             {"input": (1, 28, 28, 1), "filters1": (3, 3, 1, 32), "bias1": (32,),
              "filters2": (3, 3, 32, 64), "bias2": (64,)},
             tag="seed", goals=("mnist_cnn_b1",), layouts=_BOTH),
    ]
    return cases


def _standard_cases():
    big = ("pool_bandwidth",)
    return [
        # Issue 3's standard layers (ResNet/VGG-like shapes).
        _conv("conv3x3_64_56_b8", (8, 56, 56, 64), (3, 3, 64, 64), goals=("large_3x3",),
              layouts=_BOTH),
        _conv("conv3x3_128_28_b8", (8, 28, 28, 128), (3, 3, 128, 128), goals=("large_3x3",)),
        _conv("conv1x1_256_64_56_b8", (8, 56, 56, 256), (1, 1, 256, 64), goals=("1x1_strided",),
              layouts=_BOTH),
        _conv("conv3x3_s2_64_128_56_b8", (8, 56, 56, 64), (3, 3, 64, 128), 2,
              goals=("1x1_strided",)),
        _conv("conv7x7_s2_stem_224_b8", (8, 224, 224, 3), (7, 7, 3, 64), 2,
              goals=("1x1_strided",)),
        _conv("depthwise3x3_128_56_b8", (8, 56, 56, 128), (3, 3, 128, 1), op="depthwise_conv2d"),
        _conv("depthwise3x3_s2_32_112_b8", (8, 112, 112, 32), (3, 3, 32, 1), 2,
              op="depthwise_conv2d"),
        _conv("conv1d_k5_64_1024_b16", (16, 1024, 64), (5, 64, 64), op="conv1d"),
        _conv("conv3d_3x3x3_32_16x32x32_b2", (2, 16, 32, 32, 32), (3, 3, 3, 32, 32), op="conv3d"),
        _conv("conv2d_transpose_s2_64_32_28_b8", (8, 28, 28, 64), (3, 3, 32, 64), 2,
              op="conv2d_transpose", output_shape=(8, 56, 56, 32)),
        # Pooling on tensors of tens of MB (float32), to measure bandwidth.
        _pool("max_pool2d_2x2_112_b16", "max_pool2d", (16, 112, 112, 32), 2, 2, goals=big,
              layouts=_BOTH),
        _pool("avg_pool2d_2x2_112_b16", "avg_pool2d", (16, 112, 112, 32), 2, 2, goals=big),
        _pool("max_pool2d_3x3_s2_112_b8", "max_pool2d", (8, 112, 112, 64), 3, 2, "SAME",
              goals=big),
        _pool("max_pool1d_2_8192_b32", "max_pool1d", (32, 8192, 32), 2, 2, goals=big),
        _pool("avg_pool1d_2_8192_b32", "avg_pool1d", (32, 8192, 32), 2, 2, goals=big),
        _pool("max_pool3d_2_32x64x64_b4", "max_pool3d", (4, 32, 64, 64, 16), 2, 2, goals=big),
        _pool("avg_pool3d_2_32x64x64_b4", "avg_pool3d", (4, 32, 64, 64, 16), 2, 2, goals=big),
        # The rest of tf.nn's surface (issue 14): EfficientNet's fused swish, the argmax
        # pooling of SegNet-style decoders, grayscale morphology, dilated pooling.
        _conv("conv3x3_swish_40_28_b8", (8, 28, 28, 40), (3, 3, 40, 80), bias=True,
              activation="silu"),
        _conv("conv2d_transpose_grouped_gelu_28_b8", (8, 28, 28, 64), (3, 3, 16, 64), 2,
              op="conv2d_transpose", output_shape=(8, 56, 56, 64), bias=True,
              activation="gelu"),
        _pool("max_pool_with_argmax_2x2_112_b8", "max_pool_with_argmax", (8, 112, 112, 32), 2,
              2, goals=big),
        Case("dilation2d_3x3_56_b8", "dilation2d", {"input": (8, 56, 56, 32),
                                                     "filters": (3, 3, 32)},
             {"strides": 1, "padding": "SAME", "data_format": "NHWC", "dilations": 1},
             layouts=_BOTH),
        Case("global_avg_pool_56_b16", "global_avg_pool2d", {"input": (16, 56, 56, 256)}),
        Case("global_max_pool_56_b16", "global_max_pool2d", {"input": (16, 56, 56, 256)}),
    ]


CASES: tuple[Case, ...] = tuple(_seed_cases() + _standard_cases())
_BY_NAME = {case.name: case for case in CASES}
assert len(_BY_NAME) == len(CASES), "case names must be unique"


def get(name):
    """Return the case called ``name``."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no workload named {name!r}; see fastconv.workloads.CASES") from None


def select(ops=None, quick=False, names=None, family=None):
    """Return the cases matching every filter given.

    Parameters
    ----------
    ops : iterable of str, optional
        Op names (``conv2d``, ``max_pool2d``, ...) or families (``conv``, ``pool``,
        ``network``).
    quick : bool
        Only the seed workloads.
    names : iterable of str, optional
        Case names, or shell-style patterns (``"mnist_*"``).
    family : str, optional
        One family.

    Examples
    --------
    >>> from fastconv import workloads
    >>> [c.name for c in workloads.select(ops=["max_pool1d"], quick=True)]
    ['seed004_max1d']
    """
    from fnmatch import fnmatchcase

    chosen = []
    for case in CASES:
        if quick and case.tag != "seed":
            continue
        if ops and not ({case.op, case.family} & set(ops)):
            continue
        if family and case.family != family:
            continue
        if names and not any(fnmatchcase(case.name, pattern) for pattern in names):
            continue
        chosen.append(case)
    return chosen


# ----------------------------------------------------------------------------- work and shapes

def _output_shape(case):
    from . import shapes as shape_rules

    o = case.options
    n = case.n_spatial
    batch, spatial, channels = case.in_shape[0], case.in_shape[1:-1], case.in_shape[-1]
    if case.op == "mnist_cnn":
        size = spatial[0]
        for _ in range(2):
            size = shape_rules.conv_output_size(size, 3, 1, "VALID")
            size = shape_rules.conv_output_size(size, 2, 2, "VALID")
        return (batch, size, size, 64)
    if case.op == "conv2d_transpose":
        return tuple(o["output_shape"])
    if case.op in _GLOBAL_OPS:
        return (batch, channels)
    if case.op == "zero_pad2d":
        p = o["padding"]
        return (batch,) + tuple(s + 2 * p for s in spatial) + (channels,)
    if case.op in _MORPHOLOGY_OPS:
        kernel, rates = case.shapes["filters"][:2], _spatial(o.get("dilations", 1), n)
        strides = _spatial(o["strides"], n)
        return (batch,) + tuple(shape_rules.conv_output_size(s, k, st, o["padding"], r)
                                for s, k, st, r in zip(spatial, kernel, strides, rates)) + \
            (channels,)
    if case.family == "conv":
        w = case.shapes[_filter_name(case.op)]
        kernel = w[:n]
        out_channels = channels * w[-1] if case.op == "depthwise_conv2d" else w[-1]
    else:
        kernel = _spatial(o["ksize"], n)
        out_channels = channels
    strides = _spatial(o.get("strides", o.get("stride")), n)
    sizes = tuple(shape_rules.conv_output_size(s, k, st, o["padding"])
                  for s, k, st in zip(spatial, kernel, strides))
    return (batch,) + sizes + (out_channels,)


def _spatial(value, n):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def _flops(case):
    """2 x multiply-adds of the convolution(s); bias and activation are not counted."""
    if case.op == "mnist_cnn":
        batch = case.in_shape[0]
        return 2 * batch * (26 * 26 * 32 * 9 * 1 + 11 * 11 * 64 * 9 * 32)
    w = case.shapes[_filter_name(case.op)]
    if case.op == "conv2d_transpose":  # every input pixel scatters a full filter
        return 2 * prod(case.in_shape) * prod(w[:-1])
    out = case.out_shape()
    taps = prod(w[:-2])
    if case.op == "depthwise_conv2d":
        return 2 * prod(out) * taps
    groups = case.in_shape[-1] // w[-2]
    return 2 * prod(out) * taps * (case.in_shape[-1] // groups)


# ----------------------------------------------------------------------------- data and calls

def make_arrays(case, dtype="float32"):
    """Return the case's array arguments (channels-last), seeded by its name, uniform in [-1, 1]."""
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    arrays = {name: rng.uniform(-1, 1, shape).astype(dtype) for name, shape in case.shapes.items()}
    if case.options.get("bias"):
        arrays["bias"] = rng.uniform(-1, 1, case.out_shape()[-1]).astype(dtype)
    return arrays


def _to_layout(shape, layout):
    shape = tuple(shape)
    return shape if layout == "channels_last" else (shape[0], shape[-1]) + shape[1:-1]


def to_channels_first(array):
    return np.ascontiguousarray(np.moveaxis(array, -1, 1))


def to_channels_last(array):
    return np.ascontiguousarray(np.moveaxis(array, 1, -1))


def prepare(case, backend, dtype="float32", layout="channels_last", device="cpu", arrays=None):
    """Return ``(call, to_numpy)`` for one backend on the case's inputs.

    ``call()`` runs the op once on inputs prepared beforehand (transposed, converted to TF
    tensors or copied to the GPU), so timing it measures the op alone. ``to_numpy(result)``
    returns the result as a channels-last NumPy array, for comparison.

    Parameters
    ----------
    case : Case
    backend : {"fastconv", "tensorflow"}
    dtype : {"float32", "float64"}
    layout : {"channels_last", "channels_first"}
        fastconv's data layout. TensorFlow always runs channels-last (its CPU refuses NCHW).
    device : {"cpu", "cuda"}
        fastconv's device; ``"cuda"`` copies inputs to the GPU first and synchronises after
        each call. TensorFlow runs on the CPU, as :mod:`fastconv.tf_reference` computes the op
        (exact rewrites in TF ops where TF's CPU lacks a kernel, e.g. float64 3-D pooling).
    arrays : dict, optional
        From :func:`make_arrays` (built here when omitted).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    arrays = make_arrays(case, dtype) if arrays is None else arrays
    if backend == "tensorflow":
        return _prepare_tf(case, arrays)
    if backend != "fastconv":
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return _prepare_fastconv(case, arrays, layout, device)


def _prepare_fastconv(case, arrays, layout, device):
    import fastconv

    first = layout == "channels_first"
    data = dict(arrays)
    if first:
        data["input"] = to_channels_first(data["input"])
    options = {k: v for k, v in case.options.items() if k != "bias"}
    options["data_format"] = case.data_format(layout)
    if case.op == "conv2d_transpose" and first:
        options["output_shape"] = _to_layout(options["output_shape"], layout)
    sync = None
    if device == "cuda":
        from numba import cuda

        data = {name: cuda.to_device(value) for name, value in data.items()}
        sync = cuda.synchronize
    if case.op == "mnist_cnn":
        fmt = options["data_format"]

        def run():
            y = fastconv.conv2d(data["input"], data["filters1"], 1, "VALID", fmt,
                                bias=data["bias1"], activation="relu", device=device)
            y = fastconv.max_pool2d(y, 2, 2, "VALID", fmt, device=device)
            y = fastconv.conv2d(y, data["filters2"], 1, "VALID", fmt, bias=data["bias2"],
                                activation="relu", device=device)
            return fastconv.max_pool2d(y, 2, 2, "VALID", fmt, device=device)
    else:
        function = getattr(fastconv, case.op)

        def run():
            return function(**data, **options, device=device)

    def synced():
        out = run()
        sync()
        return out

    call = run if sync is None else synced

    def to_numpy(out):
        if isinstance(out, tuple):  # (output, argmax): compared as one array, exactly
            return _joined(tuple(to_numpy(part) for part in out))
        host = out.copy_to_host() if hasattr(out, "copy_to_host") else np.asarray(out)
        return to_channels_last(host) if first and host.ndim > 2 else host

    return call, to_numpy


def _prepare_tf(case, arrays):
    """TensorFlow's call of the case: the op table's TF function (:mod:`.tf_reference`), its
    inputs made tensors beforehand, so ``call()`` runs TF ops only (channels-last)."""
    from . import ops

    if case.op == "mnist_cnn":
        call = _tf_mnist_cnn(arrays)
    else:
        options = {k: v for k, v in case.options.items() if k != "bias"}
        call = ops.get(case.op).tf_function.prepare(**arrays, **options)

    def to_numpy(out):
        if isinstance(out, tuple):
            return _joined(tuple(part.numpy() for part in out))
        return out.numpy()

    return call, to_numpy


def _joined(parts):
    """``(values, indices)`` as one float64 array (indices below 2**53 stay exact)."""
    return np.concatenate([np.asarray(part, np.float64).ravel() for part in parts])


def _tf_mnist_cnn(arrays):
    """The seed network's conv-pool-conv-pool on tf_reference's core (channels-last tensors)."""
    from .tf_reference import conv, pool_windows

    tf = import_tensorflow()
    t = {name: tf.constant(value) for name, value in arrays.items()}

    def call():
        y = conv(t["input"], t["filters1"], (1, 1), "VALID", (1, 1), t["bias1"], "relu")
        y = pool_windows("max", y, (2, 2), (2, 2), "VALID")
        y = conv(y, t["filters2"], (1, 1), "VALID", (1, 1), t["bias2"], "relu")
        return pool_windows("max", y, (2, 2), (2, 2), "VALID")

    return call
