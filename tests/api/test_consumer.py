"""The consumer in manual-assignment mode: kafka-python's KafkaConsumer calls and return types.

Runs on every backend (the ``log`` fixture). Records are appended through the embedded backend's
partition handles, and on Kafka with a plain ``confluent_kafka.Producer`` (``produce`` below);
everything else goes through the public API.

Kafka's consumer returns from ``poll`` only what it has already fetched, where the embedded one
reads the files at once: a poll that expects records just written waits for them
(``poll_some``, ``collect``: they return as soon as the records are there on both backends), and
an error a fetch reports (a position out of range) comes with one of the next polls
(``poll_until_raises``).
"""

from __future__ import annotations

import math
import os
import re
import shutil
from pathlib import Path

import pytest
from test_append_validation import DATA_OFFSETS, transactional_log

import pylog
from pylog import ConsumerRecord, OffsetAndMetadata, OffsetAndTimestamp, TopicPartition
from pylog.errors import (
    ClientClosedError,
    IllegalStateError,
    InvalidConfigError,
    InvalidGroupIdError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    SerializationError,
    UnknownTopicOrPartitionError,
    UnsupportedError,
)

T0 = TopicPartition("t", 0)
T1 = TopicPartition("t", 1)
TS = 1_700_000_000_000


#: how long a poll waits for records just written (returning as soon as they are there)
WAIT_MS = 10_000


def on_kafka(client: object) -> bool:
    """Whether ``client`` (a Log or a consumer) is on the kafka backend."""
    return getattr(client, "engine", None) == "kafka" or type(client).__name__ == "KafkaConsumer"


def produce(log: pylog.Log, tp: TopicPartition, values, keys=None, headers=None, timestamps_ms=None) -> int:
    """Append one batch to ``tp`` (the engine's append through the backend; on Kafka a plain
    confluent producer, acknowledged); the base offset."""
    if on_kafka(log):
        return produce_to_kafka(log, tp, list(values), keys, headers, timestamps_ms)
    return log._backend.partition_log(tp).append(
        list(values), keys=keys, headers=headers, timestamps_ms=timestamps_ms
    )


def produce_to_kafka(log: pylog.Log, tp: TopicPartition, values, keys, headers, timestamps_ms) -> int:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": log.backend.properties["bootstrap.servers"], "linger.ms": 20})
    reports: list = []
    for i, value in enumerate(values):
        extra: dict = {}
        if timestamps_ms is not None:
            extra["timestamp"] = timestamps_ms[i]
        if headers is not None and headers[i]:
            extra["headers"] = list(headers[i])
        producer.produce(
            tp.topic,
            value=value,
            key=None if keys is None else keys[i],
            partition=tp.partition,
            on_delivery=lambda err, msg: reports.append((err, msg.offset())),
            **extra,
        )
    assert producer.flush(30) == 0, "the records were not acknowledged in time"
    assert [err for err, _ in reports] == [None] * len(values)
    return min(offset for _, offset in reports)


def poll_some(consumer, **kw) -> dict:
    """A poll that waits for records (at once when they are there)."""
    return consumer.poll(timeout_ms=WAIT_MS, **kw)


def collect(consumer, count: int, **kw) -> dict:
    """Polls until ``count`` records came, merged by partition."""
    out: dict = {}
    got = 0
    for _ in range(100):
        for tp, records in poll_some(consumer, **kw).items():
            out.setdefault(tp, []).extend(records)
            got += len(records)
        if got >= count:
            return out
    raise AssertionError(f"only {got} of {count} records came")


def poll_until_raises(consumer, error: type[BaseException]) -> pytest.ExceptionInfo:
    """Polls until one raises ``error`` (at once on the embedded backend; on Kafka the fetch
    that reports it comes within a few polls)."""
    with pytest.raises(error) as caught:
        for _ in range(200):
            consumer.poll(timeout_ms=50 if on_kafka(consumer) else 0)
    return caught


def offsets(fetched: dict) -> dict:
    return {tp: [r.offset for r in records] for tp, records in fetched.items()}


