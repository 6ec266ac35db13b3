"""Half precision beside float32 on the same layers: ``python benchmarks/half_precision.py``.

Each layer runs in float32, float16 and bfloat16 (``ml_dtypes``) in alternating calls in one
process; the table gives medians and the ratio float32 time / half time (> 1: half precision
is faster). Run it on a quiet machine (``uptime`` first).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

# Kernels compile on the first call (not in the background): what is timed is the kernels.
os.environ.setdefault("FASTCONV_COMPILE", "sync")

import fastconv  # noqa: E402


def _layers():
    """(label, input shape NHWC, filter shape or None, call(x, w, data_format))."""
    conv = fastconv.conv2d
    for fmt in ("NHWC", "NCHW"):
        yield (f"conv 3x3 64->64 56x56 b8 SAME {fmt}", (8, 56, 56, 64), (3, 3, 64, 64), fmt,
               lambda x, w, f: conv(x, w, 1, "SAME", f))
        yield (f"MNIST conv2 26x26x32->64 b64 VALID {fmt}", (64, 26, 26, 32), (3, 3, 32, 64),
               fmt, lambda x, w, f: conv(x, w, 1, "VALID", f))
        yield (f"max pool 2x2 112x112x32 b16 {fmt}", (16, 112, 112, 32), None, fmt,
               lambda x, w, f: fastconv.max_pool2d(x, 2, 2, "VALID", f))
        yield (f"avg pool 2x2 112x112x32 b16 {fmt}", (16, 112, 112, 32), None, fmt,
               lambda x, w, f: fastconv.avg_pool2d(x, 2, 2, "VALID", f))
        yield (f"max pool 3x3/2 SAME 112x112x32 b16 {fmt}", (16, 112, 112, 32), None, fmt,
               lambda x, w, f: fastconv.max_pool2d(x, 3, 2, "SAME", f))
        yield (f"depthwise 3x3 56x56x128 b8 {fmt}", (8, 56, 56, 128), (3, 3, 128, 1), fmt,
               lambda x, w, f: fastconv.depthwise_conv2d(x, w, 1, "SAME", f))
    yield ("max_pool_with_argmax 2x2 112x112x32 b8", (8, 112, 112, 32), None, "NHWC",
           lambda x, w, f: fastconv.max_pool_with_argmax(x, 2, 2, "VALID"))
    yield ("global avg pool 56x56x256 b8", (8, 56, 56, 256), None, "NHWC",
           lambda x, w, f: fastconv.global_avg_pool2d(x))


def main(argv=None):
    import ml_dtypes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    dtypes = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}
    print(f"load average {os.getloadavg()[0]:.2f}")
    print("| layer | float32 ms | float16 ms | ratio | bfloat16 ms | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, shape, w_shape, fmt, call in _layers():
        x = rng.standard_normal(shape).astype(np.float32)
        if fmt == "NCHW":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        w = None if w_shape is None else rng.standard_normal(w_shape).astype(np.float32)
        arrays = {name: (x.astype(d), None if w is None else w.astype(d))
                  for name, d in dtypes.items()}
        times = {name: [] for name in dtypes}
        for name, (xd, wd) in arrays.items():  # compile and warm
            call(xd, wd, fmt)
        for _ in range(args.repeats):
            for name, (xd, wd) in arrays.items():
                start = time.perf_counter()
                call(xd, wd, fmt)
                times[name].append(time.perf_counter() - start)
        ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
        print(f"| {label} | {ms['float32']:.2f} | {ms['float16']:.2f} | "
              f"{ms['float32'] / ms['float16']:.2f}x | {ms['bfloat16']:.2f} | "
              f"{ms['float32'] / ms['bfloat16']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
