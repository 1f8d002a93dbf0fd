"""What a process forked from this one does with the clients it inherited: the one owner.

A producer, consumer or core made before ``fork()`` belongs to the parent: its pending records are
the parent's to write, its group membership the parent's to leave, and its threads (the sender,
librdkafka's) exist only in the parent. ``disown_in_forked_child(obj)`` registers ``obj``; in a
child, right after the fork, each registered object still alive gets ``obj._disown_after_fork()``
(it closes itself, replacing any lock another parent thread may have held) and the registry is
emptied. ``keep_forever(handle)``: a librdkafka handle must never be destroyed in a child, because
destroying one joins threads the child does not have (a crash, not an error); a child keeps such
handles referenced until it exits.

``background_work()``: the threads pylog starts (the cleaner, a group's heartbeat thread, the
producer's sender) do each unit of their work inside it: SQLite calls and engine writes. A
``fork()`` waits until no unit is in progress, and none starts until the fork is done (a
``register_at_fork`` ``before`` hook). Why: a thread inside SQLite or inside an engine call holds
locks (SQLite's own, a partition's) that the child inherits held, by a thread it does not have; the
child's first use of the catalog or of that partition then hangs forever (seen: the cleaner's first
round, in SQLite at the fork, left ``sqlite3.connect`` in the child waiting). Long work asks
``fork_pending()`` at its safe points and stops early (the cleaner's compaction: its cancel), so a
fork waits for a safe point, not for a whole compaction. Threads the application starts are the
application's: a fork while one of them is inside pylog is as unsafe as any fork of a threaded
process (CPython's own warning).

Thread-safety: registering and ``background_work`` may be used from any thread; the ``before`` hook
runs in the forking thread, the child hooks in the child, which has that one thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

LOG = logging.getLogger("pylog.forking")
#: a fork waiting this long for pylog's background work logs a warning (then goes on waiting)
FORK_WAIT_WARNING_S = 5.0

#: this process's clients and cores, disowned by a forked child
_registered: weakref.WeakSet[Any] = weakref.WeakSet()

#: librdkafka handles a forked child inherited: referenced until the child exits, never destroyed
_kept_forever: list[Any] = []


def disown_in_forked_child(obj: Any) -> None:
    """Have a forked child call ``obj._disown_after_fork()`` (while ``obj`` lives)."""
    _registered.add(obj)


def keep_forever(handle: Any) -> None:
    """Never release ``handle`` in this process (a forked child's inherited librdkafka handle)."""
    _kept_forever.append(handle)


class _ForkGate:
    """Units of background work in progress, and whether a fork is waiting for them to end.

    Invariant: while ``forking``, the forking thread holds ``cond``'s lock except inside its
    ``wait``; a unit starts only with ``forking`` false, so none starts until the fork is done."""

    def __init__(self, held_here: int = 0):
        self.cond = threading.Condition(threading.Lock())
        #: threads inside a unit (a thread's nested units count once)
        self.active = held_here
        self.forking = False


_gate = _ForkGate()
#: this thread's depth of nested ``background_work`` units
_depth = threading.local()


@contextmanager
def background_work() -> Iterator[None]:
    """One unit of a pylog background thread's work, which a ``fork()`` waits for (see above)."""
    depth = getattr(_depth, "value", 0)
    if depth == 0:
        gate = _gate
        with gate.cond:
            while gate.forking:
                gate.cond.wait()
            gate.active += 1
    _depth.value = depth + 1
    try:
        yield
    finally:
        _depth.value = depth
        if depth == 0:
            gate = _gate  # why again: a fork from inside this unit made the child a new gate
            with gate.cond:
                gate.active -= 1
                if gate.active == 0:
                    gate.cond.notify_all()


def fork_pending() -> bool:
    """A fork is waiting for the background work in progress: long work stops at a safe point."""
    return _gate.forking


def _before_fork() -> None:
    gate = _gate
    gate.cond.acquire()
    gate.forking = True
    # why: a fork from inside a unit (a callback on a pylog thread) must not wait for itself
    own = 1 if getattr(_depth, "value", 0) else 0
    started = time.monotonic()
    warned = False
    while gate.active > own:
        gate.cond.wait(FORK_WAIT_WARNING_S)
        if not warned and gate.active > own and time.monotonic() - started >= FORK_WAIT_WARNING_S:
            warned = True
            LOG.warning(
                "fork() has waited %.0f s for pylog's background threads (SQLite, engine)",
                FORK_WAIT_WARNING_S,
            )


def _after_fork_in_parent() -> None:
    gate = _gate
    gate.forking = False
    gate.cond.notify_all()
    gate.cond.release()


def _after_fork_in_child() -> None:
    global _gate
    # why a new gate: the old one's lock is held (by this thread, in the parent's copy)
    _gate = _ForkGate(held_here=1 if getattr(_depth, "value", 0) else 0)
    inherited = list(_registered)
    _registered.clear()
    for obj in inherited:
        obj._disown_after_fork()


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)
