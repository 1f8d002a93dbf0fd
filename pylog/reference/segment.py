"""One segment of a partition log: ``{base:020}.log`` plus its ``.index`` and ``.timeindex``.

The ``.log`` is RecordBatch v2 back to back from position 0 (DefaultRecordBatch.java). ``size`` is the number of bytes
this process knows to hold whole, valid batches; bytes past it are "not yet seen" (another process
may be appending, or a dead writer left a torn tail). Invariants:

- batches are only ever added at ``size``, with one positional write of the whole batch, by the
  holder of the writer lock; a sealed segment's files never change again;
- the **active** (last) segment's index entries are its index files' entries (checked, then
  replayed: ``index.load_indexes``, ``IndexBuilder.replaying``) followed by those derived in memory
  from the headers this process has scanned past them; a writer appends whatever entries the files
  lack; files refused by the check are rebuilt from the bytes and rewritten whole by the next writer;
- a **sealed** segment's indexes are read from its files, lazily, on first use; files refused by the
  check are rebuilt from the bytes (sealed rule) and replaced on disk by rename.

Framing of a batch in a file (Kafka's FileLogInputStream.nextBatch order): fewer than 12 bytes left
→ not yet written; ``length < 49`` → corrupt; ``12 + length`` past the end → not yet written;
``magic != 2`` → corrupt. "Not yet written" holds only for the active segment: a sealed one must
frame exactly to its end, so reads there (``strict``) raise ``CorruptBatchError`` for an
incomplete batch too. The CRC is checked only where the caller asks (tail sync, recovery,
decode).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from typing import NamedTuple

from pylog.config import LogConfig
from pylog.errors import CorruptBatchError, CorruptKind
from pylog.reference import batch as record_batch
from pylog.reference import events
from pylog.reference.batch import BATCH_HEADER_BYTES, LOG_OVERHEAD, MAGIC_V2, MIN_LENGTH_FIELD
from pylog.reference.index import (
    INT32_MAX,
    IndexBuilder,
    IndexRefused,
    OffsetIndex,
    TimeIndex,
    indexes_full,
    load_indexes,
    replace_file,
)

# the names of a segment's files are owned by segments.py (re-exported for this module's users)
from pylog.reference.segments import INDEX_SUFFIX as INDEX_SUFFIX
from pylog.reference.segments import LOG_SUFFIX as LOG_SUFFIX
from pylog.reference.segments import TIME_INDEX_SUFFIX as TIME_INDEX_SUFFIX
from pylog.reference.segments import file_prefix as file_prefix
from pylog.reference.segments import parse_base as parse_base

#: bytes read per ``pread`` while scanning; whole batches larger than this are read on their own
SCAN_WINDOW_BYTES = 1 << 16
#: added to ``index.interval.bytes`` for an offset lookup's read window (see ``Segment.find``)
LOOKUP_SLACK_BYTES = 2048


def segment_paths(dir_path: str, base: int) -> tuple[str, str, str]:
    prefix = os.path.join(dir_path, file_prefix(base))
    return prefix + LOG_SUFFIX, prefix + INDEX_SUFFIX, prefix + TIME_INDEX_SUFFIX


def batch_fits(header: record_batch.BatchHeader, base: int, next_offset: int, position: int) -> bool:
    """Whether a framed batch can stand at ``position`` of the segment based at ``base``, after a
    batch ending at ``next_offset``: offsets never go back (``lastOffsetDelta >= 0``, ``baseOffset
    >= next_offset``), its last offset is within the segment's int32 relative range, and its
    position fits an index entry. Every scan (recovery, tail sync) stops at the first that does not.
    """
    relative = header.last_offset - base
    return (
        header.last_offset_delta >= 0
        and header.base_offset >= next_offset
        and 0 <= relative <= INT32_MAX
        and position <= INT32_MAX
    )


class Batch(NamedTuple):
    """A framed batch of a file; ``buf[off : off + size]`` holds its bytes when asked for."""

    position: int
    header: record_batch.BatchHeader
    buf: bytes
    off: int


def iter_batches(
    fd: int,
    start: int,
    end: int,
    *,
    path: str | None,
    need_body: bool,
    strict: bool = False,
    window: int = SCAN_WINDOW_BYTES,
) -> Iterator[Batch]:
    """Framed batches of ``[start, end)`` in file order; stops silently at a torn tail, or,
    when ``strict`` (a sealed segment, which must frame exactly to its end), raises
    ``CorruptBatchError(path, position)`` there.

    Framing errors raise ``CorruptBatchError(path, position)``. With ``need_body`` each yielded
    buffer holds the whole batch; otherwise only its 61-byte header is guaranteed. ``window`` is
    how much one ``pread`` asks for: large for scans, about one index interval for lookups.
    """

    def incomplete(pos: int) -> None:
        if strict:
            raise CorruptBatchError(
                "incomplete batch at the end of a sealed segment", path, pos, CorruptKind.FRAMING
            )

    pos = start
    buf = b""
    buf_pos = start
    while True:
        remaining = end - pos
        if remaining < LOG_OVERHEAD:
            if remaining > 0:
                incomplete(pos)
            return
        off = pos - buf_pos
        if len(buf) - off < BATCH_HEADER_BYTES:
            want = min(window, remaining)
            buf = os.pread(fd, want, pos)
            buf_pos, off = pos, 0
            if len(buf) < want:  # the file shrank under us: what we read is all there is
                incomplete(pos)
                end = pos + len(buf)
                remaining = len(buf)
                if remaining < LOG_OVERHEAD:
                    return
        length = int.from_bytes(buf[off + 8 : off + 12], "big", signed=True)
        if length < MIN_LENGTH_FIELD:
            raise CorruptBatchError(
                f"batch length {length} < {MIN_LENGTH_FIELD}", path, pos, CorruptKind.FRAMING
            )
        size = LOG_OVERHEAD + length
        if size > remaining:
            incomplete(pos)
            return
        header = record_batch.parse_header(buf, off)
        if header.magic != MAGIC_V2:
            raise CorruptBatchError(
                f"batch magic {header.magic} != {MAGIC_V2}", path, pos, CorruptKind.FRAMING
            )
        if need_body and len(buf) - off < size:
            if size > window:
                body = os.pread(fd, size, pos)
                if len(body) < size:
                    incomplete(pos)
                    return
                yield Batch(pos, header, body, 0)
                pos += size
                continue
            buf = os.pread(fd, min(window, remaining), pos)
            buf_pos, off = pos, 0
            if len(buf) < size:
                incomplete(pos)
                return
        yield Batch(pos, header, buf, off)
        pos += size


def valid_batches(
    fd: int, start: int, end: int, *, base: int, next_offset: int, path: str, check_crc: bool
) -> Iterator[Batch]:
    """The batches of ``[start, end)`` that recovery and tail sync take in: framed, CRC-valid
    when ``check_crc``, and each one fitting after the previous (``batch_fits``). Stops silently
    at the first that is not (torn, corrupt or out of place); where the yielded batches end is
    where the caller's valid bytes end. With ``check_crc`` each batch holds its whole body."""
    try:
        for batch in iter_batches(fd, start, end, path=path, need_body=check_crc):
            if check_crc:
                record_batch.verify_crc(batch.buf, batch.off, batch.header)
            if not batch_fits(batch.header, base, next_offset, batch.position):
                return
            yield batch
            next_offset = batch.header.next_offset
    except CorruptBatchError:
        return


