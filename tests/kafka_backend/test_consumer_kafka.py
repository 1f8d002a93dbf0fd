"""The kafka backend's consumer (``pylog.kafka.consumer.KafkaConsumer``) against a real broker.

Records are written with a plain ``confluent_kafka.Producer`` (an independent source: none of
pylog's producer code), and every field of what ``poll`` returns is checked against what was
sent. Group tests run two consumers in this one thread, polled in turn until the group has
settled (with deadlines: a rebalance on a real cluster takes a few hundred ms, not a fixed time).

The broker and the ``log`` fixture: tests/kafka_backend/conftest.py (topics and groups a test made
are deleted after it). Names carry the ``consumer-`` prefix and a random part.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable

import numpy as np
import pytest
from confluent_kafka import Producer

import pylog
from pylog import ConsumerRecord, OffsetAndMetadata, OffsetAndTimestamp, TopicPartition
from pylog.consumer import Consumer
from pylog.errors import (
    ClientClosedError,
    CommitFailedError,
    IllegalStateError,
    InvalidConfigError,
    InvalidGroupIdError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    SerializationError,
    UnknownTopicOrPartitionError,
    UnsupportedError,
)
from pylog.kafka.consumer import KafkaConsumer
from pylog.listener import ConsumerRebalanceListener

TS = 1_700_000_000_000
#: how long a test waits for records or a group to settle before it fails
DEADLINE_S = 20.0


def new_topic(log: pylog.Log, partitions: int = 1) -> str:
    name = f"consumer-{uuid.uuid4().hex[:10]}"
    log.create_topic(name, partitions)
    return name


def new_group() -> str:
    return f"consumer-g-{uuid.uuid4().hex[:10]}"


def produce(bootstrap: str, topic: str, records: list[dict]) -> None:
    """Write ``records`` (dicts of confluent ``produce`` arguments) and wait until acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    failures: list = []
    for r in records:
        producer.produce(topic, on_delivery=lambda err, msg: failures.append(err) if err else None, **r)
    assert producer.flush(DEADLINE_S) == 0, "the producer did not finish in time"
    assert failures == []


def values(bootstrap: str, topic: str, partition: int, items: list[bytes]) -> None:
    produce(bootstrap, topic, [{"value": v, "partition": partition} for v in items])


def poll_until(consumer: KafkaConsumer, count: int, *, deadline_s: float = DEADLINE_S, **kw) -> list:
    """Records from ``consumer`` until ``count`` came (fails at the deadline saying how many did)."""
    got: list = []
    end = time.monotonic() + deadline_s
    while len(got) < count:
        assert time.monotonic() < end, f"only {len(got)} of {count} records within {deadline_s} s"
        for records in consumer.poll(timeout_ms=200, **kw).values():
            got.extend(records)
    return got


def wait_for(
    condition: Callable[[], bool], what: str, step: Callable[[], object], deadline_s: float = DEADLINE_S
):
    end = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < end, f"{what} did not happen within {deadline_s} s"
        step()


class Recorder(ConsumerRebalanceListener):
    def __init__(self, name: str, events: list):
        self.name, self.events = name, events

    def on_partitions_revoked(self, revoked):
        self.events.append((self.name, "revoked", frozenset(revoked)))

    def on_partitions_assigned(self, assigned):
        self.events.append((self.name, "assigned", frozenset(assigned)))

    def on_partitions_lost(self, lost):
        self.events.append((self.name, "lost", frozenset(lost)))


# ---------------------------------------------------------------------------------------------
# the class itself


def test_every_public_method_of_consumer_is_overridden():
    # a method added to pylog.Consumer later must not fall through to the embedded fetcher here
    public = {
        name
        for name in vars(Consumer)
        if not name.startswith("_") or name in ("__iter__", "__next__", "__enter__", "__exit__", "__init__")
    }
    missing = sorted(name for name in public if name not in vars(KafkaConsumer))
    assert missing == []
    assert issubclass(KafkaConsumer, Consumer)


