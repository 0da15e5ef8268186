"""Giving freed memory back to the operating system.

CPython frees objects into glibc's malloc, which keeps the pages for reuse: after
start-up (argon2, key unsealing, certificate checks) and after a burst of traffic
the process keeps a few MiB it no longer uses. ``malloc_trim(0)`` returns the free
pages of every arena. It is called when the broker is ready and when its last
client connection has been gone for :data:`TRIM_AFTER_IDLE_SECONDS`; on a C
library without it, nothing happens.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable

__all__ = ["TRIM_AFTER_IDLE_SECONDS", "release_free_memory"]

log = logging.getLogger("sealmq.net")

#: Seconds without any client connection before freed memory is given back (a client
#: reconnecting at once would take the pages again).
TRIM_AFTER_IDLE_SECONDS = 2.0

_trim: Callable[[int], int] | None = None
_looked_up = False


def release_free_memory() -> bool:
    """Return the C heap's free pages to the OS; False where that is not available."""
    global _trim, _looked_up
    if not _looked_up:
        _looked_up = True
        try:
            # The process's own symbols: libc's where it has malloc_trim. (Not
            # ctypes.util.find_library, which runs ldconfig and imports subprocess,
            # shutil and tempfile into the broker for good.)
            _trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            log.debug("malloc_trim is not available: freed memory stays with the process")
    if _trim is None:
        return False
    _trim(0)
    return True
