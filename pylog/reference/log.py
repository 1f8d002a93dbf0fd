"""The reference partition log: one topic-partition directory, pure Python (docs/partition-log.md).

State, guarded by one ``RLock`` (held only briefly, never while waiting for the writer lock):
the segments sorted by base offset; the last one is **active** and its index entries are derived in
memory from the bytes; the others are sealed and immutable. Every append, roll, sync, open and
close also takes the cross-process **writer lock** (lock.py; flock plus a fair handoff). Lock
order: ``_write_lock`` (this object's writing threads) → writer lock → ``_lock``, so a read in this
process never waits for another process's writer.

Another process (or another ``PartitionLog`` object) may have appended, rolled, or died mid-write,
so each operation first catches up, guided by the shared page ``.pylog.shm`` (shared_state.py,
Linux only; the protocol is native/src/shared_state.rs's):

- the **layout generation** equals the even value this object cached → its segment set is the
  directory's (no system call); otherwise the set is refreshed from a directory listing, keeping
  the segments whose ``.log`` has the same inode and reopening the others (a replaced middle
  segment, as a compaction swap leaves, is noticed before the next read);
- ``fstat`` the active ``.log``: link count 0 (or shorter than what we know) → reopen everything;
- take in the complete, CRC-valid batches past the known size; an incomplete or corrupt tail at or
  above the recovery point is torn: a writer truncates it (nobody alive is mid-write while it holds
  the lock) unless another process has rolled past that segment (a sealed segment is never cut:
  others may have it mapped), a reader ignores it; below the recovery point it is corruption of
  synced data: ``CorruptBatchError`` and nothing is cut (``_check_tail``);
- without a usable generation (a damaged page, or one left odd by a dead writer until the next
  writer repairs it) also look for ``{end:020}.log`` (another process rolled) and the head's link
  count, as the only evidence left.

A ``read`` below the known end at the cached generation looks at no file at all. Writers publish
the tail on the page after each append and wake ``wait_for`` in any process (futex).

Durability: an append returns after one positional write of the whole batch (so it survives the
process being killed); ``sync()`` fsyncs from the segment holding the recovery point (the active
segment's ``.log`` only: recovery rebuilds its index files) and then advances the recovery point,
on the page for every process; the checkpoint file follows at most every
``RECOVERY_POINT_CHECKPOINT_INTERVAL_MS`` and at the last close (``_sync_locked``). The first opener runs recovery unless the last closer left
``.kafka_cleanshutdown``; the last closer syncs and leaves it.

The log start offset is max(first segment base, ``log-start-offset-checkpoint``), re-read by every
refresh; ``delete_before`` and retention (retention.py) move it, compaction (cleaner.py) replaces
sealed segments. Each of those changes the segment set as one layout change (generation odd,
writer lock held) under the **cleaner lock** (lock.py: cleaner lock → writer lock, never the other
way). A reader that finds the generation odd waits for it to become even (at most
``ODD_GENERATION_WAIT_SECONDS``) before listing the directory; a writer that finds it left odd by a
dead process first runs recovery's temp-file steps (``recovery.remove_temp_files``).
"""

from __future__ import annotations

import errno
import itertools
import os
import signal
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from pylog.config import LogConfig, resolve_codec
from pylog.errors import (
    CorruptBatchError,
    CorruptKind,
    InvalidRecordError,
    LogClosedError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
)
from pylog.partition import (
    CLEANER_BUSY,
    BytesLike,
    Cleanable,
    CleanResult,
    Columns,
    Header,
    Record,
    RetentionResult,
    as_int,
    check_record_range,
)
from pylog.reference import batch as record_batch
from pylog.reference import checkpoint, cleaner, events, record, retention, validator
from pylog.reference.checkpoint import CLEANER_OFFSET_FILE, LOG_START_OFFSET_FILE, fsync_dir
from pylog.reference.lock import OPEN_LOCK_FILE, WRITER_LOCK_FILE, CleanerLock, FileLock, WriterLock
from pylog.reference.offset_map import DEFAULT_MAP_BYTES
from pylog.reference.recovery import (
    list_segment_bases,
    recover,
    recovery_point_within,
    remove_temp_files,
)
from pylog.reference.segment import LOG_SUFFIX, Batch, Segment, file_prefix, segment_paths
from pylog.reference.segments import CLEANED_SUFFIX, DELETED_SUFFIX, SWAP_SUFFIX, Segments
from pylog.reference.shared_state import WAKE_FALLBACK_SECONDS, SharedState

if TYPE_CHECKING:  # collections.abc.Buffer is 3.12+; annotations only
    from typing_extensions import Buffer  # collections.abc.Buffer is 3.12+

#: bytes of batches decoded per visit under the lock by ``records()`` / ``read_columns()``
RECORDS_CHUNK_BYTES = 1 << 20
#: least time between two writes of ``recovery-point-offset-checkpoint`` by a ``sync()`` (Kafka's
#: ``log.flush.offset.checkpoint.interval.ms`` default, LogManager's checkpoint timer): the
#: checkpoint only bounds how much recovery rescans (``_sync_locked``); the last closer always
#: writes it
RECOVERY_POINT_CHECKPOINT_INTERVAL_MS = 60_000


