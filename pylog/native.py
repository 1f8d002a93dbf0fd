"""The native engine: a thin Python face over ``pylog._native.PartitionLog`` (Rust).

Everything that touches files or loops over records runs in Rust with the GIL released; this
module only resolves arguments shared with the reference engine (codec names, record ranges) and
wraps native buffers as numpy arrays without copying.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from pylog import _native
from pylog.config import LogConfig, resolve_codec
from pylog.errors import InvalidConfigError, OffsetOutOfRangeError
from pylog.partition import (
    CLEANER_BUSY,
    BytesLike,
    Cleanable,
    CleanResult,
    Columns,
    Header,
    Record,
    RetentionResult,
    check_record_range,
    timestamps_from_array,
)

if TYPE_CHECKING:
    from typing_extensions import Buffer

#: bytes of batches decoded per trip into Rust by ``records()``
RECORDS_CHUNK_BYTES = 1 << 20
#: ``log.cleaner.dedupe.buffer.size``: Kafka's default (128 MiB) and pylog's minimum
DEFAULT_MAP_BYTES = 128 * 1024 * 1024
MIN_MAP_BYTES = 1024


class NativePartitionLog:
    """A partition log served by the Rust engine (see ``pylog.partition.PartitionLog``)."""

    def __init__(self, path: str, config: LogConfig):
        self._config = config
        self._log = _native.PartitionLog(path, config.to_kafka_dict(), Record)
        # why: random reads are call-bound (a few microseconds each); binding the Rust method on
        # the instance skips a Python frame per call. The method below documents it.
        self.read = self._log.read  # type: ignore[method-assign]
        # why bound too: a consumer reads it for every partition before each look
        self.tail_seq = self._log.tail_seq  # type: ignore[method-assign]

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"[{self.start_offset}, {self.end_offset})"
        return f"<NativePartitionLog {self.path!r} {state}>"

    @property
    def path(self) -> str:
        return self._log.path

    @property
    def config(self) -> LogConfig:
        return self._config

    @property
    def start_offset(self) -> int:
        return self._log.start_offset

    @property
    def end_offset(self) -> int:
        return self._log.end_offset

    @property
    def closed(self) -> bool:
        return self._log.closed

    def append(
        self,
        values: Sequence[BytesLike | None],
        *,
        keys: Sequence[BytesLike | None] | None = None,
        headers: Sequence[Iterable[Header]] | None = None,
        timestamps_ms: Sequence[int] | np.ndarray | None = None,
        compression: str | None = None,
    ) -> int:
        """Append the records as one RecordBatch v2 and return its base offset."""
        codec = resolve_codec(compression, self._config)
        if isinstance(timestamps_ms, np.ndarray):
            timestamps_ms = timestamps_from_array(timestamps_ms)
        return self._log.append(values, keys, headers, timestamps_ms, codec)

    def append_raw(self, batch: Buffer) -> int:
        """Append one pre-encoded v2 batch (CRC checked); its baseOffset is rewritten."""
        return self._log.append_raw(batch)

    def read(self, offset: int, max_bytes: int) -> memoryview:
        """Whole batches of one segment from the batch holding ``offset`` (zero-copy when sealed)."""
        return self._log.read(offset, max_bytes)

    def records(self, start_offset: int | None = None, end_offset: int | None = None) -> Iterator[Record]:
        """Iterate records with offsets in ``[start_offset, end_offset)``, CRC-checked."""
        start, end = check_record_range(start_offset, end_offset, self.start_offset, self.end_offset)
        return self._iter_records(start, end)

    def _iter_records(self, position: int, end: int) -> Iterator[Record]:
        while position < end:
            try:
                # one segment per step (the reference engine's): records of a segment that a
                # retention run deletes meanwhile are not yielded once this step is past it
                chunk, position = self._log.records_chunk(
                    position, end, RECORDS_CHUNK_BYTES, one_segment=True
                )
            except OffsetOutOfRangeError:
                # retention or delete_before moved the log start past this iterator's position
                # (its range was checked at call time): go on at the next surviving offset
                start = self._log.start_offset
                if position >= start:
                    raise
                position = start
                continue
            yield from chunk

    def records_chunk(self, start: int, end: int, max_bytes: int) -> tuple[list[Record], int]:
        """Records with offsets in ``[start, end)`` from about ``max_bytes`` of whole batches (at
        least one), and the offset to continue from: the next batch's, so compaction gaps and
        control batches are stepped over (``end`` when nothing of the range is left; ``end`` is
        clamped to the log end and must not be below ``start``). ``start`` outside
        ``[start_offset, end_offset]`` raises ``OffsetOutOfRangeError``."""
        return self._log.records_chunk(start, end, max_bytes)

    def consumer_records_chunk(
        self, start: int, end: int, max_bytes: int, topic: str, partition: int, record_type: type
    ) -> tuple[list, int]:
        """``records_chunk`` with the records built as ``record_type`` (``pylog.ConsumerRecord``)
        of ``topic``/``partition``, in Rust (no Python frame per record). ``start`` outside
        ``[start_offset, end_offset]`` raises ``OffsetOutOfRangeError``."""
        return self._log.consumer_records_chunk(start, end, max_bytes, topic, partition, record_type)

    def tail_seq(self) -> int:
        """The coordination page's append counter (``Waiter.wait`` sleeps while it is unchanged)."""
        return self._log.tail_seq()

    def read_columns(self, offset: int, max_records: int) -> Columns:
        """Up to ``max_records`` records from ``offset`` as numpy columns (no object per record)."""
        offsets, timestamps, keys, key_offsets, key_null, values, value_offsets, value_null = (
            self._log.read_columns(offset, max_records)
        )
        return Columns(
            offsets=np.frombuffer(offsets, dtype=np.int64),
            timestamps=np.frombuffer(timestamps, dtype=np.int64),
            keys=np.frombuffer(keys, dtype=np.uint8),
            key_offsets=np.frombuffer(key_offsets, dtype=np.int64),
            key_null=np.frombuffer(key_null, dtype=np.bool_),
            values=np.frombuffer(values, dtype=np.uint8),
            value_offsets=np.frombuffer(value_offsets, dtype=np.int64),
            value_null=np.frombuffer(value_null, dtype=np.bool_),
        )

    def offset_for_timestamp(self, ts_ms: int) -> int | None:
        """First offset whose timestamp is >= ``ts_ms`` (Kafka's ListOffsets rule), else None."""
        return self._log.offset_for_timestamp(ts_ms)

    def roll(self) -> None:
        """Seal the active segment and start a new one (no-op when it is empty)."""
        self._log.roll()

    def flush(self) -> None:
        """Write out what is held in memory, without fsync."""
        self._log.flush()

    def sync(self) -> None:
        """fsync the unsynced segments and the directory, then advance the recovery point."""
        self._log.sync()

    def wait_for(self, offset: int, timeout_ms: int) -> bool:
        """Block until ``end_offset > offset`` or the timeout; True when data arrived."""
        return self._log.wait_for(offset, timeout_ms)

    def take_longest_writer_lock_wait_ns(self) -> int:
        """Diagnostic (native engine only): the longest writer-lock wait (ns) since the last call."""
        return self._log.take_longest_writer_lock_wait_ns()

    def close(self) -> None:
        """Close; the last process to close writes the clean-shutdown marker. Idempotent."""
        self._log.close()

    def delete_before(self, offset: int) -> RetentionResult:
        """Kafka's DeleteRecords: move the log start to ``offset`` (``OffsetOutOfRangeError``
        outside ``[start_offset, end_offset]``) and delete the segments wholly below it when no
        cleaner is busy (docs/partition-log.md, "Retention")."""
        return RetentionResult(*self._log.delete_before(offset))

    def apply_retention(self, now_ms: int | None = None, *, wait: bool = True) -> RetentionResult:
        """Kafka's deleteOldSegments at ``now_ms`` (None: the wall clock): whole sealed
        segments, oldest first, by log start, ``retention.bytes`` and ``retention.ms``, under the
        cleaner lock (``wait=False``: skipped, deleting nothing, when another cleaner holds it)."""
        done = self._log.apply_retention(now_ms, bool(wait))
        if done is None:
            return RetentionResult(0, 0, self._log.start_offset, CLEANER_BUSY)
        return RetentionResult(*done)

    def cleanable(self, now_ms: int | None = None) -> Cleanable:
        """The cleaner's view of this partition now (no lock, no write)."""
        return Cleanable(*self._log.cleanable(now_ms))

    def compact(
        self,
        now_ms: int | None = None,
        *,
        map_bytes: int | None = None,
        force: bool = True,
        wait: bool = True,
        cancel: object | None = None,
    ) -> CleanResult:
        """Compaction passes until the dirty range is clean (docs/partition-log.md,
        "Compaction"); the GIL is released, ``cancel.is_set()`` and Ctrl-C stop it at the next
        safe point."""
        if map_bytes is None:
            map_bytes = DEFAULT_MAP_BYTES
        elif isinstance(map_bytes, bool) or not isinstance(map_bytes, int):
            raise InvalidConfigError(f"log.cleaner.dedupe.buffer.size must be an integer, not {map_bytes!r}")
        if map_bytes < MIN_MAP_BYTES:
            raise InvalidConfigError(
                f"log.cleaner.dedupe.buffer.size must be at least {MIN_MAP_BYTES} bytes, got {map_bytes}"
            )
        return CleanResult(*self._log.compact(now_ms, map_bytes, bool(force), bool(wait), cancel))

    def __enter__(self) -> NativePartitionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Waiter:
    """One sleep on many partitions of this engine (``pylog._native.Waiter``; futex_waitv).

    ``wait(logs, seen, wake_seen, timeout_ms)`` returns when a log's ``tail_seq()`` differs from
    its ``seen`` value (an append, any process, either engine), ``wake_seq()`` from ``wake_seen``
    (``wake()`` from any thread), or after the timeout; callers re-check (spurious returns).
    """

    __slots__ = ("_waiter", "wake", "wake_seq")

    def __init__(self) -> None:
        self._waiter = _native.Waiter()
        self.wake = self._waiter.wake
        self.wake_seq = self._waiter.wake_seq

    def wait(
        self, logs: Sequence[NativePartitionLog], seen: Sequence[int], wake_seen: int, timeout_ms: int
    ) -> None:
        self._waiter.wait([log._log for log in logs], list(seen), wake_seen, timeout_ms)
