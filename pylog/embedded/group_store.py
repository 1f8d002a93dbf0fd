"""The group coordinator's state: consumer groups in the catalog, shared by every process of a host.

Kafka keeps this in its group coordinator (apache/kafka group-coordinator/src/main/java/org/apache/
kafka/coordinator/group/): members, a generation, the assignment, committed offsets. Here the catalog
(SQLite, WAL) *is* the coordinator: every state transition below is one ``BEGIN IMMEDIATE``
transaction, made by whichever member (in any process) needs it, so there is no coordinator process
to crash. The tables are in ``group_schema.py``.

Protocol (server-side assignment, in the spirit of KIP-848, with KIP-429's incremental handoff):

- **Join** inserts a member row with its subscription and its assignors (preference order). Every
  change of membership (join, leave, eviction), of a subscription, or of the partitions the members'
  subscriptions cover (a topic created that matches a pattern, partitions added) bumps the group's
  ``generation`` and recomputes the *target* assignment in the same transaction, with the protocol
  every member supports (Kafka's vote: each member votes for its first supported one, most votes
  win; ties go to the earliest member's preference), through ``pylog.embedded.assignors.assign``.
- **Ownership** (``group_owners``) is what members hold now, at most one owner per partition (the
  primary key). A member takes a partition of its target only when no one owns it; the previous
  owner's row goes away only when that owner revokes it (``release``) or is evicted. So no two live
  members ever own one partition at the same instant, whatever the protocol. With the eager
  protocols (range, roundrobin) a member revokes everything on a new generation and takes its whole
  target at once, once all of it is free; with cooperative-sticky it keeps what stays and revokes
  only what moves (``sync``).
- **Liveness**: every transaction first evicts members whose last heartbeat is older than their
  ``session_timeout_ms`` or whose last poll is older than their ``max_poll_interval_ms`` (their
  ownership goes with them). Times come from ``CLOCK_BOOTTIME`` (``now_ns``), one clock for every
  process of the host (wall time never decides a timeout); a stored time later than now is from a
  previous boot, and expired.
- **Fencing**: a member's row carries ``member_epoch``, the generation it last synchronised to.
  A commit names member and epoch; it is refused with ``CommitFailedError`` (nothing applied) if the
  member is gone (evicted, left, replaced), its epoch is not the row's, or a partition is not owned
  by it. The check and the write are one transaction; the evictions the check makes are kept even
  when the commit is refused. As in KIP-848 (and unlike Kafka's classic protocol, which refuses
  every commit while a rebalance is in progress), a member that has not yet synchronised to a newer
  generation may still commit the partitions it owns: ownership, not the group's generation, is
  what makes a commit safe here, and it is what ``on_partitions_revoked`` commits rely on.
- **Static members** (``group_instance_id``) do not leave on close (KIP-345); one that comes back
  while its row is alive takes the row over (new member id, same target and ownership, no new
  generation); the replaced instance is fenced for good (``FencedInstanceIdError``).
- **Wake-ups**: after committing a transaction that changed the generation or released partitions,
  the store bumps the group's futex word in ``.groups.shm`` (``group_wakeup.py``), so members idle in
  ``poll`` in any process learn of it in microseconds rather than at their next heartbeat.
  ``heartbeat`` also returns the group's earliest expiry deadline, so a heartbeat thread looks again
  exactly then and a dead member is evicted at its deadline, not up to an interval later.

The store never calls the backend inside a transaction (the backend reads the same catalog through
the same per-thread connection): the topic map the rebalances need is fetched before, cached by
``backend.metadata_version()``.

Thread-safety: the catalog gives each thread its own connection; a ``GroupStore`` is shared by all
members of a backend and safe to call from any thread.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pylog.embedded.group_wakeup import GroupWakeup
from pylog.errors import (
    CommitFailedError,
    GroupIdNotFoundError,
    InconsistentGroupProtocolError,
    InvalidGroupIdError,
    NonEmptyGroupError,
    UnknownTopicOrPartitionError,
)
from pylog.offset_reset import checked_partitions, reset_offset_targets, reset_target
from pylog.types import OffsetAndMetadata, TopicPartition

_log = logging.getLogger("pylog")

EAGER_PROTOCOLS = frozenset({"range", "roundrobin"})

_CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def now_ns() -> int:
    """The host's boot clock in nanoseconds: comparable between processes, blind to wall-time jumps."""
    return time.clock_gettime_ns(_CLOCK)


