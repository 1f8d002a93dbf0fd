"""Consumer groups through the public API: ``log.consumer(group_id=...)`` and the group admin calls.

Several consumers of one group live in one test (one thread drives them in turn, each ``poll``
being one step of the protocol), except where the point is a consumer idle in a blocking
``poll`` in its own thread. Cross-process behaviour is in test_group_processes.py; the protocol's
details (eviction with a fake clock, fencing, static members, the invariant) in
tests/test_group_store.py.
"""

from __future__ import annotations

import contextlib
import datetime
import re
import threading
from collections.abc import Iterator

import pytest

import pylog
from pylog.errors import (
    ClientClosedError,
    CommitFailedError,
    GroupIdNotFoundError,
    IllegalStateError,
    InvalidGroupIdError,
    NonEmptyGroupError,
    NoOffsetForPartitionError,
    UnknownTopicOrPartitionError,
)
from pylog.listener import ConsumerRebalanceListener
from pylog.types import OffsetAndMetadata, TopicPartition

FAST = {"session_timeout_ms": 10_000, "heartbeat_interval_ms": 1_000, "auto_offset_reset": "earliest"}


def tps(topic: str, *partitions: int) -> set[TopicPartition]:
    return {TopicPartition(topic, p) for p in partitions}


class Recorder(ConsumerRebalanceListener):
    def __init__(self) -> None:
        self.events: list[tuple[str, set[TopicPartition]]] = []

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.events.append(("assigned", assigned))

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.events.append(("revoked", revoked))

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.events.append(("lost", lost))


@pytest.fixture
def consumers(log: pylog.Log) -> Iterator[list]:
    made: list = []
    yield made
    for c in made:
        with contextlib.suppress(ClientClosedError):
            c.close()


def join(log: pylog.Log, consumers: list, *topics: str, listener=None, **config):
    c = log.consumer(group_id=config.pop("group_id", "g"), **{**FAST, **config})
    c.subscribe(topics=list(topics), listener=listener)
    consumers.append(c)
    return c


def settle(*cs, rounds: int = 30) -> dict:
    """Poll each consumer in turn until they hold every partition of their topics between them,
    each partition once, and a further round changes nothing; returns the records polled."""
    got: dict = {}
    topics = set().union(*(c.subscription() or set() for c in cs))
    log_of = cs[0]._backend  # the partition counts, as any client reads them
    everything = {TopicPartition(t, p) for t in topics for p in range(log_of.partitions_for(t))}
    quiet = 0
    for _ in range(rounds):
        before = [c.assignment() for c in cs]
        for c in cs:
            for tp, records in c.poll(timeout_ms=0).items():
                got.setdefault(tp, []).extend(records)
        held = [c.assignment() for c in cs]
        whole = set().union(*held) == everything and sum(map(len, held)) == len(everything)
        quiet = quiet + 1 if whole and held == before else 0
        if quiet == 2:
            return got
    raise AssertionError("the group did not settle")


def produce(log: pylog.Log, topic: str, values_per_partition: int, partitions: int) -> None:
    p = log.producer()
    for part in range(partitions):
        for i in range(values_per_partition):
            p.send(topic, f"{part}-{i}".encode(), partition=part)
    p.flush()
    p.close()


def test_two_consumers_share_a_topic_and_commit(log: pylog.Log, consumers: list) -> None:
    log.create_topic("t", 4)
    produce(log, "t", 5, 4)
    ra, rb = Recorder(), Recorder()
    a = join(log, consumers, "t", listener=ra, partition_assignment_strategy=["cooperative-sticky"])
    first = settle(a)
    assert a.assignment() == tps("t", 0, 1, 2, 3) and ra.events == [("assigned", tps("t", 0, 1, 2, 3))]
    assert sum(map(len, first.values())) == 20
    a.commit()
    b = join(log, consumers, "t", listener=rb, partition_assignment_strategy=["cooperative-sticky"])
    settle(a, b)
    assert len(a.assignment()) == len(b.assignment()) == 2
    assert ra.events[1] == ("revoked", b.assignment())  # only what moves
    assert rb.events == [("assigned", b.assignment())]
    for tp in b.assignment():
        assert b.position(tp) == 5 and b.committed(tp) == 5  # from a's commit
    d = log.describe_group("g")
    assert d.state == "Stable" and len(d.members) == 2 and d.protocol == "cooperative-sticky"
    assert set(d.assignment) == tps("t", 0, 1, 2, 3)
    assert d.lag == dict.fromkeys(tps("t", 0, 1, 2, 3), 0)


