"""Log compaction, Kafka's log cleaner, in pure Python: the oracle of native/src/cleaner.rs.

Kafka: core/src/main/scala/kafka/log/LogCleaner.scala and LogCleanerManager.scala (since
apache/kafka PR #19387 storage/src/main/java/org/apache/kafka/storage/internals/log/Cleaner.java),
clients/src/main/java/org/apache/kafka/common/record/MemoryRecords.java ``filterTo``. Both engines
implement exactly the algorithm below (docs/partition-log.md "Compaction"), so with codec none they
write byte-identical cleaned segments.

**Cleanable** (``cleanable_from``): first dirty = ``cleaner-offset-checkpoint`` (the log start when
absent or outside [start, end]); first uncleanable = min(active base, the first sealed segment
from floor(first dirty) on whose largest timestamp is younger than ``min.compaction.lag.ms``), at
least first dirty (floor(x) = base of the segment holding x); clean bytes = sealed segments below
first dirty; cleanable bytes = sealed segments from floor(first dirty) up to first uncleanable
(the one holding first dirty counts in both, as Kafka); ``needs_compaction_now`` when
``max.compaction.lag.ms`` is set and such a segment's first batch is older than it; ``due`` =
cleanable bytes > 0 and (ratio > ``min.cleanable.dirty.ratio`` or needs now).

**One pass** (``_run_pass``):

1. the offset map (offset_map.py) over the batches of the segments in
   [floor(first dirty), first uncleanable): every keyed record of a non-control batch at or above
   first dirty is put, until the map is full (asked before every put); a segment finished
   without filling covers up to the next segment's base. ``end = latest + 1``;
2. group the sealed segments below ``end``, from the first one (the clean section is recopied
   too: that is how superseded keys and expired tombstones there go), while the group's ``.log``
   bytes stay within ``segment.bytes``, each index kind's bytes within ``segment.index.bytes``
   and its offsets (up to the next segment's base, or ``end`` after the last) within an int32 of
   its first base (Kafka's groupSegmentsBySize);
3. filter each group into ``<first base>.log.cleaned`` (``filter_batch``): control batches are
   copied (transactions are not implemented: markers and aborted data stay); a record is kept iff
   (it lies beyond the map, or it has a key whose latest offset in the map is at or below its
   own) and it is not a tombstone whose batch's delete horizon (KIP-534: attributes bit 6,
   horizon in baseTimestamp) has passed. Unchanged batches are copied byte for byte; emptied ones
   are dropped, except the group's last batch, kept as an empty header (recovery's swap range
   then spans the whole group); the others are rebuilt with the same offsets, epoch, producer
   fields, codec (recompressed) and timestamp type, a horizon ``now + delete.retention.ms`` when a
   kept tombstone needs one (an existing horizon is kept), and a new CRC;
4. ``.index.cleaned`` / ``.timeindex.cleaned`` are derived from the written batches by the sealed
   index rules (index.IndexBuilder, as recovery's rebuild, final time entry included); the three
   files are fsynced, the ``.log.cleaned`` gets the group's last segment's mtime [pause
   ``clean-written``] and the group is swapped in (``PartitionLog._replace_segments``, log.py);
   after all groups ``cleaner-offset-checkpoint = end`` [pause ``clean-checkpointed``] and an INFO
   line (``pylog.cleaner``).

Stopping: ``cancel.is_set()`` is asked between segments and after every ``STOP_CHECK_BYTES`` of
input (map building and filtering, as the native engine). A stop leaves no half-done swap: the
group being written has its ``.cleaned`` files deleted; groups already swapped stay (each swap is
whole, and the checkpoint moves only after a whole pass, so the next pass redoes that range).

Thread-safety: ``compact`` holds the partition's cleaner lock (lock.py) for the whole call, so one
cleaner per partition runs at a time across processes; ``cleanable`` is a pure look.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from pylog.config import CODEC_IDS, LogConfig
from pylog.errors import CorruptBatchError, CorruptKind, InvalidConfigError
from pylog.partition import CLEANER_BUSY, INT64_MAX, Cleanable, CleanResult, Record
from pylog.reference import batch as record_batch
from pylog.reference import compression, events, retention
from pylog.reference.batch import (
    BATCH_HEADER_BYTES,
    CONTROL_MASK,
    TIMESTAMP_TYPE_MASK,
    TRANSACTIONAL_MASK,
)
from pylog.reference.checkpoint import CLEANER_OFFSET_FILE, read_offset_checkpoint
from pylog.reference.index import INT32_MAX, IndexBuilder, OffsetIndex, TimeIndex
from pylog.reference.lock import CleanerLock
from pylog.reference.offset_map import MIN_MAP_BYTES, OffsetMap, digest
from pylog.reference.record import encode_varint
from pylog.reference.segment import Batch, Segment, batch_fits
from pylog.reference.segments import (
    CLEANED_SUFFIX,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
    file_prefix,
)

if TYPE_CHECKING:
    from pylog.reference.log import PartitionLog

#: attributes bit 6: the batch's baseTimestamp is its delete horizon (KIP-534)
DELETE_HORIZON_MASK = 0x40
CODEC_MASK = 0x07
#: bytes of cleaned output buffered before a write (native: the same bound)
IO_BUFFER_BYTES = 1 << 20
#: input bytes between two ``cancel`` checks inside a segment
STOP_CHECK_BYTES = 8 << 20
_CODEC_NAMES = {v: k for k, v in CODEC_IDS.items()}


class SealedView:
    """One sealed segment as the cleaner sees it (native/src/log.rs ``SealedSegment``)."""

    __slots__ = ("base", "file_id", "log_path", "next_base", "segment", "size")

    def __init__(self, segment: Segment, next_base: int):
        self.segment = segment
        self.base = segment.base
        self.next_base = next_base
        self.size = segment.size
        self.log_path = segment.log_path
        self.file_id = segment.file_id

    def largest_timestamp(self) -> int:
        return self.segment.retention_timestamp()

    def first_batch_max_timestamp(self) -> int:
        """maxTimestamp of the first batch, -1 when the segment is empty."""
        if self.size < BATCH_HEADER_BYTES:
            return -1
        header = os.pread(self.segment.fd, BATCH_HEADER_BYTES, 0)
        if len(header) < BATCH_HEADER_BYTES:
            return -1
        return record_batch.parse_header(header, 0).max_timestamp

    def index_bytes(self) -> tuple[int, int]:
        """Sizes of the ``.index`` and ``.timeindex`` files (0 when missing)."""
        out = []
        for path in (self.segment.index_path, self.segment.time_index_path):
            try:
                out.append(os.stat(path).st_size)
            except FileNotFoundError:
                out.append(0)
        return out[0], out[1]

    def mtime_ns(self) -> int:
        return os.fstat(self.segment.fd).st_mtime_ns


class CleanerView(NamedTuple):
    """The segment set as one cleaning step sees it (``PartitionLog._cleaner_view``)."""

    log_start: int
    end_offset: int
    active_base: int
    sealed: list[SealedView]


def has_compact(config: LogConfig) -> bool:
    return retention.policy_has(config, "compact")


# ---------------------------------------------------------------------------------------------
# cleanable


def _floor_base(view: CleanerView, offset: int) -> int:
    """Base of the segment holding ``offset`` (the first one for an offset below every base)."""
    if offset >= view.active_base:
        return view.active_base
    for s in reversed(view.sealed):
        if s.base <= offset:
            return s.base
    return view.sealed[0].base if view.sealed else view.active_base


def cleanable_from(view: CleanerView, checkpoint: int | None, config: LogConfig, now_ms: int) -> Cleanable:
    """Kafka's ``cleanableOffsets`` and ``LogToClean`` over a view (module docstring)."""
    first_dirty = (
        checkpoint
        if checkpoint is not None and view.log_start <= checkpoint <= view.end_offset
        else view.log_start
    )
    floor_dirty = _floor_base(view, first_dirty)
    first_uncleanable = view.active_base
    if config.min_compaction_lag_ms > 0:
        young = now_ms - config.min_compaction_lag_ms
        for s in view.sealed:
            if s.base >= floor_dirty and s.largest_timestamp() > young:
                first_uncleanable = min(first_uncleanable, s.base)
                break
    first_uncleanable = max(first_uncleanable, first_dirty)
    dirty = [s for s in view.sealed if floor_dirty <= s.base < first_uncleanable]
    clean_bytes = sum(s.size for s in view.sealed if s.base < first_dirty)
    cleanable_bytes = sum(s.size for s in dirty)
    needs_now = False
    if config.max_compaction_lag_ms < INT64_MAX:
        old = now_ms - config.max_compaction_lag_ms
        needs_now = any(0 <= s.first_batch_max_timestamp() < old for s in dirty)
    total = clean_bytes + cleanable_bytes
    ratio = cleanable_bytes / total if total else 0.0
    due = (
        has_compact(config)
        and cleanable_bytes > 0
        and (ratio > config.min_cleanable_dirty_ratio or needs_now)
    )
    return Cleanable(first_dirty, first_uncleanable, clean_bytes, cleanable_bytes, ratio, needs_now, due)


