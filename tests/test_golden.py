"""Golden regression corpus: fastconv (and the NumPy oracle) against stored TensorFlow outputs.

``tests/golden/golden.npz`` holds, for every public op and both layouts, seeded inputs and the
output TensorFlow computed for them (see ``tests/golden/make_golden.py``, which regenerates it).
Nothing here imports TensorFlow, so these checks run where TF is not installed; the last test
proves that by running this file in a subprocess in which ``import tensorflow`` fails.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastconv
from conftest import assert_close, assert_exact
from fastconv import reference

# NaN/inf cases make the NumPy oracle warn; the values are what is checked.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

CORPUS = Path(__file__).resolve().parent / "golden" / "golden.npz"
CHANNELS_FIRST = {"NCW", "NCHW", "NCDHW", "channels_first"}
CHANNELS_LAST_ONLY = {"atrous_conv2d", "atrous_conv2d_transpose"}  # tf.nn's: no data_format


def _load():
    with np.load(CORPUS, allow_pickle=False) as data:
        cases = json.loads(str(data["cases.json"]))
        arrays = {key: data[key] for key in data.files if key != "cases.json"}
    return cases, arrays


CASES, ARRAYS = _load()


def _call(module, case):
    inputs = {name: ARRAYS[f"{case['name']}/{name}"] for name in case["arrays"]}
    return getattr(module, case["op"])(**inputs, **case["kwargs"])


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_fastconv_matches_stored_tf_output(case):
    expected = ARRAYS[f"{case['name']}/expected"]
    indices = ARRAYS.get(f"{case['name']}/expected_indices")
    if indices is not None:  # max_pool_with_argmax: (values, indices)
        expected = (expected, indices)
    compare = assert_exact if case["exact"] else assert_close
    compare(_call(fastconv, case), expected, case["dtype"])
    compare(_call(reference, case), expected, case["dtype"])


def test_corpus_covers_every_op_in_both_layouts_and_stays_small():
    ops = {case["op"] for case in CASES}
    assert ops == set(fastconv.api.__all__)
    for op in ops - CHANNELS_LAST_ONLY:
        formats = {case["kwargs"].get("data_format") in CHANNELS_FIRST
                   for case in CASES if case["op"] == op}
        assert formats == {False, True}, f"{op} lacks a layout"
    assert {case["dtype"] for case in CASES} == {"float32", "float64"}
    assert sum(case["dtype"] == "float32" for case in CASES) > len(CASES) / 2
    assert any(np.isnan(ARRAYS[f"{case['name']}/input"]).any() for case in CASES
               if "input" in case["arrays"])
    assert CORPUS.stat().st_size < 4 * 2**20


def test_golden_checks_run_without_tensorflow():
    """Block ``import tensorflow`` in a fresh interpreter and run this file's corpus test."""
    code = ("import sys; sys.modules['tensorflow'] = None; import pytest; "
            f"sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', {__file__!r}, "
            "'-k', 'matches_stored_tf_output', '-W', 'ignore::RuntimeWarning']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parent.parent,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{len(CASES)} passed" in proc.stdout, proc.stdout[-2000:]
    assert "skipped" not in proc.stdout
