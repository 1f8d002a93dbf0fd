"""``KafkaConsumer``: the ``pylog.Consumer`` API (kafka-python's) over one ``confluent_kafka.Consumer``.

``log.consumer(...)`` on a ``kafka://`` log builds one (``KafkaBackend.new_consumer``). Config,
modes, errors and return types are ``pylog.consumer``'s (read its module docstring); this module
says how each is kept over librdkafka. It overrides every public method of ``pylog.Consumer``
(tests/kafka_backend/test_consumer_kafka.py asserts it), so none falls through to the embedded fetcher.

Positions live here, in Python (``_positions``: the offset after the last record ``poll``
returned, or None while unset), as kafka-python's SubscriptionState keeps them; librdkafka
fetches from them. Invariants between the two:

- every message ``confluent.consume`` hands us is either returned to the caller (the position
  moves past it) or librdkafka is sought back to our position (a deserializer failure, the
  iterator's unreturned records, a listener error), so librdkafka's own "application position"
  never runs ahead of ours;
- librdkafka is given exactly the partitions we hold whose position is set, at that position
  (never a logical offset it would resolve on its own), paused when the caller paused them; a
  partition gets to librdkafka when its position is first set (``_rk_assigned``);
- librdkafka's ``seek`` of a partition that is not fetching (just assigned, or stopped by an
  out-of-range error) can fail with ``_STATE``: the partition is then assigned again at the offset
  (``_rk_give(again=True)``).

Offsets are pylog's to commit: librdkafka's ``enable.auto.commit`` and ``enable.auto.offset.store``
are off (``pylog.kafka.settings.consumer_properties``), and ``commit``/auto-commit send exactly the
positions of records ``poll`` returned, every ``auto_commit_interval_ms`` inside ``poll``, before a
revocation, on ``unsubscribe`` and on ``close`` (at-least-once, as the embedded consumer).
Resets too: librdkafka's ``auto.offset.reset`` is ``error``, so a position out of range comes back
as an ``_AUTO_OFFSET_RESET`` message and the embedded rule is applied here (``earliest``/``latest``
from the watermarks, ``none``: ``OffsetOutOfRangeError`` at every poll until a seek).

Modes: ``assign`` (librdkafka's manual assignment at our positions); ``subscribe`` with a
``group_id`` (librdkafka's group membership: its on_assign/on_revoke/on_lost callbacks run inside
``confluent.consume``/``poll``, in this thread, and call the rebalance listener in Kafka's order,
with the same auto-commit before revocation; cooperative-sticky uses incremental_assign/unassign);
``subscribe`` without one (every partition of the subscribed topics, assigned manually and
re-read when the backend's ``metadata_version`` moves, at most every ``METADATA_CHECK_S``). A
pattern is matched here, with Python's ``re`` and ``fullmatch`` (Java's ``matches()``), against
the cluster's topics, and librdkafka is subscribed to the list of matches (so the regex dialect
is the embedded one, not librdkafka's).

Errors go through ``pylog.kafka.errors.translate``. A transient transport error in a fetch is
librdkafka's to retry (logged, as Kafka's consumer does not raise them from ``poll``). Every
blocking call is bounded by the backend's ``timeout_ms``; ``close()`` always returns within it.

Not thread-safe, as Kafka's consumer: one thread uses it.

fork(): librdkafka's threads do not survive a fork, and destroying the handle in the child would
wait for them. A child forked after the consumer was made finds it closed (``pylog.consumer``'s
hook), and this module's hook keeps the child from ever destroying the inherited handle (it is
leaked, by design).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_INVALID, ConsumerGroupTopicPartitions, KafkaError, KafkaException
from confluent_kafka import Consumer as RdConsumer
from confluent_kafka import TopicPartition as RdTopicPartition
from confluent_kafka.admin import OffsetSpec

from pylog.consumer import Consumer, ConsumerConfig, _is_tp
from pylog.errors import (
    IllegalStateError,
    InvalidConfigError,
    KafkaTimeoutError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    PylogError,
    UnknownTopicOrPartitionError,
)
from pylog.forking import disown_in_forked_child, keep_forever
from pylog.kafka.errors import is_code, translate
from pylog.kafka.settings import consumer_properties, librdkafka_assignors
from pylog.listener import ConsumerRebalanceListener
from pylog.partition import Columns
from pylog.types import ConsumerRecord, OffsetAndMetadata, OffsetAndTimestamp, TopicPartition

_log = logging.getLogger("pylog.consumer")

#: how often, at most, a subscription without a group (or a pattern) looks at the cluster's
#: metadata for new topics and partitions (each look is a metadata request)
METADATA_CHECK_S = 0.5
#: the pause between two tries of an offsets lookup the cluster answered with a retriable error
RETRY_PAUSE_S = 0.05
#: the longest single wait inside ``poll`` before it looks at auto-commit and metadata again
WAIT_SLICE_S = 0.5

_AUTO_OFFSET_RESET = KafkaError._AUTO_OFFSET_RESET
_UNKNOWN_TOPIC_CODES = frozenset(
    {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION}
)
#: fetch errors ``poll`` raises; any other (transport, coordinator moves...) librdkafka retries
_RAISED_CODES = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError._AUTHENTICATION,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._SSL,
        KafkaError.FENCED_INSTANCE_ID,
        KafkaError.INCONSISTENT_GROUP_PROTOCOL,
        KafkaError.INVALID_GROUP_ID,
    }
)
#: what a partition's offsets lookup may meet while its topic is being created or its leader moves
_LEADER_MOMENT = (
    "NOT_LEADER_FOR_PARTITION",
    "LEADER_NOT_AVAILABLE",
    "_LEADER_NOT_AVAILABLE",
    "UNKNOWN_LEADER_EPOCH",
)
_new_tuple = tuple.__new__
_EMPTY_BYTES = np.zeros(0, np.uint8)


def _rd(tp: TopicPartition, offset: int = OFFSET_INVALID) -> RdTopicPartition:
    return RdTopicPartition(tp.topic, tp.partition, offset)


def _header_size(headers: list) -> int:
    """kafka-python's ``serialized_header_size``: UTF-8 key bytes plus value bytes."""
    size = 0
    for key, value in headers:
        size += len(key.encode()) + (0 if value is None else len(value))
    return size


