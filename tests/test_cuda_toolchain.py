"""Every CUDA kernel compiled for real, without a GPU: NVVM to PTX, ptxas to SASS (issue 16).

The simulator (tests/cuda) checks index logic only; it never types, lowers or compiles a
kernel. Here each kernel is built from its factory call (a :class:`fastconv.cuda.kernels.
KernelSpec`) and compiled for sm_80 and sm_90 with NVIDIA's pip wheels, then ptxas reports
its registers, shared memory, stack and spills (:mod:`fastconv.cuda.resources`).

The kernels are those the workloads build with the configured launch shapes (listed under the
simulator without running them), plus, when ``FASTCONV_CUDA_INVENTORY`` names the folder the
simulator run recorded into (``make test`` does), the kernels tests/cuda launched: every
full-size one, and one per code path of its tiny-block kernels (``resources.representatives``;
``python -m fastconv.cuda.resources build/cuda-inventory/*.pickle`` compiles every one). The
work is split into shards so that ``pytest -n`` spreads the compiles over the cores.
"""

import functools
import glob
import os

import pytest

resources = pytest.importorskip("fastconv.cuda.resources")

REASON = resources.toolchain_unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no CUDA toolchain: {REASON}")

SHARDS = 8


@functools.lru_cache(maxsize=1)
def _workloads():
    return tuple(resources.workload_specs())


@pytest.fixture(scope="module")
def inventory():
    specs = set(_workloads())
    folder = os.environ.get("FASTCONV_CUDA_INVENTORY")
    if folder:
        specs.update(resources.load_specs(glob.glob(os.path.join(folder, "*.pickle"))))
    # Every full-size kernel; of tests/cuda's tiny-block kernels, one per code path (the rest
    # differ in unrolled constants only; the resources script compiles every one).
    return resources.representatives(sorted(specs, key=lambda spec: (spec.factory, repr(spec))))


def test_the_inventory_covers_every_kernel_factory(inventory):
    from fastconv.cuda import conv, grad, kernels, pool, window_max  # noqa: F401  (factories)

    assert set(kernels.FACTORIES) <= {spec.factory for spec in inventory}
    if os.environ.get("FASTCONV_CUDA_INVENTORY"):  # make test: the simulator run recorded
        assert any(spec.threads < 32 for spec in inventory), "no tests/cuda kernels recorded"


def _is_workload_float32_conv(spec, workloads):
    return (spec in workloads and spec.factory.endswith(":conv_kernel")
            and spec.args[0] == "float32")


def _failures(rows):
    return [f"{row.spec.describe()} on sm_{row.cc[0]}{row.cc[1]} ({row.resources}): {problem}"
            for row in rows for problem in [*row.problems, *resources.budget_misses(row)]]


@pytest.mark.parametrize("shard", range(SHARDS))
def test_every_kernel_compiles_without_spills_within_limits_and_budget(inventory, shard):
    workloads = set(_workloads())
    rows = [row for spec in inventory[shard::SHARDS]
            if not _is_workload_float32_conv(spec, workloads)  # the median test's
            for row in resources.measure(spec)]
    failures = _failures(rows)
    assert not failures, "\n".join(failures)


def test_the_workloads_float32_conv_kernels_reach_a_median_occupancy_of_25_percent():
    specs = [spec for spec in _workloads() if spec.factory.endswith(":conv_kernel")
             and spec.args[0] == "float32"]
    rows = [row for spec in specs for row in resources.measure(spec)]
    assert not _failures(rows), "\n".join(_failures(rows))
    for cc in resources.CAPABILITIES:
        median = resources.median_occupancy([row for row in rows if row.cc == cc])
        assert median >= resources.CONV_FLOAT32_MEDIAN_OCCUPANCY, (cc, median)


def test_ptxas_reports_are_read_per_entry_function():
    report = """ptxas info    : 24 bytes gmem
ptxas info    : Compiling entry function 'kernel' for 'sm_90'
ptxas info    : Function properties for kernel
    16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 174 registers, used 1 barriers, 3072 bytes smem
ptxas info    : Compile time = 207.810 ms
"""
    found = resources.parse_ptxas(report)
    assert found == resources.Resources(174, 3072, 16, 8, 4)
    assert resources.problems(found, 256, (9, 0)) == ["spills (8 B stored, 4 B loaded)"]


@pytest.mark.parametrize("registers, threads, shared, blocks, limiter", [
    (128, 256, 0, 2, "registers"),  # 4096 registers per warp: 16 warps
    (129, 256, 0, 1, "registers"),  # 136 per thread after rounding: over the cliff
    (64, 256, 0, 4, "registers"),
    (32, 256, 0, 8, "warps"),
    (32, 32, 0, 32, "blocks"),
    (32, 256, 48 * 1024, 4, "shared"),  # 229,376 B of sm_90's 233,472
    (255, 1024, 0, 0, "registers"),  # cannot launch
])
def test_occupancy_follows_the_calculator(registers, threads, shared, blocks, limiter):
    found = resources.Resources(registers, shared, 0, 0, 0)
    assert resources.resident_blocks(found, threads, (9, 0)) == blocks
    assert resources.limiter(found, threads, (9, 0)) == limiter
    assert resources.occupancy(found, threads, (9, 0)) == blocks * threads / 2048
    if blocks == 0:
        assert resources.problems(found, threads, (9, 0))


# ----------------------------------------------------------------------------- the disk cache

CACHE_SCRIPT = """
import sys, types
# No GPU here: answer the three questions numba-cuda asks the driver while compiling and
# caching (the compute capability, twice, and the module load that a launch needs).
from numba.cuda.cudadrv import devices
from numba.cuda import dispatcher
fake = types.SimpleNamespace(device=types.SimpleNamespace(compute_capability=(9, 0), id=0))
devices.get_context = lambda devnum=None: fake
dispatcher.get_current_device = lambda: fake.device
dispatcher._Kernel.bind = lambda self: None
from numba import types as nt
from fastconv.cuda import pool
kernel = pool.zero_pad_kernel("float32", False, 256, (0, (9, 0)))
a5 = nt.Array(nt.float32, 5, "C")
kernel.dispatcher.compile((a5, a5, nt.int64, nt.int64, nt.int64))
print("HITS", sum(kernel.dispatcher._cache_hits.values()),
      "MISSES", sum(kernel.dispatcher._cache_misses.values()))
"""


def _compile_in_a_new_process(cache_dir):
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items()
           if key not in ("NUMBA_CACHE_DIR", "NUMBA_ENABLE_CUDASIM")}
    env["FASTCONV_CACHE_DIR"] = str(cache_dir)
    done = subprocess.run([sys.executable, "-c", CACHE_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.split("HITS")[-1].split()


def test_a_second_process_loads_the_kernel_from_disk_and_a_corrupt_cache_recompiles(tmp_path):
    assert _compile_in_a_new_process(tmp_path) == ["0", "MISSES", "1"]
    saved = sorted(path.name for path in tmp_path.rglob("*zero_pad*"))
    assert any(name.endswith(".nbi") for name in saved), saved
    assert any(name.endswith(".nbc") for name in saved), saved
    assert _compile_in_a_new_process(tmp_path) == ["1", "MISSES", "0"]
    for path in tmp_path.rglob("*zero_pad*"):
        path.write_bytes(b"garbage")
    assert _compile_in_a_new_process(tmp_path) == ["0", "MISSES", "1"]  # compiled, no error
    assert _compile_in_a_new_process(tmp_path) == ["1", "MISSES", "0"]  # and rewritten
