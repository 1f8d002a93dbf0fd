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

Two shortcuts keep a look cheap: a partition found empty is not asked again while its append
counter stays the same even value (at most one fallback interval), so idle partitions among busy
ones cost a word comparison; and a fetch asks the engine for up to ``FETCH_AHEAD`` times the
records wanted, keeping the rest for the next polls (``_Leftover``; dropped when the partition is
removed or its engine handle changes), so a batch larger than a poll is decoded once.

A ``wakeup()`` that arrives while no fetch is blocked is kept: the next ``fetch`` looks once and
returns without sleeping, as Kafka's ``ConsumerNetworkClient.wakeup`` makes the next blocking
call return.
"""

from __future__ import annotations

import contextlib
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
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
#: a fetch from the engine asks for up to this many times the records wanted; the rest waits in
#: a ``_Leftover`` for the next polls (why: a batch larger than ``max_records`` would otherwise
#: be decoded again by every poll that takes a part of it; Kafka's consumer keeps the rest of a
#: fetched response the same way, clients/src/main/java/org/apache/kafka/clients/consumer/
#: internals/CompletedFetch.java). Bounds what is held: 3x ``max_records`` per partition.
FETCH_AHEAD = 4
_OFFSET = itemgetter(3)  # ConsumerRecord.offset


@dataclass
class _Leftover:
    """Records fetched for a partition but not returned yet: every record of
    ``[start, next_offset)`` (as the engine returned them), those from ``index`` on unreturned."""

    log: Any
    start: int
    next_offset: int
    records: list
    index: int

    def take(self, position: int, wanted: int) -> tuple[list, int] | None:
        """The records from ``position`` on (at most ``wanted``) and the position after them;
        None when ``position`` is outside what this holds."""
        if not self.start <= position < self.next_offset:
            return None
        i = bisect_left(self.records, position, key=_OFFSET)
        taken = self.records[i : i + wanted]
        self.index = i + len(taken)
        after = self.next_offset if self.index >= len(self.records) else _OFFSET(self.records[self.index])
        return taken, after


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
        #: partitions whose position is unset
        self._unset: set[TopicPartition] = set()
        #: partitions with records fetched ahead (see FETCH_AHEAD)
        self._leftover: dict[TopicPartition, _Leftover] = {}
        #: partitions last found empty at their position: (append counter, position, when);
        #: while the counter has not moved the engine is not asked again (see ``_quiet``)
        self._idle: dict[TopicPartition, tuple[int, int, float]] = {}
        self._assignment_version = 0
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
            if tp not in self._positions:
                self._positions[tp] = None
                self._unset.add(tp)
                self._assignment_version += 1

    def remove(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            if self._positions.pop(tp, 0) != 0:
                self._assignment_version += 1
            self._unset.discard(tp)
            self._idle.pop(tp, None)
            self._leftover.pop(tp, None)

    def missing_positions(self) -> set[TopicPartition]:
        return set(self._unset)

    def has_missing_positions(self) -> bool:
        return bool(self._unset)

    @property
    def assignment_version(self) -> int:
        """Changes whenever partitions are added or removed."""
        return self._assignment_version

    def position(self, tp: TopicPartition) -> int | None:
        return self._positions[tp]

    def positions(self) -> dict[TopicPartition, int]:
        """The set positions of the assigned partitions."""
        return {tp: p for tp, p in self._positions.items() if p is not None}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Move the position; records fetched ahead are dropped (a seek means "read the log
        there again", as Kafka's seek discards the buffered fetch of the partition)."""
        self._leftover.pop(tp, None)
        self.set_position(tp, offset)

    def set_position(self, tp: TopicPartition, offset: int) -> None:
        """Move the position, keeping records fetched ahead (the consumer's iterator hands out
        a poll's records one by one)."""
        self._positions[tp] = offset
        self._unset.discard(tp)

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
        self.seek(tp, offset)
        return offset

    # ------------------------------------------------------------------ offsets

    def beginning_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._offsets(tps, lambda log: log.start_offset)

    def end_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._offsets(tps, lambda log: log.end_offset)

    def _offsets(
        self, tps: Iterable[TopicPartition], which: Callable[[Any], int]
    ) -> dict[TopicPartition, int]:
        out = {}
        for tp in tps:
            log = self._log(tp)
            out[tp] = self._call(tp, lambda log=log: which(log))
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
        if len(tps) > 1:
            start = self._rotation % len(tps)
            tps = [*tps[start:], *tps[:start]]
            self._rotation += 1
        partition_log = self._backend.partition_log
        while True:
            # why read before looking: an append (or a wakeup) after the look changes a word,
            # so the sleep below returns at once instead of missing it
            wake_seen = self._waiter.wake_seq()
            logs = [partition_log(tp) for tp in tps]
            seen = [log.tail_seq() for log in logs]
            out = look(tps, logs, seen, max_records)
            woken = wake_seen != self._wake_consumed
            self._wake_consumed = wake_seen
            if out or woken:
                return out
            remaining_ms = (deadline - time.monotonic()) * 1000
            if remaining_ms <= 0:
                return out
            self._waiter.wait(logs, seen, wake_seen, max(1, int(min(remaining_ms, WAKE_FALLBACK_MS) + 0.999)))

    def _quiet(self, tp: TopicPartition, seq: int, position: int | None, now: float) -> bool:
        """Nothing was appended to ``tp`` since it was last found empty at ``position``: its
        append counter is the same even value. why bounded by the fallback: a writer outside
        the protocol (no counter) is noticed by a real look at least that often."""
        idle = self._idle.get(tp)
        return (
            idle is not None
            and idle[0] == seq
            and idle[1] == position
            and not seq & 1
            and now - idle[2] < WAKE_FALLBACK_MS / 1000
        )

    def _fetch_records(
        self, tps: Sequence[TopicPartition], logs: list, seen: list[int], max_records: int
    ) -> dict:
        return self._look(tps, logs, seen, max_records, self._partition_records, len)

    def _partition_records(self, tp: TopicPartition, log: Any, wanted: int) -> list[ConsumerRecord]:
        position = self._positions[tp]
        assert position is not None, tp
        left = self._leftover.pop(tp, None)
        if left is not None and left.log is log:
            found = left.take(position, wanted)
            if found is not None:
                taken, after = found
                self._positions[tp] = after
                if after < left.next_offset:
                    self._leftover[tp] = left
                if taken:
                    return taken
                position = after
        for _ in range(_MAX_EMPTY_STEPS):
            # why the end: offsets rise by at least one per record, so FETCH_AHEAD x the records
            # wanted lie below position + that many; a batch straddling it continues there
            ahead = wanted * FETCH_AHEAD
            try:
                records, next_offset = log.consumer_records_chunk(
                    position, position + ahead, self._max_bytes, tp.topic, tp.partition, ConsumerRecord
                )
            except OffsetOutOfRangeError:
                position = self._out_of_range(tp, log, position)
                continue
            except (LogClosedError, OSError):
                self._check_partition(tp)
                raise
            if len(records) > wanted:
                self._leftover[tp] = _Leftover(log, position, next_offset, records, wanted)
                self._positions[tp] = _OFFSET(records[wanted])
                return records[:wanted]
            self._positions[tp] = next_offset
            if records or next_offset <= position:
                return records
            position = next_offset  # a control batch or a compacted-away range: step over it
        return []

    def _fetch_columns(
        self, tps: Sequence[TopicPartition], logs: list, seen: list[int], max_records: int
    ) -> dict:
        return self._look(
            tps, logs, seen, max_records, self._partition_columns, lambda c: 0 if c is None else c.num_records
        )

    def _look(
        self,
        tps: Sequence[TopicPartition],
        logs: list,
        seen: list[int],
        max_records: int,
        read: Callable[[TopicPartition, Any, int], Any],
        size: Callable[[Any], int],
    ) -> dict:
        """One look over ``tps``: ``read(tp, log, wanted)`` per partition not known quiet, until
        ``max_records`` (counted by ``size``); a partition that gave nothing is remembered as
        quiet at its tail sequence and position."""
        out: dict = {}
        count = 0
        now = time.monotonic()
        for tp, log, seq in zip(tps, logs, seen, strict=True):
            if count >= max_records:
                break
            if self._quiet(tp, seq, self._positions[tp], now):
                continue
            got = read(tp, log, max_records - count)
            n = size(got)
            if n:
                out[tp] = got
                count += n
            else:
                self._idle[tp] = (seq, self._positions[tp], now)  # type: ignore[assignment]
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
        self.seek(tp, offset)
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
            self._check_partition(tp)
            raise

    def _check_partition(self, tp: TopicPartition) -> None:
        check = getattr(self._backend, "check_partition", None)
        if check is not None:
            with contextlib.suppress(LogClosedError, OSError):
                check(tp)
