"""Check and time fastconv's CUDA kernels on a real GPU; print Markdown tables.

Sections (each can be skipped):

1. **equality**: every op over a grid of layouts, dtypes, strides, dilations, paddings, groups and
   activations, plus large shapes, on device-resident data, compared with fastconv's CPU result
   (and with PyTorch/cuDNN, TF32 off, where torch is installed and the op exists there); the
   interop round trips (numba/CuPy/torch in -> same kind out, NumPy with ``device="cuda"``).
2. **conv speed**: the seed MNIST layers, the photo layer and a ResNet 3x3 64->64 56x56 batch-32
   layer, in NHWC and NCHW, fastconv vs cuDNN through PyTorch (TF32 off, cudnn.benchmark on),
   device-resident data, CUDA events, medians.
3. **pool speed**: max/avg pooling on > 64 MB tensors in GB/s, against the measured
   device-to-device copy bandwidth.
4. **overhead**: microseconds per call of a tiny op (argument handling + launch), and of an
   empty numba kernel launch for reference.
5. ``--sweep``: conv tile shapes tried on the ResNet layer, to choose ``FASTCONV_CUDA_CONV_*``.

Run ``python benchmarks/gpu_check.py`` on a GPU machine (``--output results.md`` also writes
the tables to a file, for ``benchmarks/RESULTS.md``). ``--smoke`` runs every section on tiny
shapes with tiny tiles: under ``NUMBA_ENABLE_CUDASIM=1`` it checks that the script works
without a GPU (its timings then mean nothing).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import math
import os
import platform
import statistics
import sys
import time
import traceback

import numpy as np

SEED = 1234
TINY_TILES = {"CUDA_THREADS_PER_BLOCK": 4, "CUDA_CONV_TILE_H": 2, "CUDA_CONV_TILE_W": 3,
              "CUDA_CONV_TILE_K": 4, "CUDA_CONV_TILE_C": 2, "CUDA_CONV_THREAD_PIXELS": 2,
              "CUDA_CONV_THREAD_K": 2}
#: Cap on calls per timed sample (the smoke run sets 2: the simulator's events time nothing).
MAX_CALLS = [10000]
TILE_NAMES = ("CUDA_CONV_TILE_H", "CUDA_CONV_TILE_W", "CUDA_CONV_TILE_K", "CUDA_CONV_TILE_C",
              "CUDA_CONV_THREAD_PIXELS", "CUDA_CONV_THREAD_K")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny shapes and tiles (works under NUMBA_ENABLE_CUDASIM=1)")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["equality", "conv", "pool", "overhead"],
                        help="skip a section (repeatable)")
    parser.add_argument("--sweep", action="store_true",
                        help="also time conv tile shapes on the ResNet layer")
    parser.add_argument("--repeat", type=int, default=15,
                        help="timed samples per measurement (the median is reported)")
    parser.add_argument("--min-ms", type=float, default=20.0,
                        help="each sample runs the op enough times to last this long")
    parser.add_argument("--output", metavar="FILE", help="also write the tables to FILE")
    parser.add_argument("--no-torch", action="store_true", help="do not compare with PyTorch")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- reporting

class Report:
    """Collects Markdown sections; prints each as it completes."""

    def __init__(self):
        self.parts = []

    def text(self, line=""):
        print(line, flush=True)
        self.parts.append(line)

    def table(self, title, header, rows):
        self.text(f"\n### {title}\n")
        self.text("| " + " | ".join(header) + " |")
        self.text("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            self.text("| " + " | ".join(str(cell) for cell in row) + " |")

    def write(self, path):
        with open(path, "w") as handle:
            handle.write("\n".join(self.parts) + "\n")


def environment(torch):
    from numba import cuda

    import fastconv
    from fastconv import config

    device = cuda.get_current_device()
    name = getattr(device, "name", b"CUDA simulator")
    name = name.decode() if isinstance(name, bytes) else str(name)
    torch_line = (f"{torch.__version__} (cuDNN {torch.backends.cudnn.version()}, TF32 off)"
                  if torch else "not used")
    lines = [f"- device: {name} (compute capability "
             f"{'.'.join(map(str, device.compute_capability))})",
             f"- date: {datetime.date.today().isoformat()}",
             f"- simulator: {os.environ.get('NUMBA_ENABLE_CUDASIM') == '1'}",
             f"- python {platform.python_version()}, numpy {np.__version__}, "
             f"numba {_version('numba')}, numba-cuda {_version('numba_cuda')}, "
             f"fastconv {fastconv.__version__}",
             f"- torch: {torch_line}",
             "- tiles: " + ", ".join(f"{n.replace('CUDA_CONV_', '')}={getattr(config, n)}"
                                     for n in TILE_NAMES)]
    return lines


def _version(module):
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001 - informational only
        return "?"


def load_torch(disabled, smoke):
    if disabled or smoke or importlib.util.find_spec("torch") is None:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    return torch


# ----------------------------------------------------------------------------- timing

def _time_events(call, synchronize, new_event, repeat, min_ms):
    """Median milliseconds per call, timed with CUDA events around back-to-back calls.

    One timed call sizes the batch so a sample lasts at least ``min_ms``.
    """
    call()
    synchronize()
    start, end = new_event(), new_event()
    start.record()
    call()
    end.record()
    end.synchronize()
    number = max(1, min(MAX_CALLS[0], math.ceil(min_ms / max(start.elapsed_time(end), 1e-3))))
    samples = []
    for _ in range(repeat):
        start.record()
        for _ in range(number):
            call()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / number)
    return statistics.median(samples)


def _time_gpu(call, repeat, min_ms):
    """Median milliseconds per fastconv call (numba's CUDA events)."""
    from numba import cuda

    return _time_events(call, cuda.synchronize, cuda.event, repeat, min_ms)


def _time_torch(torch, call, repeat, min_ms):
    """Median milliseconds per call with torch's CUDA events."""
    return _time_events(call, torch.cuda.synchronize,
                        lambda: torch.cuda.Event(enable_timing=True), repeat, min_ms)


# ----------------------------------------------------------------------------- equality

def _rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _nhwc(shape, channels_first):
    """A channels-last shape in the chosen layout."""
    return (shape[0], shape[-1], *shape[1:-1]) if channels_first else tuple(shape)


def equality_cases(smoke):
    """(name, op, input shape (channels-last), filter shape or None, kwargs, reduction length)."""
    cases = []
    conv_sizes = {1: (13,), 2: (9, 11), 3: (5, 6, 7)} if not smoke else \
        {1: (7,), 2: (5, 6), 3: (3, 4, 4)}
    kernels = {1: (3,), 2: (3, 2), 3: (2, 3, 2)}
    for n in (1, 2, 3):
        for padding in ("SAME", "VALID", "explicit"):
            for stride, dilation in ((1, 1), (2, 1), (1, 2)):
                for groups in (1, 2):
                    if smoke and (stride, dilation, groups) not in ((1, 1, 1), (2, 1, 2)):
                        continue
                    group_in, group_out = (3, 5) if smoke else (5, 12)
                    pad = tuple((1, 2) for _ in range(n)) if padding == "explicit" else padding
                    kwargs = dict(strides=stride, padding=pad, dilations=dilation,
                                  bias=True, activation=("relu", "sigmoid", "tanh")[n - 1])
                    cases.append((f"conv{n}d {padding} s{stride} d{dilation} g{groups}",
                                  f"conv{n}d", (2, *conv_sizes[n], group_in * groups),
                                  kernels[n] + (group_in, group_out * groups), kwargs,
                                  group_in * math.prod(kernels[n])))
    for multiplier in (1, 2):
        cases.append((f"depthwise m{multiplier}", "depthwise_conv2d", (2, 9, 10, 4),
                      (3, 3, 4, multiplier), dict(strides=2, padding="SAME"), 9))
    for stride in (1, 2):
        for padding in ("SAME", "VALID"):
            cases.append((f"conv2d_transpose s{stride} {padding}", "conv2d_transpose",
                          (2, 5, 6, 4), (3, 3, 6, 4), dict(strides=stride, padding=padding),
                          36))
    for n in (1, 2, 3):
        for kind in ("max", "avg"):
            for padding in ("SAME", "VALID"):
                cases.append((f"{kind}_pool{n}d {padding}", f"{kind}_pool{n}d",
                              (2, *conv_sizes[n], 5), None,
                              dict(ksize=2 if n == 3 else 3, strides=2, padding=padding),
                              27))
    for kind in ("max", "avg"):
        cases.append((f"global_{kind}_pool2d", f"global_{kind}_pool2d", (2, 9, 11, 37), None,
                      {}, 99))
    cases.append(("zero_pad2d", "zero_pad2d", (2, 9, 11, 3), None,
                  dict(padding=((1, 2), (3, 0))), 1))
    if not smoke:  # large shapes: many blocks, full tiles
        cases += [
            ("large conv2d resnet 3x3 64->64", "conv2d", (8, 56, 56, 64), (3, 3, 64, 64),
             dict(strides=1, padding="SAME", bias=True, activation="relu"), 576),
            ("large conv2d photo 3->32", "conv2d", (1, 427, 640, 3), (3, 3, 3, 32),
             dict(strides=1, padding="SAME", bias=True, activation="relu"), 27),
            ("large conv2d stem 7x7 s2", "conv2d", (4, 224, 224, 3), (7, 7, 3, 64),
             dict(strides=2, padding="SAME"), 147),
            ("large conv3d", "conv3d", (2, 16, 32, 32, 16), (3, 3, 3, 16, 32),
             dict(strides=1, padding="SAME"), 432),
            ("large depthwise 3x3", "depthwise_conv2d", (8, 112, 112, 32), (3, 3, 32, 1),
             dict(strides=1, padding="SAME"), 9),
            ("large conv2d_transpose s2", "conv2d_transpose", (4, 28, 28, 64),
             (3, 3, 32, 64), dict(strides=2, padding="SAME"), 576),
            ("large max_pool2d", "max_pool2d", (32, 112, 112, 64), None,
             dict(ksize=3, strides=2, padding="SAME"), 9),
            ("large avg_pool2d", "avg_pool2d", (32, 112, 112, 64), None,
             dict(ksize=2, strides=2, padding="VALID"), 4),
            ("large global_avg_pool2d", "global_avg_pool2d", (32, 56, 56, 256), None, {},
             3136),
        ]
    return cases


def _call(op, x, w, kwargs, channels_first, device, rng_bias):
    """Call fastconv's ``op`` with TF-style positional arguments."""
    import fastconv

    function = getattr(fastconv, op)
    n = len(x.shape) - 2
    fmt = {1: ("NWC", "NCW"), 2: ("NHWC", "NCHW"), 3: ("NDHWC", "NCDHW")}[n][channels_first]
    if op.startswith("conv") and op != "conv2d_transpose":
        padding = kwargs["padding"]
        return function(x, w, kwargs["strides"], padding, fmt, kwargs.get("dilations"),
                        bias=rng_bias, activation=kwargs.get("activation"), device=device)
    if op == "depthwise_conv2d":
        return function(x, w, kwargs["strides"], kwargs["padding"], fmt, device=device)
    if op == "conv2d_transpose":
        return function(x, w, kwargs["output_shape"], kwargs["strides"], kwargs["padding"], fmt,
                        device=device)
    if "global" in op:
        return function(x, fmt, device=device)
    if op == "zero_pad2d":
        return function(x, kwargs["padding"], fmt, device=device)
    return function(x, kwargs["ksize"], kwargs["strides"], kwargs["padding"], fmt,
                    device=device)


def _transpose_output_shape(x_shape, w_shape, stride, padding, channels_first):
    from fastconv.shapes import transposed_output_size

    batch, *spatial, _ = x_shape
    out = [transposed_output_size(size, k, stride, padding)
           for size, k in zip(spatial, w_shape[:2])]
    return _nhwc((batch, *out, w_shape[2]), channels_first)


def run_equality(report, smoke, torch):
    from numba import cuda

    import fastconv

    rng = np.random.default_rng(SEED)
    rows, failures = [], 0
    for name, op, x_shape, w_shape, kwargs, terms in equality_cases(smoke):
        for channels_first in (False, True):
            for dtype in (np.float32, np.float64):
                label = f"{name} {'NC..' if channels_first else 'N..C'} {np.dtype(dtype).name}"
                try:
                    x = _rand(rng, x_shape, dtype)
                    if channels_first:
                        x = np.ascontiguousarray(np.moveaxis(x, -1, 1))
                    w = _rand(rng, w_shape, dtype) if w_shape else None
                    options = dict(kwargs)
                    bias = None
                    if options.pop("bias", False):
                        bias = _rand(rng, (w_shape[-1],), dtype)
                    if op == "conv2d_transpose":
                        options["output_shape"] = _transpose_output_shape(
                            x_shape, w_shape, options["strides"], options["padding"],
                            channels_first)
                    start = time.perf_counter()
                    got = _call(op, cuda.to_device(x), None if w is None else cuda.to_device(w),
                                options, channels_first, None,
                                None if bias is None else cuda.to_device(bias))
                    kind_ok = type(got).__module__.startswith("numba")
                    got = got.copy_to_host()
                    gpu_s = time.perf_counter() - start
                    expected = _call(op, x, w, options, channels_first, "cpu", bias)
                    error, tol = _error(got, expected, dtype, terms)
                    torch_error = _torch_error(torch, op, x, w, bias, options, channels_first,
                                               got, dtype)
                    ok = error <= tol and kind_ok and (torch_error is None or
                                                       torch_error <= 10 * tol)
                    rows.append((label, "pass" if ok else "FAIL", f"{error:.2e}", f"{tol:.1e}",
                                 "-" if torch_error is None else f"{torch_error:.2e}",
                                 f"{gpu_s * 1e3:.0f}"))
                except Exception as exc:  # noqa: BLE001 - a row per failure, keep going
                    ok = False
                    rows.append((label, "ERROR", f"{type(exc).__name__}: {exc}"[:120], "", "",
                                 ""))
                    traceback.print_exc()
                failures += not ok
    report.table(f"Equality: CUDA vs fastconv CPU ({len(rows)} cases, {failures} failing)",
                 ["case", "result", "max rel. error", "tolerance", "vs cuDNN", "first call ms"],
                 rows)
    failures += run_interop(report, rng, torch)
    return failures


def _error(got, expected, dtype, terms):
    """Max error relative to max(1, max|expected|), and the tolerance for ``terms`` summands.

    Sums of ``terms`` products rounded in different orders differ by about eps * sqrt(terms).
    """
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape:
        raise AssertionError(f"shape {got.shape} != {expected.shape}")
    same_nan = np.isnan(got) == np.isnan(expected)
    if not same_nan.all():
        return math.inf, 0.0
    finite = ~np.isnan(expected)
    scale = max(1.0, float(np.max(np.abs(expected[finite]), initial=0.0)))
    diff = np.where(got[finite] == expected[finite], 0.0, np.abs(got[finite] - expected[finite]))
    tol = 8 * np.finfo(dtype).eps * math.sqrt(max(terms, 1))
    return float(np.max(diff, initial=0.0)) / scale, tol


def _torch_error(torch, op, x, w, bias, options, channels_first, got, dtype):
    """Relative error against PyTorch for the ops and paddings torch has; None otherwise."""
    if torch is None or op not in ("conv2d", "conv2d_transpose", "depthwise_conv2d",
                                   "max_pool2d", "avg_pool2d", "global_max_pool2d",
                                   "global_avg_pool2d"):
        return None
    F = torch.nn.functional
    t = torch.from_numpy(x if channels_first else np.moveaxis(x, -1, 1).copy()).cuda()
    padding = options.get("padding")
    if op in ("conv2d", "depthwise_conv2d"):
        kernel = w.shape[:2]
        dilation = options.get("dilations") or 1
        if padding == "VALID":
            pad = 0
        elif isinstance(padding, tuple) and all(a == b for a, b in padding):
            pad = tuple(a for a, _ in padding)
        elif padding == "SAME" and options["strides"] == 1 and all(k % 2 for k in kernel):
            pad = tuple((k - 1) * dilation // 2 for k in kernel)
        else:
            return None
        if op == "depthwise_conv2d":
            weight = w.reshape(*kernel, 1, -1)
            groups = x.shape[1 if channels_first else -1]
        else:
            weight = w
            groups = (x.shape[1 if channels_first else -1]) // w.shape[2]
        weight = torch.from_numpy(np.ascontiguousarray(weight.transpose(3, 2, 0, 1))).cuda()
        y = F.conv2d(t, weight, None if bias is None else torch.from_numpy(bias).cuda(),
                     options["strides"], pad, dilation, groups)
        activation = options.get("activation")
        if activation:
            y = getattr(torch, activation)(y) if activation != "relu" else F.relu(y)
    elif op == "conv2d_transpose":
        if options["padding"] != "VALID":
            return None
        weight = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))).cuda()
        y = F.conv_transpose2d(t, weight, None, options["strides"])
    elif op in ("max_pool2d", "avg_pool2d"):
        if padding != "VALID":
            return None
        pool = F.max_pool2d if op == "max_pool2d" else F.avg_pool2d
        y = pool(t, options["ksize"], options["strides"])
    else:
        y = t.amax(dim=(2, 3)) if "max" in op else t.mean(dim=(2, 3))
    y = y.cpu().numpy()
    if y.ndim == 4 and not channels_first:
        y = np.moveaxis(y, 1, -1)
    return _error(got, y, dtype, 1)[0]


