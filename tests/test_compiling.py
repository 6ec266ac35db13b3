"""The first-call policy (fastconv.cpu.compiling): NumPy while the kernels compile elsewhere.

* in-process, with stand-in kernels (nothing compiles): the first call of a key computes with
  NumPy and sends one job to the worker, later calls wait on the same job, a done job switches
  to the kernel, a failed one compiles in the calling thread; ``sync`` mode and forced
  algorithms compile here; a marker on disk means "load, do not ask";
* the stand-in sent to the worker keys the same compiled code as the real problem (read-only
  arrays, large batches shrunk to 1) and holds no data;
* end to end, in fresh processes with an empty cache: the first calls return the right
  results at once, a background process fills the cache, the next process loads it.
"""

import dataclasses
import json
import os
import pickle
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastconv
from fastconv import config, dispatch
from fastconv.cpu import compiling
from fastconv.problems import PoolProblem, pad_to_3d
from fastconv.shapes import window_geometry


def _pool_problem(x, kind="max"):
    g = pad_to_3d(window_geometry(x.shape[1:3], (2, 2), (2, 2), (1, 1), "VALID"))
    return PoolProblem(x[:, None], g, False, (x.shape[0], *g.out_sizes, x.shape[-1]), x.dtype,
                       kind)


@pytest.fixture
def policy(monkeypatch, tmp_path):
    """A clean policy state, background mode, markers in a private directory, and a worker
    that records jobs instead of compiling them."""
    monkeypatch.setattr(config, "COMPILE", "background")
    for name in ("_ready", "_failed"):
        monkeypatch.setattr(compiling, name, set())
    monkeypatch.setattr(compiling, "_pending", {})
    compiling._marker_dir.cache_clear()
    monkeypatch.setattr(compiling, "_marker_dir", lambda: str(tmp_path))
    jobs = []

    def submit(key, marker, family, name, problem):
        jobs.append((key, compiling.stand_in(problem)))
        compiling._pending[marker] = key
        return True

    monkeypatch.setattr(compiling, "_submit", submit)
    return jobs


def _kernel(calls):
    def kernel_run(problem):
        calls.append(problem)
        return "kernel"
    return kernel_run


def test_first_calls_compute_with_numpy_until_the_worker_is_done(policy, rng):
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    problem = _pool_problem(x)
    calls = []
    for _ in range(3):
        out = compiling.run("max_pool", "direct", _kernel(calls), problem)
        np.testing.assert_array_equal(out[:, 0], x.reshape(2, 3, 2, 3, 2, 3).max(axis=(2, 4)))
    assert len(policy) == 1 and not calls  # one job, NumPy answered every call
    key = policy[0][0]
    compiling._pending.clear()
    compiling._ready.add(key)  # what the reply reader does on "done"
    assert compiling.run("max_pool", "direct", _kernel(calls), problem) == "kernel"
    assert len(calls) == 1 and len(policy) == 1


def test_a_failed_background_job_compiles_in_the_calling_thread(policy, rng, tmp_path):
    problem = _pool_problem(rng.standard_normal((1, 4, 4, 2)).astype(np.float32))
    key = compiling.compile_key("max_pool", "direct", problem)
    compiling._failed.add(key)
    calls = []
    assert compiling.run("max_pool", "direct", _kernel(calls), problem) == "kernel"
    assert not policy and len(calls) == 1
    assert os.listdir(tmp_path) == [compiling.marker_name(key)]  # the next process loads it


@pytest.mark.parametrize("how", ["sync mode", "forced algorithm"])
def test_sync_mode_and_forced_algorithms_compile_here(policy, monkeypatch, rng, how):
    problem = _pool_problem(rng.standard_normal((1, 4, 4, 2)).astype(np.float32))
    calls = []
    if how == "sync mode":
        monkeypatch.setattr(config, "COMPILE", "sync")
        out = compiling.run("max_pool", "direct", _kernel(calls), problem)
    else:
        with dispatch.use_algorithm("direct"):
            out = compiling.run("max_pool", "direct", _kernel(calls), problem)
    assert out == "kernel" and len(calls) == 1 and not policy


def test_a_marker_on_disk_means_load_do_not_ask(policy, rng):
    problem = _pool_problem(rng.standard_normal((1, 4, 4, 2)).astype(np.float32))
    compiling._write_marker(compiling.compile_key("max_pool", "direct", problem))
    calls = []
    assert compiling.run("max_pool", "direct", _kernel(calls), problem) == "kernel"
    assert not policy


