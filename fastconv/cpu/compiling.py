"""First calls: compile the kernel here, or compute with NumPy while it compiles elsewhere.

A compiled kernel's first call in a new environment costs Numba's compilation: 2-13 s per
kernel, 32 s for a CNN's first calls (issue 10), where TensorFlow's import and first calls
take about 3 s. Every CPU implementation is therefore wrapped by :func:`compiled`, which keys
each call on what decides the machine code Numba builds for it (the op family, the algorithm,
dtype, layout, the read-only flags of the arrays, and what an algorithm adds, such as a window
shape compiled in) and, the first time a key is seen in a process:

* ``FASTCONV_COMPILE=background`` (the default): when a marker on disk says the kernels of
  this key are in Numba's disk cache, it runs them (they load in milliseconds). Otherwise it
  hands the problem, with zeros for data, to a background process
  (:mod:`.compile_worker`, at low priority) that compiles the kernels into the disk cache, and
  computes this call with :mod:`.numpy_ops` (TF's semantics, no compilation). Later calls of
  the key keep using NumPy until the worker says it is done, then run the kernels. The worker
  outlives the process that started it until its queue is empty, so the next process starts
  warm.
* ``FASTCONV_COMPILE=sync`` (and any algorithm forced with ``dispatch.use_algorithm``, as the
  tests do): the kernels compile in the calling thread on the first call, as plain Numba does.

Either way, what compiled and how long it took is logged on the ``fastconv`` logger (INFO;
nothing is printed unless the application configures logging, or ``FASTCONV_LOG=info``).
``fastconv warmup`` compiles a chosen set of kernels ahead of time.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace

import numpy as np

from .. import config, dispatch
from ..activations import ACTIVATIONS
from . import numpy_ops

log = logging.getLogger("fastconv")

#: Problems whose stand-in (zeros of the same shapes) would exceed this many bytes are sent
#: to the worker with batch 1 (the kernels' types do not depend on the batch).
STAND_IN_MAX_BYTES = 64 << 20

_lock = threading.Lock()
_ready: set = set()  # keys whose kernels are compiled here or cached on disk
_pending: dict = {}  # marker name -> key, sent to the worker and not done yet
_failed: set = set()  # keys the worker could not compile: compiled here instead
_worker = {"process": None}


def _after_fork_in_child():
    """A forked child has its parent's state but not its worker's replies (nor its threads):
    it forgets the parent's jobs (markers on disk still tell when they are done) and starts
    a worker of its own when it needs one."""
    global _lock
    _lock = threading.Lock()
    _pending.clear()
    _worker["process"] = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ----------------------------------------------------------------------------- keys and markers

def _readonly(array):
    """Whether a kernel sees ``array`` as read-only: only a C-contiguous read-only array stays
    so through the backends' ``np.ascontiguousarray`` (anything else is copied)."""
    return (array is not None and not array.flags.writeable  # one flags lookup when writable
            and array.flags.c_contiguous)


def compile_key(family, name, problem, extra=()):
    """What decides the machine code a call of algorithm ``name`` compiles.

    Built on every call of a compiled algorithm (a few microseconds: the check that its
    kernels are ready), so it reads attributes directly.
    """
    dtype = problem.dtype  # the dtype itself: dtype.name builds a string (2 us) on every call
    if not isinstance(dtype, np.dtype):
        dtype = np.dtype(dtype)
    if family == "conv":  # activations and bias choose extra passes in some algorithms
        bias = problem.bias
        return (family, name, dtype, problem.channels_first, None,
                (_readonly(problem.x), _readonly(problem.w), _readonly(bias)),
                problem.activation, bias is None) + tuple(extra)
    if family == "conv_transpose":
        return (family, name, dtype, problem.channels_first, None,
                (_readonly(problem.x), _readonly(problem.w), False)) + tuple(extra)
    arrays = getattr(problem, "ARRAYS", None)
    if arrays is not None:  # the gradient problems: every array's read-only flag
        return (family, name, dtype, problem.channels_first, getattr(problem, "kind", None),
                tuple(_readonly(getattr(problem, a)) for a in arrays)) + tuple(extra)
    return (family, name, dtype, problem.channels_first, getattr(problem, "kind", None),
            (_readonly(problem.x), False, False)) + tuple(extra)  # nan_wins: a runtime mode