def check_group_id(group_id: object) -> str:
    if not isinstance(group_id, str) or not group_id:
        raise InvalidGroupIdError(f"a group operation needs a non-empty group id, got {group_id!r}")
    return group_id


def matches(pattern: str, flags: int, topic: str) -> bool:
    """A pattern subscription covers a topic the pattern matches *whole* (Java's ``Matcher.matches``,
    as Kafka's ``SubscriptionPattern``/``subscribe(Pattern)``)."""
    return re.fullmatch(pattern, topic, flags) is not None


@dataclass(frozen=True)
class Subscription:
    """What a member asks for: explicit topics and/or a pattern (source and flags)."""

    topics: frozenset[str] = frozenset()
    pattern: str | None = None
    pattern_flags: int = 0

    def resolve(self, topic_map: Mapping[str, int]) -> set[str]:
        topics = {t for t in self.topics if t in topic_map}
        if self.pattern is not None:
            topics.update(t for t in topic_map if matches(self.pattern, self.pattern_flags, t))
        return topics


@dataclass(frozen=True)
class SyncResult:
    """What ``sync`` tells a member: ``fenced`` ("evicted"/"instance_fenced") or its generation,
    the group's protocol, its target, and the partitions it acquired in this transaction."""

    fenced: str | None
    generation: int = -1
    protocol: str | None = None
    target: frozenset[TopicPartition] = frozenset()
    acquired: frozenset[TopicPartition] = frozenset()


@dataclass(frozen=True)
class MemberDescription:
    member_id: str
    group_instance_id: str | None
    client_host: str
    client_pid: int
    member_epoch: int
    subscription: frozenset[str]
    assignment: frozenset[TopicPartition]  # owned now
    target: frozenset[TopicPartition]  # what the current generation gives it


@dataclass(frozen=True)
class GroupDescription:
    """``describe_group``: Kafka's states (Empty, PreparingRebalance — members not yet synchronised
    to the generation, CompletingRebalance — partitions still being handed over, Stable)."""

    group_id: str
    state: str
    protocol: str | None
    generation: int
    members: tuple[MemberDescription, ...]
    assignment: dict[TopicPartition, str]  # partition -> owning member id
    committed: dict[TopicPartition, OffsetAndMetadata]
    lag: dict[TopicPartition, int | None] = field(default_factory=dict)  # None: nothing committed


class _Txn:
    """One write transaction; ``bump`` asks for the group's wake-up after the commit."""

    __slots__ = ("bump", "db", "now")

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self.now = now_ns()  # after BEGIN IMMEDIATE: later than every committed time
        self.bump = False


