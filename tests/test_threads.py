"""Concurrency and thread-count control of the CPU kernels.

Numba's default ``workqueue`` threading layer aborts the process when two Python threads enter
parallel code at once; fastconv selects a thread-safe layer (see ``fastconv.cpu.threads``).
These tests hammer every op family from several Python threads and compare with serial results.
"""

import threading

import numpy as np
import pytest

import fastconv

N_THREADS = 8
ITERATIONS = 10


def _workload(rng):
    x = rng.standard_normal((2, 17, 15, 6)).astype(np.float32)
    w = rng.standard_normal((3, 3, 6, 20)).astype(np.float32)
    dw = rng.standard_normal((3, 3, 6, 1)).astype(np.float32)
    b = rng.standard_normal(20).astype(np.float32)
    return [
        lambda: fastconv.conv2d(x, w, 1, "SAME", bias=b, activation="relu"),
        lambda: fastconv.conv2d(np.moveaxis(x, -1, 1), w, 2, "VALID", "NCHW"),
        lambda: fastconv.depthwise_conv2d(x, dw, 1, "SAME"),
        lambda: fastconv.conv2d_transpose(x, np.ascontiguousarray(w.transpose(0, 1, 3, 2)),
                                          (2, 34, 30, 20), 2, "SAME"),
        lambda: fastconv.max_pool2d(x, 3, 2, "SAME"),
        lambda: fastconv.avg_pool2d(x, 2, 1, "VALID"),
        lambda: fastconv.global_avg_pool2d(x),
        # the other ranks and the remaining ops
        lambda: fastconv.conv1d(x[0], w[0], 2, "SAME", bias=b, activation="tanh"),
        lambda: fastconv.conv3d(x[None], w[None], 1, "SAME", "NDHWC"),
        lambda: fastconv.max_pool1d(x[1], 3, 1, "SAME"),
        lambda: fastconv.max_pool3d(x[None], 2, 2, "SAME"),
        lambda: fastconv.avg_pool3d(np.moveaxis(x[None], -1, 1), 2, 1, "VALID", "NCDHW"),
        lambda: fastconv.global_max_pool2d(x, keepdims=True),
        lambda: fastconv.zero_pad2d(x, ((1, 2), (3, 0))),
    ]


def test_concurrent_calls_match_serial_results():
    ops = _workload(np.random.default_rng(0))
    expected = [op() for op in ops]
    failures = []
    barrier = threading.Barrier(N_THREADS)

    def worker(seed):
        order = np.random.default_rng(seed).permutation(len(ops))
        barrier.wait()  # start together so parallel regions overlap
        for _ in range(ITERATIONS):
            for index in order:
                got = ops[index]()
                if not np.array_equal(got, expected[index]):
                    failures.append((seed, index))

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(N_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_thread_count_is_honoured_and_restored():
    before = fastconv.get_num_threads()
    try:
        fastconv.set_num_threads(1)
        assert fastconv.get_num_threads() == 1
        x = np.arange(2 * 9 * 9 * 3, dtype=np.float64).reshape(2, 9, 9, 3)
        one_thread = fastconv.max_pool2d(x, 2, 2, "VALID")
    finally:
        fastconv.set_num_threads(before)
    assert fastconv.get_num_threads() == before
    np.testing.assert_array_equal(one_thread, fastconv.max_pool2d(x, 2, 2, "VALID"))


def test_thread_count_changes_between_calls_reach_the_kernels(monkeypatch):
    """Each call's parallel region runs with the count set just before it (big problems, which
    are not kept on one thread for being small)."""
    import contextlib

    import numba

    from fastconv.cpu import backend

    most = numba.config.NUMBA_NUM_THREADS
    if most < 2:
        pytest.skip("Numba has a single thread here")
    seen = []
    real_region = backend.parallel_region

    @contextlib.contextmanager
    def spy(*args, **kwargs):
        with real_region(*args, **kwargs):
            seen.append(numba.get_num_threads())
            yield

    monkeypatch.setattr(backend, "parallel_region", spy)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 96, 96, 32)).astype(np.float32)
    w = rng.standard_normal((3, 3, 32, 32)).astype(np.float32)
    before = fastconv.get_num_threads()
    try:
        for count in (1, most, 1, 2):
            fastconv.set_num_threads(count)
            for call in (lambda: fastconv.conv2d(x, w, 1, "SAME"),
                         lambda: fastconv.max_pool2d(x, 3, 1, "SAME")):
                seen.clear()
                call()
                assert seen == [count]
    finally:
        fastconv.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -1, 10_000, 1.5, "2", True])