def run_interop(report, rng, torch):
    """Result kinds: numba -> numba, NumPy + device='cuda' -> NumPy, CuPy -> CuPy, torch ->
    torch."""
    from numba import cuda

    import fastconv

    x = _rand(rng, (2, 8, 8, 4), np.float32)
    w = _rand(rng, (3, 3, 4, 8), np.float32)
    expected = fastconv.conv2d(x, w, 1, "SAME", device="cpu")
    checks = [("numba in -> numba out", lambda: cuda.to_device(x),
               lambda y: type(y).__module__.startswith("numba"), lambda y: y.copy_to_host()),
              ("NumPy + device='cuda' -> NumPy", lambda: x, None, None)]
    if importlib.util.find_spec("cupy") is not None:
        import cupy

        checks.append(("CuPy in -> CuPy out", lambda: cupy.asarray(x),
                       lambda y: isinstance(y, cupy.ndarray), cupy.asnumpy))
    if torch is not None:
        checks.append(("torch in -> torch out", lambda: torch.from_numpy(x).cuda(),
                       lambda y: isinstance(y, torch.Tensor) and y.is_cuda,
                       lambda y: y.cpu().numpy()))
    rows, failures = [], 0
    for label, make, is_kind, to_host in checks:
        try:
            y = fastconv.conv2d(make(), w, 1, "SAME", device="cuda")
            kind_ok = isinstance(y, np.ndarray) if is_kind is None else is_kind(y)
            error, tol = _error(y if to_host is None else to_host(y), expected, np.float32, 36)
            ok = kind_ok and error <= tol
            rows.append((label, "pass" if ok else "FAIL", f"{error:.2e}"))
        except Exception as exc:  # noqa: BLE001
            ok = False
            rows.append((label, "ERROR", f"{type(exc).__name__}: {exc}"[:120]))
        failures += not ok
    report.table("Array interop (conv2d, host filters)", ["input", "result", "max rel. error"],
                 rows)
    return failures


