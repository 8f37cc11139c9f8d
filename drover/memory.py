"""Process-wide memory policy, applied by the adapters (cli, github) that own the process.

glibc serves buffers of up to 32 MiB from per-thread arenas once its dynamic mmap threshold has
grown, and those arenas fragment: packaging a tree four times as large then peaked 1.5x higher
(bench/, "scale x4"). Fixing the threshold at 1 MiB sends the big read and compression buffers to
mmap, which returns them to the system on free: peak RSS stays flat with tree size, at no
measurable cost in time (the many small files still come from the arenas).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 20


def limit_heap_fragmentation() -> bool:
    """Set glibc's mmap threshold; a no-op returning False where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