class Segment:
    """One segment; see the module docstring for what ``size`` and the indexes mean."""

    def __init__(self, dir_path: str, base: int, config: LogConfig, *, sealed: bool):
        self.dir_path = dir_path
        self.base = base
        self.config = config
        self.log_path, self.index_path, self.time_index_path = segment_paths(dir_path, base)
        self.sealed = sealed
        flags = (os.O_RDONLY if sealed else os.O_RDWR) | os.O_CLOEXEC
        self.fd = os.open(self.log_path, flags)
        # why: a reader generator may still hold this segment after a reload dropped it; the
        # descriptor closes when the last reference goes, never under a pread.
        self._finalizer = weakref.finalize(self, os.close, self.fd)
        st = os.fstat(self.fd)
        #: identity of the open ``.log``: a file replaced by rename (a compaction swap) differs,
        #: so the log's refresh of its segment set reopens it
        self.file_id = (st.st_dev, st.st_ino)
        #: opened while the layout generation was stable (a segment opened in the middle of
        #: another process's change is reopened by the next refresh)
        self.opened_stable = True
        self.size = 0
        #: next offset after the last known batch (active segments, and sealed ones we scanned)
        self.next_offset = base
        #: maxTimestamp of the first batch (roll rule 2); None while empty or unknown
        self.first_max_timestamp: int | None = None
        self.batch_count = 0
        #: where the last tail scan met bytes that do not frame (None: it reached the file end);
        #: the log decides whether that is a torn tail to cut or corruption (log._check_tail)
        self.torn_at: int | None = None
        self.builder: IndexBuilder | None = None
        self._offset_index: OffsetIndex | None = None
        self._time_index: TimeIndex | None = None
        self._next_base: int | None = None

    # ----------------------------------------------------------------- construction

    @classmethod
    def create(cls, dir_path: str, base: int, config: LogConfig) -> Segment:
        """New empty files; the ``.log`` is created last, because its appearance is what tells
        other processes that a roll happened (they then expect the index files)."""
        log_path, index_path, time_index_path = segment_paths(dir_path, base)
        for path in (index_path, time_index_path):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
        # O_EXCL: callers hold the writer lock and found no such ``.log``; if one appeared anyway
        # (someone outside pylog), failing beats writing over it from position 0
        os.close(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
        segment = cls(dir_path, base, config, sealed=False)
        segment.builder = segment._new_builder()
        return segment

    @classmethod
    def open_sealed(
        cls, dir_path: str, base: int, config: LogConfig, *, next_base: int | None = None
    ) -> Segment:
        """``next_base``: the next segment's base, bounding the offsets its index may name."""
        segment = cls(dir_path, base, config, sealed=True)
        segment.size = os.fstat(segment.fd).st_size
        segment.next_offset = -1  # unknown until scanned; only the active segment's matters
        segment._next_base = next_base
        return segment

    @classmethod
    def open_active(cls, dir_path: str, base: int, config: LogConfig) -> Segment:
        """Derive the active segment's state from its index files and bytes (framing only: the
        bytes were recovered, or closed cleanly, or written by a live process)."""
        segment = cls(dir_path, base, config, sealed=False)
        # why the index files before the log's length: entries are written after their batch,
        # so every entry read here points into bytes the scan below sees
        try:
            loaded = load_indexes(segment.index_path, segment.time_index_path, base, segment.file_size, None)
        except IndexRefused as refused:
            reason = str(refused)
        else:
            segment.builder = IndexBuilder.replaying(*loaded, config.index_interval_bytes)
            segment.scan_tail(segment.file_size(), check_crc=False)
            if segment.builder.replay_matched:
                return segment
            reason = "an entry does not stand at a batch start"
            segment.size, segment.next_offset, segment.batch_count = 0, base, 0
            segment.first_max_timestamp = None
        events.index_rebuilt(segment.log_path, reason)
        segment.builder = segment._new_builder()
        segment.builder.offset_index.rewrite = segment.builder.time_index.rewrite = True
        segment.scan_tail(segment.file_size(), check_crc=False)
        return segment

    def _new_builder(self) -> IndexBuilder:
        return IndexBuilder(
            OffsetIndex(self.index_path, self.base),
            TimeIndex(self.time_index_path, self.base),
            self.config.index_interval_bytes,
        )

    # ----------------------------------------------------------------- state

    @property
    def offset_index(self) -> OffsetIndex:
        if self.builder is not None:
            return self.builder.offset_index
        if self._offset_index is None:
            self._load_sealed_indexes()
        assert self._offset_index is not None
        return self._offset_index

    @property
    def time_index(self) -> TimeIndex:
        if self.builder is not None:
            return self.builder.time_index
        if self._time_index is None:
            self._load_sealed_indexes()
        assert self._time_index is not None
        return self._time_index

    def _load_sealed_indexes(self) -> None:
        try:
            self._offset_index, self._time_index = load_indexes(
                self.index_path, self.time_index_path, self.base, self.size, self._next_base
            )
            return
        except IndexRefused as refused:
            # why: a damaged index can send lookups past records (Kafka rebuilds it too,
            # LogLoader sanityCheck/recoverSegment)
            reason = str(refused)
        builder = self._new_builder()
        for batch in valid_batches(
            self.fd, 0, self.size, base=self.base, next_offset=self.base, path=self.log_path, check_crc=False
        ):
            builder.observe(batch.position, batch.header.last_offset, batch.header.max_timestamp)
        builder.seal()
        events.index_rebuilt(self.log_path, reason)
        self._offset_index, self._time_index = builder.offset_index, builder.time_index
        try:  # best effort: a reader may lack write permission; the rebuilt index serves anyway
            replace_file(self.index_path, self._offset_index.to_bytes())
            replace_file(self.time_index_path, self._time_index.to_bytes())
        except OSError:
            pass

    def largest_timestamp(self) -> int:
        """The active segment's max timestamp so far; a sealed one's last time entry (or -1)."""
        if self.builder is not None:
            return self.builder.max_timestamp
        return self.time_index.last_timestamp

    def retention_timestamp(self) -> int:
        """A sealed segment's largest timestamp as retention and the cleaner's lag rules read it:
        the last time-index entry's, or the ``.log`` mtime in ms when there is none (Kafka's
        LogSegment.largestTimestamp)."""
        ts = self.largest_timestamp()
        return ts if ts >= 0 else os.fstat(self.fd).st_mtime_ns // 1_000_000

    def file_size(self) -> int:
        return os.fstat(self.fd).st_size

    def link_count(self) -> int:
        return os.fstat(self.fd).st_nlink

    def is_index_full(self) -> bool:
        return indexes_full(self.offset_index, self.time_index, self.config.segment_index_bytes)

    def should_roll(self, size: int, last_offset: int, max_timestamp: int) -> bool:
        """Roll rules 1-4 of docs/partition-log.md, checked before each append."""
        if self.size == 0:
            return False
        cfg = self.config
        if self.size + size > cfg.segment_bytes:
            return True
        first = self.first_max_timestamp
        if first is not None and first >= 0 and max_timestamp - first > cfg.segment_ms:
            return True
        if self.is_index_full():
            return True
        return last_offset - self.base > INT32_MAX

    # ----------------------------------------------------------------- tail

    def _observe(self, position: int, header: record_batch.BatchHeader) -> None:
        assert self.builder is not None
        if self.batch_count == 0:
            self.first_max_timestamp = header.max_timestamp
        self.batch_count += 1
        self.builder.observe(position, header.last_offset, header.max_timestamp)
        self.size = position + header.size_bytes
        self.next_offset = header.next_offset

    def scan_tail(self, end: int, *, check_crc: bool) -> bool:
        """Take in the whole batches past ``size``; True when something new was found.

        A torn or corrupt tail stops the scan and is recorded in ``torn_at`` (= ``size``), never
        cut here: the log cuts it (writer) or raises (below the recovery point), see
        ``PartitionLog._check_tail``.
        """
        self.torn_at = None
        if end <= self.size:
            return False
        found = False
        for batch in valid_batches(
            self.fd,
            self.size,
            end,
            base=self.base,
            next_offset=self.next_offset,
            path=self.log_path,
            check_crc=check_crc,
        ):
            self._observe(batch.position, batch.header)
            found = True
        if self.size < end:
            self.torn_at = self.size
        return found

    def truncate_tail(self) -> None:
        """Cut the torn tail found by the last scan (writer lock held)."""
        assert not self.sealed and self.torn_at is not None
        file_bytes = self.file_size()
        os.ftruncate(self.fd, self.torn_at)
        if file_bytes > self.torn_at:
            events.torn_tail_truncated(self.log_path, self.torn_at, file_bytes, self.next_offset)
        self.torn_at = None

    def batches(self, start: int, *, need_body: bool, window: int = SCAN_WINDOW_BYTES) -> Iterator[Batch]:
        """Framed batches of ``[start, size)``; a sealed segment must frame exactly to its end."""
        return iter_batches(
            self.fd,
            start,
            self.size,
            path=self.log_path,
            need_body=need_body,
            strict=self.sealed,
            window=window,
        )

    # ----------------------------------------------------------------- writes

    def write_batch(self, batch: bytes | bytearray, header: record_batch.BatchHeader) -> None:
        """Write one whole batch at the tail, then derive its index entries (writer lock held)."""
        assert not self.sealed and header.size_bytes == len(batch), (header.size_bytes, len(batch))
        assert header.base_offset >= self.next_offset, (header.base_offset, self.next_offset)
        position = self.size
        view = memoryview(batch)
        try:
            written = os.pwrite(self.fd, view, position)
            while written < len(view):  # short writes happen only on odd filesystems / ENOSPC edges
                written += os.pwrite(self.fd, view[written:], position + written)
        except BaseException:
            os.ftruncate(self.fd, position)
            raise
        self._observe(position, header)

    def persist_indexes(self) -> None:
        """Append to the index files the derived entries they lack (writer lock held)."""
        self.offset_index.persist()
        self.time_index.persist()

    def append_final_time_entry(self) -> None:
        """The last closer's close: append the final time entry to the active segment's time index
        (Kafka's LogSegment.close), so a broker reading the directory finds the segment's largest
        timestamp there. The segment stays active; a reopen loads the entry back."""
        assert not self.sealed and self.builder is not None
        self.builder.seal()
        self.persist_indexes()

    def seal(self, *, persist: bool) -> None:
        """Stop being active: the final time entry, written by the process that rolls."""
        if self.builder is not None:
            self.builder.seal()
            if persist:
                self.persist_indexes()
        self.close_index_files()
        self.sealed = True

    def close_index_files(self) -> None:
        """Index descriptors are a writer's, never used by reader generators: close them now."""
        if self.builder is not None:
            self.builder.offset_index.close()
            self.builder.time_index.close()

    # ----------------------------------------------------------------- reads

    def find(self, offset: int) -> Batch | None:
        """The first batch with ``lastOffset >= offset`` (its bytes included), or None.

        why the window: the offset index puts the batch within about one index interval of the
        entry it returns, so one ``pread`` of an interval plus a batch's worth usually holds it.
        """
        _, start = self.offset_index.lookup(offset)
        if start > self.size:
            start = 0
        window = self.config.index_interval_bytes + LOOKUP_SLACK_BYTES
        for batch in self.batches(start, need_body=True, window=window):
            if batch.header.last_offset >= offset:
                return batch
        return None

    def find_timestamp(self, ts_ms: int, start_offset: int) -> int | None:
        """LogSegment.findOffsetByTimestamp: time index, offset index, then the first batch with maxTimestamp >= ts_ms and
        the first record in it with timestamp >= ts_ms and offset >= start_offset."""
        _, index_offset = self.time_index.lookup(ts_ms)
        _, start = self.offset_index.lookup(max(index_offset, start_offset))
        if start > self.size:
            start = 0
        for batch in self.batches(start, need_body=True):
            header = batch.header
            if header.max_timestamp < ts_ms or header.last_offset < start_offset:
                continue
            for rec in self.decode(batch):
                if rec.timestamp >= ts_ms and rec.offset >= start_offset:
                    return rec.offset
        return None

    def decode(self, batch: Batch) -> list:
        """Records of a whole batch; CorruptBatchError carries this file and the batch position."""
        try:
            return record_batch.decode_batch(batch.buf, batch.off, batch.header)
        except CorruptBatchError as e:
            message = e.args[0] if e.args else "corrupt batch"
            raise CorruptBatchError(message, self.log_path, batch.position, e.kind) from None

    def pread(self, size: int, position: int) -> bytes:
        data = os.pread(self.fd, size, position)
        assert len(data) == size, (len(data), size, position)
        return data

    def close(self) -> None:
        self.close_index_files()
        self._finalizer()

    def __repr__(self) -> str:
        kind = "sealed" if self.sealed else "active"
        return f"<Segment {self.base} {kind} size={self.size} next={self.next_offset}>"
