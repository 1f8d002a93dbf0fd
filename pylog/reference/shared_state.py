"""``.pylog.shm``: the partition's shared-memory coordination page (Linux only: futex(2)).

The twin of native/src/shared_state.rs, which documents the layout, the protocol and the crash
argument; both engines map the same page, so each wakes the other's waiters and sees the other's
layout changes. In short: every field is *derived* state (the segment files stay the only source
of truth, and the first opener or a writer that finds the page inconsistent rebuilds it), every
store is made with the writer lock held (except two hints that only cost fairness), and:

- ``generation`` (offset 8) is a seqlock over the segment set: odd while a writer rolls (or
  recovers, or later swaps); a reader caching the even value knows its segment set is current;
- ``tail_seq`` (offset 12) is the futex word of appends: odd while a writer publishes
  ``end_offset`` / ``active_base`` / ``active_size`` (offsets 32, 40, 48), then even, then (locks
  released) ``FUTEX_WAKE``; ``wait_for`` sleeps in ``FUTEX_WAIT`` on the value it read before looking;
- ``grants`` / ``waiting_hint`` / ``yielding`` (16, 20, 24) carry the fair writer handoff
  (lock.py);
- ``recovery_point`` (56) is the highest end offset a ``sync()`` of any process fsynced: raised
  after the fsyncs, set by whoever rebuilds the page, 0 on an invalid page (then the checkpoint
  file is all there is); the torn-tail-or-corruption decision reads it (log.py ``_check_tail``),
  since ``recovery-point-offset-checkpoint`` is written only now and then.

``Waiter`` is the twin of native/src/python/wait.rs over shared_state.rs's ``wait_any``: one
consumer's sleep in ``futex_waitv(2)`` (syscall 449, Linux 5.16+) on the ``tail_seq`` words of
many pages plus a process-local wake word (``wake()`` from another thread ends the sleep), each
with the value read before looking, so nothing is lost between the look and the sleep. At most
``WAIT_ANY_MAX_WORDS`` words (the wake word, then the first pages); without ``futex_waitv``
(ENOSYS) it sleeps on the wake word alone for at most ``WAIT_ANY_ENOSYS_SLEEP_SECONDS``.

Python has no atomic read-modify-write on shared memory; none is needed, because only the
writer-lock holder modifies the counters. Loads and stores go through aligned ``ctypes`` integers
over the mapping (single machine loads and stores on x86-64 and aarch64; the syscalls between the
protocol's steps order them). The futex calls go through ``ctypes`` to ``syscall(2)``; ctypes
releases the GIL around them.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import threading
import time

SHARED_STATE_FILE = ".pylog.shm"
SHARED_STATE_MAGIC = int.from_bytes(b"PLSH", "little")
#: 2: ``recovery_point`` added at 56 (a version-1 page is rebuilt, never read)
SHARED_STATE_VERSION = 2
SHARED_STATE_BYTES = 4096
#: longest sleep of ``wait_for`` between looks at the files (writers outside the protocol, or one
#: that died between its write and its wake-up)
WAKE_FALLBACK_SECONDS = 0.5
#: longest a reader waits for another process's layout change to end before listing anyway
ODD_GENERATION_WAIT_SECONDS = 0.2

_MAGIC, _VERSION, _GENERATION, _TAIL_SEQ = 0, 4, 8, 12
_GRANTS, _WAITING_HINT, _YIELDING = 16, 20, 24
_END_OFFSET, _ACTIVE_BASE, _ACTIVE_SIZE, _RECOVERY_POINT = 32, 40, 48, 56

_SYS_FUTEX = {"x86_64": 202, "aarch64": 98}.get(os.uname().machine, 202)
_SYS_FUTEX_WAITV = 449  # the same number on every architecture (added after the unification)
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1
_FUTEX_PRIVATE_FLAG = 128
_FUTEX2_SIZE_U32, _FUTEX2_PRIVATE = 0x02, 128
_CLOCK_MONOTONIC = 1
#: most futex words one ``futex_waitv`` takes (the kernel's FUTEX_WAITV_MAX)
WAIT_ANY_MAX_WORDS = 128
WAIT_ANY_ENOSYS_SLEEP_SECONDS = 0.002
_INT_MAX = 2**31 - 1
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _FutexWaitv(ctypes.Structure):
    """``struct futex_waitv`` of include/uapi/linux/futex.h."""

    _fields_ = [
        ("val", ctypes.c_uint64),
        ("uaddr", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
    ]


class SharedState:
    """One mapping of ``.pylog.shm``; ``fd`` also carries the waiting writers' shared flock."""

    __slots__ = (
        "_active_base",
        "_active_size",
        "_end_offset",
        "_generation",
        "_grants",
        "_magic",
        "_map",
        "_recovery_point",
        "_tail_seq",
        "_version",
        "_waiting_hint",
        "_yielding",
        "fd",
    )

    def __init__(self, dir_path: str):
        """Open (creating, growing to one page) and map; the caller holds the writer lock."""
        path = os.path.join(dir_path, SHARED_STATE_FILE)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if os.fstat(self.fd).st_size < SHARED_STATE_BYTES:
                os.ftruncate(self.fd, SHARED_STATE_BYTES)
            self._map = mmap.mmap(
                self.fd, SHARED_STATE_BYTES, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
            )
        except BaseException:
            os.close(self.fd)
            raise
        u32, i64, u64 = ctypes.c_uint32, ctypes.c_int64, ctypes.c_uint64
        self._magic = u32.from_buffer(self._map, _MAGIC)
        self._version = u32.from_buffer(self._map, _VERSION)
        self._generation = u32.from_buffer(self._map, _GENERATION)
        self._tail_seq = u32.from_buffer(self._map, _TAIL_SEQ)
        self._grants = u32.from_buffer(self._map, _GRANTS)
        self._waiting_hint = u32.from_buffer(self._map, _WAITING_HINT)
        self._yielding = u32.from_buffer(self._map, _YIELDING)
        self._end_offset = i64.from_buffer(self._map, _END_OFFSET)
        self._active_base = i64.from_buffer(self._map, _ACTIVE_BASE)
        self._active_size = u64.from_buffer(self._map, _ACTIVE_SIZE)
        self._recovery_point = i64.from_buffer(self._map, _RECOVERY_POINT)

    # ------------------------------------------------------------------ layout generation

    def is_valid(self) -> bool:
        return self._magic.value == SHARED_STATE_MAGIC and self._version.value == SHARED_STATE_VERSION

    def stable_generation(self) -> int | None:
        """The generation when usable for caching (valid page, even), else None."""
        if not self.is_valid():
            return None
        g = self._generation.value
        return None if g & 1 else g

    def is_consistent(self) -> bool:
        """Writer: valid, and no dead writer left a change or a publication half-done."""
        return self.is_valid() and not self._generation.value & 1 and not self._tail_seq.value & 1

    def begin_rebuild(self) -> None:
        """Writer lock held: (re)initialise with a generation no live reader has cached."""
        self._generation.value = ((self._generation.value | 1) + 2) & 0xFFFFFFFF
        self._tail_seq.value |= 1
        self._version.value = SHARED_STATE_VERSION
        self._magic.value = SHARED_STATE_MAGIC

    def wait_stable_generation(self, timeout: float = ODD_GENERATION_WAIT_SECONDS) -> int | None:
        """A reader about to list the directory: the generation once it is even, waiting at most
        ``timeout`` while it is odd (a change in progress: a compaction swap briefly has neither
        the old nor the new segment under its final name). None when the page is unusable or
        still odd after the wait (the changer died: the caller lists anyway, as before).

        why a backoff and no futex: a changer does not wake anyone when it ends a change (the
        native engine neither), and a change lasts a few renames."""
        if not self.is_valid():
            return None
        deadline = time.monotonic() + timeout
        pause = 0.0005
        while self._generation.value & 1:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.01)
        return self.stable_generation()

    def begin_change(self) -> None:
        g = self._generation.value
        if not g & 1:
            self._generation.value = (g + 1) & 0xFFFFFFFF

    def end_change(self) -> None:
        g = self._generation.value
        if g & 1:
            self._generation.value = (g + 1) & 0xFFFFFFFF

    # ------------------------------------------------------------------ tail and wake-ups

    def tail_seq(self) -> int:
        return self._tail_seq.value

    def tail(self) -> tuple[int, int, int] | None:
        """(end_offset, active_base, active_size) as published, or None mid-publication."""
        if not self.is_valid():
            return None
        seq = self._tail_seq.value
        if seq & 1:
            return None
        tail = self._end_offset.value, self._active_base.value, self._active_size.value
        return tail if self._tail_seq.value == seq else None

    def recovery_point(self) -> int:
        """The highest end offset some process's ``sync()`` fsynced (0 on an invalid page)."""
        return self._recovery_point.value if self.is_valid() else 0

    def advance_recovery_point(self, offset: int) -> None:
        """Writer lock held, after a sync's fsyncs: raise the shared recovery point."""
        if offset > self._recovery_point.value:
            self._recovery_point.value = offset

    def set_recovery_point(self, offset: int) -> None:
        """Writer lock held, rebuilding the page: the recovery point derived from the files."""
        self._recovery_point.value = offset

    def publish(self, end_offset: int, active_base: int, active_size: int, midway=None) -> None:
        """Writer lock held: publish the tail (the caller wakes the waiters once it released its
        locks: ``wake_waiters``); ``midway`` is called while ``tail_seq`` is odd (the crash tests
        stop a process there)."""
        seq = self._tail_seq.value | 1
        self._tail_seq.value = seq
        if midway is not None:
            midway()
        self._end_offset.value = end_offset
        self._active_base.value = active_base
        self._active_size.value = active_size
        self._tail_seq.value = (seq + 1) & 0xFFFFFFFF

    def wake_waiters(self) -> None:
        _futex_wake(self._tail_seq)

    def wait_tail(self, seen: int, timeout: float) -> None:
        _futex_wait(self._tail_seq, seen, timeout)

    def tail_word_address(self) -> int:
        """Address of the ``tail_seq`` word in this mapping (for ``Waiter.wait``)."""
        return ctypes.addressof(self._tail_seq)

    # ------------------------------------------------------------------ fair handoff (lock.py)

    def grants(self) -> int:
        return self._grants.value

    def note_grant(self) -> None:
        self._grants.value = (self._grants.value + 1) & 0xFFFFFFFF
        if self._yielding.value:
            self._yielding.value = 0
            _futex_wake(self._grants)

    def set_waiting_hint(self, on: bool) -> None:
        self._waiting_hint.value = int(on)

    def take_waiting_hint(self) -> bool:
        was = self._waiting_hint.value
        if was:
            self._waiting_hint.value = 0
        return bool(was)

    def wait_for_grant(self, seen: int, timeout: float) -> None:
        self._yielding.value = 1
        _futex_wait(self._grants, seen, timeout)

    def close(self) -> None:
        """Close the descriptor; the mapping goes with the last reference (a thread may still be
        asleep on it in ``wait_tail``, so it is never unmapped under that thread)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _futex_wait(word: ctypes.c_uint32, expected: int, timeout: float) -> None:
    timeout = max(timeout, 0.0)
    ts = _Timespec(int(timeout), int((timeout - int(timeout)) * 1e9))
    # returns on a wake, a value change, a signal or the timeout; callers re-check
    _libc.syscall(
        _SYS_FUTEX,
        ctypes.byref(word),
        _FUTEX_WAIT,
        ctypes.c_uint32(expected),
        ctypes.byref(ts),
        None,
        0,
    )


def _futex_wake(word: ctypes.c_uint32) -> None:
    _libc.syscall(_SYS_FUTEX, ctypes.byref(word), _FUTEX_WAKE, _INT_MAX, None, None, 0)


class Waiter:
    """One sleep on many partitions (the twin of ``pylog._native.Waiter``).

    ``wait(logs, seen, wake_seen, timeout_ms)`` returns when a log's ``tail_seq()`` differs from
    its ``seen`` value, ``wake_seq()`` from ``wake_seen``, or after the timeout; callers re-check.
    ``wake()`` may be called from any thread (a lock makes its increment atomic).
    """

    __slots__ = ("_lock", "_word")

    def __init__(self) -> None:
        self._word = ctypes.c_uint32(0)
        self._lock = threading.Lock()

    def wake_seq(self) -> int:
        return self._word.value

    def wake(self) -> None:
        with self._lock:
            self._word.value = (self._word.value + 1) & 0xFFFFFFFF
        _libc.syscall(
            _SYS_FUTEX, ctypes.byref(self._word), _FUTEX_WAKE | _FUTEX_PRIVATE_FLAG, _INT_MAX, None, None, 0
        )

    def wait(self, logs, seen, wake_seen: int, timeout_ms: int) -> None:
        if len(logs) != len(seen):
            raise ValueError(f"{len(logs)} logs for {len(seen)} seen values")
        # why the pages held in a list: each stays mapped while the kernel reads its word
        pages = [log.shared_state for log in logs][: WAIT_ANY_MAX_WORDS - 1]
        waiters = (_FutexWaitv * (len(pages) + 1))()
        waiters[0].val = wake_seen
        waiters[0].uaddr = ctypes.addressof(self._word)
        waiters[0].flags = _FUTEX2_SIZE_U32 | _FUTEX2_PRIVATE
        for slot, page, value in zip(range(1, len(pages) + 1), pages, seen, strict=False):
            waiters[slot].val = value
            waiters[slot].uaddr = page.tail_word_address()
            waiters[slot].flags = _FUTEX2_SIZE_U32  # shared: writers wake with FUTEX_WAKE
        timeout = max(timeout_ms, 0) / 1000
        deadline_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC) + int(timeout * 1e9)
        deadline = _Timespec(deadline_ns // 1_000_000_000, deadline_ns % 1_000_000_000)
        rc = _libc.syscall(
            _SYS_FUTEX_WAITV,
            waiters,
            ctypes.c_uint(len(pages) + 1),
            ctypes.c_uint(0),
            ctypes.byref(deadline),
            ctypes.c_int(_CLOCK_MONOTONIC),
        )
        if rc < 0 and ctypes.get_errno() == errno.ENOSYS:
            _futex_wait_private(self._word, wake_seen, min(timeout, WAIT_ANY_ENOSYS_SLEEP_SECONDS))


def _futex_wait_private(word: ctypes.c_uint32, expected: int, timeout: float) -> None:
    ts = _Timespec(int(timeout), int((timeout - int(timeout)) * 1e9))
    _libc.syscall(
        _SYS_FUTEX,
        ctypes.byref(word),
        _FUTEX_WAIT | _FUTEX_PRIVATE_FLAG,
        ctypes.c_uint32(expected),
        ctypes.byref(ts),
        None,
        0,
    )
