"""pytest-benchmark defaults for ``pytest benchmarks/ --benchmark-only``: a narrower table.

(No ``import pytest`` here: asv imports every module of benchmarks/ in an env without it.)
"""


def pytest_configure(config):
    # Medians are what the comparison uses; keep the table readable unless the user chose.
    if getattr(config.option, "benchmark_columns", "unset") is None:
        config.option.benchmark_columns = ["median", "min", "iqr", "rounds"]