def test_set_num_threads_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="n must be an int between 1 and"):
        fastconv.set_num_threads(bad)


def test_threading_layer_is_thread_safe():
    from fastconv.cpu import threads

    fastconv.max_pool2d(np.ones((1, 4, 4, 1), np.float32), 2, 2, "VALID")  # start the pool
    assert threads.layer_is_threadsafe()


def test_first_op_of_a_process_from_a_warm_cache(tmp_path):
    """A process whose first op loads the blocked conv from the disk cache gets right results.

    Guards the warm-cache path of fastconv.cpu.threads._start_thread_pool. The segfault that
    function fixes needed a particular cache history (an entry point cached in a process that
    loaded its parallel callee from the cache), which this test does not recreate: it checks
    the common warm path only."""
    import os
    import subprocess
    import sys

    script = (
        "import numpy as np, fastconv\n"
        "x = np.arange(2 * 40 * 40 * 16, dtype=np.float32).reshape(2, 40, 40, 16) / 1e4\n"
        "w = np.linspace(-1, 1, 3 * 3 * 16 * 64, dtype=np.float32).reshape(3, 3, 16, 64)\n"
        "y = fastconv.conv2d(x, w, 1, 'SAME')\n"
        "r = fastconv.reference.conv2d(x, w, 1, 'SAME')\n"
        "assert np.abs(y - r).max() <= 1e-5 * max(1, np.abs(r).max())\n"
        "print('ok')\n")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    for _ in range(2):  # the first run compiles and fills the cache, the second loads it
        run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout.strip() == "ok"


# ----------------------------------------------------------------------------- BLAS on our threads

def _gemm_case(rng, batch=2, pixels=32 * 32):
    x = rng.standard_normal((batch, 16, pixels // 32, 32)).astype(np.float32)
    w = rng.standard_normal((1, 1, 16, 24)).astype(np.float32)
    return x, w


@pytest.mark.parametrize("threads", [1, 2])
def test_channels_first_1x1_runs_blas_single_threaded_on_fastconv_threads(monkeypatch, rng,
                                                                           threads):
    """The NCHW 1x1 conv's matrix products see BLAS limited to one thread (no pool that spins
    after the call) and use at most ``fastconv.get_num_threads()`` threads of ours."""
    from threadpoolctl import threadpool_info

    from fastconv.cpu import blas

    x, w = _gemm_case(rng)
    seen = []
    matmul = np.matmul

    def recording_matmul(*args, **kwargs):
        blas_threads = [lib["num_threads"] for lib in threadpool_info()
                        if lib["user_api"] == "blas"]
        seen.append((threading.current_thread().name, tuple(blas_threads)))
        return matmul(*args, **kwargs)

    monkeypatch.setattr(blas.np, "matmul", recording_matmul)
    monkeypatch.setattr(blas, "MIN_COLUMNS_PER_JOB", 1)
    previous = fastconv.get_num_threads()
    fastconv.set_num_threads(min(threads, previous))
    try:
        y = fastconv.conv2d(x, w, 1, "VALID", "NCHW")
    finally:
        fastconv.set_num_threads(previous)
    expected = np.einsum("nchw,ck->nkhw", x, w[0, 0])
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    assert seen, "the 1x1 NCHW conv did not go through fastconv.cpu.blas"
    assert all(set(counts) <= {1} for _, counts in seen), seen
    assert len({name for name, _ in seen}) <= min(threads, previous), seen
    assert len(seen) == (1 if min(threads, previous) == 1 else 2), seen


def test_batched_matmul_splits_columns_of_a_single_image(rng):
    from fastconv.cpu.blas import batched_matmul

    a = rng.standard_normal((5, 7))
    b = rng.standard_normal((1, 7, 1000))
    out = np.empty((1, 5, 1000))
    batched_matmul(a, b, out, threads=3)
    np.testing.assert_allclose(out, a @ b, rtol=1e-12)
