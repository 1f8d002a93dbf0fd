"""``pylog.mirror(source, dest, topics)``: copy topics between pylog directories and Kafka clusters.

Either side is a pylog log directory, a ``kafka://host:port`` URL or an open ``pylog.Log``, so
the four directions (embedded→Kafka, Kafka→embedded, embedded→embedded, Kafka→Kafka) are one code
path over the public client API: a consumer on the source (``assign`` + ``seek``, no group
membership), ``describe_topic`` / ``create_topic`` for the plan, and one writer per destination
kind: the public producer's ``send_batch`` (the explicit partition, keys, values, headers and
timestamps) for a pylog directory, and for Kafka one ``confluent_kafka.Producer.produce`` per
record with the kafka backend's settings (``_KafkaWriter`` says why).

What a copy keeps: partition number, key (None too), value (None: a tombstone), headers, and the
timestamp (written as the record's CreateTime; a ``LogAppendTime`` source topic's stamped times
become CreateTime on the destination, since carrying ``message.timestamp.type=LogAppendTime`` over
would restamp every copied record, so that setting is reported as not carried). Offsets: a
destination assigns its own (append_raw on the embedded engine rewrites baseOffset and refuses
batches whose offset deltas have holes, docs/partition-log.md, so no path can place a record at
a chosen offset). They equal the source's exactly when the destination partition's next offset is
the source position the copy starts at (an empty destination and a source starting at 0) and the
source has no holes (compaction, ``delete_records``/retention moving the log start, transaction
markers). That is not assumed but measured: every written batch's offsets are compared with the
source's, and ``PartitionResult.offsets_preserved`` / ``renumbered`` say what happened and why.

Missing destination topics are created with the source's partition count and config overrides;
an override the destination refuses (Kafka: ``segment.bytes`` below 1 MiB, keys it does not know;
pylog: Kafka keys it does not have) is dropped and reported in ``MirrorResult.configs_not_carried``
with the destination's own message. An existing destination topic is used as it is (its config
is left alone) if it has at least the source's partition count, else ``MirrorError``.

Progress and resumption: the copy commits, on the SOURCE, consumer group ``group_id``'s offsets
(the next source offset to copy per partition), and it does so only after the destination has
acknowledged every record below it (``producer.flush``). Each commit's metadata records the
destination partition's end offset at that moment, so a run interrupted between a write and its
commit (even by SIGKILL) resumes exactly: records the destination holds beyond that end were
written by the interrupted run, and that many source records are skipped instead of copied again.
This assumes nothing else writes to the destination partitions meanwhile. On Kafka a produce
request in flight at the crash can still land after the restart looked at the end offset (and a
producer retry without idempotence can duplicate), so duplicates remain possible there; an
embedded destination's writes are done when the writer dies, so its resumption is exact. A first
run commits the starting positions before writing anything, so a crash before the first real
commit resumes exactly too.

Snapshot: a run copies each partition up to the source's end offset when it started; records
appended later are the next run's. Count check at the end, per partition: records written == records
read (after the skip), the destination's end offset moved by exactly the records written, and
where offsets were preserved the destination end equals the source position reached. A mismatch
raises ``MirrorCountError`` carrying the result.

Thread-safety: one call is one thread's work; it opens (and closes) its own clients.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import repeat
from operator import length_hint
from typing import Any

import pylog
from pylog.errors import InvalidConfigError, KafkaTimeoutError, PylogError
from pylog.log import KAFKA_SCHEME, Log
from pylog.types import OffsetAndMetadata, TopicPartition

DEFAULT_GROUP_ID = "pylog-mirror"
#: commit (flush the destination, then commit on the source) after this many bytes copied...
DEFAULT_COMMIT_BYTES = 32 * 1024 * 1024
#: ...or this many seconds, whichever comes first
DEFAULT_COMMIT_INTERVAL_S = 5.0
#: how many records one poll of the source may return
POLL_RECORDS = 20_000
#: a partition whose position has not reached its snapshot end although polls came back empty for
#: this long is taken as done (the offsets left hold no records: a compacted-away or
#: transaction-marker tail a consumer's position does not pass)
IDLE_TAIL_S = 5.0
#: what a commit's metadata starts with, so a foreign commit on the same group is recognised
METADATA_PREFIX = "pylog-mirror:"
#: the topic setting that would restamp the copies (see the module docstring)
TIMESTAMP_TYPE_KEY = "message.timestamp.type"

#: the copy's producer settings (kafka-python's names) unless ``producer_config`` says otherwise:
#: full batches of many records (librdkafka's batch.size default, Kafka 4's linger.ms default)
PRODUCER_DEFAULTS = {"linger_ms": 5, "batch_size": 1_000_000}
#: librdkafka's queue of a Kafka writer (its default, 100,000 records, is 10 MB of 100-byte
#: records: the copy would wait for room every few milliseconds)
KAFKA_QUEUE_RECORDS = 1_000_000

Progress = Callable[[int, int], None]


class MirrorError(PylogError):
    """A mirror cannot be done as asked (a destination topic with fewer partitions than the
    source, a source that is not a log directory, a destination that lost records)."""


class MirrorCountError(MirrorError):
    """The final count check failed; ``result`` holds what was copied, ``mismatches`` says where."""

    def __init__(self, message: str, result: MirrorResult, mismatches: list[str]):
        super().__init__(message)
        self.result = result
        self.mismatches = mismatches


@dataclass
class PartitionResult:
    """One topic-partition of a mirror run."""

    topic: str
    partition: int
    #: the source's log start / end offsets when the run began (the snapshot copied)
    source_start: int
    source_end: int
    #: the source offset this run started reading at (the group's committed offset, or the log start)
    first_offset: int
    #: the source position reached: the offset committed for the next run
    next_offset: int
    #: records already at the destination from an interrupted run (read, not written again)
    skipped: int = 0
    records_read: int = 0
    records_written: int = 0
    #: bytes of keys, values and header keys/values written
    bytes: int = 0
    #: the destination's end offset before and after the run
    destination_end_before: int = 0
    destination_end_after: int = 0
    #: every record written this run kept its source offset (None: nothing written)
    offsets_preserved: bool | None = None
    #: why offsets were not preserved (the first record that moved, and the cause)
    renumbered: str | None = None

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class NotCarried:
    """A source topic setting the destination did not take."""

    topic: str
    key: str
    value: Any
    reason: str


@dataclass
class MirrorResult:
    """What ``pylog.mirror`` did."""

    source: str
    destination: str
    group_id: str
    partitions: dict[TopicPartition, PartitionResult] = field(default_factory=dict)
    #: destination topics this run created
    created_topics: list[str] = field(default_factory=list)
    configs_not_carried: list[NotCarried] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def records(self) -> int:
        """Records written this run, all partitions."""
        return sum(p.records_written for p in self.partitions.values())

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.partitions.values())

    @property
    def offsets_preserved(self) -> bool:
        """No partition had to renumber what it wrote."""
        return all(p.offsets_preserved is not False for p in self.partitions.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "group_id": self.group_id,
            "records": self.records,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "created_topics": list(self.created_topics),
            "configs_not_carried": [dict(c.__dict__) for c in self.configs_not_carried],
            "partitions": [p.as_json() for _, p in sorted(self.partitions.items())],
        }


def mirror(
    source: str | os.PathLike[str] | Log,
    dest: str | os.PathLike[str] | Log,
    topics: Iterable[str] | None = None,
    *,
    group_id: str = DEFAULT_GROUP_ID,
    progress: Progress | None = None,
    commit_bytes: int = DEFAULT_COMMIT_BYTES,
    commit_interval_s: float = DEFAULT_COMMIT_INTERVAL_S,
    acks: int | str = "all",
    producer_config: Mapping[str, Any] | None = None,
    consumer_config: Mapping[str, Any] | None = None,
    timeout_s: float = 120.0,
) -> MirrorResult:
    """Copy ``topics`` (default: every topic of the source) from ``source`` to ``dest``.

    ``source`` / ``dest``: a log directory (the source's must exist), a ``kafka://`` URL, or an
    open ``Log`` (left open). Keeps partition, key, value, headers and timestamps, and offsets
    where the destination allows it (the module docstring says when); creates missing destination
    topics with the source's partition count and the config overrides the destination accepts.
    Resumable: progress is committed as consumer group ``group_id`` on the source after the
    destination acknowledged (``acks``, default all). ``progress(copied, total)`` is called as
    records are handed to the destination (``total``: the records left in the snapshot, an upper
    bound when the source has holes). A commit follows every ``commit_bytes`` bytes or
    ``commit_interval_s`` seconds. ``producer_config`` / ``consumer_config`` add kafka-python-named
    settings of the clients. ``timeout_s`` bounds each flush of the destination.

    Returns a ``MirrorResult``; ``MirrorCountError`` if the final count check fails,
    ``MirrorError`` for a destination topic with fewer partitions than its source,
    ``UnknownTopicOrPartitionError`` for a topic the source lacks.
    """
    started = time.monotonic()
    with _opened(source, role="source") as src, _opened(dest, role="destination") as dst:
        if _place(src) == _place(dst):
            raise MirrorError(f"the source and the destination are the same log ({src.path})")
        names = sorted(src.list_topics()) if topics is None else list(dict.fromkeys(topics))
        result = MirrorResult(src.path, dst.path, group_id)
        counts = {name: _prepare_topic(src, dst, name, result) for name in names}
        copier = _Copier(
            src,
            dst,
            counts,
            result,
            group_id=group_id,
            progress=progress,
            commit_bytes=commit_bytes,
            commit_interval_s=commit_interval_s,
            producer_config={**PRODUCER_DEFAULTS, "acks": acks, **(producer_config or {})},
            consumer_config=dict(consumer_config or {}),
            timeout_s=timeout_s,
        )
        copier.run()
        result.seconds = time.monotonic() - started
        _check_counts(dst, result)
    return result


# --- opening the two sides ---------------------------------------------------------------------


class _opened:
    """A ``Log`` for ``where`` (closed on exit unless the caller passed it open)."""

    def __init__(self, where: str | os.PathLike[str] | Log, *, role: str):
        self._owned = not isinstance(where, Log)
        if isinstance(where, Log):
            self.log = where
        elif isinstance(where, str) and where.startswith(KAFKA_SCHEME):
            self.log = pylog.open(where, auto_create_topics=False)
        else:
            path = os.fspath(where)
            from pylog.embedded.catalog import CATALOG_FILE

            if role == "source" and not os.path.isfile(os.path.join(path, CATALOG_FILE)):
                raise MirrorError(f"the source {path} is not a pylog log directory (no {CATALOG_FILE})")
            # why no cleaner: a copy must not start compacting or expiring either side behind
            # the user's back (the processes that own the logs run their own)
            self.log = pylog.open(path, auto_create_topics=False, config={"log.cleaner.enable": False})

    def __enter__(self) -> Log:
        return self.log

    def __exit__(self, *exc: object) -> None:
        if self._owned:
            self.log.close()


def _place(log: Log) -> str:
    """Where a log lives, comparable: a directory's real path, or the URL."""
    return log.path if log.path.startswith(KAFKA_SCHEME) else os.path.realpath(log.path)


# --- the plan: destination topics --------------------------------------------------------------


def _prepare_topic(src: Log, dst: Log, name: str, result: MirrorResult) -> int:
    """The source partition count of ``name``; the destination topic made if missing."""
    description = src.describe_topic(name)
    count = len(description.partitions)
    if name in dst.list_topics():
        have = len(dst.describe_topic(name).partitions)
        if have < count:
            raise MirrorError(
                f"the destination topic {name!r} has {have} partition(s), the source {count}: "
                f"grow it first (create_partitions) or mirror to another name"
            )
        return count
    config = {str(k): v for k, v in description.config.items()}
    if config.get(TIMESTAMP_TYPE_KEY) == "LogAppendTime":
        result.configs_not_carried.append(
            NotCarried(
                name,
                TIMESTAMP_TYPE_KEY,
                "LogAppendTime",
                "the destination would restamp every copied record; they keep their source times",
            )
        )
        del config[TIMESTAMP_TYPE_KEY]
    while True:
        try:
            dst.create_topic(name, count, config)
            break
        except InvalidConfigError as error:
            key = _refused_key(str(error), config)
            if key is None:
                raise
            result.configs_not_carried.append(NotCarried(name, key, config.pop(key), str(error)))
    result.created_topics.append(name)
    return count


def _refused_key(message: str, config: Mapping[str, Any]) -> str | None:
    """The key of ``config`` a destination's refusal names first (pylog says ``unknown config key
    'k'; known keys: ...`` or ``k must be ...``; Kafka ``Invalid value v for configuration k``,
    ``Unknown topic config name: k``), or None when it names none."""
    found: list[tuple[int, str]] = []
    for key in config:
        match = re.search(rf"(?<![\w.]){re.escape(key)}(?![\w.])", message)
        if match:
            found.append((match.start(), key))
    return min(found)[1] if found else None


# --- the copy ----------------------------------------------------------------------------------


@dataclass
class _Partition:
    """The running state of one partition's copy."""

    tp: TopicPartition
    stats: PartitionResult
    end: int  # the snapshot's end offset
    to_skip: int  # records the destination already holds from an interrupted run
    position: int  # the next source offset to copy (what a commit stores)
    dest_next: int  # the destination's end offset once what was sent is acknowledged
    done: bool = False
    committed: tuple[int, int] | None = None  # (position, dest_next) last committed
    #: sent, not yet acknowledged: (source position before, source offsets, future)
    pending: list[tuple[int, list[Any], Any]] = field(default_factory=list)


class _Copier:
    def __init__(
        self,
        src: Log,
        dst: Log,
        counts: dict[str, int],
        result: MirrorResult,
        *,
        group_id: str,
        progress: Progress | None,
        commit_bytes: int,
        commit_interval_s: float,
        producer_config: dict[str, Any],
        consumer_config: dict[str, Any],
        timeout_s: float,
    ):
        self.src, self.dst, self.counts, self.result = src, dst, counts, result
        self.group_id = group_id
        self.progress = progress
        self.commit_bytes = commit_bytes
        self.commit_interval_s = commit_interval_s
        self.producer_config = producer_config
        self.consumer_config = {
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_poll_records": POLL_RECORDS,
            "max_partition_fetch_bytes": 8 * 1024 * 1024,
            **consumer_config,
        }
        self.timeout_s = timeout_s
        self.parts: dict[TopicPartition, _Partition] = {}

    def run(self) -> None:
        tps = [TopicPartition(name, p) for name, count in self.counts.items() for p in range(count)]
        if not tps:
            return
        consumer = self.src.consumer(**self.consumer_config)
        try:
            writer = _writer_for(self.dst, self.producer_config, self.timeout_s)
            try:
                consumer.assign(tps)
                self._plan(consumer, tps)
                self._copy(consumer, writer)
            finally:
                writer.close()
        finally:
            consumer.close(autocommit=False)

    def _plan(self, consumer: Any, tps: list[TopicPartition]) -> None:
        """Per partition: where to start reading, how many records to skip, the starting commit."""
        starts = consumer.beginning_offsets(tps)
        ends = consumer.end_offsets(tps)
        dest_ends = {}
        for name in self.counts:
            for p in self.dst.describe_topic(name).partitions:
                dest_ends[TopicPartition(name, p.partition)] = p.end_offset
        first_commits: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp in tps:
            dest_end = dest_ends[tp]
            committed = consumer.committed(tp, metadata=True)
            mark = _recorded(committed)
            if mark is not None and mark[0] != self.dst.path:
                raise MirrorError(
                    f"group {self.group_id!r} holds the progress of a mirror of {tp.topic} to {mark[0]}, "
                    f"not to {self.dst.path}: pick another group id"
                )
            recorded = None if mark is None else mark[1]
            if committed is None or recorded is None:
                # a first run (or a group another tool committed): start at the log start, or
                # at the foreign commit, and note where the destination stands before writing
                position = starts[tp] if committed is None else committed.offset
                to_skip = 0
            else:
                position = committed.offset
                if dest_end < recorded:
                    raise MirrorError(
                        f"the destination partition {tp.topic}-{tp.partition} ends at {dest_end}, below the "
                        f"{recorded} group {self.group_id!r} recorded: records were deleted there since"
                    )
                to_skip = dest_end - recorded
            position = max(position, starts[tp])
            if recorded is None:
                first_commits[tp] = OffsetAndMetadata(position, _metadata(self.dst.path, dest_end), -1)
            stats = PartitionResult(
                tp.topic,
                tp.partition,
                source_start=starts[tp],
                source_end=ends[tp],
                first_offset=position,
                next_offset=position,
                destination_end_before=dest_end,
                destination_end_after=dest_end,
            )
            self.result.partitions[tp] = stats
            part = _Partition(tp, stats, ends[tp], to_skip, position, dest_end)
            part.done = position >= part.end
            part.committed = (position, dest_end) if recorded is None else (committed.offset, recorded)
            self.parts[tp] = part
            consumer.seek(tp, position)
        if first_commits:
            consumer.commit(first_commits)
        done = [tp for tp, part in self.parts.items() if part.done]
        if done:
            consumer.pause(*done)

    def _copy(self, consumer: Any, writer: _Writer) -> None:
        total = sum(max(0, part.end - part.position - part.to_skip) for part in self.parts.values())
        copied = 0
        uncommitted_bytes = 0
        last_commit = time.monotonic()
        idle_since: float | None = None
        if self.progress is not None:
            self.progress(0, total)
        while not all(part.done for part in self.parts.values()):
            polled = consumer.poll(timeout_ms=200)
            now = time.monotonic()
            for tp, records in polled.items():
                part = self.parts.get(tp)
                if part is None or part.done or not records:
                    continue
                sent, size = self._send(writer, part, records)
                copied += sent
                uncommitted_bytes += size
                if sent and self.progress is not None:
                    self.progress(copied, total)
                if part.done:
                    consumer.pause(tp)
            if polled:
                idle_since = None
            else:
                idle_since = now if idle_since is None else idle_since
                self._finish_idle(consumer, now - idle_since >= IDLE_TAIL_S)
            if uncommitted_bytes >= self.commit_bytes or now - last_commit >= self.commit_interval_s:
                self._commit(consumer, writer)
                uncommitted_bytes, last_commit = 0, time.monotonic()
        self._commit(consumer, writer)

    def _send(self, writer: _Writer, part: _Partition, records: list[Any]) -> tuple[int, int]:
        """Write one polled run of ``part``'s records (after the skip, cut at the snapshot end)."""
        stats = part.stats
        if records[-1].offset >= part.end:
            records = [r for r in records if r.offset < part.end]
            part.done = True
        if not records:
            return 0, 0
        expected = part.position
        part.position = records[-1].offset + 1
        stats.records_read += len(records)
        if part.to_skip:
            skip = min(part.to_skip, len(records))
            part.to_skip -= skip
            stats.skipped += skip
            stats.records_read -= skip
            if skip < len(records):
                expected = records[skip - 1].offset + 1
            records = records[skip:]
        if part.position >= part.end:
            part.done = True
        stats.next_offset = part.position
        if not records:
            return 0, 0
        values = [r.value for r in records]
        keys = [r.key for r in records]
        headers = [r.headers for r in records]
        # why map/filter: C-speed sums (a generator per record costs as much as the copy);
        # filter(None) drops the None keys/values (and empty ones, which add 0 anyway)
        size = sum(map(len, filter(None, values))) + sum(map(len, filter(None, keys)))
        if any(headers):
            size += sum(len(h.encode()) + len(v or b"") for hs in headers for h, v in hs)
        else:
            headers = None
        timestamps = [r.timestamp for r in records]
        handle = writer.send(part.tp, values, keys, headers, timestamps)
        part.pending.append((expected, records, handle))
        stats.bytes += size
        return len(records), size

    def _finish_idle(self, consumer: Any, give_up: bool) -> None:
        """A poll came back empty: a partition whose position passed its snapshot end (holes at
        the tail) is done; with ``give_up`` (every poll empty for ``IDLE_TAIL_S``) so is every
        other one: the offsets left below its end hold no records a consumer returns (a
        compacted-away tail, transaction markers)."""
        for tp, part in self.parts.items():
            if part.done:
                continue
            position = consumer.position(tp)
            if position > part.position:
                part.position = part.stats.next_offset = min(position, part.end)
            if part.position >= part.end or give_up:
                part.done = True
                consumer.pause(tp)

    def _commit(self, consumer: Any, writer: _Writer) -> None:
        """Flush the destination, check every written batch's offsets, then commit the source
        positions with the destination end they correspond to."""
        writer.flush()
        offsets = {}
        for tp, part in self.parts.items():
            for expected, records, handle in part.pending:
                runs = writer.runs(handle) or [(part.dest_next, len(records))]
                self._written(part, expected, records, runs)
            part.pending.clear()
            mark = (part.position, part.dest_next)
            if mark != part.committed:
                offsets[tp] = OffsetAndMetadata(part.position, _metadata(self.dst.path, part.dest_next), -1)
                part.committed = mark
        if offsets:
            consumer.commit(offsets)

    def _written(
        self, part: _Partition, expected: int, records: list[Any], runs: list[tuple[int, int]]
    ) -> None:
        """Account one acknowledged send: its runs of consecutive destination offsets
        ``(base_offset, count)`` against the source offsets of its records (offsets preserved only
        when each run's numbers are the source's; ``expected``: the source position before its
        first record)."""
        stats = part.stats
        i = 0
        for base_offset, count in runs:
            if i:
                expected = records[i - 1].offset + 1
            # why first and last only: source offsets increase, so a run keeps them all exactly
            # when its first and last match
            first, last = records[i].offset, records[i + count - 1].offset
            if stats.offsets_preserved is not False:
                if first == base_offset and last == base_offset + count - 1:
                    stats.offsets_preserved = True
                else:
                    stats.offsets_preserved = False
                    offsets = [r.offset for r in records[i : i + count]]
                    stats.renumbered = _why_renumbered(offsets, expected, base_offset)
            i += count
            stats.records_written += count
            part.dest_next = base_offset + count
        assert i == len(records), (i, len(records))


# --- writing the destination -------------------------------------------------------------------


class _Writer:
    """How the copy writes one destination: ``send`` one partition's columns (returns a handle),
    ``flush`` until everything sent is acknowledged (raising the first failure), ``runs(handle)``
    the ``(base_offset, count)`` runs the destination gave a flushed send, or None when it does
    not say (then they are consecutive from the partition's end: the copy is its only writer,
    which the final count check verifies), ``close``."""

    def send(
        self, tp: TopicPartition, values: list, keys: list, headers: list | None, timestamps: list
    ) -> Any:
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def runs(self, handle: Any) -> list[tuple[int, int]] | None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _ProducerWriter(_Writer):
    """Any destination, through its public producer: ``send_batch`` to the source's partition."""

    def __init__(self, dst: Log, config: dict[str, Any], timeout_s: float):
        self.producer = dst.producer(**config)
        self.timeout_s = timeout_s

    def send(
        self, tp: TopicPartition, values: list, keys: list, headers: list | None, timestamps: list
    ) -> Any:
        return self.producer.send_batch(
            tp.topic, values, keys, partition=tp.partition, headers=headers, timestamps_ms=timestamps
        )

    def flush(self) -> None:
        self.producer.flush(self.timeout_s)

    def runs(self, handle: Any) -> list[tuple[int, int]]:
        return [(batch.base_offset, batch.count) for batch in handle.get(self.timeout_s)]

    def close(self) -> None:
        self.producer.close(self.timeout_s)


class _KafkaWriter(_Writer):
    """A Kafka destination, straight through one ``confluent_kafka.Producer`` made with the kafka
    backend's own property mapping (``pylog.kafka.settings.producer_properties``).

    why not the public producer: its futures cost Python work per record (a delivery callback,
    a report tuple, the runs sorted), which made the copy about three times slower than
    librdkafka's ``produce`` alone (docs/kafka.md, "Moving data": speed). Here a record is one
    ``produce`` call, and librdkafka reports failures only (``delivery.report.only.error``): a
    flush that leaves nothing queued and reported no failure means every record was acknowledged
    (with ``acks``). The destination offsets are then not reported (``runs`` None): the copy
    numbers them from the partition's end, and the final count check verifies that."""

    def __init__(self, dst: Log, config: dict[str, Any], timeout_s: float):
        import confluent_kafka

        from pylog.kafka import errors as kafka_errors
        from pylog.kafka import settings
        from pylog.producer import ProducerConfig

        checked = ProducerConfig.from_kwargs(config)
        backend = dst.backend
        settings.check_bootstrap(checked.transport_settings, backend.path)
        properties = dict(backend.properties)
        properties.update(settings.producer_properties(checked))
        properties.setdefault("queue.buffering.max.messages", KAFKA_QUEUE_RECORDS)
        properties["delivery.report.only.error"] = True
        properties["on_delivery"] = self._failed
        self._translate = kafka_errors.translate
        self._refused = confluent_kafka.KafkaException
        self.failures: list[BaseException] = []
        try:
            self.producer = confluent_kafka.Producer(properties)
        except confluent_kafka.KafkaException as error:
            raise kafka_errors.translate(error, "make the mirror's producer") from error
        self.timeout_s = timeout_s

    def _failed(self, error: Any, message: Any) -> None:
        # runs inside poll/flush, in this thread; only failures are reported
        if error is not None:
            self.failures.append(self._translate(error, f"mirror to {message.topic()}-{message.partition()}"))

    def send(
        self, tp: TopicPartition, values: list, keys: list, headers: list | None, timestamps: list
    ) -> None:
        if 0 in timestamps:  # one scan in C per batch: the per-record loop below stays in C too
            raise MirrorError(
                f"{tp.topic}-{tp.partition} has a record stamped 0 (the epoch), which librdkafka would "
                "send stamped 'now' (it reads 0 as now); not copied rather than restamped"
            )
        produce, topic, partition = self.producer.produce, tp.topic, tp.partition
        start, count = 0, len(values)
        while start < count:
            value_column = iter(values[start:] if start else values)
            # why map and positional arguments: the loop over the records runs in C (``map``
            # drained by a zero-length deque), a third of the per-record cost of a Python loop;
            # confluent's produce(topic, value, key, partition, callback, on_delivery,
            # timestamp, headers) parses positional arguments faster than keywords
            calls = map(
                produce,
                repeat(topic),
                value_column,
                keys[start:] if start else keys,
                repeat(partition),
                repeat(None),
                repeat(None),
                timestamps[start:] if start else timestamps,
                repeat(None) if headers is None else [h or None for h in headers[start:]],
            )
            try:
                deque(calls, maxlen=0)
                break
            except BufferError:
                # librdkafka's queue is full: the record that failed is the last one taken from
                # the value column; serve deliveries until there is room, then go on from it
                start = count - length_hint(value_column) - 1
                self._wait_for_room()
            except self._refused as error:  # refused before queueing (too large for message.max.bytes)
                raise self._translate(error, f"mirror to {topic}-{partition}") from error
        self.producer.poll(0)
        self._raise_failure()

    def _wait_for_room(self) -> None:
        """Serve delivery reports until librdkafka's queue has room (bounded by the timeout)."""
        deadline = time.monotonic() + self.timeout_s
        queued = len(self.producer)
        while len(self.producer) >= queued:
            if time.monotonic() >= deadline:
                raise KafkaTimeoutError(f"librdkafka's queue stayed full for {self.timeout_s} s")
            self.producer.poll(0.05)
            self._raise_failure()

    def flush(self) -> None:
        left = self.producer.flush(self.timeout_s)
        self._raise_failure()
        if left:
            raise KafkaTimeoutError(f"{left} records not acknowledged within {self.timeout_s} s")

    def _raise_failure(self) -> None:
        if self.failures:
            raise self.failures[0]

    def runs(self, handle: Any) -> None:
        return None

    def close(self) -> None:
        # bounded: what is still queued after the timeout is purged (never acknowledged, so never
        # committed: the next run copies it again)
        self.producer.flush(self.timeout_s)
        self.producer.purge()
        self.producer.flush(0)


def _writer_for(dst: Log, config: dict[str, Any], timeout_s: float) -> _Writer:
    """The Kafka writer for a Kafka destination, the public producer's for any other."""
    return (_KafkaWriter if dst.engine == "kafka" else _ProducerWriter)(dst, config, timeout_s)


def _why_renumbered(source_offsets: list[int], expected: int, base_offset: int) -> str:
    """Why a run of records written at ``base_offset..`` did not keep ``source_offsets``; the
    source position before them was ``expected``."""
    for i, offset in enumerate(source_offsets):
        if offset != expected:
            return (
                f"source offsets {expected}..{offset - 1} hold no records (compaction, deleted records or "
                f"transaction markers) and a destination numbers records consecutively: source offset "
                f"{offset} became {base_offset + i}"
            )
        expected += 1
    return (
        f"source offset {source_offsets[0]} was written at destination offset {base_offset}: the "
        f"destination partition's next offset was not the source's (a source whose log start is above "
        f"0 after retention or delete_records, or a destination that was not empty)"
    )


def _metadata(destination: str, dest_end: int) -> str:
    return METADATA_PREFIX + json.dumps({"dest": destination, "dest_end": dest_end}, separators=(",", ":"))


def _recorded(committed: OffsetAndMetadata | None) -> tuple[str, int] | None:
    """(destination, its end offset) a mirror commit recorded, or None (no commit, or not a
    mirror's)."""
    if committed is None or not committed.metadata.startswith(METADATA_PREFIX):
        return None
    try:
        found = json.loads(committed.metadata[len(METADATA_PREFIX) :])
        return str(found["dest"]), int(found["dest_end"])
    except (ValueError, KeyError, TypeError):
        return None


# --- the final check ---------------------------------------------------------------------------


def _check_counts(dst: Log, result: MirrorResult) -> None:
    """Per partition: written == read, the destination end moved by the records written, and with
    offsets preserved the destination end is the source position reached."""
    ends: dict[TopicPartition, int] = {}
    for name in {tp.topic for tp in result.partitions}:
        for p in dst.describe_topic(name).partitions:
            ends[TopicPartition(name, p.partition)] = p.end_offset
    mismatches = []
    for tp, stats in sorted(result.partitions.items()):
        stats.destination_end_after = ends[tp]
        where = f"{tp.topic}-{tp.partition}"
        if stats.records_written != stats.records_read:
            mismatches.append(f"{where}: read {stats.records_read} records, wrote {stats.records_written}")
        moved = stats.destination_end_after - stats.destination_end_before
        if moved != stats.records_written:
            mismatches.append(
                f"{where}: the destination end moved by {moved}, {stats.records_written} records were written"
            )
        if stats.offsets_preserved and stats.destination_end_after != stats.next_offset:
            mismatches.append(
                f"{where}: offsets preserved but the destination ends at {stats.destination_end_after}, "
                f"the source position is {stats.next_offset}"
            )
    if mismatches:
        raise MirrorCountError(
            f"count check failed on {len(mismatches)} partition(s): " + "; ".join(mismatches),
            result,
            mismatches,
        )
