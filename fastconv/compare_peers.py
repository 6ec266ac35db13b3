"""``fastconv compare --peers tf,torch,ort,jax``: fastconv beside every library a user would
pick instead, on the CPU.

The layers (:data:`LAYERS`) are the seeds' MNIST layers and ResNet/MobileNet-style layers.
Each peer runs them the way its users would: TensorFlow (``tf.nn``) and JAX
(``lax.conv_general_dilated`` / ``lax.reduce_window`` under ``jax.jit``) channels-last,
ONNX Runtime (an ``InferenceSession`` per layer, weights as initialisers, so packed once)
channels-first, PyTorch (``torch.nn.functional`` under ``no_grad``) both contiguous NCHW and
``channels_last`` memory, of which the faster counts. fastconv runs the same layout as the
peer's (the faster one for torch), with plain calls (no prepared filters).

Padding is symmetric everywhere (PyTorch's ``padding=k // 2``; TF's SAME where it is the same
windows, explicit pads otherwise; SAME pooling only on odd sizes, where TF's SAME pads equally
on both sides), so that every library computes the same numbers and each row checks it: the
peer's output against fastconv's, to the suite's float32 tolerance.

Every peer runs in its own process together with fastconv (:func:`worker`): thread pools of
peers spin after a call (ONNX Runtime ~50 ms, OpenMP ~15 ms, TF's and XLA's Eigen pools), and
a spinning pool steals the cores from whoever runs next. Inside a process the two libraries
take turns, one sample each (a sample repeats the call for about 20 ms), with an untimed idle
wait after each; medians over the samples. The ratio is peer time / fastconv time: above 1,
fastconv is faster.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field

import numpy as np

from . import timing
from .compare import geometric_mean

#: Peer name -> the module it needs (a peer whose module is missing is skipped).
PEER_MODULES = {"tf": "tensorflow", "torch": "torch", "ort": "onnxruntime", "jax": "jax"}
PEER_NAMES = {"tf": "TensorFlow", "torch": "PyTorch", "ort": "ONNX Runtime", "jax": "JAX"}
#: Untimed idle after every sample (seconds): longer than any peer's pool spins after a call.
IDLE_SECONDS = 0.06
#: Largest difference from fastconv's output, relative to its largest magnitude (at least 1),
#: that counts as equal: float32 sums in another order differ by ~1e-6 of that here.
TOLERANCE = 1e-4


@dataclass(frozen=True)
class Layer:
    """One layer: ``kind`` conv / depthwise / max_pool / avg_pool on channels-last ``shape``;
    ``window`` the TF-layout filter shape (convs) or the pooling window; symmetric ``pad``."""

    name: str
    kind: str
    shape: tuple
    window: object
    stride: int = 1
    pad: int = 0
    relu: bool = False  # bias + relu fused (Keras' Conv2D(activation="relu"))

    def flops(self):
        """Multiply-adds x 2 (convs), or bytes read + written (pooling)."""
        n, h, w, c = self.shape
        if self.kind in ("max_pool", "avg_pool"):
            oh, ow = self.out_hw()
            return (n * h * w * c + n * oh * ow * c) * 4
        kh, kw, cin, k = self.window
        k = c * k if self.kind == "depthwise" else k
        oh, ow = self.out_hw()
        return 2 * n * oh * ow * k * kh * kw * (1 if self.kind == "depthwise" else cin)

    def out_hw(self):
        n, h, w, c = self.shape
        k = self.window if isinstance(self.window, int) else self.window[0]
        return tuple((size + 2 * self.pad - k) // self.stride + 1 for size in (h, w))

    @property
    def unit(self):
        return "GB/s" if self.kind in ("max_pool", "avg_pool") else "GFLOP/s"


LAYERS = (
    Layer("mnist_conv1_b64", "conv", (64, 28, 28, 1), (3, 3, 1, 32), 1, 1, relu=True),
    Layer("mnist_conv2_b1", "conv", (1, 13, 13, 32), (3, 3, 32, 64), relu=True),
    Layer("mnist_conv2_b64", "conv", (64, 13, 13, 32), (3, 3, 32, 64), relu=True),
    Layer("mnist_pool_b64", "max_pool", (64, 26, 26, 32), 2, 2),
    Layer("cifar_conv_b16", "conv", (16, 32, 32, 3), (3, 3, 3, 16), 1, 1),
    Layer("resnet3x3_64_56_b8", "conv", (8, 56, 56, 64), (3, 3, 64, 64), 1, 1),
    Layer("conv3x3_128_28_b8", "conv", (8, 28, 28, 128), (3, 3, 128, 128), 1, 1),
    Layer("conv1x1_256_64_56_b8", "conv", (8, 56, 56, 256), (1, 1, 256, 64)),
    Layer("conv3x3_s2_64_128_b8", "conv", (8, 56, 56, 64), (3, 3, 64, 128), 2, 1),
    Layer("stem7x7_s2_224_b8", "conv", (8, 224, 224, 3), (7, 7, 3, 64), 2, 3),
    Layer("conv3x3_512_4x4_b2", "conv", (2, 4, 4, 512), (3, 3, 512, 512), 1, 1),
    Layer("depthwise3x3_128_56_b8", "depthwise", (8, 56, 56, 128), (3, 3, 128, 1), 1, 1),
    Layer("depthwise3x3_s2_32_112_b8", "depthwise", (8, 112, 112, 32), (3, 3, 32, 1), 2, 1),
    Layer("max_pool3x3_s2_113_b8", "max_pool", (8, 113, 113, 64), 3, 2, 1),
    Layer("avg_pool3x3_s2_113_b8", "avg_pool", (8, 113, 113, 64), 3, 2, 1),
)


def arrays(layer):
    """The layer's float32 data, channels-last (x, filters, bias), seeded by its name."""
    rng = np.random.default_rng(sum(map(ord, layer.name)))
    x = rng.standard_normal(layer.shape).astype(np.float32)
    if layer.kind in ("max_pool", "avg_pool"):
        return x, None, None
    fan_in = int(np.prod(layer.window[:3]))
    w = (rng.standard_normal(layer.window) / math.sqrt(fan_in)).astype(np.float32)
    b = rng.standard_normal(layer.window[3] * (layer.shape[3] if layer.kind == "depthwise"
                                               else 1)).astype(np.float32)
    return x, w, (b if layer.relu else None)


