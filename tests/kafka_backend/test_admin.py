"""KafkaBackend (pylog/kafka/backend.py) against a real broker: topic and group admin, metadata,
the embedded backend's validation and errors, bounded calls on an unreachable cluster.

The broker and the ``log``/``prefix`` fixtures: tests/kafka_backend/conftest.py (every topic and group
here is named ``admin-<random>-...``; what a test made is deleted after it).
Records are written with confluent-kafka's own producer, so these tests stand on the admin side
alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import confluent_kafka
import pytest

import pylog
from pylog.embedded import topics as layout
from pylog.errors import (
    ClientClosedError,
    GroupIdNotFoundError,
    InvalidConfigError,
    InvalidGroupIdError,
    InvalidPartitionsError,
    InvalidTopicError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NonEmptyGroupError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    UnsupportedError,
)
from pylog.kafka.backend import KafkaBackend
from pylog.types import OffsetAndMetadata, TopicPartition

#: how long a test waits for the cluster to show something another client did
DEADLINE_S = 10.0


def produce(log: pylog.Log, topic: str, counts: dict[int, int], *, timestamp_ms: int | None = None) -> None:
    """Write ``counts[p]`` records to each partition ``p`` with confluent's producer, confirmed."""
    producer = confluent_kafka.Producer(dict(log.backend.properties))
    failures: list[object] = []
    for partition, count in counts.items():
        for n in range(count):
            producer.produce(
                topic,
                value=b"v%d" % n,
                key=b"k%d" % n,
                partition=partition,
                timestamp=timestamp_ms or 0,
                on_delivery=lambda error, _message: failures.append(error) if error else None,
            )
    assert producer.flush(DEADLINE_S) == 0, "records not delivered in time"
    assert failures == []


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {DEADLINE_S} s")
        time.sleep(0.02)


# --- topics ------------------------------------------------------------------------------------


def test_create_describe_delete_and_create_again(log: pylog.Log, prefix: str) -> None:
    name = prefix + "t"
    log.create_topic(name, partitions=3, config={"retention.ms": "60000", "cleanup.policy": "Compact"})
    assert name in log.list_topics()
    assert log.backend.partitions_for(name) == 3
    produce(log, name, {0: 2, 2: 5})
    description = log.describe_topic(name)
    assert description.name == name
    assert layout.is_topic_id(description.topic_id), description.topic_id  # Kafka's Uuid string form
    assert [(p.partition, p.start_offset, p.end_offset) for p in description.partitions] == [
        (0, 0, 2),
        (1, 0, 0),
        (2, 0, 5),
    ]
    # only the topic's own overrides, normalized as the embedded backend gives them
    assert description.config == {"cleanup.policy": "compact", "retention.ms": 60000}
    log.delete_topic(name)
    assert name not in log.list_topics()
    with pytest.raises(UnknownTopicOrPartitionError):
        log.describe_topic(name)
    log.create_topic(name)  # at once: delete_topic waited until the topic was gone
    again = log.describe_topic(name)
    assert again.topic_id != description.topic_id
    assert [(p.start_offset, p.end_offset) for p in again.partitions] == [(0, 0)]


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "x" * 250, "sp ace", "é"])
def test_illegal_names_are_refused_with_the_embedded_rule(log: pylog.Log, name: str) -> None:
    with pytest.raises(InvalidTopicError):
        log.create_topic(name)
    for call in (log.describe_topic, log.delete_topic, log.backend.partitions_for):
        with pytest.raises(InvalidTopicError):
            call(name)


