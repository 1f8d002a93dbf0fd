"""The group coordinator in the catalog (group_store.py) and the member protocol (coordinator.py).

Driven through ``GroupMember`` over a real ``EmbeddedBackend`` (one process, members in one or
several threads). Timeouts are tested with a fake clock patched into ``group_store.now_ns`` and
heartbeat intervals long enough that the heartbeat threads stay out of the way, so no test sleeps
to make time pass. The catalog is checked directly where the invariant lives (``group_owners``).
"""

from __future__ import annotations

import datetime
import random
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import pylog.embedded.group_store as group_store
from pylog.embedded.backend import EmbeddedBackend
from pylog.embedded.coordinator import AssignmentChange, GroupMember
from pylog.errors import (
    CommitFailedError,
    FencedInstanceIdError,
    GroupIdNotFoundError,
    InconsistentGroupProtocolError,
    InvalidConfigError,
    InvalidGroupIdError,
    NonEmptyGroupError,
    UnknownTopicOrPartitionError,
)
from pylog.types import OffsetAndMetadata, TopicPartition

LONG = {"session_timeout_ms": 60_000, "heartbeat_interval_ms": 50_000}


def tps(topic: str, *partitions: int) -> set[TopicPartition]:
    return {TopicPartition(topic, p) for p in partitions}


@pytest.fixture
def backend(tmp_path: Path, engine: str) -> Iterator[EmbeddedBackend]:
    opened = EmbeddedBackend(str(tmp_path / "log"), engine=engine)
    yield opened
    opened.close()


class Consumer:
    """The part of ``pylog.Consumer`` that drives a member, applying changes in the contract's order."""

    def __init__(self, backend: EmbeddedBackend, topics=("t",), pattern=None, **settings):
        settings = {**LONG, **settings}
        settings.setdefault("assignors", ["cooperative-sticky"])
        self.member = GroupMember(backend, group_id=settings.pop("group_id", "g"), **settings)
        self.member.subscribe(set(topics), pattern)
        self.owned: set[TopicPartition] = set()
        self.events: list[tuple[str, set[TopicPartition]]] = []

    def poll(self) -> AssignmentChange | None:
        change = self.member.poll(0)
        if change is not None:
            if change.lost:
                self.events.append(("lost", change.lost))
                self.owned -= change.lost
            if change.revoked:
                self.events.append(("revoked", change.revoked))
                self.owned -= change.revoked
                self.member.revoked(change.revoked)
            if change.assigned:
                self.events.append(("assigned", change.assigned))
                self.owned |= change.assigned
        assert self.owned == self.member.assignment()
        return change

    def close(self) -> None:
        self.member.close()


def settle(*consumers: Consumer, rounds: int = 20) -> None:
    """Poll every consumer until a whole round changes nothing (each poll is one handoff step)."""
    quiet = 0
    for _ in range(rounds):
        # a list, not a generator: every consumer polls each round; two quiet rounds in a row, as a
        # join made late in one round is answered by the others in the next
        quiet = quiet + 1 if all([c.poll() is None for c in consumers]) else 0
        if quiet == 2:
            return
    raise AssertionError("the group did not settle")


def owners(backend: EmbeddedBackend, group: str = "g") -> dict[TopicPartition, str]:
    db = sqlite3.connect(backend.catalog.path)
    try:
        return {
            TopicPartition(t, p): m
            for t, p, m in db.execute(
                "SELECT topic, partition, member_id FROM group_owners WHERE group_id=?", (group,)
            )
        }
    finally:
        db.close()


def check_invariant(backend: EmbeddedBackend, consumers: list[Consumer]) -> None:
    """What each consumer holds is owned by it in the catalog, so no two hold one partition."""
    catalog = owners(backend)
    seen: dict[TopicPartition, str] = {}
    for c in consumers:
        for tp in c.owned:
            assert catalog.get(tp) == c.member.member_id, (tp, catalog.get(tp), c.member.member_id)
            assert tp not in seen, f"{tp} held by {seen[tp]} and {c.member.member_id}"
            seen[tp] = c.member.member_id


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A fake boot clock for the store's transactions: tests move ``clock[0]`` (nanoseconds)."""
    now = [group_store.now_ns()]
    monkeypatch.setattr(group_store, "now_ns", lambda: now[0])
    return now