_ACTIVATION_NAMES = {code: name for name, code in ACTIVATIONS.items()
                     if name not in (None, "linear")}


def describe(key):
    """A short text for logs: ``conv/winograd (float32, channels-last, relu, bias)``."""
    family, name, dtype, channels_first, kind, readonly = key[:6]
    notes = [str(dtype), "channels-first" if channels_first else "channels-last"]
    if family == "global_pool":
        notes.append(kind)
    notes += [f"read-only {what}" for what, flag in zip(("input", "filters", "bias"), readonly)
              if flag]
    rest = key[6:]
    if family == "conv":
        activation, no_bias = rest[:2]
        notes += [_ACTIVATION_NAMES.get(activation, "")] + ([] if no_bias else ["bias"])
        rest = rest[2:]
    if len(rest) == 4:  # a pooling window and stride compiled in
        notes.append(f"window {rest[0]}x{rest[1]} stride {rest[2]}x{rest[3]}")
    elif rest:
        notes.append(" ".join(map(str, rest)))
    return f"{family}/{name} ({', '.join(note for note in notes if note)})"


@functools.lru_cache(maxsize=1)
def _marker_dir():
    """Beside Numba's cache of fastconv's CPU kernels (the package's ``__pycache__``, or
    Numba's per-user directory when the package is read-only, or ``NUMBA_CACHE_DIR``)."""
    from .pool import global_pool_nsc

    return os.path.join(global_pool_nsc._cache._cache_path, "fastconv-compiled")


@functools.lru_cache(maxsize=1)
def _machine():
    """What the kernel cache is keyed on besides a call's key: Numba's version, the target CPU,
    the package's sources and the settings compiled into the kernels (as in :mod:`.cache`)."""
    import llvmlite.binding as llvm
    import numba

    from .cache import package_digest

    cpu = numba.config.CPU_NAME or llvm.get_host_cpu_name()
    features = numba.config.CPU_FEATURES or llvm.get_host_cpu_features().flatten()
    return (numba.__version__, cpu, features, package_digest(), config.compiled_tunables())


def marker_name(key):
    return hashlib.sha256(repr((_machine(), key)).encode()).hexdigest()[:24]


def _on_disk(key, marker=None):
    """Whether a marker says ``key``'s kernels are in the disk cache (``marker``: its name,
    when the caller has it already)."""
    try:
        return os.path.exists(os.path.join(_marker_dir(), marker or marker_name(key)))
    except Exception:  # no cache directory at all: nothing is on disk
        return False


def _write_marker(key):
    """Record that ``key``'s kernels are in the disk cache (fail-soft: read-only installs)."""
    try:
        os.makedirs(_marker_dir(), exist_ok=True)
        with open(os.path.join(_marker_dir(), marker_name(key)), "w") as fh:
            fh.write(describe(key) + "\n")
    except OSError:
        pass


# ----------------------------------------------------------------------------- compile here

def _compile_here(key, run, problem):
    """Run the kernels in this thread (compiling or loading them); log what compiled."""
    from numba.core import event

    start = time.perf_counter()
    with event.install_recorder("numba:compile") as recorder:
        out = run(problem)
    seconds = time.perf_counter() - start
    compiled = sorted({data.data["dispatcher"].py_func.__name__
                       for _, data in recorder.buffer
                       if data.is_start and "dispatcher" in data.data})
    if compiled:
        log.info("%s compiled in %.1f s: %s", describe(key), seconds, ", ".join(compiled))
    else:
        log.debug("%s loaded from the disk cache in %.2f s", describe(key), seconds)
    with _lock:
        _ready.add(key)
    _write_marker(key)
    return out


# ----------------------------------------------------------------------------- the worker