def test_errors_of_existing_and_unknown_topics(log: pylog.Log, prefix: str) -> None:
    name = prefix + "t"
    log.create_topic(name)
    with pytest.raises(TopicAlreadyExistsError):
        log.create_topic(name)
    log.create_topic(prefix + "a_x")
    with pytest.raises(InvalidTopicError):  # Kafka's Topic.hasCollision: '.' and '_' are one
        log.create_topic(prefix + "a.x")
    missing = prefix + "missing"
    for call in (log.delete_topic, log.describe_topic, log.backend.partitions_for):
        with pytest.raises(UnknownTopicOrPartitionError):
            call(missing)
    with pytest.raises(UnknownTopicOrPartitionError):
        log.alter_topic_config(missing, {"retention.ms": 1000})
    with pytest.raises(UnknownTopicOrPartitionError):
        log.create_partitions(missing, 2)


@pytest.mark.parametrize(
    ("partitions", "config"),
    [(0, None), (True, None), ("2", None), (1, {"no.such.key": 1}), (1, {"retention.ms": "soon"}), (1, [1])],
)
def test_bad_input_is_refused_before_anything_is_created(
    log: pylog.Log, prefix: str, partitions: object, config: object
) -> None:
    name = prefix + "bad"
    with pytest.raises((InvalidPartitionsError, InvalidConfigError)):
        log.create_topic(name, partitions=partitions, config=config)  # type: ignore[arg-type]
    assert name not in log.list_topics()


def test_a_config_the_broker_refuses_is_invalid_config(log: pylog.Log, prefix: str) -> None:
    # pylog takes segments from 14 bytes; Kafka 4 wants at least 1 MiB (LogConfig.java)
    with pytest.raises(InvalidConfigError):
        log.create_topic(prefix + "small", config={"segment.bytes": 1024})
    assert prefix + "small" not in log.list_topics()


def test_partitions_for_creates_only_when_asked_and_allowed(
    bootstrap: str, log: pylog.Log, prefix: str
) -> None:
    backend = log.backend
    with pytest.raises(UnknownTopicOrPartitionError):
        backend.partitions_for(prefix + "auto")
    assert backend.partitions_for(prefix + "auto", create=True) == 1
    assert prefix + "auto" in log.list_topics()
    with pylog.open(f"kafka://{bootstrap}", auto_create_topics=False) as strict:
        with pytest.raises(UnknownTopicOrPartitionError):
            strict.backend.partitions_for(prefix + "never", create=True)
        assert prefix + "never" not in strict.list_topics()


def test_list_topics_is_sorted_without_internal_topics(log: pylog.Log, prefix: str) -> None:
    for name in ("b", "a", "c"):
        log.create_topic(prefix + name)
    topics = log.list_topics()
    assert topics == sorted(topics)
    assert [t for t in topics if t.startswith(prefix)] == [prefix + "a", prefix + "b", prefix + "c"]
    assert not [t for t in topics if t.startswith("__")]


def test_metadata_version_moves_on_create_delete_and_growth(log: pylog.Log, prefix: str) -> None:
    backend = log.backend
    name = prefix + "t"
    before = backend.metadata_version()
    log.create_topic(name)
    created = backend.metadata_version()
    assert created > before
    log.create_partitions(name, 2)
    grown = backend.metadata_version()
    assert grown > created
    log.delete_topic(name)
    assert backend.metadata_version() > grown


def test_another_clients_topic_is_seen(bootstrap: str, log: pylog.Log, prefix: str) -> None:
    log.backend.partitions_for(prefix + "seen", create=True)  # fills this backend's snapshot
    with pylog.open(f"kafka://{bootstrap}") as other:
        other.create_topic(prefix + "other", partitions=2)
        other.create_partitions(prefix + "seen", 4)
    assert log.backend.partitions_for(prefix + "other") == 2  # a miss asks the cluster at once
    wait_until(lambda: log.backend.partitions_for(prefix + "seen") == 4, "growth seen")


