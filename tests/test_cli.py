"""``fastconv compare``: the table, --json, --plot, exit codes and the clear errors;
``fastconv warmup``: compiles into an empty cache, then finds everything cached."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fastconv import cli, workloads

needs_tf = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                              reason="TensorFlow is not installed")
QUICK = ["--quick", "--repeat", "1"]
TINY = QUICK + ["--ops", "max_pool1d,zero_pad2d"]


@needs_tf
@pytest.mark.tf
def test_compare_quick_prints_table_json_and_plot(tmp_path):
    out_json, out_png = tmp_path / "results.json", tmp_path / "speedups.png"
    done = subprocess.run([sys.executable, "-m", "fastconv.cli", "compare", *TINY,
                           "--json", str(out_json), "--plot", str(out_png)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for column in ("op", "shape", "max abs err", "equal", "fastconv ms", "TF ms", "speedup"):
        assert column in done.stdout
    assert "seed004_max1d" in done.stdout and "seed004_zero_pad" in done.stdout
    assert "GB/s" in done.stdout and "sgemm" in done.stdout and "parallel copy" in done.stdout
    assert "2/2 cases equal to TensorFlow" in done.stdout
    assert "2/2" in done.stderr  # the progress bar

    data = json.loads(out_json.read_text())
    assert [r["case"] for r in data["results"]] == ["seed004_max1d", "seed004_zero_pad"]
    row = data["results"][0]
    assert row["equal"] is True and row["max_abs_error"] == 0.0
    assert row["fastconv_ms"] > 0 and row["tf_ms"] > 0 and row["speedup"] > 0
    assert row["rate_unit"] == "GB/s" and data["ceilings"]["sgemm_gflops"] > 0
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_tf
@pytest.mark.tf
def test_compare_exits_1_when_a_case_differs(monkeypatch, capsys):
    real_prepare = workloads.prepare

    def wrong_fastconv(case, backend, *args, **kwargs):
        call, to_numpy = real_prepare(case, backend, *args, **kwargs)
        if backend == "fastconv":
            return call, lambda out: to_numpy(out) + 1
        return call, to_numpy

    monkeypatch.setattr(workloads, "prepare", wrong_fastconv)
    status = cli.main(["compare", *QUICK, "--ops", "max_pool1d", "--no-ceilings"])
    out = capsys.readouterr().out
    assert status == 1
    assert "NO" in out and "0/1 cases equal" in out


def test_compare_without_tensorflow_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # makes `import tensorflow` fail
    status = cli.main(["compare", *TINY, "--no-ceilings"])
    assert status == 2
    assert "pip install 'fastconv[tf]'" in capsys.readouterr().err


def test_compare_cuda_without_gpu_is_a_clear_error(capsys):
    try:
        from numba import cuda

        if cuda.is_available():
            pytest.skip("a GPU is available here")
    except ImportError:
        pass
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["compare", *TINY, "--device", "cuda"])
    assert exit_info.value.code == 2
    assert "--device cuda" in capsys.readouterr().err


def test_compare_list_and_bad_options(capsys):
    assert cli.main(["compare", "--quick", "--ops", "max_pool2d", "--layout", "NCHW",
                     "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed and all(" NCHW " in line for line in listed)
    for bad in (["--layout", "NHCW"], ["--dtype", "float16"], ["--cases", "no_such_case"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["compare", *bad, "--list"])
        assert exit_info.value.code == 2


def _warmup(cache, *args):
    env = dict(os.environ, FASTCONV_CACHE_DIR=str(cache))
    env.pop("NUMBA_CACHE_DIR", None)
    return subprocess.run([sys.executable, "-m", "fastconv.cli", "warmup",
                           "--cases", "seed004_max2d_5x5,seed004_avg2d_5x5", *args],
                          capture_output=True, text=True, timeout=600, env=env)


def test_warmup_compiles_into_the_cache_then_finds_it_cached(tmp_path):
    listed = _warmup(tmp_path, "--list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("to compile") == 2, listed.stdout
    done = _warmup(tmp_path, "--jobs", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kernel sets compiled" in done.stdout, done.stdout
    assert "max_pool/direct (float32, channels-last)" in done.stdout
    assert "2/2" in done.stderr  # the progress bar
    again = _warmup(tmp_path, "--list")
    assert again.stdout.count("cached") == 2 and "to compile" not in again.stdout, again.stdout
    assert "everything was cached already" in _warmup(tmp_path).stdout


# ----------------------------------------------------------------------------- --peers

@needs_tf
@pytest.mark.tf
def test_compare_peers_measures_each_peer_in_its_own_process_and_skips_missing_ones(
        tmp_path, monkeypatch):
    """One small layer against TF through the worker process; a peer that is not installed
    is skipped with the pip command, not an error."""
    from fastconv import compare_peers

    real = compare_peers.available
    monkeypatch.setattr(compare_peers, "available", lambda p: p == "tf" and real(p))
    out_json = tmp_path / "peers.json"
    status = cli.main(["compare", "--peers", "tf,ort", "--cases", "mnist_conv2_b1",
                       "--repeat", "1", "--no-ceilings", "--json", str(out_json)])
    assert status == 0
    data = json.loads(out_json.read_text())
    assert data["skipped"] == ["ONNX Runtime skipped: `pip install onnxruntime` to compare "
                               "with it"]
    [row] = data["results"]
    assert row["layer"] == "mnist_conv2_b1" and row["peer"] == "tf" and row["layout"] == "NHWC"
    assert row["equal"] and row["max_error"] < 1e-5 and not row["error"]
    assert row["fastconv_ms"] > 0 and row["peer_ms"] > 0 and row["ratio"] > 0


@pytest.mark.parametrize("layer", ["avg_pool3x3_s2_113_b8", "stem7x7_s2_224_b8"])
def test_peer_layers_pad_symmetrically_as_tf_computes_them(layer):
    """The table's padding rule: TF's SAME only where it pads both sides equally (odd sizes
    for stride 2), explicit symmetric pads otherwise, so every library computes the same."""
    from fastconv import compare_peers, reference

    spec = next(x for x in compare_peers.LAYERS if x.name == layer)
    small = compare_peers.Layer(spec.name, spec.kind, (1,) + spec.shape[1:3] + (2,),
                                spec.window if spec.kind.endswith("pool")
                                else spec.window[:2] + (2, 3), spec.stride, spec.pad)
    x, w, _ = compare_peers.arrays(small)
    got = compare_peers.fastconv_call(small, (x, w, None), "NCHW")()
    p = spec.pad
    padded = np.pad(x, [(0, 0), (p, p), (p, p), (0, 0)],
                    constant_values=-np.inf if spec.kind == "max_pool" else 0)
    if spec.kind == "conv":
        want = reference.conv2d(padded, w, spec.stride, "VALID")
    elif spec.kind == "max_pool":
        want = reference.max_pool2d(padded, spec.window, spec.stride, "VALID")
    else:  # the real cells only
        total = reference.avg_pool2d(padded, spec.window, spec.stride, "VALID")
        ones = np.pad(np.ones_like(x), [(0, 0), (p, p), (p, p), (0, 0)])
        want = total / reference.avg_pool2d(ones, spec.window, spec.stride, "VALID")
    np.testing.assert_allclose(got.transpose(0, 2, 3, 1), want, rtol=1e-5, atol=1e-5)
    assert got.shape[2:] == small.out_hw()


def test_compare_peers_rejects_unknown_peers(capsys):
    with pytest.raises(SystemExit):
        cli.main(["compare", "--peers", "tf,mxnet"])
    assert "choose from tf, jax, ort, torch or all" in capsys.readouterr().err
    assert cli.main(["compare", "--peers", "all", "--list"]) == 0
    assert "resnet3x3_64_56_b8" in capsys.readouterr().out