# ----------------------------------------------------------------------------- conv speed

def speed_cases(smoke):
    """(name, input NHWC shape, filter shape, padding, goal vs cuDNN)."""
    if smoke:
        return [("tiny 3x3 4->6", (1, 6, 7, 4), (3, 3, 4, 6), "SAME", 0.5)]
    cases = []
    for batch in (1, 64):
        cases += [(f"MNIST conv1 same b{batch}", (batch, 28, 28, 1), (3, 3, 1, 32), "SAME", 1.0),
                  (f"MNIST conv1 valid b{batch}", (batch, 28, 28, 1), (3, 3, 1, 32), "VALID",
                   1.0),
                  (f"MNIST conv2 same b{batch}", (batch, 14, 14, 32), (3, 3, 32, 64), "SAME",
                   0.5),
                  (f"MNIST conv2 valid b{batch}", (batch, 26, 26, 32), (3, 3, 32, 64), "VALID",
                   0.5)]
    cases += [("photo 427x640 3->32 relu", (1, 427, 640, 3), (3, 3, 3, 32), "SAME", 1.0),
              ("ResNet 3x3 64->64 56x56 b32", (32, 56, 56, 64), (3, 3, 64, 64), "SAME", 0.5)]
    return cases


def run_conv_speed(report, smoke, torch, repeat, min_ms):
    from numba import cuda

    import fastconv

    rng = np.random.default_rng(SEED)
    rows = []
    for name, x_shape, w_shape, padding, goal in speed_cases(smoke):
        batch, height, width, _ = x_shape
        out_h, out_w = (height, width) if padding == "SAME" else (height - 2, width - 2)
        flops = 2 * batch * out_h * out_w * math.prod(w_shape)
        for channels_first in (False, True):
            layout = "NCHW" if channels_first else "NHWC"
            x = _rand(rng, x_shape, np.float32)
            if channels_first:
                x = np.ascontiguousarray(np.moveaxis(x, -1, 1))
            w = _rand(rng, w_shape, np.float32)
            b = _rand(rng, (w_shape[-1],), np.float32)
            dx, dw, db = cuda.to_device(x), cuda.to_device(w), cuda.to_device(b)
            try:
                ours = _time_gpu(lambda: fastconv.conv2d(dx, dw, 1, padding, layout, bias=db,
                                                        activation="relu"), repeat, min_ms)
            except Exception as exc:  # noqa: BLE001
                rows.append((name, layout, "ERROR", f"{type(exc).__name__}: {exc}"[:80], "",
                             "", "", ""))
                continue
            theirs = _cudnn_time(torch, x, w, b, padding, channels_first, repeat, min_ms)
            ratio = None if theirs is None else theirs / ours
            rows.append((name, layout, f"{ours:.4f}", f"{flops / ours / 1e9:.0f}",
                         "-" if theirs is None else f"{theirs:.4f}",
                         "-" if ratio is None else f"{ratio:.2f}x", f">= {goal}x",
                         "-" if ratio is None else ("met" if ratio >= goal else "missed")))
    report.table("Conv speed: fastconv vs cuDNN (float32, bias + relu fused; ms per call, "
                 "median of CUDA-event samples)",
                 ["layer", "layout", "fastconv ms", "fastconv GFLOP/s", "cuDNN ms",
                  "speed vs cuDNN", "goal", "status"], rows)


