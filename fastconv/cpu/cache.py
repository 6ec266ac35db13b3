"""Make Numba's on-disk kernel cache fail soft: a corrupt cache file means recompile.

Numba raises (UnpicklingError, EOFError, ...) when a ``.nbi`` index or ``.nbc`` data file is
truncated or garbled, e.g. after a crash mid-write or a disk-full event, and the error escapes
the call. We treat any failure to read a cache entry as a cache miss: the kernel is compiled
again and the entry rewritten. This only changes what happens when the cache is unreadable.
"""

from numba.core import caching

_PATCHED = "_fastconv_fail_soft"


def make_cache_fail_soft():
    """Install the fail-soft cache reads once per process (idempotent)."""
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

    caching.IndexDataCacheFile._load_index = _load_index
    caching.Cache.load_overload = _load_overload
    setattr(caching.Cache, _PATCHED, True)