def drain(consumer, *, max_polls: int = 100) -> list[ConsumerRecord]:
    """Every record until a poll finds none (on Kafka one that waited a second)."""
    out: list[ConsumerRecord] = []
    for _ in range(max_polls):
        fetched = consumer.poll(timeout_ms=1000 if on_kafka(consumer) else 0)
        if not fetched:
            return out
        for records in fetched.values():
            out.extend(records)
    raise AssertionError("the consumer never ran dry")


@pytest.fixture
def topic(log: pylog.Log) -> str:
    log.create_topic("t", 2)
    return "t"


# ---------------------------------------------------------------------------------------------
# config


def test_defaults_are_kafka_pythons(log):
    c = log.consumer()
    cfg = c.config
    assert (cfg.group_id, cfg.auto_offset_reset, cfg.enable_auto_commit) == (None, "latest", True)
    assert (cfg.auto_commit_interval_ms, cfg.max_poll_records, cfg.session_timeout_ms) == (5000, 500, 45000)
    assert (cfg.heartbeat_interval_ms, cfg.max_poll_interval_ms) == (3000, 300000)
    assert cfg.partition_assignment_strategy == ("range", "roundrobin")
    assert cfg.consumer_timeout_ms == math.inf
    c.close()


@pytest.mark.parametrize(
    "config",
    [
        {"bootstrap_server": "localhost:9092"},  # a misspelt key is not a transport key
        {"auto_offset_reset": "oldest"},
        {"max_poll_records": 0},
        {"max_poll_records": "10"},
        {"enable_auto_commit": "yes"},
        {"group_id": ""},
        {"group_id": 7},
        {"group_instance_id": "i-1"},  # needs a group_id
        {"partition_assignment_strategy": ["sticky-ish"]},
        {"partition_assignment_strategy": []},
        {"key_deserializer": 42},
        {"consumer_timeout_ms": -1},
        {"session_timeout_ms": 1000, "heartbeat_interval_ms": 1000},
        {"auto_commit_interval_ms": True},
    ],
)
def test_unknown_or_bad_config_is_refused(log, config):
    with pytest.raises(InvalidConfigError) as e:
        log.consumer(**config)
    assert any(key in str(e.value) for key in config)


def test_assignment_strategies_by_name_or_by_object(log):
    class Named:
        name = "cooperative-sticky"

    c = log.consumer(group_id="g", partition_assignment_strategy=[Named, "range"])
    assert c.config.partition_assignment_strategy == ("cooperative-sticky", "range")
    c.close()


# ---------------------------------------------------------------------------------------------
# assign + poll


def test_poll_returns_kafka_python_consumer_records(log, topic):
    produce(
        log,
        T0,
        [b"v0", None, b"v2"],
        keys=[b"k0", b"k1", None],
        headers=[[("h", b"x"), ("\u00e9", None)], [], [("a", b"")]],
        timestamps_ms=[TS, TS + 1, TS + 2],
    )
    c = log.consumer(auto_offset_reset="earliest")
    c.assign([T0])
    fetched = poll_some(c)
    assert list(fetched) == [T0]
    records = fetched[T0]
    assert isinstance(records, list) and all(isinstance(r, ConsumerRecord) for r in records)
    assert records[0] == ConsumerRecord(
        "t", 0, -1, 0, TS, 0, b"k0", b"v0", [("h", b"x"), ("\u00e9", None)], None, 2, 2, 4
    )
    assert records[1] == ConsumerRecord("t", 0, -1, 1, TS + 1, 0, b"k1", None, [], None, 2, -1, -1)
    assert records[2] == ConsumerRecord("t", 0, -1, 2, TS + 2, 0, None, b"v2", [("a", b"")], None, -1, 2, 1)
    assert isinstance(records[0].headers, list) and isinstance(records[0].headers[0], tuple)
    assert c.position(T0) == 3 and type(c.position(T0)) is int
    assert c.poll() == {}
    c.close()


