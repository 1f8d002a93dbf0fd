"""``pylog.Consumer``: kafka-python's ``KafkaConsumer`` over a pylog backend.

``log.consumer(*topics, **config)`` builds one. Config names and defaults are kafka-python's
(3.0): ``group_id`` (None), ``group_instance_id`` (None; static membership, needs a group),
``auto_offset_reset`` ('latest'; 'earliest', 'latest' or 'none'), ``enable_auto_commit``
(True), ``auto_commit_interval_ms`` (5000), ``max_poll_records`` (500), ``key_deserializer`` /
``value_deserializer`` (None; a callable ``f(data)`` or an object with
``deserialize(topic, headers, data)``, called for null data too, as kafka-python does),
``session_timeout_ms`` (45000), ``heartbeat_interval_ms`` (3000), ``max_poll_interval_ms``
(300000), ``partition_assignment_strategy`` (('range', 'roundrobin'); names or objects with a
``name``), ``consumer_timeout_ms`` (inf: iteration never ends by itself), and ``client_id``,
``max_partition_fetch_bytes`` (1 MiB). kafka-python's transport, security, metrics and fetch-request
keys (``IGNORED_KEYS``: ``bootstrap_servers``, ``ssl_*``, ``fetch_min_bytes``...) are accepted and
ignored, so a kafka-python program ports unchanged. Any other key, or a bad value, raises
``InvalidConfigError`` naming it.

Modes (Kafka's SubscriptionState): ``assign(partitions)`` (manual; commits with a ``group_id``
go to the group's stored offsets, accepted only while the group has no live members), or
``subscribe(topics | pattern)``: with a ``group_id`` the partitions come from the group (the
backend's ``GroupMember``); without one every partition of the subscribed topics is assigned to
this consumer, as kafka-python does. A pattern must match a whole topic name (Java's
``Pattern.matcher(topic).matches()``).

Group mode, in ``poll`` (always in the consumer's thread, as Kafka): ``member.poll`` first; the
``AssignmentChange`` it returns is applied in Kafka's order: lost partitions
(``on_partitions_lost``, positions dropped), revoked ones (auto-commit of their positions,
``on_partitions_revoked``, positions dropped, ``member.revoked``), assigned ones (positions from
the group's committed offsets or ``auto_offset_reset``, then ``on_partitions_assigned``). The
member's heartbeat thread calls ``Fetcher.wakeup`` to bring a blocked ``poll`` back to run a
rebalance now. Auto-commit runs in ``poll`` every ``auto_commit_interval_ms`` (committing what
earlier polls returned, so at-least-once), before a revocation, on ``unsubscribe`` and on
``close``.

Errors (``pylog.errors``): a closed consumer raises ``ClientClosedError``; ``position``/``seek``/
``commit`` of a partition not assigned, ``assign`` after ``subscribe`` (and the reverse) and
``poll`` with neither raise ``IllegalStateError``; commits and ``committed`` without a
``group_id`` raise ``InvalidGroupIdError``; a failing deserializer raises ``SerializationError``
naming topic, partition and offset, with the position left at that record (a retry sees it
again). Records already deserialized before it in the same poll are returned first (Kafka's
FetchCollector keeps the error for the next call the same way).

Not thread-safe, as Kafka's consumer: one thread uses it; ``wakeup`` is the fetcher's.

fork(): a consumer is its process's. In a child forked after it was made it is closed
(``ClientClosedError`` saying so; ``close`` does nothing): its group membership is the parent's,
and a child leaving the group in its name (on ``close``, ``Log.close``) would fence the parent.
Make a new consumer in the child.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from pylog.errors import (
    ClientClosedError,
    CommitFailedError,
    IllegalStateError,
    InvalidConfigError,
    InvalidGroupIdError,
    SerializationError,
    UnknownTopicOrPartitionError,
)
from pylog.forking import disown_in_forked_child
from pylog.listener import ConsumerRebalanceListener
from pylog.partition import Columns
from pylog.transport import TRANSPORT_KEYS
from pylog.types import ConsumerRecord, OffsetAndMetadata, OffsetAndTimestamp, TopicPartition

_log = logging.getLogger("pylog.consumer")

ASSIGNMENT_STRATEGIES = ("range", "roundrobin", "cooperative-sticky")

#: kafka-python consumer keys about the network, security, metrics or fetch requests; accepted (so
#: programs port unchanged) and ignored: an embedded consumer reads the files, with CRCs always
#: checked: the transport keys both clients ignore (``pylog.transport``) and the fetch-request ones.
IGNORED_KEYS = TRANSPORT_KEYS | frozenset(
    {
        "check_crcs",
        "client_rack",
        "enable_incremental_fetch_sessions",
        "exclude_internal_topics",
        "fetch_max_bytes",
        "fetch_max_wait_ms",
        "fetch_min_bytes",
        "metric_group_prefix",
    }
)


@dataclass(frozen=True)
class ConsumerConfig:
    """A consumer's validated settings (kafka-python's names and defaults)."""

    group_id: str | None = None
    group_instance_id: str | None = None
    auto_offset_reset: str = "latest"
    enable_auto_commit: bool = True
    auto_commit_interval_ms: int = 5000
    max_poll_records: int = 500
    key_deserializer: Any = None
    value_deserializer: Any = None
    session_timeout_ms: int = 45000
    heartbeat_interval_ms: int = 3000
    max_poll_interval_ms: int = 300000
    partition_assignment_strategy: tuple[str, ...] = ("range", "roundrobin")
    consumer_timeout_ms: float = math.inf
    client_id: str = "pylog"
    max_partition_fetch_bytes: int = 1 << 20

    @classmethod
    def from_kwargs(cls, config: dict[str, Any]) -> ConsumerConfig:
        known = cls.__dataclass_fields__
        for key in config:
            if key not in known and key not in IGNORED_KEYS:
                raise InvalidConfigError(f"unknown consumer config key {key!r}")
        values: dict[str, Any] = {}
        for key, value in config.items():
            if key in IGNORED_KEYS:
                continue
            values[key] = _check(key, value)
        made = cls(**values)
        if made.group_instance_id is not None and made.group_id is None:
            raise InvalidConfigError("group_instance_id requires group_id")
        if made.heartbeat_interval_ms >= made.session_timeout_ms:
            raise InvalidConfigError("heartbeat_interval_ms must be lower than session_timeout_ms")
        return made


def _positive_int(key: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidConfigError(f"{key} must be an integer >= {minimum}, not {value!r}")
    return value


def _deserializer(key: str, value: Any) -> Any:
    if value is None or callable(getattr(value, "deserialize", None)) or callable(value):
        return value
    raise InvalidConfigError(
        f"{key} must be callable or have deserialize(topic, headers, data), not {value!r}"
    )


def _strategies(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) or hasattr(value, "name") else value
    try:
        names = tuple(item if isinstance(item, str) else item.name for item in items)
    except (TypeError, AttributeError):
        raise InvalidConfigError(
            f"partition_assignment_strategy must list assignor names {ASSIGNMENT_STRATEGIES}, not {value!r}"
        ) from None
    if not names or any(n not in ASSIGNMENT_STRATEGIES for n in names):
        raise InvalidConfigError(
            f"partition_assignment_strategy must list assignor names {ASSIGNMENT_STRATEGIES}, not {value!r}"
        )
    return names


def _check(key: str, value: Any) -> Any:
    if key == "group_id":
        if value is not None and (not isinstance(value, str) or not value):
            raise InvalidConfigError(f"group_id must be a non-empty string or None, not {value!r}")
        return value
    if key == "group_instance_id":
        if value is not None and (not isinstance(value, str) or not value):
            raise InvalidConfigError(f"group_instance_id must be a non-empty string or None, not {value!r}")
        return value
    if key == "client_id":
        if not isinstance(value, str):
            raise InvalidConfigError(f"client_id must be a string, not {value!r}")
        return value
    if key == "auto_offset_reset":
        if value == "smallest":  # kafka-python's old aliases
            value = "earliest"
        elif value == "largest":
            value = "latest"
        if value not in ("earliest", "latest", "none"):
            raise InvalidConfigError(
                f"auto_offset_reset must be 'earliest', 'latest' or 'none', not {value!r}"
            )
        return value
    if key == "enable_auto_commit":
        if not isinstance(value, bool):
            raise InvalidConfigError(f"enable_auto_commit must be a bool, not {value!r}")
        return value
    if key in ("key_deserializer", "value_deserializer"):
        return _deserializer(key, value)
    if key == "partition_assignment_strategy":
        return _strategies(value)
    if key == "consumer_timeout_ms":
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or value < 0:
            raise InvalidConfigError(f"consumer_timeout_ms must be a number >= 0, not {value!r}")
        return value
    if key == "auto_commit_interval_ms":
        return _positive_int(key, value, 0)
    return _positive_int(key, value)


def _is_tp(tp: object) -> bool:
    return isinstance(tp, TopicPartition)


def _deserialize(deserializer: Any, topic: str, headers: list, data: bytes | None) -> Any:
    method = getattr(deserializer, "deserialize", None)
    if method is not None:
        return method(topic, headers, data)
    return deserializer(data)


class Consumer:
    """kafka-python's ``KafkaConsumer`` API over a pylog backend (see the module docstring)."""

    def __init__(self, backend: Any, *topics: str, **config: Any):
        self._config = ConsumerConfig.from_kwargs(config)
        self._backend = backend
        self._fetcher = backend.fetcher(self._config)
        self._closed = False
        self._closed_message = "the consumer is closed"
        disown_in_forked_child(self)
        #: "none", "assigned" (manual), "subscribed" (topics/pattern)
        self._mode = "none"
        self._subscription: set[str] | None = None
        self._pattern: re.Pattern[str] | None = None
        self._listener: Any = None
        self._member: Any = None
        self._paused: set[TopicPartition] = set()
        #: the fetcher's assignment version the cache was made at (None: stale)
        self._fetchable_key: int | None = None
        self._fetchable_cache: list[TopicPartition] = []
        self._next_auto_commit = time.monotonic() + self._config.auto_commit_interval_ms / 1000
        #: no-group subscription: the backend's metadata version the assignment was made at
        self._metadata_seen: object = None
        #: iteration: records of the last poll not yet yielded, and where each partition goes after
        self._buffer: deque[ConsumerRecord] = deque()
        self._buffer_next: dict[TopicPartition, tuple[int, int]] = {}
        if topics:
            self.subscribe(list(topics))

    # ------------------------------------------------------------------ state checks

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError(self._closed_message)

    def _check_assigned(self, tp: object) -> TopicPartition:
        if not _is_tp(tp):
            raise TypeError(f"partition must be a TopicPartition, not {type(tp).__name__}")
        assert isinstance(tp, TopicPartition)
        if not self._fetcher.is_assigned(tp):
            raise IllegalStateError(f"{tp.topic}-{tp.partition} is not assigned to this consumer")
        return tp

    def _group_id(self) -> str:
        if self._config.group_id is None:
            raise InvalidGroupIdError("this needs a group_id (the consumer was created without one)")
        return self._config.group_id

    @property
    def config(self) -> ConsumerConfig:
        return self._config

    # ------------------------------------------------------------------ assignment

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Manually assign exactly these partitions (no group management); replaces the last
        assignment, keeping the positions of partitions that stay."""
        wanted = self._checked_assignment(partitions)
        if not wanted:
            self.unsubscribe()
            return
        self._maybe_auto_commit(force=True)
        self._drop(self._fetcher.assigned() - wanted)
        self._fetcher.add(wanted)
        self._mode = "assigned"

    def _checked_assignment(self, partitions: Iterable[TopicPartition]) -> set[TopicPartition]:
        """``assign``'s checks (both backends): open, not subscribed, TopicPartitions of known
        partitions; the set wanted."""
        self._check_open()
        if self._mode == "subscribed":
            raise IllegalStateError("assign() after subscribe(); call unsubscribe() first")
        partitions = list(partitions)
        for tp in partitions:
            if not _is_tp(tp):
                raise TypeError(f"partitions must be TopicPartitions, not {type(tp).__name__}")
        for tp in set(partitions):
            count = self._backend.partitions_for(tp.topic)
            if not 0 <= tp.partition < count:
                raise UnknownTopicOrPartitionError(f"unknown partition {tp.topic}-{tp.partition}")
        return set(partitions)

    def subscribe(
        self, topics: Iterable[str] = (), pattern: str | re.Pattern[str] | None = None, listener: Any = None
    ) -> None:
        """Subscribe to topics or a regex pattern; with a ``group_id`` the group assigns the
        partitions (at the next ``poll``), without one every partition is this consumer's."""
        topic_set, compiled = self._set_subscription(topics, pattern, listener)
        if self._config.group_id is None:
            self._metadata_seen = None
            self._refresh_auto_assignment()
            return
        if self._member is None:
            c = self._config
            self._member = self._backend.group_member(
                group_id=c.group_id,
                group_instance_id=c.group_instance_id,
                assignors=list(c.partition_assignment_strategy),
                session_timeout_ms=c.session_timeout_ms,
                heartbeat_interval_ms=c.heartbeat_interval_ms,
                max_poll_interval_ms=c.max_poll_interval_ms,
            )
            self._member.set_wakeup(self._fetcher.wakeup)
        self._member.subscribe(topic_set if compiled is None else None, compiled)

    def _set_subscription(
        self, topics: Iterable[str], pattern: str | re.Pattern[str] | None, listener: Any
    ) -> tuple[set[str], re.Pattern[str] | None]:
        """``subscribe``'s checks and state (both backends): the topics and compiled pattern."""
        self._check_open()
        if self._mode == "assigned":
            raise IllegalStateError("subscribe() after assign(); call unsubscribe() first")
        if isinstance(topics, str):
            topics = [topics]
        topic_set = set(topics)
        if topic_set and pattern is not None:
            raise IllegalStateError("subscribe to topics or to a pattern, not both")
        if not topic_set and pattern is None:
            raise ValueError("subscribe() needs topics or a pattern")
        for t in topic_set:
            if not isinstance(t, str):
                raise TypeError(f"topics must be strings, not {type(t).__name__}")
        if listener is not None and not all(
            callable(getattr(listener, m, None))
            for m in ("on_partitions_revoked", "on_partitions_assigned", "on_partitions_lost")
        ):
            raise TypeError("listener must be a ConsumerRebalanceListener")
        compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
        self._subscription = topic_set if compiled is None else set()
        self._pattern = compiled
        self._listener = listener
        self._mode = "subscribed"
        return topic_set, compiled

    def subscription(self) -> set[str] | None:
        """The subscribed topics (for a pattern: the topics it currently matches), or None."""
        self._check_open()
        if self._mode != "subscribed":
            return None
        if self._pattern is not None:
            return {t for t in self._backend.list_topics() if self._pattern.fullmatch(t)}
        return set(self._subscription or ())

    def unsubscribe(self) -> None:
        """Drop the subscription or manual assignment (a group member leaves its group)."""
        self._check_open()
        self._maybe_auto_commit(force=True)
        if self._member is not None:
            self._leave_group()
        self._drop(self._fetcher.assigned())
        self._mode = "none"
        self._subscription = None
        self._pattern = None
        self._listener = None

    def assignment(self) -> set[TopicPartition]:
        self._check_open()
        return self._fetcher.assigned()

    def _drop(self, tps: Iterable[TopicPartition]) -> None:
        tps = set(tps)
        self._fetcher.remove(tps)
        self._paused -= tps
        self._fetchable_key = None
        self._clear_buffer()

    # ------------------------------------------------------------------ group mode

    def _group_poll(self, timeout_ms: float) -> None:
        member = self._member
        if member is None:
            return
        change = member.poll(int(max(timeout_ms, 0)))
        if change is not None:
            self._apply(change)

    def _apply(self, change: Any) -> None:
        """Apply an ``AssignmentChange`` in Kafka's order; listener errors are raised after the
        whole change is applied (the first one), as Kafka's ConsumerCoordinator does."""
        failures: list[BaseException] = []
        listener = self._listener or ConsumerRebalanceListener()

        def call(f: Callable[[set[TopicPartition]], None], tps: set[TopicPartition]) -> None:
            try:
                f(set(tps))
            except Exception as e:  # the user's callback: keep applying, raise at the end
                failures.append(e)

        lost = set(change.lost)
        if lost:
            call(listener.on_partitions_lost, lost)
            self._drop(lost)
        revoked = set(change.revoked) - lost
        if revoked:
            self._auto_commit_partitions(revoked)
            call(listener.on_partitions_revoked, revoked)
            self._drop(revoked)
            self._member.revoked(revoked)
        assigned = set(change.assigned)
        if assigned:
            self._clear_buffer()
            self._fetcher.add(assigned)
            self._init_positions(assigned, lenient=True)
            call(listener.on_partitions_assigned, assigned)
        if failures:
            raise failures[0]

    # ------------------------------------------------------------------ no-group subscription

    def _refresh_auto_assignment(self) -> None:
        """Without a group: every partition of the subscribed topics (re-read when the backend's
        metadata version moved: topics created or deleted, partitions added)."""
        if self._mode != "subscribed" or self._config.group_id is not None:
            return
        version_of = getattr(self._backend, "metadata_version", None)
        version = version_of() if version_of is not None else object()
        if version is not None and version == self._metadata_seen:
            return
        self._metadata_seen = version
        if self._pattern is not None:
            topics = {t for t in self._backend.list_topics() if self._pattern.fullmatch(t)}
        else:
            topics = set(self._subscription or ())
        wanted: set[TopicPartition] = set()
        for topic in topics:
            try:
                count = self._backend.partitions_for(topic)
            except UnknownTopicOrPartitionError:
                continue  # not created yet: assigned when it is
            wanted.update(TopicPartition(topic, p) for p in range(count))
        current = self._fetcher.assigned()
        if current - wanted:
            self._drop(current - wanted)
        self._fetcher.add(wanted - current)

    # ------------------------------------------------------------------ positions

    def _committed_offsets(self, tps: set[TopicPartition]) -> dict[TopicPartition, OffsetAndMetadata | None]:
        if self._config.group_id is None or not tps:
            return {}
        if self._member is not None:
            return self._member.committed(set(tps))
        return self._backend.group_store.fetch_committed(self._config.group_id, set(tps))

    def _init_positions(self, tps: Iterable[TopicPartition], *, lenient: bool = False) -> None:
        """Positions from the committed offsets, else ``auto_offset_reset`` (``none``:
        ``NoOffsetForPartitionError``, unless ``lenient``: then left unset until asked for)."""
        missing = self._fetcher.missing_positions().intersection(tps)
        if not missing:
            return
        committed = self._committed_offsets(missing)
        for tp in sorted(missing):
            found = committed.get(tp)
            if found is not None:
                self._fetcher.seek(tp, found.offset)
            elif not (lenient and self._config.auto_offset_reset == "none"):
                self._fetcher.reset(tp)

    def position(self, partition: TopicPartition) -> int:
        """The offset of the next record ``poll`` returns from ``partition``."""
        self._check_open()
        tp = self._check_assigned(partition)
        self._init_positions([tp])
        position = self._fetcher.position(tp)
        assert position is not None
        return position

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Make the next ``poll`` read ``partition`` from ``offset``."""
        self._check_open()
        tp = self._check_assigned(partition)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be an int >= 0, not {offset!r}")
        self._clear_buffer()
        self._fetcher.seek(tp, offset)

    def _seek_targets(self, partitions: tuple[TopicPartition, ...]) -> set[TopicPartition]:
        self._check_open()
        if not partitions:
            assigned = self._fetcher.assigned()
            if not assigned:
                raise IllegalStateError("no partitions are assigned")
            return assigned
        return {self._check_assigned(tp) for tp in partitions}

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in sorted(self._seek_targets(partitions)):
            self._fetcher.reset(tp, "earliest")
        self._clear_buffer()

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        for tp in sorted(self._seek_targets(partitions)):
            self._fetcher.reset(tp, "latest")
        self._clear_buffer()

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        self._check_open()
        return self._fetcher.beginning_offsets(self._known(partitions))

    def topics(self) -> set[str]:
        """Every topic of the log (kafka-python's ``topics()``)."""
        self._check_open()
        return set(self._backend.list_topics())

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        """The partition numbers of ``topic``, or None if it does not exist (kafka-python's)."""
        self._check_open()
        try:
            count = self._backend.partitions_for(topic)
        except UnknownTopicOrPartitionError:
            return None
        return set(range(count))

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        self._check_open()
        return self._fetcher.end_offsets(self._known(partitions))

    def offsets_for_times(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """The first offset of each partition whose record timestamp is >= the given one (ms)."""
        return self._fetcher.offsets_for_times(self._checked_timestamps(timestamps))

    def _checked_timestamps(self, timestamps: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """``offsets_for_times``' checks (both backends): open, known partitions, times >= 0."""
        self._check_open()
        checked: dict[TopicPartition, int] = {}
        for tp, ts in timestamps.items():
            if isinstance(ts, bool) or not isinstance(ts, int | float):
                raise TypeError(f"the timestamp for {tp} must be a number, not {type(ts).__name__}")
            if ts < 0:
                raise ValueError(f"the target time for {tp} is {ts}; it cannot be negative")
            checked[tp] = int(ts)
        self._known(checked)
        return checked

    def _known(self, partitions: Iterable[TopicPartition]) -> list[TopicPartition]:
        tps = list(partitions)
        for tp in tps:
            if not _is_tp(tp):
                raise TypeError(f"partitions must be TopicPartitions, not {type(tp).__name__}")
            if not 0 <= tp.partition < self._backend.partitions_for(tp.topic):
                raise UnknownTopicOrPartitionError(f"unknown partition {tp.topic}-{tp.partition}")
        return tps

    # ------------------------------------------------------------------ pause / resume

    def pause(self, *partitions: TopicPartition) -> None:
        self._check_open()
        for tp in partitions:
            self._paused.add(self._check_assigned(tp))
            self._fetchable_key = None
        self._clear_buffer()

    def resume(self, *partitions: TopicPartition) -> None:
        self._check_open()
        for tp in partitions:
            if not _is_tp(tp):
                raise TypeError(f"partitions must be TopicPartitions, not {type(tp).__name__}")
            self._paused.discard(tp)
            self._fetchable_key = None

    def paused(self) -> set[TopicPartition]:
        self._check_open()
        return set(self._paused)

    # ------------------------------------------------------------------ polling

    def poll(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Records since the last poll, by partition; waits up to ``timeout_ms`` for some."""
        return self._poll(timeout_ms, max_records, columns=False)

    def poll_columns(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, Columns]:
        """``poll`` as the engine's columns per partition (``pylog.Columns``: numpy arrays in
        Arrow's layout, no object per record); positions advance the same way. Deserializers
        are not applied (the analytics path)."""
        return self._poll(timeout_ms, max_records, columns=True)

    def _checked_poll(self, timeout_ms: Any, max_records: Any) -> int:
        """``poll``'s checks (both backends): the arguments, open, a mode; the ``max_records``."""
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int | float):
            raise TypeError(f"timeout_ms must be a number, not {type(timeout_ms).__name__}")
        if timeout_ms < 0:
            raise ValueError("timeout_ms must not be negative")
        if max_records is None:
            max_records = self._config.max_poll_records
        if isinstance(max_records, bool) or not isinstance(max_records, int):
            raise TypeError("max_records must be an integer")
        if max_records <= 0:
            raise ValueError("max_records must be positive")
        self._check_open()
        if self._mode == "none":
            raise IllegalStateError("the consumer is not subscribed to any topics or assigned any partitions")
        return max_records

    def _poll(self, timeout_ms: Any, max_records: Any, *, columns: bool) -> dict:
        max_records = self._checked_poll(timeout_ms, max_records)
        self._clear_buffer()
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            remaining_ms = max(0.0, (deadline - time.monotonic()) * 1000)
            self._group_poll(remaining_ms)
            self._refresh_auto_assignment()
            self._maybe_auto_commit()
            tps = self._fetchable()
            if self._fetcher.has_missing_positions():
                self._init_positions(tps)
            remaining_ms = max(0.0, (deadline - time.monotonic()) * 1000)
            if columns:
                out: dict = self._fetcher.fetch_columns(tps, max_records, remaining_ms)
            else:
                out = self._fetcher.fetch(tps, max_records, remaining_ms)
                if out and (
                    self._config.key_deserializer is not None or self._config.value_deserializer is not None
                ):
                    out = self._deserialized(out)
            if out or time.monotonic() >= deadline:
                return out
            # a wakeup (a rebalance to run): back to member.poll within the remaining time

    def _fetchable(self) -> list[TopicPartition]:
        """The assigned partitions not paused, sorted (cached until either changes)."""
        key = self._fetcher.assignment_version
        if self._fetchable_key != key:
            self._fetchable_cache = [tp for tp in sorted(self._fetcher.assigned()) if tp not in self._paused]
            self._fetchable_key = key
        return self._fetchable_cache

    def _deserialized(self, fetched: dict[TopicPartition, list[ConsumerRecord]]) -> dict:
        kd, vd = self._config.key_deserializer, self._config.value_deserializer
        out: dict[TopicPartition, list[ConsumerRecord]] = {}
        failure: SerializationError | None = None
        for tp, records in fetched.items():
            if failure is not None:
                self._fetcher.seek(tp, records[0].offset)  # not returned: read again next time
                continue
            converted = []
            for r in records:
                what = "key"
                try:
                    key = r.key if kd is None else _deserialize(kd, r.topic, r.headers, r.key)
                    what = "value"
                    value = r.value if vd is None else _deserialize(vd, r.topic, r.headers, r.value)
                except Exception as e:
                    failure = SerializationError(
                        f"the {what} deserializer failed for {r.topic}-{r.partition} at offset {r.offset}: {e!r}"
                    )
                    failure.__cause__ = e
                    self._fetcher.seek(tp, r.offset)  # a retry starts at this record
                    break
                converted.append(r._replace(key=key, value=value))
            if converted:
                out[tp] = converted
        if failure is not None and not out:
            raise failure
        return out

    # ------------------------------------------------------------------ iteration

    def __iter__(self) -> Iterator[ConsumerRecord]:
        return self

    def __next__(self) -> ConsumerRecord:
        if self._closed:
            raise StopIteration
        timeout_ms = self._config.consumer_timeout_ms
        deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms != math.inf else math.inf
        while not self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StopIteration
            fetched = self.poll(timeout_ms=min(remaining * 1000, 1 << 30))
            # why rewind: a position (and an auto-commit) must cover only the records handed
            # out, as kafka-python's iterator does; each one moves its partition on as it goes
            for tp, records in fetched.items():
                self._buffer_next[tp] = (records[-1].offset, self._fetcher.position(tp))
                self._fetcher.set_position(tp, records[0].offset)
                self._buffer.extend(records)
        record = self._buffer.popleft()
        tp = TopicPartition(record.topic, record.partition)
        last, after = self._buffer_next.get(tp, (record.offset, record.offset + 1))
        self._fetcher.set_position(tp, after if record.offset == last else record.offset + 1)
        return record

    def _clear_buffer(self) -> None:
        if self._buffer:
            self._buffer.clear()
        self._buffer_next.clear()

    # ------------------------------------------------------------------ commits

    def _current_offsets(
        self, tps: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        positions = self._fetcher.positions()
        wanted = positions if tps is None else {tp: positions[tp] for tp in tps if tp in positions}
        return {tp: OffsetAndMetadata(p, "", -1) for tp, p in wanted.items()}

    def _checked_offsets(self, offsets: Any) -> dict[TopicPartition, OffsetAndMetadata]:
        if not isinstance(offsets, dict):
            raise TypeError(
                f"offsets must be a dict of TopicPartition to OffsetAndMetadata, not {type(offsets).__name__}"
            )
        out: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, om in offsets.items():
            self._check_assigned(tp)
            if isinstance(om, int) and not isinstance(om, bool):
                om = OffsetAndMetadata(om, "", -1)
            if not isinstance(om, OffsetAndMetadata):
                raise TypeError(f"the offset for {tp} must be an OffsetAndMetadata, not {type(om).__name__}")
            if isinstance(om.offset, bool) or not isinstance(om.offset, int) or om.offset < 0:
                raise ValueError(f"the offset for {tp} must be an int >= 0, not {om.offset!r}")
            if not isinstance(om.metadata, str):
                raise TypeError(f"the metadata for {tp} must be a str, not {type(om.metadata).__name__}")
            out[tp] = om
        return out

    def _commit_offsets(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if not offsets:
            return
        if self._member is not None:
            self._member.commit(offsets)
        else:
            self._backend.group_store.commit_standalone(self._group_id(), offsets)

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata] | None = None) -> None:
        """Commit ``offsets`` (default: the positions of every assigned partition) to the group.
        ``CommitFailedError`` if the group refused it (nothing applied)."""
        self._check_open()
        self._group_id()
        checked = self._current_offsets() if offsets is None else self._checked_offsets(offsets)
        self._commit_offsets(checked)

    def commit_async(
        self, offsets: dict[TopicPartition, OffsetAndMetadata] | None = None, callback: Callable | None = None
    ) -> Future:
        """``commit``, reporting to ``callback(offsets, exception_or_None)`` instead of raising
        (kafka-python's signature). The catalog write is quick, so it runs now; the returned
        future is already resolved."""
        self._check_open()
        self._group_id()
        checked = self._current_offsets() if offsets is None else self._checked_offsets(offsets)
        future: Future = Future()
        try:
            self._commit_offsets(checked)
        except Exception as e:
            future.set_exception(e)
            if callback is not None:
                callback(checked, e)
        else:
            future.set_result(None)
            if callback is not None:
                callback(checked, None)
        return future

    def committed(self, partition: TopicPartition, metadata: bool = False) -> int | OffsetAndMetadata | None:
        """The group's committed offset of ``partition`` (an int, or the OffsetAndMetadata with
        ``metadata=True``), or None."""
        self._check_open()
        group_id = self._group_id()
        if not _is_tp(partition):
            raise TypeError(f"partition must be a TopicPartition, not {type(partition).__name__}")
        if self._member is not None:
            found = self._member.committed({partition}).get(partition)
        else:
            found = self._backend.group_store.fetch_committed(group_id, {partition}).get(partition)
        if found is None:
            return None
        return found if metadata else found.offset

    def _auto_commit_enabled(self) -> bool:
        return self._config.enable_auto_commit and self._config.group_id is not None

    def _maybe_auto_commit(self, *, force: bool = False) -> None:
        if not self._auto_commit_enabled():
            return
        now = time.monotonic()
        if not force and now < self._next_auto_commit:
            return
        self._next_auto_commit = now + self._config.auto_commit_interval_ms / 1000
        self._auto_commit_partitions(None)

    def _auto_commit_partitions(self, tps: Iterable[TopicPartition] | None) -> None:
        if not self._auto_commit_enabled():
            return
        offsets = self._current_offsets(tps)
        try:
            self._commit_offsets(offsets)
        except CommitFailedError as e:  # Kafka logs a failed auto-commit and goes on
            _log.warning("auto-commit of %s failed: %s", sorted(offsets), e)

    # ------------------------------------------------------------------ close

    def close(self, autocommit: bool = True) -> None:
        """Close (idempotent): auto-commit if enabled, leave the group, release the fetcher."""
        if self._closed:
            return
        try:
            if autocommit:
                self._maybe_auto_commit(force=True)
            if self._member is not None:
                self._leave_group()
        finally:
            self._closed = True
            self._fetcher.remove(self._fetcher.assigned())
            self._clear_buffer()

    def _leave_group(self) -> None:
        """Hand the assignment back (``on_partitions_revoked``), then leave the group and close
        the membership, whatever the listener raised (``unsubscribe`` and ``close``)."""
        member, self._member = self._member, None
        try:
            assigned = self._fetcher.assigned()
            if assigned and self._listener is not None:
                self._listener.on_partitions_revoked(set(assigned))
        finally:
            try:
                member.leave()
            finally:
                member.close()

    def __enter__(self) -> Consumer:
        return self

    def _disown_after_fork(self) -> None:
        """In a forked child (``pylog.forking``): closed, saying why; the group membership is the
        parent's and is never left from here."""
        self._closed = True
        self._closed_message = f"the consumer was made in process {os.getppid()} before this process forked from it; make a new one here"
        self._member = None
        self._buffer.clear()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        # as kafka-python: no auto-commit when the block failed (the record in hand may not
        # have been processed)
        self.close(autocommit=exc_type is None)
