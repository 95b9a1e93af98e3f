"""glibc's allocator, tuned for a server whose requests make large, short-lived numpy arrays.

By default glibc maps every block of 128 KiB or more with its own ``mmap`` (a threshold it
raises to at most 32 MiB once such a block is freed) and unmaps it on free: every page of
every large temporary then faults on first touch, request after request. A 500k-face upload
makes dozens of arrays of 4-30 MB (parsing, normalization, the scenes) and spent about a
third of its normalization in page faults. :func:`keep_large_blocks` serves blocks up to
``MMAP_THRESHOLD_BYTES`` from the heap and keeps up to ``TRIM_THRESHOLD_BYTES`` of freed heap
for the next request, per process. Elsewhere than glibc (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("service.allocator")

MMAP_THRESHOLD_BYTES = 64 << 20
TRIM_THRESHOLD_BYTES = 256 << 20
_M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3


def keep_large_blocks() -> bool:
    """Tune this process's glibc allocator (see the module docstring); False if not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    done &= mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    if not done:
        log.warning("glibc's mallopt refused the allocator settings; the defaults stay")
    return done
