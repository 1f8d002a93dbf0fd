"""The producer's public API on each backend: sending, partitioning, batching, acks, errors.

Records are read back through ``read_back`` (the partition's records via the embedded backend;
on the kafka backend, by confluent-kafka's own consumer), so the assertions are about what a
reader sees. Tests of the embedded producer's internals (its batches in the log files, fsyncs,
failures injected into ``partition_log``) skip the kafka backend with the reason; their kafka
counterparts are in tests/kafka_backend/test_producer_kafka.py.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import synced_offset
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

import pylog
from pylog.embedded import group_commit
from pylog.engine import decode_records
from pylog.errors import (
    ClientClosedError,
    InvalidConfigError,
    KafkaTimeoutError,
    RecordTooLargeError,
    SerializationError,
    UnknownTopicOrPartitionError,
)
from pylog.types import TopicPartition


def read_back(log: pylog.Log, topic: str, partition: int = 0) -> list[pylog.Record]:
    if log.engine == "kafka":
        return _read_back_kafka(log, topic, partition)
    return list(log._backend.partition_log(TopicPartition(topic, partition)).records())


def _read_back_kafka(log: pylog.Log, topic: str, partition: int) -> list[pylog.Record]:
    """The partition's records up to its end, by a plain ``confluent_kafka.Consumer``."""
    import confluent_kafka

    consumer = confluent_kafka.Consumer(
        {**log.backend.properties, "group.id": "producer-read-back", "enable.auto.commit": False}
    )
    try:
        tp = confluent_kafka.TopicPartition(topic, partition, confluent_kafka.OFFSET_BEGINNING)
        low, high = consumer.get_watermark_offsets(tp, timeout=10)
        consumer.assign([tp])
        records: list[pylog.Record] = []
        deadline = time.monotonic() + 15
        while (not records or records[-1].offset < high - 1) and low < high:
            assert time.monotonic() < deadline, (
                f"read {len(records)} records of {topic}-{partition} by the deadline"
            )
            for m in consumer.consume(1000, timeout=0.5):
                assert m.error() is None, m.error()
                kind, stamp = m.timestamp()
                log_append = kind == confluent_kafka.TIMESTAMP_LOG_APPEND_TIME
                records.append(
                    pylog.Record(m.offset(), stamp, int(log_append), m.key(), m.value(), m.headers() or [])
                )
        return records
    finally:
        consumer.close()


#: why batch boundaries are embedded-only
BATCHES = "librdkafka cuts its own batches (batch.size, linger.ms); a consumer does not see them"


def batch_counts(log: pylog.Log, topic: str, partition: int = 0) -> list[int]:
    """Records per engine batch of a partition, in order (from the raw bytes; embedded only)."""
    plog = log._backend.partition_log(TopicPartition(topic, partition))
    counts, offset = [], plog.start_offset
    while offset < plog.end_offset:
        data = bytes(plog.read(offset, 1 << 24))
        position = 0
        while position < len(data):
            length = int.from_bytes(data[position + 8 : position + 12], "big")
            counts.append(int.from_bytes(data[position + 57 : position + 61], "big"))
            offset = int.from_bytes(data[position : position + 8], "big") + counts[-1]
            position += 12 + length
    return counts


def test_send_flush_round_trip(log: pylog.Log) -> None:
    with log.producer(acks=1) as producer:
        futures = [producer.send("t", f"v{i}".encode()) for i in range(500)]
        keyed = producer.send(
            "t", b"value", key=b"key", headers=[("h", b"1"), ("n", None)], timestamp_ms=1234
        )
        tombstone = producer.send("t", None, key=b"gone")
        producer.flush()
        assert all(f.is_done and f.succeeded() and not f.failed() for f in futures)
        metas = [f.get() for f in futures]
    assert [m.offset for m in metas] == list(range(500))
    assert {m.topic_partition for m in metas} == {TopicPartition("t", 0)}
    assert metas[0].serialized_key_size == -1 and metas[0].serialized_value_size == 2
    assert metas[0].serialized_header_size == -1 and metas[0].checksum is None
    meta = keyed.value
    assert (meta.offset, meta.timestamp, meta.serialized_key_size, meta.serialized_header_size) == (
        500,
        1234,
        3,
        3,
    )
    assert tombstone.get().serialized_value_size == -1
    records = read_back(log, "t")
    assert [r.value for r in records[:500]] == [f"v{i}".encode() for i in range(500)]
    # metadata timestamps are the stored ones
    assert [m.timestamp for m in metas] == [r.timestamp for r in records[:500]]
    assert records[500][3:] == (b"key", b"value", [("h", b"1"), ("n", None)])
    assert records[500].timestamp == 1234
    assert (records[501].key, records[501].value) == (b"gone", None)