def test_max_records_caps_a_poll_inside_a_batch_and_the_next_poll_goes_on(log, topic):
    produce(log, T0, [b"%d" % i for i in range(10)])
    produce(log, T1, [b"%d" % i for i in range(4)])
    c = log.consumer(auto_offset_reset="earliest", max_poll_records=3)
    c.assign([T0, T1])
    seen: dict[TopicPartition, list[int]] = {T0: [], T1: []}
    polls = 0
    while fetched := c.poll(timeout_ms=1000 if on_kafka(log) else 0):
        polls += 1
        assert sum(len(v) for v in fetched.values()) <= 3
        for tp, got in offsets(fetched).items():
            seen[tp] += got
    assert seen == {T0: list(range(10)), T1: list(range(4))}
    assert polls >= 5
    assert (c.position(T0), c.position(T1)) == (10, 4)
    assert offsets(c.poll(max_records=1)) == {}
    with pytest.raises(ValueError):
        c.poll(max_records=0)
    with pytest.raises(TypeError):
        c.poll(max_records="1")
    with pytest.raises(ValueError):
        c.poll(timeout_ms=-1)
    c.close()


@pytest.mark.embedded_only("writes raw transactional batches through the engine")
def test_positions_step_over_control_batches(log, topic):
    """Transaction markers take offsets but are no records: positions move by the batch's next
    offset, never by counting records (compaction gaps follow the same rule)."""
    tlog = log._backend.partition_log(T0)
    for batch, _ in transactional_log():
        tlog.append_raw(batch)
    end = tlog.end_offset
    c = log.consumer(auto_offset_reset="earliest", max_poll_records=1)
    c.assign([T0])
    got = [r.offset for r in drain(c, max_polls=50)]
    assert got == DATA_OFFSETS
    assert c.position(T0) == end  # past the trailing commit marker
    c.close()


def test_reset_policies(log, topic):
    produce(log, T0, [b"a", b"b"])
    latest = log.consumer()
    latest.assign([T0])
    assert latest.position(T0) == 2
    produce(log, T0, [b"c"])
    assert offsets(poll_some(latest)) == {T0: [2]}
    earliest = log.consumer(auto_offset_reset="earliest")
    earliest.assign([T0])
    assert offsets(collect(earliest, 3)) == {T0: [0, 1, 2]}
    none = log.consumer(auto_offset_reset="none")
    none.assign([T0])
    with pytest.raises(NoOffsetForPartitionError):
        none.poll()
    with pytest.raises(NoOffsetForPartitionError):
        none.position(T0)
    none.seek(T0, 1)
    assert offsets(collect(none, 2)) == {T0: [1, 2]}
    for c in (latest, earliest, none):
        c.close()


@pytest.mark.parametrize("policy, expected", [("earliest", 0), ("latest", 3)])
def test_a_position_past_the_end_follows_the_reset_policy(log, topic, policy, expected):
    produce(log, T0, [b"a", b"b", b"c"])
    c = log.consumer(auto_offset_reset=policy)
    c.assign([T0])
    c.seek(T0, 10)
    if policy == "earliest":
        assert offsets(collect(c, 3)) == {T0: [0, 1, 2]}
    else:  # nothing to return; on Kafka the reset comes with one of the next polls
        for _ in range(200):
            assert offsets(c.poll(timeout_ms=50 if on_kafka(log) else 0)) == {}
            if c.position(T0) != 10:
                break
    assert c.position(T0) == 3 if policy == "earliest" else expected
    c.close()


def test_a_position_out_of_range_with_policy_none_raises(log, topic):
    produce(log, T0, [b"a"])
    c = log.consumer(auto_offset_reset="none")
    c.assign([T0])
    c.seek(T0, 5)
    e = poll_until_raises(c, OffsetOutOfRangeError)
    assert "t-0" in str(e.value) and not isinstance(e.value, NoOffsetForPartitionError)
    assert c.position(T0) == 5  # unchanged: the caller decides
    c.close()


