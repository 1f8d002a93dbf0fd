"""The kafka backend's producer (pylog/kafka/producer_core.py) against a real broker.

What the producer wrote is read back with a plain ``confluent_kafka.Consumer`` (an independent
judge: not pylog's consumer), every field compared: key, value, headers, timestamps, partition,
offsets of the futures. Errors: records too large (for ``max_request_size`` and for the topic),
unknown topics without auto-create, an unreachable cluster (bounded: futures fail, flush raises
``KafkaTimeoutError``, close returns). Config: every kafka-python key maps to librdkafka or is
refused (settings.producer_properties).

The broker and the ``log``/``prefix`` fixtures: tests/kafka_backend/conftest.py (every topic here is named
``producer-<random>-...``; what a test made is deleted after it).
"""

from __future__ import annotations

import gc
import threading
import time
import uuid
import weakref
from typing import Any

import confluent_kafka
import numpy as np
import pytest

import pylog
from pylog.embedded.partitioner import partition_for_key
from pylog.errors import (
    ClientClosedError,
    InvalidConfigError,
    KafkaConnectionError,
    KafkaTimeoutError,
    RecordTooLargeError,
    UnknownTopicOrPartitionError,
    UnsupportedError,
)
from pylog.kafka.settings import producer_properties
from pylog.producer import ProducerConfig
from pylog.types import TopicPartition

#: how long a test waits for the cluster to deliver or show something
DEADLINE_S = 15.0
CODECS = (None, "gzip", "snappy", "lz4", "zstd")