def _records_of(messages: list, positions: dict, record_type: type = ConsumerRecord) -> tuple[dict, list]:
    """The ``ConsumerRecord`` lists of ``messages``, by partition, and the error messages.

    The hot path of ``poll``: one tuple built positionally per message, partitions found by runs
    (consume returns a partition's messages together), messages of a partition not held (a
    rebalance in this consume took it) left out."""
    out: dict[TopicPartition, list] = {}
    errors: list = []
    new = _new_tuple
    last_topic: object = None
    last_partition = -1
    records: list | None = None
    for m in messages:
        if m.error() is not None:
            errors.append(m)
            continue
        topic = m.topic()
        partition = m.partition()
        if partition != last_partition or topic != last_topic:
            last_topic, last_partition = topic, partition
            tp = TopicPartition(topic, partition)
            records = out.get(tp)
            if records is None:
                records = [] if positions.get(tp) is not None else None
                if records is not None:
                    out[tp] = records
        if records is None:
            continue
        key = m.key()
        value = m.value()
        headers = m.headers()
        if headers is None:
            headers = []
            header_size = -1
        else:
            header_size = _header_size(headers)
        timestamp_type, timestamp = m.timestamp()
        records.append(
            new(
                record_type,
                (
                    topic,
                    partition,
                    -1,
                    m.offset(),
                    timestamp,
                    timestamp_type - 1,  # librdkafka: 1 CreateTime, 2 LogAppendTime; Kafka: 0, 1
                    key,
                    value,
                    headers,
                    None,
                    -1 if key is None else len(key),
                    -1 if value is None else len(value),
                    header_size,
                ),
            )
        )
    return out, errors