# ---------------------------------------------------------------------------------- join and rebalance


def test_a_lone_member_gets_every_partition_on_its_first_poll(backend: EmbeddedBackend) -> None:
    backend.create_topic("t", 3)
    c = Consumer(backend)
    change = c.poll()
    assert change == AssignmentChange(assigned=tps("t", 0, 1, 2))
    assert c.member.generation == 1 and c.member.member_id
    assert owners(backend) == dict.fromkeys(tps("t", 0, 1, 2), c.member.member_id)
    assert c.poll() is None  # nothing changed: no change, and the fast path answered
    c.close()
    assert owners(backend) == {}


@pytest.mark.parametrize("strategy", ["range", "roundrobin"])
def test_eager_protocols_revoke_everything_then_assign(backend: EmbeddedBackend, strategy: str) -> None:
    backend.create_topic("t", 4)
    a = Consumer(backend, assignors=[strategy])
    a.poll()
    b = Consumer(backend, assignors=[strategy])
    assert b.poll() is None  # everything is still a's
    change = a.poll()
    assert change is not None and change.revoked == tps("t", 0, 1, 2, 3)  # eager: revoke all ...
    assert len(change.assigned) == 2 and change.assigned < change.revoked  # ... then assign its share
    check_invariant(backend, [a, b])
    settle(a, b)
    assert a.owned | b.owned == tps("t", 0, 1, 2, 3) and len(b.owned) == 2
    check_invariant(backend, [a, b])
    assert a.member.protocol == strategy


def test_cooperative_keeps_what_stays_and_hands_over_after_the_revoke(backend: EmbeddedBackend) -> None:
    backend.create_topic("t", 4)
    a = Consumer(backend)
    a.poll()
    b = Consumer(backend)
    assert b.poll() is None
    change = a.poll()
    assert change is not None and change.assigned == set() and len(change.revoked) == 2
    moving = change.revoked
    assert a.owned == tps("t", 0, 1, 2, 3) - moving  # kept, never revoked
    assert b.poll() == AssignmentChange(assigned=moving)
    check_invariant(backend, [a, b])
    assert [e for e, _ in a.events] == ["assigned", "revoked"]


def test_unclaimed_targets_count_as_owned_for_the_next_assignment(
    backend: EmbeddedBackend, monkeypatch
) -> None:
    """A rebalance in the middle of a handoff: the partitions still on their way to a member are
    passed to the sticky assignor as that member's, so the handoff is not undone."""
    import pylog.embedded.assignors as assignors

    seen: list[dict[str, set[TopicPartition]]] = []
    real_assign = assignors.assign

    def spy(strategy, members, partitions_per_topic):
        seen.append({m.member_id: set(m.owned) for m in members})
        return real_assign(strategy, members, partitions_per_topic)

    monkeypatch.setattr(assignors, "assign", spy)
    backend.create_topic("t", 6)
    a = Consumer(backend)
    a.poll()
    b = Consumer(backend)
    b.poll()  # joins: 3 partitions of a's become b's target
    change = a.poll()  # a revokes and releases them; b has not claimed them yet
    assert change is not None and len(change.revoked) == 3 and b.owned == set()
    c = Consumer(backend)
    c.poll()  # a rebalance while the handoff to b is pending
    assert seen[-1][b.member.member_id] == change.revoked  # b's unclaimed targets
    assert seen[-1][a.member.member_id] == tps("t", *range(6)) - change.revoked
    settle(a, b, c)
    check_invariant(backend, [a, b, c])
    assert all(len(x.owned) == 2 for x in (a, b, c))