def read_back(bootstrap: str, topic: str, count: int, partitions: int = 1) -> list[Any]:
    """``count`` messages of ``topic`` from the start of every partition, by confluent-kafka's
    own consumer, ordered by (partition, offset); fails at the deadline with what it got."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"producer-judge-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign(
            [
                confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                for p in range(partitions)
            ]
        )
        got: list[Any] = []
        deadline = time.monotonic() + DEADLINE_S
        while len(got) < count and time.monotonic() < deadline:
            for message in consumer.consume(count - len(got), timeout=0.5):
                assert message.error() is None, message.error()
                got.append(message)
        assert len(got) == count, f"read {len(got)} of {count} records of {topic!r}"
        return sorted(got, key=lambda m: (m.partition(), m.offset()))
    finally:
        consumer.close()


def test_every_field_reaches_the_broker(log: pylog.Log, bootstrap: str, prefix: str) -> None:
    topic = prefix + "fields"
    log.create_topic(topic, partitions=3)
    sends: list[dict[str, Any]] = [
        {"value": b"plain"},
        {"value": b"keyed", "key": b"k1"},
        {"value": None, "key": b"tombstone"},
        {"value": b"", "key": b""},
        {"value": b"headers", "headers": [("a", b"1"), ("empty", b""), ("none", None)]},
        {"value": b"stamped", "timestamp_ms": 1_600_000_000_123},
        {"value": bytearray(b"bytearray"), "key": memoryview(b"mv"), "partition": 2},
        {"value": b"explicit", "partition": 1, "timestamp_ms": 5},
    ]
    with log.producer(acks="all") as producer:
        futures = [producer.send(topic, **s) for s in sends]
        producer.flush(DEADLINE_S)
        assert all(f.is_done and f.succeeded() for f in futures)
        metas = [f.get(timeout=0) for f in futures]
    messages = {(m.partition(), m.offset()): m for m in read_back(bootstrap, topic, len(sends), 3)}
    for send, meta in zip(sends, metas, strict=True):
        message = messages[(meta.partition, meta.offset)]
        value = send["value"]
        key = send.get("key")
        assert message.value() == (None if value is None else bytes(value))
        assert message.key() == (None if key is None else bytes(key))
        assert (message.headers() or []) == [(k, v) for k, v in send.get("headers", [])]
        kind, stamp = message.timestamp()
        assert kind == confluent_kafka.TIMESTAMP_CREATE_TIME
        assert meta.timestamp == stamp
        if "timestamp_ms" in send:
            assert stamp == send["timestamp_ms"]
        if "partition" in send:
            assert meta.partition == send["partition"]
        assert meta.topic == topic and meta.topic_partition == TopicPartition(topic, meta.partition)
        assert meta.serialized_key_size == (-1 if key is None else len(key))
        assert meta.serialized_value_size == (-1 if value is None else len(value))
        assert meta.checksum is None
    assert metas[4].serialized_header_size == len("a1emptynone")
    assert metas[0].serialized_header_size == -1


def test_record_futures_are_left_out_of_the_cyclic_gc_and_free_their_core(
    log: pylog.Log, prefix: str
) -> None:
    # why it matters: an application keeping many futures made every GC pass walk them all
    # (pylog._native.DeliveryFuture, native/src/python/delivery_future.rs)
    topic = prefix + "untracked"
    log.create_topic(topic)
    producer = log.producer(acks=1)
    plain = producer.send(topic, b"v", key=b"k")
    with_headers = producer.send(topic, b"v", headers=[("h", b"xy")])
    assert not gc.is_tracked(plain) and not gc.is_tracked(with_headers)
    assert plain.get(DEADLINE_S).serialized_key_size == 1
    assert with_headers.get(DEADLINE_S).serialized_header_size == 3
    called: list[Any] = []
    plain.add_both(called.append)
    assert called == [plain.value]
    core = weakref.ref(producer._core)
    producer.close()
    del producer, plain, with_headers, called
    gc.collect()
    assert core() is None  # the core and its futures' factory hold each other: collectable


def test_keyed_records_land_where_the_embedded_partitioner_puts_them(log: pylog.Log, prefix: str) -> None:
    topic = prefix + "keys"
    log.create_topic(topic, partitions=6)
    keys = [f"key-{i}".encode() for i in range(200)] + [b"", b"\x00", bytes(range(256))]
    with log.producer(acks=1) as producer:
        futures = [producer.send(topic, b"v", key=k) for k in keys]
        producer.flush(DEADLINE_S)
    assert [f.get().partition for f in futures] == [partition_for_key(k, 6) for k in keys]
    assert len({f.get().partition for f in futures}) == 6


@pytest.mark.parametrize("codec", CODECS)
def test_codecs_round_trip(log: pylog.Log, bootstrap: str, prefix: str, codec: str | None) -> None:
    topic = prefix + f"codec-{codec}"
    values = [f"record {i} ".encode() * (i % 7) for i in range(300)]
    with log.producer(acks=1, compression_type=codec, linger_ms=5) as producer:
        futures = [producer.send(topic, v, key=str(i % 3).encode()) for i, v in enumerate(values)]
        producer.flush(DEADLINE_S)
    assert [f.get().offset for f in futures] == list(range(300))
    assert [m.value() for m in read_back(bootstrap, topic, 300)] == values


def test_log_append_time_topics_report_the_brokers_time(log: pylog.Log, bootstrap: str, prefix: str) -> None:
    topic = prefix + "append-time"
    log.create_topic(topic, config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    with log.producer(acks=1) as producer:
        meta = producer.send(topic, b"v", timestamp_ms=1000).get(DEADLINE_S)
        [run] = producer.send_batch(topic, [b"a", b"b"], timestamps_ms=[1, 2]).get(DEADLINE_S)
    [first, *rest] = read_back(bootstrap, topic, 3)
    assert first.timestamp() == (confluent_kafka.TIMESTAMP_LOG_APPEND_TIME, meta.timestamp)
    assert meta.timestamp >= before - 60_000  # the broker's clock, not the record's 1000
    assert run.timestamp == rest[0].timestamp()[1] and run.count == 2


def test_send_batch_runs_match_what_is_stored(log: pylog.Log, bootstrap: str, prefix: str) -> None:
    topic = prefix + "batch"
    log.create_topic(topic, partitions=3)
    rows = np.arange(40 * 8, dtype=np.uint8).reshape(40, 8)
    with log.producer(acks=1) as producer:
        [one] = producer.send_batch(topic, rows, partition=2).get(DEADLINE_S)
        keys = [f"k{i}".encode() for i in range(60)]
        keyed = producer.send_batch(topic, [b"x"] * 60, keys=keys, timestamps_ms=np.arange(60) + 1000).get(
            DEADLINE_S
        )
        with_headers = producer.send_batch(
            topic, [b"h1", b"h2"], partition=0, headers=[[("n", b"1")], [("n", None)]]
        ).get(DEADLINE_S)
    assert (one.partition, one.base_offset, one.count) == (2, 0, 40)
    assert one.timestamp >= 0  # no timestamps given: the time the records were taken
    assert sum(r.count for r in keyed) == 60 and all(r.timestamp == -1 for r in keyed)
    assert len({r.partition for r in keyed}) == len(keyed) == 3  # one run per partition
    stored = read_back(bootstrap, topic, 102, 3)
    by_partition: dict[int, list[Any]] = {}
    for message in stored:
        by_partition.setdefault(message.partition(), []).append(message)
    assert [m.value() for m in by_partition[2][:40]] == [bytes(r) for r in rows]
    for run in keyed:
        got = [
            m
            for m in by_partition[run.partition]
            if run.base_offset <= m.offset() < run.base_offset + run.count
        ]
        assert all(partition_for_key(m.key(), 3) == run.partition for m in got)
        assert [m.timestamp()[1] for m in got] == [1000 + int(m.key()[1:]) for m in got]
    [run] = with_headers
    assert run.count == 2
    headered = [m for m in by_partition[0] if m.value() in (b"h1", b"h2")]
    assert [m.headers() for m in headered] == [[("n", b"1")], [("n", None)]]


def test_record_too_large_for_max_request_size_fails_alone(log: pylog.Log, prefix: str) -> None:
    topic = prefix + "large"
    with log.producer(acks=1, max_request_size=2000) as producer:
        small = producer.send(topic, b"s" * 10)
        large = producer.send(topic, b"L" * 5000)
        producer.flush(DEADLINE_S)
        assert small.get().offset == 0
        assert large.failed()
        with pytest.raises(RecordTooLargeError):
            large.get()


def test_a_timestamp_of_zero_is_refused_not_restamped(log: pylog.Log, prefix: str) -> None:
    """librdkafka reads timestamp 0 as "now": sent as is, the epoch would become another time."""
    topic = prefix + "epoch"
    log.create_topic(topic)
    with log.producer(acks=1) as producer:
        with pytest.raises(UnsupportedError, match="timestamp_ms=0"):
            producer.send(topic, b"v", timestamp_ms=0)
        batch = producer.send_batch(topic, [b"a", b"b"], timestamps_ms=[0, 0])
        with pytest.raises(UnsupportedError, match="timestamp_ms=0"):
            batch.get(DEADLINE_S)
        assert producer.send(topic, b"v", timestamp_ms=1).get(DEADLINE_S).timestamp == 1
    assert log.describe_topic(topic).partitions[0].end_offset == 1  # only the record stamped 1


def test_record_too_large_for_the_topic_fails_its_future(log: pylog.Log, prefix: str) -> None:
    topic = prefix + "topic-limit"
    log.create_topic(topic, config={"max.message.bytes": 2048})
    with log.producer(acks=1, linger_ms=0) as producer:
        large = producer.send(topic, b"L" * 10_000)
        with pytest.raises(RecordTooLargeError):
            large.get(DEADLINE_S)
        assert producer.send(topic, b"fits").get(DEADLINE_S).offset >= 0


def test_unknown_topic_without_auto_create(bootstrap: str, prefix: str) -> None:
    with (
        pylog.open(f"kafka://{bootstrap}", auto_create_topics=False, timeout_ms=10_000) as strict,
        strict.producer() as producer,
    ):
        with pytest.raises(UnknownTopicOrPartitionError):
            producer.send(prefix + "missing", b"v")
        with pytest.raises(UnknownTopicOrPartitionError):
            producer.partitions_for(prefix + "missing")
        assert prefix + "missing" not in strict.list_topics()


def test_unknown_topic_is_created_on_first_send(log: pylog.Log, prefix: str) -> None:
    topic = prefix + "auto"
    with log.producer() as producer:
        assert producer.send(topic, b"v").get(DEADLINE_S).offset == 0
        assert producer.partitions_for(topic) == {0}
    assert topic in log.list_topics()


def test_explicit_partitions_are_checked_and_refreshed(log: pylog.Log, prefix: str) -> None:
    topic = prefix + "grow"
    log.create_topic(topic, partitions=2)
    with log.producer(acks=1) as producer:
        assert producer.send(topic, b"a", partition=1).get(DEADLINE_S).partition == 1
        with pytest.raises(UnknownTopicOrPartitionError):
            producer.send(topic, b"a", partition=2)
        log.create_partitions(topic, 3)
        assert producer.send(topic, b"a", partition=2).get(DEADLINE_S).partition == 2
        with pytest.raises(TypeError):
            producer.send(topic, b"a", partition="1")


class _UnreachableCluster:
    """A backend whose metadata says one partition but whose brokers never answer."""

    path = "kafka://127.0.0.1:1"
    engine = "kafka"
    properties = {"bootstrap.servers": "127.0.0.1:1"}
    timeout_ms = 1000

    def partitions_for(self, topic: str, *, create: bool = False) -> int:
        return 1

    def producer_core(self, config: Any) -> Any:
        from pylog.kafka.producer_core import KafkaProducerCore

        return KafkaProducerCore(self, config)


def test_unreachable_cluster_is_bounded() -> None:
    producer = pylog.Producer(_UnreachableCluster(), delivery_timeout_ms=1500, request_timeout_ms=1000)
    timed_out = producer.send("t", b"expires")
    started = time.monotonic()
    with pytest.raises(KafkaTimeoutError):
        producer.flush(0.3)
    assert time.monotonic() - started < 2.0
    with pytest.raises(KafkaTimeoutError):
        timed_out.get(DEADLINE_S)  # delivery.timeout.ms passed: librdkafka gave up
    assert time.monotonic() - started < 6.0
    pending = producer.send("t", b"never")
    started = time.monotonic()
    producer.close(0.3)
    assert time.monotonic() - started < 3.0
    assert pending.is_done and isinstance(pending.exception, KafkaTimeoutError)
    with pytest.raises(ClientClosedError):
        producer.send("t", b"closed")


def test_unreachable_cluster_through_pylog_open_is_a_typed_error() -> None:
    with pylog.open("kafka://127.0.0.1:1", timeout_ms=1000) as log, log.producer() as producer:
        started = time.monotonic()
        with pytest.raises((KafkaConnectionError, KafkaTimeoutError)):
            producer.send("t", b"v")
        assert time.monotonic() - started < 5.0


def test_callbacks_run_once_in_order_of_outcome(log: pylog.Log, prefix: str) -> None:
    topic = prefix + "callbacks"
    got: list[Any] = []
    errors: list[BaseException] = []
    with log.producer(acks=1, max_request_size=2000) as producer:
        futures = [producer.send(topic, f"{i}".encode()) for i in range(200)]
        for future in futures:
            future.add_callback(lambda meta, tag="ok": got.append((tag, meta.offset)))
            future.add_errback(errors.append)
        failing = producer.send(topic, b"L" * 5000)
        failing.add_errback(errors.append)
        producer.flush(DEADLINE_S)
        late: list[Any] = []
        futures[0].add_callback(late.append)  # already done: runs at once, here
        batch = producer.send_batch(topic, [b"a", b"b"])
        batch.add_both(late.append)
        producer.flush(DEADLINE_S)
    assert sorted(offset for _, offset in got) == list(range(200))
    assert len(errors) == 1 and isinstance(errors[0], RecordTooLargeError)
    assert late[0] is futures[0].value and late[1] == batch.value


def test_user_partitioner_decides(log: pylog.Log, prefix: str) -> None:
    topic = prefix + "user-partitioner"
    log.create_topic(topic, partitions=4)
    seen: list[tuple[Any, ...]] = []

    def last_partition(key_bytes: Any, all_partitions: list[int], available: list[int]) -> int:
        seen.append((key_bytes, tuple(all_partitions)))
        return all_partitions[-1]

    with log.producer(acks=1, partitioner=last_partition) as producer:
        metas = [producer.send(topic, b"v", key=k).get(DEADLINE_S) for k in (b"a", None)]
    assert [m.partition for m in metas] == [3, 3]
    assert seen == [(b"a", (0, 1, 2, 3)), (None, (0, 1, 2, 3))]


def test_acks_zero_reports_no_offset(log: pylog.Log, prefix: str) -> None:
    with log.producer(acks=0) as producer:
        meta = producer.send(prefix + "acks0", b"v").get(DEADLINE_S)
    assert meta.offset == -1


def test_threads_share_a_producer(log: pylog.Log, bootstrap: str, prefix: str) -> None:
    topic = prefix + "threads"
    with log.producer(acks=1) as producer:
        producer.send(topic, b"first").get(DEADLINE_S)

        def run(n: int) -> None:
            for i in range(500):
                producer.send(topic, f"{n}-{i}".encode(), key=str(n).encode())

        threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        producer.flush(DEADLINE_S)
    values = [m.value().decode() for m in read_back(bootstrap, topic, 2001)][1:]
    for n in range(4):
        assert [v for v in values if v.startswith(f"{n}-")] == [f"{n}-{i}" for i in range(500)]


def test_get_waits_and_times_out_without_hanging(log: pylog.Log, prefix: str) -> None:
    with log.producer(acks=1, linger_ms=2000) as producer:
        future = producer.send(prefix + "linger", b"v")
        started = time.monotonic()
        with pytest.raises(KafkaTimeoutError):
            future.get(timeout=0.2)
        assert time.monotonic() - started < 1.5
        assert future.get(DEADLINE_S).offset == 0


# --- configuration ---------------------------------------------------------------------------


def _properties(**config: Any) -> dict[str, Any]:
    return producer_properties(ProducerConfig.from_kwargs(config))


def test_kafka_python_names_map_to_librdkafka() -> None:
    defaults = _properties()
    assert defaults["acks"] == "all" and defaults["enable.idempotence"] is True
    assert defaults["batch.size"] == 16384 and defaults["linger.ms"] == 0
    assert defaults["partitioner"] == "murmur2_random" and defaults["compression.type"] == "none"
    mapped = _properties(
        acks=1,
        compression_type="zstd",
        batch_size=0,
        linger_ms=7,
        max_request_size=5000,
        client_id="me",
        retries=3,
        delivery_timeout_ms=9000,
        request_timeout_ms=800,
        max_in_flight_requests_per_connection=2,
        buffer_memory=33 * 1024 * 1024,
        ssl_check_hostname=False,
        security_protocol="PLAINTEXT",
        ssl_cafile=None,
        max_block_ms=10,
    )
    assert mapped["acks"] == "1" and mapped["enable.idempotence"] is False  # Java's rule: acks != all
    assert mapped["compression.type"] == "zstd" and mapped["batch.size"] == 1 and mapped["linger.ms"] == 7
    assert mapped["message.max.bytes"] == 5000 and mapped["client.id"] == "me"
    assert mapped["retries"] == 3 and mapped["delivery.timeout.ms"] == 9000
    assert mapped["request.timeout.ms"] == 800 and mapped["max.in.flight.requests.per.connection"] == 2
    assert mapped["queue.buffering.max.kbytes"] == 33 * 1024
    assert mapped["ssl.endpoint.identification.algorithm"] == "none"
    assert "ssl.ca.location" not in mapped and "max.block.ms" not in mapped


@pytest.mark.parametrize(
    "config",
    [
        {"python_core": True},
        {"sticky_seed": 1},
        {"api_version": (2, 0)},
        {"socket_options": [(6, 1, 1)]},
        {"ssl_context": object()},
        {"sasl_oauth_token_provider": object()},
        {"metric_reporters": [object]},
        {"metrics_enabled": True},
        {"selector": object},
    ],
)
def test_keys_without_a_librdkafka_counterpart_are_refused(log: pylog.Log, config: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedError, match=next(iter(config))):
        log.producer(**config)


def test_bootstrap_servers_must_name_the_logs_cluster(log: pylog.Log, bootstrap: str) -> None:
    log.producer(bootstrap_servers=[bootstrap]).close()
    with pytest.raises(InvalidConfigError):
        log.producer(bootstrap_servers="10.0.0.1:9092")


def test_librdkafkas_own_refusals_are_typed(log: pylog.Log) -> None:
    with pytest.raises(InvalidConfigError):
        log.producer(max_request_size=10)  # librdkafka's message.max.bytes is at least 1000


def test_sending_after_the_topic_was_made_again(log: pylog.Log, prefix: str) -> None:
    topic = prefix + "again"
    with log.producer(acks=1) as producer:
        assert producer.send(topic, b"1").get(DEADLINE_S).offset == 0
        producer.send(topic, b"2").get(DEADLINE_S)
        log.delete_topic(topic)
        log.create_topic(topic, partitions=2)
        metas = [
            producer.send(topic, b"3", partition=1).get(DEADLINE_S),
            producer.send(topic, b"4").get(DEADLINE_S),
        ]
    assert metas[0].partition == 1 and metas[0].offset == 0
    assert metas[1].offset == (1 if metas[1].partition == 1 else 0)
