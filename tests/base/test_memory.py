"""``release_freed_memory`` gives the heap's freed blocks back to the OS (glibc ``malloc_trim``)."""

import subprocess
import sys

import pytest

# Freed 4 MB blocks between small blocks that stay: free() cannot give them back (they are not at the heap's
# top), which is how varying-shape batches grew the training process. Plain malloc, so the heap is deterministic.
SCRIPT = """
import ctypes, re, sys
from csrm.base.memory import release_freed_memory
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD: 4 MB blocks from the heap, as glibc's dynamic threshold does
rss = lambda: int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) >> 10
blocks, keep = [], []
for i in range(40):
    blocks.append(libc.malloc(4 << 20)); libc.memset(blocks[-1], 1, 4 << 20)
    keep.append(libc.malloc(64 << 10)); libc.memset(keep[-1], 1, 64 << 10)
for block in blocks:
    libc.free(block)
before = rss()
released = release_freed_memory() if sys.argv[1] == "release" else None
print(before, rss(), released)
"""


def run(mode: str) -> tuple[int, int, str]:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    before, after, released = proc.stdout.split()
    return int(before), int(after), released


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_heap_memory_is_returned_to_the_os():
    before, after, released = run("release")
    assert released == "True"
    assert before - after >= 120, (before, after)  # MiB: the 160 MiB of freed blocks go back
    before, after, _ = run("keep")  # without the call they stay resident
    assert after >= before - 5 and before >= 150, (before, after)
