"""The reference partition log: one topic-partition directory, pure Python (docs/partition-log.md).

State, guarded by one ``RLock`` (never held while waiting): the segments sorted by base offset; the
last one is **active** and its index entries are derived in memory from the bytes; the others are
sealed and immutable. Every append, roll, sync, open and close also takes the cross-process
**writer lock** (lock.py) and first re-syncs to the on-disk tail, because another process (or
another ``PartitionLog`` object) may have appended, rolled, or died mid-write:

- ``fstat`` the active ``.log``: link count 0 (or shorter than what we know) → reload the directory;
- take in the complete, CRC-valid batches past the known size; an incomplete or corrupt tail at or
  above the recovery point is torn: a writer truncates it (nobody alive is mid-write while it holds
  the lock), a reader ignores it; below the recovery point it is corruption of synced data:
  ``CorruptBatchError`` and nothing is cut (``_check_tail``);
- ``{end:020}.log`` exists → another process rolled: seal locally, move to it, repeat.

Reads re-sync the same way without the writer lock, so readers never block writers.

Durability: an append returns after one positional write of the whole batch (so it survives the
process being killed); ``sync()`` fsyncs from the segment holding the recovery point and then
advances the recovery-point checkpoint. The first opener runs recovery unless the last closer left
``.kafka_cleanshutdown``; the last closer syncs and leaves it.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
import time
import weakref
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from pylog.config import LogConfig, resolve_codec
from pylog.errors import (
    CorruptBatchError,
    CorruptKind,
    LogClosedError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
)
from pylog.partition import BytesLike, Columns, Header, Record, check_record_range
from pylog.reference import batch as record_batch
from pylog.reference import checkpoint, events, record, validator
from pylog.reference.checkpoint import fsync_dir
from pylog.reference.lock import OPEN_LOCK_FILE, WRITER_LOCK_FILE, FileLock
from pylog.reference.recovery import list_segment_bases, recover
from pylog.reference.segment import LOG_SUFFIX, Batch, Segment, file_prefix

if TYPE_CHECKING:  # collections.abc.Buffer is 3.12+; annotations only
    from typing_extensions import Buffer  # collections.abc.Buffer is 3.12+

#: bytes of batches decoded per visit under the lock by ``records()`` / ``read_columns()``
RECORDS_CHUNK_BYTES = 1 << 20
#: how often ``wait_for`` looks at the disk for other processes' appends
WAIT_POLL_SECONDS = 0.002


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def _as_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}")
    return int(value)


class PartitionLog:
    """A partition log served by the pure-Python engine (see ``pylog.partition.PartitionLog``)."""

    def __init__(self, path: str, config: LogConfig):
        self._path = os.fspath(path)
        self._config = config
        self._lock = events.DeferringRLock()  # events are logged after it is released
        self._cond = threading.Condition(threading.Lock())
        self._generation = 0  # bumped (under _cond) by every append through this object, and close
        self._closed = True  # until fully open
        self._segments: list[Segment] = []
        self._bases: list[int] = []
        self._dir_dirty = False
        #: known synced end; 0 until open sets it (torn-tail checks re-read the checkpoint anyway)
        self._recovery_point = 0
        if os.path.exists(self._path) and not os.path.isdir(self._path):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), self._path)
        os.makedirs(self._path, exist_ok=True)
        if not os.access(self._path, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), self._path)
        self._writer = FileLock(os.path.join(self._path, WRITER_LOCK_FILE))
        self._open_lock: FileLock | None = None
        try:
            self._open_lock = FileLock(os.path.join(self._path, OPEN_LOCK_FILE))
            with events.deferred(), self._writer:
                self._open()
        except BaseException:
            for segment in self._segments:
                segment.close()
            if self._open_lock is not None:
                self._open_lock.close()
            self._writer.close()
            raise
        self._closed = False
        self._last_sync_ms = _monotonic_ms()
        # why: a log dropped without close() must not keep holding .pylog.open, or no process
        # would ever be the last closer again (no sync, no marker: just release the locks)
        weakref.finalize(self, _release_locks, self._open_lock, self._writer)

    def _open(self) -> None:
        """Under the writer lock: first-opener detection, recovery or marker skip, load."""
        assert self._open_lock is not None
        checkpointed = checkpoint.read_recovery_point(self._path)
        if self._open_lock.try_exclusive():
            if checkpoint.has_clean_shutdown(self._path):
                # why load first: if the bytes are corrupt below the recovery point, open raises
                # and the marker stays, so the next open does not run a recovery that would cut
                # synced data
                self._load()
                checkpoint.remove_clean_shutdown(self._path)
                self._recovery_point = self._active.next_offset
                self._dir_dirty = True  # the marker's removal
            else:
                recover(self._path, self._config, checkpointed)
                self._dir_dirty = True
                self._load()
                # §4.2: min(checkpoint, LEO); not advanced until a real sync
                self._recovery_point = min(checkpointed or 0, self._active.next_offset)
                if checkpointed is not None and checkpointed > self._recovery_point:
                    # why: recovery cut below the checkpoint; the file must not claim offsets
                    # that are gone, or a later torn tail there could never be cut (_check_tail)
                    checkpoint.write_recovery_point(self._path, self._recovery_point)
        else:
            self._load()
            self._recovery_point = min(checkpointed or 0, self._active.next_offset)
        self._open_lock.shared()

    def _load(self) -> None:
        """(Re)build the segment list from the directory; the last one is derived from its bytes."""
        bases = list_segment_bases(self._path)
        if not bases:
            # only reachable with the writer lock held (open); a reader reload keeps what it has
            Segment.create(self._path, 0, self._config).close()
            self._dir_dirty = True
            bases = [0]
        segments = [
            Segment.open_sealed(self._path, b, self._config, next_base=n)
            for b, n in itertools.pairwise(bases)
        ]
        segments.append(Segment.open_active(self._path, bases[-1], self._config))
        try:
            self._check_tail(segments[-1], writer=False)  # the next writer's tail sync cuts
        except BaseException:
            for segment in segments:
                segment.close()
            raise
        for old in self._segments:
            old.close_index_files()  # descriptors of the .log close when readers let go
        self._segments = segments
        self._bases = bases

    # ------------------------------------------------------------------ basics

    def __repr__(self) -> str:
        if self._closed:
            return f"<ReferencePartitionLog {self._path!r} closed>"
        return f"<ReferencePartitionLog {self._path!r} [{self.start_offset}, {self.end_offset})>"

    @property
    def path(self) -> str:
        return self._path

    @property
    def config(self) -> LogConfig:
        return self._config

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def _active(self) -> Segment:
        return self._segments[-1]

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError(f"partition log {self._path!r} is closed")

    @property
    def start_offset(self) -> int:
        with self._lock:
            self._check_open()
            self._sync_tail(writer=False)
            return self._segments[0].base

    @property
    def end_offset(self) -> int:
        with self._lock:
            self._check_open()
            self._sync_tail(writer=False)
            return self._active.next_offset

    def __enter__(self) -> PartitionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ tail sync

    def _sync_tail(self, *, writer: bool) -> None:
        """Catch up with the disk (module docstring). Caller holds ``_lock`` (and the writer lock
        when ``writer``)."""
        # the head went away (retention by another process); a lone segment is the active one,
        # whose link count the loop below checks anyway
        if not writer and len(self._segments) > 1 and self._segments[0].link_count() == 0:
            self._reload(writer)
        while True:
            active = self._active
            st = os.fstat(active.fd)
            if st.st_nlink == 0 or st.st_size < active.size:
                self._reload(writer)
                active = self._active
                st = os.fstat(active.fd)
            active.scan_tail(st.st_size, check_crc=True)
            self._check_tail(active, writer)
            if writer:
                active.persist_indexes()  # a writer that died before its index write is repaired
            if active.next_offset == active.base:
                return
            next_log = os.path.join(self._path, file_prefix(active.next_offset) + LOG_SUFFIX)
            if not os.path.exists(next_log):
                return
            # another process rolled: it wrote the seal entry; derive the same one here
            active.seal(persist=False)
            self._segments.append(Segment.open_active(self._path, active.next_offset, self._config))
            self._bases.append(active.next_offset)
            self._dir_dirty = True

    def _check_tail(self, segment: Segment, writer: bool) -> None:
        """Data below the recovery point is never cut (docs/partition-log.md, "Durability").

        A scan of the active segment that stopped at bytes which do not frame found a torn tail
        only when it stopped at or above the recovery point: a writer cuts it, a reader ignores
        it. Below it those bytes were synced whole, so they are corrupt: CorruptBatchError, and
        nothing is cut. The checkpoint file is re-read (only on this rare path) because another
        process may have advanced the recovery point since we looked.
        """
        if segment.torn_at is None:
            return
        synced = max(self._recovery_point, checkpoint.read_recovery_point(self._path) or 0)
        if segment.next_offset < synced:
            # why look again: a reader's scan may have raced a write that has since completed,
            # been synced and checkpointed; everything below a checkpoint read before this
            # second scan is whole on disk
            segment.scan_tail(segment.file_size(), check_crc=True)
            if segment.torn_at is None:
                return
        position = segment.torn_at
        if segment.next_offset < synced:
            raise CorruptBatchError(
                f"batch at offset {segment.next_offset} does not frame, below the recovery point {synced}",
                segment.log_path,
                position,
                CorruptKind.FRAMING,
            )
        if writer:
            segment.truncate_tail()

    def _reload(self, writer: bool) -> None:
        if list_segment_bases(self._path) or writer:
            self._load()
            self._dir_dirty = True

    # ------------------------------------------------------------------ appends

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
        self._check_open()
        codec = resolve_codec(compression, self._config)
        now_ms = _now_ms()
        values_, keys_, headers_, timestamps = record.prepare_records(
            values, keys, headers, timestamps_ms, now_ms
        )
        append_time = now_ms if self._config.log_append_time else None
        # why: baseOffset is outside the CRC, so the batch is encoded (and compressed) before
        # taking any lock and only its first 8 bytes are rewritten once the offset is known.
        batch = bytearray(
            record_batch.encode_batch(0, values_, keys_, headers_, timestamps, codec, append_time)
        )
        self._check_size(len(batch))
        return self._append_batch(batch)

    def append_raw(self, batch: Buffer) -> int:
        """Append one pre-encoded v2 batch (every record validated); its baseOffset is rewritten."""
        self._check_open()
        data = bytearray(record.bytes_like(batch, "batch"))
        self._check_size(len(data))  # first, as Kafka: never decode a batch only to refuse its size
        validator.validate_for_append(data)
        record_batch.set_partition_leader_epoch(data, 0)
        if self._config.log_append_time:
            record_batch.set_log_append_time(data, _now_ms())
        return self._append_batch(data)

    def _check_size(self, size: int) -> None:
        cfg = self._config
        if size > cfg.max_message_bytes:
            raise RecordTooLargeError(
                f"batch of {size} bytes is larger than max.message.bytes ({cfg.max_message_bytes})"
            )
        if size > cfg.segment_bytes:
            raise RecordTooLargeError(
                f"batch of {size} bytes is larger than segment.bytes ({cfg.segment_bytes})"
            )

    def _append_batch(self, batch: bytearray) -> int:
        with self._lock:
            self._check_open()
            with self._writer:
                self._sync_tail(writer=True)
                base = self._active.next_offset
                record_batch.set_base_offset(batch, base)
                header = record_batch.parse_header(batch, 0)
                assert header.base_offset == base and header.size_bytes == len(batch)
                if self._active.should_roll(len(batch), header.last_offset, header.max_timestamp):
                    self._roll_locked()
                active = self._active
                active.write_batch(batch, header)
                active.persist_indexes()
                end = active.next_offset
                with self._cond:
                    self._generation += 1
                    self._cond.notify_all()
                cfg = self._config
                if (
                    end - self._recovery_point >= cfg.flush_messages
                    or _monotonic_ms() - self._last_sync_ms >= cfg.flush_ms
                ):
                    self._sync_locked()
        return base

    def roll(self) -> None:
        """Seal the active segment and start a new one (no-op when it is empty)."""
        with self._lock:
            self._check_open()
            with self._writer:
                self._sync_tail(writer=True)
                if self._active.size > 0:
                    self._roll_locked()

    def _roll_locked(self) -> None:
        active = self._active
        assert active.size > 0
        active.seal(persist=True)
        base = active.next_offset
        self._segments.append(Segment.create(self._path, base, self._config))
        self._bases.append(base)
        self._dir_dirty = True

    def flush(self) -> None:
        """Write out what is held in memory, without fsync (nothing is buffered here)."""
        with self._lock:
            self._check_open()

    def sync(self) -> None:
        """fsync the unsynced segments and the directory, then advance the recovery point."""
        with self._lock:
            self._check_open()
            with self._writer:
                self._sync_tail(writer=True)
                self._sync_locked()

    def _sync_locked(self) -> None:
        # why the segment holding ``recovery_point - 1``: a roll at the recovery point wrote the
        # old segment's final time-index entry after the last sync
        first = max(bisect_right(self._bases, self._recovery_point - 1) - 1, 0)
        for segment in self._segments[first:]:
            os.fsync(segment.fd)
            for path in (segment.index_path, segment.time_index_path):
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        if self._dir_dirty:
            fsync_dir(self._path)
            self._dir_dirty = False
        end = self._active.next_offset
        checkpoint.write_recovery_point(self._path, end)
        self._recovery_point = end
        self._last_sync_ms = _monotonic_ms()

    # ------------------------------------------------------------------ reads

    def _locate(self, offset: int) -> tuple[int, Batch] | None:
        """(segment index, batch) of the first batch with lastOffset >= offset."""
        i = max(bisect_right(self._bases, offset) - 1, 0)
        while i < len(self._segments):
            found = self._segments[i].find(offset)
            if found is not None:
                return i, found
            i += 1
        return None

    def _check_offset(self, offset: int) -> bool:
        """Range check of ``read``/``read_columns``; True when ``offset`` is the end (no data)."""
        start = self._segments[0].base
        end = self._active.next_offset
        if not start <= offset <= end:
            raise OffsetOutOfRangeError(f"offset {offset} is outside the log [{start}, {end}]")
        return offset == end

    def read(self, offset: int, max_bytes: int) -> memoryview:
        """Whole batches of one segment from the batch holding ``offset`` (at least one)."""
        offset = _as_int(offset, "offset")
        max_bytes = _as_int(max_bytes, "max_bytes")
        with self._lock:
            self._check_open()
            self._sync_tail(writer=False)
            if self._check_offset(offset):
                return memoryview(b"")
            found = self._locate(offset)
            if found is None:
                return memoryview(b"")
            i, first = found
            segment = self._segments[i]
            position = first.position
            total = first.header.size_bytes
            if total >= max_bytes:  # one batch (the common case): its bytes are already here
                return memoryview(first.buf)[first.off : first.off + total]
            # why the break: look at a next batch only while it could still fit, as the native
            # engine does (a sealed segment's bad framing raises when looked at)
            for batch in segment.batches(position + total, need_body=False):
                if total + batch.header.size_bytes > max_bytes:
                    break
                total += batch.header.size_bytes
                if total >= max_bytes:
                    break
            return memoryview(segment.pread(total, position))

    def records(self, start_offset: int | None = None, end_offset: int | None = None) -> Iterator[Record]:
        """Iterate records with offsets in ``[start_offset, end_offset)``, CRC-checked."""
        with self._lock:
            self._check_open()
            self._sync_tail(writer=False)
            start, end = check_record_range(
                start_offset, end_offset, self._segments[0].base, self._active.next_offset
            )
        return self._iter_records(start, end)

    def _iter_records(self, position: int, end: int) -> Iterator[Record]:
        while position < end:
            with self._lock:
                self._check_open()
                chunk, position = self._records_chunk(position, end, RECORDS_CHUNK_BYTES, None)
            if not chunk and position < end:
                return  # nothing more on disk (cannot happen for a range checked at call time)
            yield from chunk

    def _records_chunk(
        self, position: int, end: int, max_bytes: int, max_records: int | None
    ) -> tuple[list[Record], int]:
        """Records from ``position`` (below ``end``) of one segment, about ``max_bytes`` of
        batches; returns them and the next position. Caller holds ``_lock``."""
        found = self._locate(position)
        if found is None:
            return [], end
        i, first = found
        segment = self._segments[i]
        start = first.position
        out: list[Record] = []
        consumed = 0
        for batch in segment.batches(start, need_body=True):
            header = batch.header
            records = segment.decode(batch)
            if header.base_offset < position or header.last_offset >= end:
                records = [r for r in records if position <= r.offset < end]
            out.extend(records)
            position = header.next_offset
            consumed += header.size_bytes
            if position >= end or consumed >= max_bytes:
                break
            if max_records is not None and len(out) >= max_records:
                break
        else:
            # the segment is exhausted: continue with the next one (or stop at the end)
            last = i + 1 == len(self._segments)
            position = end if last else max(position, self._segments[i + 1].base)
        return out, position

    def read_columns(self, offset: int, max_records: int) -> Columns:
        """Up to ``max_records`` records from ``offset`` as numpy columns, across segments."""
        offset = _as_int(offset, "offset")
        max_records = _as_int(max_records, "max_records")
        records: list[Record] = []
        with self._lock:
            self._check_open()
            self._sync_tail(writer=False)
            at_end = self._check_offset(offset)
            end = self._active.next_offset
            position = offset
            while not at_end and position < end and len(records) < max_records:
                chunk, position = self._records_chunk(
                    position, end, RECORDS_CHUNK_BYTES, max_records - len(records)
                )
                records.extend(chunk)
        del records[max(max_records, 0) :]
        return _columns(records)

    def offset_for_timestamp(self, ts_ms: int) -> int | None:
        """First offset whose timestamp is >= ``ts_ms`` (Kafka's ListOffsets rule), else None."""
        ts_ms = _as_int(ts_ms, "ts_ms")
        with self._lock:
            self._check_open()
            self._sync_tail(writer=False)
            start = self._segments[0].base
            for segment in self._segments:
                if segment.largest_timestamp() >= ts_ms:
                    found = segment.find_timestamp(ts_ms, start)
                    if found is not None:
                        return found
            return None

    def wait_for(self, offset: int, timeout_ms: int) -> bool:
        """Block until ``end_offset > offset`` or the timeout; True when data arrived."""
        offset = _as_int(offset, "offset")
        timeout_ms = _as_int(timeout_ms, "timeout_ms")
        deadline = time.monotonic() + max(timeout_ms, 0) / 1000
        while True:
            with self._cond:
                generation = self._generation
            if self.end_offset > offset:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # why: an append through this object bumps the generation and wakes us at once;
            # other processes' appends are only visible on disk, hence the 2 ms poll.
            with self._cond:
                self._cond.wait_for(
                    lambda g=generation: self._generation != g, min(WAIT_POLL_SECONDS, remaining)
                )

    # ------------------------------------------------------------------ close

    def close(self) -> None:
        """Close (idempotent); the last process to close syncs and leaves the clean marker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                with self._writer:
                    try:
                        assert self._open_lock is not None
                        if self._open_lock.try_exclusive():
                            self._sync_tail(writer=True)
                            # Kafka's close-time time-index entry (docs/partition-log.md "Index rules")
                            self._active.append_final_time_entry()
                            self._sync_locked()
                            checkpoint.write_clean_shutdown(self._path)
                    finally:
                        # why: drop the open lock while still holding the writer lock, so the next
                        # opener (waiting for the writer lock) sees that we are gone
                        if self._open_lock is not None:
                            self._open_lock.close()
            finally:
                self._writer.close()
                for segment in self._segments:
                    segment.close()
                with self._cond:
                    self._generation += 1
                    self._cond.notify_all()


def _release_locks(*locks: FileLock | None) -> None:
    for lock in locks:
        if lock is not None:
            lock.close()


def _columns(records: list[Record]) -> Columns:
    n = len(records)
    offsets = np.fromiter((r.offset for r in records), dtype=np.int64, count=n)
    timestamps = np.fromiter((r.timestamp for r in records), dtype=np.int64, count=n)
    keys, key_offsets, key_null = _binary_column([r.key for r in records])
    values, value_offsets, value_null = _binary_column([r.value for r in records])
    return Columns(offsets, timestamps, keys, key_offsets, key_null, values, value_offsets, value_null)


def _binary_column(items: list[bytes | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrow binary layout: the bytes back to back, n+1 int64 offsets, a null mask."""
    n = len(items)
    null = np.fromiter((x is None for x in items), dtype=np.bool_, count=n)
    lengths = np.fromiter((0 if x is None else len(x) for x in items), dtype=np.int64, count=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = np.frombuffer(b"".join(x for x in items if x is not None), dtype=np.uint8)
    return data, offsets, null