def test_a_position_below_the_log_start_follows_the_reset_policy(engine, log_dir):
    """Records removed below the position (retention): earliest resets to the new log start,
    none raises."""
    with pylog.open(log_dir, engine=engine) as log:
        log.create_topic("t", 1, {"segment.bytes": 200})
        for i in range(6):
            produce(log, T0, [b"x" * 40, b"y" * 40], timestamps_ms=[TS + i, TS + i])
        assert len([n for n in os.listdir(log_dir / "t-0") if n.endswith(".log")]) > 2
    # retention by hand, with the log closed: the two oldest segments go away
    segments = sorted(n for n in os.listdir(log_dir / "t-0") if n.endswith(".log"))
    for name in segments[:2]:
        for suffix in (".log", ".index", ".timeindex"):
            Path(log_dir / "t-0" / name.replace(".log", suffix)).unlink(missing_ok=True)
    start = int(segments[2][:20])
    with pylog.open(log_dir, engine=engine) as log:
        c = log.consumer(auto_offset_reset="earliest")
        c.assign([T0])
        assert c.beginning_offsets([T0]) == {T0: start}
        c.seek(T0, 0)
        assert offsets(c.poll())[T0][0] == start
        strict = log.consumer(auto_offset_reset="none")
        strict.assign([T0])
        strict.seek(T0, 1)
        with pytest.raises(OffsetOutOfRangeError):
            strict.poll()
        c.close()
        strict.close()


def test_seek_and_seek_to_beginning_and_end(log, topic):
    produce(log, T0, [b"%d" % i for i in range(5)])
    produce(log, T1, [b"x"])
    c = log.consumer(auto_offset_reset="earliest")
    c.assign([T0, T1])
    c.seek(T0, 3)
    assert c.position(T0) == 3
    assert offsets(collect(c, 3)) == {T0: [3, 4], T1: [0]}
    c.seek_to_beginning(T0)
    assert c.position(T0) == 0 and c.position(T1) == 1
    c.seek_to_end()
    assert (c.position(T0), c.position(T1)) == (5, 1)
    c.seek_to_beginning()
    assert (c.position(T0), c.position(T1)) == (0, 0)
    with pytest.raises(ValueError):
        c.seek(T0, -1)
    with pytest.raises(TypeError):
        c.seek(("t", 0), 1)
    c.close()


def test_partitions_not_assigned_are_illegal_state(log, topic):
    c = log.consumer(group_id="g")
    c.assign([T0])
    for call in (
        lambda: c.position(T1),
        lambda: c.seek(T1, 0),
        lambda: c.seek_to_end(T1),
        lambda: c.pause(T1),
        lambda: c.commit({T1: OffsetAndMetadata(1, "", -1)}),
    ):
        with pytest.raises(IllegalStateError):
            call()
    c.close()


def test_assign_replaces_and_keeps_positions_of_partitions_that_stay(log, topic):
    produce(log, T0, [b"a", b"b"])
    c = log.consumer(auto_offset_reset="earliest")
    c.assign([T0])
    collect(c, 2)
    c.assign([T0, T1])
    assert c.assignment() == {T0, T1} and isinstance(c.assignment(), set)
    assert c.position(T0) == 2
    c.assign([T1])
    assert c.assignment() == {T1}
    c.assign([])
    assert c.assignment() == set()
    with pytest.raises(UnknownTopicOrPartitionError):
        c.assign([TopicPartition("t", 2)])
    with pytest.raises(UnknownTopicOrPartitionError):
        c.assign([TopicPartition("nope", 0)])
    with pytest.raises(TypeError):
        c.assign([("t", 0)])
    c.close()


def test_pause_resume_paused(log, topic):
    produce(log, T0, [b"a"])
    produce(log, T1, [b"b"])
    c = log.consumer(auto_offset_reset="earliest")
    c.assign([T0, T1])
    c.pause(T0)
    assert c.paused() == {T0}
    assert offsets(poll_some(c)) == {T1: [0]}
    assert c.poll() == {}
    c.resume(T0)
    assert c.paused() == set()
    assert offsets(poll_some(c)) == {T0: [0]}
    c.close()