def test_keyed_records_land_where_kafka_puts_them(log: pylog.Log) -> None:
    log.create_topic("six", partitions=6)
    keys = [f"key-{i}".encode() for i in range(300)]
    with log.producer(acks=1) as producer:
        futures = [producer.send("six", b"v", key=k) for k in keys]
        producer.flush()
    for key, future in zip(keys, futures, strict=True):
        assert future.get().partition == (kafka_python_murmur2(key) & 0x7FFFFFFF) % 6
    per_partition = {p: [r.key for r in read_back(log, "six", p)] for p in range(6)}
    for p, stored in per_partition.items():
        assert stored == [k for k, f in zip(keys, futures, strict=True) if f.get().partition == p]


@pytest.mark.embedded_only(
    "librdkafka's sticky partitioner switches by time (sticky.partitioning.linger.ms), not per batch"
)
def test_null_keys_stick_to_one_partition_per_batch(log: pylog.Log) -> None:
    log.create_topic("spread", partitions=4)
    with log.producer(acks=1, batch_size=1000, linger_ms=60_000) as producer:
        futures = [producer.send("spread", b"x" * 90) for _ in range(400)]
        producer.flush()
    partitions = [f.get().partition for f in futures]
    runs = [partitions[0]]
    for p in partitions[1:]:
        if p != runs[-1]:
            runs.append(p)
    # a switch happens only when a batch completes (about 9 records of ~100 bytes per 1000-byte batch)
    assert len(runs) >= 400 // 10
    assert all(a != b for a, b in itertools.pairwise(runs))
    assert set(partitions) == {0, 1, 2, 3}
    for p in range(4):
        assert all(n <= 10 for n in batch_counts(log, "spread", p))


def test_explicit_partition_and_bad_partitions(log: pylog.Log) -> None:
    log.create_topic("two", partitions=2)
    with log.producer(acks=1) as producer:
        assert producer.send("two", b"a", partition=1).get(timeout=10).partition == 1
        with pytest.raises(UnknownTopicOrPartitionError):
            producer.send("two", b"a", partition=2)
        with pytest.raises(UnknownTopicOrPartitionError):
            producer.send("two", b"a", partition=-1)
        with pytest.raises(TypeError):
            producer.send("two", b"a", partition="1")  # type: ignore[arg-type]
        assert producer.partitions_for("two") == {0, 1}
    assert [r.value for r in read_back(log, "two", 1)] == [b"a"]


def test_auto_creates_topics(log: pylog.Log) -> None:
    with log.producer(acks=1) as producer:
        assert producer.send("fresh", b"a").get(timeout=10).offset == 0
    assert [r.value for r in read_back(log, "fresh")] == [b"a"]


@pytest.mark.parametrize(
    "config",
    [
        {"bogus": 1},
        {"acks": 2},
        {"acks": "some"},
        {"acks": True},
        {"compression_type": "brotli"},
        {"batch_size": -1},
        {"batch_size": 1.5},
        {"linger_ms": -1},
        {"linger_ms": float("nan")},
        {"max_request_size": 0},
        {"key_serializer": 3},
        {"partitioner": 5},
        {"client_id": 5},
        {"transactional_id": "tx"},
        {"enable_idempotence": "yes"},
    ],
)
def test_bad_config_is_refused(log: pylog.Log, config: dict[str, Any]) -> None:
    with pytest.raises(InvalidConfigError):
        log.producer(**config)


