"""``import fastconv`` stays light: no TensorFlow, no Numba, no CUDA until they are needed.

Checked in a fresh interpreter (this test process has imported them already). No timing
assertions: machines are noisy, and the heavy imports are what would make it slow.
"""

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "keras", "numba", "numba.cuda", "llvmlite", "torch", "dask",
         "distributed")


def _fresh(code):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _loaded_after(statements):
    code = (f"import json, sys\n{statements}\n"
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    return _fresh(code)


def test_import_fastconv_loads_no_heavy_modules():
    assert _loaded_after("import fastconv") == []


@pytest.mark.parametrize("statements", [
    "import fastconv; fastconv.conv_output_size(28, 3, 2, 'VALID'); fastconv.same_padding(5, 4, 1)",
    "from fastconv import conv2d, max_pool2d, reference as _r",  # the oracle is NumPy only
    "import fastconv.shapes, fastconv.validation, fastconv.dispatch",
    "import fastconv; fastconv.__all__; fastconv.conv2d.__doc__",
])
def test_light_entry_points_load_no_heavy_modules(statements):
    assert _loaded_after(statements) == []


def test_bad_input_fails_without_compiling_anything():
    # Validation runs before dispatch, so an invalid call never imports the Numba backend.
    code = ("import numpy as np, fastconv\n"
            "try:\n"
            "    fastconv.conv2d(np.zeros((1, 4, 4, 2), np.float32), np.zeros((3, 3, 3, 1), "
            "np.float32), 1, 'SAME')\n"
            "except ValueError:\n"
            "    pass\n"
            "else:\n"
            "    raise SystemExit('no error')")
    assert _loaded_after(code) == []


def test_first_cpu_call_loads_numba_but_not_tensorflow_or_cuda():
    code = ("import numpy as np, fastconv\n"
            "y = fastconv.max_pool2d(np.arange(16.0).reshape(1, 4, 4, 1), 2, 2, 'VALID')\n"
            "assert y.ravel().tolist() == [5.0, 7.0, 13.0, 15.0]")
    loaded = _loaded_after(code)
    assert "numba" in loaded
    assert "tensorflow" not in loaded and "numba.cuda" not in loaded


def test_public_api_is_complete():
    import fastconv

    expected = {"conv1d", "conv2d", "conv3d", "depthwise_conv2d", "conv2d_transpose",
                "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d",
                "avg_pool3d", "global_max_pool2d", "global_avg_pool2d", "zero_pad2d",
                "conv_output_size", "same_padding"}
    assert expected <= set(fastconv.__all__)
    for name in expected:
        assert callable(getattr(fastconv, name)), name
        assert getattr(fastconv, name).__doc__, f"{name} has no docstring"


def test_the_api_layer_imports_no_backend():
    """api validates and dispatches; the dispatcher loads backends (one layer per job)."""
    import ast
    from pathlib import Path

    import fastconv

    source = Path(fastconv.__file__).with_name("api.py").read_text()
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            modules.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    assert not {m for m in modules if m.startswith((".cpu", ".cuda", "fastconv.cpu",
                                                     "fastconv.cuda", "numba"))}, modules


def _module_level_imports(path, module):
    """The fastconv modules that ``module`` (at ``path``) imports when it is imported: its
    top-level import statements (imports inside functions run later and cannot cycle)."""
    import ast

    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "fastconv"}


def test_no_module_level_import_cycle():
    import pathlib

    import fastconv

    root = pathlib.Path(fastconv.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {name: _module_level_imports(path, name) & set(modules)
             for name, path in modules.items()}
    # Importing a submodule imports its packages first; they are not edges of the module.
    for name in graph:
        graph[name] -= {name} | {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
    state = {}

    def visit(name, trail):
        if state.get(name) == "done":
            return
        assert state.get(name) != "open", f"import cycle: {' -> '.join(trail + [name])}"
        state[name] = "open"
        for other in sorted(graph[name]):
            visit(other, trail + [name])
        state[name] = "done"

    assert len(graph) > 30 and "fastconv.dispatch" in graph["fastconv.api"]  # edges are seen
    assert "fastconv.cpu.irtools" in graph["fastconv.cpu.microkernel"]  # relative ones too
    for name in sorted(graph):
        visit(name, [])