def test_alter_topic_config_sets_removes_and_refuses_bad_values(log: pylog.Log, prefix: str) -> None:
    name = prefix + "t"
    log.create_topic(name, config={"retention.ms": 60000, "compression.type": "none"})
    assert log.describe_topic(name).config == {"compression.type": "none", "retention.ms": 60000}
    log.alter_topic_config(name, {"retention.ms": None, "cleanup.policy": "delete,compact"})
    assert log.describe_topic(name).config == {"cleanup.policy": "compact,delete", "compression.type": "none"}
    for bad in ({"retention.ms": -7}, {"unknown.key": 1}, {"min.cleanable.dirty.ratio": 2}):
        with pytest.raises(InvalidConfigError):
            log.alter_topic_config(name, bad)
    with pytest.raises(InvalidConfigError):
        log.alter_topic_config(name, [("retention.ms", 1)])  # type: ignore[arg-type]
    assert log.describe_topic(name).config == {"cleanup.policy": "compact,delete", "compression.type": "none"}


def test_create_partitions_grows_and_refuses_shrinking(log: pylog.Log, prefix: str) -> None:
    name = prefix + "t"
    log.create_topic(name, partitions=2)
    log.create_partitions(name, 4)
    assert log.backend.partitions_for(name) == 4
    assert len(log.describe_topic(name).partitions) == 4
    for total in (4, 3, 0, "5"):
        with pytest.raises(InvalidPartitionsError):
            log.create_partitions(name, total)  # type: ignore[arg-type]
    assert log.backend.partitions_for(name) == 4


def test_delete_records_moves_the_log_start(log: pylog.Log, prefix: str) -> None:
    name = prefix + "t"
    log.create_topic(name, partitions=2)
    produce(log, name, {0: 5, 1: 3})
    assert log.delete_records(name, {0: 2, 1: -1}) == {TopicPartition(name, 0): 2, TopicPartition(name, 1): 3}
    starts = [(p.start_offset, p.end_offset) for p in log.describe_topic(name).partitions]
    assert starts == [(2, 5), (3, 3)]
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_records(name, {0: 6})
    with pytest.raises(OffsetOutOfRangeError):  # below the start: the embedded backend's rule
        log.delete_records(name, {0: 1})
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_records(name, {0: -2})
    with pytest.raises(UnknownTopicOrPartitionError):
        log.delete_records(name, {2: 0})
    with pytest.raises(UnknownTopicOrPartitionError):
        log.delete_records(prefix + "missing", {0: 0})
    with pytest.raises(TypeError):
        log.delete_records(name, [(0, 1)])  # type: ignore[arg-type]
    assert [p.start_offset for p in log.describe_topic(name).partitions] == [2, 3]


def test_compaction_retention_and_embedded_internals_are_unsupported(log: pylog.Log, prefix: str) -> None:
    with pytest.raises(UnsupportedError, match="brokers"):
        log.compact()
    with pytest.raises(UnsupportedError, match="brokers"):
        log.apply_retention(prefix + "t")
    backend = log.backend
    with pytest.raises(UnsupportedError):
        backend.partition_log(TopicPartition(prefix + "t", 0))
    with pytest.raises(UnsupportedError):
        backend.check_partition(TopicPartition(prefix + "t", 0))
    with pytest.raises(UnsupportedError):
        backend.fetcher(None)
    with pytest.raises(UnsupportedError):
        backend.group_member()
    with pytest.raises(UnsupportedError):
        _ = backend.group_store
    assert log.engine == "kafka"


# --- groups ------------------------------------------------------------------------------------