def cleanable(log: PartitionLog, now_ms: int) -> Cleanable:
    """``PartitionLog.cleanable``: the view now and the checkpoint (no lock, no write)."""
    view = log._cleaner_view()
    return cleanable_from(view, read_offset_checkpoint(log.path, CLEANER_OFFSET_FILE), log.config, now_ms)


# ---------------------------------------------------------------------------------------------
# reading sealed segments


class _StopCheck:
    """``cancel`` asked between segments (``now``) and every ``STOP_CHECK_BYTES`` (``after``)."""

    __slots__ = ("since", "stop")

    def __init__(self, stop: Callable[[], bool]):
        self.stop = stop
        self.since = 0

    def now(self) -> bool:
        self.since = 0
        return bool(self.stop())

    def after(self, size: int) -> bool:
        self.since += size
        return self.since >= STOP_CHECK_BYTES and self.now()


def _sealed_batches(s: SealedView):
    """The batches of a sealed segment, each checked to frame, to follow the one before and to
    lie below the next segment's base: anything else is ``CorruptBatchError`` at its position
    (a cleaner that skipped bytes would drop them from the log)."""
    next_offset = s.base
    for batch in s.segment.batches(0, need_body=True):
        h = batch.header
        if not batch_fits(h, s.base, next_offset, batch.position) or h.last_offset >= s.next_base:
            raise CorruptBatchError(
                f"batch at offsets [{h.base_offset}, {h.last_offset}] does not follow offset "
                f"{next_offset} inside the segment [{s.base}, {s.next_base})",
                s.log_path,
                batch.position,
                CorruptKind.FRAMING,
            )
        next_offset = h.next_offset
        yield batch


