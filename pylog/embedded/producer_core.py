"""The embedded producer core: partitioner, accumulator, writer and group commit.

Kafka's producer (clients/src/main/java/org/apache/kafka/clients/producer/internals/
RecordAccumulator.java and Sender.java) without a network: records are partitioned
(``partitioner.py``), accumulated per partition in one open batch each, and a batch reaches the
engine as ONE ``append`` (one RecordBatch v2) when it holds ``batch_size`` bytes, when it has
lingered ``linger_ms``, on ``flush()`` and on ``close()``.

Two accumulators, one writer: on the native engine (and without a user partitioner) the
per-record half — argument checks, partitioner, open batches, futures — is the Rust
``pylog._native.NativeAccumulator`` (native/src/python/producer.rs), which hands closed batches
back here (``take_closed``); otherwise the pure-Python one below does the same, by the same rules
and size estimate (tests/api/test_producer_cores.py holds them to the same partitions, offsets and
batch cuts). Everything from a closed batch on is this module's, for both.

Who writes a batch:
- a batch filled by ``send`` (or a ``send_batch`` list) is written by the sending thread at once
  (no thread hand-off on the busy path);
- lingering batches are written by the core's background thread (``pylog-producer``), which sleeps
  on a condition until the oldest open batch's deadline: records never get stuck;
- ``flush()`` closes every open batch and writes them in the calling thread, then waits for every
  batch created before it (including ones other threads are writing).
Per partition, batches are written in the order they were closed (a per-partition queue drained
under a per-partition lock), so a partition's records keep their send order.

Acknowledgement (``acks``): 0 and 1 complete a batch's futures once ``append`` returned (the bytes
are in the OS: they survive the process dying); ``"all"`` (-1) only after the log was fsynced,
through ``group_commit.GroupCommit`` (one fsync covers every batch appended before it). Batches
written by ``send`` with ``acks="all"`` are synced by the background thread, so ``send`` never
waits for a disk; ``flush`` syncs what it wrote itself.

Failures fail only the futures of the batch concerned, with a typed error: a batch over the
topic's ``max.message.bytes`` is split in halves and retried (as Kafka's producer splits a batch the
broker refused with MESSAGE_TOO_LARGE, RecordAccumulator.splitAndReenqueue), so only a record too
large on its own fails (``RecordTooLargeError``); an engine error on a cached handle is turned into
``UnknownTopicOrPartitionError`` by ``backend.check_partition`` when the topic was deleted; any other
error (a full disk's ``OSError``) is the batch's error as it is.

Timestamps: a record with ``timestamp_ms`` keeps it (CreateTime); records without one get the time
their batch is appended (the engine stamps it; deviation: Kafka's producer stamps the send time,
which is at most ``linger_ms`` earlier). On a LogAppendTime topic every record's metadata carries the
time the engine wrote. Both are read back from the written batch's header, so the metadata is what
a consumer will see.

Thread-safety: any number of threads may ``send``/``flush``; the accumulator state is under one
lock, engine calls run outside it.

fork(): a child finds every core made before the fork closed and empty; its pending records are
the parent's to write (``_disown_after_fork``), so none is appended twice. The sender thread's
writes and fsyncs are one ``pylog.forking.background_work`` unit each round, so a fork never
leaves a partition's lock held by a writer the child does not have.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import functools
import random
import struct
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from pylog.embedded import group_commit, partitioner
from pylog.errors import (
    ClientClosedError,
    KafkaTimeoutError,
    LogClosedError,
    RecordTooLargeError,
    UnknownTopicOrPartitionError,
)
from pylog.forking import background_work, disown_in_forked_child
from pylog.future import (
    UNKNOWN_TIMESTAMP,
    FutureBatchMetadata,
    FutureRecordMetadata,
    ProduceResult,
    failed_record_future,
    record_outcome,
    run_callback,
)
from pylog.types import TopicPartition

try:  # the Rust hash and accumulator when the extension is there
    from pylog._native import NativeAccumulator
    from pylog._native import partition_for_key as _native_partition_for_key
except ImportError:  # pragma: no cover - exercised only without the extension
    NativeAccumulator = None
    _native_partition_for_key = None

#: bytes of a RecordBatch v2 header (DefaultRecordBatch.RECORD_BATCH_OVERHEAD)
BATCH_OVERHEAD = 61
#: a record's framing beyond key, value and headers, upper bound for small records (length,
#: attributes, timestamp delta, offset delta, key/value lengths, header count: varints)
RECORD_OVERHEAD = 10
_HEADER_TIMESTAMPS = struct.Struct(">qq")  # baseTimestamp, maxTimestamp at byte 27 of a batch
_TIMESTAMP_POSITION = 27
_LOG_APPEND_TIME_ATTRIBUTE = 0x08


class _Batch:
    """Records accumulated for one partition (columns, as the engine's ``append`` takes them)."""

    __slots__ = (
        "closed",
        "deadline",
        "headers",
        "keys",
        "part",
        "result",
        "size",
        "timestamps",
        "values",
    )

    def __init__(self, part: _Partition, deadline: float, result: ProduceResult | None = None):
        self.part = part
        self.values: list[Any] = []
        self.keys: list[Any] | None = None
        self.headers: list[Any] | None = None
        self.timestamps: list[Any] | None = None
        self.size = BATCH_OVERHEAD
        self.deadline = deadline
        self.closed = False
        self.result = ProduceResult(part.tp) if result is None else result


class _Partition:
    __slots__ = ("open", "queue", "tp", "write_lock")

    def __init__(self, tp: TopicPartition):
        self.tp = tp
        self.open: _Batch | None = None
        self.queue: collections.deque[_Batch] = collections.deque()
        # why: reentrant, so a future's callback (run while the batch's writer holds it) may send
        self.write_lock = threading.RLock()


class _Topic:
    __slots__ = ("count", "name", "parts")

    def __init__(self, name: str, count: int):
        self.name = name
        self.count = count
        self.parts = [_Partition(TopicPartition(name, p)) for p in range(count)]


class ProducerCore:
    """See the module docs. ``config`` is the validated ``ProducerConfig`` of ``pylog.producer``."""

    def __init__(self, backend: Any, config: Any):
        self._backend = backend
        self._batch_size = max(int(config.batch_size), 1)
        self._linger_s = config.linger_ms / 1000.0
        self._max_request_size = int(config.max_request_size)
        self._acks_all = config.acks == -1
        self._compression = config.compression_type
        self._user_partitioner = (
            partitioner.UserPartitioner(config.partitioner) if config.partitioner is not None else None
        )
        self._partition_for_key = (
            _native_partition_for_key
            if _native_partition_for_key is not None and getattr(backend, "engine", None) != "reference"
            else partitioner.partition_for_key
        )
        self._sticky = partitioner.StickyPartitions(random.Random(getattr(config, "sticky_seed", None)))
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._topics: dict[str, _Topic] = {}
        self._lingering: collections.deque[_Batch] = collections.deque()
        self._incomplete: set[ProduceResult] = set()
        self._to_sync: list[tuple[_Batch, Any, int, list[tuple[int, int, int, int]], dict | None]] = []
        #: partitions with a batch being written (under ``_lock``): the background thread leaves
        #: their lingering batches alone until the write ends (see ``_sender_round``)
        self._writing: set[TopicPartition] = set()
        #: the background thread skipped a writing partition: the write's end must wake it
        self._unmute_wanted = False
        self._closed = False
        self._stopping = False
        #: the group commits of the logs this producer synced (acks=all)
        self._synced_commits: weakref.WeakSet[group_commit.GroupCommit] = weakref.WeakSet()
        #: the Rust accumulator (native engine, Kafka's partitioner): then ``native_send`` is the
        #: per-record path and the Python ``send`` below serves only the reference engine
        self._native = None
        if (
            NativeAccumulator is not None
            and getattr(backend, "engine", None) != "reference"
            and self._user_partitioner is None
            and not getattr(config, "python_core", False)
        ):
            seed = getattr(config, "sticky_seed", None)
            self._native = NativeAccumulator(
                self._batch_size,
                self._max_request_size,
                self._linger_s,
                random.getrandbits(64) if seed is None else seed & (2**64 - 1),
                self._native_topic,
                self._native_result,
                self._native_wake,
                self._native_full,
                self._native_too_large,
                time.monotonic,
                record_outcome,
                run_callback,
                UnknownTopicOrPartitionError,
                ClientClosedError,
            )
        self.native_send = self._native.send if self._native is not None else None
        self._sender = threading.Thread(target=_sender_main, args=(weakref.ref(self),), daemon=True)
        self._sender.name = "pylog-producer"
        self._sender.start()
        atexit.register(_close_at_exit, weakref.ref(self))
        disown_in_forked_child(self)

    # --- sending ---------------------------------------------------------------------------------

    def send(
        self,
        topic: str,
        value: Any,
        key: Any,
        headers: Any,
        partition: int | None,
        timestamp_ms: int | None,
        *,
        key_object: Any = None,
        value_object: Any = None,
    ) -> FutureRecordMetadata:
        """Accumulate one record (bytes-like or None key/value, checked by the caller)."""
        if self._closed:
            raise ClientClosedError("the producer is closed")
        topic_state = self._topics.get(topic) or self._topic(topic)
        count = topic_state.count
        key_size = -1 if key is None else len(key)
        value_size = -1 if value is None else len(value)
        header_size = -1
        size = RECORD_OVERHEAD + (key_size if key_size > 0 else 0) + (value_size if value_size > 0 else 0)
        if headers:
            header_size = sum(len(k.encode()) + (len(v) if v is not None else 0) for k, v in headers)
            size += header_size + 2 * len(headers)
        if partition is None:
            if self._user_partitioner is not None:
                partition = self._user_partitioner(
                    topic,
                    key if key_object is None else key_object,
                    key,
                    value if value_object is None else value_object,
                    value,
                    count,
                )
            elif key is None:
                partition = None  # sticky: chosen under the lock
            else:
                partition = self._partition_for_key(key, count)
        else:
            partition = partitioner.check_explicit_partition(topic, partition, count)
        if size + BATCH_OVERHEAD > self._max_request_size:
            tp = TopicPartition(topic, -1 if partition is None else partition)
            return failed_record_future(
                tp,
                RecordTooLargeError(
                    f"a record of {size + BATCH_OVERHEAD} bytes for {topic!r} is larger than "
                    f"max_request_size = {self._max_request_size}"
                ),
                key_size,
                value_size,
            )
        full: list[_Batch] = []
        with self._lock:
            if self._closed:
                raise ClientClosedError("the producer is closed")
            sticky = partition is None
            if sticky:
                partition = self._sticky.partition(topic, count)
            part = topic_state.parts[partition]
            batch = self._open_batch_with_room(part, size, topic_state, full)
            if batch is None and sticky and full:
                # why: the record that would open a new batch goes to the next sticky
                # partition instead (KafkaProducer's abortOnNewBatch, KIP-480)
                partition = self._sticky.partition(topic, count)
                part = topic_state.parts[partition]
                batch = self._open_batch_with_room(part, size, topic_state, full)
            if batch is None:
                batch = part.open = _Batch(part, time.monotonic() + self._linger_s)
                batch.result.driver = functools.partial(self._drive, batch)
                self._incomplete.add(batch.result)
                if not self._lingering:
                    self._wake.notify()
                self._lingering.append(batch)
            index = len(batch.values)
            batch.values.append(value)
            if key is not None or batch.keys is not None:
                if batch.keys is None:
                    batch.keys = [None] * index
                batch.keys.append(key)
            if headers or batch.headers is not None:
                if batch.headers is None:
                    batch.headers = [()] * index
                batch.headers.append(headers or ())
            if timestamp_ms is not None or batch.timestamps is not None:
                if batch.timestamps is None:
                    batch.timestamps = [None] * index
                batch.timestamps.append(timestamp_ms)
            batch.size += size
            if batch.size >= self._batch_size:
                self._close_batch(batch, topic_state)
                full.append(batch)
            future = FutureRecordMetadata(
                batch.result, index, timestamp_ms, key_size, value_size, header_size
            )
        for closed in full:
            self._write_queued(closed.part, sync_here=False)
        return future

    def send_batch(
        self,
        topic: str,
        values: Sequence[Any],
        keys: Sequence[Any] | None,
        partition: int | None,
        headers: Sequence[Any] | None,
        timestamps_ms: Sequence[int] | None,
    ) -> FutureBatchMetadata:
        """Hand ``values`` (and the other columns, unchanged) to the engine as one batch per
        partition: to ``partition``, else to the sticky partition when there are no keys, else
        split by key (``toPositive(murmur2(key)) % partitions``, one batch per partition)."""
        if self._closed:
            raise ClientClosedError("the producer is closed")
        topic_state = self._topics.get(topic) or self._topic(topic)
        count = len(values)
        if partition is not None:
            partition = partitioner.check_explicit_partition(topic, partition, topic_state.count)
        groups: list[tuple[int | None, Sequence[Any], Any, Any, Any]]
        if partition is not None or keys is None or topic_state.count == 1:
            groups = [
                (
                    partition if partition is not None else (0 if keys else None),
                    values,
                    keys,
                    headers,
                    timestamps_ms,
                )
            ]
        else:
            by_partition: dict[int, list[int]] = {}
            for i, key in enumerate(keys):
                p = self._partition_for_key(key, topic_state.count) if key is not None else -1
                by_partition.setdefault(p, []).append(i)
            groups = []
            for p, idx in by_partition.items():
                groups.append(
                    (
                        None if p == -1 else p,
                        [values[i] for i in idx],
                        [keys[i] for i in idx],
                        None if headers is None else [headers[i] for i in idx],
                        None if timestamps_ms is None else [timestamps_ms[i] for i in idx],
                    )
                )
        results = []
        parts = []
        with self._lock:
            if self._closed:
                raise ClientClosedError("the producer is closed")
            for p, vals, ks, hs, ts in groups:
                if p is None:
                    if self._native is not None:
                        p = self._native.sticky_partition(topic)
                    else:
                        p = self._sticky.partition(topic, topic_state.count)
                part = topic_state.parts[p]
                if part.open is not None:
                    self._close_batch(part.open, topic_state)
                if self._native is not None and self._native.close_partition(topic, p):
                    self._take_native_closed()
                batch = _Batch(part, 0.0)
                batch.values = vals  # type: ignore[assignment]  # why: handed to the engine as given
                batch.keys, batch.headers, batch.timestamps = ks, hs, ts  # type: ignore[assignment]
                batch.closed = True
                part.queue.append(batch)
                self._incomplete.add(batch.result)
                if self._native is not None:
                    self._native.batch_completed(topic, p)
                else:
                    self._sticky.batch_completed(topic, p, topic_state.count)
                results.append((batch.result, len(vals)))
                parts.append(part)
        for part in parts:
            self._write_queued(part, sync_here=False)
        if len(results) == 1:
            return FutureBatchMetadata(results[0][0], count)
        return _combined_batch_future(topic, results)

    # --- the Rust accumulator's hooks (called by NativeAccumulator, never under its lock) ------

    def _native_topic(self, topic: str) -> list[TopicPartition]:
        return [part.tp for part in (self._topics.get(topic) or self._topic(topic)).parts]

    def _native_result(self) -> ProduceResult:
        result = ProduceResult(_UNASSIGNED)
        result.driver = functools.partial(self._drive_native, result)
        return result

    def _native_wake(self) -> None:
        with self._lock:
            self._wake.notify()

    def _native_full(self) -> None:
        with self._lock:
            parts = self._take_native_closed()
        for part in parts:
            self._write_queued(part, sync_here=False)

    def _native_too_large(self, topic: str, partition: int, key_size: int, value_size: int, size: int) -> Any:
        return failed_record_future(
            TopicPartition(topic, partition),
            RecordTooLargeError(
                f"a record of {size} bytes for {topic!r} is larger than max_request_size = {self._max_request_size}"
            ),
            key_size,
            value_size,
        )

    def _take_native_closed(self) -> list[_Partition]:
        """Under the lock: queue the batches the Rust accumulator closed, in its order."""
        if self._native is None:
            return []
        parts: list[_Partition] = []
        for topic, partition, values, keys, headers, timestamps, result in self._native.take_closed():
            topic_state = self._topics.get(topic)
            if topic_state is None or partition >= topic_state.count:  # forgotten meanwhile
                topic_state = self._topics.setdefault(topic, _Topic(topic, partition + 1))
            part = topic_state.parts[partition]
            result.tp = part.tp
            batch = _Batch(part, 0.0, result)
            batch.values, batch.keys, batch.headers, batch.timestamps = values, keys, headers, timestamps
            batch.closed = True
            part.queue.append(batch)
            self._incomplete.add(result)
            if part not in parts:
                parts.append(part)
        return parts

    def _drive_native(self, result: ProduceResult) -> None:
        native = self._native
        if native is None:  # closed
            return
        self._await_running_syncs()
        with self._lock:
            if native.close_if_due(result, time.monotonic()):
                self._take_native_closed()
        self._drive_result(result)

    def partitions_for(self, topic: str) -> set[int]:
        return set(range((self._topics.get(topic) or self._topic(topic)).count))

    def _topic(self, topic: str) -> _Topic:
        count = self._backend.partitions_for(topic, create=True)
        with self._lock:
            state = self._topics.get(topic)
            if state is None or state.count != count:
                state = self._topics[topic] = _Topic(topic, count)
            return state

    def _open_batch_with_room(
        self, part: Any, size: int, topic_state: Any, full: list[_Batch]
    ) -> _Batch | None:
        """The partition's open batch if ``size`` more bytes fit (or it is empty); else close it
        into ``full`` and return None. Lock held."""
        batch = part.open
        if batch is not None and batch.size + size > self._batch_size and batch.values:
            self._close_batch(batch, topic_state)
            full.append(batch)
            return None
        return batch

    def _close_batch(self, batch: _Batch, topic_state: _Topic) -> None:
        """Under the lock: the batch leaves the accumulator for its partition's write queue."""
        batch.closed = True
        part = batch.part
        if part.open is batch:
            part.open = None
        part.queue.append(batch)
        tp = part.tp
        self._sticky.batch_completed(tp.topic, tp.partition, topic_state.count)
        if self._user_partitioner is not None:
            self._user_partitioner.batch_completed(tp.topic, tp.partition, topic_state.count)

    # --- writing ---------------------------------------------------------------------------------

    def _write_queued(self, part: _Partition, *, sync_here: bool) -> None:
        """Write ``part``'s queued batches in order (whoever holds its write lock writes them).
        With ``sync_here`` (acks=all) the group-commit wait happens after the write lock is
        released, so other threads append to the partition while this one waits for the fsync."""
        to_sync: list[tuple[_Batch, Any, int, list, dict | None]] = []
        with part.write_lock:
            try:
                while True:
                    with self._lock:
                        if not part.queue:
                            self._end_writing(part)
                            break
                        batch = part.queue.popleft()
                        self._writing.add(part.tp)
                    item = self._write(batch)
                    if item is not None:
                        if sync_here:
                            to_sync.append(item)
                        else:
                            with self._lock:
                                self._to_sync.append(item)
                                self._wake.notify()
            except BaseException:
                with self._lock:
                    self._end_writing(part)
                raise
        if to_sync:
            self._sync_and_finish(to_sync)

    def _end_writing(self, part: _Partition) -> None:
        """Under the lock: ``part`` has no write in progress any more (wake the background thread
        if it left a lingering batch of ``part`` alone meanwhile)."""
        self._writing.discard(part.tp)
        if self._unmute_wanted:
            self._unmute_wanted = False
            self._wake.notify()

    def _write(self, batch: _Batch) -> tuple[_Batch, Any, int, list, dict | None] | None:
        """Append the batch; complete it (acks 0/1, failures), or return what acks=all must sync."""
        tp = batch.part.tp
        try:
            log = self._backend.partition_log(tp)
            segments, errors = self._append(log, batch, 0, len(batch.values))
        except BaseException as error:  # why: every failure belongs to the batch's futures
            self._finish_failed(batch, self._typed_error(tp, error))
            return None
        if not self._acks_all or not segments:
            self._finish(batch, segments, errors)
            return None
        return (batch, log, _segments_end(segments, batch), segments, errors)

    def _append(
        self, log: Any, batch: _Batch, start: int, end: int
    ) -> tuple[list[tuple[int, int, int, int]], dict[int, BaseException]]:
        """Append records ``[start, end)`` of ``batch`` as one engine batch, split in halves while
        the log refuses it as too large; returns its segments and the records that failed alone."""
        whole = start == 0 and end == len(batch.values)

        def column(col: Any) -> Any:
            return None if col is None else (col if whole else col[start:end])

        values = column(batch.values)
        timestamps = column(batch.timestamps)
        fill_ts = -1
        if timestamps is not None and not isinstance(timestamps, np.ndarray) and None in timestamps:
            fill_ts = time.time_ns() // 1_000_000
            timestamps = [fill_ts if t is None else t for t in timestamps]
        try:
            base = log.append(
                values,
                keys=column(batch.keys),
                headers=column(batch.headers),
                timestamps_ms=timestamps,
                compression=self._codec(log),
            )
        except RecordTooLargeError as error:
            if end - start == 1:
                return [], {start: error}
            middle = (start + end) // 2
            first, first_errors = self._append(log, batch, start, middle)
            second, second_errors = self._append(log, batch, middle, end)
            first_errors.update(second_errors)
            return first + second, first_errors
        append_ts = -1
        if log.config.log_append_time:
            append_ts = self._engine_timestamp(log, base)[0]
        elif timestamps is None:
            # why: read back only if someone asks (a 61-byte header read is a whole-batch read)
            fill_ts = UNKNOWN_TIMESTAMP
            if batch.result.resolver is None:
                batch.result.resolver = functools.partial(_stamped_time, log)
        return [(start, base, fill_ts, append_ts)], {}

    def _codec(self, log: Any) -> str | None:
        """Kafka's rule: a topic with ``compression.type=producer`` keeps the producer's codec, any
        other topic setting wins (the broker recompresses)."""
        if self._compression is None or log.config.compression_type != "producer":
            return None
        return self._compression

    @staticmethod
    def _engine_timestamp(log: Any, base_offset: int) -> tuple[int, bool]:
        """The timestamp the engine stamped: baseTimestamp of a batch with no record timestamps,
        maxTimestamp on a LogAppendTime topic (both read from the written batch's header)."""
        header = log.read(base_offset, BATCH_OVERHEAD)
        base_ts, max_ts = _HEADER_TIMESTAMPS.unpack_from(header, _TIMESTAMP_POSITION)
        attributes = header[21] << 8 | header[22]
        if attributes & _LOG_APPEND_TIME_ATTRIBUTE:
            return max_ts, True
        return base_ts, False

    def _typed_error(self, tp: TopicPartition, error: BaseException) -> BaseException:
        if isinstance(error, UnknownTopicOrPartitionError):
            self._forget_topic(tp.topic)
            return error
        if isinstance(error, OSError | LogClosedError):
            check = getattr(self._backend, "check_partition", None)
            if check is not None:
                try:
                    check(tp)
                except UnknownTopicOrPartitionError as unknown:
                    unknown.__cause__ = error
                    self._forget_topic(tp.topic)
                    return unknown
                except Exception:
                    pass
        return error

    def _forget_topic(self, topic: str) -> None:
        if self._native is not None:
            self._native.forget_topic(topic)
        with self._lock:
            self._topics.pop(topic, None)
            self._take_native_closed()

    def _finish(self, batch: _Batch, segments: list, errors: dict | None) -> None:
        batch.result.complete(segments, errors)
        with self._lock:
            self._incomplete.discard(batch.result)

    def _finish_failed(self, batch: _Batch, error: BaseException) -> None:
        batch.result.fail(error)
        with self._lock:
            self._incomplete.discard(batch.result)

    def _sync_and_finish(self, items: list[tuple[_Batch, Any, int, list, dict | None]]) -> None:
        """acks=all: one group-commit wait per log (its highest end offset), then complete."""
        ends: dict[int, tuple[Any, int]] = {}
        for _batch, log, end, _segments, _errors in items:
            known = ends.get(id(log))
            if known is None or end > known[1]:
                ends[id(log)] = (log, end)
        failures: dict[int, BaseException] = {}
        for key, (log, end) in ends.items():
            try:
                commit = group_commit.for_log(log)
                self._synced_commits.add(commit)
                commit.wait_durable(end)
            except BaseException as error:
                failures[key] = error
        for batch, log, _end, segments, errors in items:
            failure = failures.get(id(log))
            if failure is not None:
                self._finish_failed(batch, self._typed_error(batch.part.tp, failure))
            else:
                self._finish(batch, segments, errors)

    def _drive(self, batch: _Batch) -> None:
        """A thread waits for ``batch``'s result: if the batch is due (its linger passed) and not
        written yet, write it here (and, for acks=all, sync it through the group commit here),
        rather than waiting for the background thread. With many waiting threads this is what
        shares one fsync among them."""
        part = batch.part
        if not batch.closed:
            self._await_running_syncs()
        with self._lock:
            if not batch.closed:
                if batch.deadline > time.monotonic():
                    return
                topic_state = self._topics.get(part.tp.topic)
                if topic_state is None:
                    return
                self._close_batch(batch, topic_state)
        self._drive_result(batch.result)

    def _await_running_syncs(self) -> None:
        """acks=all: let a running fsync finish before a waiter closes its due batch (see
        ``GroupCommit.wait_idle``)."""
        if self._acks_all:
            for commit in list(self._synced_commits):
                commit.wait_idle()

    def _drive_result(self, result: ProduceResult) -> None:
        """The closed batch of ``result``: write it here if queued, or sync it here if it waits
        for the background thread's group commit."""
        part = None
        item = None
        with self._lock:
            for topic_state in self._topics.values():
                for candidate in topic_state.parts:
                    if any(b.result is result for b in candidate.queue):
                        part = candidate
                        break
                if part is not None:
                    break
            if part is None:
                for i, waiting in enumerate(self._to_sync):
                    if waiting[0].result is result:
                        item = self._to_sync.pop(i)
                        break
        if part is not None:
            self._write_queued(part, sync_here=True)
        elif item is not None:
            self._sync_and_finish([item])

    # --- flush, close, background ----------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Write every accumulated batch now and wait until every record sent before the call is
        acknowledged (written; synced for ``acks="all"``) or failed. ``KafkaTimeoutError`` when
        ``timeout`` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            parts = self._close_all_open()
            waiting = list(self._incomplete)
        for part in parts:
            self._write_queued_syncing(part)
        for result in waiting:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not result.done and not result.wait(remaining):
                raise KafkaTimeoutError(f"flush did not complete within {timeout} s")

    def _write_queued_syncing(self, part: _Partition) -> None:
        if not self._acks_all:
            self._write_queued(part, sync_here=False)
            return
        self._write_queued(part, sync_here=True)

    def _close_all_open(self) -> list[_Partition]:
        """Under the lock: close every open batch; the partitions with queued batches."""
        parts = []
        if self._native is not None:
            self._native.close_all()
            self._take_native_closed()
        for topic_state in self._topics.values():
            for part in topic_state.parts:
                if part.open is not None:
                    self._close_batch(part.open, topic_state)
                if part.queue:
                    parts.append(part)
        self._lingering.clear()
        return parts

    def close(self, timeout: float | None = None) -> None:
        """Flush, stop the background thread, refuse further sends. With ``timeout`` (seconds),
        records not acknowledged by then fail with ``KafkaTimeoutError`` (Kafka's close(timeout))."""
        with self._lock:
            if self._closed:
                return
        if self._native is not None:
            self._native.shut()
        with contextlib.suppress(KafkaTimeoutError):
            self.flush(timeout)
        with self._lock:
            self._closed = True
            self._stopping = True
            left = list(self._incomplete)
            self._wake.notify_all()
        for result in left:
            result.fail(KafkaTimeoutError("the producer was closed before the record was written"))
        if threading.current_thread() is not self._sender:
            self._sender.join(timeout)
        # why: the Rust accumulator holds this core's bound methods and the core holds it; the
        # cyclic GC cannot see references held in Rust, so the cycle is broken here
        with self._lock:
            self._native = None
            self.native_send = None

    @property
    def closed(self) -> bool:
        return self._closed

    def _disown_after_fork(self) -> None:
        """In a forked child: forget the parent's records. The parent's sender thread writes
        them; a child that wrote its copy too (on ``flush``, ``close``, ``Log.close`` or at exit)
        would append every pending record twice. Locks are replaced: another thread of the parent
        may have held one at the fork, and it does not exist here to release it."""
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = self._stopping = True
        self._topics = {}
        self._lingering = collections.deque()
        self._incomplete = set()
        self._to_sync = []
        # why not shut(): the Rust accumulator's records are the parent's too; dropping the
        # reference is enough (nothing here calls it again)
        self._native = None
        self.native_send = None

    def _sender_round(self) -> bool:
        """One round of the background thread: write expired batches, sync acks=all batches.
        Sleeps on the condition until there is work; False when the core is stopping."""
        with self._lock:
            while True:
                if self._stopping:
                    return False
                lingering = self._lingering
                while lingering and lingering[0].closed:
                    lingering.popleft()
                now = time.monotonic()
                expired: list[_Partition] = []
                # why muted: a lingering batch of a partition being written (by a sending thread,
                # usually: the batch it opened right after closing a full one) is left alone until
                # that write ends, as Kafka's sender does not drain a partition with a batch in
                # flight (RecordAccumulator.drain, isMuted); taking it at once cut a 1-record batch
                # per full one at linger_ms=0 (each a whole engine append)
                writing = self._writing
                muted: list[_Batch] = []
                while lingering and lingering[0].deadline <= now:
                    batch = lingering.popleft()
                    if batch.closed:
                        continue
                    if batch.part.tp in writing:
                        muted.append(batch)
                        continue
                    self._close_batch(batch, self._topics.get(batch.part.tp.topic) or _Topic("", 0))
                    expired.append(batch.part)
                next_deadline = lingering[0].deadline if lingering else None
                if muted:
                    lingering.extendleft(reversed(muted))
                left_muted = bool(muted)
                if self._native is not None:
                    native_deadline, native_muted = self._native.close_expired(
                        now, [(tp.topic, tp.partition) for tp in writing] if writing else None
                    )
                    left_muted = left_muted or native_muted
                    for part in self._take_native_closed():
                        if part not in expired:
                            expired.append(part)
                    if native_deadline is not None and (
                        next_deadline is None or native_deadline < next_deadline
                    ):
                        next_deadline = native_deadline
                to_sync, self._to_sync = self._to_sync, []
                if expired or to_sync:
                    break
                if next_deadline is None and writing and self._native is not None and self._linger_s > 0:
                    # why: not marked idle while a write is in progress (see close_expired in
                    # native/src/python/producer.rs); a batch opened from now on is due no sooner
                    next_deadline = now + self._linger_s
                if left_muted:
                    # why: a muted partition's write ending must wake this thread (its batch is
                    # due; the deadline below leaves the muted batches out). Only then: a wake
                    # per write, wanted or not, made this thread take the GIL from the sending
                    # thread at every engine call it made (~100 us each time, measured)
                    self._unmute_wanted = True
                self._wake.wait(None if next_deadline is None else max(next_deadline - now, 0.0))
        # why one unit: engine appends and fsyncs, which a fork must not cut in half (pylog.forking)
        with background_work():
            for part in expired:
                self._write_queued(part, sync_here=False)
            if to_sync:
                self._sync_and_finish(to_sync)
        return True


_UNASSIGNED = TopicPartition("", -1)  # a spare result's partition until its batch closes


def _stamped_time(log: Any, base_offset: int) -> int:
    try:
        return ProducerCore._engine_timestamp(log, base_offset)[0]
    except Exception:  # why: the batch is gone (retention, deleted topic): no time known
        return -1


def _segments_end(segments: list[tuple[int, int, int, int]], batch: _Batch) -> int:
    first, base = segments[-1][:2]
    return base + len(batch.values) - first


def _sender_main(core_ref: weakref.ref[ProducerCore]) -> None:
    while True:
        core = core_ref()
        if core is None:
            return
        try:
            if not core._sender_round():
                return
        finally:
            del core


def _close_at_exit(core_ref: weakref.ref[ProducerCore]) -> None:
    core = core_ref()
    if core is not None:
        core.close()


def _combined_batch_future(topic: str, results: list[tuple[ProduceResult, int]]) -> FutureBatchMetadata:
    """One future over several partitions' batches (``send_batch`` split by key)."""
    combined = ProduceResult(TopicPartition(topic, -1))
    pending = [len(results)]
    lock = threading.Lock()
    futures = [FutureBatchMetadata(result, n) for result, n in results]

    def one_done(_: Any) -> None:
        with lock:
            pending[0] -= 1
            if pending[0]:
                return
        errors = [f.exception for f in futures if f.exception is not None]
        if errors:
            combined.fail(errors[0])
            return
        combined.segments = []
        everything = [m for f in futures for m in f.value]
        combined_future._value = (everything, None)
        combined.complete([])

    combined_future = FutureBatchMetadata(combined, 0)
    for f in futures:
        f.add_both(one_done)
    return combined_future