def _cudnn_time(torch, x, w, b, padding, channels_first, repeat, min_ms):
    if torch is None:
        return None
    F = torch.nn.functional
    t = torch.from_numpy(x if channels_first else np.moveaxis(x, -1, 1).copy()).cuda()
    if not channels_first:
        t = t.contiguous(memory_format=torch.channels_last)
    weight = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))).cuda()
    if not channels_first:
        weight = weight.contiguous(memory_format=torch.channels_last)
    bias = torch.from_numpy(b).cuda()
    pad = 1 if padding == "SAME" else 0
    with torch.no_grad():
        return _time_torch(torch, lambda: F.relu(F.conv2d(t, weight, bias, 1, pad)), repeat,
                          min_ms)


# ----------------------------------------------------------------------------- pool speed

def run_pool_speed(report, smoke, repeat, min_ms):
    from numba import cuda

    import fastconv

    shape = (2, 6, 8, 4) if smoke else (32, 128, 128, 64)  # 128 MB of float32
    x = cuda.to_device(np.random.default_rng(SEED).standard_normal(shape).astype(np.float32))
    nbytes = x.size * 4
    copy = cuda.device_array_like(x)
    copy_ms = _time_gpu(lambda: copy.copy_to_device(x), repeat, min_ms)
    copy_gbs = 2 * nbytes / copy_ms / 1e6
    rows = [("device-to-device copy", "NHWC", f"{nbytes / 1e6:.0f}", f"{copy_ms:.3f}",
             f"{copy_gbs:.0f}", "1.00", "")]
    cases = [("max_pool2d 2x2 s2", fastconv.max_pool2d, 2, 2),
             ("avg_pool2d 2x2 s2", fastconv.avg_pool2d, 2, 2),
             ("max_pool2d 3x3 s2 SAME", fastconv.max_pool2d, 3, 2),
             ("max_pool2d 3x3 s1 SAME", fastconv.max_pool2d, 3, 1)]
    for layout in ("NHWC", "NCHW"):
        data = x if layout == "NHWC" else x.reshape((shape[0], shape[3], shape[1], shape[2]))
        for name, function, ksize, stride in cases:
            try:
                out = function(data, ksize, stride, "SAME", layout)
                moved = nbytes + out.size * 4
                ms = _time_gpu(lambda: function(data, ksize, stride, "SAME", layout), repeat,
                              min_ms)
                gbs = moved / ms / 1e6
                rows.append((name, layout, f"{moved / 1e6:.0f}", f"{ms:.3f}", f"{gbs:.0f}",
                             f"{gbs / copy_gbs:.2f}",
                             "met" if gbs / copy_gbs >= 0.7 else "missed"))
            except Exception as exc:  # noqa: BLE001
                rows.append((name, layout, "ERROR", f"{type(exc).__name__}: {exc}"[:80], "", "",
                             ""))
        for kind in ("max", "avg"):
            function = getattr(fastconv, f"global_{kind}_pool2d")
            ms = _time_gpu(lambda: function(data, layout), repeat, min_ms)
            gbs = nbytes / ms / 1e6
            rows.append((f"global_{kind}_pool2d", layout, f"{nbytes / 1e6:.0f}", f"{ms:.3f}",
                         f"{gbs:.0f}", f"{gbs / copy_gbs:.2f}",
                         "met" if gbs / copy_gbs >= 0.7 else "missed"))
    report.table(f"Pooling bandwidth on a {nbytes / 1e6:.0f} MB float32 tensor (goal: >= 0.70 "
                 "of the copy's GB/s)",
                 ["op", "layout", "MB moved", "ms", "GB/s", "vs copy", "status"], rows)