def test_offsets_lookups_return_kafka_python_types(log, topic):
    produce(log, T0, [b"a", b"b", b"c"], timestamps_ms=[TS, TS + 10, TS + 20])
    c = log.consumer()
    assert c.beginning_offsets([T0, T1]) == {T0: 0, T1: 0}
    assert c.end_offsets([T0, T1]) == {T0: 3, T1: 0}
    found = c.offsets_for_times({T0: TS + 5, T1: TS})
    assert found == {T0: OffsetAndTimestamp(1, TS + 10, -1), T1: None}
    assert isinstance(found[T0], OffsetAndTimestamp)
    assert c.offsets_for_times({T0: TS + 21}) == {T0: None}
    with pytest.raises(ValueError):
        c.offsets_for_times({T0: -1})
    with pytest.raises(UnknownTopicOrPartitionError):
        c.end_offsets([TopicPartition("t", 9)])
    c.close()


def test_iteration_ends_after_consumer_timeout_and_moves_positions_per_record(log, topic):
    produce(log, T0, [b"%d" % i for i in range(5)])
    # on Kafka the first fetch takes longer than the embedded 50 ms
    c = log.consumer(auto_offset_reset="earliest", consumer_timeout_ms=1000 if on_kafka(log) else 50)
    c.assign([T0])
    it = iter(c)
    first = next(it)
    assert first.offset == 0
    assert c.position(T0) == 1  # only what was handed out
    rest = [r.offset for r in it]
    assert rest == [1, 2, 3, 4]
    assert c.position(T0) == 5
    assert list(c) == []
    c.close()


@pytest.mark.embedded_only("writes raw transactional batches through the engine")
def test_iteration_position_steps_over_a_trailing_marker(log, topic):
    tlog = log._backend.partition_log(T0)
    for batch, _ in transactional_log():
        tlog.append_raw(batch)
    c = log.consumer(auto_offset_reset="earliest", consumer_timeout_ms=20)
    c.assign([T0])
    assert [r.offset for r in c] == DATA_OFFSETS
    assert c.position(T0) == tlog.end_offset
    c.close()


# ---------------------------------------------------------------------------------------------
# deserializers


def test_deserializers_callables_and_objects(log, topic):
    produce(log, T0, [b"1", None], keys=[b"k", None], headers=[[("h", b"v")], []])

    class Upper:
        def deserialize(self, topic, headers, data):
            return (topic, headers, None if data is None else data.upper())

    c = log.consumer(
        auto_offset_reset="earliest",
        key_deserializer=Upper(),
        value_deserializer=lambda b: None if b is None else int(b),
    )
    c.assign([T0])
    records = collect(c, 2)[T0]
    assert [(r.key, r.value) for r in records] == [(("t", [("h", b"v")], b"K"), 1), (("t", [], None), None)]
    assert [r.serialized_value_size for r in records] == [1, -1]
    c.close()


def test_a_failing_deserializer_names_the_record_and_keeps_the_position(log, topic):
    produce(log, T0, [b"1", b"2", b"oops", b"4"])
    c = log.consumer(auto_offset_reset="earliest", value_deserializer=lambda b: int(b))
    c.assign([T0])
    assert [r.value for r in collect(c, 2)[T0]] == [1, 2]  # what came before the bad record
    assert c.position(T0) == 2
    for _ in range(2):  # a retry sees the same record again
        e = poll_until_raises(c, SerializationError)
        assert "t-0" in str(e.value) and "offset 2" in str(e.value)
        assert isinstance(e.value.__cause__, ValueError)
        assert c.position(T0) == 2
    c.seek(T0, 3)
    assert [r.value for r in poll_some(c)[T0]] == [4]
    c.close()


def test_a_failing_key_deserializer_says_key(log, topic):
    produce(log, T1, [b"v"], keys=[b"k"])
    c = log.consumer(auto_offset_reset="earliest", key_deserializer=lambda b: 1 / 0)
    c.assign([T1])
    e = poll_until_raises(c, SerializationError)
    assert re.search(r"key deserializer.*t-1 at offset 0", str(e.value))
    c.close()