def test_kafka_python_transport_keys_are_accepted(log: pylog.Log) -> None:
    # on kafka the brokers are the Log's: a client's bootstrap_servers must name them
    servers = log.backend.path.removeprefix("kafka://") if log.engine == "kafka" else "localhost:9092"
    producer = log.producer(
        bootstrap_servers=servers,
        client_id="app",
        retries=5,
        acks="all",
        request_timeout_ms=1000,
        compression_type="gzip",
        linger_ms=5,
        enable_idempotence=False,
    )
    assert "app" in repr(producer)
    assert producer.config.acks == -1
    producer.close()


def test_serializers_and_their_failures(log: pylog.Log) -> None:
    class KeySerializer:  # kafka-python 3's Serializer shape
        def serialize(self, topic: str, headers: Any, data: Any) -> bytes:
            return f"{topic}:{data}".encode()

    with log.producer(
        acks=1, value_serializer=lambda v: json.dumps(v).encode(), key_serializer=KeySerializer()
    ) as p:
        future = p.send("ser", {"a": 1}, key=7)
        assert future.get(timeout=10).serialized_key_size == len(b"ser:7")
        with pytest.raises(SerializationError, match=r"'ser'.*partition 0") as info:
            p.send("ser", {"bad": object()}, partition=0)
        assert isinstance(info.value.__cause__, TypeError)
    assert [(r.key, r.value) for r in read_back(log, "ser")] == [(b"ser:7", b'{"a": 1}')]
    with (
        log.producer(value_serializer=lambda v: v) as p,
        pytest.raises(SerializationError, match="returned int"),
    ):
        p.send("ser", 5)


def test_wrong_types_are_typed_errors(log: pylog.Log) -> None:
    with log.producer(acks=1) as producer:
        for bad in ("text", 5, {"a": 1}):
            with pytest.raises(TypeError, match="value"):
                producer.send("t", bad)
            with pytest.raises(TypeError, match="key"):
                producer.send("t", b"v", key=bad)
        with pytest.raises(TypeError):
            producer.send(5, b"v")  # type: ignore[arg-type]
        for headers in ({"h": b"1"}, [("h", "text")], [(1, b"v")], [("h",)]):
            with pytest.raises(TypeError, match="header"):
                producer.send("t", b"v", headers=headers)
        with pytest.raises(TypeError):
            producer.send("t", b"v", timestamp_ms="now")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            producer.send("t", b"v", timestamp_ms=-1)
        assert producer.send("t", bytearray(b"ok"), key=memoryview(b"k")).get(timeout=10).offset == 0
    assert [(r.key, r.value) for r in read_back(log, "t")] == [(b"k", b"ok")]


def test_closed_producer_refuses_and_close_flushes(log: pylog.Log) -> None:
    producer = log.producer(acks=1, linger_ms=60_000)
    future = producer.send("t", b"last")
    producer.close()
    assert future.get(timeout=0).offset == 0
    producer.close()  # idempotent
    with pytest.raises(ClientClosedError):
        producer.send("t", b"v")
    with pytest.raises(ClientClosedError):
        producer.send_batch("t", [b"v"])
    assert [r.value for r in read_back(log, "t")] == [b"last"]


@pytest.mark.embedded_only(BATCHES)
def test_batches_are_cut_at_batch_size(log: pylog.Log) -> None:
    with log.producer(acks=1, batch_size=2000, linger_ms=60_000) as producer:
        for _ in range(100):
            producer.send("t", b"x" * 100, partition=0)
        producer.flush()
    counts = batch_counts(log, "t")
    assert sum(counts) == 100
    assert len(counts) > 1 and all(n * 110 <= 2000 + 110 for n in counts)


@pytest.mark.embedded_only(BATCHES)
def test_one_batch_per_flush_when_it_fits(log: pylog.Log) -> None:
    with log.producer(acks=1, linger_ms=60_000) as producer:
        for i in range(50):
            producer.send("t", b"%d" % i)
        producer.flush()
        producer.send("t", b"next")
        producer.flush()
    assert batch_counts(log, "t") == [50, 1]


