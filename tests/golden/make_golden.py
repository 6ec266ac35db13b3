"""Regenerate the golden regression corpus ``tests/golden/golden.npz`` from TensorFlow.

Usage (needs TensorFlow, i.e. the ``test`` or ``tf`` extra)::

    .venv/bin/python tests/golden/make_golden.py          # rewrite golden.npz, print a table
    .venv/bin/python tests/golden/make_golden.py --check  # compare only, write nothing

Every case below names a fastconv function and its arguments. The inputs are drawn from
``numpy.random.default_rng(SEED + case index)`` (standard normals, with NaN/-inf/+inf planted in
the cases that say so) and stored next to TensorFlow's output, so ``tests/test_golden.py``
checks fastconv (and the NumPy oracle) without TensorFlow and without depending on NumPy's
random streams. TF computes each case with the op table's TensorFlow function
(``fastconv.ops.get(op).tf_function``, i.e. ``fastconv.tf_reference``: the same call as
fastconv's, channels-first through transposes, exact rewrites where TF's CPU lacks a kernel).
The file holds one JSON string (``cases.json``: op, array names, keyword arguments, dtype,
exactness) and arrays named ``<case>/<argument>`` and ``<case>/expected``.

Regenerate only when TF's semantics are the thing that changed (a new TF release, a new case);
never to make a failing fastconv pass. ``--check`` prints how far fastconv is from the stored
outputs and from a fresh TF run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from fastconv import ops
from fastconv.testing import EXACT_OPS  # the suite's one tolerance rule

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "golden.npz"
SEED = 20240611
F32, F64 = "float32", "float64"


def case(name, op, shapes, dtype=F32, special=False, **kwargs):
    """One corpus entry: ``shapes`` maps argument names to array shapes."""
    return dict(name=name, op=op, shapes=shapes, dtype=dtype, special=special, kwargs=kwargs)


CASES = [
    # conv1d
    case("conv1d-nwc-same-s2-bias-relu", "conv1d",
         dict(input=(2, 13, 3), filters=(3, 3, 8), bias=(8,)),
         stride=2, padding="SAME", data_format="NWC", activation="relu"),
    case("conv1d-ncw-valid-d2", "conv1d", dict(input=(2, 3, 11), filters=(3, 3, 5)),
         stride=1, padding="VALID", data_format="NCW", dilations=2),
    case("conv1d-nwc-explicit-groups-f64", "conv1d", dict(input=(1, 10, 4), filters=(2, 2, 6)),
         dtype=F64, stride=3, padding=[[2, 1]], data_format="NWC"),
    # conv2d
    case("conv2d-nhwc-same-mnist-relu", "conv2d",
         dict(input=(2, 12, 12, 1), filters=(3, 3, 1, 32), bias=(32,)),
         strides=1, padding="SAME", data_format="NHWC", activation="relu"),
    case("conv2d-nchw-valid-s2-d12-tanh", "conv2d",
         dict(input=(2, 4, 11, 12), filters=(3, 2, 4, 6), bias=(6,)),
         strides=2, padding="VALID", data_format="NCHW", dilations=[1, 2], activation="tanh"),
    case("conv2d-nhwc-explicit-groups", "conv2d", dict(input=(1, 7, 8, 6), filters=(3, 3, 2, 9)),
         strides=[1, 2], padding=[[1, 2], [0, 3]], data_format="NHWC"),
    case("conv2d-nhwc-same-s23-sigmoid-f64", "conv2d",
         dict(input=(2, 9, 10, 3), filters=(4, 3, 3, 5), bias=(5,)),
         dtype=F64, strides=[2, 3], padding="SAME", data_format="NHWC", activation="sigmoid"),
    case("conv2d-nchw-same-relu6-f64", "conv2d",
         dict(input=(1, 2, 6, 7), filters=(2, 2, 2, 3), bias=(3,)),
         dtype=F64, strides=1, padding="SAME", data_format="NCHW", activation="relu6"),
    case("conv2d-nhwc-same-nan-inf", "conv2d", dict(input=(1, 6, 6, 2), filters=(3, 3, 2, 3)),
         special=True, strides=1, padding="SAME", data_format="NHWC"),
    # conv3d
    case("conv3d-ndhwc-same-s121-bias", "conv3d",
         dict(input=(1, 5, 6, 5, 3), filters=(3, 3, 2, 3, 4), bias=(4,)),
         strides=[1, 2, 1], padding="SAME", data_format="NDHWC"),
    case("conv3d-ncdhw-valid-d112-groups", "conv3d",
         dict(input=(2, 4, 4, 5, 6), filters=(2, 2, 2, 2, 4)),
         strides=1, padding="VALID", data_format="NCDHW", dilations=[1, 1, 2]),
    case("conv3d-ndhwc-explicit-f64", "conv3d",
         dict(input=(1, 4, 3, 5, 2), filters=(2, 3, 2, 2, 3)),
         dtype=F64, strides=2, padding=[[1, 0], [1, 1], [0, 2]], data_format="NDHWC"),
    # depthwise_conv2d
    case("depthwise-nhwc-same-m2", "depthwise_conv2d",
         dict(input=(2, 8, 7, 3), filter=(3, 3, 3, 2)),
         strides=1, padding="SAME", data_format="NHWC"),
    case("depthwise-nchw-valid-s2", "depthwise_conv2d",
         dict(input=(1, 5, 9, 9), filter=(3, 3, 5, 1)),
         strides=2, padding="VALID", data_format="NCHW"),
    case("depthwise-nhwc-same-d2-f64", "depthwise_conv2d",
         dict(input=(1, 7, 8, 4), filter=(2, 3, 4, 1)),
         dtype=F64, strides=1, padding="SAME", data_format="NHWC", dilations=2),
    # conv2d_transpose: filters (H, W, out_channels, in_channels)
    case("transpose-nhwc-same-s2", "conv2d_transpose",
         dict(input=(2, 4, 5, 6), filters=(3, 3, 4, 6)),
         output_shape=[2, 8, 10, 4], strides=2, padding="SAME", data_format="NHWC"),
    case("transpose-nchw-valid-s21", "conv2d_transpose",
         dict(input=(1, 3, 4, 5), filters=(3, 2, 2, 3)),
         output_shape=[1, 2, 9, 6], strides=[2, 1], padding="VALID", data_format="NCHW"),
    case("transpose-nhwc-explicit-f64", "conv2d_transpose",
         dict(input=(1, 4, 4, 2), filters=(3, 3, 3, 2)),
         dtype=F64, output_shape=[1, 7, 8, 3], strides=2, padding=[[1, 1], [1, 0]],
         data_format="NHWC"),
    # max pooling
    case("max_pool1d-nwc-same-nan-inf", "max_pool1d", dict(input=(2, 15, 3)), special=True,
         ksize=3, strides=2, padding="SAME", data_format="NWC"),
    case("max_pool1d-ncw-explicit", "max_pool1d", dict(input=(1, 4, 10)),
         ksize=4, strides=3, padding=[[1, 3]], data_format="NCW"),
    case("max_pool2d-nhwc-valid-s2", "max_pool2d", dict(input=(2, 9, 8, 3)),
         ksize=2, strides=2, padding="VALID", data_format="NHWC"),
    case("max_pool2d-nchw-same-nan-inf", "max_pool2d", dict(input=(1, 3, 7, 6)), special=True,
         ksize=[3, 2], strides=[2, 1], padding="SAME", data_format="NCHW"),
    case("max_pool2d-nhwc-explicit-f64", "max_pool2d", dict(input=(1, 6, 7, 2)), dtype=F64,
         ksize=3, strides=2, padding=[[2, 1], [0, 2]], data_format="NHWC"),
    case("max_pool3d-ndhwc-same", "max_pool3d", dict(input=(1, 5, 4, 6, 2)),
         ksize=[2, 3, 2], strides=2, padding="SAME", data_format="NDHWC"),
    case("max_pool3d-ncdhw-valid-nan-inf", "max_pool3d", dict(input=(1, 3, 4, 5, 4)),
         special=True, ksize=2, strides=1, padding="VALID", data_format="NCDHW"),
    # average pooling
    case("avg_pool1d-nwc-same", "avg_pool1d", dict(input=(2, 11, 3)),
         ksize=4, strides=3, padding="SAME", data_format="NWC"),
    case("avg_pool1d-ncw-valid-f64", "avg_pool1d", dict(input=(1, 2, 9)), dtype=F64,
         ksize=3, strides=2, padding="VALID", data_format="NCW"),
    case("avg_pool2d-nhwc-same-s2", "avg_pool2d", dict(input=(2, 7, 9, 4)),
         ksize=3, strides=2, padding="SAME", data_format="NHWC"),
    case("avg_pool2d-nchw-valid-nan-inf", "avg_pool2d", dict(input=(1, 3, 6, 6)), special=True,
         ksize=2, strides=2, padding="VALID", data_format="NCHW"),
    case("avg_pool3d-ndhwc-valid", "avg_pool3d", dict(input=(1, 4, 5, 6, 2)),
         ksize=[2, 2, 3], strides=[1, 2, 3], padding="VALID", data_format="NDHWC"),
    case("avg_pool3d-ncdhw-same-f64", "avg_pool3d", dict(input=(1, 2, 3, 5, 4)), dtype=F64,
         ksize=2, strides=2, padding="SAME", data_format="NCDHW"),
    # global pooling and zero padding
    case("global_max-nhwc-nan", "global_max_pool2d", dict(input=(3, 4, 5, 6)), special=True,
         data_format="NHWC"),
    case("global_max-nchw-keepdims-f64", "global_max_pool2d", dict(input=(2, 3, 4, 5)), dtype=F64,
         data_format="NCHW", keepdims=True),
    case("global_avg-nhwc-keepdims", "global_avg_pool2d", dict(input=(2, 6, 5, 4)),
         data_format="NHWC", keepdims=True),
    case("global_avg-nchw", "global_avg_pool2d", dict(input=(2, 5, 3, 7)), data_format="NCHW"),
    case("zero_pad-nhwc-pairs", "zero_pad2d", dict(input=(2, 4, 5, 3)),
         padding=[[1, 2], [0, 3]], data_format="NHWC"),
    case("zero_pad-nchw-int-f64", "zero_pad2d", dict(input=(1, 2, 3, 4)), dtype=F64, padding=2,
         data_format="NCHW"),
    # rank-generic pooling (tf.nn.max_pool / tf.nn.avg_pool: the input's rank decides)
    case("max_pool-nwc-same-nan-inf", "max_pool", dict(input=(2, 9, 3)), special=True,
         ksize=2, strides=2, padding="SAME"),
    case("max_pool-ncdhw-valid", "max_pool", dict(input=(1, 2, 4, 5, 4)),
         ksize=2, strides=[1, 2, 1], padding="VALID", data_format="NCDHW"),
    case("avg_pool-nhwc-same", "avg_pool", dict(input=(2, 7, 6, 3)),
         ksize=3, strides=2, padding="SAME"),
    case("avg_pool-nchw-valid-f64", "avg_pool", dict(input=(1, 3, 6, 5)), dtype=F64,
         ksize=2, strides=1, padding="VALID", data_format="NCHW"),
    # tf.nn.convolution (the input's rank decides)
    case("convolution-nwc-same-s2-relu", "convolution",
         dict(input=(2, 11, 3), filters=(3, 3, 4), bias=(4,)),
         strides=2, padding="SAME", activation="relu"),
    case("convolution-ncdhw-valid-d121-f64", "convolution",
         dict(input=(1, 2, 5, 6, 4), filters=(2, 2, 2, 2, 3)),
         dtype=F64, dilations=[1, 2, 1], data_format="NCDHW"),
    # the other transposed convs: filters (*kernel, out_channels, in_channels)
    case("transpose1d-nwc-same-s2", "conv1d_transpose", dict(input=(2, 5, 3), filters=(3, 4, 3)),
         output_shape=[2, 10, 4], strides=2, padding="SAME", data_format="NWC"),
    case("transpose1d-ncw-valid-s2-d2-f64", "conv1d_transpose",
         dict(input=(1, 2, 4), filters=(3, 3, 2)), dtype=F64, output_shape=[1, 3, 12],
         strides=2, padding="VALID", data_format="NCW", dilations=2),
    case("transpose3d-ndhwc-same-s2", "conv3d_transpose",
         dict(input=(1, 2, 3, 2, 3), filters=(2, 3, 2, 2, 3)),
         output_shape=[1, 4, 6, 4, 2], strides=2, padding="SAME", data_format="NDHWC"),
    case("transpose3d-ncdhw-explicit-f64", "conv3d_transpose",
         dict(input=(1, 2, 2, 3, 2), filters=(2, 2, 3, 3, 2)), dtype=F64,
         output_shape=[1, 3, 3, 5, 4], strides=[2, 2, 1], padding=[[1, 0], [0, 1], [0, 0]],
         data_format="NCDHW"),
    case("transpose-nwc-explicit", "conv_transpose", dict(input=(2, 4, 3), filters=(3, 2, 3)),
         output_shape=[2, 9, 2], strides=2, padding=[[1, 0]]),
    case("transpose-nchw-same-d2-f64", "conv_transpose",
         dict(input=(1, 3, 7, 6), filters=(3, 3, 2, 3)), dtype=F64,
         output_shape=[1, 2, 7, 6], strides=1, padding="SAME", data_format="NCHW", dilations=2),
    # separable convs: depthwise (K_h, K_w, C, M), pointwise (1, 1, C * M, out)
    case("separable-nhwc-same-s2-bias-relu", "separable_conv2d",
         dict(input=(2, 7, 6, 3), depthwise_filter=(3, 3, 3, 2), pointwise_filter=(1, 1, 6, 4),
              bias=(4,)), strides=2, padding="SAME", data_format="NHWC", activation="relu"),
    case("separable-nchw-valid-d2-f64", "separable_conv2d",
         dict(input=(1, 3, 8, 7), depthwise_filter=(2, 3, 3, 1), pointwise_filter=(1, 1, 3, 5)),
         dtype=F64, strides=1, padding="VALID", data_format="NCHW", dilations=2),
    # atrous convs (channels-last only, as tf.nn's)
    case("atrous-same-r2-nan-inf", "atrous_conv2d", dict(value=(1, 7, 6, 2), filters=(3, 3, 2, 3)),
         special=True, rate=2, padding="SAME"),
    case("atrous-valid-r3-f64", "atrous_conv2d", dict(value=(2, 9, 8, 3), filters=(2, 3, 3, 4)),
         dtype=F64, rate=3, padding="VALID"),
    case("atrous-transpose-same-r2", "atrous_conv2d_transpose",
         dict(value=(1, 5, 4, 3), filters=(3, 3, 2, 3)),
         output_shape=[1, 5, 4, 2], rate=2, padding="SAME"),
    case("atrous-transpose-valid-r2-f64", "atrous_conv2d_transpose",
         dict(value=(1, 3, 2, 3), filters=(3, 2, 2, 3)), dtype=F64,
         output_shape=[1, 7, 4, 2], rate=2, padding="VALID"),
    # issue 14: argmax pooling (values and indices), morphology, tf.nn.pool
    case("argmax-nhwc-same-batch-nan-inf", "max_pool_with_argmax", dict(input=(2, 7, 6, 3)),
         special=True, ksize=3, strides=2, padding="SAME", data_format="NHWC",
         include_batch_in_index=True),
    case("argmax-nchw-valid-int32", "max_pool_with_argmax", dict(input=(1, 3, 6, 7)),
         ksize=[2, 3], strides=[2, 1], padding="VALID", data_format="NCHW",
         output_dtype="int32"),
    case("dilation2d-nhwc-same-r2-nan-inf", "dilation2d",
         dict(input=(2, 7, 8, 3), filters=(3, 2, 3)), special=True, strides=1,
         padding="SAME", data_format="NHWC", dilations=2),
    case("dilation2d-nchw-valid-s2-f64", "dilation2d",
         dict(input=(1, 2, 9, 8), filters=(2, 3, 2)), dtype=F64, strides=2, padding="VALID",
         data_format="NCHW", dilations=1),
    case("erosion2d-nhwc-same-s2", "erosion2d", dict(value=(1, 8, 7, 2), filters=(3, 3, 2)),
         strides=2, padding="SAME", data_format="NHWC", dilations=1),
    case("erosion2d-nchw-valid-r2-nan-inf", "erosion2d",
         dict(value=(1, 2, 9, 9), filters=(2, 2, 2)), special=True, strides=1,
         padding="VALID", data_format="NCHW", dilations=[2, 1]),
    case("pool-nhwc-max-dilated-nan-inf", "pool", dict(input=(2, 9, 8, 3)), special=True,
         window_shape=[2, 3], pooling_type="MAX", dilations=[2, 2]),
    case("pool-ncw-avg-same-s2-f64", "pool", dict(input=(2, 3, 11)), dtype=F64,
         window_shape=[3], pooling_type="AVG", strides=[2], padding="SAME",
         data_format="NCW"),
]


# ----------------------------------------------------------------------------- inputs

def make_inputs(index, spec):
    """The case's arrays: standard normals from the case's seed (NaN/+-inf planted if special)."""
    rng = np.random.default_rng(SEED + index)
    arrays = {}
    for name, shape in spec["shapes"].items():
        values = rng.standard_normal(shape)
        if spec["special"] and name in ("input", "value"):
            flat = values.reshape(-1)
            cells = rng.permutation(flat.size)[: max(3, flat.size // 6)]
            flat[cells] = np.resize([np.nan, -np.inf, np.inf], cells.size)
            if spec["op"].startswith("max_pool") or spec["op"] == "global_max_pool2d":
                flat[: min(4, flat.size)] = np.nan  # an all-NaN corner window
        arrays[name] = values.astype(spec["dtype"])
    return arrays


# ----------------------------------------------------------------------------- main

def build():
    """Return (the JSON case list, dict of arrays) for the whole corpus (needs TensorFlow)."""
    entries, arrays = [], {}
    for index, spec in enumerate(CASES):
        inputs = make_inputs(index, spec)
        expected = ops.get(spec["op"]).tf_function(**inputs, **spec["kwargs"])
        if isinstance(expected, tuple):  # (values, indices): the indices stored beside
            expected, arrays[f"{spec['name']}/expected_indices"] = expected
        assert expected.dtype == np.dtype(spec["dtype"]), (spec["name"], expected.dtype)
        for name, value in inputs.items():
            arrays[f"{spec['name']}/{name}"] = value
        arrays[f"{spec['name']}/expected"] = expected
        entries.append(dict(name=spec["name"], op=spec["op"], arrays=list(inputs),
                            kwargs=spec["kwargs"], dtype=spec["dtype"],
                            exact=spec["op"] in EXACT_OPS))
    return entries, arrays


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only, write nothing")
    parser.add_argument("--append", action="store_true",
                        help="keep the stored cases, add only the new ones (TF's own float32 "
                             "MaxPool3D treats NaN differently on AVX2 and AVX-512 machines: "
                             "rebuilding elsewhere would rewrite those entries)")
    args = parser.parse_args(argv)
    import fastconv

    entries, arrays = build()
    names = [entry["name"] for entry in entries]
    assert len(set(names)) == len(names), "case names must be unique"
    worst = 0.0
    print(f"{'case':40s} {'shape':>20s}  max |fastconv - TF|")
    for entry in entries:
        call = {name: arrays[f"{entry['name']}/{name}"] for name in entry["arrays"]}
        got = getattr(fastconv, entry["op"])(**call, **entry["kwargs"])
        expected = arrays[f"{entry['name']}/expected"]
        if isinstance(got, tuple):
            assert np.array_equal(got[1], arrays[f"{entry['name']}/expected_indices"]), \
                f"{entry['name']}: indices differ"
            got = got[0]
        with np.errstate(invalid="ignore"):
            same = (got == expected) | (np.isnan(got) & np.isnan(expected))
            diff = np.where(same, 0.0, np.abs(got.astype(np.float64) - expected))
        error = float(np.max(diff, initial=0.0))
        worst = max(worst, error)
        print(f"{entry['name']:40s} {str(expected.shape):>20s}  {error:.3g}")
    if args.check:
        if CORPUS.exists():
            with np.load(CORPUS, allow_pickle=False) as stored:
                changed = [key for key, value in arrays.items()
                           if key not in stored or not np.array_equal(stored[key], value,
                                                                      equal_nan=True)]
            print(f"entries that differ from {CORPUS.name}: {changed or 'none'}")
        return 0
    if args.append and CORPUS.exists():
        with np.load(CORPUS, allow_pickle=False) as stored:
            kept = json.loads(str(stored["cases.json"]))
            kept_names = {entry["name"] for entry in kept}
            entries = kept + [entry for entry in entries if entry["name"] not in kept_names]
            arrays = {**{key: value for key, value in arrays.items()
                         if key.split("/")[0] not in kept_names},
                      **{key: stored[key] for key in stored.files if key != "cases.json"}}
    np.savez_compressed(CORPUS, **{"cases.json": np.array(json.dumps(entries))}, **arrays)
    print(f"wrote {CORPUS} ({CORPUS.stat().st_size / 1024:.0f} KiB, {len(entries)} cases); "
          f"worst fastconv error {worst:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