def test_reset_offsets_makes_a_group_and_the_admin_calls_see_it(log: pylog.Log, prefix: str) -> None:
    name, group = prefix + "t", prefix + "g"
    log.create_topic(name, partitions=3)
    produce(log, name, {0: 4, 1: 2})
    log.delete_records(name, {0: 1})
    assert group not in log.list_groups()
    with pytest.raises(GroupIdNotFoundError):
        log.describe_group(group)
    assert log.reset_offsets(group, name, "latest", dry_run=True) == {
        TopicPartition(name, 0): 4,
        TopicPartition(name, 1): 2,
        TopicPartition(name, 2): 0,
    }
    assert group not in log.list_groups()  # a dry run writes nothing
    assert log.reset_offsets(group, name, "earliest") == {
        TopicPartition(name, 0): 1,
        TopicPartition(name, 1): 0,
        TopicPartition(name, 2): 0,
    }
    assert group in log.list_groups()
    # a shift is clamped to [start, end] (kafka-consumer-groups.sh's checkOffsetsRange)
    assert log.reset_offsets(group, name, {"shift": 3}, partitions=[1, 0]) == {
        TopicPartition(name, 0): 4,
        TopicPartition(name, 1): 2,
    }
    assert log.reset_offsets(group, name, 99, partitions=[2]) == {TopicPartition(name, 2): 0}
    description = log.describe_group(group)
    assert (description.group_id, description.state, description.members) == (group, "Empty", ())
    assert description.committed == {
        TopicPartition(name, 0): OffsetAndMetadata(4, "", -1),
        TopicPartition(name, 1): OffsetAndMetadata(2, "", -1),
        TopicPartition(name, 2): OffsetAndMetadata(0, "", -1),
    }
    produce(log, name, {1: 3})
    assert description.lag == {
        TopicPartition(name, 0): 0,
        TopicPartition(name, 1): 0,
        TopicPartition(name, 2): 0,
    }
    assert log.describe_group(group).lag[TopicPartition(name, 1)] == 3
    log.delete_group(group)
    assert group not in log.list_groups()
    with pytest.raises(GroupIdNotFoundError):
        log.delete_group(group)


def test_reset_offsets_to_a_timestamp(log: pylog.Log, prefix: str) -> None:
    name, group = prefix + "t", prefix + "g"
    log.create_topic(name)
    produce(log, name, {0: 2}, timestamp_ms=1_000_000)
    produce(log, name, {0: 3}, timestamp_ms=2_000_000)
    assert log.reset_offsets(group, name, {"timestamp": 1_500_000}) == {TopicPartition(name, 0): 2}
    assert log.reset_offsets(group, name, {"timestamp": 3_000_000}) == {TopicPartition(name, 0): 5}
    assert log.reset_offsets(group, name, {"timestamp": 0}) == {TopicPartition(name, 0): 0}


def test_reset_offsets_refuses_bad_input_changing_nothing(log: pylog.Log, prefix: str) -> None:
    name, group = prefix + "t", prefix + "g"
    log.create_topic(name, partitions=2)
    with pytest.raises(NoOffsetForPartitionError):  # nothing committed to shift
        log.reset_offsets(group, name, {"shift": 1})
    with pytest.raises(UnknownTopicOrPartitionError):
        log.reset_offsets(group, name, partitions=[2])
    with pytest.raises(UnknownTopicOrPartitionError):
        log.reset_offsets(group, prefix + "missing")
    with pytest.raises(TypeError):
        log.reset_offsets(group, name, "middle")
    with pytest.raises(InvalidGroupIdError):
        log.reset_offsets("", name)
    assert group not in log.list_groups()


def test_a_live_member_is_described_and_blocks_delete_and_reset(log: pylog.Log, prefix: str) -> None:
    name, group = prefix + "t", prefix + "g"
    log.create_topic(name, partitions=2)
    consumer = confluent_kafka.Consumer(
        {**log.backend.properties, "group.id": group, "client.id": prefix + "c", "session.timeout.ms": 6000}
    )
    try:
        consumer.subscribe([name])
        deadline = time.monotonic() + DEADLINE_S
        while not consumer.assignment():
            assert time.monotonic() < deadline, "the consumer got no assignment in time"
            consumer.poll(0.05)
        wait_until(lambda: log.describe_group(group).state == "Stable", "the group stable")
        description = log.describe_group(group)
        (member,) = description.members
        everything = frozenset({TopicPartition(name, 0), TopicPartition(name, 1)})
        assert member.assignment == everything
        assert member.subscription == frozenset({name})
        assert member.client_host  # the broker's view of the consumer's address
        assert description.protocol  # the assignor's name
        assert description.assignment == dict.fromkeys(everything, member.member_id)
        with pytest.raises(NonEmptyGroupError):
            log.delete_group(group)
        with pytest.raises(NonEmptyGroupError):
            log.reset_offsets(group, name, "latest")
        # a dry run may look at a live group
        assert log.reset_offsets(group, name, "latest", dry_run=True) == dict.fromkeys(everything, 0)
    finally:
        consumer.close()
    wait_until(lambda: log.describe_group(group).state == "Empty", "the group empty after close")
    log.delete_group(group)