def test_a_partition_moves_only_once_its_owner_revoked_it(backend: EmbeddedBackend) -> None:
    backend.create_topic("t", 2)
    a = Consumer(backend)
    a.poll()
    b = Consumer(backend)
    b.poll()
    change = a.member.poll(0)  # a learns what to revoke but has not called revoked() yet
    assert change is not None and len(change.revoked) == 1
    moving = next(iter(change.revoked))
    assert owners(backend)[moving] == a.member.member_id
    assert b.poll() is None and b.owned == set()  # b waits
    a.member.commit({moving: OffsetAndMetadata(7)})  # the revoke listener may still commit
    a.member.revoked(change.revoked)
    assert b.poll() == AssignmentChange(assigned={moving})
    assert b.member.committed([moving]) == {moving: OffsetAndMetadata(7)}


def test_an_unacknowledged_revoke_is_released_by_the_next_poll(backend: EmbeddedBackend) -> None:
    backend.create_topic("t", 2)
    a = Consumer(backend)
    a.poll()
    b = Consumer(backend)
    b.poll()
    change = a.member.poll(0)
    assert change is not None and change.revoked
    a.member.poll(0)  # never called revoked(): the next poll releases them
    assert b.poll() == AssignmentChange(assigned=change.revoked)


def test_leave_triggers_an_immediate_rebalance(backend: EmbeddedBackend) -> None:
    backend.create_topic("t", 6)
    consumers = [Consumer(backend) for _ in range(3)]
    settle(*consumers)
    gone = consumers.pop()
    left_behind = set(gone.owned)
    generation = consumers[0].member.generation
    gone.close()
    settle(*consumers)
    assert consumers[0].member.generation == generation + 1
    assert left_behind <= consumers[0].owned | consumers[1].owned
    assert consumers[0].owned | consumers[1].owned == tps("t", *range(6))
    check_invariant(backend, consumers)


def test_subscription_change_rebalances(backend: EmbeddedBackend) -> None:
    backend.create_topic("t", 2)
    backend.create_topic("u", 2)
    a = Consumer(backend)
    a.poll()
    a.member.subscribe({"t", "u"}, None)
    settle(a)
    assert a.owned == tps("t", 0, 1) | tps("u", 0, 1)
    a.member.subscribe({"u"}, None)
    settle(a)
    assert a.owned == tps("u", 0, 1)
    assert ("revoked", tps("t", 0, 1)) in a.events


def test_a_new_topic_matching_the_pattern_and_added_partitions_rebalance(backend: EmbeddedBackend) -> None:
    backend.create_topic("orders-eu", 1)
    backend.create_topic("other", 1)
    a = Consumer(backend, topics=(), pattern=re.compile(r"orders-.*"))
    a.poll()
    assert a.owned == tps("orders-eu", 0)
    backend.create_topic("orders-us", 2)
    settle(a)
    assert a.owned == tps("orders-eu", 0) | tps("orders-us", 0, 1)
    if hasattr(backend, "create_partitions"):
        backend.create_partitions("orders-eu", 3)
        settle(a)
        assert tps("orders-eu", 0, 1, 2) <= a.owned


def test_the_protocol_is_the_one_every_member_supports_by_vote(backend: EmbeddedBackend) -> None:
    backend.create_topic("t", 2)
    a = Consumer(backend, assignors=["roundrobin", "range"])
    a.poll()
    assert a.member.protocol == "roundrobin"
    b = Consumer(backend, assignors=["range"])
    b.poll()
    settle(a, b)
    assert a.member.protocol == b.member.protocol == "range"
    c = Consumer(backend, assignors=["cooperative-sticky"])
    with pytest.raises(InconsistentGroupProtocolError):
        c.poll()
    assert group_store.select_protocol([["a", "b"], ["b", "a"], ["b"]]) == "b"
    assert group_store.select_protocol([["a", "b"], ["b", "a"]]) == "a"  # tie: the first member's


# ---------------------------------------------------------------------------------- fencing


