"""pytest-benchmark: fastconv and TensorFlow on the same inputs, side by side, per workload.

Run ``pytest benchmarks/ --benchmark-only`` (``make bench``): each workload is a group holding
its fastconv row and its TensorFlow row, so pytest-benchmark prints them next to each other.
Channels-first groups time fastconv on NCHW data and TensorFlow on the same layer channels-last
(its CPU kernels refuse NCHW). This shows speed; it never fails on it. For the ratio table
against issue 3's goals and the machine ceilings, run ``python benchmarks/ratios.py``.

Options: ``--benchmark-group-by=group`` (default here), ``-k mnist`` to select workloads,
``--benchmark-json out.json`` to save.
"""

from fastconv import config, workloads

config.COMPILE = "sync"  # time the kernels, not NumPy standing in during a background compile

# No module-level `import pytest`: asv imports every module in benchmarks/ while discovering its
# suites, in an environment without pytest. The parametrisation is done by the hook below.
JOBS = [(case, layout, backend) for case in workloads.CASES for layout in case.layouts
        for backend in workloads.BACKENDS]


def pytest_generate_tests(metafunc):
    if "job" in metafunc.fixturenames:
        metafunc.parametrize("job", JOBS, ids=[f"{case.name}-{case.data_format(layout)}-{backend}"
                                               for case, layout, backend in JOBS])


def test_speed(benchmark, job):
    case, layout, backend = job
    if backend == "tensorflow":
        try:
            workloads.import_tensorflow()
        except ImportError as error:
            import pytest

            pytest.skip(str(error))
    call, _ = workloads.prepare(case, backend, layout=layout)
    call()  # compile outside the timings
    benchmark.group = f"{case.name} ({case.data_format(layout)}): {case.describe(layout)}"
    benchmark.extra_info.update(backend=backend, unit=case.unit, work=case.work(),
                                goals=list(case.goals))
    benchmark(call)