def test_close_leaves_and_the_others_take_over(log: pylog.Log, consumers: list) -> None:
    log.create_topic("t", 6)
    cs = [join(log, consumers, "t") for _ in range(3)]
    settle(*cs)
    gone = cs.pop()
    gone.close()
    settle(*cs)
    assert cs[0].assignment() | cs[1].assignment() == tps("t", *range(6))
    assert len(log.describe_group("g").members) == 2


def test_an_idle_member_in_a_blocking_poll_rebalances_quickly(log: pylog.Log, consumers: list) -> None:
    """A consumer blocked in poll(timeout_ms=60 s) in its own thread gives up partitions to a
    newcomer within that poll (the member's heartbeat thread wakes its fetch), not after it."""
    log.create_topic("t", 2)
    revoked = threading.Event()

    class OnRevoke(ConsumerRebalanceListener):
        def on_partitions_revoked(self, tps_: set[TopicPartition]) -> None:
            revoked.set()

    a = join(log, consumers, "t", listener=OnRevoke(), partition_assignment_strategy=["cooperative-sticky"])
    settle(a)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(a.poll(timeout_ms=60_000)))
    thread.start()
    b = join(log, consumers, "t", partition_assignment_strategy=["cooperative-sticky"])
    b.poll(timeout_ms=0)  # joins
    assert revoked.wait(10)  # a revoked inside its blocking poll
    for _ in range(100):
        if b.assignment():
            break
        b.poll(timeout_ms=100)
    assert len(b.assignment()) == 1
    (kept,) = tps("t", 0, 1) - b.assignment()
    p = log.producer()
    p.send("t", b"wake", partition=kept.partition)  # ends a's poll with a record
    p.flush()
    p.close()
    thread.join(30)
    assert not thread.is_alive()
    assert [r.value for r in result[kept]] == [b"wake"]


def test_a_new_topic_matching_the_pattern_joins_the_assignment(log: pylog.Log, consumers: list) -> None:
    log.create_topic("logs-a", 1)
    c = log.consumer(group_id="g", **FAST)
    consumers.append(c)
    c.subscribe(pattern=re.compile(r"logs-.*"))
    settle(c)
    assert c.assignment() == tps("logs-a", 0)
    log.create_topic("logs-b", 2)
    log.create_topic("other", 1)
    for _ in range(50):
        c.poll(timeout_ms=0)
        if len(c.assignment()) == 3:
            break
    assert c.assignment() == tps("logs-a", 0) | tps("logs-b", 0, 1)


@pytest.mark.embedded_only(
    "commits through the embedded group member (a._member), past the consumer's own check"
)
def test_a_commit_after_losing_the_partition_fails(log: pylog.Log, consumers: list) -> None:
    log.create_topic("t", 2)
    a = join(log, consumers, "t", partition_assignment_strategy=["cooperative-sticky"])
    settle(a)
    b = join(log, consumers, "t", partition_assignment_strategy=["cooperative-sticky"])
    settle(a, b)
    (theirs,) = b.assignment()
    with pytest.raises(IllegalStateError):  # not assigned locally: the consumer's own check
        a.commit({theirs: OffsetAndMetadata(1, "", -1)})
    # the group refuses what the member does not own, even if asked directly, and applies nothing
    (mine,) = a.assignment()
    before = a.committed(mine), b.committed(theirs)  # what auto-commit stored, if anything
    with pytest.raises(CommitFailedError):
        a._member.commit({mine: OffsetAndMetadata(7, "", -1), theirs: OffsetAndMetadata(7, "", -1)})
    assert (a.committed(mine), b.committed(theirs)) == before != (7, 7)


