"""The consumer's side of group membership, against a small fake of the GroupMember contract.

The fake stands in for ``pylog.embedded.coordinator.GroupMember`` (its contract: the group member
section of the issue's interface notes, mirrored in pylog/consumer.py's docstring): it hands out
scripted ``AssignmentChange``s from ``poll`` and records every call, so these tests check what the
consumer does with them — the order of listener calls, positions, commits, auto-commit, the
wake-up of a blocked poll — on both engines. The real member's behaviour is the groups tests'.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

import pytest

from api.test_consumer import T0, T1, collect, offsets, on_kafka, produce
from pylog import ConsumerRebalanceListener, OffsetAndMetadata, TopicPartition
from pylog.errors import CommitFailedError, IllegalStateError, NoOffsetForPartitionError

T2 = TopicPartition("t", 2)


@dataclass
class Change:
    revoked: set = field(default_factory=set)
    lost: set = field(default_factory=set)
    assigned: set = field(default_factory=set)


class FakeMember:
    def __init__(self, **settings):
        self.settings = settings
        self.calls: list[tuple] = []
        self.changes: list[Change | None] = []
        self.store: dict[TopicPartition, OffsetAndMetadata] = {}
        self.owned: set[TopicPartition] = set()
        self.wakeup = None
        self.fail_commits = False
        self.poll_started = threading.Event()

    def subscribe(self, topics, pattern):
        self.calls.append(("subscribe", topics, pattern))

    def set_wakeup(self, callback):
        self.wakeup = callback

    def poll(self, timeout_ms):
        self.calls.append(("poll",))
        self.poll_started.set()
        change = self.changes.pop(0) if self.changes else None
        if change is not None:
            self.owned = (self.owned - change.revoked - change.lost) | change.assigned
        return change

    def revoked(self, tps):
        self.calls.append(("revoked", set(tps)))

    def assignment(self):
        return set(self.owned)

    def commit(self, offsets):
        self.calls.append(("commit", dict(offsets)))
        if self.fail_commits:
            raise CommitFailedError("stale generation")
        self.store.update(offsets)

    def committed(self, tps):
        return {tp: self.store.get(tp) for tp in tps}

    def leave(self):
        self.calls.append(("leave",))

    def close(self):
        self.calls.append(("close",))


class Recorder(ConsumerRebalanceListener):
    def __init__(self, consumer_box, events):
        self.box, self.events = consumer_box, events

    def on_partitions_revoked(self, revoked):
        self.events.append(("revoked", set(revoked)))

    def on_partitions_lost(self, lost):
        self.events.append(("lost", set(lost)))

    def on_partitions_assigned(self, assigned):
        consumer = self.box[0]
        self.events.append(("assigned", {tp: consumer.position(tp) for tp in assigned}))


@pytest.fixture
def member(log):
    if on_kafka(log):
        pytest.skip(
            "fakes the embedded backend's GroupMember; librdkafka's group is checked in "
            "tests/kafka_backend/test_consumer_kafka.py"
        )
    log.create_topic("t", 3)
    fake = FakeMember()

    def factory(**settings):
        fake.settings = settings
        return fake

    log._backend.group_member = factory
    return fake


def test_subscribe_creates_the_member_with_the_consumers_settings(log, member):
    c = log.consumer(
        group_id="g",
        group_instance_id="i-1",
        partition_assignment_strategy=["cooperative-sticky", "range"],
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        max_poll_interval_ms=9000,
    )
    c.subscribe(["t"])
    assert member.settings == {
        "group_id": "g",
        "group_instance_id": "i-1",
        "assignors": ["cooperative-sticky", "range"],
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 500,
        "max_poll_interval_ms": 9000,
    }
    assert member.calls == [("subscribe", {"t"}, None)]
    assert member.wakeup == c._fetcher.wakeup
    c.subscribe(pattern="t.*")
    assert member.calls[-1][:2] == ("subscribe", None) and member.calls[-1][2].pattern == "t.*"
    assert isinstance(member.calls[-1][2], re.Pattern)
    c.close(autocommit=False)


def test_changes_are_applied_in_kafkas_order(log, member):
    produce(log, T0, [b"a", b"b", b"c"])
    produce(log, T1, [b"x"])
    member.store[T0] = OffsetAndMetadata(1, "", -1)
    events: list = []
    box: list = []
    c = log.consumer(group_id="g", auto_offset_reset="earliest", enable_auto_commit=False)
    box.append(c)
    c.subscribe(["t"], listener=Recorder(box, events))
    member.changes = [Change(assigned={T0, T1, T2})]
    fetched = c.poll()
    assert events == [("assigned", {T0: 1, T1: 0, T2: 0})]  # committed, else the reset policy
    assert offsets(fetched) == {T0: [1, 2], T1: [0]}
    assert c.assignment() == {T0, T1, T2}
    member.calls.clear()
    member.changes = [Change(lost={T2}, revoked={T1}, assigned=set())]
    c.poll()
    assert events[1:] == [("lost", {T2}), ("revoked", {T1})]
    assert member.calls.index(("revoked", {T1})) > member.calls.index(("poll",))
    assert c.assignment() == {T0}
    with pytest.raises(IllegalStateError):
        c.position(T1)
    c.close(autocommit=False)
    assert ("leave",) in member.calls and member.calls[-1] == ("close",)


def test_commits_go_through_the_member_and_its_refusal_propagates(log, member):
    produce(log, T0, [b"a", b"b"])
    c = log.consumer(group_id="g", auto_offset_reset="earliest", enable_auto_commit=False)
    c.subscribe(["t"])
    member.changes = [Change(assigned={T0})]
    c.poll()
    c.commit()
    assert member.store == {T0: OffsetAndMetadata(2, "", -1)}
    assert c.committed(T0) == 2
    assert c.committed(T0, metadata=True) == OffsetAndMetadata(2, "", -1)
    assert c.committed(T1) is None
    member.fail_commits = True
    with pytest.raises(CommitFailedError):
        c.commit({T0: OffsetAndMetadata(1, "m", -1)})
    results = []
    future = c.commit_async(callback=lambda offs, err: results.append((offs, type(err))))
    assert results == [({T0: OffsetAndMetadata(2, "", -1)}, CommitFailedError)]
    assert isinstance(future.exception(), CommitFailedError)
    with pytest.raises(IllegalStateError):
        c.commit({T1: OffsetAndMetadata(0, "", -1)})
    c.close(autocommit=False)


def test_auto_commit_in_poll_before_revocation_and_on_close(log, member):
    produce(log, T0, [b"a", b"b"])
    produce(log, T1, [b"c"])
    events: list = []
    box: list = []
    c = log.consumer(group_id="g", auto_offset_reset="earliest", auto_commit_interval_ms=0)
    box.append(c)
    c.subscribe(["t"], listener=Recorder(box, events))
    member.changes = [Change(assigned={T0, T1})]
    c.poll()
    c.poll()  # commits what the first poll returned
    assert member.store == {T0: OffsetAndMetadata(2, "", -1), T1: OffsetAndMetadata(1, "", -1)}
    produce(log, T1, [b"d"])
    c.poll()
    member.changes = [Change(revoked={T1})]
    member.calls.clear()
    c.poll()
    commits = [call for call in member.calls if call[0] == "commit"]
    revoked_commit = ("commit", {T1: OffsetAndMetadata(2, "", -1)})
    assert revoked_commit in commits
    assert member.calls.index(("revoked", {T1})) > member.calls.index(revoked_commit)
    produce(log, T0, [b"e"])
    c.poll()
    c.close()
    assert member.store[T0] == OffsetAndMetadata(3, "", -1)
    assert events[-1] == ("revoked", {T0})  # close revokes what it owned, as Kafka's close does


def test_a_failed_auto_commit_is_logged_not_raised(log, member, caplog):
    c = log.consumer(group_id="g", auto_offset_reset="earliest", auto_commit_interval_ms=0)
    c.subscribe(["t"])
    member.changes = [Change(assigned={T0})]
    c.poll()
    member.fail_commits = True
    with caplog.at_level("WARNING", logger="pylog.consumer"):
        c.poll()
    assert "auto-commit" in caplog.text
    c.close(autocommit=False)


def test_policy_none_without_a_committed_offset_raises_after_the_listener(log, member):
    events: list = []
    c = log.consumer(group_id="g", auto_offset_reset="none")

    class Quiet(ConsumerRebalanceListener):
        def on_partitions_assigned(self, assigned):
            events.append(set(assigned))

    c.subscribe(["t"], listener=Quiet())
    member.changes = [Change(assigned={T0})]
    with pytest.raises(NoOffsetForPartitionError):
        c.poll()
    assert events == [{T0}]
    c.close(autocommit=False)


def test_a_listener_error_propagates_after_the_whole_change(log, member):
    class Broken(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            raise RuntimeError("user bug")

    c = log.consumer(group_id="g", auto_offset_reset="earliest", enable_auto_commit=False)
    c.subscribe(["t"], listener=Broken())
    member.changes = [Change(assigned={T0, T1}), Change(revoked={T1}, assigned={T2})]
    c.poll()
    with pytest.raises(RuntimeError, match="user bug"):
        c.poll()
    assert c.assignment() == {T0, T2}
    assert ("revoked", {T1}) in member.calls
    with pytest.raises(RuntimeError, match="user bug"):  # close revokes too, and still closes
        c.close(autocommit=False)
    assert member.calls[-2:] == [("leave",), ("close",)]


def test_the_members_wakeup_brings_a_blocked_poll_back_to_member_poll(log, member):
    c = log.consumer(group_id="g", auto_offset_reset="earliest", enable_auto_commit=False)
    c.subscribe(["t"])
    member.changes = [Change(assigned={T0})]
    produce(log, T1, [b"waiting for me"])
    result: list = []
    start = time.monotonic()

    def poller():
        result.append(c.poll(timeout_ms=30_000))

    thread = threading.Thread(target=poller)
    thread.start()
    # the member learns of a rebalance (from its heartbeat thread) and rings
    while len([call for call in member.calls if call == ("poll",)]) < 1:
        member.poll_started.wait(5)
    member.changes.append(Change(assigned={T1}))
    member.wakeup()
    thread.join(20)
    assert not thread.is_alive()
    assert offsets(result[0]) == {T1: [0]}
    assert time.monotonic() - start < 15
    assert member.calls.count(("poll",)) >= 2
    c.close(autocommit=False)


def test_unsubscribe_leaves_the_group(log, member):
    events: list = []
    box: list = []
    c = log.consumer(group_id="g", auto_offset_reset="earliest", enable_auto_commit=False)
    box.append(c)
    c.subscribe(["t"], listener=Recorder(box, events))
    member.changes = [Change(assigned={T0})]
    c.poll()
    c.unsubscribe()
    assert events[-1] == ("revoked", {T0})
    assert member.calls[-2:] == [("leave",), ("close",)]
    assert c.assignment() == set() and c.subscription() is None
    c.close()
    assert member.calls.count(("close",)) == 1


# ---------------------------------------------------------------------------------------------
# with the real group member and group store (pylog.embedded.coordinator / group_store)


def test_standalone_commits_with_a_group_id(log):
    log.create_topic("t", 2)
    produce(log, T0, [b"a", b"b", b"c"])
    first = log.consumer(group_id="solo", auto_offset_reset="earliest", enable_auto_commit=False)
    first.assign([T0, T1])
    assert first.committed(T0) is None
    assert offsets(collect(first, 2, max_records=2)) == {T0: [0, 1]}
    first.commit()
    assert first.committed(T0) == 2 and first.committed(T1) == 0
    results: list = []
    first.commit_async({T0: OffsetAndMetadata(1, "half", -1)}, callback=lambda o, e: results.append(e))
    assert results == [None]
    assert first.committed(T0, metadata=True) == OffsetAndMetadata(1, "half", -1)
    first.close()
    again = log.consumer(group_id="solo", auto_offset_reset="none", enable_auto_commit=False)
    again.assign([T0])
    assert again.position(T0) == 1  # from the committed offset
    assert offsets(collect(again, 2)) == {T0: [1, 2]}
    again.close()


def test_standalone_auto_commit_on_close(log):
    log.create_topic("t", 1)
    produce(log, T0, [b"a", b"b"])
    c = log.consumer(group_id="auto", auto_offset_reset="earliest")
    c.assign([T0])
    collect(c, 2)
    c.close()
    check = log.consumer(group_id="auto")
    assert check.committed(T0) == 2
    check.close()


def poll_until(consumers, done, timeout_s=30.0):
    """Poll every consumer in turn (short polls, one thread) until ``done(got)`` holds."""
    got: dict = {id(c): [] for c in consumers}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for c in consumers:
            for records in c.poll(timeout_ms=20).values():
                got[id(c)].extend((r.partition, r.offset) for r in records)
        if done(got):
            return got
    raise AssertionError(f"not done in {timeout_s} s: {[c.assignment() for c in consumers]}")


def test_a_real_group_splits_the_partitions_and_hands_them_over_on_close(log):
    log.create_topic("t", 3)
    for p in range(3):
        produce(log, TopicPartition("t", p), [b"%d-%d" % (p, i) for i in range(5)])
    settings = dict(group_id="real", auto_offset_reset="earliest", enable_auto_commit=False)
    a = log.consumer("t", **settings)
    b = log.consumer("t", **settings)
    everything = {(p, i) for p in range(3) for i in range(5)}

    def split_and_consumed(got):
        ours, theirs = a.assignment(), b.assignment()
        seen = got[id(a)] + got[id(b)]
        return ours and theirs and not ours & theirs and len(ours | theirs) == 3 and set(seen) == everything

    got = poll_until([a, b], split_and_consumed)
    a_parts = {p for p, _ in got[id(a)]}
    a.commit()
    b.commit()
    for p in range(3):
        produce(log, TopicPartition("t", p), [b"late"])
    a.close()
    late = {(p, 5) for p in range(3)}
    got = poll_until([b], lambda g: b.assignment() == {T0, T1, T2} and late <= set(g[id(b)]))
    # a's partitions resume from a's commit: nothing below it is read again
    assert all(offset == 5 for p, offset in got[id(b)] if p in a_parts)
    b.close()