@dataclass(frozen=True)
class Zeros:
    """Stands for an array in a job sent to the worker: zeros of this shape and dtype (with the
    read-only flag a kernel would see), made there. Sending the zeros themselves would block
    the caller on the pipe while the worker is busy compiling."""

    shape: tuple
    dtype: str
    readonly: bool

    @classmethod
    def like(cls, array, batch=None):
        if array is None:
            return None
        shape = tuple(array.shape)
        if batch is not None:
            shape = (batch,) + shape[1:]
        return cls(shape, np.dtype(array.dtype).str, _readonly(array))

    def make(self):
        zeros = np.zeros(self.shape, dtype=np.dtype(self.dtype))
        zeros.flags.writeable = not self.readonly
        return zeros


def stand_in(problem, max_bytes=...):
    """The problem with :class:`Zeros` for its arrays (batch 1 when larger than ``max_bytes``,
    by default :data:`STAND_IN_MAX_BYTES`), or None when even batch 1 would be too large to
    compute in the worker (``max_bytes=None``: no limit)."""
    if max_bytes is ...:
        max_bytes = STAND_IN_MAX_BYTES
    batched = _array_names(problem)[0]  # the arrays whose first dim is the batch
    arrays = [getattr(problem, name) for name in batched]
    nbytes = (sum(a.nbytes for a in arrays if a is not None)
              + np.prod(problem.out_shape) * np.dtype(problem.dtype).itemsize)
    batch = None
    if max_bytes is not None and nbytes > max_bytes:
        batch = 1
        nbytes //= max(1, next(a for a in arrays if a is not None).shape[0])
        if nbytes > max_bytes:
            return None
    fields = {name: Zeros.like(getattr(problem, name), batch) for name in batched}
    for name in _array_names(problem)[1]:
        if hasattr(problem, name):
            fields[name] = Zeros.like(getattr(problem, name))
    if batch is not None and getattr(problem, "OUT_BATCHED", True):
        fields["out_shape"] = (1,) + tuple(problem.out_shape[1:])
    return replace(problem, **fields)


def _array_names(problem):
    """(batched arrays, the others) of a problem: the forward problems' x / (w, bias), or a
    gradient problem's ``ARRAYS`` (all batched)."""
    arrays = getattr(problem, "ARRAYS", None)
    return (("x",), ("w", "bias")) if arrays is None else (arrays, ())


def materialise(problem):
    """The worker's side of :func:`stand_in`: the :class:`Zeros` made into arrays."""
    fields = {name: getattr(problem, name).make() for name in sum(_array_names(problem), ())
              if isinstance(getattr(problem, name, None), Zeros)}
    return replace(problem, **fields)


def _read_replies(process):
    """The worker's stdout: ``done <marker> <seconds>`` or ``failed <marker> <why>`` per job."""
    for line in process.stdout:
        parts = line.decode(errors="replace").split(maxsplit=2)
        if len(parts) < 2:
            continue
        with _lock:
            key = _pending.pop(parts[1], None)
            if key is None:
                continue
            if parts[0] == "done":
                _ready.add(key)
            else:
                _failed.add(key)
        if parts[0] == "done":
            took = f" in {parts[2].strip()} s" if len(parts) > 2 else ""
            log.info("%s compiled in the background%s; switching from NumPy to it",
                     describe(key), took)
        else:
            log.warning("%s failed to compile in the background (%s); compiling in this "
                        "process instead", describe(key), parts[2].strip() if len(parts) > 2
                        else "no reason given")


