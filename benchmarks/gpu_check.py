"""Time fastconv's CUDA kernels on a real GPU; print Markdown tables.

Correctness is not checked here: the GPU equality grid (every op, layouts, dtypes, strides,
dilations, paddings, groups, activations and large shapes, against fastconv's CPU result and
cuDNN) and the interop round trips are tests. On a GPU machine run them first::

    NUMBA_ENABLE_CUDASIM=0 python -m pytest tests/cuda -m gpu
    python benchmarks/gpu_check.py

Sections (each can be skipped):

1. **conv speed**: the seed MNIST layers, the photo layer and a ResNet 3x3 64->64 56x56 batch-32
   layer, in NHWC and NCHW, fastconv vs cuDNN through PyTorch (TF32 off, cudnn.benchmark on),
   device-resident data, CUDA events, medians.
2. **pool speed**: max/avg pooling on > 64 MB tensors in GB/s, against the measured
   device-to-device copy bandwidth.
3. **overhead**: microseconds per call of a tiny op (argument handling + launch), and of an
   empty numba kernel launch for reference.
4. ``--sweep``: conv tile shapes tried on the ResNet layer, to choose ``FASTCONV_CUDA_CONV_*``.

``--output results.md`` also writes the tables to a file, for ``benchmarks/RESULTS.md``.
``--smoke`` runs every section on tiny shapes with tiny tiles: under ``NUMBA_ENABLE_CUDASIM=1``
it checks that the script works without a GPU (its timings then mean nothing).
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
                        choices=["conv", "pool", "overhead"],
                        help="skip a section (repeatable)")
    parser.add_argument("--sweep", action="store_true",
                        help="also time conv tile shapes on the ResNet layer")
    parser.add_argument("--repeat", type=int, default=15,
                        help="timed samples per measurement (the median is reported)")
    parser.add_argument("--min-ms", type=float, default=20.0,
                        help="each sample runs the op enough times to last this long")
    parser.add_argument("--output", metavar="FILE", help="also write the tables to FILE")
    parser.add_argument("--no-torch", action="store_true", help="do not time cuDNN through PyTorch")
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


# ----------------------------------------------------------------------------- data

def _rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