# ----------------------------------------------------------------------------- callers
# Each returns call() -> output as a NumPy array in ``layout`` ("NHWC" or "NCHW"); inputs are
# converted beforehand, so only the library's own work is timed.

def _tf_padding(layer, n_spatial=2):
    """TF's padding for symmetric ``pad``: VALID, SAME where SAME pads the same, else explicit."""
    if layer.pad == 0:
        return "VALID"
    n, h, w, c = layer.shape
    k = layer.window if isinstance(layer.window, int) else layer.window[0]
    same = all((-(-size // layer.stride) - 1) * layer.stride + k - size == 2 * layer.pad
               for size in (h, w))
    return "SAME" if same else [[0, 0], [layer.pad] * 2, [layer.pad] * 2, [0, 0]]


def fastconv_call(layer, data, layout):
    import fastconv

    x, w, b = data
    fmt = layout
    if layout == "NCHW":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    padding = _tf_padding(layer)
    if isinstance(padding, list) and layout == "NCHW":
        padding = [padding[0], padding[3], padding[1], padding[2]]
    s = layer.stride
    if layer.kind == "conv":
        act = "relu" if layer.relu else None
        return lambda: fastconv.conv2d(x, w, s, padding, fmt, bias=b, activation=act)
    if layer.kind == "depthwise":
        strides = [1, s, s, 1] if layout == "NHWC" else [1, 1, s, s]
        return lambda: fastconv.depthwise_conv2d(x, w, strides, padding, fmt)
    pool = fastconv.max_pool2d if layer.kind == "max_pool" else fastconv.avg_pool2d
    return lambda: pool(x, layer.window, s, padding, fmt)


def _tf_call(layer, data, layout):
    import tensorflow as tf

    x, w, b = data
    tx = tf.constant(x)
    padding, s = _tf_padding(layer), layer.stride
    if layer.kind == "conv":
        tw, tb = tf.constant(w), (tf.constant(b) if b is not None else None)

        def run():
            y = tf.nn.conv2d(tx, tw, s, padding)
            return tf.nn.relu(tf.nn.bias_add(y, tb)) if tb is not None else y
    elif layer.kind == "depthwise":
        tw = tf.constant(w)

        def run():
            return tf.nn.depthwise_conv2d(tx, tw, [1, s, s, 1], padding)
    else:
        pool = tf.nn.max_pool2d if layer.kind == "max_pool" else tf.nn.avg_pool2d

        def run():
            return pool(tx, layer.window, s, padding)
    return lambda: run().numpy()


def _jax_call(layer, data, layout):
    import jax
    import jax.numpy as jnp
    from jax import lax

    x, w, b = data
    p, s = layer.pad, layer.stride
    pads = [(p, p), (p, p)]
    jx = jax.device_put(x)
    if layer.kind in ("conv", "depthwise"):
        groups = layer.shape[3] if layer.kind == "depthwise" else 1
        jw = jax.device_put(w.reshape(w.shape[0], w.shape[1], 1, -1) if groups > 1 else w)
        jb = jax.device_put(b) if b is not None else None

        @jax.jit
        def run(x, w):
            y = lax.conv_general_dilated(x, w, (s, s), pads, feature_group_count=groups,
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
            return jax.nn.relu(y + jb) if jb is not None else y
        return lambda: np.asarray(run(jx, jw).block_until_ready())
    k = layer.window
    dims, steps, window_pads = (1, k, k, 1), (1, s, s, 1), [(0, 0), (p, p), (p, p), (0, 0)]

    def max_pool(x):
        return lax.reduce_window(x, -jnp.inf, lax.max, dims, steps, window_pads)

    def avg_pool(x):  # over the real cells of each window, as TF's SAME average
        total = lax.reduce_window(x, 0.0, lax.add, dims, steps, window_pads)
        cells = lax.reduce_window(jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype), 0.0,
                                  lax.add, dims, steps, window_pads)
        return total / cells
    pool = jax.jit(max_pool if layer.kind == "max_pool" else avg_pool)
    return lambda: np.asarray(pool(jx).block_until_ready())


def _torch_call(layer, data, layout):
    import torch
    import torch.nn.functional as F

    x, w, b = data
    memory = torch.channels_last if layout == "NHWC" else torch.contiguous_format
    tx = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).contiguous(
        memory_format=memory)
    p, s = layer.pad, layer.stride

    def out(y):  # the layout fastconv is compared in, converted outside the timing
        return y.permute(0, 2, 3, 1) if layout == "NHWC" else y

    if layer.kind in ("conv", "depthwise"):
        groups = layer.shape[3] if layer.kind == "depthwise" else 1
        oihw = (w.transpose(2, 3, 0, 1) if groups > 1 else w.transpose(3, 2, 0, 1))
        tw = torch.from_numpy(np.ascontiguousarray(oihw)).contiguous(memory_format=memory)
        tb = torch.from_numpy(b) if b is not None else None

        def run():
            with torch.no_grad():
                y = F.conv2d(tx, tw, tb, s, p, 1, groups)
                return torch.relu_(y) if tb is not None else y
    elif layer.kind == "max_pool":
        def run():
            with torch.no_grad():
                return F.max_pool2d(tx, layer.window, s, p)
    else:
        def run():
            with torch.no_grad():
                return F.avg_pool2d(tx, layer.window, s, p, count_include_pad=False)
    return run, lambda y: out(y).numpy()


def _ort_call(layer, data, layout):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    x, w, b = data
    xc = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    p, s = layer.pad, layer.stride
    n, c, h, wd = xc.shape
    oh, ow = layer.out_hw()
    inits, nodes = [], []
    if layer.kind in ("conv", "depthwise"):
        groups = c if layer.kind == "depthwise" else 1
        oihw = w.transpose(2, 3, 0, 1) if groups > 1 else w.transpose(3, 2, 0, 1)
        inits.append(numpy_helper.from_array(np.ascontiguousarray(oihw), "w"))
        inputs = ["x", "w"]
        if b is not None:
            inits.append(numpy_helper.from_array(b, "b"))
            inputs.append("b")
        k_out = oihw.shape[0]
        nodes.append(helper.make_node("Conv", inputs, ["c" if layer.relu else "y"],
                                      kernel_shape=list(oihw.shape[2:]), strides=[s, s],
                                      pads=[p] * 4, group=groups))
        if layer.relu:
            nodes.append(helper.make_node("Relu", ["c"], ["y"]))
    else:
        k_out = c
        op = "MaxPool" if layer.kind == "max_pool" else "AveragePool"
        extra = {} if layer.kind == "max_pool" else {"count_include_pad": 0}
        nodes.append(helper.make_node(op, ["x"], ["y"], kernel_shape=[layer.window] * 2,
                                      strides=[s, s], pads=[p] * 4, **extra))
    graph = helper.make_graph(
        nodes, layer.name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, xc.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (n, k_out, oh, ow))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"x": xc})[0]