def test_lingering_batch_is_written_without_flush(log: pylog.Log) -> None:
    with log.producer(acks=1, linger_ms=20) as producer:
        future = producer.send("t", b"lingers")
        done = threading.Event()
        future.add_callback(lambda meta: done.set())
        assert done.wait(10)  # the background thread wrote it
        assert future.get(timeout=0).offset == 0


@pytest.mark.embedded_only("stalls partition_log (kafka: tests/kafka, unreachable cluster)")
def test_get_and_flush_time_out(log: pylog.Log) -> None:
    release = threading.Event()
    backend = log._backend
    real = backend.partition_log

    def stalled(tp: TopicPartition) -> Any:
        release.wait(30)
        return real(tp)

    with log.producer(acks=1, linger_ms=60_000) as producer:
        future = producer.send("t", b"a")
        with pytest.raises(KafkaTimeoutError):
            future.get(timeout=0.01)  # still lingering
        backend.partition_log = stalled  # type: ignore[method-assign]
        try:
            flusher = threading.Thread(target=producer.flush)
            flusher.start()
            with pytest.raises(KafkaTimeoutError):
                producer.flush(timeout=0.05)
            release.set()
            flusher.join(30)
        finally:
            backend.partition_log = real  # type: ignore[method-assign]
        assert future.get(timeout=10).offset == 0


def test_callbacks_and_errbacks(log: pylog.Log) -> None:
    seen: list[Any] = []
    with log.producer(acks=1, linger_ms=60_000) as producer:
        future = producer.send("t", b"a")
        future.add_callback(seen.append).add_errback(lambda e: seen.append(("error", e)))
        future.add_callback(lambda tag, meta: seen.append((tag, meta.offset)), "tagged")
        assert seen == []
        producer.flush()
        assert seen[0].offset == 0 and seen[1] == ("tagged", 0) and len(seen) == 2
        future.add_callback(lambda meta: seen.append("late"))  # already done: runs at once
        assert seen[-1] == "late"
        too_big = producer.send("t", b"x" * 2_000_000)
        errors: list[BaseException] = []
        too_big.add_errback(errors.append)
        assert too_big.failed() and isinstance(errors[0], RecordTooLargeError)
        with pytest.raises(RecordTooLargeError, match="max_request_size"):
            too_big.get()


@pytest.mark.embedded_only(
    "librdkafka does not split a batch the broker refuses as too large (Java's producer does): "
    "all its records fail (docs/kafka.md)"
)
def test_too_large_record_fails_alone(log: pylog.Log) -> None:
    log.create_topic("small", config={"max.message.bytes": 2000})
    with log.producer(acks=1, linger_ms=60_000, batch_size=100_000) as producer:
        before = [producer.send("small", b"a" * 50) for _ in range(60)]  # 60 records > 2000 bytes together
        big = producer.send("small", b"b" * 3000)
        after = [producer.send("small", b"c" * 50) for _ in range(5)]
        producer.flush()
    with pytest.raises(RecordTooLargeError):
        big.get()
    offsets = [f.get().offset for f in before + after]
    assert offsets == list(range(65))
    assert [r.value[:1] for r in read_back(log, "small")] == [b"a"] * 60 + [b"c"] * 5


@pytest.mark.embedded_only("injects a failure into partition_log (kafka: tests/kafka, too-large records)")
def test_failed_batch_fails_only_its_futures(log: pylog.Log) -> None:
    log.create_topic("two", partitions=2)
    backend = log._backend
    real = backend.partition_log

    def partition_1_deleted(tp: TopicPartition) -> Any:
        if tp.partition == 1:
            raise UnknownTopicOrPartitionError(f"unknown topic or partition {tp}")
        return real(tp)

    with log.producer(acks=1, linger_ms=60_000) as producer:
        ok = producer.send("two", b"a", partition=0)
        lost = producer.send("two", b"b", partition=1)
        backend.partition_log = partition_1_deleted  # type: ignore[method-assign]
        try:
            producer.flush()
        finally:
            backend.partition_log = real  # type: ignore[method-assign]
    assert ok.get().offset == 0
    assert isinstance(lost.exception, UnknownTopicOrPartitionError)
    with pytest.raises(UnknownTopicOrPartitionError):
        lost.get()


