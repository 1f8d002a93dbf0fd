"""The background cleaner of a ``Log``: compaction of compacted topics, retention of the others.

One daemon thread per ``Log`` (``Cleaner.start``), the embedded counterpart of Kafka's
LogCleaner threads and LogManager's retention task (storage/src/main/java/org/apache/kafka/storage/
internals/log/LogCleaner.java, LogCleanerManager.java; core/src/main/scala/kafka/log/LogManager.scala
``cleanupLogs``). Its loop (``run_once``):

- **Retention**, every ``log.retention.check.interval.ms`` (the first one
  ``min(RETENTION_INITIAL_DELAY_MS, interval)`` after start, Kafka's ``InitialTaskDelayMs``):
  ``apply_retention(now)`` on every partition whose ``cleanup.policy`` has ``delete``. (A
  compacted partition's retention runs inside its ``compact``, as Kafka's cleaner runs
  ``deleteOldSegments`` after cleaning.) Runs whether or not ``log.cleaner.enable`` is set, as in
  Kafka; with the cleaner off it covers every partition (a compact-only one gets the log-start
  pass of ``apply_retention``, as Kafka's LogManager does when it has no cleaner).
- **Compaction** (when ``log.cleaner.enable``): ``cleanable(now)`` of every partition whose policy
  has ``compact`` and that is neither marked uncleanable nor backing off; the due ones, highest
  dirty ratio first (Kafka's ``grabFilthiestCompactedLog``), each get ``compact(now, force=False,
  wait=False, cancel=<stop event>, map_bytes=log.cleaner.dedupe.buffer.size)``. ``wait=False``:
  a partition whose cleaner lock another process holds is skipped (that process is cleaning it),
  so the cleaners of every process with the log open take turns per partition. When a round
  cleaned something the next one starts at once (Kafka's cleaner does not pause after a
  cleaning); otherwise the thread sleeps ``log.cleaner.backoff.ms``.
- **Failures** are per partition: logged at ERROR with the traceback, retried after
  ``backoff * 2**(failures-1)`` (at most ``MAX_RETRY_BACKOFF_MS``); after
  ``log.cleaner.max.failures`` compaction failures in a row the partition is marked uncleanable in
  the catalog (``UncleanableMarks``) and skipped by every process's cleaner until its topic's config
  changes or an explicit ``Log.compact`` of it succeeds (both clear the mark; KAFKA-19895). Retention
  failures back off the same way but never mark. A failure never stops the cleaning of the other
  partitions, and an exception of the loop itself is logged and the loop goes on: the thread only
  ends when ``stop()`` is called (or its backend is closed).
- **Stopping**: ``stop()`` sets the stop event, which ends the sleep at once and is the ``cancel``
  of the compaction in progress (which stops at its next safe point), then joins the thread. At
  interpreter exit every cleaner still running is stopped the same way (``atexit``), so a daemon
  thread is never cut off by finalization in the middle of an engine call that released the GIL.
- **fork()**: each round is one unit of ``pylog.forking.background_work`` (it is in SQLite and in
  engine calls), so a fork waits for it; a round in progress stops at its next safe point when a
  fork is pending (``fork_pending`` is part of the compaction's cancel; the partition is cleaned
  next round). A child made by ``fork()`` has no cleaner thread (threads do not survive ``fork``):
  its copy is stopped there (``_disown_after_fork``) and its ``Log`` works without one.

The catalog table (owned here; created by ``pylog.embedded.catalog``, schema version 2):
``uncleanable_partitions(topic, partition, reason, since_ms, failures)``, one row per marked
partition; ``reason`` is the last error (its class and message), ``since_ms`` the wall-clock time of
the marking, ``failures`` the failures in a row that led to it.

Thread-safety: the cleaner's state is its thread's (``run_once`` is called by the thread, or by
tests driving it with their own clock, never both); ``stop`` and ``forget_failures`` may be called
from any thread. ``UncleanableMarks`` is safe from any thread (the catalog has a connection per
thread).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pylog.broker_config import BrokerConfig
from pylog.errors import ClientClosedError, UnknownTopicOrPartitionError
from pylog.forking import background_work, disown_in_forked_child, fork_pending
from pylog.types import TopicPartition

LOG = logging.getLogger("pylog.cleaner")

#: Kafka's LogManager.InitialTaskDelayMs: the first retention check after start
RETENTION_INITIAL_DELAY_MS = 30_000
#: the longest retry backoff of a failing partition
MAX_RETRY_BACKOFF_MS = 600_000
#: the shortest sleep of an idle loop (why: ``log.cleaner.backoff.ms=0`` must not spin a core)
MIN_IDLE_WAIT_MS = 10

UNCLEANABLE_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE uncleanable_partitions (
        topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        reason TEXT NOT NULL,
        since_ms INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        PRIMARY KEY (topic, partition)
    )""",
)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class UncleanableMarks:
    """The catalog's ``uncleanable_partitions`` table: read, mark, clear."""

    def __init__(self, catalog: Any):
        self._catalog = catalog

    def read(self) -> dict[TopicPartition, str]:
        """Every marked partition and its reason."""
        with self._catalog.read() as db:
            rows = db.execute("SELECT topic, partition, reason FROM uncleanable_partitions").fetchall()
        return {TopicPartition(topic, int(partition)): reason for topic, partition, reason in rows}

    def mark(self, tp: TopicPartition, reason: str, since_ms: int, failures: int) -> None:
        with self._catalog.write() as db:
            # why check the topic: a deletion committed meanwhile must not leave a row behind
            if db.execute("SELECT 1 FROM topics WHERE name = ?", (tp.topic,)).fetchone() is None:
                return
            db.execute(
                "INSERT OR REPLACE INTO uncleanable_partitions VALUES (?, ?, ?, ?, ?)",
                (tp.topic, tp.partition, reason, since_ms, failures),
            )

    def clear(self, tp: TopicPartition) -> bool:
        """Remove ``tp``'s mark; whether there was one."""
        with self._catalog.write() as db:
            cursor = db.execute(
                "DELETE FROM uncleanable_partitions WHERE topic = ? AND partition = ?",
                (tp.topic, tp.partition),
            )
            return cursor.rowcount > 0

    @staticmethod
    def clear_topic(db: Any, topic: str) -> int:
        """Remove the marks of every partition of ``topic`` inside the caller's write transaction
        (a config change or a deletion of the topic); how many there were."""
        return db.execute("DELETE FROM uncleanable_partitions WHERE topic = ?", (topic,)).rowcount


