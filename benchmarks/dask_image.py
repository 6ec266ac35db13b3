"""A whole-slide-sized image convolved and pooled from a chunked dask array (issue 17).

The image (``--size`` x ``--size`` x 3 float32, 16384 by default: 3.2 GB) is written once to a
``.npy`` file; the chunked runs read their blocks from it (each task opens it memory-mapped, so
no worker ever holds the image) and write their output blocks to another ``.npy`` file. The
layer pair is the seed CNNs' first stage at photo scale::

    y = max_pool2d(conv2d(x, w (3x3, 3 -> 8), 1, "SAME", bias=b, activation="relu"), 2, 2, "VALID")

Scenarios, each in its own process, one after the other (never concurrently):

* ``in-memory``: ``np.load`` the image, make the two calls (fastconv's 2 threads) and
  ``np.save`` the result: file to file, as the chunked runs;
* ``dask, 1 worker``: a ``distributed.LocalCluster`` of one worker process with one task thread
  (fastconv's 2 threads inside each task);
* ``dask, 2 workers``: two worker processes, one task thread each, fastconv with 1 thread
  each (``NUMBA_NUM_THREADS=1``).

Each prints its wall time (median of ``--repeat`` runs after a first, untimed run that loads
the kernels from the disk cache), the efficiency ``in-memory time / chunked time``, the peak
of the arrays each computing process held at once (``tracemalloc``, which NumPy reports its
buffers to, over one more untimed run) and its peak resident memory (which also counts the
pages of the memory-mapped files it touched, and the ~0.1 GB of Numba and dask). The chunked
output is checked against the in-memory one band by band (max |diff| within the suite's
float32 tolerance).

Usage::

    python benchmarks/dask_image.py                    # 16384^2, 2048^2 chunks
    python benchmarks/dask_image.py --size 4096 --chunk 1024 --repeat 3

Timing is printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

CHANNELS_OUT = 8


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _weights():
    rng = np.random.default_rng(1)
    return (rng.standard_normal((3, 3, 3, CHANNELS_OUT)).astype(np.float32) / 5,
            rng.standard_normal(CHANNELS_OUT).astype(np.float32) / 10)


def _layers(x):
    import fastconv

    w, b = _weights()
    return fastconv.max_pool2d(fastconv.conv2d(x, w, 1, "SAME", bias=b, activation="relu"), 2, 2,
                               "VALID")


def write_image(path, size):
    """The input image, written in bands (never whole in memory)."""
    image = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(1, size, size, 3))
    rng = np.random.default_rng(0)
    band = 1024
    for top in range(0, size, band):
        rows = min(band, size - top)
        image[0, top:top + rows] = rng.random((rows, size, 3), dtype=np.float32)
    image.flush()
    del image


# ----------------------------------------------------------------------------- scenarios

def run_in_memory(args):
    import fastconv

    times = []
    for _ in range(args.repeat + 1):  # the first run loads the kernels: not timed
        start = time.perf_counter()
        x = np.load(args.image)
        np.save(args.expected, _layers(x))  # file to file, as the chunked runs
        times.append(time.perf_counter() - start)
        del x
    tracemalloc.start()  # the arrays' peak, one more untimed run (as the workers')
    np.save(args.expected, _layers(np.load(args.image)))
    heap = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {"seconds": float(np.median(times[1:])), "threads": fastconv.get_num_threads(),
            "peak_rss_mb": [_peak_rss_mb()], "peak_heap_mb": [heap]}


def _read_block(path, chunk, block_id=None):
    image = np.load(path, mmap_mode="r")
    _, i, j, _ = block_id
    return np.array(image[:, i * chunk:(i + 1) * chunk, j * chunk:(j + 1) * chunk, :])


def _write_block(block, path, block_info=None):
    out = np.load(path, mmap_mode="r+")
    (b0, b1), (r0, r1), (c0, c1), (k0, k1) = block_info[0]["array-location"]
    out[b0:b1, r0:r1, c0:c1, k0:k1] = block  # the page cache, as np.save: no msync
    return np.zeros((1,) * block.ndim, np.float32)


def _lazy_pipeline(args, shape):
    import dask.array as da

    chunks = tuple(tuple(min(args.chunk, n - a) for a in range(0, n, args.chunk))
                   for n in shape[1:3])
    x = da.map_blocks(_read_block, args.image, args.chunk, chunks=((1,),) + chunks + ((3,),),
                      dtype=np.float32, meta=np.empty((0, 0, 0, 0), np.float32))
    return _layers(x)


def run_dask(args):
    import distributed

    shape = np.load(args.image, mmap_mode="r").shape
    threads_env = {"NUMBA_NUM_THREADS": "1"} if args.workers > 1 else {}
    with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  worker_dashboard_address=None,
                                  env={"FASTCONV_COMPILE": "sync", **threads_env},
                                  memory_limit=0) as cluster, \
            distributed.Client(cluster) as client:
        start = time.perf_counter()
        lazy = _lazy_pipeline(args, shape)
        graph_seconds = time.perf_counter() - start
        out = np.lib.format.open_memmap(args.output, mode="w+", dtype=np.float32,
                                        shape=lazy.shape)
        del out
        written = lazy.map_blocks(_write_block, args.output, dtype=np.float32,
                                  chunks=tuple((1,) * len(c) for c in lazy.chunks))
        before = client.run(_peak_rss_mb)  # fastconv, numba and dask imported, nothing run
        times = []
        for _ in range(args.repeat + 1):  # the first run loads the kernels: not timed
            start = time.perf_counter()
            client.compute(written).result()
            times.append(time.perf_counter() - start)
        peaks = client.run(_peak_rss_mb)
        # Resident memory counts the memory-mapped input and output pages a worker touched;
        # the arrays it allocates (blocks, halos, results held for the next task) are what
        # tracemalloc sees (NumPy reports its buffers to it): one more, untimed run traced.
        client.run(tracemalloc.start)
        client.compute(written).result()
        heaps = client.run(lambda: tracemalloc.get_traced_memory()[1] / 2**20)
        client.run(tracemalloc.stop)
        threads = client.run(lambda: __import__("fastconv").get_num_threads())
    return {"seconds": float(np.median(times[1:])), "first_seconds": times[0],
            "graph_seconds": graph_seconds,
            "workers": args.workers,
            "threads": sorted(threads.values()),
            "peak_rss_mb": sorted(peaks.values()),
            "blocks_cost_mb": sorted(peaks[w] - before[w] for w in peaks),
            "peak_heap_mb": sorted(heaps.values()),
            "numblocks": lazy.numblocks, "chunks_in": [args.chunk, args.chunk]}


# ----------------------------------------------------------------------------- driver

def _child(scenario, args, workers=1):
    cmd = [sys.executable, __file__, "--scenario", scenario, "--image", args.image, "--expected",
           args.expected, "--output", args.output, "--chunk", str(args.chunk), "--repeat",
           str(args.repeat), "--workers", str(workers)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{scenario} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _compare(expected_path, output_path):
    expected = np.load(expected_path, mmap_mode="r")
    got = np.load(output_path, mmap_mode="r")
    worst, scale = 0.0, 1.0
    for top in range(0, expected.shape[1], 512):
        a = np.asarray(expected[:, top:top + 512])
        b = np.asarray(got[:, top:top + 512])
        worst = max(worst, float(np.max(np.abs(a - b))))
        scale = max(scale, float(np.max(np.abs(a))))
    return worst / scale


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--scenario", choices=["in-memory", "dask"], help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    parser.add_argument("--expected", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.scenario == "in-memory":
        print(json.dumps(run_in_memory(args)))
        return
    if args.scenario == "dask":
        print(json.dumps(run_dask(args)))
        return

    with tempfile.TemporaryDirectory(prefix="fastconv-dask-") as folder:
        args.image = os.path.join(folder, "image.npy")
        args.expected = os.path.join(folder, "expected.npy")
        args.output = os.path.join(folder, "output.npy")
        start = time.perf_counter()
        write_image(args.image, args.size)
        print(f"image {args.size} x {args.size} x 3 float32 "
              f"({os.path.getsize(args.image) / 2**30:.2f} GiB) written in "
              f"{time.perf_counter() - start:.1f} s; chunks {args.chunk} x {args.chunk}; "
              f"load {os.getloadavg()[0]:.2f}")
        rows = [("in-memory", _child("in-memory", args))]
        for workers in (1, 2):
            rows.append((f"dask, {workers} worker{'s' * (workers > 1)}",
                         _child("dask", args, workers)))
            error = _compare(args.expected, args.output)
            rows[-1][1]["max_rel_diff"] = error
        base = rows[0][1]["seconds"]
        print(f"{'scenario':<18} {'seconds':>8} {'efficiency':>10}  peak arrays per process "
              f"(MB)  peak RSS per process (MB)  max |diff| / max|y|")
        for name, row in rows:
            print(f"{name:<18} {row['seconds']:8.2f} {base / row['seconds']:10.2f}  "
                  f"{', '.join(f'{m:.0f}' for m in row['peak_heap_mb']):<29}"
                  f"{', '.join(f'{m:.0f}' for m in row['peak_rss_mb']):<27}"
                  f"{row.get('max_rel_diff', 0):.1e}")
        print(f"output {rows[1][1].get('numblocks')} blocks; building the graph of the two calls "
              f"took {rows[1][1].get('graph_seconds', 0):.2f} s (not in the times); "
              f"load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