class GroupStore:
    def __init__(self, catalog: Any, backend: Any):
        self._catalog = catalog
        self._backend = backend
        self.wakeup = GroupWakeup(backend.path)
        self._topic_lock = threading.Lock()
        self._topic_map_version: object = object()
        self._topic_map: dict[str, int] = {}
        self._live_members: weakref.WeakSet[Any] = weakref.WeakSet()

    def register(self, member: Any) -> None:
        """A ``GroupMember`` of this backend: ``close`` stops its heartbeat thread."""
        self._live_members.add(member)

    def close(self) -> None:
        """Stop every member's heartbeat thread (without leaving: a process closing its log is a
        member going away, the session timeout applies). The backend calls this before it closes
        the catalog, so no thread is inside a transaction when the connections go."""
        for member in list(self._live_members):
            member.stop_heartbeats()

    # ------------------------------------------------------------------ plumbing

    def topic_map(self) -> dict[str, int]:
        """``{topic: partitions}`` of every topic, cached until ``backend.metadata_version()`` moves."""
        version = self._backend.metadata_version()
        with self._topic_lock:
            if version == self._topic_map_version:
                return self._topic_map
        topics: dict[str, int] = {}
        for topic in self._backend.list_topics():
            try:
                topics[topic] = self._backend.partitions_for(topic)
            except UnknownTopicOrPartitionError:
                continue  # deleted since the listing
        with self._topic_lock:
            self._topic_map, self._topic_map_version = topics, version
        return topics

    @contextmanager
    def _txn(self, group_id: str) -> Iterator[_Txn]:
        with self._catalog.write() as db:
            txn = _Txn(db)
            yield txn
        if txn.bump:
            self.wakeup.bump(group_id)

    def _ensure_group(self, db: sqlite3.Connection, group_id: str) -> None:
        db.execute("INSERT OR IGNORE INTO consumer_groups (group_id) VALUES (?)", (group_id,))

    # ------------------------------------------------------------------ liveness and rebalancing

    def _expire(self, txn: _Txn, group_id: str, topic_map: Mapping[str, int]) -> None:
        """Evict members past their session timeout or max poll interval (ownership goes too)."""
        rows = txn.db.execute(
            "SELECT member_id, last_heartbeat_ns, session_timeout_ms, last_poll_ns, max_poll_interval_ms"
            " FROM group_members WHERE group_id=?",
            (group_id,),
        ).fetchall()
        expired = []
        for member_id, heartbeat_ns, session_ms, poll_ns, poll_interval_ms in rows:
            if heartbeat_ns > txn.now or txn.now - heartbeat_ns > session_ms * 1_000_000:
                _log.info(
                    "group %s: member %s evicted: no heartbeat within %d ms", group_id, member_id, session_ms
                )
                expired.append(member_id)
            elif txn.now - poll_ns > poll_interval_ms * 1_000_000:
                _log.info(
                    "group %s: member %s evicted: no poll within max_poll_interval_ms=%d",
                    group_id,
                    member_id,
                    poll_interval_ms,
                )
                expired.append(member_id)
        if expired:
            for member_id in expired:
                self._remove_member(txn.db, group_id, member_id)
            self._rebalance(txn, group_id, topic_map)

    def _remove_member(self, db: sqlite3.Connection, group_id: str, member_id: str) -> None:
        db.execute("DELETE FROM group_members WHERE group_id=? AND member_id=?", (group_id, member_id))
        db.execute("DELETE FROM group_owners WHERE group_id=? AND member_id=?", (group_id, member_id))

    def _members(self, db: sqlite3.Connection, group_id: str) -> list[tuple[Any, ...]]:
        return db.execute(
            "SELECT member_id, group_instance_id, assignors, topics, pattern, pattern_flags, member_epoch"
            " FROM group_members WHERE group_id=? ORDER BY join_seq",
            (group_id,),
        ).fetchall()

    @staticmethod
    def _subscription(row: tuple[Any, ...]) -> Subscription:
        return Subscription(frozenset(json.loads(row[3])), row[4], row[5])

    def _covered_partitions(
        self, members: list[tuple[Any, ...]], topic_map: Mapping[str, int]
    ) -> dict[str, int]:
        topics: set[str] = set()
        for row in members:
            topics |= self._subscription(row).resolve(topic_map)
        return {t: topic_map[t] for t in sorted(topics)}

    def _rebalance(self, txn: _Txn, group_id: str, topic_map: Mapping[str, int]) -> None:
        """A new generation with a new target assignment (same transaction as the change)."""
        from pylog.embedded.assignors import MemberSubscription, assign

        db = txn.db
        txn.bump = True
        members = self._members(db, group_id)
        # why read before the delete below: a member's unclaimed targets (partitions still being
        # handed over to it) count as its own for stickiness
        previous_targets = db.execute(
            "SELECT topic, partition, member_id FROM group_targets WHERE group_id=?", (group_id,)
        ).fetchall()
        db.execute("DELETE FROM group_targets WHERE group_id=?", (group_id,))
        if not members:
            db.execute(
                "UPDATE consumer_groups SET generation=generation+1, protocol=NULL, partitions='{}' WHERE group_id=?",
                (group_id,),
            )
            return
        protocol = select_protocol([json.loads(row[2]) for row in members])
        partitions = self._covered_partitions(members, topic_map)
        owners: dict[str, set[TopicPartition]] = {}
        owned_any: set[TopicPartition] = set()
        for topic, partition, member_id in db.execute(
            "SELECT topic, partition, member_id FROM group_owners WHERE group_id=?", (group_id,)
        ):
            tp = TopicPartition(topic, partition)
            owners.setdefault(member_id, set()).add(tp)
            owned_any.add(tp)
        # what a member will hold once handoffs complete: what it owns, plus its unclaimed targets
        for topic, partition, member_id in previous_targets:
            tp = TopicPartition(topic, partition)
            if tp not in owned_any:
                owners.setdefault(member_id, set()).add(tp)
        subscriptions = [
            MemberSubscription(
                member_id=row[0],
                group_instance_id=row[1],
                topics=tuple(sorted(self._subscription(row).resolve(topic_map))),
                owned=tuple(sorted(owners.get(row[0], ()))),
                generation=row[6],
            )
            for row in members
        ]
        result = assign(protocol, subscriptions, partitions)
        rows = [
            (group_id, tp.topic, tp.partition, member_id) for member_id, tps in result.items() for tp in tps
        ]
        expected = sum(partitions.values())
        if len(rows) != expected or len({(r[1], r[2]) for r in rows}) != expected:
            raise AssertionError(f"assignor {protocol!r} did not assign each of {expected} partitions once")
        db.executemany("INSERT INTO group_targets VALUES (?,?,?,?)", rows)
        db.execute(
            "UPDATE consumer_groups SET generation=generation+1, protocol=?, partitions=? WHERE group_id=?",
            (protocol, json.dumps(partitions), group_id),
        )

    # ------------------------------------------------------------------ member transitions

    def join(
        self,
        group_id: str,
        *,
        group_instance_id: str | None,
        assignors: list[str],
        subscription: Subscription,
        session_timeout_ms: int,
        max_poll_interval_ms: int,
    ) -> str:
        """Admit a member; returns its member id. A static member whose row is alive takes it over
        (same target and ownership, no rebalance unless its subscription changed)."""
        topic_map = self.topic_map()
        prefix = group_instance_id or "consumer"
        member_id = f"{prefix}-{uuid.uuid4()}"
        with self._txn(group_id) as txn:
            db = txn.db
            self._ensure_group(db, group_id)
            self._expire(txn, group_id, topic_map)
            for row in self._members(db, group_id):
                if not set(json.loads(row[2])) & set(assignors) and row[1] != group_instance_id:
                    raise InconsistentGroupProtocolError(
                        f"group {group_id!r}: member {row[0]} supports {json.loads(row[2])}, this one {assignors}"
                    )
            previous = None
            if group_instance_id is not None:
                previous = db.execute(
                    "SELECT member_id, topics, pattern, pattern_flags, assignors FROM group_members"
                    " WHERE group_id=? AND group_instance_id=?",
                    (group_id, group_instance_id),
                ).fetchone()
            settings = (
                json.dumps(assignors),
                json.dumps(sorted(subscription.topics)),
                subscription.pattern,
                subscription.pattern_flags,
                session_timeout_ms,
                max_poll_interval_ms,
            )
            if previous is not None:
                old_id = previous[0]
                _log.info("group %s: static member %s rejoins as %s", group_id, group_instance_id, member_id)
                for table in ("group_members", "group_owners", "group_targets"):
                    db.execute(
                        f"UPDATE {table} SET member_id=? WHERE group_id=? AND member_id=?",
                        (member_id, group_id, old_id),
                    )
                db.execute(
                    "UPDATE group_members SET assignors=?, topics=?, pattern=?, pattern_flags=?,"
                    " session_timeout_ms=?, max_poll_interval_ms=?, member_epoch=-1, last_heartbeat_ns=?,"
                    " last_poll_ns=?, client_host=?, client_pid=? WHERE group_id=? AND member_id=?",
                    (*settings, txn.now, txn.now, socket.gethostname(), os.getpid(), group_id, member_id),
                )
                if (previous[1], previous[2], previous[3], previous[4]) != (
                    settings[1],
                    settings[2],
                    settings[3],
                    settings[0],
                ):
                    self._rebalance(txn, group_id, topic_map)
                return member_id
            seq = db.execute(
                "UPDATE consumer_groups SET next_join_seq=next_join_seq+1 WHERE group_id=? RETURNING next_join_seq",
                (group_id,),
            ).fetchone()[0]
            db.execute(
                "INSERT INTO group_members (group_id, member_id, group_instance_id, assignors, topics, pattern,"
                " pattern_flags, session_timeout_ms, max_poll_interval_ms, member_epoch, join_seq,"
                " last_heartbeat_ns, last_poll_ns, client_host, client_pid) VALUES (?,?,?,?,?,?,?,?,?,-1,?,?,?,?,?)",
                (
                    group_id,
                    member_id,
                    group_instance_id,
                    *settings,
                    seq,
                    txn.now,
                    txn.now,
                    socket.gethostname(),
                    os.getpid(),
                ),
            )
            self._rebalance(txn, group_id, topic_map)
        return member_id

    def _fenced_reason(self, db: sqlite3.Connection, group_id: str, group_instance_id: str | None) -> str:
        if (
            group_instance_id is not None
            and db.execute(
                "SELECT 1 FROM group_members WHERE group_id=? AND group_instance_id=?",
                (group_id, group_instance_id),
            ).fetchone()
        ):
            return "instance_fenced"
        return "evicted"

    def sync(
        self,
        group_id: str,
        member_id: str,
        *,
        group_instance_id: str | None,
        member_epoch: int,
        subscription: Subscription,
        held: frozenset[TopicPartition],
        last_poll_ns: int,
    ) -> SyncResult:
        """Bring the member to the current generation and hand it the free partitions of its target.

        ``held`` is what the consumer holds now (not counting revocations it acknowledged). Rows of
        this member the consumer does not hold and the target does not want are released at once.
        Eager protocols: a member behind the generation revokes all (the caller does), and acquires
        its whole target only when every partition of it is free. Cooperative: it acquires the free
        part of its target now, the rest as the previous owners revoke it.
        """
        topic_map = self.topic_map()
        with self._txn(group_id) as txn:
            db = txn.db
            self._expire(txn, group_id, topic_map)
            row = db.execute(
                "SELECT topics, pattern, pattern_flags FROM group_members WHERE group_id=? AND member_id=?",
                (group_id, member_id),
            ).fetchone()
            if row is None:
                return SyncResult(fenced=self._fenced_reason(db, group_id, group_instance_id))
            if (json.loads(row[0]), row[1], row[2]) != (
                sorted(subscription.topics),
                subscription.pattern,
                subscription.pattern_flags,
            ):
                db.execute(
                    "UPDATE group_members SET topics=?, pattern=?, pattern_flags=? WHERE group_id=? AND member_id=?",
                    (
                        json.dumps(sorted(subscription.topics)),
                        subscription.pattern,
                        subscription.pattern_flags,
                        group_id,
                        member_id,
                    ),
                )
                self._rebalance(txn, group_id, topic_map)
            generation, protocol, partitions = db.execute(
                "SELECT generation, protocol, partitions FROM consumer_groups WHERE group_id=?", (group_id,)
            ).fetchone()
            if json.loads(partitions) != self._covered_partitions(self._members(db, group_id), topic_map):
                self._rebalance(txn, group_id, topic_map)
                generation, protocol = db.execute(
                    "SELECT generation, protocol FROM consumer_groups WHERE group_id=?", (group_id,)
                ).fetchone()
            target = frozenset(
                TopicPartition(t, p)
                for t, p in db.execute(
                    "SELECT topic, partition FROM group_targets WHERE group_id=? AND member_id=?",
                    (group_id, member_id),
                )
            )
            owner_of = {
                TopicPartition(t, p): m
                for t, p, m in db.execute(
                    "SELECT topic, partition, member_id FROM group_owners WHERE group_id=?", (group_id,)
                )
            }
            mine = {tp for tp, m in owner_of.items() if m == member_id}
            stray = mine - held - target
            if stray:
                self._delete_owners(db, group_id, member_id, stray)
                txn.bump = True
                mine -= stray
            revoking_all = protocol in EAGER_PROTOCOLS and member_epoch != generation
            keep = frozenset() if revoking_all else held & target
            wanted = target - keep
            takeable = {tp for tp in wanted if owner_of.get(tp, member_id) == member_id}
            if protocol in EAGER_PROTOCOLS and takeable != wanted:
                takeable = set()
            fresh = [(group_id, tp.topic, tp.partition, member_id) for tp in takeable if tp not in mine]
            db.executemany("INSERT INTO group_owners VALUES (?,?,?,?)", fresh)
            db.execute(
                "UPDATE group_members SET member_epoch=?, last_poll_ns=MAX(last_poll_ns, ?), last_heartbeat_ns=?"
                " WHERE group_id=? AND member_id=?",
                (generation, last_poll_ns, txn.now, group_id, member_id),
            )
            return SyncResult(None, generation, protocol, target, frozenset(takeable))

    def _delete_owners(
        self, db: sqlite3.Connection, group_id: str, member_id: str, tps: Iterable[TopicPartition]
    ) -> int:
        cursor = db.executemany(
            "DELETE FROM group_owners WHERE group_id=? AND topic=? AND partition=? AND member_id=?",
            [(group_id, tp.topic, tp.partition, member_id) for tp in tps],
        )
        return cursor.rowcount

    def release(self, group_id: str, member_id: str, tps: Iterable[TopicPartition]) -> None:
        """The member revoked these partitions: their target owners may take them now."""
        tps = list(tps)
        if not tps:
            return
        with self._txn(group_id) as txn:
            if self._delete_owners(txn.db, group_id, member_id, tps):
                txn.bump = True

    def heartbeat(self, group_id: str, member_id: str, last_poll_ns: int) -> tuple[bool, int, int | None]:
        """Record liveness (and the member's last poll); returns (still a member, the group's
        generation, the earliest time any member of the group expires unless it heartbeats), so the
        caller can look again exactly then: a dead member is evicted at its deadline, not up to one
        heartbeat interval later."""
        topic_map = self.topic_map()
        with self._txn(group_id) as txn:
            self._expire(txn, group_id, topic_map)
            cursor = txn.db.execute(
                "UPDATE group_members SET last_heartbeat_ns=?, last_poll_ns=MAX(last_poll_ns, ?)"
                " WHERE group_id=? AND member_id=?",
                (txn.now, last_poll_ns, group_id, member_id),
            )
            alive = cursor.rowcount == 1
            generation = txn.db.execute(
                "SELECT generation FROM consumer_groups WHERE group_id=?", (group_id,)
            ).fetchone()
            expiry = txn.db.execute(
                "SELECT MIN(MIN(last_heartbeat_ns + session_timeout_ms * 1000000,"
                " last_poll_ns + max_poll_interval_ms * 1000000)) FROM group_members WHERE group_id=?",
                (group_id,),
            ).fetchone()[0]
        return alive, generation[0] if generation else -1, expiry

    def leave(self, group_id: str, member_id: str) -> bool:
        """A clean leave: the member's partitions are free and the others rebalance at once.
        Returns whether the group's wake-up word was bumped."""
        topic_map = self.topic_map()
        with self._txn(group_id) as txn:
            self._expire(txn, group_id, topic_map)
            if txn.db.execute(
                "SELECT 1 FROM group_members WHERE group_id=? AND member_id=?", (group_id, member_id)
            ).fetchone():
                self._remove_member(txn.db, group_id, member_id)
                self._rebalance(txn, group_id, topic_map)
        return txn.bump

    # ------------------------------------------------------------------ offsets

    @staticmethod
    def _offset_rows(group_id: str, offsets: Mapping[TopicPartition, Any]) -> list[tuple[Any, ...]]:
        rows = []
        for tp, value in offsets.items():
            if not isinstance(tp, TopicPartition):
                raise TypeError(f"commit keys must be TopicPartition, got {tp!r}")
            if isinstance(value, int) and not isinstance(value, bool):
                value = OffsetAndMetadata(value, "", -1)
            if not isinstance(value, OffsetAndMetadata):
                raise TypeError(f"commit values must be OffsetAndMetadata, got {value!r} for {tp}")
            offset, metadata, leader_epoch = value
            if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
                raise ValueError(f"a committed offset must be an int >= 0, got {offset!r} for {tp}")
            rows.append((group_id, tp.topic, tp.partition, offset, metadata or "", leader_epoch))
        return rows

    @staticmethod
    def _upsert_offsets(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        db.executemany(
            "INSERT INTO group_offsets VALUES (?,?,?,?,?,?) ON CONFLICT(group_id, topic, partition) DO UPDATE"
            " SET committed_offset=excluded.committed_offset, metadata=excluded.metadata,"
            " leader_epoch=excluded.leader_epoch",
            rows,
        )

    def commit(
        self, group_id: str, member_id: str, member_epoch: int, offsets: Mapping[TopicPartition, Any]
    ) -> None:
        """A member's fenced commit: all or nothing (see the module header)."""
        rows = self._offset_rows(group_id, offsets)
        topic_map = self.topic_map()
        refusal = None
        with self._txn(group_id) as txn:
            db = txn.db
            self._expire(txn, group_id, topic_map)  # kept even if the commit is refused
            row = db.execute(
                "SELECT member_epoch FROM group_members WHERE group_id=? AND member_id=?",
                (group_id, member_id),
            ).fetchone()
            if row is None:
                refusal = f"member {member_id} is no longer in group {group_id!r} (evicted, left or replaced)"
            elif row[0] != member_epoch:
                refusal = f"generation {member_epoch} is stale: member {member_id} is at {row[0]} (ILLEGAL_GENERATION)"
            else:
                owned = {
                    (t, p)
                    for t, p in db.execute(
                        "SELECT topic, partition FROM group_owners WHERE group_id=? AND member_id=?",
                        (group_id, member_id),
                    )
                }
                foreign = sorted({(r[1], r[2]) for r in rows} - owned)
                if foreign:
                    refusal = f"member {member_id} does not own {[TopicPartition(*tp) for tp in foreign]}"
                else:
                    self._upsert_offsets(db, rows)
        if refusal is not None:
            raise CommitFailedError(f"commit refused, nothing applied: {refusal}")

    def commit_standalone(self, group_id: str, offsets: Mapping[TopicPartition, Any]) -> None:
        """A commit outside group membership (``assign()`` + ``group_id``): Kafka accepts it only
        while the group has no live members (else its generation check fails)."""
        check_group_id(group_id)
        rows = self._offset_rows(group_id, offsets)
        topic_map = self.topic_map()
        live = 0
        with self._txn(group_id) as txn:
            self._ensure_group(txn.db, group_id)
            self._expire(txn, group_id, topic_map)
            live = self._live_count(txn.db, group_id)
            if not live:
                self._upsert_offsets(txn.db, rows)
        if live:
            raise CommitFailedError(
                f"commit refused, nothing applied: group {group_id!r} has {live} live members"
                " (a consumer outside the group cannot commit for it)"
            )

    @staticmethod
    def _live_count(db: sqlite3.Connection, group_id: str) -> int:
        return db.execute("SELECT COUNT(*) FROM group_members WHERE group_id=?", (group_id,)).fetchone()[0]

    def fetch_committed(
        self, group_id: str, tps: Iterable[TopicPartition]
    ) -> dict[TopicPartition, OffsetAndMetadata | None]:
        check_group_id(group_id)
        tps = list(tps)
        with self._catalog.read() as db:
            found = {
                TopicPartition(t, p): OffsetAndMetadata(o, m, e)
                for t, p, o, m, e in db.execute(
                    "SELECT topic, partition, committed_offset, metadata, leader_epoch FROM group_offsets"
                    " WHERE group_id=?",
                    (group_id,),
                )
            }
        return {tp: found.get(tp) for tp in tps}

    # ------------------------------------------------------------------ admin

    def list_groups(self) -> list[str]:
        with self._catalog.read() as db:
            return [row[0] for row in db.execute("SELECT group_id FROM consumer_groups ORDER BY group_id")]

    def describe_group(self, group_id: str) -> GroupDescription:
        check_group_id(group_id)
        topic_map = self.topic_map()
        with self._txn(group_id) as txn:
            db = txn.db
            self._expire(txn, group_id, topic_map)
            group = db.execute(
                "SELECT generation, protocol FROM consumer_groups WHERE group_id=?", (group_id,)
            ).fetchone()
            if group is None:
                raise GroupIdNotFoundError(f"unknown group {group_id!r}")
            generation, protocol = group
            members = db.execute(
                "SELECT member_id, group_instance_id, client_host, client_pid, member_epoch, topics, pattern,"
                " pattern_flags FROM group_members WHERE group_id=? ORDER BY join_seq",
                (group_id,),
            ).fetchall()
            owners = {
                TopicPartition(t, p): m
                for t, p, m in db.execute(
                    "SELECT topic, partition, member_id FROM group_owners WHERE group_id=?", (group_id,)
                )
            }
            targets = {
                TopicPartition(t, p): m
                for t, p, m in db.execute(
                    "SELECT topic, partition, member_id FROM group_targets WHERE group_id=?", (group_id,)
                )
            }
            committed = {
                TopicPartition(t, p): OffsetAndMetadata(o, m, e)
                for t, p, o, m, e in db.execute(
                    "SELECT topic, partition, committed_offset, metadata, leader_epoch FROM group_offsets"
                    " WHERE group_id=?",
                    (group_id,),
                )
            }
        descriptions = tuple(
            MemberDescription(
                member_id=m[0],
                group_instance_id=m[1],
                client_host=m[2],
                client_pid=m[3],
                member_epoch=m[4],
                subscription=frozenset(
                    Subscription(frozenset(json.loads(m[5])), m[6], m[7]).resolve(topic_map)
                ),
                assignment=frozenset(tp for tp, owner in owners.items() if owner == m[0]),
                target=frozenset(tp for tp, owner in targets.items() if owner == m[0]),
            )
            for m in members
        )
        if not members:
            state = "Empty"
        elif any(m.member_epoch != generation for m in descriptions):
            state = "PreparingRebalance"
        elif owners != targets:
            state = "CompletingRebalance"
        else:
            state = "Stable"
        lag: dict[TopicPartition, int | None] = {}
        for tp in sorted(set(committed) | set(targets)):
            end = self._end_offset(tp)
            offset = committed.get(tp)
            lag[tp] = None if end is None or offset is None else max(end - offset.offset, 0)
        return GroupDescription(group_id, state, protocol, generation, descriptions, owners, committed, lag)

    def _end_offset(self, tp: TopicPartition) -> int | None:
        try:
            return self._backend.partition_log(tp).end_offset
        except UnknownTopicOrPartitionError:
            return None

    def delete_group(self, group_id: str) -> None:
        """Forget a group and its committed offsets; refused while it has live members."""
        check_group_id(group_id)
        topic_map = self.topic_map()
        live = 0
        with self._txn(group_id) as txn:
            db = txn.db
            self._expire(txn, group_id, topic_map)
            if not db.execute("SELECT 1 FROM consumer_groups WHERE group_id=?", (group_id,)).fetchone():
                raise GroupIdNotFoundError(f"unknown group {group_id!r}")
            live = self._live_count(db, group_id)
            if not live:
                for table in ("group_offsets", "group_targets", "group_owners", "consumer_groups"):
                    db.execute(f"DELETE FROM {table} WHERE group_id=?", (group_id,))
        if live:
            raise NonEmptyGroupError(f"group {group_id!r} has {live} live members")

    def reset_offsets(
        self,
        group_id: str,
        topic: str,
        to: object = "earliest",
        *,
        partitions: Iterable[int] | None = None,
        dry_run: bool = False,
    ) -> dict[TopicPartition, int]:
        """Set the group's committed offsets of ``topic`` (every partition, or ``partitions``) for
        reprocessing, as kafka-consumer-groups.sh ``--reset-offsets``
        (tools/src/main/java/org/apache/kafka/tools/consumer/group/ConsumerGroupCommand.java) does.
        ``to`` (``reset_target`` parses it) is ``"earliest"``, ``"latest"``, an offset, a
        timestamp (the first offset at or after it, else the end, as ``--to-datetime``) or a
        shift of the committed offset (``--shift-by``; a partition without one is an error, as
        there). Every new offset is clamped to the partition's ``[start, end]``, as the tool's
        ``checkOffsetsRange``. Refused (``NonEmptyGroupError``) while the group has live members,
        except ``dry_run``, which computes the same answer and writes nothing (so an operator can
        look before stopping the consumers). Returns the offsets set (or that would be)."""
        check_group_id(group_id)
        kind, amount = reset_target(to)
        count = self._backend.partitions_for(topic)
        chosen = range(count) if partitions is None else checked_partitions(topic, count, partitions)
        # why before the transaction: the store never calls the backend inside one (module header)
        ranges: dict[TopicPartition, tuple[int, int, int | None]] = {}
        for partition in chosen:
            tp = TopicPartition(topic, partition)
            log = self._backend.partition_log(tp)
            found = log.offset_for_timestamp(amount) if kind == "timestamp" else None
            ranges[tp] = (log.start_offset, log.end_offset, found)

        def targets(committed: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
            return reset_offset_targets(group_id, kind, amount, ranges, committed)

        if dry_run:
            with self._catalog.read() as db:
                return targets(self._committed_offsets(db, group_id, topic))
        topic_map = self.topic_map()
        live = 0
        new: dict[TopicPartition, int] = {}
        with self._txn(group_id) as txn:
            db = txn.db
            self._ensure_group(db, group_id)
            self._expire(txn, group_id, topic_map)
            live = self._live_count(db, group_id)
            if not live:
                # why inside: a shift starts from the offsets committed when it is written
                new = targets(self._committed_offsets(db, group_id, topic))
                self._upsert_offsets(
                    db, [(group_id, tp.topic, tp.partition, o, "", -1) for tp, o in new.items()]
                )
        if live:
            raise NonEmptyGroupError(
                f"group {group_id!r} has {live} live members: stop them before resetting"
            )
        return new

    @staticmethod
    def _committed_offsets(db: sqlite3.Connection, group_id: str, topic: str) -> dict[TopicPartition, int]:
        return {
            TopicPartition(topic, p): o
            for p, o in db.execute(
                "SELECT partition, committed_offset FROM group_offsets WHERE group_id=? AND topic=?",
                (group_id, topic),
            )
        }


def select_protocol(preferences: list[list[str]]) -> str:
    """Kafka's choice (ClassicGroup.selectProtocol): among the protocols every member supports,
    the one most members list first; a tie goes to the earliest member's preference."""
    common = set(preferences[0]).intersection(*map(set, preferences[1:]))
    if not common:
        raise InconsistentGroupProtocolError(f"the members share no assignor: {preferences}")
    votes: dict[str, int] = {}
    for prefs in preferences:
        vote = next(p for p in prefs if p in common)
        votes[vote] = votes.get(vote, 0) + 1
    order = [p for p in preferences[0] if p in common]
    return max(order, key=lambda p: (votes.get(p, 0), -order.index(p)))
