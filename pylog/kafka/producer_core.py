"""The kafka backend's producer core: ``pylog.Producer`` over one ``confluent_kafka.Producer``.

``backend.producer_core(config)`` makes one per ``pylog.Producer``. librdkafka does what the
embedded core does itself (pylog/embedded/producer_core.py): accumulating per partition, batching
(``batch.size``, ``linger.ms``), compression, retries, and the partitioner (``partitioner=
murmur2_random``: Java's murmur2 of a record's key, BuiltInPartitioner.partitionForKey in
clients/src/main/java/org/apache/kafka/clients/producer/internals/; records without key go to a
sticky partition chosen by librdkafka). This module owns what is left: argument checks, the topic
metadata check (unknown topics are created through ``backend.partitions_for(topic, create=True)``
when the backend allows it, else ``UnknownTopicOrPartitionError`` at once), a user partitioner
(run in Python, its choice passed as the record's partition), and turning librdkafka's delivery
reports into kafka-python futures. Config mapping: pylog/kafka/settings.py ``producer_properties``.

Delivery reports: librdkafka reports each record once, from ``Producer.poll()``, in the thread
that polls. Who polls: a sending thread, once every ``_SERVE_EVERY`` sends (``poll(0)``: the
reports ready); a thread in ``flush``, or in ``send`` on a full queue; and one daemon thread per
core (``pylog-kafka-producer``), but only when no thread sent in the last ``_SENDING_S`` and
none is flushing. Why
not the daemon thread alone: confluent-kafka takes the GIL for every report it delivers and
gives it back after, so a polling thread beside a sending one hands the GIL over twice per
record (measured: half the records/s). A report completes the record's future in the thread
that polled, which then runs the future's callbacks (as kafka-python runs them in its I/O
thread) once ``poll()`` has returned: not inside librdkafka's callback, so that a callback may
send, ``get`` and ``flush``.
The daemon thread is what completes futures nobody waits for when sends stop (within
``_SENDING_S`` + ``_POLL_WAIT_S``).

Futures: ``pylog._native.DeliveryFuture`` (of ``send``; native/src/python/delivery_future.rs) and
``KafkaBatchFuture`` (of ``send_batch``, a ``pylog.future.FutureAPI`` being its own result) have
the kafka-python API of ``pylog.future``. A record's future is librdkafka's delivery callback of
the record, made by the core's ``DeliveryFutures`` factory; it is in Rust because a Python object
per record is one the cyclic GC walks as long as an application keeps it (measured: the
producer's ratio to confluent-kafka direct rose from 0.55 to 0.61 per CPU-s, benchmarks/README.md,
"kafka backend"). Per record, the
only objects are the future and librdkafka's report ``Message`` (not kept); the ``RecordMetadata``
(offset, timestamp: the broker's LogAppendTime on such topics, else the record's CreateTime;
serialized sizes; checksum None) is built when first asked for (``record_outcome``, the one rule).
Waiting threads sleep on one condition per core, notified once per poll round that served
reports.

Errors: a record too large for ``max_request_size`` (librdkafka refuses it at ``produce``) gets a
failed future, as Kafka's producer returns one; the broker's errors (too large for the topic, topic
deleted) and delivery timeouts reach the futures of the records concerned only, mapped by
``pylog.kafka.errors.translate``. A full librdkafka queue makes ``send`` wait, up to
``max_block_ms``, then ``KafkaTimeoutError``. ``flush(timeout)`` raises ``KafkaTimeoutError`` when
records are still undelivered; ``close(timeout)`` flushes within ``timeout``, then purges what is
left (those futures fail with ``KafkaTimeoutError``), stops the thread and returns.

Thread-safety: any number of threads may send and flush (librdkafka's producer is thread-safe);
future callbacks registered concurrently with the delivery run exactly once (``_lock``).

fork(): librdkafka's threads do not exist in a forked child; a core made before the fork is
closed there and its librdkafka handle is never touched again (``_disown_after_fork``).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import confluent_kafka
import numpy as np

from pylog._native import DeliveryFutures
from pylog.embedded import partitioner
from pylog.errors import (
    ClientClosedError,
    KafkaTimeoutError,
    RecordTooLargeError,
    UnknownTopicOrPartitionError,
    UnsupportedError,
)
from pylog.forking import disown_in_forked_child, keep_forever
from pylog.future import BatchMetadata, FutureAPI, failed_record_future, run_callback
from pylog.kafka import errors as kafka_errors
from pylog.kafka import settings
from pylog.producer import _check_bytes, _check_headers, _check_timestamp
from pylog.types import RecordMetadata, TopicPartition

_log = logging.getLogger("pylog.producer")

#: how long one poll of the background thread waits for reports (bounds its reaction to close)
_POLL_WAIT_S = 0.1
#: a sending thread serves the reports that are ready (poll(0)) once every this many sends (a
#: power of two: the check is a mask)
_SERVE_EVERY = 1024
#: the polling thread leaves the reports to the sending threads while one sent in the last this
#: many seconds (see the module docs: why)
_SENDING_S = 0.02
_LOG_APPEND_TIME = confluent_kafka.TIMESTAMP_LOG_APPEND_TIME
_NOT_AVAILABLE = confluent_kafka.TIMESTAMP_NOT_AVAILABLE
_PURGED = frozenset({confluent_kafka.KafkaError._PURGE_QUEUE, confluent_kafka.KafkaError._PURGE_INFLIGHT})
_BYTES_LIKE = (bytes, bytearray, memoryview)


def _delivery_error(err: Any, topic: str) -> BaseException:
    """The ``pylog.errors`` exception of a failed delivery report."""
    if err.code() in _PURGED:
        return KafkaTimeoutError(f"the producer was closed before the record for {topic!r} was delivered")
    return kafka_errors.translate(err, f"send to {topic!r}")


def check_timestamp(timestamp_ms: Any) -> None:
    """``pylog.producer``'s timestamp rule, and one of librdkafka's: its ``produce`` reads a
    timestamp of 0 as "now" (rdkafka.h, ``RD_KAFKA_V_TIMESTAMP``), so a record stamped at the
    epoch would be sent with another time; refused (``UnsupportedError``) instead of restamped."""
    _check_timestamp(timestamp_ms)
    if timestamp_ms == 0:
        raise UnsupportedError(
            "timestamp_ms=0 cannot be sent to Kafka as is: librdkafka reads 0 as 'now' (use 1 or later)"
        )


def _timestamp(msg: Any) -> tuple[int, bool]:
    kind, value = msg.timestamp()
    return (-1 if kind == _NOT_AVAILABLE else value), kind == _LOG_APPEND_TIME


def record_outcome(
    topic: str,
    partition: int,
    offset: int,
    timestamp: int,
    key_size: int,
    value_size: int,
    header_size: int,
    error: Any,
) -> tuple[RecordMetadata | None, BaseException | None]:
    """``(metadata, None)`` or ``(None, typed error)`` of a delivered record: what a
    ``DeliveryFuture`` resolves to (it calls this once, when first asked). ``offset`` is -1 under
    acks=0 (no offset reported); ``error`` librdkafka's ``KafkaError`` of a failed record."""
    if error is not None:
        return None, _delivery_error(error, topic)
    return (
        RecordMetadata(
            topic,
            partition,
            TopicPartition(topic, partition),
            offset if offset >= 0 else -1,
            timestamp,
            None,
            key_size,
            value_size,
            header_size,
        ),
        None,
    )


