"""What a process forked from this one does with the clients it inherited: the one owner.

A producer, consumer or core made before ``fork()`` belongs to the parent: its pending records are
the parent's to write, its group membership the parent's to leave, and its threads (the sender,
librdkafka's) exist only in the parent. ``disown_in_forked_child(obj)`` registers ``obj``; in a
child, right after the fork, each registered object still alive gets ``obj._disown_after_fork()``
(it closes itself, replacing any lock another parent thread may have held) and the registry is
emptied. ``keep_forever(handle)``: a librdkafka handle must never be destroyed in a child, because
destroying one joins threads the child does not have (a crash, not an error); a child keeps such
handles referenced until it exits.

Thread-safety: registering may happen from any thread; the fork hook runs in the child, which has
one thread.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

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


def _disown_after_fork() -> None:
    inherited = list(_registered)
    _registered.clear()
    for obj in inherited:
        obj._disown_after_fork()


os.register_at_fork(after_in_child=_disown_after_fork)