#: peer -> (layouts it is measured in, caller)
PEERS = {"tf": (("NHWC",), _tf_call), "jax": (("NHWC",), _jax_call),
         "ort": (("NCHW",), _ort_call), "torch": (("NCHW", "NHWC"), _torch_call)}


# ----------------------------------------------------------------------------- measuring

@dataclass
class Row:
    """One layer against one peer."""

    layer: str
    peer: str
    layout: str = ""  # the layout compared (the peer's faster one)
    fastconv_ms: float = math.nan
    peer_ms: float = math.nan
    ratio: float = math.nan  # peer / fastconv: above 1, fastconv is faster
    max_error: float = math.nan
    equal: bool = False
    rate: float = math.nan  # fastconv's GFLOP/s (convs) or GB/s (pooling)
    error: str = ""
    layouts: dict = field(default_factory=dict)  # layout -> [fastconv ms, peer ms]


def measure(layer, peer, repeat=7):
    """The row of ``layer`` against ``peer`` (in this process)."""
    from . import config

    config.COMPILE = "sync"  # the kernels, never the NumPy tier of first calls
    row = Row(layer.name, peer)
    data = arrays(layer)
    layouts, make = PEERS[peer]
    try:
        best = None
        for layout in layouts:
            ours = fastconv_call(layer, data, layout)
            made = make(layer, data, layout)
            theirs, convert = made if isinstance(made, tuple) else (made, np.asarray)
            want = np.asarray(ours())
            got = np.asarray(convert(theirs()))
            scale = max(1.0, float(np.abs(want).max()))
            error = float(np.abs(got - want).max()) / scale if got.shape == want.shape \
                else math.inf
            a, b = timing.time_pair(ours, theirs, repeat, idle=IDLE_SECONDS)
            row.layouts[layout] = [a * 1e3, b * 1e3]
            if best is None or b < best[2]:
                best = (layout, a, b, error)
        row.layout, a, b, row.max_error = best
        row.fastconv_ms, row.peer_ms, row.ratio = a * 1e3, b * 1e3, b / a
        row.equal = row.max_error <= TOLERANCE
        row.rate = layer.flops() / a / 1e9
    except Exception as exc:  # a peer that cannot run a layer: say so, keep going
        row.error = f"{type(exc).__name__}: {exc}"
    return row