class KafkaBatchFuture(FutureAPI):
    """The future of one ``send_batch``: a list of ``BatchMetadata``, one per run of consecutive
    offsets of one partition (the API of ``pylog.future.FutureBatchMetadata``). ``_delivered``
    is the one delivery callback of all the batch's records."""

    __slots__ = ("_core", "_left", "_reports", "_stamped", "_topic", "_value", "done")

    def __init__(self, core: KafkaProducerCore, topic: str, count: int, stamped: bool):
        self._value: Any = None
        self.done = False
        self._core = core
        self._topic = topic
        #: the records came with timestamps (then a run's ``timestamp`` is -1 unless LogAppendTime)
        self._stamped = stamped
        self._left = count
        self._reports: list[tuple[Any, int, int, int, bool]] = []

    def _delivered(self, err: Any, msg: Any) -> None:
        # why no lock: reports are served by poll() calls, which run callbacks under the GIL, and
        # list.append and the decrement below happen in one callback; only one poll serves a report
        if err is None:
            timestamp, log_append = _timestamp(msg)
            self._reports.append((None, msg.partition(), msg.offset(), timestamp, log_append))
        else:
            self._reports.append((err, -1, -1, -1, False))
            self._core._failed(err, msg)
        self._settle(1)

    @property
    def _result(self) -> KafkaBatchFuture:  # type: ignore[override]
        return self

    def _outcome(self) -> tuple[Any, BaseException | None]:
        if self._value is None:
            self._value = self._compute()
        return self._value

    def _settle(self, count: int) -> None:
        self._left -= count
        if self._left <= 0:
            self.done = True
            if self._core._watched:
                self._core._ready.append(self)

    def _fail_local(self, error: BaseException, count: int) -> None:
        """``count`` records that never reached librdkafka (refused by ``produce``)."""
        self._reports.extend([(error, -1, -1, -1, False)] * count)
        self._settle(count)

    def _compute(self) -> tuple[Any, BaseException | None]:
        for err, *_ in self._reports:
            if err is not None:
                return None, err if isinstance(err, BaseException) else _delivery_error(err, self._topic)
        runs: list[BatchMetadata] = []
        # why sorted: librdkafka reports a partition's records in offset order, but partitions
        # interleave; one run per partition and stretch of consecutive offsets
        for _, partition, offset, timestamp, log_append in sorted(self._reports, key=lambda r: (r[1], r[2])):
            last = runs[-1] if runs else None
            if last is not None and last.partition == partition and last.base_offset + last.count == offset:
                runs[-1] = last._replace(count=last.count + 1)
            else:
                # why the first record's time: records without timestamp_ms got the time librdkafka
                # took them (the embedded run's time is its append's); LogAppendTime overrides
                run_time = timestamp if log_append or not self._stamped else -1
                runs.append(BatchMetadata(self._topic, partition, offset, 1, run_time))
        return runs, None

    def wait(self, timeout: float | None) -> bool:
        return self._core._wait(self, timeout)

    def subscribe(self, owner: Any, on_success: Any, on_error: Any) -> bool:
        return self._core._subscribe(self, owner, on_success, on_error)


