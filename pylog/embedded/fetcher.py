"""The Fetcher: positions of a consumer's assigned partitions, fetching from them, and waiting.

Owned by one ``pylog.Consumer`` and used from its thread only, except ``wakeup()``, which any
thread may call (the group member's heartbeat thread does, to bring a blocked ``fetch`` back so
the consumer runs a rebalance now).

Positions (Kafka's fetch position, clients/src/main/java/org/apache/kafka/clients/consumer/
internals/SubscriptionState.java): each assigned partition has the offset of the next record to
return, or None until the consumer sets it (from a committed offset, or by ``reset``). A fetch
moves a partition's position to the engine's continuation offset (``records_chunk`` →
``(records, next_offset)``: the next batch's offset), never by counting records, so compaction
gaps and control batches are stepped over (Kafka's FetchCollector does the same with
``nextFetchOffset = batch.nextOffset()``). A fetch capped by ``max_records`` inside a batch
stops at the first record not returned (the engine's ``end``).

A position outside ``[log start, log end]`` (retention removed its records, or a seek past the
end) follows ``auto_offset_reset`` as Kafka's OFFSET_OUT_OF_RANGE does: ``earliest`` → the log
start, ``latest`` → the log end, ``none`` → ``OffsetOutOfRangeError``.

Waiting (no busy loop, no polling): before each look the fetcher reads every partition's append
counter (``log.tail_seq()``, on the partition's ``.pylog.shm`` page) and its waiter's wake word;
when no partition had records it sleeps in one ``futex_waitv`` on all of them
(``Waiter.wait``: native/src/python/wait.rs, pylog/reference/shared_state.py), so an append to
any of them in any process, or a ``wakeup()``, ends the sleep at once, and one that lands
between the look and the sleep makes the sleep return immediately. The sleep is bounded by the
engine's fallback (``WAKE_FALLBACK_MS``: writers outside the protocol, or one killed between its
write and its wake-up). With more than ``WAIT_ANY_MAX_WORDS - 1`` partitions only the first
ones are watched and the rest are looked at on each fallback (a documented limit).

A ``wakeup()`` that arrives while no fetch is blocked is kept: the next ``fetch`` looks once and
returns without sleeping, as Kafka's ``ConsumerNetworkClient.wakeup`` makes the next blocking
call return.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pylog.engine import default_engine
from pylog.errors import LogClosedError, NoOffsetForPartitionError, OffsetOutOfRangeError
from pylog.partition import Columns
from pylog.types import ConsumerRecord, OffsetAndTimestamp, TopicPartition

#: bytes of batches one partition contributes to one fetch (kafka-python's
#: max_partition_fetch_bytes default; at least one batch is always returned)
DEFAULT_MAX_PARTITION_FETCH_BYTES = 1 << 20
#: longest sleep between looks at the files (the engines' wait_for fallback)
WAKE_FALLBACK_MS = 500
#: most empty chunks (control batches, compaction gaps) stepped over per partition per look
_MAX_EMPTY_STEPS = 64

RESET_POLICIES = ("earliest", "latest", "none")


def _waiter(engine: str | None) -> Any:
    if (engine or default_engine()) == "native":
        from pylog.native import Waiter

        return Waiter()
    from pylog.reference.shared_state import Waiter as ReferenceWaiter

    return ReferenceWaiter()


class Fetcher:
    """Positions, fetching and waiting behind one consumer (see the module docstring)."""

    def __init__(self, backend: Any, config: Any):
        self._backend = backend
        self._reset_policy: str = getattr(config, "auto_offset_reset", "latest")
        self._max_bytes: int = getattr(config, "max_partition_fetch_bytes", DEFAULT_MAX_PARTITION_FETCH_BYTES)
        self._positions: dict[TopicPartition, int | None] = {}
        self._waiter = _waiter(backend.engine)
        self._wake_consumed = self._waiter.wake_seq()
        #: where the next fetch starts in its partition list (so one busy partition does not
        #: starve the others: Kafka's fetcher rotates the same way)
        self._rotation = 0

    # ------------------------------------------------------------------ assignment and positions

    def assigned(self) -> set[TopicPartition]:
        return set(self._positions)

    def is_assigned(self, tp: TopicPartition) -> bool:
        return tp in self._positions

    def add(self, tps: Iterable[TopicPartition]) -> None:
        """Assign partitions (their positions unset until ``seek``/``reset``)."""
        for tp in tps:
            self._positions.setdefault(tp, None)

    def remove(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self._positions.pop(tp, None)

    def missing_positions(self) -> list[TopicPartition]:
        return [tp for tp, p in self._positions.items() if p is None]

    def position(self, tp: TopicPartition) -> int | None:
        return self._positions[tp]

    def positions(self) -> dict[TopicPartition, int]:
        """The set positions of the assigned partitions."""
        return {tp: p for tp, p in self._positions.items() if p is not None}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._positions[tp] = offset

    def reset(self, tp: TopicPartition, policy: str | None = None) -> int:
        """Set the position by ``policy`` (``earliest``/``latest``; default: ``auto_offset_reset``);
        with ``none``, ``NoOffsetForPartitionError``."""
        policy = policy or self._reset_policy
        if policy == "none":
            raise NoOffsetForPartitionError(
                f"{tp.topic}-{tp.partition} has no committed offset and auto_offset_reset is 'none'"
            )
        log = self._log(tp)
        offset = self._call(tp, lambda: log.start_offset if policy == "earliest" else log.end_offset)
        self._positions[tp] = offset
        return offset

    # ------------------------------------------------------------------ offsets

    def beginning_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        out = {}
        for tp in tps:
            log = self._log(tp)
            out[tp] = self._call(tp, lambda log=log: log.start_offset)
        return out

    def end_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        out = {}
        for tp in tps:
            log = self._log(tp)
            out[tp] = self._call(tp, lambda log=log: log.end_offset)
        return out

    def offsets_for_times(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """Kafka's ListOffsets by timestamp: the first offset whose record timestamp is >= the
        target, with that record's timestamp; None when there is none."""
        out: dict[TopicPartition, OffsetAndTimestamp | None] = {}
        for tp, ts in timestamps.items():
            log = self._log(tp)
            offset = self._call(tp, lambda log=log, ts=ts: log.offset_for_timestamp(ts))
            if offset is None:
                out[tp] = None
                continue
            records, _ = self._call(
                tp, lambda log=log, offset=offset: log.records_chunk(offset, offset + 1, 1)
            )
            out[tp] = OffsetAndTimestamp(offset, records[0].timestamp if records else ts, -1)
        return out

    # ------------------------------------------------------------------ fetching

    def wakeup(self) -> None:
        """Make a blocked (or the next) ``fetch`` return now. Thread-safe."""
        self._waiter.wake()

    def fetch(
        self, tps: Sequence[TopicPartition], max_records: int, timeout_ms: float
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Records from ``tps`` (assigned, positions set), at most ``max_records`` in all;
        waits up to ``timeout_ms`` for an append when there are none. Positions advance."""
        return self._fetch(tps, max_records, timeout_ms, self._fetch_records)

    def fetch_columns(
        self, tps: Sequence[TopicPartition], max_records: int, timeout_ms: float
    ) -> dict[TopicPartition, Columns]:
        """``fetch`` as the engine's columns (no object per record)."""
        return self._fetch(tps, max_records, timeout_ms, self._fetch_columns)

    def _fetch(
        self, tps: Sequence[TopicPartition], max_records: int, timeout_ms: float, look: Callable
    ) -> dict:
        deadline = time.monotonic() + max(timeout_ms, 0) / 1000
        if tps:
            start = self._rotation % len(tps)
            tps = list(tps[start:]) + list(tps[:start])
            self._rotation += 1
        while True:
            # why read before looking: an append (or a wakeup) after the look changes a word,
            # so the sleep below returns at once instead of missing it
            wake_seen = self._waiter.wake_seq()
            logs = [self._log(tp) for tp in tps]
            seen = [self._call(tp, log.tail_seq) for tp, log in zip(tps, logs, strict=True)]
            out = look(tps, logs, max_records)
            woken = wake_seen != self._wake_consumed
            self._wake_consumed = wake_seen
            if out or woken:
                return out
            remaining_ms = (deadline - time.monotonic()) * 1000
            if remaining_ms <= 0:
                return out
            self._waiter.wait(logs, seen, wake_seen, max(1, int(min(remaining_ms, WAKE_FALLBACK_MS) + 0.999)))

    def _fetch_records(self, tps: Sequence[TopicPartition], logs: list, max_records: int) -> dict:
        out: dict[TopicPartition, list[ConsumerRecord]] = {}
        count = 0
        for tp, log in zip(tps, logs, strict=True):
            if count >= max_records:
                break
            records = self._partition_records(tp, log, max_records - count)
            if records:
                out[tp] = records
                count += len(records)
        return out

    def _partition_records(self, tp: TopicPartition, log: Any, wanted: int) -> list[ConsumerRecord]:
        position = self._positions[tp]
        assert position is not None, tp
        for _ in range(_MAX_EMPTY_STEPS):
            # why the end: offsets rise by at least one per record, so the records wanted lie
            # below position + wanted; a batch straddling it continues there next time
            end = position + wanted
            try:
                records, next_offset = self._call(
                    tp,
                    log.consumer_records_chunk,
                    position,
                    end,
                    self._max_bytes,
                    tp.topic,
                    tp.partition,
                    ConsumerRecord,
                )
            except OffsetOutOfRangeError:
                position = self._out_of_range(tp, log, position)
                continue
            self._positions[tp] = next_offset
            if records or next_offset <= position:
                return records
            position = next_offset  # a control batch or a compacted-away range: step over it
        return []

    def _fetch_columns(self, tps: Sequence[TopicPartition], logs: list, max_records: int) -> dict:
        out: dict[TopicPartition, Columns] = {}
        count = 0
        for tp, log in zip(tps, logs, strict=True):
            if count >= max_records:
                break
            columns = self._partition_columns(tp, log, max_records - count)
            if columns is not None and columns.num_records:
                out[tp] = columns
                count += columns.num_records
        return out

    def _partition_columns(self, tp: TopicPartition, log: Any, wanted: int) -> Columns | None:
        position = self._positions[tp]
        assert position is not None, tp
        for _ in range(2):
            # why the end read first: ``read_columns`` says nothing of where it stopped; when it
            # returns fewer than ``wanted`` it read through the log end of its own moment,
            # which is at or past this one, so every record below ``end_before`` is in it and
            # the position may move there (over a trailing gap or control batch)
            end_before = self._call(tp, lambda: log.end_offset)
            try:
                columns = self._call(tp, log.read_columns, position, wanted)
            except OffsetOutOfRangeError:
                position = self._out_of_range(tp, log, position)
                continue
            n = columns.num_records
            last_next = int(columns.offsets[-1]) + 1 if n else position
            self._positions[tp] = last_next if n >= wanted else max(last_next, end_before)
            return columns
        return None

    def _out_of_range(self, tp: TopicPartition, log: Any, position: int) -> int:
        start, end = self._call(tp, lambda: (log.start_offset, log.end_offset))
        if start <= position <= end:
            return position  # the log moved under us (e.g. an append raced the check): retry
        if self._reset_policy == "none":
            raise OffsetOutOfRangeError(
                f"position {position} of {tp.topic}-{tp.partition} is outside the log [{start}, {end}]"
                " and auto_offset_reset is 'none'"
            )
        offset = start if self._reset_policy == "earliest" else end
        self._positions[tp] = offset
        return offset

    # ------------------------------------------------------------------ engine access

    def _log(self, tp: TopicPartition) -> Any:
        return self._backend.partition_log(tp)

    def _call(self, tp: TopicPartition, f: Callable[..., Any], *args: Any) -> Any:
        """``f(*args)`` on a cached engine handle; a handle whose directory went away (the topic was
        deleted by another process) becomes ``UnknownTopicOrPartitionError`` (the backend's
        ``check_partition``)."""
        try:
            return f(*args)
        except (LogClosedError, OSError):
            check = getattr(self._backend, "check_partition", None)
            if check is not None:
                with contextlib.suppress(LogClosedError, OSError):
                    check(tp)
            raise
