"""The benchmark suites stay runnable: ``asv check``, every module imports, and the workload
list (shared by ``fastconv compare``, asv and pytest-benchmark) is consistent and correct."""

import importlib
import importlib.util
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from fastconv import compare, timing, workloads

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH_MODULES = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem != "__init__")


@pytest.fixture(scope="module", autouse=True)
def _repo_on_path():
    sys.path.insert(0, str(ROOT))  # so that `benchmarks` imports as a package, as asv does
    yield
    sys.path.remove(str(ROOT))


@pytest.mark.skipif(importlib.util.find_spec("asv") is None, reason="asv is not installed")
def test_asv_check_passes():
    # --python=same: check the suite in this environment instead of building asv's own.
    done = subprocess.run([sys.executable, "-m", "asv", "check", "--python=same"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No problems found" in done.stdout


@pytest.mark.parametrize("name", BENCH_MODULES)
def test_benchmark_module_imports(name):
    importlib.import_module(f"benchmarks.{name}")


def _asv_suites():
    for name in BENCH_MODULES:
        module = importlib.import_module(f"benchmarks.{name}")
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == module.__name__ and \
                    isinstance(getattr(value, "params", None), list) and \
                    getattr(value, "param_names", [None])[0] == "case":
                yield value


def test_every_workload_is_in_exactly_one_asv_suite():
    seen = [case for suite in _asv_suites() for case in suite.params[0]]
    assert sorted(seen) == sorted(case.name for case in workloads.CASES)


def test_asv_setup_skips_impossible_combinations():
    from benchmarks.bench_pool import MaxPool

    suite = MaxPool()
    with pytest.raises(NotImplementedError, match="not benchmarked in channels_first"):
        suite.setup("seed004_max1d", "channels_first", "float32", "cpu", "fastconv")
    with pytest.raises(NotImplementedError, match="refuse channels-first"):
        suite.setup("mnist_pool1_b1", "channels_first", "float32", "cpu", "tensorflow")
    suite.setup("seed004_max1d", "channels_last", "float64", "cpu", "fastconv")
    suite.time_op("seed004_max1d", "channels_last", "float64", "cpu", "fastconv")
    assert suite.track_gbps("seed004_max1d", "channels_last", "float64", "cpu", "fastconv") > 0


# ----------------------------------------------------------------------------- the workload list

def test_workload_list_covers_the_seeds_and_goals():
    names = {case.name for case in workloads.CASES}
    for batch in (1, 64):
        for layer in ("conv1_same", "conv1_valid", "conv2_same", "conv2_valid", "pool1", "pool2"):
            case = workloads.get(f"mnist_{layer}_b{batch}")
            assert case.tag == "seed" and case.layouts == workloads.LAYOUTS
    assert {"photo_conv", "photo_pool", "mnist_cnn_b1"} <= names
    covered = {goal for case in workloads.CASES for goal in case.goals}
    assert covered == set(workloads.GOALS)
    assert all(case.tag == "seed" for case in workloads.select(quick=True))


def test_work_is_counted_by_hand():
    # 28x28 outputs x 32 channels x 3x3x1 taps, 2 FLOPs each.
    assert workloads.get("mnist_conv1_same_b1").work() == 2 * 28 * 28 * 32 * 9
    # Read 28x28x32 floats, write 14x14x32.
    assert workloads.get("mnist_pool1_b1").work() == (28 * 28 * 32 + 14 * 14 * 32) * 4
    assert workloads.get("mnist_pool1_b1").work("float64") == (28 * 28 * 32 + 14 * 14 * 32) * 8
    # Depthwise: one tap per output value and filter cell.
    assert workloads.get("depthwise3x3_128_56_b8").work() == 2 * 8 * 56 * 56 * 128 * 9
    # Transposed: every input pixel scatters a 3x3x32 filter slice per input channel.
    assert workloads.get("conv2d_transpose_s2_64_32_28_b8").work() == 2 * 8 * 28 * 28 * 64 * 9 * 32
    assert workloads.get("mnist_cnn_b1").out_shape() == (1, 5, 5, 64)
    assert workloads.get("seed004_conv_stride2").out_shape() == (1, 13, 13, 32)


def test_inputs_are_seeded():
    case = workloads.get("mnist_conv2_same_b1")
    first, again = workloads.make_arrays(case), workloads.make_arrays(case)
    assert set(first) == {"input", "filters", "bias"}
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    assert first["input"].dtype == np.float32
    assert workloads.make_arrays(case, "float64")["filters"].dtype == np.float64


def _small(case):
    return math.prod(case.in_shape) <= 200_000


@pytest.mark.tf
@pytest.mark.parametrize("case, layout", [(c, layout) for c in workloads.CASES if _small(c)
                                          for layout in c.layouts],
                         ids=lambda v: getattr(v, "name", v))
def test_small_workloads_equal_tensorflow(case, layout):
    pytest.importorskip("tensorflow")
    result = compare.run_case(case, layout, repeat=1, target=0)
    assert not result.error, result.error
    assert result.equal, (result.max_abs_error, result.tolerance)


@pytest.mark.slow
@pytest.mark.tf
@pytest.mark.parametrize("dtype", workloads.DTYPES)
@pytest.mark.parametrize("case", [c for c in workloads.CASES if not _small(c)],
                         ids=lambda c: c.name)
def test_large_workloads_equal_tensorflow(case, dtype):
    pytest.importorskip("tensorflow")
    for layout in case.layouts:
        result = compare.run_case(case, layout, dtype, repeat=1, target=0)
        assert not result.error, result.error
        assert result.equal, (layout, result.max_abs_error, result.tolerance)


def test_time_pair_orders_cheap_and_costly_calls():
    cheap, costly = timing.time_pair(lambda: sum(range(10)), lambda: sum(range(10_000)),
                                     repeat=3, target=0.002)
    assert 0 < cheap < costly


def test_the_peer_suite_runs_fastconv_and_skips_what_a_peer_cannot_run(monkeypatch):
    from benchmarks.bench_peers import Peers

    from fastconv import compare_peers

    suite = Peers()
    suite.setup("mnist_conv2_b1", "NCHW", "fastconv")
    suite.time_layer("mnist_conv2_b1", "NCHW", "fastconv")
    with pytest.raises(NotImplementedError, match="tf runs NHWC only"):
        suite.setup("mnist_conv2_b1", "NCHW", "tf")
    monkeypatch.setattr(compare_peers, "available", lambda peer: False)
    with pytest.raises(NotImplementedError, match="onnxruntime is not installed"):
        suite.setup("mnist_conv2_b1", "NCHW", "ort")
