"""A new user's first minute: import + first calls, fastconv (cold and warm cache) vs TensorFlow.

Each scenario runs in a fresh Python process, one after the other (never concurrently), so
nothing is imported or compiled beforehand:

* ``fastconv cold``: an empty kernel cache directory: the kernels compile in fastconv's
  background process while NumPy computes the first calls (``FASTCONV_COMPILE=background``,
  the default; ``--sync`` times compiling in the calling thread instead). The row "kernels
  compiled (background)" says when the last one was in the disk cache (not part of the total);
* ``fastconv warm``: the same directory, filled by the cold run (kernels load from disk);
* ``tensorflow``: ``import tensorflow`` and the same calls through ``tf.nn``.

The calls are the layers a CNN user meets first (issue 10): a 3x3 conv, a 1x1 conv, a strided
conv, the seed MNIST first layer, a depthwise conv, max and average pooling and a channels-first
conv (fastconv only: TF's CPU kernels refuse NCHW, so TF runs that layer channels-last).

Usage::

    python benchmarks/cold_start.py            # the table
    python benchmarks/cold_start.py --repeat 3 # medians of 3 rounds (cold, warm, TF alternating)
    python benchmarks/cold_start.py --log      # also print fastconv's compile log (cold run)
    python benchmarks/cold_start.py --sync     # cold run compiling in the calling thread

Timing is printed, never asserted (these machines are noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

#: (workload case, layout): the first calls of a new CNN user.
FIRST_CALLS = (
    ("conv3x3_64_56_b8", "channels_last"),
    ("conv1x1_256_64_56_b8", "channels_last"),
    ("conv3x3_s2_64_128_56_b8", "channels_last"),
    ("mnist_conv1_same_b64", "channels_last"),
    ("depthwise3x3_128_56_b8", "channels_last"),
    ("mnist_pool1_b64", "channels_last"),
    ("seed004_avg2d_28x28x3", "channels_last"),
    ("conv3x3_64_56_b8", "channels_first"),
)

# Runs in the child: times the import and each first call, prints one JSON line.
_CHILD = r"""
import json, sys, time
backend, calls = sys.argv[1], json.loads(sys.argv[2])
start = time.perf_counter()
if backend == "tensorflow":
    import tensorflow
else:
    import fastconv
times = {"import": time.perf_counter() - start}
from fastconv import workloads
for name, layout in calls:
    case = workloads.get(name)
    arrays = workloads.make_arrays(case)
    if backend == "tensorflow":
        call, _ = workloads.prepare(case, "tensorflow", arrays=arrays)
    else:
        call, _ = workloads.prepare(case, "fastconv", layout=layout, arrays=arrays)
    t0 = time.perf_counter()
    call()
    times[f"{name} {layout}"] = time.perf_counter() - t0
times["total"] = sum(times.values())  # import + first calls (not the data set-up)
if backend == "fastconv":  # until the background worker has compiled every kernel
    from fastconv.cpu import compiling
    compiling.wait_for_background()
    times["kernels compiled (background)"] = time.perf_counter() - start
print(json.dumps(times))
"""


def run_child(backend, cache_dir, log=False, compile_mode="background"):
    """Run the first calls in a fresh process and return its timings (seconds)."""
    env = dict(os.environ, FASTCONV_COMPILE=compile_mode)
    env.pop("NUMBA_CACHE_DIR", None)
    if cache_dir is not None:
        env["FASTCONV_CACHE_DIR"] = cache_dir
    if log:
        env["FASTCONV_LOG"] = "info"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    done = subprocess.run([sys.executable, "-c", _CHILD, backend, json.dumps(FIRST_CALLS)],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{backend} child failed:\n{done.stderr[-4000:]}")
    if log:
        sys.stderr.write(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(repeat=1, log=False, with_tf=True, compile_mode="background"):
    """Return {scenario: [timings per round]} for fastconv cold, warm and TensorFlow."""
    rounds = {"fastconv cold": [], "fastconv warm": [], "tensorflow": []}
    for i in range(repeat):
        cache = tempfile.mkdtemp(prefix="fastconv-cold-")
        try:
            rounds["fastconv cold"].append(run_child("fastconv", cache, log=log and i == 0,
                                                     compile_mode=compile_mode))
            rounds["fastconv warm"].append(run_child("fastconv", cache))
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        if with_tf:
            rounds["tensorflow"].append(run_child("tensorflow", None))
    return {k: v for k, v in rounds.items() if v}


def table(rounds):
    """Median seconds per step and scenario, as a Markdown table."""
    scenarios = list(rounds)
    steps = list(dict.fromkeys(step for r in rounds.values() for step in r[0]))
    lines = ["| step | " + " | ".join(scenarios) + " |",
             "| --- |" + " --- |" * len(scenarios)]
    for step in steps:
        cells = [f"{statistics.median(r[step] for r in rounds[s]):.2f}" if step in rounds[s][0]
                 else "" for s in scenarios]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    if "tensorflow" in rounds:
        tf_total = statistics.median(r["total"] for r in rounds["tensorflow"])
        cold = statistics.median(r["total"] for r in rounds["fastconv cold"])
        lines.append(f"\ncold fastconv / TensorFlow: {cold / tf_total:.2f} "
                     f"(<= 1 is the goal); warm fastconv total "
                     f"{statistics.median(r['total'] for r in rounds['fastconv warm']):.2f} s")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="rounds (medians are printed)")
    parser.add_argument("--log", action="store_true", help="print the cold run's compile log")
    parser.add_argument("--no-tf", action="store_true", help="skip TensorFlow")
    parser.add_argument("--sync", action="store_true",
                        help="cold run with FASTCONV_COMPILE=sync (compile in the calling thread)")
    parser.add_argument("--json", help="write the raw timings here")
    args = parser.parse_args(argv)
    rounds = measure(args.repeat, args.log, not args.no_tf,
                     "sync" if args.sync else "background")
    print(table(rounds))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rounds, fh, indent=1)


if __name__ == "__main__":
    main()