def test_stand_in_keys_the_same_code_and_holds_no_data(rng, monkeypatch):
    monkeypatch.setattr(compiling, "STAND_IN_MAX_BYTES", 1000)
    x = rng.standard_normal((16, 8, 8, 3)).astype(np.float32)
    x.flags.writeable = False
    problem = _pool_problem(x)
    job = compiling.stand_in(problem)
    assert len(pickle.dumps(job)) < 2000  # shapes, not arrays: the pipe never blocks the caller
    made = compiling.materialise(job)
    assert made.x.shape == (1,) + problem.x.shape[1:] and not made.x.any()
    assert made.out_shape == (1,) + tuple(problem.out_shape[1:])
    assert not made.x.flags.writeable
    assert (compiling.compile_key("max_pool", "direct", made)
            == compiling.compile_key("max_pool", "direct", problem))
    x_copy = np.ascontiguousarray(x[:, ::2])  # non-contiguous views are copied: writable
    assert compiling.compile_key("max_pool", "direct", _pool_problem(x_copy)) != \
        compiling.compile_key("max_pool", "direct", problem)


def test_read_only_arrays_share_the_writable_kernels(rng):
    """A read-only input, filter or bias is seen by the kernels through a writable view of the
    same memory (no copy, no second compile); the arrays themselves stay read-only."""
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    bias = np.ones(4, np.float32)
    expected = fastconv.conv2d(x, w, 1, "SAME", bias=bias)
    frozen = [a.copy() for a in (x, w, bias)]
    for a in frozen:
        a.flags.writeable = False
    with dispatch.capture_problems() as seen:
        fastconv.conv2d(frozen[0], w, 1, "SAME", bias=bias)
    (_, _, problem), = seen
    problem.w, problem.bias = frozen[1].reshape(problem.w.shape), frozen[2]  # read-only views
    seen_by_kernels = compiling.writable_inputs(problem)
    for name, original in zip(("x", "w", "bias"), frozen):
        alias = getattr(seen_by_kernels, name)
        assert alias.flags.writeable and np.shares_memory(alias, original)
        assert not original.flags.writeable
    impl = dispatch.select("conv", "cpu", problem)
    copies = dataclasses.replace(problem, x=problem.x.copy(), w=problem.w.copy(),
                                 bias=bias)  # writable
    assert impl.run.compile_key(problem) == impl.run.compile_key(copies)
    np.testing.assert_array_equal(fastconv.conv2d(*frozen[:2], 1, "SAME", bias=frozen[2]),
                                  expected)


def test_window_shapes_compiled_into_a_kernel_key_it(rng):
    from fastconv.cpu import backend

    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    small = backend._planar_pool_window(_pool_problem(np.moveaxis(x, 1, -1)))
    assert small == (2, 2, 2, 2)


# ----------------------------------------------------------------------------- end to end

SCRIPT = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import fastconv
    from fastconv.cpu import compiling
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 9, 8, 5)).astype(np.float32)
    x[0, 1, 1, 2] = np.nan
    results = {}
    start = time.perf_counter()
    results["max"] = fastconv.max_pool2d(x, 3, 2, "SAME").tolist()
    results["gmax"] = fastconv.global_max_pool2d(x).tolist()
    results["first_calls_s"] = time.perf_counter() - start
    results["waited"] = compiling.wait_for_background(timeout=300)
    results["max_after"] = fastconv.max_pool2d(x, 3, 2, "SAME").tolist()
    print(json.dumps(results))
""")


def _run(cache):
    env = dict(os.environ, FASTCONV_COMPILE="background", FASTCONV_CACHE_DIR=str(cache),
               FASTCONV_LOG="info")
    env.pop("NUMBA_CACHE_DIR", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1]), proc.stderr


def test_cold_process_answers_at_once_and_the_next_one_starts_warm(tmp_path, rng):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 9, 8, 5)).astype(np.float32)
    x[0, 1, 1, 2] = np.nan
    expected = {"max": fastconv.reference.max_pool2d(x, 3, 2, "SAME"),
                "gmax": fastconv.reference.global_max_pool2d(x)}
    first, log = _run(tmp_path)
    assert "compiling in the background" in log, log
    assert re.search(r"compiled in the background in [0-9.]+ s; switching", log), log
    assert first["waited"] is True
    for name, value in expected.items():  # NumPy's answers: TF's max rule, exactly
        np.testing.assert_array_equal(np.array(first[name], np.float32), value)
    np.testing.assert_array_equal(np.array(first["max_after"], np.float32), expected["max"])
    second, log = _run(tmp_path)
    assert "compiling in the background" not in log, log
    for name, value in expected.items():
        np.testing.assert_array_equal(np.array(second[name], np.float32), value)


def test_a_forked_child_forgets_its_parents_jobs(policy, monkeypatch, rng):
    """After fork the parent's worker cannot answer the child: the child drops the parent's
    pending jobs (markers still tell when they are done) and will start its own worker."""
    problem = _pool_problem(rng.standard_normal((1, 4, 4, 2)).astype(np.float32))
    compiling.run("max_pool", "direct", _kernel([]), problem)
    assert compiling._pending
    monkeypatch.setitem(compiling._worker, "process", object())
    compiling._after_fork_in_child()
    assert not compiling._pending and compiling._worker["process"] is None
    assert compiling.wait_for_background(timeout=1) is True
