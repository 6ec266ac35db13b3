"""The CUDA kernel machinery's documented examples run as written, with or without a GPU or the
compiler wheels (the examples that need either are marked to skip)."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["fastconv.cuda.kernels", "fastconv.cuda.resources"])
def test_the_modules_examples_run(name):
    pytest.importorskip("numba")
    failures, tried = doctest.testmod(importlib.import_module(name))
    assert tried > 0 and failures == 0
