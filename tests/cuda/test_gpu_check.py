"""benchmarks/gpu_check.py, the real-GPU timing script, keeps working: its smoke run under the
simulator (every section and the tile sweep). Correctness on a GPU is not the script's job: it
is tests/cuda/test_gpu_equality.py (``pytest tests/cuda -m gpu``)."""

import importlib.util
import pathlib

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arguments(gpu_check):
    args = gpu_check.parse_args(["--smoke", "--skip", "pool", "--skip", "conv", "--sweep"])
    assert args.smoke and args.sweep and args.skip == ["pool", "conv"]
    assert gpu_check.parse_args([]).repeat > 1
    with pytest.raises(SystemExit):  # the equality section moved to tests/cuda -m gpu
        gpu_check.parse_args(["--skip", "equality"])


def test_smoke_run_writes_tables(gpu_check, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "MAX_CALLS", [2])
    output = tmp_path / "gpu.md"
    assert gpu_check.main(["--smoke", "--sweep", "--output", str(output)]) == 0
    text = output.read_text()
    for title in ("Conv speed", "Pooling bandwidth", "Dispatch overhead", "tile sweep"):
        assert title in text