def spawn_worker(stderr=None):
    """Start a :mod:`.compile_worker` process (jobs on its stdin, replies on its stdout)."""
    return subprocess.Popen([sys.executable, "-m", "fastconv.cpu.compile_worker"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                            env=dict(os.environ, FASTCONV_COMPILE="sync"))


def send_job(process, marker, family, name, job):
    """Hand one job (a :func:`stand_in` problem) to a worker."""
    pickle.dump((marker, family, name, job), process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
    process.stdin.flush()


def _start_worker():
    """The worker process of this process (a forked child starts its own: see
    :func:`_after_fork_in_child`)."""
    process = _worker["process"]
    if process is not None and process.poll() is None:
        return process
    process = spawn_worker(stderr=subprocess.DEVNULL)
    threading.Thread(target=_read_replies, args=(process,), daemon=True,
                     name="fastconv-compile-replies").start()
    _worker["process"] = process
    return process


def _submit(key, marker, family, name, problem):
    """Send ``problem``'s stand-in to the worker; False when it cannot go there."""
    job = stand_in(problem)
    if job is None:
        return False
    try:
        with _lock:
            process = _start_worker()
            _pending[marker] = key
            send_job(process, marker, family, name, job)
    except (OSError, ValueError, pickle.PicklingError) as exc:
        with _lock:
            _pending.pop(marker, None)
        log.info("%s: no background compilation (%s)", describe(key), exc)
        return False
    log.info("%s: compiling in the background (pid %d); NumPy computes meanwhile",
             describe(key), process.pid)
    return True


def wait_for_background(timeout=None):
    """Block until the worker has compiled everything sent to it; True when it has.

    Examples
    --------
    >>> from fastconv.cpu import compiling
    >>> compiling.wait_for_background(timeout=600)
    True
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        with _lock:
            if not _pending:
                return True
            process = _worker["process"]
        if process is None or process.poll() is not None:
            return not _pending
        if deadline is not None and time.monotonic() > deadline:
            return False
        time.sleep(0.02)


# ----------------------------------------------------------------------------- the policy

def mode():
    """``"background"`` or ``"sync"`` (``config.COMPILE``, from ``FASTCONV_COMPILE``)."""
    return "sync" if config.COMPILE == "sync" else "background"


class _WritableAlias:
    """Exposes a read-only array's memory as writable to ``np.asarray``, keeping it alive."""

    def __init__(self, array):
        interface = dict(array.__array_interface__)
        interface["data"] = (interface["data"][0], False)
        self.__array_interface__ = interface
        self.owner = array


def writable_inputs(problem):
    """``problem`` with its read-only NumPy arrays (input, filters, bias) viewed as writable.

    Numba types a read-only array apart from a writable one, so every kernel would compile a
    second time for read-only arguments (13 s for a blocked conv: memory-mapped files, dask
    blocks, ``np.broadcast_to`` views). The kernels never write their inputs
    (tests/test_memory.py compares every argument's bytes before and after), so a writable
    view of the same memory shares their machine code.
    """
    fields = {}
    for name in getattr(problem, "ARRAYS", ("x", "w", "bias")):
        array = getattr(problem, name, None)
        if (isinstance(array, np.ndarray) and not array.flags.writeable and array.size
                and array.dtype.isnative):
            fields[name] = np.asarray(_WritableAlias(array))
    return dataclasses.replace(problem, **fields) if fields else problem


def run(family, name, kernel_run, problem, extra=()):
    """Run ``problem`` with the compiled kernels when they are ready, else per :func:`mode`."""
    problem = writable_inputs(problem)
    key = compile_key(family, name, problem, extra)
    if key in _ready:
        return kernel_run(problem)
    marker = marker_name(key)
    if _on_disk(key, marker):
        with _lock:
            _ready.add(key)
        return kernel_run(problem)
    if (mode() == "sync" or dispatch.forced_algorithm() is not None or key in _failed):
        return _compile_here(key, kernel_run, problem)
    with _lock:
        waiting = marker in _pending
    if waiting or _submit(key, marker, family, name, problem):
        return numpy_ops.BY_FAMILY[family](problem)
    return _compile_here(key, kernel_run, problem)


def compiled(family, name, extra=None):
    """Decorate a backend's ``run_*`` so its first calls follow this module's policy.

    ``extra(problem)`` returns what else keys the compiled code (e.g. a window shape that is
    compiled in). The undecorated function is ``.kernel_run``; ``.compile_key(problem)`` is
    the key a call would have.
    """
    def decorate(kernel_run):
        @functools.wraps(kernel_run)
        def call(problem):
            return run(family, name, kernel_run, problem, extra(problem) if extra else ())

        call.kernel_run = kernel_run
        call.compile_key = lambda problem: compile_key(family, name, writable_inputs(problem),
                                                       extra(problem) if extra else ())
        return call

    return decorate