def test_group_ids_are_checked(log: pylog.Log) -> None:
    for call in (log.describe_group, log.delete_group):
        with pytest.raises(InvalidGroupIdError):
            call("")
        with pytest.raises(InvalidGroupIdError):
            call(None)  # type: ignore[arg-type]


# --- the connection ----------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1:1", "10.255.255.1:9092"])
def test_an_unreachable_cluster_fails_within_the_timeout(address: str) -> None:
    """Opening is lazy; each call that needs the cluster fails typed within timeout_ms."""
    log = pylog.open(f"kafka://{address}", timeout_ms=150)
    calls = [
        log.list_topics,
        lambda: log.create_topic("admin-unreachable"),
        lambda: log.delete_topic("admin-unreachable"),
        lambda: log.describe_topic("admin-unreachable"),
        lambda: log.backend.partitions_for("admin-unreachable", create=True),
        log.list_groups,
        lambda: log.describe_group("admin-unreachable"),
        lambda: log.reset_offsets("admin-unreachable", "admin-unreachable"),
    ]
    try:
        for call in calls:
            started = time.monotonic()
            with pytest.raises((KafkaConnectionError, KafkaTimeoutError)):
                call()
            assert time.monotonic() - started < 0.15 + 1.5, "past the timeout"
    finally:
        started = time.monotonic()
        log.close()
        assert time.monotonic() - started < 1.0


def test_client_settings_are_validated(bootstrap: str) -> None:
    with pytest.raises(InvalidConfigError):
        pylog.open(f"kafka://{bootstrap}", group_id="g")  # per consumer, not per cluster
    with pytest.raises(InvalidConfigError):
        pylog.open(f"kafka://{bootstrap}", timeout_ms=0)
    with pytest.raises(InvalidConfigError):
        pylog.open("kafka://no-port")
    # librdkafka checks property names when the first client is made
    with pylog.open(f"kafka://{bootstrap}", no_such_property="1") as log, pytest.raises(InvalidConfigError):
        log.list_topics()


def test_properties_and_timeout_are_the_clients(bootstrap: str) -> None:
    backend = KafkaBackend(f"kafka://{bootstrap}", socket_timeout_ms=5000, timeout_ms=1234)
    try:
        assert backend.properties == {
            "bootstrap.servers": bootstrap,
            "socket.timeout.ms": 5000,
            "logger": logging.getLogger("pylog.kafka"),  # librdkafka's lines through Python's logging
        }
        assert backend.timeout_ms == 1234
        assert backend.path == f"kafka://{bootstrap}"
        assert backend.auto_create_topics is True
    finally:
        backend.close()


def test_every_call_after_close_raises_and_close_is_idempotent(log: pylog.Log) -> None:
    backend = log.backend
    log.list_topics()
    log.close()
    log.close()
    backend.close()
    for call in (
        backend.list_topics,
        backend.metadata_version,
        lambda: backend.partitions_for("admin-x"),
        lambda: backend.create_topic("admin-x"),
        lambda: backend.describe_group("admin-x"),
        backend.list_groups,
    ):
        with pytest.raises(ClientClosedError):
            call()