def worker(peer, names, repeat):
    """Measure ``names`` against ``peer`` here and print one JSON row per line."""
    by_name = {layer.name: layer for layer in LAYERS}
    for name in names:
        print(json.dumps(asdict(measure(by_name[name], peer, repeat))), flush=True)


def available(peer):
    """Whether ``peer``'s module is installed (without importing it)."""
    return importlib.util.find_spec(PEER_MODULES[peer]) is not None


def run(peers, layers=LAYERS, repeat=7, progress=None):
    """Measure every layer against every peer, each peer in its own process.

    Returns ``(rows, skipped)``: the rows, and a message per peer that is not installed.
    """
    rows, skipped = [], []
    for peer in peers:
        if not available(peer):
            skipped.append(f"{PEER_NAMES[peer]} skipped: `pip install "
                           f"{PEER_MODULES[peer]}` to compare with it")
            continue
        command = [sys.executable, "-m", "fastconv.compare_peers", peer, str(repeat),
                   *[layer.name for layer in layers]]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", FASTCONV_COMPILE="sync")
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as child:
            for line in child.stdout:
                if line.startswith("{"):
                    rows.append(Row(**json.loads(line)))
                    if progress:
                        progress(f"{rows[-1].layer} vs {peer}")
        if child.returncode:
            skipped.append(f"{PEER_NAMES[peer]}: its process exited with {child.returncode}")
    return rows, skipped