def test_kafka_python_keys_map_to_librdkafka_or_are_refused(log):
    c = log.consumer(fetch_min_bytes=1, fetch_max_wait_ms=100, check_crcs=True, request_timeout_ms=30000)
    assert isinstance(c, KafkaConsumer)
    c.close()
    for key, value in (("api_version", (2, 0)), ("metric_reporters", [object]), ("metrics_enabled", True)):
        with pytest.raises(UnsupportedError, match=key):
            log.consumer(**{key: value})
    # the producer's rule too: None is "not set", an empty reporter list asks for nothing, and a
    # client's own bootstrap_servers must name the Log's cluster
    log.consumer(api_version=None, metric_reporters=[], metrics_enabled=False, ssl_cafile=None).close()
    log.consumer(bootstrap_servers=log.backend.properties["bootstrap.servers"]).close()
    with pytest.raises(InvalidConfigError, match="bootstrap_servers"):
        log.consumer(bootstrap_servers="x:1")


# ---------------------------------------------------------------------------------------------
# records


def test_poll_returns_every_field_of_what_was_produced(log, bootstrap):
    topic = new_topic(log, 2)
    sent = [
        {"partition": 0, "key": b"k0", "value": b"v0", "timestamp": TS},
        {
            "partition": 0,
            "key": None,
            "value": b"no key",
            "timestamp": TS + 1,
            "headers": [("h", b"1"), ("\u00e9", None)],
        },
        {"partition": 0, "key": b"tomb", "value": None, "timestamp": TS + 2},
        {"partition": 1, "key": b"", "value": b"", "timestamp": TS + 3, "headers": [("a", b"")]},
    ]
    produce(bootstrap, topic, sent)
    c = log.consumer(auto_offset_reset="earliest")
    c.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
    got = sorted(poll_until(c, 4), key=lambda r: (r.partition, r.offset))
    expected = []
    for offset, r in zip([0, 1, 2, 0], sent, strict=True):
        headers = r.get("headers", [])
        expected.append(
            ConsumerRecord(
                topic,
                r["partition"],
                -1,
                offset,
                r["timestamp"],
                0,
                r["key"],
                r["value"],
                [tuple(h) for h in headers],
                None,
                -1 if r["key"] is None else len(r["key"]),
                -1 if r["value"] is None else len(r["value"]),
                sum(len(k.encode()) + len(v or b"") for k, v in headers) if headers else -1,
            )
        )
    assert got == expected
    assert all(type(r) is ConsumerRecord and type(r.headers) is list for r in got)
    assert c.position(TopicPartition(topic, 0)) == 3 and c.position(TopicPartition(topic, 1)) == 1
    c.close()


def test_poll_columns_has_the_embedded_layout(log, bootstrap, tmp_path):
    topic = new_topic(log)
    keys = [b"k0", None, b"key-two", None]
    vals = [b"a", b"bb", None, b"dddd"]
    produce(
        bootstrap,
        topic,
        [
            {"key": k, "value": v, "timestamp": TS + i}
            for i, (k, v) in enumerate(zip(keys, vals, strict=True))
        ],
    )
    kafka = log.consumer(auto_offset_reset="earliest")
    kafka.assign([TopicPartition(topic, 0)])
    got = None
    end = time.monotonic() + DEADLINE_S
    while got is None:
        assert time.monotonic() < end
        got = kafka.poll_columns(timeout_ms=200).get(TopicPartition(topic, 0))
    with pylog.open(tmp_path / "log") as embedded_log:
        embedded_log.create_topic("t", 1)
        with embedded_log.producer() as p:
            for i, (k, v) in enumerate(zip(keys, vals, strict=True)):
                p.send("t", value=v, key=k, partition=0, timestamp_ms=TS + i)
        e = embedded_log.consumer(auto_offset_reset="earliest")
        e.assign([TopicPartition("t", 0)])
        expected = e.poll_columns()[TopicPartition("t", 0)]
        e.close()
    assert got.num_records == expected.num_records == 4
    for field in expected._fields:
        mine, theirs = getattr(got, field), getattr(expected, field)
        assert mine.dtype == theirs.dtype and mine.ndim == theirs.ndim == 1, field
        assert np.array_equal(mine, theirs), field
    assert [got.key(i) for i in range(4)] == keys and [got.value(i) for i in range(4)] == vals
    assert kafka.position(TopicPartition(topic, 0)) == 4
    kafka.close()