# ---------------------------------------------------------------------------------------------
# modes, commits without a group, closing


def test_poll_without_subscription_or_assignment_is_illegal_state(log):
    c = log.consumer()
    with pytest.raises(IllegalStateError):
        c.poll()
    c.close()


def test_subscribe_without_a_group_takes_every_partition(log, topic):
    produce(log, T0, [b"a"])
    produce(log, T1, [b"b"])
    c = log.consumer("t", auto_offset_reset="earliest")
    assert c.subscription() == {"t"}
    assert c.assignment() == {T0, T1}
    assert sorted(r.value for r in drain(c)) == [b"a", b"b"]
    with pytest.raises(IllegalStateError):
        c.assign([T0])
    c.unsubscribe()
    assert c.subscription() is None and c.assignment() == set()
    c.assign([T0])
    with pytest.raises(IllegalStateError):
        c.subscribe(["t"])
    with pytest.raises(IllegalStateError):
        c.unsubscribe() or c.subscribe(["t"], pattern="t.*")
    with pytest.raises(ValueError):
        c.subscribe()
    c.close()


def test_pattern_subscription_without_a_group(log, topic):
    if not hasattr(log._backend, "list_topics"):
        pytest.skip("the backend's list_topics comes with the topics work")
    log.create_topic("t2", 1)
    log.create_topic("other", 1)
    c = log.consumer()
    c.subscribe(pattern="t.*")
    assert c.subscription() == {"t", "t2"}
    assert c.assignment() == {T0, T1, TopicPartition("t2", 0)}
    c.close()


def test_commits_need_a_group_id(log, topic):
    c = log.consumer()
    c.assign([T0])
    for call in (c.commit, c.commit_async, lambda: c.committed(T0)):
        with pytest.raises(InvalidGroupIdError):
            call()
    c.close()


def test_a_closed_consumer_refuses_everything(log, topic):
    c = log.consumer(group_id="g")
    c.assign([T0])
    c.close(autocommit=False)
    c.close()  # idempotent
    for call in (
        c.poll,
        lambda: c.position(T0),
        lambda: c.seek(T0, 0),
        c.assignment,
        c.commit,
        lambda: c.assign([T0]),
        lambda: c.subscribe(["t"]),
        lambda: c.end_offsets([T0]),
        c.poll_columns,
    ):
        with pytest.raises(ClientClosedError):
            call()
    assert list(c) == []


def test_the_log_stays_usable_after_bad_calls(log, topic):
    c = log.consumer(auto_offset_reset="earliest")
    with pytest.raises(UnknownTopicOrPartitionError):
        c.assign([TopicPartition("missing", 0)])
    produce(log, T0, [b"a"])
    c.assign([T0])
    assert offsets(poll_some(c)) == {T0: [0]}
    c.close()


# ---------------------------------------------------------------------------------------------
# both engines agree


def scenario(path: Path, engine: str) -> list:
    """Appends across segment rolls, markers and two partitions, then polls with small caps."""
    with pylog.open(path, engine=engine) as log:
        log.create_topic("t", 2, {"segment.bytes": 300})
        for i in range(12):
            produce(
                log,
                T0,
                [b"a%d" % i] * (1 + i % 3),
                keys=[b"k"] * (1 + i % 3),
                timestamps_ms=[TS + i] * (1 + i % 3),
            )
            if i % 4 == 0:
                log._backend.partition_log(T1).append_raw(transactional_log()[1][0])
            produce(log, T1, [b"b%d" % i], headers=[[("n", b"%d" % i)]], timestamps_ms=[TS + i])
        c = log.consumer(auto_offset_reset="earliest", max_poll_records=4)
        c.assign([T0, T1])
        polls = []
        while fetched := c.poll():
            polls.append({tp: [tuple(r) for r in records] for tp, records in fetched.items()})
        polls.append((c.position(T0), c.position(T1)))
        c.seek(T0, 5)
        polls.append(offsets(c.poll(max_records=3)))
        c.close()
        return polls