def test_commit_is_fenced_and_atomic(backend: EmbeddedBackend) -> None:
    backend.create_topic("t", 2)
    a = Consumer(backend)
    a.poll()
    b = Consumer(backend)
    settle(a, b)
    mine, theirs = next(iter(a.owned)), next(iter(b.owned))
    with pytest.raises(CommitFailedError, match="does not own"):
        a.member.commit({mine: OffsetAndMetadata(5), theirs: OffsetAndMetadata(5)})
    assert a.member.committed([mine, theirs]) == {mine: None, theirs: None}  # nothing applied
    a.member.commit({mine: OffsetAndMetadata(5, "meta")})
    assert b.member.committed([mine]) == {mine: OffsetAndMetadata(5, "meta", -1)}
    # a stale generation (the member epoch the commit carries) is refused
    store = backend.group_store
    with pytest.raises(CommitFailedError, match="ILLEGAL_GENERATION"):
        store.commit("g", a.member.member_id, a.member.generation - 1, {mine: OffsetAndMetadata(9)})
    with pytest.raises(CommitFailedError, match="no longer in group"):
        store.commit("g", "consumer-unknown", a.member.generation, {mine: OffsetAndMetadata(9)})
    assert a.member.committed([mine]) == {mine: OffsetAndMetadata(5, "meta", -1)}


def test_an_evicted_member_cannot_commit_and_rejoins_with_its_partitions_lost(
    backend: EmbeddedBackend, clock: list[int]
) -> None:
    backend.create_topic("t", 2)
    a = Consumer(backend, session_timeout_ms=1_000, heartbeat_interval_ms=900)
    b = Consumer(backend, session_timeout_ms=60_000, heartbeat_interval_ms=50_000)
    settle(a, b)
    lost = set(a.owned)
    b_before = set(b.owned)
    clock[0] += 1_500_000_000  # a "paused" past its session timeout; b's next heartbeat evicts a
    assert backend.group_store.heartbeat("g", b.member.member_id, b.member._last_poll_ns)[0]
    settle(b)
    assert b.owned == tps("t", 0, 1) and b_before <= b.owned
    with pytest.raises(CommitFailedError, match="no longer in group"):
        a.member.commit({tp: OffsetAndMetadata(3) for tp in lost})
    assert b.member.committed(lost) == dict.fromkeys(lost)  # not applied
    old_id = a.member.member_id
    change = a.poll()
    assert change is not None and change.lost == lost and a.member.member_id != old_id
    settle(a, b)
    check_invariant(backend, [a, b])
    assert a.owned and a.owned | b.owned == tps("t", 0, 1)


def test_a_zombie_evicts_itself_on_its_own_next_transaction(
    backend: EmbeddedBackend, clock: list[int]
) -> None:
    backend.create_topic("t", 1)
    a = Consumer(backend, session_timeout_ms=1_000, heartbeat_interval_ms=900)
    a.poll()
    clock[0] += 2_000_000_000  # nobody else ran meanwhile
    with pytest.raises(CommitFailedError):
        a.member.commit({TopicPartition("t", 0): OffsetAndMetadata(1)})
    assert backend.group_store.describe_group("g").members == ()  # the eviction was kept


def test_a_member_that_stops_polling_is_removed(backend: EmbeddedBackend, clock: list[int]) -> None:
    backend.create_topic("t", 2)
    a = Consumer(backend, max_poll_interval_ms=1_000)
    b = Consumer(backend)
    settle(a, b)
    # a keeps heartbeating (its heartbeat carries its last poll time) but does not poll
    backend.group_store.heartbeat("g", a.member.member_id, a.member._last_poll_ns)
    clock[0] += 1_500_000_000
    backend.group_store.heartbeat("g", a.member.member_id, a.member._last_poll_ns)
    settle(b)
    assert b.owned == tps("t", 0, 1)
    assert a.poll().lost  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------- static membership