def test_max_records_caps_a_poll_and_the_next_goes_on(log, bootstrap):
    topic = new_topic(log)
    tp = TopicPartition(topic, 0)
    values(bootstrap, topic, 0, [b"%d" % i for i in range(10)])
    c = log.consumer(auto_offset_reset="earliest", max_poll_records=4)
    c.assign([tp])
    first = poll_until(c, 1)
    assert len(first) <= 4 and [r.offset for r in first] == list(range(len(first)))
    assert c.position(tp) == len(first)
    rest = poll_until(c, 10 - len(first), max_records=3)
    assert [r.offset for r in first + rest] == list(range(10))
    c.close()


def test_a_failing_deserializer_names_the_record_and_a_retry_sees_it_again(log, bootstrap):
    topic = new_topic(log)
    tp = TopicPartition(topic, 0)
    values(bootstrap, topic, 0, [b"1", b"2", b"oops", b"4"])
    c = log.consumer(auto_offset_reset="earliest", value_deserializer=int)
    c.assign([tp])
    good: list = []
    end = time.monotonic() + DEADLINE_S
    with pytest.raises(SerializationError, match=f"{topic}-0 at offset 2"):
        while True:
            assert time.monotonic() < end
            for records in c.poll(timeout_ms=200).values():
                good += [r.value for r in records]
    assert good == [1, 2] and c.position(tp) == 2
    with pytest.raises(SerializationError):
        end = time.monotonic() + DEADLINE_S
        while time.monotonic() < end:
            c.poll(timeout_ms=200)  # librdkafka was sent back: the record comes again
    c.seek(tp, 3)
    assert [r.value for r in poll_until(c, 1)] == [4]
    c.close()


def test_iteration_moves_positions_record_by_record_and_ends_after_the_timeout(log, bootstrap):
    topic = new_topic(log)
    tp = TopicPartition(topic, 0)
    values(bootstrap, topic, 0, [b"%d" % i for i in range(5)])
    c = log.consumer(auto_offset_reset="earliest", consumer_timeout_ms=1000)
    c.assign([tp])
    it = iter(c)
    assert next(it).offset == 0 and c.position(tp) == 1
    assert next(it).offset == 1 and c.position(tp) == 2
    # a poll in the middle drops the iterator's buffer: librdkafka goes back to position 2
    assert [r.offset for r in poll_until(c, 3)] == [2, 3, 4]
    c.seek(tp, 3)
    started = time.monotonic()
    assert [r.offset for r in c] == [3, 4]
    assert 0.9 < time.monotonic() - started < 8
    c.close()


# ---------------------------------------------------------------------------------------------
# positions and seeks


def test_positions_come_from_the_reset_policy_and_seeks(log, bootstrap):
    topic = new_topic(log, 2)
    t0, t1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    values(bootstrap, topic, 0, [b"a", b"b", b"c"])
    latest = log.consumer()
    latest.assign([t0])
    assert latest.position(t0) == 3
    latest.close()
    c = log.consumer(auto_offset_reset="earliest")
    c.assign([t0, t1])
    c.seek(t0, 2)  # right after assign: librdkafka is not fetching it yet
    assert [r.value for r in poll_until(c, 1)] == [b"c"]
    c.seek(t0, 0)
    assert [r.value for r in poll_until(c, 3)] == [b"a", b"b", b"c"]
    c.seek_to_beginning(t0)
    assert c.position(t0) == 0
    c.seek_to_end()
    assert (c.position(t0), c.position(t1)) == (3, 0)
    assert c.beginning_offsets([t0, t1]) == {t0: 0, t1: 0}
    assert c.end_offsets([t0, t1]) == {t0: 3, t1: 0}
    with pytest.raises(IllegalStateError):
        c.seek(TopicPartition(topic, 5), 0)
    with pytest.raises(UnknownTopicOrPartitionError):
        c.end_offsets([TopicPartition(topic, 5)])
    with pytest.raises(ValueError):
        c.seek(t0, -1)
    c.close()