def test_both_engines_return_the_same_polls(tmp_path):
    native = scenario(tmp_path / "n", "native")
    reference = scenario(tmp_path / "r", "reference")
    assert native == reference
    assert len(native) > 5


def test_a_native_directory_reads_the_same_with_the_reference_engine(tmp_path):
    scenario(tmp_path / "n", "native")
    shutil.copytree(tmp_path / "n", tmp_path / "copy")
    with pylog.open(tmp_path / "copy", engine="reference") as log:
        c = log.consumer(auto_offset_reset="earliest")
        c.assign([T0, T1])
        got = drain(c)
        assert {r.partition for r in got} == {0, 1}
        c.close()


def test_a_deleted_topic_is_unknown_on_the_next_poll(log, topic):
    produce(log, T0, [b"a"])
    c = log.consumer(auto_offset_reset="earliest")
    c.assign([T0, T1])
    assert offsets(poll_some(c)) == {T0: [0]}
    log.delete_topic("t")
    poll_until_raises(c, UnknownTopicOrPartitionError)
    with pytest.raises(UnknownTopicOrPartitionError):
        c.end_offsets([T0])
    c.close()


def test_native_records_are_left_out_of_the_cyclic_collector(tmp_path):
    """The native engine builds ConsumerRecords untracked by the GC (they hold no cycles; a
    tracked container per record made every poll pay a young-generation collection); they
    still behave as ordinary records."""
    import gc

    with pylog.open(tmp_path / "n", engine="native") as log:
        log.create_topic("t", 1)
        produce(log, T0, [b"a", b"b"], headers=[[("h", b"1")], []])
        c = log.consumer(auto_offset_reset="earliest")
        c.assign([T0])
        records = c.poll()[T0]
        assert not any(gc.is_tracked(r) or gc.is_tracked(r.headers) for r in records)
        records[1].headers.append(("later", b"x"))
        gc.collect()
        assert records[0].headers == [("h", b"1")] and records[1].headers == [("later", b"x")]
        assert records[0] == ConsumerRecord(
            "t", 0, -1, 0, records[0].timestamp, 0, None, b"a", [("h", b"1")], None, -1, 1, 2
        )
        c.close()


def test_transport_keys_of_kafka_python_are_accepted_and_ignored(log) -> None:
    from pylog.consumer import IGNORED_KEYS

    assert {"bootstrap_servers", "security_protocol", "fetch_min_bytes", "request_timeout_ms"} <= IGNORED_KEYS
    log.create_topic("t")
    if on_kafka(log):  # they mean something there: mapped to librdkafka, or refused
        with pytest.raises(InvalidConfigError, match="bootstrap_servers"):
            log.consumer("t", bootstrap_servers="kafka:9092")  # not the Log's cluster
        with pytest.raises(UnsupportedError, match="socket_options"):
            log.consumer("t", socket_options=[(6, 1, 1)])
        consumer = log.consumer(
            "t", security_protocol="PLAINTEXT", fetch_min_bytes=1, request_timeout_ms=5000
        )
        assert consumer.assignment() == {pylog.TopicPartition("t", 0)}
        consumer.close()
        return
    consumer = log.consumer(
        "t", bootstrap_servers="kafka:9092", security_protocol="SSL", fetch_min_bytes=1, request_timeout_ms=5
    )
    try:
        assert consumer.poll(timeout_ms=0) == {}
        assert consumer.assignment() == {pylog.TopicPartition("t", 0)}
    finally:
        consumer.close()


def test_topics_and_partitions_for_topic(log) -> None:
    log.create_topic("a", partitions=3)
    log.create_topic("b")
    consumer = log.consumer()
    try:
        assert consumer.topics() == {"a", "b"}
        assert consumer.partitions_for_topic("a") == {0, 1, 2}
        assert consumer.partitions_for_topic("missing") is None
    finally:
        consumer.close()
    with pytest.raises(ClientClosedError):
        consumer.topics()