# ----------------------------------------------------------------------------- overhead

def run_overhead(report, calls):
    from numba import cuda

    import fastconv

    x = cuda.to_device(np.ones((1, 4, 4, 1), np.float32))
    w = cuda.to_device(np.ones((3, 3, 1, 2), np.float32))

    @cuda.jit
    def empty(a):
        pass

    rows = []
    for name, call in (("empty numba kernel, 1 array", lambda: empty[1, 1](x)),
                       ("max_pool2d 1x4x4x1", lambda: fastconv.max_pool2d(x, 2, 2, "VALID")),
                       ("conv2d 1x4x4x1 -> 2", lambda: fastconv.conv2d(x, w, 1, "SAME")),
                       ("global_avg_pool2d", lambda: fastconv.global_avg_pool2d(x))):
        call()
        cuda.synchronize()
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(calls):
                call()
            cuda.synchronize()
            samples.append((time.perf_counter() - start) / calls * 1e6)
        median = statistics.median(samples)
        rows.append((name, f"{median:.1f}", "" if "empty" in name else
                     ("met" if median < 50 else "missed")))
    report.table("Dispatch overhead: microseconds per call of a tiny op on device arrays "
                 "(argument checks + launch; goal < 50 us)", ["call", "us per call", "status"],
                 rows)


