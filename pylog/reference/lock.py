"""Advisory file locks shared by every process (and both engines) that opens a partition directory.

Two empty files, locked with ``flock(2)`` (the native engine uses the same call on the same files,
so native and reference processes interoperate):

- ``.pylog.lock``, the **writer lock**: held exclusively around every append, roll, sync, open and
  close. Readers never take it, so they never block writers.
- ``.pylog.open``: every open log holds a **shared** lock on it for its whole life. Under the writer
  lock, ``LOCK_EX | LOCK_NB`` succeeding means nobody else has the directory open: at open this
  process is the first opener (it decides on recovery), at close it is the last closer (it writes
  the clean-shutdown marker).

``flock`` locks belong to the open file description, so two ``PartitionLog`` objects on one
directory in one process lock each other out exactly as two processes do.
Why: this is what lets the test suite model several processes with several objects.

Linux caveat, which the protocol tolerates: a failed ``LOCK_EX | LOCK_NB`` *conversion* of a held
shared lock drops the shared lock. We only attempt it at close, just before releasing anyway.
"""

from __future__ import annotations

import fcntl
import os

WRITER_LOCK_FILE = ".pylog.lock"
OPEN_LOCK_FILE = ".pylog.open"


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
