"""Give freed heap memory back to the operating system between encoder batches.

PyTorch on CPU allocates its tensors with the C library's ``malloc``. glibc raises its mmap threshold each
time a large block is freed, so after the first few steps tensors of tens of MB are carved from the heap
instead of mapped; when the next batch asks for a slightly different size (the encoder's token-budget batches
change length), the freed blocks do not fit and the heap grows. Measured on the shared recipe's ``csrm train``
(2 CPU cores): encoding grew the process from 0.63 to 1.8 GB for a ~200 MB feature table. (The reader stage
grew it by ~0.9 GB more the same way, as its distractor count changed every step; that was fixed at its
cause, by reading the shared distractors once: ``ClauseCSRMModel.read_config``.) Peak 2.4-2.6 GB before,
1.2-1.3 GB after both.

:func:`release_freed_memory` calls glibc's ``malloc_trim(0)``, which returns free pages anywhere in the heap
(``madvise``), not only at its top. Fixing the mmap threshold instead (``MALLOC_MMAP_THRESHOLD_``) also keeps
the peak low but maps and zeroes every large tensor afresh: the reader stage took 92 s instead of 52 s.
Elsewhere (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> bool:
    """Return freed heap pages to the OS (glibc ``malloc_trim``); False where the C library has no such call."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
