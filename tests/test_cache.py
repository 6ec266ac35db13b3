"""The on-disk kernel cache survives a read-only package directory, corrupt and stale cache files,
and two processes compiling the same kernel at once.

Each case runs fresh Python processes with their own empty cache directory (``NUMBA_CACHE_DIR``
or ``FASTCONV_CACHE_DIR``; the read-only case uses Numba's per-user fallback under
``XDG_CACHE_HOME``) and one small op, ``global_max_pool2d`` on float32 with a NaN in it, so each
process compiles a single kernel (about 3 s). ``NUMBA_DEBUG_CACHE=1`` makes Numba print where it
saves and loads cache entries, which is how the tests see a cache hit or a recompile.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import fastconv

PACKAGE = Path(fastconv.__file__).resolve().parent
NOBODY = 65534
TIMEOUT = 240

SCRIPT = textwrap.dedent("""
    import os, sys, time
    if len(sys.argv) > 2:  # start barrier: say we are ready, wait for the go
        import fastconv.cpu.backend  # noqa: F401  (imports Numba and the kernels, compiles none)
        open(sys.argv[1], "w").close()
        while not os.path.exists(sys.argv[2]):
            time.sleep(0.005)
    import numpy as np
    import fastconv
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    x[1, 2, 3, 4] = np.nan
    print("RESULT", repr(fastconv.global_max_pool2d(x).tolist()), flush=True)
    print("FILE", fastconv.__file__, flush=True)
""")


def _expected():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    x[1, 2, 3, 4] = np.nan
    return repr(np.max(x.reshape(2, -1, 5), axis=1).tolist())  # NaN propagates, as in Keras


def _env(**extra):
    env = {key: value for key, value in os.environ.items()
           if key not in ("NUMBA_CACHE_DIR", "FASTCONV_CACHE_DIR", "PYTHONPATH")}
    env.update(NUMBA_DEBUG_CACHE="1", PYTHONDONTWRITEBYTECODE="1")
    env.update({key: str(value) for key, value in extra.items()})
    return env


def _run(env, cwd, prefix=(), args=()):
    """Run SCRIPT in a fresh interpreter; return its stdout (fails with the output if it fails)."""
    proc = subprocess.run([*prefix, sys.executable, "-c", SCRIPT, *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _check_result(stdout):
    results = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert results == ["RESULT " + _expected()], stdout[-2000:]


def _saved(stdout):
    return [line for line in stdout.splitlines() if "[cache] data saved to" in line]


def _loaded(stdout):
    return [line for line in stdout.splitlines() if "[cache] data loaded from" in line]


def _cache_files(root):
    return sorted(p for p in Path(root).rglob("*") if p.suffix in (".nbi", ".nbc"))


def _copy_package(target):
    """A copy of the fastconv package without any cache or bytecode files."""
    shutil.copytree(PACKAGE, target / "fastconv",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc", "*.pyc"))
    return target


@pytest.fixture
def scratch():
    """A temporary directory other users can enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="fastconv-cache-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------- read-only package

