"""Group commit: one ``sync()`` of a partition log covers every batch appended before it began.

``acks="all"`` resolves a batch only once it is fsynced. Syncing once per batch would make durable
throughput one batch per fsync whatever the concurrency; instead each writer, after its append,
calls ``wait_durable(end_offset)`` with the log end its append produced. If no sync is running,
that writer becomes the syncer: it notes the highest end offset registered so far (every batch
whose writer registered had been appended, so the coming ``sync()`` covers it — and so is every
batch below the log's end offset read just before the sync) and syncs; writers
arriving meanwhile wait on the condition and are released together when a sync covering them
completes — the next sync picks all of them up at once. This is the rule of a database's group
commit (and of Kafka's flush of a whole log, core/src/main/scala/kafka/log/UnifiedLog.scala
``flush``, which covers every batch below the flushed offset).

One ``GroupCommit`` exists per open partition-log object (``for_log``), so several producers in a
process that share a backend share their fsyncs. Invariant: ``durable_end`` only grows and never
exceeds an end offset registered before the sync that set it. A failed sync releases its waiters
to retry (each then syncs itself or joins a later sync), so an error reaches every writer whose
batch it left unsynced.

Thread-safety: all state is under ``_cond``; ``sync()`` runs outside it (the native engine releases
the GIL there, so other threads keep appending). A forked child starts with no group commits: one
copied from the parent may show a sync in progress (``_syncing``) that no thread here will finish.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

_registry: weakref.WeakKeyDictionary[Any, GroupCommit] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def _forget_after_fork() -> None:
    global _registry, _registry_lock
    _registry = weakref.WeakKeyDictionary()
    _registry_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


class GroupCommit:
    def __init__(self, log: Any):
        self._log = log
        self._cond = threading.Condition(threading.Lock())
        self._registered_end = -1
        self.durable_end = -1
        self._syncing = False
        #: syncs performed (diagnostic: tests compare it with the batches it covered)
        self.syncs = 0

    def wait_durable(self, end_offset: int) -> None:
        """Return once a ``sync()`` that began after the append ending at ``end_offset`` completed."""
        with self._cond:
            if end_offset > self._registered_end:
                self._registered_end = end_offset
            while self.durable_end < end_offset:
                if self._syncing:
                    self._cond.wait()
                    continue
                self._syncing = True
                target = self._registered_end
                self._cond.release()
                try:
                    # why: batches appended but not registered yet are covered too
                    target = max(target, self._log.end_offset)
                    self._log.sync()
                except BaseException:
                    self._cond.acquire()
                    self._syncing = False
                    self._cond.notify_all()
                    raise
                self._cond.acquire()
                self._syncing = False
                self.syncs += 1
                if target > self.durable_end:
                    self.durable_end = target
                self._cond.notify_all()

    def wait_idle(self) -> None:
        """Return when no sync is running. A writer whose batch is due calls it first (acks=all),
        so records other threads send during a running fsync join its batch: one append and one
        later fsync for all of them, instead of one append each."""
        with self._cond:
            while self._syncing:
                self._cond.wait()


def for_log(log: Any) -> GroupCommit:
    """The ``GroupCommit`` of an open partition-log object (one per object, created on demand)."""
    commit = _registry.get(log)
    if commit is None:
        with _registry_lock:
            commit = _registry.get(log)
            if commit is None:
                commit = _registry[log] = GroupCommit(log)
    return commit