def _binary_column(items: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrow's binary layout of ``items`` (bytes or None): data, int64 offsets[n + 1], null mask."""
    n = len(items)
    nulls = np.fromiter((item is None for item in items), bool, n)
    lengths = np.fromiter((0 if item is None else len(item) for item in items), np.int64, n)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    joined = b"".join(item for item in items if item is not None)
    data = np.frombuffer(bytearray(joined), np.uint8) if joined else _EMPTY_BYTES.copy()
    return data, offsets, nulls


def _columns_of(messages: list, positions: dict) -> tuple[dict, list]:
    """``messages`` as ``pylog.Columns`` by partition (the embedded layout), and the error messages."""
    by_tp: dict[TopicPartition, list] = {}
    errors: list = []
    for m in messages:
        if m.error() is not None:
            errors.append(m)
            continue
        tp = TopicPartition(m.topic(), m.partition())
        if positions.get(tp) is None:
            continue
        by_tp.setdefault(tp, []).append(m)
    out: dict[TopicPartition, Columns] = {}
    for tp, ms in by_tp.items():
        n = len(ms)
        keys, key_offsets, key_null = _binary_column([m.key() for m in ms])
        values, value_offsets, value_null = _binary_column([m.value() for m in ms])
        out[tp] = Columns(
            np.fromiter((m.offset() for m in ms), np.int64, n),
            np.fromiter((m.timestamp()[1] for m in ms), np.int64, n),
            keys,
            key_offsets,
            key_null,
            values,
            value_offsets,
            value_null,
        )
    return out, errors


def _last_offset(got: Any) -> int:
    return int(got.offsets[-1]) if isinstance(got, Columns) else got[-1].offset


class _Positions:
    """The part of the embedded fetcher's interface ``pylog.Consumer``'s own methods use for
    positions (``position``, ``set_position``, ``seek``), over this consumer's positions, so the
    base class's ``seek``, ``position``, iteration and deserializer rule run unchanged here.
    Anything else of the embedded fetcher does not exist: an AttributeError, never a silent
    embedded behaviour."""

    __slots__ = ("_consumer",)

    def __init__(self, consumer: KafkaConsumer):
        self._consumer = consumer

    def position(self, tp: TopicPartition) -> int | None:
        return self._consumer._positions[tp]

    def set_position(self, tp: TopicPartition, offset: int) -> None:
        """Our position only (the iterator hands out a poll's records one by one; librdkafka
        stays past them until the buffer is dropped, see ``KafkaConsumer._clear_buffer``)."""
        if tp in self._consumer._positions:
            self._consumer._positions[tp] = offset

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Our position and librdkafka's (a seek, or records handed over but not returned)."""
        self._consumer._rewind(tp, offset)


class KafkaConsumer(Consumer):
    """kafka-python's ``KafkaConsumer`` API over one ``confluent_kafka.Consumer`` (module docstring)."""

    def __init__(self, backend: Any, *topics: str, **config: Any):
        self._config = ConsumerConfig.from_kwargs(config)
        properties = dict(backend.properties)
        properties.update(consumer_properties(self._config, config, backend.path))
        self._backend = backend
        self._timeout_s = backend.timeout_ms / 1000
        self._cooperative = librdkafka_assignors(self._config.partition_assignment_strategy) == [
            "cooperative-sticky"
        ]
        try:
            self._rk = RdConsumer(properties)
        except KafkaException as e:
            raise translate(e, "create a Kafka consumer") from e
        except (ValueError, TypeError) as e:
            raise InvalidConfigError(f"create a Kafka consumer: {e}") from e
        self._fetcher = _Positions(self)
        self._closed = False
        self._closed_message = "the consumer is closed"
        #: set while ``close`` hands the assignment back: the rebalance callbacks only unassign
        self._closing = False
        disown_in_forked_child(self)
        self._mode = "none"
        self._subscription: set[str] | None = None
        self._pattern: re.Pattern[str] | None = None
        self._listener: Any = None
        self._member: Any = None  # the embedded membership; never set here (the fork hook clears it)
        #: the topics librdkafka is subscribed to (a pattern's matches), None when not subscribed
        self._rk_topics: list[str] | None = None
        self._positions: dict[TopicPartition, int | None] = {}
        #: the partitions librdkafka was given (those whose position is set)
        self._rk_assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        #: partitions stopped by an out-of-range fetch with auto_offset_reset 'none', and why
        self._stuck: dict[TopicPartition, str] = {}
        #: an error a poll met after records it returned: raised by the next poll
        self._pending_error: BaseException | None = None
        #: listener errors raised inside librdkafka's rebalance callbacks, raised after consume
        self._rebalance_failures: list[BaseException] = []
        self._next_auto_commit = time.monotonic() + self._config.auto_commit_interval_ms / 1000
        self._metadata_seen: object = None
        self._next_metadata_check = 0.0
        self._buffer: deque[ConsumerRecord] = deque()
        self._buffer_next: dict[TopicPartition, tuple[int, int]] = {}
        if topics:
            self.subscribe(list(topics))

    # ------------------------------------------------------------------ state checks

    @property
    def config(self) -> ConsumerConfig:
        return self._config

    def _check_assigned(self, tp: object) -> TopicPartition:
        if not _is_tp(tp):
            raise TypeError(f"partition must be a TopicPartition, not {type(tp).__name__}")
        assert isinstance(tp, TopicPartition)
        if tp not in self._positions:
            raise IllegalStateError(f"{tp.topic}-{tp.partition} is not assigned to this consumer")
        return tp

    def _in_group(self) -> bool:
        return self._mode == "subscribed" and self._config.group_id is not None

    # ------------------------------------------------------------------ librdkafka's side

    def _rk_assign_all(self, rk: Any = None) -> None:
        """Give librdkafka every partition whose position is set, at it (``assign``: replaces
        its whole assignment), pausing those the caller paused."""
        rk = rk or self._rk
        given = {tp: p for tp, p in self._positions.items() if p is not None}
        try:
            rk.assign([_rd(tp, p) for tp, p in given.items()])
            paused = [_rd(tp) for tp in given if tp in self._paused]
            if paused:
                rk.pause(paused)
        except KafkaException as e:
            raise translate(e, "assign partitions") from e
        self._rk_assigned = set(given)

    def _rk_give(self, tps: list[TopicPartition], *, again: bool = False) -> None:
        """Give librdkafka ``tps`` (positions set) at our positions; ``again``: they are
        assigned there already (a seek it refused) and are taken back first."""
        if self._in_group() and not self._cooperative:
            self._rk_assign_all()  # why: an eager group's assignment changes only by assign()
            return
        rk = self._rk
        try:
            if again:
                rk.incremental_unassign([_rd(tp) for tp in tps if tp in self._rk_assigned])
            rk.incremental_assign([_rd(tp, self._positions[tp]) for tp in tps])  # type: ignore[arg-type]
            paused = [_rd(tp) for tp in tps if tp in self._paused]
            if paused:
                rk.pause(paused)
        except KafkaException as e:
            raise translate(e, "assign partitions") from e
        self._rk_assigned.update(tps)

    def _set_position(self, tp: TopicPartition, offset: int) -> None:
        """Our position of ``tp`` and librdkafka's fetch position. why no logical offsets
        (OFFSET_END...) are ever given to librdkafka: it would resolve them itself, later, and
        fetch from somewhere else than the position we report; a partition without a position
        is not given to it at all."""
        self._positions[tp] = offset
        self._stuck.pop(tp, None)
        if tp not in self._rk_assigned:
            self._rk_give([tp])
            return
        try:
            self._rk.seek(_rd(tp, offset))
        except KafkaException:
            # why: librdkafka refuses to seek a partition not fetching (yet, or stopped by an
            # out-of-range error: _STATE); assigning it again at the offset gets the same result
            self._rk_give([tp], again=True)

    def _rewind(self, tp: TopicPartition, offset: int) -> None:
        """Put ``tp`` back at ``offset``: records librdkafka handed us from there on were not
        returned, so it must fetch them again."""
        if tp in self._positions:
            self._set_position(tp, offset)

    def _drop(self, tps: Iterable[TopicPartition]) -> None:
        for tp in set(tps):
            self._positions.pop(tp, None)
            self._paused.discard(tp)
            self._stuck.pop(tp, None)
            self._rk_assigned.discard(tp)
        self._clear_buffer()

    # ------------------------------------------------------------------ assignment

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Manually assign exactly these partitions (no group management); replaces the last
        assignment, keeping the positions of partitions that stay."""
        wanted = self._checked_assignment(partitions)
        if not wanted:
            self.unsubscribe()
            return
        self._maybe_auto_commit(force=True)
        self._drop(set(self._positions) - wanted)
        self._clear_buffer()
        for tp in sorted(wanted - set(self._positions)):
            self._positions[tp] = None
        self._mode = "assigned"
        self._rk_assign_all()

    def subscribe(
        self, topics: Iterable[str] = (), pattern: str | re.Pattern[str] | None = None, listener: Any = None
    ) -> None:
        """Subscribe to topics or a regex pattern; with a ``group_id`` the group assigns the
        partitions (at the next ``poll``), without one every partition is this consumer's."""
        topic_set, compiled = self._set_subscription(topics, pattern, listener)
        self._metadata_seen = None
        self._next_metadata_check = 0.0
        if self._config.group_id is None:
            self._refresh_auto_assignment()
        elif compiled is None:
            self._rk_subscribe(sorted(topic_set))
        else:
            self._refresh_pattern()

    def _rk_subscribe(self, topics: list[str]) -> None:
        if topics == self._rk_topics:
            return
        try:
            if topics:
                self._rk.subscribe(
                    topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
                )
            elif self._rk_topics:
                self._rk.unsubscribe()
        except KafkaException as e:
            raise translate(e, f"subscribe to {topics}") from e
        self._rk_topics = topics

    def subscription(self) -> set[str] | None:
        """The subscribed topics (for a pattern: those it matches now), or None (``Consumer``'s:
        the backend's topics)."""
        return super().subscription()

    def unsubscribe(self) -> None:
        """Drop the subscription or manual assignment (a group member leaves its group)."""
        self._check_open()
        self._maybe_auto_commit(force=True)
        if self._in_group():
            self._hand_back()
        self._drop(set(self._positions))
        try:
            if self._rk_topics is not None:
                self._rk.unsubscribe()
            self._rk.unassign()
        except KafkaException as e:
            raise translate(e, "unsubscribe") from e
        self._rk_topics = None
        self._mode = "none"
        self._subscription = None
        self._pattern = None
        self._listener = None

    def _hand_back(self) -> None:
        """Group mode, leaving (``unsubscribe``, ``close``): ``on_partitions_revoked`` of the
        whole assignment, as the embedded consumer does before it leaves."""
        if self._positions and self._listener is not None:
            self._listener.on_partitions_revoked(set(self._positions))

    def assignment(self) -> set[TopicPartition]:
        self._check_open()
        return set(self._positions)

    # ------------------------------------------------------------------ group mode (librdkafka's callbacks)

    def _call_listener(self, name: str, tps: set[TopicPartition]) -> None:
        listener = self._listener or ConsumerRebalanceListener()
        try:
            getattr(listener, name)(set(tps))
        except Exception as e:  # the user's callback: keep applying, raise after consume
            self._rebalance_failures.append(e)

    def _held(self, partitions: list) -> set[TopicPartition]:
        return {TopicPartition(p.topic, p.partition) for p in partitions}

    def _on_assign(self, rk: Any, partitions: list) -> None:
        """librdkafka's on_assign (inside consume/poll): positions from the group's committed
        offsets or ``auto_offset_reset``, then ``on_partitions_assigned``."""
        try:
            if self._closing or self._mode != "subscribed":
                (rk.incremental_assign if self._cooperative else rk.assign)([])
                return
            assigned = self._held(partitions)
            if not self._cooperative:  # eager: this is the whole assignment
                self._drop(set(self._positions) - assigned)
            self._clear_buffer()
            for tp in assigned:
                self._positions.setdefault(tp, None)
            try:
                self._init_positions(assigned, lenient=True, rk_sync=False)
            except Exception as e:  # a timeout looking offsets up: poll tries again
                self._rebalance_failures.append(e)
            if self._cooperative:
                given = [tp for tp in assigned if self._positions[tp] is not None]
                rk.incremental_assign([_rd(tp, self._positions[tp]) for tp in given])  # type: ignore[arg-type]
                paused = [_rd(tp) for tp in given if tp in self._paused]
                if paused:
                    rk.pause(paused)
                self._rk_assigned.update(given)
            else:
                self._rk_assign_all(rk)
            if assigned:
                self._call_listener("on_partitions_assigned", assigned)
        except Exception as e:  # never let an error escape into librdkafka's callback
            self._rebalance_failures.append(translate(e, "assign partitions"))

    def _on_revoke(self, rk: Any, partitions: list) -> None:
        """librdkafka's on_revoke: auto-commit of the revoked positions, ``on_partitions_revoked``,
        positions dropped, then librdkafka unassigns them."""
        try:
            revoked = self._held(partitions) & set(self._positions)
            if revoked and not self._closing:
                self._auto_commit_partitions(revoked)
                self._call_listener("on_partitions_revoked", revoked)
            self._rk_take_back(rk, partitions)
            self._drop(revoked)
        except Exception as e:
            self._rebalance_failures.append(translate(e, "revoke partitions"))

    def _on_lost(self, rk: Any, partitions: list) -> None:
        """librdkafka's on_lost (the member was fenced or its session expired): no commit."""
        try:
            lost = self._held(partitions) & set(self._positions)
            if lost and not self._closing:
                self._call_listener("on_partitions_lost", lost)
            self._rk_take_back(rk, partitions)
            self._drop(lost)
        except Exception as e:
            self._rebalance_failures.append(translate(e, "drop lost partitions"))

    def _rk_take_back(self, rk: Any, partitions: list) -> None:
        """Inside on_revoke/on_lost: librdkafka unassigns them (cooperative: only those it was
        given; an empty call still completes the rebalance)."""
        if self._cooperative:
            given = self._held(partitions) & self._rk_assigned
            rk.incremental_unassign([_rd(tp) for tp in sorted(given)])
            self._rk_assigned -= given
        else:
            rk.unassign()
            self._rk_assigned.clear()

    def _raise_rebalance_failures(self) -> None:
        if self._rebalance_failures:
            first = self._rebalance_failures[0]
            self._rebalance_failures.clear()
            raise first

    # ------------------------------------------------------------------ subscriptions watched in Python

    def _metadata_moved(self) -> bool:
        now = time.monotonic()
        if now < self._next_metadata_check:
            return False
        self._next_metadata_check = now + METADATA_CHECK_S
        version = self._backend.metadata_version()
        if version == self._metadata_seen:
            return False
        self._metadata_seen = version
        return True

    def _matching_topics(self) -> set[str]:
        if self._pattern is not None:
            return {t for t in self._backend.list_topics() if self._pattern.fullmatch(t)}
        return set(self._subscription or ())

    def _refresh_pattern(self) -> None:
        """Group mode with a pattern: librdkafka subscribed to the topics it matches now."""
        if self._pattern is None or not self._in_group() or not self._metadata_moved():
            return
        self._rk_subscribe(sorted(self._matching_topics()))

    def _refresh_auto_assignment(self) -> None:
        """Without a group: every partition of the subscribed topics (re-read when the backend's
        metadata version moved: topics created or deleted, partitions added)."""
        if self._mode != "subscribed" or self._config.group_id is not None or not self._metadata_moved():
            return
        wanted: set[TopicPartition] = set()
        for topic in self._matching_topics():
            try:
                count = self._backend.partitions_for(topic)
            except UnknownTopicOrPartitionError:
                continue  # not created yet: assigned when it is
            wanted.update(TopicPartition(topic, p) for p in range(count))
        current = set(self._positions)
        if wanted == current:
            return
        self._drop(current - wanted)
        for tp in wanted - current:
            self._positions[tp] = None
        self._rk_assign_all()

    def _check_assigned_topics(self) -> None:
        """Manual assignment: a topic deleted under it is ``UnknownTopicOrPartitionError`` at the
        next poll, as on the embedded backend (librdkafka would notice only at its next metadata
        refresh, minutes later, and then say nothing to a manual assignment)."""
        if not self._metadata_moved():
            return
        for tp in sorted(self._positions):
            if tp.partition >= self._backend.partitions_for(tp.topic):
                raise UnknownTopicOrPartitionError(f"unknown partition {tp.topic}-{tp.partition}")

    # ------------------------------------------------------------------ positions

    def _committed_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, OffsetAndMetadata]:
        tps = sorted(tps)
        if self._config.group_id is None or not tps:
            return {}
        what = f"fetch the committed offsets of group {self._config.group_id!r}"
        try:
            if self._in_group():
                found = self._rk.committed([_rd(tp) for tp in tps], timeout=self._timeout_s)
            else:
                # why the admin client outside a group: the consumer's own OffsetFetch brings
                # up its group coordinator link, and librdkafka then starts fetching a partition
                # assigned next only after about a heartbeat interval (measured: 0.05 -> 0.95 s
                # with heartbeat_interval_ms=1000)
                request = [ConsumerGroupTopicPartitions(self._config.group_id, [_rd(tp) for tp in tps])]
                future = self._backend.admin.list_consumer_group_offsets(
                    request, request_timeout=self._timeout_s
                )[self._config.group_id]
                found = future.result(timeout=self._timeout_s).topic_partitions
        except KafkaException as e:
            raise translate(e, what) from e
        except TimeoutError as e:
            raise KafkaTimeoutError(f"{what}: no answer within the timeout") from e
        out: dict[TopicPartition, OffsetAndMetadata] = {}
        for rd in found:
            if rd.error is not None:
                raise translate(rd.error, f"fetch the committed offset of {rd.topic}-{rd.partition}")
            if rd.offset >= 0:
                out[TopicPartition(rd.topic, rd.partition)] = OffsetAndMetadata(
                    rd.offset, rd.metadata or "", -1
                )
        return out

    def _init_positions(
        self, tps: Iterable[TopicPartition], *, lenient: bool = False, rk_sync: bool = True
    ) -> None:
        """Positions from the committed offsets, else ``auto_offset_reset`` (``none``:
        ``NoOffsetForPartitionError``, unless ``lenient``: then left unset until asked for).
        ``rk_sync=False`` (inside on_assign) leaves librdkafka to the caller."""
        missing = sorted(tp for tp in tps if tp in self._positions and self._positions[tp] is None)
        if not missing:
            return
        committed = self._committed_offsets(missing)
        to_reset = []
        for tp in missing:
            found = committed.get(tp)
            if found is not None:
                self._put_position(tp, found.offset, rk_sync)
            elif not (lenient and self._config.auto_offset_reset == "none"):
                to_reset.append(tp)
        if to_reset:
            for tp, offset in self._reset_offsets(to_reset, self._config.auto_offset_reset).items():
                self._put_position(tp, offset, rk_sync)

    def _put_position(self, tp: TopicPartition, offset: int, rk_sync: bool) -> None:
        if rk_sync:
            self._set_position(tp, offset)
        else:
            self._positions[tp] = offset

    def _reset_offsets(self, tps: list[TopicPartition], policy: str) -> dict[TopicPartition, int]:
        if policy == "none":
            tp = tps[0]
            raise NoOffsetForPartitionError(
                f"{tp.topic}-{tp.partition} has no committed offset and auto_offset_reset is 'none'"
            )
        return self._list_offsets(tps, policy)

    def _list_offsets(self, tps: Iterable[TopicPartition], which: str) -> dict[TopicPartition, int]:
        """Kafka's ListOffsets of ``tps`` (``earliest``: log start, ``latest``: high watermark),
        one request through the admin client. why not the consumer's ``get_watermark_offsets``:
        its request waits behind the consumer's own long-polling fetch on the same connection
        (up to ``fetch.wait.max.ms``, 500 ms, per call)."""
        tps = sorted(tps)
        if not tps:
            return {}
        spec = OffsetSpec.earliest() if which == "earliest" else OffsetSpec.latest()
        return {tp: found.offset for tp, found in self._ask_offsets({tp: spec for tp in tps}).items()}

    def _ask_offsets(self, specs: dict[TopicPartition, Any]) -> dict[TopicPartition, Any]:
        """``AdminClient.list_offsets`` of ``specs``, bounded by the client's timeout, tried
        again while a partition meets a leader moment (a topic just created, a leader moving)."""
        deadline = time.monotonic() + self._timeout_s
        what = "look up the offsets of " + ", ".join(f"{tp.topic}-{tp.partition}" for tp in sorted(specs))
        while True:
            left = max(deadline - time.monotonic(), 0.001)
            try:
                futures = self._backend.admin.list_offsets(
                    {_rd(tp): spec for tp, spec in specs.items()}, request_timeout=left
                )
                return {
                    TopicPartition(rd.topic, rd.partition): future.result(timeout=left)
                    for rd, future in futures.items()
                }
            except KafkaException as e:
                if not is_code(e, *_LEADER_MOMENT) or time.monotonic() + RETRY_PAUSE_S >= deadline:
                    raise translate(e, what) from e
                time.sleep(RETRY_PAUSE_S)
            except TimeoutError as e:
                raise KafkaTimeoutError(f"{what}: no answer within the timeout") from e

    def position(self, partition: TopicPartition) -> int:
        """The offset of the next record ``poll`` returns (``Consumer``'s, over ``_Positions``)."""
        return super().position(partition)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Make the next ``poll`` read ``partition`` from ``offset`` (``Consumer``'s, over
        ``_Positions``: librdkafka is sought too)."""
        super().seek(partition, offset)

    def _seek_targets(self, partitions: tuple[TopicPartition, ...]) -> list[TopicPartition]:
        self._check_open()
        if not partitions:
            if not self._positions:
                raise IllegalStateError("no partitions are assigned")
            return sorted(self._positions)
        return sorted({self._check_assigned(tp) for tp in partitions})

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self._seek_to(self._seek_targets(partitions), "earliest")

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        self._seek_to(self._seek_targets(partitions), "latest")

    def _seek_to(self, tps: list[TopicPartition], policy: str) -> None:
        self._clear_buffer()
        for tp, offset in self._reset_offsets(tps, policy).items():
            self._set_position(tp, offset)

    def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        self._check_open()
        return self._list_offsets(self._known(partitions), "earliest")

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        self._check_open()
        return self._list_offsets(self._known(partitions), "latest")

    def offsets_for_times(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """The first offset of each partition whose record timestamp is >= the given one (ms),
        with that record's timestamp (Kafka's ListOffsets, through the admin client, which
        returns the timestamp librdkafka's consumer call leaves out)."""
        checked = self._checked_timestamps(timestamps)
        if not checked:
            return {}
        found = self._ask_offsets({tp: OffsetSpec.for_timestamp(ts) for tp, ts in checked.items()})
        return {
            tp: None
            if found[tp].offset < 0
            else OffsetAndTimestamp(found[tp].offset, found[tp].timestamp, -1)
            for tp in checked
        }

    def topics(self) -> set[str]:
        """Every topic of the cluster but Kafka's internal ones (``Consumer``'s: the backend's)."""
        return super().topics()

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        """The partition numbers of ``topic``, or None (``Consumer``'s: the backend's metadata)."""
        return super().partitions_for_topic(topic)

    # ------------------------------------------------------------------ pause / resume

    def pause(self, *partitions: TopicPartition) -> None:
        self._check_open()
        tps = [self._check_assigned(tp) for tp in partitions]
        self._clear_buffer()
        self._paused.update(tps)
        given = [_rd(tp) for tp in tps if tp in self._rk_assigned]
        if given:
            try:
                self._rk.pause(given)
            except KafkaException as e:
                raise translate(e, "pause") from e

    def resume(self, *partitions: TopicPartition) -> None:
        self._check_open()
        for tp in partitions:
            if not _is_tp(tp):
                raise TypeError(f"partitions must be TopicPartitions, not {type(tp).__name__}")
        resumed = [tp for tp in partitions if tp in self._paused]
        self._paused.difference_update(resumed)
        fetchable = [_rd(tp) for tp in resumed if tp in self._rk_assigned]
        if fetchable:
            try:
                self._rk.resume(fetchable)
            except KafkaException as e:
                raise translate(e, "resume") from e

    def paused(self) -> set[TopicPartition]:
        self._check_open()
        return set(self._paused)

    # ------------------------------------------------------------------ polling

    def poll(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Records since the last poll, by partition; waits up to ``timeout_ms`` for some
        (``Consumer``'s, over this class's ``_poll``)."""
        return super().poll(timeout_ms, max_records)

    def poll_columns(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, Columns]:
        """``poll`` as ``pylog.Columns`` per partition, the embedded layout, built from the
        fetched messages; deserializers are not applied (``Consumer``'s, over ``_poll``)."""
        return super().poll_columns(timeout_ms, max_records)

    def _poll(self, timeout_ms: Any, max_records: Any, *, columns: bool) -> dict:
        max_records = self._checked_poll(timeout_ms, max_records)
        if self._pending_error is not None:
            error, self._pending_error = self._pending_error, None
            raise error
        self._clear_buffer()
        rk = self._rk
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            if self._mode == "subscribed":
                self._refresh_auto_assignment()
                self._refresh_pattern()
            else:
                self._check_assigned_topics()
            self._maybe_auto_commit()
            if self._stuck:
                self._raise_stuck()
            if None in self._positions.values():
                self._init_positions(list(self._positions))
            try:
                messages = rk.consume(max_records, 0)
                if not messages:
                    remaining = deadline - time.monotonic()
                    if remaining > 0:
                        first = rk.poll(min(remaining, WAIT_SLICE_S))
                        if first is not None:
                            messages = [first]
                            if max_records > 1:
                                messages += rk.consume(max_records - 1, 0)
            except KafkaException as e:
                raise translate(e, "poll") from e
            if self._rebalance_failures:
                self._rewind_messages(messages)
                self._raise_rebalance_failures()
            if messages:
                out = self._collect(messages, max_records, columns)
                if out:
                    return out
            if time.monotonic() >= deadline:
                return {}

    def _collect(self, messages: list, max_records: int, columns: bool) -> dict:
        positions = self._positions
        out, errors = (_columns_of if columns else _records_of)(messages, positions)
        for tp, got in out.items():
            positions[tp] = _last_offset(got) + 1
        if errors:
            error = self._fetch_error(errors)
            if error is not None:
                if not out:
                    raise error
                self._pending_error = error
        if (
            out
            and not columns
            and (self._config.key_deserializer is not None or self._config.value_deserializer is not None)
        ):
            out = self._deserialized(out)
        return out

    def _rewind_messages(self, messages: list) -> None:
        """Messages consume returned that will not be handed out: librdkafka goes back to our positions."""
        for tp in {TopicPartition(m.topic(), m.partition()) for m in messages if m.error() is None}:
            position = self._positions.get(tp)
            if position is not None:
                self._rewind(tp, position)

    def _fetch_error(self, messages: list) -> BaseException | None:
        """The error to raise for the error messages of a consume, if any (the first one);
        out-of-range positions follow ``auto_offset_reset``; what librdkafka retries is logged."""
        raised: BaseException | None = None
        for m in messages:
            error = m.error()
            code = error.code()
            topic = m.topic()
            tp = TopicPartition(topic, m.partition()) if topic else None
            if code == _AUTO_OFFSET_RESET:
                if tp is None or tp not in self._positions:
                    continue
                if self._config.auto_offset_reset == "none":
                    self._stuck[tp] = (
                        f"position {self._positions[tp]} of {tp.topic}-{tp.partition} is outside the log "
                        f"and auto_offset_reset is 'none' ({error.str()})"
                    )
                    raised = raised or OffsetOutOfRangeError(self._stuck[tp])
                else:
                    offset = self._reset_offsets([tp], self._config.auto_offset_reset)[tp]
                    self._set_position(tp, offset)
            elif code in _UNKNOWN_TOPIC_CODES:
                # a subscribed topic not created yet waits for it; an assigned one is gone
                if self._mode == "assigned" and (tp is None or tp in self._positions):
                    raised = raised or translate(error, "poll")
            elif error.fatal() or code in _RAISED_CODES:
                raised = raised or translate(error, "poll")
            else:
                _log.info("consumer: %s (librdkafka retries)", error.str())
        return raised

    def _raise_stuck(self) -> None:
        for tp, why in self._stuck.items():
            if tp not in self._paused:
                raise OffsetOutOfRangeError(why)

    def __iter__(self) -> Iterator[ConsumerRecord]:
        return self

    def __next__(self) -> ConsumerRecord:
        """The next record (``Consumer``'s iterator, over ``_Positions``)."""
        return super().__next__()

    def _clear_buffer(self) -> None:
        """Drop the iterator's unreturned records; librdkafka is past them, so it goes back to
        our positions (the next record to hand out)."""
        if self._buffer:
            self._buffer.clear()
            for tp in self._buffer_next:
                position = self._positions.get(tp)
                if position is not None:
                    self._set_position(tp, position)
        self._buffer_next.clear()

    # ------------------------------------------------------------------ commits

    def _current_offsets(
        self, tps: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        wanted = self._positions if tps is None else {tp: self._positions.get(tp) for tp in tps}
        return {tp: OffsetAndMetadata(p, "", -1) for tp, p in wanted.items() if p is not None}

    def _commit_offsets(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if not offsets:
            return
        what = f"commit offsets of group {self._config.group_id!r}"
        try:
            results = self._rk.commit(
                offsets=[
                    RdTopicPartition(tp.topic, tp.partition, om.offset, metadata=om.metadata)
                    for tp, om in sorted(offsets.items())
                ],
                asynchronous=False,
            )
        except KafkaException as e:
            raise translate(e, what) from e
        for rd in results or ():
            if rd.error is not None:
                raise translate(rd.error, f"{what} ({rd.topic}-{rd.partition})")

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata] | None = None) -> None:
        """Commit ``offsets`` (default: every assigned position) to the group (``Consumer``'s,
        over this class's ``_current_offsets``/``_commit_offsets``); ``CommitFailedError`` if
        the group refused it."""
        super().commit(offsets)

    def commit_async(
        self, offsets: dict[TopicPartition, OffsetAndMetadata] | None = None, callback: Callable | None = None
    ) -> Future:
        """``commit`` reporting to ``callback(offsets, exception_or_None)``: as on the embedded
        backend the commit runs now (bounded by the client's timeouts) and the future is
        already resolved (``Consumer``'s)."""
        return super().commit_async(offsets, callback)

    def committed(self, partition: TopicPartition, metadata: bool = False) -> int | OffsetAndMetadata | None:
        """The group's committed offset of ``partition`` (an int, or the OffsetAndMetadata with
        ``metadata=True``), or None."""
        self._check_open()
        self._group_id()
        if not _is_tp(partition):
            raise TypeError(f"partition must be a TopicPartition, not {type(partition).__name__}")
        found = self._committed_offsets([partition]).get(partition)
        if found is None:
            return None
        return found if metadata else found.offset

    def _auto_commit_partitions(self, tps: Iterable[TopicPartition] | None) -> None:
        if not self._auto_commit_enabled():
            return
        offsets = self._current_offsets(tps)
        try:
            self._commit_offsets(offsets)
        except PylogError as e:
            # Kafka logs a failed auto-commit and goes on (clients/src/main/java/org/apache/kafka/
            # clients/consumer/internals/ConsumerCoordinator.java, maybeAutoCommitOffsetsAsync):
            # a refused generation, a timeout, a topic deleted meanwhile
            _log.warning("auto-commit of %s failed: %s", sorted(offsets), e)

    # ------------------------------------------------------------------ close

    def close(self, autocommit: bool = True) -> None:
        """Close (idempotent): auto-commit if enabled, hand the assignment back (group mode:
        ``on_partitions_revoked``), leave the group and destroy the librdkafka handle; returns
        within the client's timeouts even when the cluster is gone."""
        if self._closed:
            return
        try:
            if autocommit:
                self._maybe_auto_commit(force=True)
            if self._in_group():
                self._hand_back()
        finally:
            self._closed = True
            self._closing = True
            self._buffer.clear()
            self._buffer_next.clear()
            self._positions.clear()
            self._close_handle()

    def _close_handle(self) -> None:
        """librdkafka's close (leave the group, stop the threads), in a helper thread joined with
        the client's timeout: a close that waits on a broker gone away cannot hang the caller."""
        rk = self._rk
        done = threading.Event()

        def close() -> None:
            try:
                rk.close()
            except Exception as e:  # already closed, or a broker error: nothing left to do
                _log.debug("consumer close: %s", e)
            finally:
                done.set()

        closer = threading.Thread(target=close, name="pylog-kafka-consumer-close", daemon=True)
        closer.start()
        if not done.wait(self._timeout_s):
            _log.warning(
                "the Kafka consumer's close did not finish within %.1f s; left to finish alone",
                self._timeout_s,
            )

    def __enter__(self) -> KafkaConsumer:
        return self

    def _disown_after_fork(self) -> None:
        """In a forked child: closed (``Consumer``'s rule), and the librdkafka handle is never
        destroyed here (``pylog.forking.keep_forever``: its threads are the parent's)."""
        super()._disown_after_fork()
        keep_forever(self._rk)

    def __exit__(self, exc_type: object, *exc: object) -> None:
        """``close``, without auto-commit when the block failed (``Consumer``'s)."""
        super().__exit__(exc_type, *exc)


__all__ = ["KafkaConsumer"]