class KafkaProducerCore:
    """See the module docs. ``config`` is the validated ``pylog.producer.ProducerConfig``."""

    def __init__(self, backend: Any, config: Any):
        self._backend = backend
        properties = dict(backend.properties)
        properties.update(settings.producer_properties(config))
        settings.check_bootstrap(config.transport_settings, backend.path)
        self._max_block_s = settings.producer_block_ms(config) / 1000.0
        self._max_request_size = config.max_request_size
        self._user_partitioner = (
            partitioner.UserPartitioner(config.partitioner) if config.partitioner is not None else None
        )
        try:
            self._producer = confluent_kafka.Producer(properties)
        except confluent_kafka.KafkaException as error:
            raise kafka_errors.translate(error, "make a producer") from error
        self._produce = self._producer.produce
        self._poll = self._producer.poll
        #: partition counts of the topics sent to (refreshed when an explicit partition is beyond)
        self._topics: dict[str, int] = {}
        #: the topics ``send``'s fast path may take: known ones, while open, without a user
        #: partitioner (emptied by close, so a closed core's sends take the checked path)
        self._fast_topics: dict[str, int] = {} if self._user_partitioner is not None else self._topics
        #: makes this core's record futures (``DeliveryFuture``: GC-untracked, see above)
        self._new_future = DeliveryFutures(self, record_outcome, run_callback)
        #: futures with callbacks not run yet, and their callbacks (under ``_lock``)
        self._watched: dict[Any, list[Any]] = {}
        #: done futures whose callbacks wait to run: not inside librdkafka's delivery callback
        #: (a callback may flush, and librdkafka's flush counts the report being served as
        #: undelivered), but by the thread that served the report, after poll() returned
        self._ready: collections.deque[Any] = collections.deque()
        #: callbacks running now, in all threads (under ``_lock``); ``_depth`` per thread
        self._running = 0
        self._depth = threading.local()
        self._lock = threading.Lock()
        self._reported = threading.Condition(self._lock)
        #: sends so far (a C counter: ``next`` is atomic), and when a sending thread last served
        self._sends = itertools.count(1)
        self._last_serve = 0.0
        #: threads in flush (they serve the reports themselves); a hint, so no lock: a lost
        #: update between two flushing threads only makes the polling thread wait or not
        self._flushing = 0
        self._closed = False
        self._stopping = False
        self._poller = threading.Thread(target=_poll_main, args=(weakref.ref(self),), daemon=True)
        self._poller.name = "pylog-kafka-producer"
        self._poller.start()
        # why: pylog.Producer replaces its own send with ``native_send`` when there are no
        # serializers; this core's send checks the arguments itself (same errors), so records
        # pass one Python frame here instead of two
        self.native_send = self.send
        atexit.register(_close_at_exit, weakref.ref(self), backend.timeout_ms / 1000.0)
        disown_in_forked_child(self)

    # --- sending ---------------------------------------------------------------------------------

    def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        headers: Any = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        *,
        key_object: Any = None,
        value_object: Any = None,
    ) -> Any:
        """Hand one record to librdkafka; a future of its ``RecordMetadata``."""
        if (
            headers is None
            and partition is None
            and timestamp_ms is None
            and type(value) is bytes
            and (key is None or type(key) is bytes)
            and topic in self._fast_topics  # why no str check: only str keys are in it
        ):
            # why this path: the common record (bytes, no headers/partition/timestamp, a known
            # topic, librdkafka's partitioner) needs no check beyond these and no object but its
            # future (a DeliveryFuture, see the module docs)
            future = self._new_future()
            try:
                self._produce(topic, value, key, -1, future)
            except (BufferError, confluent_kafka.KafkaException):
                return self._produce_refused(future, (topic, value, key, -1, future))
            if not next(self._sends) & (_SERVE_EVERY - 1):
                self._serve_while_sending()
            return future
        return self._send_checked(
            topic, value, key, headers, partition, timestamp_ms, key_object, value_object
        )

    def _send_checked(
        self,
        topic: str,
        value: Any,
        key: Any,
        headers: Any,
        partition: Any,
        timestamp_ms: Any,
        key_object: Any,
        value_object: Any,
    ) -> Any:
        """``send`` of any other record: every argument checked as ``pylog.Producer.send`` does."""
        if self._closed:
            raise ClientClosedError("the producer is closed")
        if type(topic) is not str:
            raise TypeError(f"topic must be a str, not {type(topic).__name__}")
        count = self._topics.get(topic)
        if count is None:
            count = self._topic(topic)
        if value is not None and type(value) is not bytes:
            value = bytes(_check_bytes("value", value))  # why: librdkafka takes read-only buffers
        if key is not None and type(key) is not bytes:
            key = bytes(_check_bytes("key", key))
        if headers is not None:
            headers = _check_headers(headers)
            if headers:
                future = self._new_future.with_headers(
                    sum(len(k.encode()) + (len(v) if v is not None else 0) for k, v in headers)
                )
                headers = [(k, v if v is None or type(v) is bytes else bytes(v)) for k, v in headers]
            else:
                headers = None
                future = self._new_future()
        else:
            future = self._new_future()
        if timestamp_ms is not None:
            check_timestamp(timestamp_ms)
        if partition is not None:
            partition = self._explicit_partition(topic, partition, count)
        elif self._user_partitioner is not None:
            partition = self._user_partitioner(
                topic,
                key if key_object is None else key_object,
                key,
                value if value_object is None else value_object,
                value,
                count,
            )
        else:
            partition = -1  # why: librdkafka's murmur2_random partitioner decides
        # why positional: confluent-kafka's order is (topic, value, key, partition, callback,
        # on_delivery (its alias), timestamp (0: now), headers)
        record = (topic, value, key, partition, future, None, timestamp_ms or 0, headers)
        try:
            self._produce(*record)
        except (BufferError, confluent_kafka.KafkaException):
            return self._produce_refused(future, record)
        if not next(self._sends) & (_SERVE_EVERY - 1):
            self._serve_while_sending()
        return future

    def _serve_while_sending(self) -> None:
        """A sending thread serves the reports that are ready, and tells the polling thread to
        leave them to it for a while."""
        self._last_serve = time.monotonic()
        self._serve(0)

    def _produce_record(self, record: tuple[Any, ...]) -> None:
        """``produce(*record)`` (its positional arguments) where the fast path cannot: a full
        queue makes it serve reports and retry until ``max_block_ms`` (Kafka's producer blocks
        ``send`` as long when its buffer memory is exhausted), then ``KafkaTimeoutError``; a
        partition librdkafka does not know yet (added since its metadata) refreshes its metadata;
        a topic librdkafka holds for missing (it was deleted and made again since) likewise;
        other refusals raise their typed error."""
        deadline = time.monotonic() + self._max_block_s
        while True:
            try:
                self._produce(*record)
                return
            except BufferError:
                if time.monotonic() >= deadline:
                    raise KafkaTimeoutError(
                        f"librdkafka's queue stayed full for max_block_ms = {self._max_block_s * 1000:.0f}"
                    ) from None
                self._serve(0.01)
            except confluent_kafka.KafkaException as error:
                topic, partition = record[0], record[3]
                if self._closed:
                    raise ClientClosedError("the producer is closed") from None
                if not (
                    kafka_errors.is_code(error, "_UNKNOWN_PARTITION", "_UNKNOWN_TOPIC")
                    and self._learn_partition(topic, partition, deadline)
                ):
                    raise kafka_errors.translate(error, f"send to {topic!r}") from None

    def _learn_partition(self, topic: str, partition: int, deadline: float) -> bool:
        """Ask librdkafka's metadata again until it shows ``partition`` of ``topic`` (-1: any),
        which the backend's metadata showed; whether it does before ``deadline``."""
        if topic not in self._topics:  # why: only what the backend knows is worth waiting for
            try:
                self._topic(topic)
            except UnknownTopicOrPartitionError:
                return False
        while time.monotonic() < deadline:
            try:
                metadata = self._producer.list_topics(
                    topic, timeout=max(min(deadline - time.monotonic(), 1.0), 0.01)
                )
            except confluent_kafka.KafkaException:
                continue
            known = metadata.topics.get(topic)
            if known is not None and known.error is None and (partition < 0 or partition in known.partitions):
                return True
            time.sleep(0.05)
        return False

    def _produce_refused(self, future: Any, record: tuple[Any, ...]) -> Any:
        """``produce`` refused ``record`` once: retry it (``_produce_record``); a per-record
        refusal (too large; unknown partition or topic) is a failed future, as Kafka's producer
        returns one; other errors are raised."""
        try:
            self._produce_record(record)
            return future
        except (RecordTooLargeError, UnknownTopicOrPartitionError) as error:
            topic, value, key, partition = record[:4]
            if isinstance(error, UnknownTopicOrPartitionError):
                self._topics.pop(topic, None)
            else:  # librdkafka refused it against message.max.bytes: say which setting
                size = sum(len(x) for x in (key, value) if x is not None)
                error = RecordTooLargeError(
                    f"a record of {size} bytes (key and value) for {topic!r} is larger than "
                    f"max_request_size = {self._max_request_size}: {error}"
                )
            return failed_record_future(
                TopicPartition(topic, partition),
                error,
                -1 if key is None else len(key),
                -1 if value is None else len(value),
            )

    def send_batch(
        self,
        topic: str,
        values: Sequence[Any],
        keys: Sequence[Any] | None,
        partition: int | None,
        headers: Sequence[Any] | None,
        timestamps_ms: Sequence[int] | None,
    ) -> KafkaBatchFuture:
        """Hand whole columns to librdkafka: to ``partition``, else each record by its key
        (murmur2), records without key to librdkafka's sticky partition. Without headers one
        ``produce_batch`` call; with headers or timestamps (which it does not take) one
        ``produce`` per record."""
        if self._closed:
            raise ClientClosedError("the producer is closed")
        count = self._topics.get(topic)
        if count is None:
            count = self._topic(topic)
        if partition is not None:
            partition = self._explicit_partition(topic, partition, count)
        n = len(values)
        future = KafkaBatchFuture(self, topic, n, timestamps_ms is not None)  # one for the batch
        try:
            value_list = _bytes_column("values", values)
            key_list = None if keys is None else _bytes_column("keys", keys)
            stamps = None
            if timestamps_ms is not None:
                stamps = (
                    timestamps_ms.tolist() if isinstance(timestamps_ms, np.ndarray) else list(timestamps_ms)
                )
                for stamp in stamps:
                    if stamp is not None:
                        check_timestamp(stamp)
        except (TypeError, ValueError, UnsupportedError) as error:
            # why the future: bad columns fail the batch's future, as the embedded engine's append does
            future._fail_local(error, n)
            return future
        target = -1 if partition is None else partition
        if (headers is None or not any(headers)) and (stamps is None or not any(stamps)):
            # why only then: produce_batch takes neither headers nor timestamps (confluent-kafka 2.16)
            messages: list[dict[str, Any]] = [{"value": v} for v in value_list]
            if key_list is not None:
                for message, k in zip(messages, key_list, strict=True):
                    if k is not None:
                        message["key"] = k
            self._produce_messages(future, topic, messages, target)
        else:
            for i in range(n):
                record_headers = None if headers is None else headers[i]
                if record_headers:
                    record_headers = [
                        (k, v if v is None or type(v) is bytes else bytes(v))
                        for k, v in _check_headers(record_headers)
                    ]
                record = (
                    topic,
                    value_list[i],
                    None if key_list is None else key_list[i],
                    target,
                    future._delivered,
                    None,
                    (stamps[i] or 0) if stamps is not None else 0,
                    record_headers or None,
                )
                try:
                    self._produce_record(record)
                except (KafkaTimeoutError, UnknownTopicOrPartitionError, RecordTooLargeError) as error:
                    future._fail_local(error, 1)
        return future

    def _produce_messages(
        self, future: KafkaBatchFuture, topic: str, messages: list[dict[str, Any]], target: int
    ) -> None:
        """``produce_batch``; records refused for a full queue are retried (bounded by
        ``max_block_ms``), records refused otherwise fail the future."""
        deadline = time.monotonic() + self._max_block_s
        while messages:
            queued = self._producer.produce_batch(
                topic, messages, partition=target, on_delivery=future._delivered
            )
            if queued == len(messages):
                return
            retry: list[dict[str, Any]] = []
            for message in messages:
                error = message.pop("_error", None)
                if error is None:
                    continue
                if kafka_errors.is_code(error, "_QUEUE_FULL"):
                    retry.append(message)
                else:
                    future._fail_local(kafka_errors.translate(error, f"send to {topic!r}"), 1)
            if retry and time.monotonic() >= deadline:
                future._fail_local(
                    KafkaTimeoutError(
                        f"librdkafka's queue stayed full for max_block_ms = {self._max_block_s * 1000:.0f}"
                    ),
                    len(retry),
                )
                return
            if retry:
                self._serve(0.01)
            messages = retry

    # --- metadata --------------------------------------------------------------------------------

    def partitions_for(self, topic: str) -> set[int]:
        """The partition ids of ``topic`` (created when the backend auto-creates topics)."""
        if self._closed:
            raise ClientClosedError("the producer is closed")
        return set(range(self._topic(topic)))

    def _topic(self, topic: str) -> int:
        count = self._backend.partitions_for(topic, create=True)
        self._topics[topic] = count
        return count

    def _failed(self, err: Any, msg: Any) -> None:
        """A record failed: a topic that is gone is looked up again on the next send (so that
        auto-creation creates it again, as on the embedded backend)."""
        if kafka_errors.is_code(err, "UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC", "UNKNOWN_TOPIC_ID"):
            self._topics.pop(msg.topic(), None)

    def _explicit_partition(self, topic: str, partition: Any, count: int) -> int:
        if not isinstance(partition, bool) and isinstance(partition, int) and partition >= count:
            count = self._topic(topic)  # why: partitions may have been added since it was cached
        return partitioner.check_explicit_partition(topic, partition, count)

    # --- delivery reports, waiting, callbacks -------------------------------------------------------

    def _serve(self, timeout: float) -> int:
        """Serve delivery reports (up to ``timeout`` s waiting for one), wake waiters, run the
        callbacks of the futures completed."""
        served = self._poll(timeout)
        if served:
            with self._reported:
                self._reported.notify_all()
        if self._ready:
            self._run_ready()
        return served

    def _run_ready(self) -> None:
        ready = self._ready
        while True:
            try:
                future = ready.popleft()
            except IndexError:
                return
            self._fire(future)

    def _wait(self, future: Any, timeout: float | None) -> bool:
        """Block until ``future`` is done or ``timeout`` seconds passed; whether it is done."""
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        if threading.current_thread() is self._poller or self._stopping:
            # why: in a future's callback (the polling thread) nobody else serves reports
            while not future.done:
                remaining = (
                    _POLL_WAIT_S if deadline is None else min(deadline - time.monotonic(), _POLL_WAIT_S)
                )
                if remaining <= 0:
                    break
                self._serve(remaining)
            return future.done
        with self._reported:
            while not future.done:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._reported.wait(remaining)
        return future.done

    def _subscribe(self, future: Any, owner: Any, on_success: Any, on_error: Any) -> bool:
        """Register callbacks of a future not done yet (False when it is: the caller runs them)."""
        with self._lock:
            if future.done:
                return False
            self._watched.setdefault(future, []).append((owner, on_success, on_error))
        if future.done:  # why: delivered between the check and the registration: run them here
            self._fire(future)
        return True

    def _fire(self, future: Any) -> None:
        """Run a done future's registered callbacks once (whichever thread takes them)."""
        with self._lock:
            callbacks = self._watched.pop(future, ())
            if not callbacks:
                return
            self._running += 1
        depth = self._depth
        depth.value = getattr(depth, "value", 0) + 1
        try:
            for owner, on_success, on_error in callbacks:
                owner._run(on_success, on_error)
        finally:
            depth.value -= 1
            with self._reported:
                self._running -= 1
                self._reported.notify_all()

    def _await_callbacks(self, deadline: float | None, timeout: float | None) -> None:
        """Until the callbacks of delivered records have run (those other threads are running
        now too, except the ones this thread is inside of)."""
        self._run_ready()
        mine = getattr(self._depth, "value", 0)
        with self._reported:
            while self._running > mine or self._ready:
                if self._ready:
                    self._reported.release()
                    try:
                        self._run_ready()
                    finally:
                        self._reported.acquire()
                    continue
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise KafkaTimeoutError(
                        f"flush did not complete within {timeout} s: callbacks still running"
                    )
                self._reported.wait(remaining)

    # --- flush, close --------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every record sent before the call is delivered or failed, and the
        callbacks of their futures have run; ``timeout`` in seconds → ``KafkaTimeoutError``."""
        if self._closed:
            return
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        self._flushing += 1  # why: the polling thread leaves the reports to this one meanwhile
        try:
            left = self._producer.flush(-1 if timeout is None else max(timeout, 0.0))
        finally:
            self._flushing -= 1
        with self._reported:
            self._reported.notify_all()
        if left:
            raise KafkaTimeoutError(f"flush did not complete within {timeout} s: {left} records undelivered")
        self._await_callbacks(deadline, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flush (within ``timeout`` seconds), fail what is left with ``KafkaTimeoutError``, stop
        the polling thread, destroy the librdkafka handle. Idempotent; always returns."""
        with self._lock:
            if self._closed:
                return
        with contextlib.suppress(KafkaTimeoutError):
            self.flush(timeout)
        self._closed = True
        self._stopping = True
        self._fast_topics = {}
        producer = self._producer
        if len(producer):
            # why: records still queued or in flight fail now (their reports say purged)
            producer.purge(in_queue=True, in_flight=True, blocking=False)
            deadline = time.monotonic() + 1.0
            while len(producer) and time.monotonic() < deadline:
                self._serve(0.05)
        if threading.current_thread() is not self._poller and self._poller.is_alive():
            self._poller.join(_POLL_WAIT_S * 10)
        with self._reported:
            self._reported.notify_all()
        self._run_ready()
        if not len(producer):
            producer.close()
        self.native_send = None

    @property
    def closed(self) -> bool:
        return self._closed

    def _poll_round(self) -> bool:
        """One round of the polling thread; False when the core is stopping."""
        if self._stopping:
            return False
        since_send = time.monotonic() - self._last_serve
        if since_send < _SENDING_S or self._flushing:
            time.sleep(_SENDING_S - since_send if since_send < _SENDING_S else _SENDING_S)
            return not self._stopping
        try:
            self._serve(_POLL_WAIT_S)
        except Exception:  # why: the thread must live on; a report callback's error is logged
            _log.exception("serving the kafka producer's delivery reports failed")
        return not self._stopping

    def _disown_after_fork(self) -> None:
        """In a forked child: closed; the librdkafka handle (its threads are the parent's) is
        kept alive but never used, so destroying it cannot hang the child."""
        self._lock = threading.Lock()
        self._reported = threading.Condition(self._lock)
        self._closed = self._stopping = True
        self._fast_topics = {}
        keep_forever(self._producer)
        self.native_send = None