def _batch_bytes(batch: Batch) -> bytes:
    return bytes(batch.buf[batch.off : batch.off + batch.header.size_bytes])


# ---------------------------------------------------------------------------------------------
# the pass steps


def build_offset_map(
    sealed: Sequence[SealedView], first_dirty: int, first_uncleanable: int, omap: OffsetMap, check: _StopCheck
) -> int | None:
    """Step 1 (Kafka's buildOffsetMap / buildOffsetMapForSegment): the pass's end
    (``latest + 1``), or None when ``cancel`` said so."""
    for s in sealed:
        if not (s.next_base > first_dirty and s.base < first_uncleanable):
            continue
        if check.now():
            return None
        full = False
        for batch in _sealed_batches(s):
            h = batch.header
            if check.after(h.size_bytes):
                return None
            if h.is_control or h.last_offset < first_dirty:
                continue
            for r in s.segment.decode(batch):
                if r.key is not None and r.offset >= first_dirty:
                    if omap.full:
                        full = True
                        break
                    omap.put(digest(r.key), r.offset)
            if full:
                break
        if full:
            break
        omap.update_latest_offset(s.next_base - 1)
    return omap.latest_offset + 1


def group_segments(
    segs: Sequence[SealedView], end: int, max_log_bytes: int, max_index_bytes: int
) -> list[list[SealedView]]:
    """Step 2 (Kafka's groupSegmentsBySize) over the segments below the pass's end."""
    groups = []
    start = 0
    while start < len(segs):
        first = segs[start]
        log_bytes = first.size
        offset_index_bytes, time_index_bytes = first.index_bytes()
        nxt = start + 1
        while nxt < len(segs):
            cand = segs[nxt]
            cand_offset_bytes, cand_time_bytes = cand.index_bytes()
            upper = segs[nxt + 1].base if nxt + 1 < len(segs) else end
            if not (
                log_bytes + cand.size <= max_log_bytes
                and offset_index_bytes + cand_offset_bytes <= max_index_bytes
                and time_index_bytes + cand_time_bytes <= max_index_bytes
                and upper - 1 - first.base <= INT32_MAX
            ):
                break
            log_bytes += cand.size
            offset_index_bytes += cand_offset_bytes
            time_index_bytes += cand_time_bytes
            nxt += 1
        groups.append(list(segs[start:nxt]))
        start = nxt
    return groups


