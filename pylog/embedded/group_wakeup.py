"""``<log dir>/.groups.shm``: futex words that wake group members of any process on group changes.

Layout: one 4096-byte page of 1024 little-endian ``u32`` words; a group uses the word at index
``crc32(group_id) % 1024`` (groups sharing a word only cost each other a spurious wake-up).

Protocol: a process that committed a catalog transaction changing a group's generation or releasing
one of its partitions *then* bumps the group's word and calls ``FUTEX_WAKE`` on it. A member's
heartbeat thread reads the word, looks at the catalog, and sleeps in ``FUTEX_WAIT`` on the value it
read (with its heartbeat deadline as timeout). Because the bump follows the commit and the waiter
reads the catalog after the word, a waiter that sleeps on a value has already seen every change
committed before that value was stored, so no change is missed. The read-increment-store of a bump
is not atomic across processes; two racing bumps may store the same value, which is harmless: each
store differs from what any waiter slept on before both commits, so every waiter wakes.

The file is derived state only (a lost or zeroed file costs nothing but wake-ups; the catalog is
the truth), so it is created on demand and never validated. Thread-safety: loads/stores are aligned
32-bit accesses; a ``GroupWakeup`` is safe to share between threads. Without futex(2) (not Linux),
waits sleep their whole timeout and members fall back to their heartbeat interval.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import time
import zlib

WAKEUP_FILE = ".groups.shm"
_WORDS = 1024
_BYTES = _WORDS * 4

_HAVE_FUTEX = sys.platform == "linux"
_SYS_FUTEX = {"x86_64": 202, "aarch64": 98}.get(os.uname().machine, 202)
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1
_INT_MAX = 2**31 - 1
if _HAVE_FUTEX:
    _libc = ctypes.CDLL(None, use_errno=True)
    _libc.syscall.restype = ctypes.c_long


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class GroupWakeup:
    """The mapping of ``.groups.shm`` of one log directory."""

    def __init__(self, directory: str):
        fd = os.open(os.path.join(directory, WAKEUP_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if os.fstat(fd).st_size < _BYTES:
                os.ftruncate(fd, _BYTES)
            self._map = mmap.mmap(fd, _BYTES, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)  # the mapping keeps the pages
        # never unmapped: a heartbeat thread may still sleep on a word when the store goes away
        self._by_group: dict[str, ctypes.c_uint32] = {}

    def _word(self, group_id: str) -> ctypes.c_uint32:
        word = self._by_group.get(group_id)
        if word is None:
            index = zlib.crc32(group_id.encode()) % _WORDS
            word = self._by_group.setdefault(group_id, ctypes.c_uint32.from_buffer(self._map, 4 * index))
        return word

    def load(self, group_id: str) -> int:
        return self._word(group_id).value

    def bump(self, group_id: str) -> None:
        """After a committed change of the group: every member sleeping on its word wakes."""
        word = self._word(group_id)
        word.value = (word.value + 1) & 0xFFFFFFFF
        self.wake(group_id)

    def wake(self, group_id: str) -> None:
        """Wake the group's sleepers without a change (they re-check their own state)."""
        if _HAVE_FUTEX:
            _libc.syscall(
                _SYS_FUTEX, ctypes.byref(self._word(group_id)), _FUTEX_WAKE, _INT_MAX, None, None, 0
            )

    def wait(self, group_id: str, seen: int, timeout_s: float) -> None:
        """Sleep until the word differs from ``seen``, a wake, a signal or ``timeout_s``."""
        timeout_s = max(timeout_s, 0.0)
        if not _HAVE_FUTEX:
            time.sleep(timeout_s)
            return
        ts = _Timespec(int(timeout_s), int((timeout_s - int(timeout_s)) * 1e9))
        word = self._word(group_id)
        _libc.syscall(
            _SYS_FUTEX, ctypes.byref(word), _FUTEX_WAIT, ctypes.c_uint32(seen), ctypes.byref(ts), None, 0
        )
