"""Make Numba's on-disk kernel caches fail soft and aware of the package's other modules.

Both caches are patched the same way: the CPU kernels' (``numba.core.caching``) and the CUDA
kernels' (``numba.cuda.core.caching``, numba-cuda's copy of the same machinery).

Numba raises (UnpicklingError, EOFError, ...) when a ``.nbi`` index or ``.nbc`` data file is
truncated or garbled, e.g. after a crash mid-write or a disk-full event, and the error escapes
the call. We treat any failure to read a cache entry as a cache miss: the kernel is compiled
again and the entry rewritten. This only changes what happens when the cache is unreadable.

Numba also keys a cached kernel on its own source file only, so editing a module it imports
(the IR micro-kernels, the config) would leave a stale kernel in the cache: a real bug hid
that way during development. fastconv's kernels are therefore keyed on a digest of every
source file of the package as well, and on the settings compiled into the kernels (for the
CPU, ``config.compiled_tunables()``: the register block, row chunks, Winograd job sizes, ...;
the CUDA kernels take theirs as factory arguments, which Numba's key already holds).

Read-only installs need nothing here: Numba then caches under the user's cache directory
(``NUMBA_CACHE_DIR`` or ``FASTCONV_CACHE_DIR`` when set), and where nothing is writable it
compiles without caching.
"""

import functools
import hashlib
import pathlib

_PATCHED = "_fastconv_fail_soft"
_PACKAGE = pathlib.Path(__file__).resolve().parent


@functools.lru_cache(maxsize=None)
def package_digest():
    """A digest of the package's Python sources (the kernels and what they import)."""
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(_PACKAGE)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def make_fail_soft(caching, settings=tuple):
    """Install the fail-soft cache reads and the package-wide source key in Numba's
    ``caching`` module once per process (idempotent).

    Parameters
    ----------
    caching : module
        ``numba.core.caching`` or ``numba.cuda.core.caching``.
    settings : callable
        Returns the settings compiled into the kernels (a hashable tuple), added to the key.
    """
    if getattr(caching.Cache, _PATCHED, False):
        return
    load_index = caching.IndexDataCacheFile._load_index
    load_overload = caching.Cache.load_overload

    def _load_index(self):
        try:
            return load_index(self)
        except Exception:  # corrupt index: an empty one, which the next save rewrites
            return {}

    def _load_overload(self, sig, target_context):
        try:
            return load_overload(self, sig, target_context)
        except Exception:  # corrupt or unloadable entry: compile instead
            return None

    init = caching.Cache.__init__

    def _init(self, py_func):
        init(self, py_func)
        if getattr(py_func, "__module__", "").startswith("fastconv."):
            cache_file = self._cache_file
            # Settings compiled into the kernels change the machine code too.
            cache_file._source_stamp = (cache_file._source_stamp, package_digest(),
                                        settings())

    caching.IndexDataCacheFile._load_index = _load_index
    caching.Cache.load_overload = _load_overload
    caching.Cache.__init__ = _init
    setattr(caching.Cache, _PATCHED, True)
