"""fastconv's benchmarks: asv suites (bench_*.py) and pytest-benchmark files (test_*.py).

Every benchmark is a thin layer over :mod:`fastconv.workloads`; see docs/benchmarks.md.
"""