def test_static_member_restart_keeps_its_partitions(log: pylog.Log, consumers: list) -> None:
    log.create_topic("t", 4)
    a = join(log, consumers, "t", group_instance_id="worker-1", partition_assignment_strategy=["range"])
    b = join(log, consumers, "t", partition_assignment_strategy=["range"])
    settle(a, b)
    held, generation = a.assignment(), log.describe_group("g").generation
    a.close()
    a2 = join(log, consumers, "t", group_instance_id="worker-1", partition_assignment_strategy=["range"])
    settle(a2, b)
    assert a2.assignment() == held
    if log.engine != "kafka":  # Kafka's DescribeGroups answer has no generation (describe_group gives -1)
        assert log.describe_group("g").generation == generation  # no rebalance


def test_standalone_consumer_commits_for_an_empty_group(log: pylog.Log, consumers: list) -> None:
    log.create_topic("t", 1)
    produce(log, "t", 3, 1)
    tp = TopicPartition("t", 0)
    c = log.consumer(group_id="batch", **FAST)
    consumers.append(c)
    c.assign([tp])
    assert sum(map(len, c.poll(timeout_ms=1000).values())) == 3
    c.commit()
    assert c.committed(tp) == 3
    member = join(log, consumers, "t", group_id="batch")
    settle(member)
    with pytest.raises(CommitFailedError):
        c.commit({tp: OffsetAndMetadata(1, "", -1)})
    assert c.committed(tp) == 3


def test_group_admin(log: pylog.Log, consumers: list) -> None:
    log.create_topic("t", 2)
    produce(log, "t", 4, 2)
    c = join(log, consumers, "t", group_id="app")
    got = settle(c)
    assert sum(map(len, got.values())) == 8
    c.commit()
    assert log.list_groups() == ["app"]
    d = log.describe_group("app")
    assert d.state == "Stable" and len(d.members) == 1
    assert {tp: om.offset for tp, om in d.committed.items()} == dict.fromkeys(tps("t", 0, 1), 4)
    assert d.lag == dict.fromkeys(tps("t", 0, 1), 0)
    with pytest.raises(NonEmptyGroupError):
        log.reset_offsets("app", "t", to="earliest")
    with pytest.raises(NonEmptyGroupError):
        log.delete_group("app")
    c.close()
    assert log.describe_group("app").state == "Empty"
    assert log.reset_offsets("app", "t", to="earliest") == dict.fromkeys(tps("t", 0, 1), 0)
    assert log.describe_group("app").lag == dict.fromkeys(tps("t", 0, 1), 4)
    assert log.reset_offsets("app", "t", to=3) == dict.fromkeys(tps("t", 0, 1), 3)
    assert log.reset_offsets("app", "t", to="latest") == dict.fromkeys(tps("t", 0, 1), 4)
    an_hour_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    assert log.reset_offsets("app", "t", to=an_hour_ago) == dict.fromkeys(tps("t", 0, 1), 0)
    # a replay from the reset offsets
    again = join(log, consumers, "t", group_id="app")
    assert sum(map(len, settle(again).values())) == 8
    again.close()
    log.delete_group("app")
    assert log.list_groups() == []
    with pytest.raises(GroupIdNotFoundError):
        log.describe_group("app")
    with pytest.raises(GroupIdNotFoundError):
        log.delete_group("app")
    for bad in ("", None):
        with pytest.raises(InvalidGroupIdError):
            log.describe_group(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidGroupIdError):
            log.reset_offsets(bad, "t")  # type: ignore[arg-type]
        with pytest.raises(InvalidGroupIdError):
            log.delete_group(bad)  # type: ignore[arg-type]


def committed_offsets(log: pylog.Log, group_id: str) -> dict[TopicPartition, int]:
    return {tp: om.offset for tp, om in log.describe_group(group_id).committed.items()}