# ----------------------------------------------------------------------------- tile sweep

def run_sweep(report, smoke, repeat, min_ms):
    from numba import cuda

    import fastconv
    from fastconv import config

    rng = np.random.default_rng(SEED)
    x_shape, w_shape = ((1, 6, 7, 4), (3, 3, 4, 6)) if smoke else ((32, 56, 56, 64),
                                                                  (3, 3, 64, 64))
    flops = 2 * x_shape[0] * x_shape[1] * x_shape[2] * math.prod(w_shape)
    x = cuda.to_device(_rand(rng, x_shape, np.float32))
    w = cuda.to_device(_rand(rng, w_shape, np.float32))
    saved = {name: getattr(config, name) for name in TILE_NAMES}
    tiles = [(8, 16, 64, 8, 4, 8), (8, 16, 32, 8, 4, 4), (8, 16, 64, 8, 8, 8),
             (4, 32, 64, 8, 4, 8), (8, 8, 64, 16, 4, 8), (8, 16, 64, 16, 4, 8),
             (16, 16, 64, 8, 8, 8), (4, 16, 64, 8, 2, 8), (8, 32, 32, 8, 8, 4)]
    if smoke:
        tiles = [(2, 3, 4, 2, 2, 2), (1, 4, 2, 1, 1, 1)]
    rows = []
    try:
        for tile in tiles:
            for name, value in zip(TILE_NAMES, tile):
                setattr(config, name, value)
            try:
                ms = _time_gpu(lambda: fastconv.conv2d(x, w, 1, "SAME"), repeat, min_ms)
                rows.append((", ".join(map(str, tile)), f"{ms:.4f}",
                             f"{flops / ms / 1e9:.0f}"))
            except Exception as exc:  # noqa: BLE001
                rows.append((", ".join(map(str, tile)), "ERROR",
                             f"{type(exc).__name__}: {exc}"[:80]))
    finally:
        for name, value in saved.items():
            setattr(config, name, value)
    report.table(f"Conv tile sweep on {x_shape} * {w_shape} (TILE_H, TILE_W, TILE_K, TILE_C, "
                 "THREAD_PIXELS, THREAD_K)", ["tile", "ms", "GFLOP/s"], rows)


