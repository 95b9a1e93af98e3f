"""Serving processes take large arrays from the heap and keep freed ones (glibc's mallopt):
no fresh mmap, and no page faults, per large temporary of every request."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from service.allocator import keep_large_blocks

# In a fresh interpreter: how many blocks glibc has mmapped (mallinfo2's hblks) while a
# 16 MiB array lives, before and after tuning.
PROBE = """
import ctypes, numpy as np
from service.allocator import keep_large_blocks

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2

def mapped_blocks_while_a_large_array_lives():
    before = libc.mallinfo2().hblks
    array = np.ones(2 << 20)  # 16 MiB
    during = libc.mallinfo2().hblks
    del array
    return during - before

default = mapped_blocks_while_a_large_array_lives()
tuned = keep_large_blocks()
print(default, int(tuned), mapped_blocks_while_a_large_array_lives())
"""

glibc_only = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's; elsewhere nothing is tuned"
)


@glibc_only
def test_a_large_array_comes_from_the_heap_once_tuned() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    default, tuned, after = (int(x) for x in out)
    assert default == 1  # glibc's default: a block of its own, unmapped on free
    assert tuned == 1 and after == 0


def test_without_libc_nothing_is_tuned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ctypes.util.find_library", lambda name: None)
    assert keep_large_blocks() is False