@pytest.mark.embedded_only("injects a disk error into partition_log; a broker's disk is its own")
def test_disk_error_fails_the_batch_with_it(log: pylog.Log) -> None:
    with log.producer(acks=1, linger_ms=60_000) as producer:
        future = producer.send("t", b"a")
        plog = log._backend.partition_log(TopicPartition("t", 0))

        class Full:
            config = plog.config

            def append(self, *args: Any, **kwargs: Any) -> int:
                raise OSError(28, "No space left on device")

        real = log._backend.partition_log
        log._backend.partition_log = lambda tp: Full()  # type: ignore[method-assign]
        try:
            producer.flush()
        finally:
            log._backend.partition_log = real  # type: ignore[method-assign]
        assert isinstance(future.exception, OSError) and future.exception.errno == 28
        after = producer.send("t", b"after")
        producer.flush()
        assert after.get(timeout=0).offset == 0


def test_log_append_time_topics_report_the_write_time(log: pylog.Log) -> None:
    log.create_topic("lat", config={"message.timestamp.type": "LogAppendTime"})
    with log.producer(acks=1) as producer:
        future = producer.send("lat", b"a", timestamp_ms=5)
        producer.flush()
    meta = future.get()
    stored = read_back(log, "lat")[0]
    assert stored.timestamp_type == 1 and meta.timestamp == stored.timestamp > 5


@pytest.mark.embedded_only(
    "reads the batch header from the log file (kafka: tests/kafka round-trips every codec)"
)
def test_compression_type_reaches_the_batch(log: pylog.Log) -> None:
    with log.producer(acks=1, compression_type="gzip") as producer:
        producer.send("z", b"a" * 1000).get(timeout=10)
    plog = log._backend.partition_log(TopicPartition("z", 0))
    header = bytes(plog.read(0, 61))
    assert header[22] & 0x07 == 1  # gzip
    assert [r.value for r in read_back(log, "z")] == [b"a" * 1000]


def test_user_partitioner_decides(log: pylog.Log) -> None:
    log.create_topic("three", partitions=3)
    calls: list[Any] = []

    def legacy(key: Any, all_partitions: list[int], available: list[int]) -> int:
        calls.append(key)
        return 2

    with log.producer(acks=1, partitioner=legacy, key_serializer=str.encode) as producer:
        assert producer.send("three", b"v", key="k").get(timeout=10).partition == 2
        assert producer.send("three", b"v").get(timeout=10).partition == 2
    assert calls == [b"k", None]


def test_send_batch_list_numpy_and_keys(log: pylog.Log) -> None:
    log.create_topic("six", partitions=6)
    with log.producer(acks=1) as producer:
        [meta] = producer.send_batch("t", [b"a", b"b", None], timestamps_ms=[1, 2, 3]).get(timeout=10)
        assert (meta.partition, meta.base_offset, meta.count, meta.timestamp) == (0, 0, 3, -1)
        rows = np.arange(40, dtype=np.uint8).reshape(4, 10)
        [meta] = producer.send_batch("t", rows, timestamps_ms=np.array([7, 7, 8, 9])).get(timeout=10)
        assert (meta.base_offset, meta.count) == (3, 4) and meta.timestamp == -1
        keys = [f"k{i}".encode() for i in range(60)]
        metas = producer.send_batch("six", [b"v%d" % i for i in range(60)], keys=keys).get(timeout=10)
        assert sum(m.count for m in metas) == 60 and len({m.partition for m in metas}) == len(metas)
        with pytest.raises(ValueError):
            producer.send_batch("t", [b"a"], keys=[b"1", b"2"])
        bad = producer.send_batch("t", ["not bytes"])
        with pytest.raises(TypeError):
            bad.get(timeout=10)
    records = read_back(log, "t")
    assert [r.value for r in records] == [b"a", b"b", None] + [bytes(row) for row in rows]
    assert [r.timestamp for r in records] == [1, 2, 3, 7, 7, 8, 9]
    for p in range(6):
        for r in read_back(log, "six", p):
            assert (kafka_python_murmur2(r.key) & 0x7FFFFFFF) % 6 == p
            assert r.value == b"v" + r.key[1:]