class CleanerSource(Protocol):
    """What the cleaner needs of its backend (``EmbeddedBackend``; a fake in unit tests)."""

    def partitions_with_policy(self, word: str) -> list[TopicPartition]:
        """The partitions of every topic whose ``cleanup.policy`` contains ``word``."""
        ...

    def partition_log(self, tp: TopicPartition) -> Any: ...

    def check_partition(self, tp: TopicPartition) -> None: ...

    @property
    def uncleanable_marks(self) -> Any: ...


@dataclass
class _Failures:
    count: int
    retry_at_ms: int


class Cleaner:
    """The background cleaner of one backend (see the module docstring)."""

    def __init__(
        self,
        source: CleanerSource,
        config: BrokerConfig,
        *,
        clock_ms: Callable[[], int] = wall_clock_ms,
        name: str = "pylog-cleaner",
    ):
        # why weak: the thread must not keep a Log nobody holds (and its files) alive; it ends
        # when its backend is gone
        self._source_ref = weakref.ref(source)
        self._config = config
        self._clock_ms = clock_ms
        self._name = name
        self._stop = threading.Event()
        #: the compaction's cancel: the stop event or a pending fork
        self._cancel = _StopOrFork(self)
        self._thread: threading.Thread | None = None
        #: (task, tp) -> failures in a row; task is "compact" or "retention"
        self._failures: dict[tuple[str, TopicPartition], _Failures] = {}
        #: partitions whose failures must be forgotten (an explicit compact succeeded): set by any
        #: thread, applied by the cleaner's
        self._forgotten: set[TopicPartition] = set()
        self._forgotten_lock = threading.Lock()
        self._next_retention_ms = clock_ms() + min(
            RETENTION_INITIAL_DELAY_MS, config.retention_check_interval_ms
        )

    # --- the thread -------------------------------------------------------------------------------

    def start(self) -> None:
        thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread = thread
        _running.add(self)
        disown_in_forked_child(self)
        thread.start()

    def _disown_after_fork(self) -> None:
        """In a forked child: stopped, with a fresh stop event (the parent's thread, which does
        not exist here, may have held the old one's lock at the fork)."""
        self._stop = threading.Event()
        self._stop.set()
        self._thread = None
        _running.discard(self)

    def stop(self) -> None:
        """Stop the thread: its sleep ends, a compaction in progress stops at its next safe point;
        returns when the thread has ended. Idempotent."""
        self._stop.set()
        _running.discard(self)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        LOG.info(
            "cleaner started (compaction %s, backoff %d ms, retention check every %d ms)",
            "on" if self._config.cleaner_enable else "off",
            self._config.cleaner_backoff_ms,
            self._config.retention_check_interval_ms,
        )
        while not self._stop.is_set():
            try:
                with background_work():
                    wait_s = self.run_once()
            except ClientClosedError:
                break  # the backend closed under us
            except Exception:  # why: the thread must never die; the next round may succeed
                LOG.exception(
                    "the cleaner's loop failed; it goes on after %d ms", self._config.cleaner_backoff_ms
                )
                wait_s = max(self._config.cleaner_backoff_ms, MIN_IDLE_WAIT_MS) / 1000
            self._stop.wait(wait_s)
        LOG.info("cleaner stopped")

    @property
    def _source(self) -> CleanerSource:
        source = self._source_ref()
        if source is None:
            raise ClientClosedError("the cleaner's log was garbage-collected without close()")
        return source

    # --- one turn of the loop ----------------------------------------------------------------------

    def run_once(self) -> float:
        """Retention if its interval is due, then one compaction round; the seconds to sleep."""
        self._apply_forgotten()
        now = self._clock_ms()
        if now >= self._next_retention_ms:
            self.retention_round(now)
            self._next_retention_ms = now + self._config.retention_check_interval_ms
        cleaned = 0
        if self._config.cleaner_enable and not self._stop.is_set():
            cleaned = self.compaction_round()
        wait_ms = 0 if cleaned else max(self._config.cleaner_backoff_ms, MIN_IDLE_WAIT_MS)
        wait_ms = min(wait_ms, max(self._next_retention_ms - self._clock_ms(), 0))
        return wait_ms / 1000

    def retention_round(self, now_ms: int) -> int:
        """``apply_retention`` on every ``delete`` partition (every partition when compaction is
        off) not backing off; segments deleted."""
        deleted = 0
        source = self._source
        # why "" without the cleaner: it is in every policy (no compaction runs their retention)
        for tp in source.partitions_with_policy("delete" if self._config.cleaner_enable else ""):
            if self._cancel.is_set():
                break
            if self._backing_off("retention", tp, now_ms):
                continue
            try:
                # why wait=False: queueing behind another process's long compaction of this
                # partition would hold up Log.close(); the next check comes soon enough
                result = source.partition_log(tp).apply_retention(now_ms, wait=False)
            except Exception as error:
                self._failed("retention", tp, error)
                continue
            self._failures.pop(("retention", tp), None)
            deleted += result.deleted_segments
        return deleted

    def compaction_round(self) -> int:
        """Compact the due partitions, filthiest first; how many were cleaned (a pass ran)."""
        source = self._source
        marked = source.uncleanable_marks.read()
        candidates: list[tuple[float, TopicPartition, Any]] = []
        now = self._clock_ms()
        for tp in source.partitions_with_policy("compact"):
            if tp in marked or self._backing_off("compact", tp, now):
                continue
            try:
                log = source.partition_log(tp)
                look = log.cleanable(now)
            except Exception as error:
                self._failed("compact", tp, error)
                continue
            if look.due:
                candidates.append((look.dirty_ratio, tp, log))
        candidates.sort(key=lambda item: item[0], reverse=True)
        cleaned = 0
        for ratio, tp, log in candidates:
            if self._cancel.is_set():
                break
            try:
                result = log.compact(
                    self._clock_ms(),
                    map_bytes=self._config.cleaner_dedupe_buffer_size,
                    force=False,
                    wait=False,
                    cancel=self._cancel,
                )
            except Exception as error:
                self._failed("compact", tp, error)
                continue
            self._failures.pop(("compact", tp), None)
            if result.passes:
                cleaned += 1
                LOG.debug("cleaned %s-%d (dirty ratio was %.3f): %s", tp.topic, tp.partition, ratio, result)
        return cleaned

    # --- failures ----------------------------------------------------------------------------------

    def forget_failures(self, tp: TopicPartition) -> None:
        """Forget ``tp``'s failures in a row (an explicit compact of it succeeded). Any thread."""
        with self._forgotten_lock:
            self._forgotten.add(tp)

    def failures(self, task: str, tp: TopicPartition) -> int:
        """``tp``'s failures in a row of ``task`` (``"compact"``/``"retention"``)."""
        entry = self._failures.get((task, tp))
        return 0 if entry is None else entry.count

    def _apply_forgotten(self) -> None:
        with self._forgotten_lock:
            forgotten, self._forgotten = self._forgotten, set()
        for tp in forgotten:
            self._failures.pop(("compact", tp), None)

    def _backing_off(self, task: str, tp: TopicPartition, now_ms: int) -> bool:
        entry = self._failures.get((task, tp))
        return entry is not None and now_ms < entry.retry_at_ms

    def _failed(self, task: str, tp: TopicPartition, error: Exception) -> None:
        if isinstance(error, ClientClosedError):
            raise error
        if self._gone(tp, error):
            self._failures.pop((task, tp), None)
            return
        entry = self._failures.get((task, tp))
        count = 1 if entry is None else entry.count + 1
        name = f"{tp.topic}-{tp.partition}"
        if task == "compact" and count >= self._config.cleaner_max_failures:
            self._failures.pop((task, tp), None)
            reason = f"{type(error).__name__}: {error}"
            # why before the log line: whoever reads the line finds the mark in the catalog
            self._source.uncleanable_marks.mark(tp, reason, wall_clock_ms(), count)
            LOG.error(
                "compaction of %s failed %d times in a row; marking it uncleanable (skipped until its "
                "topic's config changes or log.compact() of it succeeds)",
                name,
                count,
                exc_info=error,
            )
            return
        delay = min(max(self._config.cleaner_backoff_ms, 1) * 2 ** (count - 1), MAX_RETRY_BACKOFF_MS)
        self._failures[(task, tp)] = _Failures(count, self._clock_ms() + delay)
        LOG.error(
            "%s of %s failed (%d in a row); retrying in %d ms", task, name, count, delay, exc_info=error
        )

    def _gone(self, tp: TopicPartition, error: Exception) -> bool:
        """Whether the failure is the topic's deletion (not the partition's fault)."""
        if isinstance(error, UnknownTopicOrPartitionError):
            return True
        try:
            self._source.check_partition(tp)
        except UnknownTopicOrPartitionError:
            return True
        except Exception:  # why: the check itself failing says nothing of the partition
            return False
        return False


class _StopOrFork:
    """The cleaner's cancel (``is_set`` is what the engines ask): stopping, or a fork waiting."""

    def __init__(self, cleaner: Cleaner):
        self._cleaner = weakref.ref(cleaner)

    def is_set(self) -> bool:
        cleaner = self._cleaner()
        return cleaner is None or cleaner._stop.is_set() or fork_pending()


#: the cleaners whose thread runs: stopped at interpreter exit
_running: weakref.WeakSet[Cleaner] = weakref.WeakSet()


def _stop_all_at_exit() -> None:
    for cleaner in list(_running):
        cleaner.stop()


atexit.register(_stop_all_at_exit)
