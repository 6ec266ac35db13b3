"""Backward passes side by side with TensorFlow: ``python benchmarks/backward.py [--repeats N]``.

For each layer (the seeds' MNIST CNN, then ResNet/MobileNet-style layers) both libraries
compute the input and the filter gradient of a conv from the same output gradient (TF: the
kernels ``tf.GradientTape`` runs, ``Conv2DBackpropInput`` + ``Conv2DBackpropFilter``, or the
depthwise ones), or a pooling's input gradient (``MaxPoolGradV2``). Blocks alternate between
the libraries, with a pause between them (TF's oneDNN threads spin after a call); the table
gives medians and the ratio TF time / fastconv time (> 1: fastconv is faster), and checks the
results agree. One process: run it on a quiet machine (``uptime`` first).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Kernels compile on the first call (not in the background, NumPy standing in), so what is
# timed is the kernels.
os.environ.setdefault("FASTCONV_COMPILE", "sync")

#: (name, kind, input shape NHWC, filter shape or pool window, stride, padding)
LAYERS = [
    ("mnist conv1 64x28x28x1->32", "conv", (64, 28, 28, 1), (3, 3, 1, 32), 1, "VALID"),
    ("mnist conv2 64x13x13x32->64", "conv", (64, 13, 13, 32), (3, 3, 32, 64), 1, "VALID"),
    ("mnist conv3 64x5x5x64->64", "conv", (64, 5, 5, 64), (3, 3, 64, 64), 1, "VALID"),
    ("mnist max pool 2x2 64x26x26x32", "max_pool", (64, 26, 26, 32), 2, 2, "VALID"),
    ("mnist conv2 batch 1", "conv", (1, 13, 13, 32), (3, 3, 32, 64), 1, "VALID"),
    ("resnet 3x3 64 56x56 b8", "conv", (8, 56, 56, 64), (3, 3, 64, 64), 1, "SAME"),
    ("1x1 256->64 56x56 b8", "conv", (8, 56, 56, 256), (1, 1, 256, 64), 1, "SAME"),
    ("3x3/2 64->128 b8", "conv", (8, 56, 56, 64), (3, 3, 64, 128), 2, "SAME"),
    ("7x7/2 RGB stem b2", "conv", (2, 224, 224, 3), (7, 7, 3, 64), 2, "SAME"),
    ("depthwise 3x3 128 56x56 b8", "depthwise", (8, 56, 56, 128), (3, 3, 128, 1), 1, "SAME"),
    ("max pool 3x3/2 SAME 64 112x112 b8", "max_pool", (8, 112, 112, 64), 3, 2, "SAME"),
]


def _calls(layer, tf):
    import fastconv

    name, kind, shape, window, stride, padding = layer
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    if kind == "max_pool":
        y = fastconv.max_pool2d(x, window, stride, padding)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        tx, ty, tdy = tf.constant(x), tf.constant(y), tf.constant(dy)
        k, s = [1, window, window, 1], [1, stride, stride, 1]

        def ours():
            return (fastconv.max_pool2d_grad(x, y, dy, window, stride, padding),)

        def theirs():
            return (tf.raw_ops.MaxPoolGradV2(orig_input=tx, orig_output=ty, grad=tdy, ksize=k,
                                             strides=s, padding=padding).numpy(),)
        return ours, theirs
    w = (rng.standard_normal(window) / np.sqrt(np.prod(window[:3]))).astype(np.float32)
    op = fastconv.depthwise_conv2d if kind == "depthwise" else fastconv.conv2d
    y = op(x, w, stride, padding)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    tx, tw, tdy = tf.constant(x), tf.constant(w), tf.constant(dy)
    strides = [1, stride, stride, 1]
    if kind == "depthwise":
        ours_input, ours_filter = (fastconv.depthwise_conv2d_backprop_input,
                                   fastconv.depthwise_conv2d_backprop_filter)
        tf_input = tf.compat.v1.nn.depthwise_conv2d_native_backprop_input
        tf_filter = tf.compat.v1.nn.depthwise_conv2d_native_backprop_filter
    else:
        ours_input, ours_filter = fastconv.conv2d_backprop_input, fastconv.conv2d_backprop_filter
        tf_input = tf.compat.v1.nn.conv2d_backprop_input
        tf_filter = tf.compat.v1.nn.conv2d_backprop_filter

    def ours():
        return (ours_input(x.shape, w, dy, stride, padding),
                ours_filter(x, w.shape, dy, stride, padding))

    def theirs():
        return (tf_input(list(x.shape), tw, tdy, strides, padding).numpy(),
                tf_filter(tx, list(w.shape), tdy, strides, padding).numpy())
    return ours, theirs


def _time(call, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="calls per block")
    parser.add_argument("--blocks", type=int, default=3, help="alternating blocks per library")
    args = parser.parse_args(argv)
    from fastconv.tf_reference import import_tensorflow

    tf = import_tensorflow()
    print(f"{'layer':36s} {'fastconv ms':>11s} {'TF ms':>9s} {'TF/fastconv':>11s}  equal")
    ratios = []
    for layer in LAYERS:
        ours, theirs = _calls(layer, tf)
        got, want = ours(), theirs()  # first calls: compile, check
        equal = all(np.abs(a - b).max() <= 1e-4 * max(1, np.abs(b).max())
                    for a, b in zip(got, want))
        ours_times, theirs_times = [], []
        for _ in range(args.blocks):
            ours_times.append(_time(ours, args.repeats))
            time.sleep(0.2)
            theirs_times.append(_time(theirs, args.repeats))
            time.sleep(0.2)
        mine, tfs = min(ours_times), min(theirs_times)
        ratios.append(tfs / mine)
        print(f"{layer[0]:36s} {mine * 1e3:11.2f} {tfs * 1e3:9.2f} {tfs / mine:11.2f}  "
              f"{'yes' if equal else 'NO'}")
    geomean = float(np.exp(np.mean(np.log(ratios))))
    print(f"geometric mean TF/fastconv: {geomean:.2f} over {len(ratios)} layers; "
          f"worst {min(ratios):.2f}")


if __name__ == "__main__":
    main()