def _bytes_column(name: str, column: Any) -> list[Any]:
    """A column of ``send_batch`` as librdkafka takes it: bytes or None per record (a 2-D
    ``uint8`` numpy array is a column of fixed-width rows)."""
    if isinstance(column, np.ndarray):
        if column.ndim != 2:
            raise TypeError(f"{name}: a numpy column must be 2-D (rows of bytes), not {column.ndim}-D")
        raw = np.ascontiguousarray(column).tobytes()
        width = column.shape[1] * column.itemsize
        return [raw[i : i + width] for i in range(0, len(raw), width)] if width else [b""] * len(column)
    out = list(column)
    for i, item in enumerate(out):
        if item is not None and type(item) is not bytes:
            if not isinstance(item, _BYTES_LIKE):
                raise TypeError(f"{name}[{i}] must be bytes-like or None, not {type(item).__name__}")
            out[i] = bytes(item)
    return out


def _poll_main(core_ref: weakref.ref[KafkaProducerCore]) -> None:
    while True:
        core = core_ref()
        if core is None:
            return
        try:
            if not core._poll_round():
                return
        finally:
            del core


def _close_at_exit(core_ref: weakref.ref[KafkaProducerCore], timeout: float) -> None:
    core = core_ref()
    if core is not None:
        core.close(timeout)