def _unprivileged_prefix():
    """Command prefix that runs as an unprivileged user, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", "nobody", "--"]
    pytest.skip("running as root without setpriv/runuser: cannot make a directory read-only")


def _skip_unless_interpreter_runs_as(prefix, cwd):
    """Skip, saying why, when the unprivileged user cannot run this interpreter with NumPy and
    Numba: a clone or virtual environment inside a folder only its owner may enter (a root
    user's home, any ``mktemp -d`` folder) is out of that user's reach."""
    probe = subprocess.run([*prefix, sys.executable, "-c", "import numpy, numba"], cwd=cwd,
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}"])[-1]
        pytest.skip(f"user nobody cannot run {sys.executable} with NumPy and Numba (a folder "
                    f"on its path is private to its owner: {reason})")


def test_read_only_package_directory_falls_back_to_the_user_cache(scratch):
    """The package directory cannot be written (another user owns it, or it is chmod a-w):
    Numba's per-user cache directory takes the kernels, and a second process loads them."""
    package_root = _copy_package(scratch / "site")
    home = scratch / "home"
    home.mkdir()
    prefix = _unprivileged_prefix()
    if prefix is None:  # not root: permission bits are enough
        for path in [package_root, *package_root.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        prefix = []
    else:  # root-owned package copy; the unprivileged user owns only its home
        os.chown(home, NOBODY, NOBODY)
        _skip_unless_interpreter_runs_as(prefix, home)
    env = _env(HOME=home, XDG_CACHE_HOME=home / ".cache", PYTHONPATH=package_root)
    probe = subprocess.run([*prefix, "sh", "-c", f"touch {package_root / 'fastconv'}/probe"],
                           capture_output=True, timeout=30)
    if probe.returncode == 0:
        pytest.skip("the package copy is writable even so (a privileged user?)")
    try:
        first = _run(env, home, prefix)
        _check_result(first)
        assert f"FILE {package_root / 'fastconv' / '__init__.py'}" in first
        assert _saved(first), first
        fallback = home / ".cache" / "numba"
        assert all(str(fallback) in line for line in _saved(first)), _saved(first)
        assert _cache_files(fallback)
        assert not _cache_files(package_root)
        second = _run(env, home, prefix)
        _check_result(second)
        assert _loaded(second) and not _saved(second), second
    finally:
        if os.geteuid() != 0:
            for path in [package_root, *package_root.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o200)


# ----------------------------------------------------------------------------- stale, corrupt

def test_stale_cache_from_changed_source_is_recompiled(scratch):
    """Editing a kernel's module makes its cache entries stale: a fresh process recompiles them
    (and saves them again) instead of loading old machine code."""
    package_root = _copy_package(scratch / "site")
    cache = scratch / "cache"
    env = _env(FASTCONV_CACHE_DIR=cache, PYTHONPATH=package_root)
    first = _run(env, scratch)
    _check_result(first)
    assert _saved(first) and _cache_files(cache)
    pool = package_root / "fastconv" / "cpu" / "pool.py"
    pool.write_text(pool.read_text() + "\n# edited after the cache was written\n")
    second = _run(env, scratch)
    _check_result(second)
    assert _saved(second), second  # recompiled and re-saved, not loaded from the stale entry
    assert not any("global_pool" in line for line in _loaded(second)), second


def test_cache_is_stale_when_a_module_the_kernel_imports_changes(scratch):
    """Numba keys a cache entry on its function's own file only; fastconv adds a digest of the
    whole package, so editing a module the kernels import (here the IR micro-kernels, which
    ``pool.py`` does not define) also recompiles instead of loading stale machine code."""
    package_root = _copy_package(scratch / "site")
    cache = scratch / "cache"
    env = _env(FASTCONV_CACHE_DIR=cache, PYTHONPATH=package_root)
    _check_result(_run(env, scratch))
    again = _run(env, scratch)
    assert any("global_pool" in line for line in _loaded(again)), again  # warm: loaded
    helpers = package_root / "fastconv" / "cpu" / "microkernel.py"
    helpers.write_text(helpers.read_text() + "\n# edited after the cache was written\n")
    edited = _run(env, scratch)
    _check_result(edited)
    assert not any("global_pool" in line for line in _loaded(edited)), edited
    assert _saved(edited), edited


def _populate(cache):
    out = _run(_env(NUMBA_CACHE_DIR=cache), cache.parent)
    _check_result(out)
    assert _saved(out)
    return _cache_files(cache)


def _garble(path):
    data = path.read_bytes()
    path.write_bytes(bytes(b ^ 0x5A for b in data[:64]) + data[64:])


CORRUPTIONS = {
    "truncated-data": lambda files: [p.write_bytes(p.read_bytes()[:10])
                                     for p in files if p.suffix == ".nbc"],
    "garbled-data": lambda files: [_garble(p) for p in files if p.suffix == ".nbc"],
    "truncated-index": lambda files: [p.write_bytes(p.read_bytes()[:10])
                                      for p in files if p.suffix == ".nbi"],
    "empty-files": lambda files: [p.write_bytes(b"") for p in files],
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_cache_files_are_recompiled_not_fatal(corruption, scratch):
    cache = scratch / "cache"
    files = _populate(cache)
    assert files
    CORRUPTIONS[corruption](files)
    out = _run(_env(NUMBA_CACHE_DIR=cache), scratch)
    _check_result(out)
    assert _saved(out)  # a clear recompile


def test_cache_from_another_numba_version_is_ignored(scratch):
    """An index written by another Numba version (its first pickle) is a miss, not an error."""
    import pickle

    cache = scratch / "cache"
    files = _populate(cache)
    for index in (p for p in files if p.suffix == ".nbi"):
        with open(index, "rb") as handle:
            pickle.load(handle)  # the version
            rest = handle.read()
        index.write_bytes(pickle.dumps("0.0.0-other", protocol=-1) + rest)
    out = _run(_env(NUMBA_CACHE_DIR=cache), scratch)
    _check_result(out)
    assert _saved(out) and not _loaded(out), out


# ----------------------------------------------------------------------------- concurrency

def test_two_processes_compiling_the_same_kernel_at_once(scratch):
    """Both compile into the same empty cache directory at the same moment and succeed; a third
    process then loads the entries they wrote."""
    cache = scratch / "cache"
    env = _env(NUMBA_CACHE_DIR=cache)
    go = scratch / "go"
    ready = [scratch / f"ready{i}" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(flag), str(go)], env=env,
                              cwd=scratch, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for flag in ready]
    try:
        deadline = time.monotonic() + TIMEOUT
        while not all(flag.exists() for flag in ready):
            assert time.monotonic() < deadline, "the processes never got ready"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.01)
        go.touch()
        outputs = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for proc, (stdout, stderr) in zip(procs, outputs):
        assert proc.returncode == 0, f"{stdout}\n{stderr[-3000:]}"
        _check_result(stdout)
    assert not [p for p in Path(cache).rglob("*") if ".tmp." in p.name]
    third = _run(env, scratch)
    _check_result(third)
    assert _loaded(third) and not _saved(third), third