# ----------------------------------------------------------------------------- main

def main(argv=None):
    args = parse_args(argv)
    import fastconv.cuda
    from fastconv import config

    if not fastconv.cuda.is_available():
        from fastconv.cuda.launch import cuda_unavailable_reason

        print(f"no CUDA device: {cuda_unavailable_reason()}", file=sys.stderr)
        return 2
    if args.smoke:
        for name, value in TINY_TILES.items():
            setattr(config, name, value)
        args.repeat, args.min_ms = min(args.repeat, 2), min(args.min_ms, 1.0)
        MAX_CALLS[0] = 2
        if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
            sys.setswitchinterval(2e-4)  # the simulator busy-polls its threads: hand over often
    torch = load_torch(args.no_torch, args.smoke)
    report = Report()
    report.text("## fastconv CUDA check" + (" (smoke run: tiny shapes)" if args.smoke else ""))
    report.text("")
    for line in environment(torch):
        report.text(line)
    failures = 0
    if "equality" not in args.skip:
        failures += run_equality(report, args.smoke, torch)
    if "conv" not in args.skip:
        run_conv_speed(report, args.smoke, torch, args.repeat, args.min_ms)
    if "pool" not in args.skip:
        run_pool_speed(report, args.smoke, args.repeat, args.min_ms)
    if "overhead" not in args.skip:
        run_overhead(report, 3 if args.smoke else 2000)
    if args.sweep:
        run_sweep(report, args.smoke, args.repeat, args.min_ms)
    if args.output:
        report.write(args.output)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