def test_a_static_member_coming_back_in_time_gets_its_partitions_without_a_rebalance(
    backend: EmbeddedBackend,
) -> None:
    backend.create_topic("t", 4)
    a = Consumer(backend, group_instance_id="a-1")
    b = Consumer(backend)
    settle(a, b)
    held, generation, a_id = set(a.owned), a.member.generation, a.member.member_id
    a.close()  # a static member does not leave: its partitions wait for it
    assert {tp for tp, m in owners(backend).items() if m == a_id} == held
    assert b.poll() is None
    a2 = Consumer(backend, group_instance_id="a-1")
    assert a2.poll() == AssignmentChange(assigned=held)
    assert a2.member.generation == generation and b.poll() is None  # b saw no rebalance
    check_invariant(backend, [a2, b])


def test_a_replaced_static_instance_is_fenced_for_good(backend: EmbeddedBackend) -> None:
    backend.create_topic("t", 1)
    a = Consumer(backend, group_instance_id="x")
    a.poll()
    a2 = Consumer(backend, group_instance_id="x")
    a2.poll()
    with pytest.raises(CommitFailedError):
        a.member.commit({TopicPartition("t", 0): OffsetAndMetadata(1)})
    with pytest.raises(FencedInstanceIdError):
        a.member.poll(0)
    assert a2.owned == tps("t", 0)


# ---------------------------------------------------------------------------------- the invariant


@pytest.mark.parametrize("strategy", ["cooperative-sticky", "range"])
def test_no_two_members_ever_own_a_partition_threads(backend: EmbeddedBackend, strategy: str) -> None:
    """Members in threads join, poll, commit and leave at random, concurrently. After every step, what
    a member holds is owned by it in the catalog, read while the member cannot change (its lock).
    Ownership rows are unique per partition (the primary key) and a member holds a partition only
    within the life of its row (acquired after the insert, dropped before the delete), so no two
    members ever hold one partition at the same instant."""
    backend.create_topic("t", 8)
    errors: list[BaseException] = []

    def check(c: Consumer) -> None:
        with c.member._lock:
            held = c.member.assignment()
            catalog = owners(backend)
        mine = {tp for tp, m in catalog.items() if m == c.member.member_id}
        assert held <= mine, (held, mine)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(6):
                c = Consumer(backend, assignors=[strategy])
                for _ in range(rng.randrange(3, 12)):
                    c.poll()
                    check(c)
                    if c.owned and rng.random() < 0.5:
                        c.member.commit({tp: OffsetAndMetadata(rng.randrange(100)) for tp in c.owned})
                c.close()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert owners(backend) == {}


# ---------------------------------------------------------------------------------- wake-ups


def test_a_join_wakes_an_idle_member_through_its_callback(backend: EmbeddedBackend) -> None:
    backend.create_topic("t", 2)
    a = Consumer(backend)
    a.poll()
    woken = threading.Event()
    a.member.set_wakeup(woken.set)
    b = Consumer(backend)
    b_woken = threading.Event()
    b.member.set_wakeup(b_woken.set)
    b.poll()  # bumps the group's word: a's heartbeat thread wakes and calls back
    assert woken.wait(10)
    b_woken.clear()
    change = a.poll()
    assert change is not None and change.revoked  # the release wakes b the same way
    assert b_woken.wait(10)
    assert b.poll() == AssignmentChange(assigned=change.revoked)
    a.close()
    b.close()


# ---------------------------------------------------------------------------------- standalone and admin


def test_standalone_commits_only_while_the_group_is_empty(backend: EmbeddedBackend) -> None:
    backend.create_topic("t", 1)
    store, tp = backend.group_store, TopicPartition("t", 0)
    store.commit_standalone("solo", {tp: OffsetAndMetadata(4)})
    assert store.fetch_committed("solo", [tp]) == {tp: OffsetAndMetadata(4, "", -1)}
    c = Consumer(backend, group_id="solo")
    c.poll()
    with pytest.raises(CommitFailedError, match="live members"):
        store.commit_standalone("solo", {tp: OffsetAndMetadata(9)})
    assert store.fetch_committed("solo", [tp])[tp].offset == 4  # type: ignore[union-attr]
    c.close()
    store.commit_standalone("solo", {tp: OffsetAndMetadata(9)})
    assert store.fetch_committed("solo", [tp])[tp].offset == 9  # type: ignore[union-attr]


