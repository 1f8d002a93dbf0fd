"""``GroupMember``: one consumer's membership of a group — join, heartbeats, rebalances, fenced commits.

The consumer side of the protocol that ``group_store.py`` documents (the catalog is the coordinator).
What the Consumer calls, and in which order it applies an ``AssignmentChange``, is fixed by the
issue-6 contract: ``poll`` first in every ``Consumer.poll``; then ``lost`` (listener, drop
positions), ``revoked`` (listener — the user may commit there — drop positions, then
``member.revoked(revoked)``), ``assigned`` (positions from ``committed`` or the reset policy, then
the listener).

Local state: ``_held`` is what the consumer holds (its assignment); a revocation handed out by
``poll`` stays held (commits for it still succeed, as in Kafka's ``onPartitionsRevoked``) until
``revoked()`` releases it in the catalog (or, if the consumer never calls it, the next ``poll``).
``_pending`` is the part of the target still owned by others; the heartbeat thread wakes the
consumer when they release it.

``poll`` is cheap when nothing changed: no SQL unless the group's wake-up word moved (a join, a
leave, an eviction, a release: what completes a pending handoff), the member was fenced, or the
subscription or the catalog's metadata version changed. The last poll time is kept in memory and
written by the heartbeat thread (``max_poll_interval_ms`` is checked at heartbeat granularity).

Heartbeat thread (daemon, one per joined member; never calls user code): every
``heartbeat_interval_ms`` it records liveness (evicting expired members of the group on the way);
between heartbeats it sleeps on the group's futex word, so a change made by any process (a join, a
leave, an eviction, a release) wakes it at once; it then calls the consumer's wake-up callback
(``set_wakeup``) so a consumer blocked in a fetch comes back to ``poll``. It also calls it when it
finds the member fenced, the generation moved, or the topic metadata changed. Each heartbeat (SQLite
calls) is one ``pylog.forking.background_work`` unit, so a fork never cuts one in half; a forked
child disowns every member made before the fork (``_disown_after_fork``).

Thread-safety: ``poll``/``commit``/``revoked``/``leave`` come from the consumer's thread; the
heartbeat thread shares ``_lock`` with them for the member's identity and local state, and never
holds it across a catalog transaction of its own.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pylog.embedded.group_store import EAGER_PROTOCOLS, Subscription, check_group_id, now_ns
from pylog.errors import (
    ClientClosedError,
    CommitFailedError,
    FencedInstanceIdError,
    InvalidConfigError,
)
from pylog.forking import background_work, disown_in_forked_child
from pylog.types import OffsetAndMetadata, TopicPartition

_log = logging.getLogger("pylog")

KNOWN_ASSIGNORS = ("range", "roundrobin", "cooperative-sticky")


@dataclass
class AssignmentChange:
    """What the consumer must apply now (see the module header for the order)."""

    revoked: set[TopicPartition] = field(default_factory=set)
    lost: set[TopicPartition] = field(default_factory=set)
    assigned: set[TopicPartition] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.revoked or self.lost or self.assigned)


def _positive_ms(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidConfigError(f"{name} must be a positive int (milliseconds), got {value!r}")
    return value


class GroupMember:
    def __init__(
        self,
        backend: Any,
        *,
        group_id: str,
        group_instance_id: str | None = None,
        assignors: Iterable[str] = ("range", "roundrobin"),
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        max_poll_interval_ms: int = 300_000,
    ):
        self.group_id = check_group_id(group_id)
        if group_instance_id is not None and (
            not isinstance(group_instance_id, str) or not group_instance_id
        ):
            raise InvalidConfigError(
                f"group_instance_id must be a non-empty str or None, got {group_instance_id!r}"
            )
        self.group_instance_id = group_instance_id
        names = list(assignors)
        unknown = [n for n in names if n not in KNOWN_ASSIGNORS]
        if not names or unknown or len(set(names)) != len(names):
            raise InvalidConfigError(
                f"partition_assignment_strategy must list distinct assignors among {KNOWN_ASSIGNORS}, got {names!r}"
            )
        self._assignors = names
        self._session_timeout_ms = _positive_ms("session_timeout_ms", session_timeout_ms)
        self._heartbeat_interval_ms = _positive_ms("heartbeat_interval_ms", heartbeat_interval_ms)
        self._max_poll_interval_ms = _positive_ms("max_poll_interval_ms", max_poll_interval_ms)
        if heartbeat_interval_ms >= session_timeout_ms:
            raise InvalidConfigError(
                f"heartbeat_interval_ms ({heartbeat_interval_ms}) must be lower than session_timeout_ms"
                f" ({session_timeout_ms})"
            )
        self._backend = backend
        self._store = backend.group_store
        self._lock = threading.RLock()
        self._subscription: Subscription | None = None
        self._member_id = ""
        self._generation = -1
        self._protocol: str | None = None
        self._held: set[TopicPartition] = set()
        self._pending: frozenset[TopicPartition] = frozenset()
        self._unacked_revoke: set[TopicPartition] = set()
        self._fenced = False
        self._closed = False
        self._synced_word: int | None = None
        self._synced_metadata: object = None
        self._synced_subscription: Subscription | None = None
        self._last_poll_ns = now_ns()
        self._wakeup: Callable[[], None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._store.register(self)
        disown_in_forked_child(self)

    # ------------------------------------------------------------------ properties

    @property
    def member_id(self) -> str:
        return self._member_id

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def protocol(self) -> str | None:
        return self._protocol

    def assignment(self) -> set[TopicPartition]:
        with self._lock:
            return set(self._held)

    def set_wakeup(self, callback: Callable[[], None]) -> None:
        self._wakeup = callback

    def _wake_consumer(self) -> None:
        callback = self._wakeup
        if callback is not None:
            callback()

    # ------------------------------------------------------------------ subscription and poll

    def subscribe(self, topics: set[str] | None, pattern: re.Pattern[str] | None) -> None:
        """(Re)set the subscription; the next ``poll`` joins or rebalances."""
        with self._lock:
            self._check_open()
            self._subscription = Subscription(
                frozenset(topics or ()),
                None if pattern is None else pattern.pattern,
                0 if pattern is None else int(pattern.flags) & ~re.UNICODE,
            )

    def poll(self, timeout_ms: int = 0) -> AssignmentChange | None:
        """Join, rejoin or follow a rebalance; returns what the consumer must apply now, or None.

        Never blocks on other members: a partition still owned by another member is handed over
        by a later ``poll``, which the heartbeat thread prompts through the wake-up callback.
        """
        with self._lock:
            self._check_open()
            self._last_poll_ns = now_ns()
            if self._subscription is None or (
                not self._subscription.topics and self._subscription.pattern is None
            ):
                return None
            change = AssignmentChange()
            if self._unacked_revoke:
                self._release(set(self._unacked_revoke))
            if not self._member_id:
                self._join()
            elif not self._sync_needed():
                return change or None
            for _ in range(2):
                word = self._store.wakeup.load(self.group_id)
                metadata = self._backend.metadata_version()
                result = self._store.sync(
                    self.group_id,
                    self._member_id,
                    group_instance_id=self.group_instance_id,
                    member_epoch=self._generation,
                    subscription=self._subscription,
                    held=frozenset(self._held),
                    last_poll_ns=self._last_poll_ns,
                )
                if result.fenced is None:
                    break
                if result.fenced == "instance_fenced":
                    lost = self._drop_membership()
                    self._closed = True
                    self._stop.set()  # the heartbeat thread ends (close() joins it)
                    self._store.wakeup.bump(self.group_id)
                    raise FencedInstanceIdError(
                        f"group {self.group_id!r}: another consumer joined as group_instance_id"
                        f" {self.group_instance_id!r}; this one ({len(lost)} partitions) is out of the group"
                    )
                # evicted (session timeout or poll interval): everything held is lost; rejoin
                change.lost |= self._drop_membership()
                self._join()
            else:  # pragma: no cover - a rejoin is admitted in its own transaction
                raise AssertionError("evicted twice in one poll")
            self._synced_word, self._synced_metadata = word, metadata
            self._synced_subscription = self._subscription
            eager_round = result.protocol in EAGER_PROTOCOLS and self._generation != result.generation
            revoked = set(self._held) if eager_round else self._held - result.target
            if revoked:
                change.revoked |= revoked
                self._unacked_revoke = set(revoked)
            held_after = (set() if eager_round else self._held & result.target) | result.acquired
            change.assigned |= held_after - (self._held - revoked)
            self._held = held_after
            self._pending = result.target - held_after
            self._generation, self._protocol = result.generation, result.protocol
            return change or None

    def _sync_needed(self) -> bool:
        # a pending handoff needs no look of its own: the release that completes it bumps the word
        return (
            self._fenced
            or self._synced_subscription != self._subscription
            or self._synced_word != self._store.wakeup.load(self.group_id)
            or self._synced_metadata != self._backend.metadata_version()
        )

    def _join(self) -> None:
        assert self._subscription is not None
        self._member_id = self._store.join(
            self.group_id,
            group_instance_id=self.group_instance_id,
            assignors=self._assignors,
            subscription=self._subscription,
            session_timeout_ms=self._session_timeout_ms,
            max_poll_interval_ms=self._max_poll_interval_ms,
        )
        self._generation = -1
        self._fenced = False
        self._start_heartbeats()

    def _drop_membership(self) -> set[TopicPartition]:
        """Forget a membership the group no longer has (its ownership went with the eviction)."""
        lost = set(self._held)
        if lost:
            _log.warning(
                "group %s: member %s lost %d partitions (fenced)", self.group_id, self._member_id, len(lost)
            )
        self._held, self._pending, self._unacked_revoke = set(), frozenset(), set()
        self._member_id, self._generation, self._fenced = "", -1, False
        return lost

    def revoked(self, tps: Iterable[TopicPartition]) -> None:
        """The consumer gave these up (after its listener): other members may take them now."""
        with self._lock:
            self._release(set(tps))

    def _release(self, tps: set[TopicPartition]) -> None:
        self._unacked_revoke -= tps
        released = tps - self._held  # an eager round may hand a revoked partition straight back
        if self._member_id and released:
            self._store.release(self.group_id, self._member_id, released)

    # ------------------------------------------------------------------ offsets

    def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        with self._lock:
            self._check_open()
            if not self._member_id:
                raise CommitFailedError(
                    f"commit refused, nothing applied: not a member of group {self.group_id!r} (rejoin by polling)"
                )
            member_id, generation = self._member_id, self._generation
        try:
            self._store.commit(self.group_id, member_id, generation, offsets)
        except CommitFailedError:
            with self._lock:
                if self._member_id == member_id:
                    self._synced_word = None  # the next poll finds out where the member stands
            raise

    def committed(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, OffsetAndMetadata | None]:
        return self._store.fetch_committed(self.group_id, tps)

    # ------------------------------------------------------------------ leaving

    def leave(self) -> None:
        """Unsubscribe/close: a dynamic member leaves the group (the others rebalance at once).
        A static member does not (Kafka's KIP-345): its partitions wait for it until its session
        times out."""
        with self._lock:
            member_id = self._member_id
            thread, self._thread = self._thread, None
            self._stop.set()
            self._held, self._pending, self._unacked_revoke = set(), frozenset(), set()
            self._member_id, self._generation, self._fenced = "", -1, False
            self._synced_word = None
        # outside the lock: the heartbeat thread may be waiting for it
        bumped = False
        if member_id and self.group_instance_id is None:
            bumped = self._store.leave(self.group_id, member_id)  # a rebalance bumps the word
        if thread is not None and not bumped:
            self._store.wakeup.bump(self.group_id)  # a change of value: the thread cannot miss it
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.leave()

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError(f"group member of {self.group_id!r} is closed")

    def _disown_after_fork(self) -> None:
        """In a forked child: the membership is the parent's. Forget it (a ``leave`` from here
        would remove the parent from its group) and replace the lock (the parent's heartbeat
        thread may have held it at the fork; that thread does not exist here)."""
        self._lock = threading.RLock()
        self._closed = True
        self._thread = None
        self._stop = threading.Event()
        self._member_id, self._generation = "", -1
        self._held, self._pending, self._unacked_revoke = set(), frozenset(), set()

    # ------------------------------------------------------------------ heartbeat thread

    def _start_heartbeats(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._heartbeat_loop,
            args=(self._stop,),
            name=f"pylog-heartbeat-{self.group_id}",
            daemon=True,
        )
        self._thread.start()

    def stop_heartbeats(self) -> None:
        """End the heartbeat thread (the backend is closing); the membership stays in the catalog."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None:
            self._store.wakeup.bump(self.group_id)
            if thread is not threading.current_thread():
                thread.join()

    def _heartbeat_loop(self, stop: threading.Event) -> None:
        wakeup = self._store.wakeup
        interval_ns = self._heartbeat_interval_ms * 1_000_000
        seen_word = wakeup.load(self.group_id)
        with background_work():
            seen_metadata = self._backend.metadata_version()
        next_beat = now_ns()
        while True:
            try:
                word = wakeup.load(self.group_id)
                if stop.is_set():
                    break
                if word != seen_word:
                    seen_word = word
                    self._wake_consumer()
                if now_ns() >= next_beat:
                    # why: SQLite calls, which a fork must not cut in half (pylog.forking)
                    with background_work():
                        with self._lock:
                            member_id, generation, last_poll = (
                                self._member_id,
                                self._generation,
                                self._last_poll_ns,
                            )
                        expiry = None
                        if member_id:
                            alive, group_generation, expiry = self._store.heartbeat(
                                self.group_id, member_id, last_poll
                            )
                            metadata = self._backend.metadata_version()
                            if not alive:
                                with self._lock:
                                    if self._member_id == member_id:
                                        self._fenced = True
                            if not alive or group_generation != generation or metadata != seen_metadata:
                                seen_metadata = metadata
                                self._wake_consumer()
                        next_beat = now_ns() + interval_ns
                        if expiry is not None:  # look again when a member expires
                            next_beat = min(next_beat, max(expiry + 1_000_000, now_ns() + 1_000_000))
                wakeup.wait(self.group_id, seen_word, max(next_beat - now_ns(), 0) / 1e9)
            except ClientClosedError:  # the backend closed under us
                return
            except Exception:  # a failed heartbeat must not kill the thread: retried next interval
                _log.exception("group %s: heartbeat failed", self.group_id)
                next_beat = now_ns() + interval_ns
                stop.wait(self._heartbeat_interval_ms / 1000)