def test_send_batch_keeps_order_with_sends(log: pylog.Log) -> None:
    with log.producer(acks=1, linger_ms=60_000) as producer:
        producer.send("t", b"first")
        producer.send_batch("t", [b"second", b"third"])
        producer.send("t", b"fourth")
    assert [r.value for r in read_back(log, "t")] == [b"first", b"second", b"third", b"fourth"]


def _recovery_point(log_dir: Path, topic: str) -> int:
    """How far the syncs got: the page's recovery point (a sync writes the checkpoint file at
    most once a minute, docs/partition-log.md "Durability")."""
    return synced_offset(log_dir / f"{topic}-0")


#: why fsync tests are embedded-only
FSYNC = "acks=all means the in-sync replicas have the record; when a broker fsyncs is its own setting"


@pytest.mark.embedded_only(FSYNC)
def test_acks_all_resolves_after_fsync(log: pylog.Log, log_dir: Path) -> None:
    with log.producer(acks="all") as producer:
        future = producer.send("d", b"a")
        producer.send("d", b"b").get(timeout=10)
        assert future.is_done
        assert _recovery_point(log_dir, "d") >= 2
        producer.send("d", b"c")
        producer.flush()
        assert _recovery_point(log_dir, "d") == 3


@pytest.mark.embedded_only(FSYNC)
def test_acks_all_group_commit_shares_fsyncs(log: pylog.Log, log_dir: Path) -> None:
    log.create_topic("g")
    threads_n, per_thread = 8, 25
    with log.producer(acks="all") as producer:
        producer.send("g", b"warm").get(timeout=10)
        plog = log._backend.partition_log(TopicPartition("g", 0))
        commit = group_commit.for_log(plog)
        syncs_before = commit.syncs
        barrier = threading.Barrier(threads_n)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                barrier.wait()
                for _ in range(per_thread):
                    producer.send("g", b"x").get(timeout=30)
            except BaseException as error:
                errors.append(error)

        workers = [threading.Thread(target=work) for _ in range(threads_n)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        assert not errors
        syncs = commit.syncs - syncs_before
    total = threads_n * per_thread
    assert _recovery_point(log_dir, "g") == total + 1
    assert 1 <= syncs < total  # records shared fsyncs
    assert len(read_back(log, "g")) == total + 1


def test_group_commit_covers_concurrent_writers(tmp_path: Path, engine: str) -> None:
    class CountingLog:
        def __init__(self) -> None:
            self.end = 0
            self.synced_to = 0
            self.syncs = 0
            self.end_offset = 0
            self.lock = threading.Lock()
            self.inside = threading.Event()
            self.release = threading.Event()

        def sync(self) -> None:
            self.syncs += 1
            with self.lock:
                target = self.end
            if self.syncs == 1:
                self.inside.set()
                assert self.release.wait(10)
            self.synced_to = target

    fake = CountingLog()
    commit = group_commit.GroupCommit(fake)
    fake.end = 1
    first = threading.Thread(target=commit.wait_durable, args=(1,))
    first.start()
    assert fake.inside.wait(10)
    # three writers append while the first sync runs: one more sync covers them all
    fake.end = 4
    others = [threading.Thread(target=commit.wait_durable, args=(e,)) for e in (2, 3, 4)]
    for t in others:
        t.start()
    fake.release.set()
    for t in [first, *others]:
        t.join(10)
    assert fake.syncs == 2 and commit.durable_end == 4 and fake.synced_to == 4


def test_group_commit_sync_failure_reaches_the_writer() -> None:
    class Broken:
        end_offset = 1

        def sync(self) -> None:
            raise OSError(5, "I/O error")

    commit = group_commit.GroupCommit(Broken())
    with pytest.raises(OSError):
        commit.wait_durable(1)
    assert commit.durable_end == -1


@pytest.mark.embedded_only(
    "decodes the log file's bytes; on kafka the broker's format is Kafka's by definition"
)
def test_records_decode_in_kafka_format(log: pylog.Log, engine: str) -> None:
    with log.producer(acks=1) as producer:
        producer.send("t", b"v", key=b"k").get(timeout=10)
    plog = log._backend.partition_log(TopicPartition("t", 0))
    [record] = decode_records(plog.read(0, 1 << 20), engine=engine)
    assert (record.key, record.value) == (b"k", b"v")


@pytest.mark.embedded_only(
    "librdkafka fails a deleted topic's queued records only after topic.metadata.propagation.max.ms "
    "(30 s); tests/kafka_backend/test_producer_kafka.py covers sending after a re-create"
)
def test_deleted_topic_fails_its_pending_records(log: pylog.Log) -> None:
    log.create_topic("gone", partitions=2)
    with log.producer(acks=1, linger_ms=60_000) as producer:
        first = producer.send("gone", b"a", partition=0)
        producer.flush()
        assert first.get().offset == 0
        pending = [producer.send("gone", b"b", partition=p) for p in (0, 1)]
        elsewhere = producer.send("t", b"ok")
        log.delete_topic("gone")
        producer.flush()
        for future in pending:
            assert future.failed()
            assert isinstance(future.exception, UnknownTopicOrPartitionError)
        assert elsewhere.get().offset == 0
        # the log stays usable: the next send creates the topic again (auto-creation), from offset 0
        again = producer.send("gone", b"c")
        producer.flush()
        assert again.get().offset == 0
    assert "gone" in log.list_topics()


def test_threads_sharing_a_producer_keep_per_partition_order(log: pylog.Log) -> None:
    log.create_topic("shared", partitions=3)
    threads_n, per_thread = 4, 1500
    with log.producer(acks=1, batch_size=3000) as producer:
        futures: dict[int, list[Any]] = {}

        def work(t: int) -> None:
            futures[t] = [
                producer.send("shared", b"%d:%d" % (t, i), key=b"k%d" % (i % 7)) for i in range(per_thread)
            ]

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        producer.flush()
        metas = {t: [f.get(timeout=0) for f in fs] for t, fs in futures.items()}
    seen = set()
    for ms in metas.values():
        per_partition: dict[int, list[int]] = {}
        for m in ms:
            per_partition.setdefault(m.partition, []).append(m.offset)
            seen.add((m.partition, m.offset))
        assert all(offsets == sorted(offsets) for offsets in per_partition.values())  # send order kept
    assert len(seen) == threads_n * per_thread
    stored = {p: read_back(log, "shared", p) for p in range(3)}
    assert sum(len(r) for r in stored.values()) == threads_n * per_thread
    for t, ms in metas.items():
        for i, m in enumerate(ms):
            assert stored[m.partition][m.offset].value == b"%d:%d" % (t, i)


def test_bad_and_unknown_topics(log: pylog.Log) -> None:
    from pylog.errors import InvalidTopicError

    with log.producer(acks=1) as producer:
        for name in ("bad/name", "..", "x" * 250, ""):
            with pytest.raises(InvalidTopicError):
                producer.send(name, b"v")
        assert producer.send("fine", None, key=None).get(timeout=10).serialized_value_size == -1
    where: dict[str, Any] = (
        {"path": log.path} if log.engine == "kafka" else {"path": log.path, "engine": log.engine}
    )
    with (
        pylog.open(**where, auto_create_topics=False) as strict,
        strict.producer() as producer,
    ):
        with pytest.raises(UnknownTopicOrPartitionError):
            producer.send("absent", b"v")
        assert producer.send("fine", b"v").get(timeout=10).offset == 1
    assert "absent" not in log.list_topics()


def test_callback_may_send_and_flush(log: pylog.Log) -> None:
    with log.producer(acks=1, linger_ms=60_000) as producer:
        chained: list[Any] = []

        def on_sent(meta: Any) -> None:
            chained.append(producer.send("t", b"from-callback"))
            producer.flush()

        producer.send("t", b"first").add_callback(on_sent)
        producer.flush()
        assert chained[0].get(timeout=0).offset == 1
    assert [r.value for r in read_back(log, "t")] == [b"first", b"from-callback"]