def test_bad_input(backend: EmbeddedBackend) -> None:
    store = backend.group_store
    for bad in ("", None, 3):
        with pytest.raises(InvalidGroupIdError):
            GroupMember(backend, group_id=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidGroupIdError):
            store.describe_group(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidGroupIdError):
            store.commit_standalone(bad, {})  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError):
        GroupMember(backend, group_id="g", assignors=["sticky"])
    with pytest.raises(InvalidConfigError):
        GroupMember(backend, group_id="g", session_timeout_ms=100, heartbeat_interval_ms=100)
    with pytest.raises(InvalidConfigError):
        GroupMember(backend, group_id="g", max_poll_interval_ms=0)
    tp = TopicPartition("t", 0)
    with pytest.raises(ValueError):
        store.commit_standalone("g", {tp: OffsetAndMetadata(-1)})
    with pytest.raises(TypeError):
        store.commit_standalone("g", {("t", 0): OffsetAndMetadata(1)})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        store.commit_standalone("g", {tp: "1"})  # type: ignore[dict-item]
    with pytest.raises(GroupIdNotFoundError):
        store.describe_group("nope")
    with pytest.raises(GroupIdNotFoundError):
        store.delete_group("nope")
    assert store.list_groups() == []  # nothing half-written


def test_admin_describe_delete_and_reset(backend: EmbeddedBackend) -> None:
    backend.create_topic("t", 2)
    for p in range(2):
        backend.partition_log(TopicPartition("t", p)).append([b"x"] * (3 + p))
    store = backend.group_store
    c = Consumer(backend, group_id="app")
    c.poll()
    c.member.commit({TopicPartition("t", 0): OffsetAndMetadata(1)})
    d = store.describe_group("app")
    assert d.state == "Stable" and d.protocol == "cooperative-sticky" and d.generation == 1
    assert [m.member_id for m in d.members] == [c.member.member_id]
    assert d.members[0].assignment == tps("t", 0, 1) and d.members[0].subscription == {"t"}
    assert d.assignment == dict.fromkeys(tps("t", 0, 1), c.member.member_id)
    assert d.committed == {TopicPartition("t", 0): OffsetAndMetadata(1, "", -1)}
    assert d.lag == {TopicPartition("t", 0): 2, TopicPartition("t", 1): None}
    assert store.list_groups() == ["app"]
    with pytest.raises(NonEmptyGroupError):
        store.reset_offsets("app", "t", "earliest")
    with pytest.raises(NonEmptyGroupError):
        store.delete_group("app")
    c.close()
    assert store.describe_group("app").state == "Empty"
    assert store.reset_offsets("app", "t", "latest") == {TopicPartition("t", 0): 3, TopicPartition("t", 1): 4}
    assert store.reset_offsets("app", "t", 2) == {TopicPartition("t", 0): 2, TopicPartition("t", 1): 2}
    assert store.reset_offsets("app", "t", 99) == {TopicPartition("t", 0): 3, TopicPartition("t", 1): 4}
    assert store.reset_offsets("app", "t", "earliest") == {
        TopicPartition("t", 0): 0,
        TopicPartition("t", 1): 0,
    }
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    assert store.reset_offsets("app", "t", future) == {TopicPartition("t", 0): 3, TopicPartition("t", 1): 4}
    past = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    assert store.reset_offsets("app", "t", past) == {TopicPartition("t", 0): 0, TopicPartition("t", 1): 0}
    assert store.describe_group("app").lag == {TopicPartition("t", 0): 3, TopicPartition("t", 1): 4}
    with pytest.raises(TypeError):
        store.reset_offsets("app", "t", "middle")
    with pytest.raises(UnknownTopicOrPartitionError):
        store.reset_offsets("app", "missing", "earliest")
    store.delete_group("app")
    assert store.list_groups() == []
    assert store.fetch_committed("app", [TopicPartition("t", 0)]) == {TopicPartition("t", 0): None}