@pytest.mark.parametrize(("policy", "expected"), [("earliest", [b"a", b"b"]), ("latest", [b"late"])])
def test_a_position_past_the_end_follows_the_reset_policy(log, bootstrap, policy, expected):
    topic = new_topic(log)
    tp = TopicPartition(topic, 0)
    values(bootstrap, topic, 0, [b"a", b"b"])
    c = log.consumer(auto_offset_reset=policy)
    c.assign([tp])
    c.position(tp)
    c.seek(tp, 50)
    if policy == "latest":  # nothing comes back: wait for the reset, then write one
        wait_for(lambda: c.position(tp) == 2, "the reset to the end", lambda: c.poll(timeout_ms=100))
        values(bootstrap, topic, 0, [b"late"])
    got = poll_until(c, len(expected))
    assert [r.value for r in got] == expected
    assert c.position(tp) == {"earliest": 2, "latest": 3}[policy]
    c.close()


def test_out_of_range_with_policy_none_raises_at_every_poll_until_a_seek(log, bootstrap):
    topic = new_topic(log)
    tp = TopicPartition(topic, 0)
    values(bootstrap, topic, 0, [b"a", b"b"])
    c = log.consumer(auto_offset_reset="none")
    c.assign([tp])
    with pytest.raises(NoOffsetForPartitionError):
        c.position(tp)
    with pytest.raises(NoOffsetForPartitionError):
        c.poll()
    c.seek(tp, 9)
    end = time.monotonic() + DEADLINE_S
    with pytest.raises(OffsetOutOfRangeError, match=f"{topic}-0"):
        while time.monotonic() < end:
            c.poll(timeout_ms=200)
    with pytest.raises(OffsetOutOfRangeError):
        c.poll()
    c.seek(tp, 1)  # the partition stopped fetching: librdkafka refuses a plain seek
    assert [r.value for r in poll_until(c, 1)] == [b"b"]
    c.close()


def test_offsets_for_times_gives_the_records_timestamp(log, bootstrap):
    topic = new_topic(log)
    tp = TopicPartition(topic, 0)
    produce(bootstrap, topic, [{"value": b"x", "timestamp": TS + 10 * i} for i in range(3)])
    c = log.consumer()
    assert c.offsets_for_times({tp: TS + 5}) == {tp: OffsetAndTimestamp(1, TS + 10, -1)}
    assert c.offsets_for_times({tp: TS + 1000}) == {tp: None}
    with pytest.raises(ValueError):
        c.offsets_for_times({tp: -1})
    c.close()


def test_pause_stops_a_partition_and_resume_goes_on_where_it_was(log, bootstrap):
    topic = new_topic(log, 2)
    t0, t1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    c = log.consumer(auto_offset_reset="earliest")
    c.assign([t0, t1])
    c.pause(t0)
    assert c.paused() == {t0}
    values(bootstrap, topic, 0, [b"a"])
    values(bootstrap, topic, 1, [b"b"])
    assert [r.value for r in poll_until(c, 1)] == [b"b"]
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        assert t0 not in c.poll(timeout_ms=100)
    c.resume(t0)
    assert [r.value for r in poll_until(c, 1)] == [b"a"]
    c.close()


def test_subscribe_without_a_group_takes_every_partition_and_new_topics(log, bootstrap):
    topic = new_topic(log, 2)
    prefix = topic + "-p"
    c = log.consumer(auto_offset_reset="earliest")
    c.subscribe(pattern=f"{prefix}.*")
    assert c.assignment() == set()
    later = prefix + "1"
    log.create_topic(later, 2)
    not_matching = "x" + later  # the pattern must match the whole name (Java's matches())
    log.create_topic(not_matching, 1)
    values(bootstrap, later, 1, [b"new"])
    values(bootstrap, not_matching, 0, [b"no"])
    assert [r.value for r in poll_until(c, 1)] == [b"new"]
    assert c.assignment() == {TopicPartition(later, 0), TopicPartition(later, 1)}
    assert c.subscription() == {later}
    with pytest.raises(InvalidGroupIdError):
        c.commit()
    c.close()


# ---------------------------------------------------------------------------------------------
# groups


