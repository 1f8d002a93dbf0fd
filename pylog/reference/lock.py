"""Advisory file locks shared by every process (and both engines) that opens a partition directory.

Two empty files, locked with ``flock(2)`` (the native engine uses the same call on the same files,
so native and reference processes interoperate):

- ``.pylog.lock``, the **writer lock**: held exclusively around every append, roll, sync, open and
  close. Readers never take it, so they never block writers (nor wait for them). ``WriterLock``
  layers the fair handoff of native/src/lock.rs over it (flock wakes waiters in no order, so a
  writer in a tight loop could starve another): an acquirer that fails ``LOCK_EX | LOCK_NB``
  registers as waiting (a shared flock on ``.pylog.shm`` plus its ``waiting_hint`` word) and
  blocks; a releaser that finds a registered waiter makes its own next acquire sleep on the
  page's ``grants`` futex word until another writer took the lock (at most ``YIELD_MAX_SECONDS``).
  flock alone gives mutual exclusion and detects dead holders; the handoff only orders.
- ``.pylog.open``: every open log holds a **shared** lock on it for its whole life. Under the writer
  lock, ``LOCK_EX | LOCK_NB`` succeeding means nobody else has the directory open: at open this
  process is the first opener (it decides on recovery), at close it is the last closer (it writes
  the clean-shutdown marker).
- ``.pylog.cleaner``, the **cleaner lock**: held exclusively for a whole ``compact()`` /
  ``apply_retention()`` call and for ``delete_before``'s segment deletion, so one process at a time
  deletes or replaces segments (others skip: ``LOCK_NB``). Lock order: cleaner lock → writer lock,
  never the other way (``delete_before`` takes it only with ``LOCK_NB`` after releasing the writer
  lock). Each acquisition opens its own file description (``CleanerLock``), so two threads of one
  process exclude each other as two processes do.

``flock`` locks belong to the open file description, so two ``PartitionLog`` objects on one
directory in one process lock each other out exactly as two processes do.
Why: this is what lets the test suite model several processes with several objects.

Linux caveat, which the protocol tolerates: a failed ``LOCK_EX | LOCK_NB`` *conversion* of a held
shared lock drops the shared lock. We only attempt it at close, just before releasing anyway.
"""

from __future__ import annotations

import fcntl
import os
import time

from pylog.reference.shared_state import SharedState

WRITER_LOCK_FILE = ".pylog.lock"
OPEN_LOCK_FILE = ".pylog.open"
CLEANER_LOCK_FILE = ".pylog.cleaner"
#: longest a releasing writer leaves the lock to a registered waiter before taking it again
YIELD_MAX_SECONDS = 0.005


class FileLock:
    """One open file description of a lock file; not thread-safe (the log's RLock serializes)."""

    __slots__ = ("_depth", "fd", "path")

    def __init__(self, path: str):
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._depth = 0

    def acquire_exclusive(self) -> None:
        """Re-entrant exclusive lock (the depth counts nested holders in this object)."""
        if self._depth == 0:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        self._depth += 1

    def release(self) -> None:
        assert self._depth > 0, "release without acquire"
        self._depth -= 1
        if self._depth == 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def __enter__(self) -> FileLock:
        self.acquire_exclusive()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def try_exclusive(self) -> bool:
        """``LOCK_EX | LOCK_NB``: True when no other open file description holds the lock."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def shared(self) -> None:
        """Hold (or convert to) a shared lock; blocks only while someone holds it exclusively."""
        fcntl.flock(self.fd, fcntl.LOCK_SH)

    def close(self) -> None:
        """Close the descriptor, which releases any lock it holds."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self._depth = 0


class WriterLock:
    """The writer lock with the fair handoff (module docstring); not re-entrant, not thread-safe
    (the log serialises its writing threads around it)."""

    __slots__ = ("_yield_at", "lock", "shared")

    def __init__(self, lock: FileLock, shared: SharedState):
        self.lock = lock
        self.shared = shared
        self._yield_at: int | None = None

    def __enter__(self) -> WriterLock:
        seen, self._yield_at = self._yield_at, None
        if seen is not None:
            deadline = time.monotonic() + YIELD_MAX_SECONDS
            while self.shared.grants() == seen:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.shared.wait_for_grant(seen, remaining)
        if not self.lock.try_exclusive():
            fcntl.flock(self.shared.fd, fcntl.LOCK_SH)
            try:
                self.shared.set_waiting_hint(True)
                fcntl.flock(self.lock.fd, fcntl.LOCK_EX)
            finally:
                fcntl.flock(self.shared.fd, fcntl.LOCK_UN)
        self.lock._depth = 1
        self.shared.note_grant()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.shared.take_waiting_hint():
            try:
                fcntl.flock(self.shared.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.shared.set_waiting_hint(True)
                self._yield_at = self.shared.grants()
            else:
                fcntl.flock(self.shared.fd, fcntl.LOCK_UN)
        self.lock.release()


class CleanerLock:
    """The cleaner lock (module docstring): ``acquire(wait)`` opens a new file description and
    flocks it, blocking when ``wait``; ``release`` closes it (which drops the lock)."""

    __slots__ = ("fd", "path")

    def __init__(self, dir_path: str):
        self.path = os.path.join(dir_path, CLEANER_LOCK_FILE)
        self.fd = -1

    def acquire(self, *, wait: bool) -> bool:
        """True when this object now holds the lock; False when busy (``wait=False`` only)."""
        assert self.fd < 0, "the cleaner lock is not re-entrant"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)