def test_reset_offsets_to_a_timestamp_a_shift_and_some_partitions(log: pylog.Log) -> None:
    log.create_topic("t", 3)
    p = log.producer()
    for partition in range(3):
        for i in range(6):  # timestamps 1000, 2000, ... 6000 on every partition
            p.send("t", b"v", partition=partition, timestamp_ms=(i + 1) * 1000)
    p.flush()
    p.close()
    assert log.reset_offsets("app", "t", to={"timestamp": 2500}) == dict.fromkeys(tps("t", 0, 1, 2), 2)
    assert log.reset_offsets("app", "t", to={"timestamp": 99_000}) == dict.fromkeys(tps("t", 0, 1, 2), 6)
    # a shift moves from each partition's committed offset, clamped to [start, end]
    assert log.reset_offsets("app", "t", to=1, partitions=[0]) == {TopicPartition("t", 0): 1}
    assert committed_offsets(log, "app") == {TopicPartition("t", 0): 1, **dict.fromkeys(tps("t", 1, 2), 6)}
    assert log.reset_offsets("app", "t", to={"shift": -2}) == {
        TopicPartition("t", 0): 0,
        **dict.fromkeys(tps("t", 1, 2), 4),
    }
    assert log.reset_offsets("app", "t", to={"shift": 1}, partitions=[2, 1, 2]) == dict.fromkeys(
        tps("t", 1, 2), 5
    )
    assert committed_offsets(log, "app") == {TopicPartition("t", 0): 0, **dict.fromkeys(tps("t", 1, 2), 5)}
    assert log.reset_offsets("app", "t", to={"shift": 100}, partitions=[0]) == {TopicPartition("t", 0): 6}
    # the old forms still work beside the new ones
    assert log.reset_offsets("app", "t", to="earliest", partitions=(1,)) == {TopicPartition("t", 1): 0}


def test_reset_offsets_dry_run_writes_nothing_and_may_look_at_a_live_group(
    log: pylog.Log, consumers: list
) -> None:
    log.create_topic("t", 2)
    produce(log, "t", 4, 2)
    assert log.reset_offsets("app", "t", to=3) == dict.fromkeys(tps("t", 0, 1), 3)
    for to, expected in (("earliest", 0), ("latest", 4), (1, 1), ({"shift": -1}, 2)):
        assert log.reset_offsets("app", "t", to=to, dry_run=True) == dict.fromkeys(tps("t", 0, 1), expected)
        assert committed_offsets(log, "app") == dict.fromkeys(tps("t", 0, 1), 3)
    # a dry run of a group that does not exist creates none
    assert log.reset_offsets("nobody", "t", dry_run=True) == dict.fromkeys(tps("t", 0, 1), 0)
    assert log.list_groups() == ["app"]
    c = join(log, consumers, "t", group_id="app")
    settle(c)
    assert log.describe_group("app").members
    with pytest.raises(NonEmptyGroupError):
        log.reset_offsets("app", "t", to={"shift": -1})
    assert log.reset_offsets("app", "t", to={"shift": -1}, dry_run=True) == dict.fromkeys(tps("t", 0, 1), 2)
    assert committed_offsets(log, "app") == dict.fromkeys(tps("t", 0, 1), 3)


def test_reset_offsets_refuses_bad_targets_and_partitions_changing_nothing(log: pylog.Log) -> None:
    log.create_topic("t", 2)
    produce(log, "t", 4, 2)
    log.reset_offsets("app", "t", to=2, partitions=[0])
    with pytest.raises(NoOffsetForPartitionError):  # partition 1 has no committed offset to shift
        log.reset_offsets("app", "t", to={"shift": 1})
    with pytest.raises(NoOffsetForPartitionError):
        log.reset_offsets("app", "t", to={"shift": 1}, dry_run=True)
    with pytest.raises(UnknownTopicOrPartitionError):
        log.reset_offsets("app", "t", partitions=[0, 2])
    with pytest.raises(UnknownTopicOrPartitionError):
        log.reset_offsets("app", "t", partitions=[-1])
    with pytest.raises(UnknownTopicOrPartitionError):
        log.reset_offsets("app", "missing")
    for bad in (
        "middle",
        True,
        {"shift": 1.5},
        {"timestamp": "now"},
        {"offset": 1},
        {"shift": 1, "timestamp": 2},
    ):
        with pytest.raises(TypeError):
            log.reset_offsets("app", "t", to=bad)
    with pytest.raises(ValueError):
        log.reset_offsets("app", "t", to=datetime.datetime(2020, 1, 1))  # naive: which zone?
    for bad_partitions in ("0", [0.0], 3):
        with pytest.raises(TypeError):
            log.reset_offsets("app", "t", partitions=bad_partitions)  # type: ignore[arg-type]
    assert committed_offsets(log, "app") == {TopicPartition("t", 0): 2}