def settle(consumers: list[KafkaConsumer], partitions: set[TopicPartition]) -> None:
    """Poll every consumer in turn until their assignments split ``partitions`` between them."""

    def settled() -> bool:
        held = [c.assignment() for c in consumers]
        return all(held) and set().union(*held) == partitions and sum(map(len, held)) == len(partitions)

    wait_for(settled, "the rebalance", lambda: [c.poll(timeout_ms=50) for c in consumers])


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_a_group_splits_partitions_and_calls_the_listener_in_kafkas_order(log, bootstrap, strategy):
    topic = new_topic(log, 4)
    tps = {TopicPartition(topic, p) for p in range(4)}
    for p in range(4):
        values(bootstrap, topic, p, [b"%d" % p])
    group, events = new_group(), []
    settings = dict(
        group_id=group,
        auto_offset_reset="earliest",
        partition_assignment_strategy=[strategy],
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        auto_commit_interval_ms=60_000,
    )
    a = log.consumer(**settings)
    a.subscribe([topic], listener=Recorder("a", events))
    got = poll_until(a, 4)
    assert sorted(r.value for r in got) == [b"0", b"1", b"2", b"3"]
    assert events == [("a", "assigned", frozenset(tps))]
    b = log.consumer(**settings)
    b.subscribe([topic], listener=Recorder("b", events))
    settle([a, b], tps)  # nothing more was written: these polls return no records
    kept, moved = a.assignment(), b.assignment()
    assert len(kept) == len(moved) == 2
    a_events = [e for e in events[1:] if e[0] == "a"]
    if strategy == "cooperative-sticky":  # only what moves is revoked
        assert a_events[0] == ("a", "revoked", frozenset(moved))
    else:  # eager: everything is revoked, then the new share assigned
        assert a_events[:2] == [("a", "revoked", frozenset(tps)), ("a", "assigned", frozenset(kept))]
    # the revocation committed the positions of the records a returned
    assert {tp: b.committed(tp) for tp in moved} == dict.fromkeys(moved, 1)
    assert all(b.position(tp) == 1 for tp in moved)
    events.clear()
    b.close()
    assert events == [("b", "revoked", frozenset(moved))]
    wait_for(lambda: a.assignment() == tps, "the hand-over on close", lambda: a.poll(timeout_ms=100))
    a.close()


def test_auto_commit_sends_only_what_poll_returned(log, bootstrap):
    topic = new_topic(log)
    tp = TopicPartition(topic, 0)
    values(bootstrap, topic, 0, [b"%d" % i for i in range(6)])
    group = new_group()
    c = log.consumer(
        group_id=group, auto_offset_reset="earliest", auto_commit_interval_ms=0, max_poll_records=2
    )
    c.subscribe([topic])
    first = poll_until(c, 1)
    assert c.committed(tp) in (None, 0)  # the first poll committed nothing it had not returned
    c.poll(timeout_ms=0)
    assert c.committed(tp) >= len(first)
    c.close()
    reader = log.consumer(group_id=group, enable_auto_commit=False)
    final = reader.committed(tp, metadata=True)
    assert isinstance(final, OffsetAndMetadata) and final.offset <= 6
    reader.close()


def test_commits_and_the_groups_refusal(log, bootstrap):
    topic = new_topic(log)
    tp = TopicPartition(topic, 0)
    values(bootstrap, topic, 0, [b"a", b"b", b"c"])
    group = new_group()
    standalone = log.consumer(group_id=group, enable_auto_commit=False, auto_offset_reset="earliest")
    standalone.assign([tp])
    assert standalone.committed(tp) is None
    poll_until(standalone, 3)
    standalone.commit({tp: OffsetAndMetadata(2, "meta", -1)})
    assert standalone.committed(tp, metadata=True) == OffsetAndMetadata(2, "meta", -1)
    standalone.commit()
    assert standalone.committed(tp) == 3
    results: list = []
    future = standalone.commit_async(
        {tp: OffsetAndMetadata(1, "", -1)}, callback=lambda o, e: results.append(e)
    )
    assert future.result() is None and results == [None] and standalone.committed(tp) == 1
    with pytest.raises(IllegalStateError):
        standalone.commit({TopicPartition(topic, 3): OffsetAndMetadata(0, "", -1)})
    # a live member in the group: the group refuses a standalone commit
    member = log.consumer(
        group_id=group, enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=500
    )
    member.subscribe([topic])
    wait_for(lambda: member.assignment() == {tp}, "the member's join", lambda: member.poll(timeout_ms=100))
    with pytest.raises(CommitFailedError):
        standalone.commit({tp: OffsetAndMetadata(0, "", -1)})
    member.close()
    standalone.close()
    no_group = log.consumer()
    with pytest.raises(InvalidGroupIdError):
        no_group.committed(tp)
    no_group.close()