def _ratios(rows, peer):
    return [r.ratio for r in rows if r.peer == peer and not r.error]


def format_table(rows, ceilings=None):
    """The side-by-side table: a line per layer, a column per peer (ratio peer / fastconv)."""
    peers = [p for p in PEERS if any(r.peer == p for r in rows)]
    by = {(r.layer, r.peer): r for r in rows}
    names = [layer.name for layer in LAYERS if any(r.layer == layer.name for r in rows)]
    head = f"{'layer':26s} {'NHWC ms':>8s} {'NCHW ms':>8s} {'rate':>16s}"
    head += "".join(f" {'vs ' + p:>12s}" for p in peers) + "  equal"
    lines = [head, "-" * len(head)]
    for name in names:
        layer = next(x for x in LAYERS if x.name == name)
        ours = {r.layout: r.fastconv_ms for r in rows if r.layer == name and not r.error}
        mine = by.get((name, peers[0])) if peers else None
        rate = ""
        if mine and not mine.error:
            rate = f"{mine.rate:.0f} {layer.unit}"
            if ceilings and layer.unit == "GFLOP/s":
                rate += f" {100 * mine.rate / ceilings['sgemm_gflops']:.0f}%"
            elif ceilings:
                rate += f" {100 * mine.rate / ceilings['copy_gbps']:.0f}%"
        cells, equal = [], True
        for p in peers:
            r = by.get((name, p))
            if r is None or r.error:
                cells.append(f" {'error' if r else '-':>12s}")
                continue
            mark = ("" if r.equal else "!") + ("c" if p == "torch" and r.layout == "NHWC" else "")
            cells.append(f" {r.ratio:12.2f}{mark}" if not mark else f" {r.ratio:11.2f}{mark}")
            equal &= r.equal
        times = "".join(f" {ours[x]:8.2f}" if x in ours else f" {'-':>8s}"
                        for x in ("NHWC", "NCHW"))
        lines.append(f"{name:26s}{times} {rate:>16s}" + "".join(cells)
                     + f"  {'yes' if equal else 'NO'}")
    lines.append("-" * len(head))
    means = "".join(f" {geometric_mean(_ratios(rows, p)):12.2f}" for p in peers)
    worst = "".join(f" {min(_ratios(rows, p), default=math.nan):12.2f}" for p in peers)
    pad = " " * (26 + 18 + 17)
    lines.append(f"{'geometric mean':{len(pad)}s}" + means)
    lines.append(f"{'worst':{len(pad)}s}" + worst)
    notes = ["ratio = peer ms / fastconv ms (> 1: fastconv faster), both in the layout the "
             "peer runs: TF, JAX NHWC; ONNX Runtime NCHW; PyTorch the faster of NCHW and "
             "channels_last (c: channels_last, fastconv NHWC); !: outputs differ"]
    errors = [f"{r.layer} vs {r.peer}: {r.error}" for r in rows if r.error]
    return "\n".join(lines + notes + errors)


def plot(rows, path):
    """Grouped horizontal bars: per layer, one bar per peer (ratio, log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peers = [p for p in PEERS if any(r.peer == p for r in rows)]
    names = [layer.name for layer in LAYERS if any(r.layer == layer.name for r in rows)]
    by = {(r.layer, r.peer): r for r in rows}
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.45 * len(names)))
    height = 0.8 / max(1, len(peers))
    for i, peer in enumerate(peers):
        ys = [len(names) - 1 - j + (i - (len(peers) - 1) / 2) * height for j in range(len(names))]
        values = [by[(n, peer)].ratio if (n, peer) in by else math.nan for n in names]
        ax.barh(ys, values, height=height, label=PEER_NAMES[peer])
    ax.axvline(1.0, color="black", linewidth=1.2)
    ax.set_xscale("log")
    ax.set_yticks(range(len(names))[::-1], names, fontsize=8)
    ax.set_xlabel("peer time / fastconv time (log scale); right of the line = fastconv faster")
    ax.legend(fontsize=8)
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":  # the worker process of :func:`run`
    worker(sys.argv[1], sys.argv[3:], int(sys.argv[2]))