class FilterRules(NamedTuple):
    omap: OffsetMap
    #: the map's latest offset: records above it are beyond the map (kept)
    latest: int
    now_ms: int
    delete_retention_ms: int


class RecordCounts:
    __slots__ = ("kept", "records", "tombstones_removed")

    def __init__(self) -> None:
        self.records = 0
        self.kept = 0
        self.tombstones_removed = 0


def _encode_record(r: Record, base_offset: int, base_timestamp: int) -> bytes:
    """One record of a rebuilt batch: attributes 0, the deltas against the new base, key, value
    and headers as they were (DefaultRecord.writeTo)."""
    varint = encode_varint
    body = [b"\x00", varint(r.timestamp - base_timestamp), varint(r.offset - base_offset)]
    for field in (r.key, r.value):
        if field is None:
            body.append(b"\x01")
        else:
            body.append(varint(len(field)))
            body.append(field)
    body.append(varint(len(r.headers)))
    for hkey, hvalue in r.headers:
        hkey_bytes = hkey.encode("utf-8")
        body.append(varint(len(hkey_bytes)))
        body.append(hkey_bytes)
        if hvalue is None:
            body.append(b"\x01")
        else:
            body.append(varint(len(hvalue)))
            body.append(hvalue)
    encoded = b"".join(body)
    return varint(len(encoded)) + encoded


def _empty_batch(h: record_batch.BatchHeader) -> bytes:
    """An emptied batch kept to hold its offsets (Kafka's DefaultRecordBatch.writeEmptyHeader):
    same offsets, epoch and producer fields, attributes reduced to the timestamp-type,
    transactional and control bits, both timestamps the original maxTimestamp, no records."""
    header = h._replace(
        attributes=h.attributes & (TIMESTAMP_TYPE_MASK | TRANSACTIONAL_MASK | CONTROL_MASK),
        base_timestamp=h.max_timestamp,
        records_count=0,
    )
    return record_batch.assemble_batch(header, b"")


def filter_batch(
    segment: Segment, batch: Batch, rules: FilterRules, last_of_group: bool, counts: RecordCounts
) -> bytes | None:
    """Step 3 for one batch (Kafka's filterTo with the cleaner's rules, module docstring): the
    bytes to write, or None to drop it. Validated (CRC, codec, records) first."""
    h = batch.header
    records = segment.decode(batch)
    if h.is_control:
        return _batch_bytes(batch)
    has_horizon = bool(h.attributes & DELETE_HORIZON_MASK)
    horizon_passed = has_horizon and rules.now_ms >= h.base_timestamp
    kept: list[Record] = []
    removed = 0
    kept_tombstone = False
    omap, latest = rules.omap, rules.latest
    for r in records:
        if not (r.offset > latest or (r.key is not None and r.offset >= omap.get(digest(r.key)))):
            continue
        if r.value is None:
            if horizon_passed:
                removed += 1
                continue
            kept_tombstone = True
        kept.append(r)
    counts.records += len(records)
    counts.kept += len(kept)
    counts.tombstones_removed += removed
    needs_horizon = not has_horizon and kept_tombstone
    if len(kept) == len(records) and not needs_horizon:
        return _batch_bytes(batch)
    if not kept:
        return _empty_batch(h) if last_of_group else None
    if needs_horizon:
        base_timestamp = min(rules.now_ms + rules.delete_retention_ms, INT64_MAX)  # as native: saturating
    elif has_horizon:
        base_timestamp = h.base_timestamp
    else:
        base_timestamp = kept[0].timestamp
    max_timestamp = h.max_timestamp if h.timestamp_type == 1 else max(r.timestamp for r in kept)
    attributes = h.attributes & (CODEC_MASK | TIMESTAMP_TYPE_MASK | TRANSACTIONAL_MASK)
    if needs_horizon or has_horizon:
        attributes |= DELETE_HORIZON_MASK
    area = b"".join(_encode_record(r, h.base_offset, base_timestamp) for r in kept)
    payload = compression.compress(_CODEC_NAMES[h.codec_id], area) if h.codec_id else area
    header = h._replace(
        attributes=attributes,
        base_timestamp=base_timestamp,
        max_timestamp=max_timestamp,
        records_count=len(kept),
    )
    return record_batch.assemble_batch(header, payload)