def test_group_with_policy_none_raises_after_the_listener(log, bootstrap):
    topic = new_topic(log)
    tp = TopicPartition(topic, 0)
    events: list = []
    c = log.consumer(
        group_id=new_group(), auto_offset_reset="none", session_timeout_ms=6000, heartbeat_interval_ms=500
    )
    c.subscribe([topic], listener=Recorder("c", events))
    end = time.monotonic() + DEADLINE_S
    with pytest.raises(NoOffsetForPartitionError):
        while time.monotonic() < end:
            c.poll(timeout_ms=100)
    assert events == [("c", "assigned", frozenset({tp}))]
    c.seek(tp, 0)
    values(bootstrap, topic, 0, [b"x"])
    assert [r.value for r in poll_until(c, 1)] == [b"x"]
    c.close(autocommit=False)


def test_a_listener_error_propagates_after_the_assignment(log, bootstrap):
    topic = new_topic(log)
    tp = TopicPartition(topic, 0)
    values(bootstrap, topic, 0, [b"x"])

    class Failing(ConsumerRebalanceListener):
        def on_partitions_assigned(self, assigned):
            raise RuntimeError("listener says no")

    c = log.consumer(
        group_id=new_group(), auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=500
    )
    c.subscribe([topic], listener=Failing())
    end = time.monotonic() + DEADLINE_S
    with pytest.raises(RuntimeError, match="listener says no"):
        while time.monotonic() < end:
            c.poll(timeout_ms=100)
    assert c.assignment() == {tp}
    assert [r.value for r in poll_until(c, 1)] == [b"x"]  # the record was not lost with the error
    c.close()


# ---------------------------------------------------------------------------------------------
# lifecycle


def test_a_closed_consumer_refuses_everything_and_close_is_idempotent(log):
    topic = new_topic(log)
    c = log.consumer()
    c.assign([TopicPartition(topic, 0)])
    c.close()
    c.close()
    for call in (c.poll, c.assignment, lambda: c.position(TopicPartition(topic, 0)), c.topics):
        with pytest.raises(ClientClosedError):
            call()
    assert list(c) == []


def test_an_unreachable_cluster_gives_bounded_calls_and_close_returns():
    with pylog.open("kafka://127.0.0.1:1", timeout_ms=1500) as unreachable:
        c = unreachable.consumer(group_id=new_group(), auto_offset_reset="earliest")
        started = time.monotonic()
        with pytest.raises((KafkaTimeoutError, KafkaConnectionError)):
            c.committed(TopicPartition("consumer-nowhere", 0))
        with pytest.raises((KafkaTimeoutError, KafkaConnectionError)):
            c.topics()
        c.subscribe(["consumer-nowhere"])
        assert c.poll(timeout_ms=300) == {}
        c.close()
        assert time.monotonic() - started < 10


def test_a_forked_child_finds_the_consumer_closed_and_the_parent_goes_on(log, bootstrap):
    topic = new_topic(log)
    tp = TopicPartition(topic, 0)
    c = log.consumer(auto_offset_reset="earliest")
    c.assign([tp])
    pid = os.fork()
    if pid == 0:  # the child: exit code 0 only if the consumer refuses with the fork message
        code = 1
        try:
            c.poll()
        except ClientClosedError as e:
            code = 0 if "forked" in str(e) else 2
        c.close()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    values(bootstrap, topic, 0, [b"parent"])
    assert [r.value for r in poll_until(c, 1)] == [b"parent"]
    c.close()
