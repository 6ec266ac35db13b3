"""benchmarks/gpu_check.py, the real-GPU check script, keeps working: its smoke run under the
simulator (the timing sections and the tile sweep; the equality grid is what tests/cuda does)."""

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


def test_smoke_run_writes_tables(gpu_check, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "MAX_CALLS", [2])
    output = tmp_path / "gpu.md"
    assert gpu_check.main(["--smoke", "--skip", "equality", "--sweep", "--output",
                           str(output)]) == 0
    text = output.read_text()
    for title in ("Conv speed", "Pooling bandwidth", "Dispatch overhead", "tile sweep"):
        assert title in text


def test_smoke_equality_cases_cover_every_op(gpu_check):
    ops = {case[1] for case in gpu_check.equality_cases(smoke=True)}
    assert ops == {"conv1d", "conv2d", "conv3d", "depthwise_conv2d", "conv2d_transpose",
                   "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d",
                   "avg_pool3d", "global_max_pool2d", "global_avg_pool2d", "zero_pad2d"}
