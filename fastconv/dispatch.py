"""Choose the device and the algorithm for each op.

Every implementation registers itself here with the op family it serves (``"conv"``,
``"conv_transpose"``, ``"max_pool"``, ``"avg_pool"``, ``"global_pool"``, ``"zero_pad"``), its
device, a name, a predicate that says whether it can compute a given problem (``applies``) and
one that says whether it is worth choosing for it (``pays_off``, the rule derived from measurements).
:func:`run` picks the highest-priority implementation for which both hold, unless the caller
forced one with :func:`use_algorithm` (tests do this to check every algorithm against the
oracle; a forced algorithm only needs to apply).

The backends register lazily: ``fastconv.cpu`` / ``fastconv.cuda`` are imported only when a
problem for that device is first run, which keeps ``import fastconv`` free of Numba and CUDA.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from dataclasses import dataclass
from typing import Callable

from .validation import is_device_array


@dataclass(frozen=True)
class Implementation:
    """One way to compute one op family on one device."""

    family: str
    device: str
    name: str
    run: Callable  # run(problem) -> output array
    applies: Callable = lambda problem: True  # can it compute this problem correctly?
    priority: int = 0  # higher wins among those that apply and pay off
    auto: bool = True  # False: only used when forced (e.g. the NumPy first-call tier)
    pays_off: Callable = lambda problem: True  # worth choosing automatically for this problem?


_REGISTRY: dict[tuple[str, str], list[Implementation]] = {}
_BACKEND_MODULES = {"cpu": "fastconv.cpu.backend", "cuda": "fastconv.cuda.backend"}
_loaded_backends: set[str] = set()
_load_lock = threading.Lock()
_forced = threading.local()


def register(impl: Implementation) -> Implementation:
    """Add an implementation; later registrations with the same name replace earlier ones."""
    key = (impl.family, impl.device)
    entries = [e for e in _REGISTRY.get(key, []) if e.name != impl.name]
    entries.append(impl)
    entries.sort(key=lambda e: -e.priority)
    _REGISTRY[key] = entries
    return impl


def _ensure_backend(device: str) -> None:
    if device in _loaded_backends:
        return
    with _load_lock:
        if device not in _loaded_backends:
            importlib.import_module(_BACKEND_MODULES[device])
            _loaded_backends.add(device)


def prepare_array(device: str, value):
    """``value`` in the form ``device``'s backend computes on, before the API layer reshapes it
    (the CUDA backend copies a strided device array to a contiguous one on the device; the CPU
    backend takes any array). The API layer asks here instead of importing a backend."""
    _ensure_backend(device)
    prepare = getattr(importlib.import_module(_BACKEND_MODULES[device]), "prepare_array", None)
    return value if prepare is None else prepare(value)


def to_device_like(host, like):
    """NumPy array ``host`` copied to the GPU as the kind of array ``like`` is (numba, CuPy,
    torch): the slow paths that compute on the host (unfused activations, dilated pooling,
    half precision on GPU arrays) hand their result back through here."""
    _ensure_backend("cuda")
    return importlib.import_module(_BACKEND_MODULES["cuda"]).host_to_device_like(host, like)


def implementations(family: str, device: str = "cpu") -> list[Implementation]:
    """Return the registered implementations of ``family`` on ``device``, best first."""
    _ensure_backend(device)
    return list(_REGISTRY.get((family, device), []))


def choose_device(arrays, device):
    """Return ``"cpu"`` or ``"cuda"`` for a call whose array arguments are ``arrays``.

    ``device=None`` follows the data: any argument exposing ``__cuda_array_interface__`` sends
    the op to the GPU; otherwise it runs on the CPU.
    """
    if device is not None:
        return device
    return "cuda" if any(is_device_array(a) for a in arrays if a is not None) else "cpu"


@contextlib.contextmanager
def use_algorithm(name: str | None):
    """Force the algorithm called ``name`` for ops run in this thread inside the block.

    Ops whose family has no implementation of that name raise ValueError, so a test cannot
    silently check the default algorithm instead.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> from fastconv.dispatch import use_algorithm
    >>> with use_algorithm("numpy"):
    ...     y = fastconv.conv2d(np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 2)), 1, "SAME")
    >>> float(y[0, 1, 1, 0])
    9.0
    """
    previous = getattr(_forced, "name", None)
    _forced.name = name
    try:
        yield
    finally:
        _forced.name = previous


def forced_algorithm() -> str | None:
    """The algorithm forced with :func:`use_algorithm` in this thread, or None."""
    return getattr(_forced, "name", None)


@contextlib.contextmanager
def preparing(cache: dict, filters_shape: tuple):
    """Let the conv in this thread whose filters have ``filters_shape`` keep what its algorithm
    derives from them in ``cache`` (a prepared-filter plan's call, :mod:`fastconv.plans`)."""
    previous = getattr(_forced, "prepared", None)
    _forced.prepared = (cache, tuple(filters_shape))
    try:
        yield
    finally:
        _forced.prepared = previous


def prepared_cache(filters_shape) -> dict | None:
    """The plan cache for a conv with filters of ``filters_shape`` in this thread, or None."""
    current = getattr(_forced, "prepared", None)
    if current is None or current[1] != tuple(filters_shape):
        return None
    return current[0]


def select(family: str, device: str, problem) -> Implementation:
    """Return the implementation that will run ``problem``."""
    _ensure_backend(device)
    candidates = _REGISTRY.get((family, device), ())
    forced = getattr(_forced, "name", None)
    if forced is not None:
        for impl in candidates:
            if impl.name == forced:
                if not impl.applies(problem):
                    raise ValueError(f"algorithm {forced!r} cannot run this {family} problem")
                return impl
        names = [impl.name for impl in candidates]
        raise ValueError(f"no {family} algorithm named {forced!r} on {device}; have {names}")
    for impl in candidates:
        if impl.auto and impl.applies(problem) and impl.pays_off(problem):
            return impl
    for impl in candidates:  # none pays off: the best one that can compute it
        if impl.auto and impl.applies(problem):
            return impl
    raise ValueError(f"no {family} implementation on {device} accepts this problem")


@contextlib.contextmanager
def capture_problems():
    """Record the problems that ops in this thread would run, instead of running them.

    Inside the block every op returns (read-only) zeros of its result's shape and appends
    ``(family, device, problem)`` to the yielded list: ``fastconv warmup`` learns this way
    which kernels a call needs without computing it.

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> from fastconv.dispatch import capture_problems
    >>> with capture_problems() as seen:
    ...     y = fastconv.max_pool2d(np.ones((1, 4, 4, 1), np.float32), 2, 2, "VALID")
    >>> [family for family, _, _ in seen], y.shape
    (['max_pool'], (1, 2, 2, 1))
    """
    previous = getattr(_forced, "capture", None)
    _forced.capture = []
    try:
        yield _forced.capture
    finally:
        _forced.capture = previous


def run(family: str, device: str, problem):
    """Run ``problem`` with the chosen implementation and return its output."""
    captured = getattr(_forced, "capture", None)
    if captured is not None:
        import numpy as np

        captured.append((family, device, problem))
        # Zero-strided: a captured call of any size allocates nothing (fastconv.chunked
        # validates dask calls of whole-slide size this way).
        return np.broadcast_to(np.zeros((), problem.dtype), problem.out_shape)
    return select(family, device, problem).run(problem)