def cleaned_paths(dir_path: str, base: int) -> tuple[str, str, str]:
    """The three ``.cleaned`` files of a group based at ``base``."""
    prefix = os.path.join(dir_path, file_prefix(base))
    return tuple(prefix + suffix + CLEANED_SUFFIX for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX))


def remove_files(paths: Sequence[str]) -> None:
    """Best effort: a file left behind is removed by the next cleaner or by recovery."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _PassStats:
    __slots__ = ("bytes_read", "bytes_written", "counts", "segments")

    def __init__(self) -> None:
        self.segments = 0
        self.bytes_read = 0
        self.bytes_written = 0
        self.counts = RecordCounts()


def clean_group(
    dir_path: str,
    group: Sequence[SealedView],
    rules: FilterRules,
    index_interval_bytes: int,
    check: _StopCheck,
    stats: _PassStats,
) -> bool:
    """Step 3-4 for one group: write its ``.cleaned`` files. False when ``cancel`` said so (the
    files are gone then, as after an error)."""
    base = group[0].base
    paths = cleaned_paths(dir_path, base)
    try:
        written = _write_group(paths, group, rules, index_interval_bytes, check, stats)
    except BaseException:
        remove_files(paths)
        raise
    if written is None:
        remove_files(paths)
        return False
    stats.bytes_written += written
    stats.bytes_read += sum(s.size for s in group)
    return True


def _write_group(
    paths: Sequence[str],
    group: Sequence[SealedView],
    rules: FilterRules,
    index_interval_bytes: int,
    check: _StopCheck,
    stats: _PassStats,
) -> int | None:
    base = group[0].base
    builder = IndexBuilder(OffsetIndex(paths[1], base), TimeIndex(paths[2], base), index_interval_bytes)
    nonempty = [i for i, s in enumerate(group) if s.size > 0]
    last_nonempty = nonempty[-1] if nonempty else None
    fd = os.open(paths[0], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        buf = bytearray()
        flushed = 0
        for i, s in enumerate(group):
            if check.now():
                return None
            for batch in _sealed_batches(s):
                size = batch.header.size_bytes
                if check.after(size):
                    return None
                last = i == last_nonempty and batch.position + size == s.size
                out = filter_batch(s.segment, batch, rules, last, stats.counts)
                if out is None:
                    continue
                position = flushed + len(buf)
                if position > INT32_MAX:
                    raise OSError(f"{paths[0]} would exceed 2 GiB (a batch at position {position})")
                header = record_batch.parse_header(out, 0)
                builder.observe(position, header.last_offset, header.max_timestamp)
                buf += out
                if len(buf) >= IO_BUFFER_BYTES:
                    _write_all(fd, buf)
                    flushed += len(buf)
                    buf.clear()
        _write_all(fd, buf)
        flushed += len(buf)
        # why: Kafka gives the cleaned segment the last source segment's mtime, which time
        # retention reads when the segment has no time entry
        os.utime(fd, ns=(time.time_ns(), group[-1].mtime_ns()))
        os.fsync(fd)
    finally:
        os.close(fd)
    builder.seal()
    for path, data in (
        (paths[1], builder.offset_index.to_bytes()),
        (paths[2], builder.time_index.to_bytes()),
    ):
        index_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            _write_all(index_fd, data)
            os.fsync(index_fd)
        finally:
            os.close(index_fd)
    return flushed


_DONE, _STOPPED, _CHANGED = "done", "stopped", "changed"


def _run_pass(
    log: PartitionLog,
    view: CleanerView,
    first_dirty: int,
    first_uncleanable: int,
    now_ms: int,
    map_bytes: int,
    stop: Callable[[], bool],
    stats: _PassStats,
) -> tuple[str, int]:
    config = log.config
    omap = OffsetMap(map_bytes)
    end = build_offset_map(view.sealed, first_dirty, first_uncleanable, omap, _StopCheck(stop))
    if end is None:
        return _STOPPED, first_dirty
    if end <= first_dirty:
        raise InvalidConfigError(
            f"log.cleaner.dedupe.buffer.size = {map_bytes} bytes is too small: the offset map "
            f"cannot hold one record ({omap.slots} slots)"
        )
    below_end = [s for s in view.sealed if s.base < end]
    groups = group_segments(below_end, end, config.segment_bytes, config.segment_index_bytes)
    rules = FilterRules(omap, omap.latest_offset, now_ms, config.delete_retention_ms)
    check = _StopCheck(stop)
    for group in groups:
        if not clean_group(log.path, group, rules, config.index_interval_bytes, check, stats):
            return _STOPPED, first_dirty
        log._pause_point("clean-written")
        try:
            swapped = log._replace_segments(group, group[0].base)
        except BaseException:
            remove_files(cleaned_paths(log.path, group[0].base))  # what was not swapped in
            raise
        if not swapped:
            return _CHANGED, first_dirty
        stats.segments += len(group)
    return _DONE, end


def compact(
    log: PartitionLog,
    now_ms: int,
    map_bytes: int,
    force: bool,
    wait: bool,
    cancel: object | None,
) -> CleanResult:
    """``PartitionLog.compact`` (docs/partition-log.md "Compaction"): passes until the dirty range
    is clean, then retention for the compacted log."""
    config = log.config
    # why asked lazily: as the native engine, a broken ``cancel`` raises its own error when the
    # cleaner first asks it (after cleaning up what it was writing)
    stop: Callable[[], bool] = (lambda: False) if cancel is None else (lambda: bool(cancel.is_set()))  # type: ignore[attr-defined]

    def skipped(first_dirty: int, why: str) -> CleanResult:
        return CleanResult(0, 0, 0, 0, 0, 0, 0, first_dirty, why)

    if not has_compact(config):
        why = f"cleanup.policy={config.cleanup_policy} has no compact"
        events.cleaner_skipped(log.path, why)
        return skipped(cleanable(log, now_ms).first_dirty_offset, why)
    if map_bytes < MIN_MAP_BYTES:
        raise InvalidConfigError(
            f"log.cleaner.dedupe.buffer.size must be at least {MIN_MAP_BYTES} bytes, got {map_bytes}"
        )
    lock = CleanerLock(log.path)
    if not lock.acquire(wait=wait):
        return skipped(cleanable(log, now_ms).first_dirty_offset, CLEANER_BUSY)
    try:
        log._remove_stale_cleaner_files()
        first = cleanable(log, now_ms)
        passes = segments = bytes_read = bytes_written = records = kept = removed = 0
        clean_offset = first.first_dirty_offset
        why = None
        if not force and not first.due:
            why = "not due"
        elif first.first_dirty_offset >= first.first_uncleanable_offset:
            why = "nothing to clean"
        else:
            while True:
                view = log._cleaner_view()
                c = cleanable_from(
                    view, read_offset_checkpoint(log.path, CLEANER_OFFSET_FILE), config, now_ms
                )
                if c.first_dirty_offset >= c.first_uncleanable_offset:
                    break
                started = time.monotonic()
                stats = _PassStats()
                try:
                    outcome, end = _run_pass(
                        log,
                        view,
                        c.first_dirty_offset,
                        c.first_uncleanable_offset,
                        now_ms,
                        map_bytes,
                        stop,
                        stats,
                    )
                finally:
                    segments += stats.segments
                    bytes_read += stats.bytes_read
                    bytes_written += stats.bytes_written
                    records += stats.counts.records
                    kept += stats.counts.kept
                    removed += stats.counts.tombstones_removed
                if outcome == _DONE:
                    log._write_cleaner_checkpoint(end)
                    log._pause_point("clean-checkpointed")
                    passes += 1
                    clean_offset = end
                    events.cleaner_pass_done(
                        log.path,
                        passes,
                        stats.segments,
                        stats.bytes_read,
                        stats.bytes_written,
                        stats.counts.records,
                        stats.counts.kept,
                        stats.counts.tombstones_removed,
                        time.monotonic() - started,
                    )
                elif outcome == _STOPPED:
                    return CleanResult(
                        passes,
                        segments,
                        bytes_read,
                        bytes_written,
                        records,
                        kept,
                        removed,
                        clean_offset,
                        "cancelled",
                    )
                else:
                    # another process replaced segments under us: what was swapped stays, the
                    # checkpoint stays, and the next call starts over from it
                    break
        # Kafka's cleaner thread runs deleteOldSegments for every compacted log (the cleaner
        # lock is already held)
        log._apply_retention_locked(now_ms, retention.passes(config))
        return CleanResult(
            passes, segments, bytes_read, bytes_written, records, kept, removed, clean_offset, why
        )
    finally:
        lock.release()