class _PauseHook:
    """Test hook of the crash tests (tests/test_coordination.py), as native/src/log.rs's
    ``PauseHook``: with ``PYLOG_TEST_PAUSE=POINT:N`` set at open, the N-th time this log reaches
    ``POINT`` (``locked``, ``written``, ``publishing``, ``rolling``; retention's
    ``retention-checkpointed``, ``retention-renamed``; the cleaner's ``clean-written``,
    ``clean-swapping``, ``clean-deleting``, ``clean-swapped``, ``clean-checkpointed``) it prints
    ``pause POINT`` on stdout and stops its process with SIGSTOP."""

    __slots__ = ("point", "remaining")

    def __init__(self, spec: str):
        point, _, n = spec.partition(":")
        self.point = point
        self.remaining = int(n) if n.isdigit() else 1

    @staticmethod
    def from_env() -> _PauseHook | None:
        spec = os.environ.get("PYLOG_TEST_PAUSE")
        return _PauseHook(spec) if spec else None

    def reached(self, point: str) -> None:
        if point != self.point:
            return
        self.remaining -= 1
        if self.remaining == 0:
            os.write(1, f"pause {point}\n".encode())
            os.kill(os.getpid(), signal.SIGSTOP)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class PartitionLog:
    """A partition log served by the pure-Python engine (see ``pylog.partition.PartitionLog``)."""

    def __init__(self, path: str, config: LogConfig):
        self._path = os.fspath(path)
        self._config = config
        self._lock = events.DeferringRLock()  # events are logged after it is released
        #: serialises this object's writing threads (flock is per open file: two threads of one
        #: object would both "hold" it); taken before the writer lock
        self._write_lock = threading.RLock()
        #: the layout generation the segment set was refreshed at (None: refresh next time)
        self._known_gen: int | None = None
        self._closed = True  # until fully open
        self._pause = _PauseHook.from_env()
        self._segments = Segments()
        self._dir_dirty = False
        #: known synced end; 0 until open sets it (torn-tail checks re-read the checkpoint anyway)
        self._recovery_point = 0
        #: ``log-start-offset-checkpoint`` as last read (each refresh re-reads it) or written
        self._start_checkpoint: int | None = None
        if os.path.exists(self._path) and not os.path.isdir(self._path):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), self._path)
        os.makedirs(self._path, exist_ok=True)
        if not os.access(self._path, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), self._path)
        writer_file = FileLock(os.path.join(self._path, WRITER_LOCK_FILE))
        self._open_lock: FileLock | None = None
        shared: SharedState | None = None
        try:
            with events.deferred(), writer_file:
                shared = SharedState(self._path)
                self._shared = shared
                self._open_lock = FileLock(os.path.join(self._path, OPEN_LOCK_FILE))
                self._open()
        except BaseException:
            for segment in self._segments:
                segment.close()
            if self._open_lock is not None:
                self._open_lock.close()
            if shared is not None:
                shared.close()
            writer_file.close()
            raise
        self._writer_file = writer_file
        self._writer = WriterLock(writer_file, shared)
        self._closed = False
        self._last_sync_ms = _monotonic_ms()
        self._last_checkpoint_ms = self._last_sync_ms
        # why: a log dropped without close() must not keep holding .pylog.open, or no process
        # would ever be the last closer again (no sync, no marker: just release the locks)
        weakref.finalize(self, _release_locks, self._open_lock, self._writer_file, shared)

    def _open(self) -> None:
        """Under the writer lock: first-opener detection, recovery or marker skip, load."""
        assert self._open_lock is not None
        checkpointed = checkpoint.read_recovery_point(self._path)
        first = self._open_lock.try_exclusive()
        # why: the first opener's page describes files recovery may change; a page another
        # process left half-changed (it died) or damaged is rebuilt from the files too
        rebuild = first or not self._shared.is_consistent()
        # read before the rebuild makes the page valid (0 from a damaged one); a first opener
        # does not use it: after a power loss the page may claim what the disk lost
        page_recovery_point = self._shared.recovery_point()
        if rebuild:
            if not first and self._shared.is_valid() and self._shared.stable_generation() is None:
                self._remove_dead_changers_files()
            self._shared.begin_rebuild()
            # why at once: the load below decides torn tail or corruption by it
            self._shared.set_recovery_point(0 if first else page_recovery_point)
        if first:
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
                # LogLoader: not advanced until a real sync
                self._recovery_point = recovery_point_within(checkpointed or 0, self._active.next_offset)
                if checkpointed is not None and checkpointed > self._recovery_point:
                    # why: recovery cut below the checkpoint; the file must not claim offsets
                    # that are gone, or a later torn tail there could never be cut (_check_tail)
                    checkpoint.write_recovery_point(self._path, self._recovery_point)
        else:
            self._load()
            self._recovery_point = recovery_point_within(
                max(checkpointed or 0, page_recovery_point), self._active.next_offset
            )
        if rebuild:
            self._shared.set_recovery_point(self._recovery_point)
            self._publish()
            self._shared.end_change()
        self._known_gen = self._shared.stable_generation()
        self._open_lock.shared()

    def _load(self) -> None:
        """Reopen every segment from the directory (writer lock held: creates segment 0 in an
        empty directory)."""
        self._reload(writer=True)

    def _refresh(self, writer: bool) -> bool:
        """Make the segment list the directory's segment set (module docstring): segments whose
        ``.log`` has the same inode are kept (an active one another process sealed takes in its
        last batches and is sealed here too), the others are (re)opened, the last one derived
        from its bytes (a torn tail is left for the next writer, bytes that do not frame below the
        recovery point raise). A reader that finds no segment keeps what it has (False).

        The generation is read before and after the listing: if it was not stable or moved, the
        result is not cached and the segments opened meanwhile are reopened by the next refresh.
        """
        shared = self._shared
        # why wait: a listing made while another process changes the segment set (odd
        # generation) may lack a segment under its final name (a compaction swap); a writer holds
        # the writer lock, so an odd generation it sees was left by a dead changer
        before = shared.stable_generation() if writer else shared.wait_stable_generation()
        self._start_checkpoint = checkpoint.read_offset_checkpoint(self._path, LOG_START_OFFSET_FILE)
        bases = list_segment_bases(self._path)
        if not bases:
            if not writer:
                self._known_gen = None
                return False
            shared.begin_change()
            Segment.create(self._path, 0, self._config).close()
            shared.end_change()
            self._dir_dirty = True
            bases = [0]
        reusable = {(s.base, s.file_id): s for s in self._segments if s.opened_stable}
        segments: list[Segment] = []
        opened: list[Segment] = []
        try:
            for i, base in enumerate(bases):
                last = i + 1 == len(bases)
                try:
                    st = os.stat(segment_paths(self._path, base)[0])
                except FileNotFoundError:
                    if writer:
                        raise
                    before = None  # raced a change: not cached, seen by the next refresh
                    continue
                segment = reusable.pop((base, (st.st_dev, st.st_ino)), None)
                if segment is not None and last and segment.sealed:
                    segment = None  # the segments after it went away: derive it as active
                if segment is not None:
                    if not last and not segment.sealed:
                        # another process rolled past our active segment
                        segment.scan_tail(segment.file_size(), check_crc=True)
                        segment.seal(persist=writer)
                else:
                    try:
                        if last:
                            segment = Segment.open_active(self._path, base, self._config)
                        else:
                            segment = Segment.open_sealed(
                                self._path, base, self._config, next_base=bases[i + 1]
                            )
                    except FileNotFoundError:
                        if writer:
                            raise
                        before = None
                        continue
                    opened.append(segment)
                    if last:
                        self._check_tail(segment, writer=False)  # the next writer's tail sync cuts
                    segment.opened_stable = False  # decided below
                segments.append(segment)
        except BaseException:
            for segment in opened:
                segment.close()
            self._known_gen = None
            raise
        if not segments:
            self._known_gen = None
            return False
        after = shared.stable_generation()
        stable = before is not None and before == after
        for segment in opened:
            segment.opened_stable = stable or writer
        kept = {id(s) for s in segments}
        for old in self._segments:
            if id(old) not in kept:
                old.close_index_files()  # descriptors of the .log close when readers let go
        self._segments = Segments(segments)
        self._recovery_point = recovery_point_within(self._recovery_point, self._active.next_offset)
        self._dir_dirty = True
        self._known_gen = after if stable else None
        return True

    def _publish(self, midway=None) -> None:
        active = self._active
        self._shared.publish(active.next_offset, active.base, active.size, midway)

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
        return self._segments.active

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError(f"partition log {self._path!r} is closed")

    def _log_start(self) -> int:
        """The log start offset: max(first segment base, ``log-start-offset-checkpoint`` clamped
        to the log end). Caller holds ``_lock``."""
        first = self._segments[0].base
        if self._start_checkpoint is None:
            return first
        return max(first, min(self._start_checkpoint, self._active.next_offset))

    @property
    def start_offset(self) -> int:
        with self._lock:
            self._check_open()
            self._sync_tail(writer=False)
            return self._log_start()

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

    def _writer_sync_tail(self) -> None:
        """Writer lock held: repair a page a dead writer left half-changed (or a damaged one)
        from the files, then catch up like any operation."""
        if not self._shared.is_consistent():
            page_recovery_point = self._shared.recovery_point()  # before: 0 if damaged
            if self._shared.is_valid() and self._shared.stable_generation() is None:
                self._remove_dead_changers_files()
            self._shared.begin_rebuild()
            # why at once: the tail sync below decides torn tail or corruption by it
            self._shared.set_recovery_point(page_recovery_point)
            self._load()
            self._sync_tail(writer=True)
            self._shared.set_recovery_point(
                recovery_point_within(
                    max(self._recovery_point, page_recovery_point), self._active.next_offset
                )
            )
            self._publish()
            self._shared.end_change()
            self._known_gen = self._shared.stable_generation()
            return
        self._sync_tail(writer=True)

    def _remove_dead_changers_files(self) -> None:
        """Writer lock held, generation left odd (a process died mid-change): recovery's
        temp-file steps first (``.deleted`` go, a ``.swap`` is finished or dropped), so the
        listing that follows sees the old or the new segment set, never half a swap.
        ``.cleaned`` files go too unless a live cleaner holds the cleaner lock (it writes them
        outside the writer lock)."""
        cleaner = CleanerLock(self._path)
        idle = cleaner.acquire(wait=False)
        try:
            if remove_temp_files(self._path, include_cleaned=idle):
                fsync_dir(self._path)
        finally:
            cleaner.release()

    def _sync_tail(self, *, writer: bool) -> None:
        """Catch up with the disk (module docstring). Caller holds ``_lock`` (and the writer lock
        when ``writer``)."""
        generation = self._shared.stable_generation()
        if (generation is None or generation != self._known_gen) and not self._refresh(writer):
            return
        # without a usable generation nothing but the files tells of another process's roll or
        # unlink; a lone segment is the active one, whose link count the loop checks anyway
        look_around = self._known_gen is None
        head_gone = (
            look_around and not writer and len(self._segments) > 1 and self._segments[0].link_count() == 0
        )
        if head_gone and not self._reload(writer):
            return
        while True:
            active = self._active
            st = os.fstat(active.fd)
            if st.st_nlink == 0 or st.st_size < active.size:
                if not self._reload(writer):
                    return
                continue
            active.scan_tail(st.st_size, check_crc=True)
            if self._check_tail(active, writer):
                # another process sealed this segment without the page saying so: never cut it
                self._known_gen = None
                self._refresh(writer)
                continue
            if writer:
                active.persist_indexes()  # a writer that died before its index write is repaired
            # why writers always look: appending at ``{end}`` when ``{end:020}.log`` exists would
            # write into a sealed segment; one path lookup per append buys that certainty even
            # against a roller that does not speak the protocol
            if not (look_around or writer) or active.next_offset == active.base:
                return
            next_log = os.path.join(self._path, file_prefix(active.next_offset) + LOG_SUFFIX)
            if not os.path.exists(next_log):
                return
            self._known_gen = None  # another process rolled
            self._refresh(writer)

    def _check_tail(self, segment: Segment, writer: bool) -> bool:
        """Data below the recovery point is never cut (docs/partition-log.md, "Durability").

        A scan of the active segment that stopped at bytes which do not frame found a torn tail
        only when it stopped at or above the recovery point: a writer cuts it, a reader ignores
        it. Below it those bytes were synced whole, so they are corrupt: CorruptBatchError, and
        nothing is cut. The checkpoint file is re-read (only on this rare path) because another
        process may have advanced the recovery point since we looked.

        Returns True when a writer found that another process rolled past this segment (a later
        ``.log`` exists): then nothing is cut (the segment is sealed; others may have it mapped,
        and cutting it would be their SIGBUS) and the caller refreshes its segment set.
        """
        if segment.torn_at is None:
            return False
        synced = max(
            self._recovery_point,
            self._shared.recovery_point(),
            checkpoint.read_recovery_point(self._path) or 0,
        )
        if segment.next_offset < synced:
            # why look again: a reader's scan may have raced a write that has since completed,
            # been synced and checkpointed; everything below a checkpoint read before this
            # second scan is whole on disk
            segment.scan_tail(segment.file_size(), check_crc=True)
            if segment.torn_at is None:
                return False
        if writer and any(b > segment.base for b in list_segment_bases(self._path)):
            return True
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
        return False

    def _reload(self, writer: bool) -> bool:
        """Reopen every segment (the active one shrank or went away); False when a reader found
        no segment at all (it keeps what it has)."""
        # why list first: a directory removed under an open handle fails here, before anything
        # is dropped, so the handle keeps answering with the OS's error (never an empty log).
        if not list_segment_bases(self._path) and not writer:
            return False
        previous = self._segments
        self._segments = Segments()
        try:
            refreshed = self._refresh(writer)
        except BaseException:
            if not len(self._segments):
                self._segments = previous  # keep a usable state, refreshed again next time
            raise
        for old in previous:
            if all(old is not seg for seg in self._segments):
                old.close_index_files()  # descriptors of the .log close when readers let go
        return refreshed

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
        if self._compacted and any(key is None for key in keys_):
            # Kafka's broker refuses a keyless record on a compacted topic (LogValidator)
            raise InvalidRecordError(
                f"cleanup.policy={self._config.cleanup_policy}: every record needs a key"
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
        validator.validate_for_append(data, self._config.cleanup_policy if self._compacted else None)
        record_batch.set_partition_leader_epoch(data, 0)
        if self._config.log_append_time:
            record_batch.set_log_append_time(data, _now_ms())
        return self._append_batch(data)

    @property
    def _compacted(self) -> bool:
        return retention.policy_has(self._config, "compact")

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
        with self._write_lock, self._writer, self._lock:
            self._check_open()
            self._writer_sync_tail()
            base = self._active.next_offset
            record_batch.set_base_offset(batch, base)
            header = record_batch.parse_header(batch, 0)
            assert header.base_offset == base and header.size_bytes == len(batch)
            if self._active.should_roll(len(batch), header.last_offset, header.max_timestamp):
                self._roll_locked()
            if self._pause:
                self._pause.reached("locked")
            active = self._active
            active.write_batch(batch, header)
            active.persist_indexes()
            end = active.next_offset
            if self._pause:
                self._pause.reached("written")
                self._publish(lambda: self._pause.reached("publishing"))
            else:
                self._publish()
            cfg = self._config
            if (
                end - self._recovery_point >= cfg.flush_messages
                or _monotonic_ms() - self._last_sync_ms >= cfg.flush_ms
            ):
                self._sync_locked()
        # why after the locks: the woken waiters do not run into them
        self._shared.wake_waiters()
        return base

    def roll(self) -> None:
        """Seal the active segment and start a new one (no-op when it is empty)."""
        with self._write_lock:
            self._check_open()
            with self._writer, self._lock:
                self._check_open()
                self._writer_sync_tail()
                if self._active.size > 0:
                    self._roll_locked()

    def _roll_locked(self) -> None:
        """Seal the active segment and start the next one; the layout generation is odd meanwhile
        (a crash leaves it odd and the next writer repairs)."""
        active = self._active
        assert active.size > 0
        self._shared.begin_change()
        active.seal(persist=True)
        if self._pause:
            self._pause.reached("rolling")
        base = active.next_offset
        self._segments.append(Segment.create(self._path, base, self._config))
        self._dir_dirty = True
        self._publish()
        self._shared.end_change()
        self._known_gen = self._shared.stable_generation()

    def flush(self) -> None:
        """Write out what is held in memory, without fsync (nothing is buffered here)."""
        with self._lock:
            self._check_open()

    def sync(self) -> None:
        """fsync the unsynced segments and the directory, then advance the recovery point."""
        with self._write_lock:
            self._check_open()
            with self._writer, self._lock:
                self._check_open()
                self._writer_sync_tail()
                self._sync_locked()

    def _sync_locked(self, *, closing: bool = False) -> None:
        """fsync what the recovery point about to be written covers. ``closing``: the last
        closer, whose clean-shutdown marker makes the next open trust every file as it is."""
        # why the segment holding ``recovery_point - 1``: a roll at the recovery point wrote the
        # old segment's final time-index entry after the last sync
        first = self._segments.floor_index(self._recovery_point - 1)
        for segment in self._segments[first:]:
            os.fsync(segment.fd)
            if segment is self._active and not closing:
                # why only the .log: every checkpoint lies at or below the end, so in or below the
                # active segment, and recovery rescans the segment holding it and all later ones
                # from their bases, rewriting both index files from the bytes (recovery.py); this
                # segment's index files are fsynced once it is sealed (the next sync starts at the
                # segment holding ``recovery_point - 1``, this one) or by the last closer, before
                # the marker
                continue
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
        self._shared.advance_recovery_point(end)
        self._recovery_point = end
        now = _monotonic_ms()
        self._last_sync_ms = now
        # why not at every sync: every byte below ``end`` is on disk now, and the checkpoint only
        # says where recovery starts its rescan (the segment holding it, from its base), so a
        # stale one costs a longer rescan, never a synced record (Kafka's LogManager writes it on
        # a timer, not at each flush). Below ``end`` every sealed segment has its index files
        # fsynced too (above), so ``end`` is a safe value whenever it is written.
        if closing or now - self._last_checkpoint_ms >= RECOVERY_POINT_CHECKPOINT_INTERVAL_MS:
            checkpoint.write_recovery_point(self._path, end)
            self._last_checkpoint_ms = now

    # ------------------------------------------------------------------ reads

    def _locate(self, offset: int) -> tuple[int, Batch] | None:
        """(segment index, batch) of the first batch with lastOffset >= offset."""
        i = self._segments.floor_index(offset)
        while i < len(self._segments):
            found = self._segments[i].find(offset)
            if found is not None:
                return i, found
            i += 1
        return None

    def _check_offset(self, offset: int) -> bool:
        """Range check of ``read``/``read_columns``; True when ``offset`` is the end (no data)."""
        start = self._log_start()
        end = self._active.next_offset
        if not start <= offset <= end:
            raise OffsetOutOfRangeError(f"offset {offset} is outside the log [{start}, {end}]")
        return offset == end

    def read(self, offset: int, max_bytes: int) -> memoryview:
        """Whole batches of one segment from the batch holding ``offset`` (at least one)."""
        offset = as_int(offset, "offset")
        max_bytes = as_int(max_bytes, "max_bytes")
        with self._lock:
            self._check_open()
            # why no look at the files below the known end at the cached generation: bytes
            # appended since cannot change what this returns (module docstring)
            generation = self._shared.stable_generation()
            if generation is None or generation != self._known_gen or offset >= self._active.next_offset:
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
                start_offset, end_offset, self._log_start(), self._active.next_offset
            )
        return self._iter_records(start, end)

    def _iter_records(self, position: int, end: int) -> Iterator[Record]:
        while position < end:
            with self._lock:
                self._check_open()
                chunk, next_position = self._records_chunk(position, end, RECORDS_CHUNK_BYTES, None)
            if not chunk and next_position <= position:
                return  # nothing more on disk (cannot happen for a range checked at call time)
            # why not stop at an empty chunk: a segment may hold only control batches or a
            # compaction's empty batch; the position still moved past them
            position = next_position
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

    def records_chunk(self, start: int, end: int, max_bytes: int) -> tuple[list[Record], int]:
        """Records with offsets in ``[start, end)`` from about ``max_bytes`` of whole batches (at
        least one), across segments, and the offset to continue from (the native engine's
        ``records_chunk`` rule, batch for batch: a batch that would pass ``max_bytes`` is left
        for the next chunk; the position moves by batches' next offsets, so compaction gaps and
        control batches are stepped over; ``end`` when nothing of the range is left). ``start``
        outside ``[start_offset, end_offset]`` raises ``OffsetOutOfRangeError``."""
        start, end, max_bytes = (
            as_int(start, "start"),
            as_int(end, "end"),
            max(as_int(max_bytes, "max_bytes"), 1),
        )
        with self._lock:
            self._check_open()
            self._sync_tail(writer=False)
            self._check_offset(start)
            end = min(end, self._active.next_offset)
            if start >= end:
                return [], end
            found = self._locate(start)
            if found is None:
                return [], end
            i, first = found
            out: list[Record] = []
            total = 0
            position = start
            scan_from = first.position
            while True:
                segment = self._segments[i]
                stopped_inside = False
                for batch in segment.batches(scan_from, need_body=True):
                    header = batch.header
                    if header.base_offset >= end:
                        position = end  # nothing of [start, end) lies further on
                        stopped_inside = True
                        break
                    if total > 0 and total + header.size_bytes > max_bytes:
                        stopped_inside = True
                        break
                    total += header.size_bytes
                    records = segment.decode(batch)
                    if header.base_offset < start or header.last_offset >= end:
                        records = [r for r in records if start <= r.offset < end]
                    out.extend(records)
                    position = max(position, header.next_offset)
                    if total >= max_bytes or position >= end:
                        stopped_inside = True
                        break
                if position >= end or total >= max_bytes or (total > 0 and stopped_inside):
                    break
                i += 1  # this segment is exhausted: continue with the next one
                if i >= len(self._segments):
                    position = end
                    break
                found_next = self._segments[i].find(position)
                scan_from = self._segments[i].size if found_next is None else found_next.position
            return out, end if position >= end else max(position, start)

    def consumer_records_chunk(
        self, start: int, end: int, max_bytes: int, topic: str, partition: int, record_type: type
    ) -> tuple[list, int]:
        """``records_chunk`` with the records as ``record_type`` (``pylog.ConsumerRecord``) of
        ``topic``/``partition``: kafka-python's fields (leader_epoch -1, checksum None, sizes -1
        for null, header size = UTF-8 key bytes + value bytes, -1 without headers)."""
        records, next_offset = self.records_chunk(start, end, max_bytes)
        return [
            record_type(
                topic,
                partition,
                -1,
                r.offset,
                r.timestamp,
                r.timestamp_type,
                r.key,
                r.value,
                r.headers,
                None,
                -1 if r.key is None else len(r.key),
                -1 if r.value is None else len(r.value),
                sum(len(k.encode()) + (0 if v is None else len(v)) for k, v in r.headers)
                if r.headers
                else -1,
            )
            for r in records
        ], next_offset

    def tail_seq(self) -> int:
        """The coordination page's append counter (``shared_state.Waiter.wait`` sleeps while it
        is unchanged)."""
        return self._shared.tail_seq()

    @property
    def shared_state(self) -> SharedState:
        """The mapped coordination page (``shared_state.Waiter`` sleeps on several at once)."""
        return self._shared

    def read_columns(self, offset: int, max_records: int) -> Columns:
        """Up to ``max_records`` records from ``offset`` as numpy columns, across segments."""
        offset = as_int(offset, "offset")
        max_records = as_int(max_records, "max_records")
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
        ts_ms = as_int(ts_ms, "ts_ms")
        with self._lock:
            self._check_open()
            self._sync_tail(writer=False)
            start = self._log_start()
            for segment in self._segments:
                if segment.largest_timestamp() >= ts_ms:
                    found = segment.find_timestamp(ts_ms, start)
                    if found is not None:
                        return found
            return None

    def wait_for(self, offset: int, timeout_ms: int) -> bool:
        """Block until ``end_offset > offset`` or the timeout; True when data arrived."""
        offset = as_int(offset, "offset")
        timeout_ms = as_int(timeout_ms, "timeout_ms")
        deadline = time.monotonic() + max(timeout_ms, 0) / 1000
        shared = self._shared
        while True:
            # why read before looking: an append after the look changes the word, so the sleep
            # below returns at once instead of missing it
            seen = shared.tail_seq()
            if self.end_offset > offset:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # woken by every append (any process, either engine) and by close; the fallback
            # bounds how long a write outside the protocol goes unnoticed
            shared.wait_tail(seen, min(WAKE_FALLBACK_SECONDS, remaining))
            self._check_open()

    # ------------------------------------------------------------------ retention

    def delete_before(self, offset: int) -> RetentionResult:
        """Kafka's DeleteRecords: move the log start to ``offset`` (durable on return), then, if
        no other cleaner holds the cleaner lock, delete the segments wholly below it now (else
        the next ``apply_retention`` does)."""
        offset = as_int(offset, "offset")
        with self._write_lock:
            self._check_open()
            with self._writer, self._lock:
                self._check_open()
                self._writer_sync_tail()
                start, end = self._log_start(), self._active.next_offset
                if not start <= offset <= end:
                    # deviation: Kafka answers success below the start; a typo is not silent here
                    raise OffsetOutOfRangeError(f"offset {offset} is outside the log [{start}, {end}]")
                if offset == start:
                    return RetentionResult(0, 0, start)
                self._shared.begin_change()
                checkpoint.write_offset_checkpoint(self._path, LOG_START_OFFSET_FILE, offset)
                self._start_checkpoint = offset
                self._shared.end_change()
                self._known_gen = self._shared.stable_generation()
        lock = CleanerLock(self._path)
        if not lock.acquire(wait=False):
            return RetentionResult(0, 0, offset)
        try:
            return self._apply_retention_locked(_now_ms(), (retention.LOG_START,))
        finally:
            lock.release()

    def apply_retention(self, now_ms: int | None = None, *, wait: bool = True) -> RetentionResult:
        """Kafka's deleteOldSegments (retention.py): whole sealed segments, oldest first, under
        the cleaner lock (``wait=False``: skipped when another cleaner holds it)."""
        now = _now_ms() if now_ms is None else as_int(now_ms, "now_ms")
        self._check_open()
        lock = CleanerLock(self._path)
        if not lock.acquire(wait=bool(wait)):
            return RetentionResult(0, 0, self.start_offset, CLEANER_BUSY)
        try:
            return self._apply_retention_locked(now, retention.passes(self._config))
        finally:
            lock.release()

    def _apply_retention_locked(self, now_ms: int, rules: Sequence[str]) -> RetentionResult:
        """The retention passes ``rules`` (cleaner lock held), each over what the previous left."""
        deleted, deleted_bytes, used = 0, 0, []
        for rule in rules:
            with self._write_lock:
                self._check_open()
                with self._writer, self._lock:
                    self._check_open()
                    self._writer_sync_tail()
                    infos = [
                        retention.SegmentInfo(s.base, s.size, s.retention_timestamp) for s in self._segments
                    ]
                    count = retention.deletable(rule, infos, self._log_start(), self._config, now_ms)
                    if count:
                        renamed = self._delete_segments_locked(count)
            if count:
                retention.unlink_deleted(renamed)
                deleted += count
                deleted_bytes += sum(info.size for info in infos[:count])
                used.append(rule)
        with self._lock:
            start = self._log_start()
        if deleted:
            retention.log_deleted(self._path, deleted, deleted_bytes, start, used)
        return RetentionResult(deleted, deleted_bytes, start)

    def _delete_segments_locked(self, count: int) -> list[str]:
        """The deletion protocol (retention.py) for the ``count`` oldest segments, up to the
        unlinking, which the caller does after releasing the writer lock; returns the
        ``.deleted`` names. Writer lock and ``_lock`` held; never the active segment."""
        assert 0 < count < len(self._segments)
        victims = self._segments[:count]
        survivor = self._segments[count]
        self._known_gen = None  # an exception below leaves the change odd: repaired, refreshed
        self._shared.begin_change()
        new_start = max(self._log_start(), survivor.base)
        checkpoint.write_offset_checkpoint(self._path, LOG_START_OFFSET_FILE, new_start)
        self._start_checkpoint = new_start
        if self._pause:
            self._pause.reached("retention-checkpointed")
        renamed = retention.rename_deleted(self._path, [s.base for s in victims])
        if self._pause:
            self._pause.reached("retention-renamed")
        fsync_dir(self._path)
        self._segments = Segments(list(self._segments)[count:])
        for segment in victims:
            segment.close_index_files()  # the .log descriptor closes when readers let go
        self._shared.end_change()
        self._known_gen = self._shared.stable_generation()
        return renamed

    # ------------------------------------------------------------------ compaction

    def cleanable(self, now_ms: int | None = None) -> Cleanable:
        """The cleaner's view now (cleaner.py; a pure look: no lock, no write)."""
        now = _now_ms() if now_ms is None else as_int(now_ms, "now_ms")
        self._check_open()
        return cleaner.cleanable(self, now)

    def compact(
        self,
        now_ms: int | None = None,
        *,
        map_bytes: int | None = None,
        force: bool = True,
        wait: bool = True,
        cancel: object | None = None,
    ) -> CleanResult:
        """Cleaning passes until the dirty range is clean, then retention (cleaner.py)."""
        now = _now_ms() if now_ms is None else as_int(now_ms, "now_ms")
        map_bytes = DEFAULT_MAP_BYTES if map_bytes is None else as_int(map_bytes, "map_bytes")
        self._check_open()
        return cleaner.compact(self, now, map_bytes, bool(force), bool(wait), cancel)

    def _pause_point(self, point: str) -> None:
        if self._pause:
            self._pause.reached(point)

    def _cleaner_view(self) -> cleaner.CleanerView:
        """The segment set now (re-synced as a reader does), for the cleaner."""
        with self._lock:
            self._check_open()
            self._sync_tail(writer=False)
            segments = list(self._segments)
            active = segments[-1]
            sealed = [cleaner.SealedView(s, n.base) for s, n in itertools.pairwise(segments)]
            return cleaner.CleanerView(self._log_start(), active.next_offset, active.base, sealed)

    def _write_cleaner_checkpoint(self, offset: int) -> None:
        checkpoint.write_offset_checkpoint(self._path, CLEANER_OFFSET_FILE, offset)

    def _remove_stale_cleaner_files(self) -> None:
        """Cleaner lock held: delete the ``.cleaned`` and ``.deleted`` files a dead cleaner left
        and finish or drop its ``.swap`` files (recovery's rules, logged as recovery logs them),
        as one layout change (finishing a swap changes the segment set)."""
        if not any(n.endswith((CLEANED_SUFFIX, DELETED_SUFFIX, SWAP_SUFFIX)) for n in os.listdir(self._path)):
            return
        with self._write_lock:
            self._check_open()
            with self._writer, self._lock:
                self._check_open()
                self._writer_sync_tail()
                self._known_gen = None
                self._shared.begin_change()
                if remove_temp_files(self._path, include_cleaned=True):
                    fsync_dir(self._path)
                self._shared.end_change()
                self._refresh(writer=True)

    def _replace_segments(self, old: Sequence[cleaner.SealedView], new_base: int) -> bool:
        """Swap the written group ``new_base.{log,index,timeindex}.cleaned`` in for ``old``
        (Kafka's LocalLog.replaceSegments order): under the writer lock with the generation odd,
        check ``old`` are still the directory's segments (same ``.log`` inodes) and the cleaned
        log is there, else delete the ``.cleaned`` files and return False; rename ``.cleaned`` →
        ``.swap`` [``clean-swapping``], every old segment's files → ``.deleted``
        [``clean-deleting``], ``.swap`` → final [``clean-swapped``] (indexes before the ``.log``
        each time), fsync the directory, end the change; release the writer lock; unlink the
        ``.deleted`` files. Each step is within recovery's rules, so a crash anywhere recovers to
        the old or the new set."""
        assert old and old[0].base == new_base
        cleaned = cleaner.cleaned_paths(self._path, new_base)
        log_cleaned, index_cleaned, time_index_cleaned = cleaned
        order = (index_cleaned, time_index_cleaned, log_cleaned)
        with self._write_lock:
            self._check_open()
            with self._writer, self._lock:
                self._check_open()
                self._writer_sync_tail()
                current = {(s.base, s.file_id) for s in self._segments[:-1]}
                if not all((o.base, o.file_id) in current for o in old) or not os.path.exists(log_cleaned):
                    cleaner.remove_files(cleaned)
                    return False
                self._known_gen = None  # an exception below leaves the change odd: repaired
                self._shared.begin_change()
                for path in order:
                    swap = path[: -len(CLEANED_SUFFIX)] + SWAP_SUFFIX
                    try:
                        os.rename(path, swap)
                    except FileNotFoundError:
                        if path is log_cleaned:
                            raise
                        # an index the cleaner did not write is rebuilt on load
                self._pause_point("clean-swapping")
                deleted = retention.rename_deleted(self._path, [o.base for o in old])
                self._pause_point("clean-deleting")
                for path in order:
                    swap = path[: -len(CLEANED_SUFFIX)] + SWAP_SUFFIX
                    try:
                        os.rename(swap, path[: -len(CLEANED_SUFFIX)])
                    except FileNotFoundError:
                        if path is log_cleaned:
                            raise
                self._pause_point("clean-swapped")
                fsync_dir(self._path)
                self._shared.end_change()
                self._refresh(writer=True)
        retention.unlink_deleted(deleted)
        return True

    # ------------------------------------------------------------------ close

    def close(self) -> None:
        """Close (idempotent); the last process to close syncs and leaves the clean marker."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._shared.wake_waiters()  # this object's own wait_for calls return now
            try:
                with self._writer, self._lock:
                    try:
                        assert self._open_lock is not None
                        if self._open_lock.try_exclusive():
                            self._writer_sync_tail()
                            # Kafka's close-time time-index entry (docs/partition-log.md "Index rules")
                            self._active.append_final_time_entry()
                            self._sync_locked(closing=True)
                            checkpoint.write_clean_shutdown(self._path)
                    finally:
                        # why: drop the open lock while still holding the writer lock, so the next
                        # opener (waiting for the writer lock) sees that we are gone
                        if self._open_lock is not None:
                            self._open_lock.close()
            finally:
                with self._lock:  # a reader that checked before ``_closed`` was set is done
                    self._writer_file.close()
                    self._shared.close()
                    for segment in self._segments:
                        segment.close()


def _release_locks(*locks: FileLock | SharedState | None) -> None:
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
