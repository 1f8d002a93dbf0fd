"""Offset and time indexes of one segment, and the rule that derives them from the segment bytes.

File formats (OffsetIndex.java, TimeIndex.java), big-endian, never preallocated (entries = file length // entry size)::

    .index      relOffset i32 | position i32        (8 bytes)   relOffset = batch.lastOffset - base
    .timeindex  timestamp i64 | relOffset i32       (12 bytes)  "max timestamp up to that offset"

Both are held in memory as parallel lists (keys sorted, strictly increasing), and looked up with
``bisect``: the largest entry <= target; below the first entry the offset index answers
``(base, 0)`` and the time index ``(-1, base)`` (Kafka's AbstractIndex "largest lower bound").

Derivation (docs/partition-log.md "Index rules"), a pure function of the batch headers so that every
process and both engines produce the same bytes: batch i at position p_i gets an entry when
``p_i - last_entry_pos > index.interval.bytes`` (so batch 0 never does). The offset entry is
``(lastOffset - base, p_i)``; the time entry ``(maxTsSoFar, offsetOfMaxTsSoFar - base)`` is added
only when ``maxTsSoFar`` exceeds the last time entry (empty index counts as -1).
``maxTsSoFar`` includes batch i, and ``offsetOfMaxTsSoFar`` is the lastOffset of the batch where the
maximum was first seen. The final time entry (``IndexBuilder.seal``: at roll, at the last
closer's close, at the end of a recovery rebuild; Kafka's LogSegment onBecomeInactiveSegment, close
and recover, storage/src/main/java/org/apache/kafka/storage/internals/log/LogSegment.java) appends
``(maxTsSoFar, offsetOfMaxTsSoFar)`` by the same "only if greater" rule.

Loading (``load_indexes``) is Kafka's sanityCheck made strict: a file that is not a whole number of
entries, or whose entries are not strictly increasing, fall outside the segment's offsets, or point
outside its ``.log``, is refused (``IndexRefused``; the caller rebuilds it from the bytes). A loaded
pair can then *replay* the segment's batches (``IndexBuilder.replaying``): the file's offset entries
are taken as they are (they may be Kafka's, at other points than ours), each one re-offers the time
entry of its point (repairing a ``.timeindex`` a dead writer left one entry short), and derivation
continues past the last one. So the file's entries, a close-time final entry included, stay the
first entries of the in-memory index. A file entry that does not stand at a batch start is a
mismatch (``replay_matched`` false): the caller rebuilds.
"""

from __future__ import annotations

import os
import struct
from bisect import bisect_right
from collections.abc import Callable
from typing import ClassVar, TypeVar

OFFSET_ENTRY = struct.Struct(">ii")
TIME_ENTRY = struct.Struct(">qi")
OFFSET_ENTRY_BYTES = OFFSET_ENTRY.size  # 8
TIME_ENTRY_BYTES = TIME_ENTRY.size  # 12
NO_TIMESTAMP = -1
INT32_MAX = 2**31 - 1


def offset_index_full_entries(segment_index_bytes: int) -> int:
    """Offset index entries at which it is full: ``segment.index.bytes // 8`` (Kafka's maxEntries)."""
    return segment_index_bytes // OFFSET_ENTRY_BYTES


def time_index_full_entries(segment_index_bytes: int) -> int:
    """Time index entries at which it is full: ``segment.index.bytes // 12 - 1``."""
    # why: Kafka's TimeIndex.isFull is entries >= maxEntries - 1, the last slot is kept for the
    # final entry written at roll or close.
    return max(segment_index_bytes // TIME_ENTRY_BYTES - 1, 0)


def indexes_full(offset_index: OffsetIndex, time_index: TimeIndex, segment_index_bytes: int) -> bool:
    """Roll rule 3: either index is full (the one owner of the thresholds)."""
    return len(offset_index) >= offset_index_full_entries(segment_index_bytes) or len(
        time_index
    ) >= time_index_full_entries(segment_index_bytes)


class IndexRefused(Exception):
    """Index files that fail the sanity check; the message says why."""


def _whole(data: bytes, entry_bytes: int) -> bytes:
    if len(data) % entry_bytes:
        raise IndexRefused(f"{len(data)} bytes is not a whole number of {entry_bytes}-byte entries")
    return data


def check_offset_entries(index: OffsetIndex, log_bytes: int, next_offset: int | None) -> None:
    """Strictly increasing in offset and position, offsets in ``[base, next)``, positions inside
    the ``.log``; raises ``IndexRefused``."""
    base = index.base
    prev_rel = prev_pos = -1
    for i, (rel, pos) in enumerate(zip(index.rel_offsets, index.positions, strict=True)):
        if rel < 0 or (next_offset is not None and base + rel >= next_offset):
            raise IndexRefused(f"offset entry {i}: offset {base + rel} outside the segment")
        if not 0 <= pos < log_bytes:
            # why the u32 view: the native engine reads positions as u32
            raise IndexRefused(f"offset entry {i}: position {pos % 2**32} outside the {log_bytes}-byte log")
        if i and (rel <= prev_rel or pos <= prev_pos):
            raise IndexRefused(f"offset entry {i} does not follow the one before")
        prev_rel, prev_pos = rel, pos


def check_time_entries(index: TimeIndex, next_offset: int | None) -> None:
    """Strictly increasing in both fields, offsets in ``[base, next)``; raises ``IndexRefused``."""
    base = index.base
    prev_ts = prev_rel = 0
    for i, (ts, rel) in enumerate(zip(index.timestamps, index.rel_offsets, strict=True)):
        if rel < 0 or (next_offset is not None and base + rel >= next_offset):
            raise IndexRefused(f"time entry {i}: offset {base + rel} outside the segment")
        if i and (ts <= prev_ts or rel <= prev_rel):
            raise IndexRefused(f"time entry {i} does not follow the one before")
        prev_ts, prev_rel = ts, rel


def load_indexes(
    index_path: str,
    time_index_path: str,
    base: int,
    log_bytes: int | Callable[[], int],
    next_offset: int | None,
) -> tuple[OffsetIndex, TimeIndex]:
    """Read and sanity-check a segment's index files (``next_offset``: its end when known).
    ``log_bytes`` may be a function, called after the files were read (the active segment: its
    entries are written after their batch, so every entry read points into bytes seen then).
    Raises ``IndexRefused`` (a missing file too)."""
    offset_data, time_data = _read_file(index_path), _read_file(time_index_path)
    if callable(log_bytes):
        log_bytes = log_bytes()
    for path, data in ((index_path, offset_data), (time_index_path, time_data)):
        if data is None:
            raise IndexRefused(f"{path} is missing")
    assert offset_data is not None and time_data is not None
    offset_index = _parsed(OffsetIndex(index_path, base), offset_data)
    time_index = _parsed(TimeIndex(time_index_path, base), time_data)
    check_offset_entries(offset_index, log_bytes, next_offset)
    check_time_entries(time_index, next_offset)
    offset_index.persisted = len(offset_index)
    time_index.persisted = len(time_index)
    return offset_index, time_index


def sanity_check_file(
    path: str, base: int, log_bytes: int, next_offset: int | None, *, time_index: bool
) -> None:
    """``load_indexes``' check of one index file, a ``.timeindex`` when ``time_index`` (``pylog
    dump --index-sanity-check``, pylog/inspect.py); raises ``IndexRefused`` (a missing file too)."""
    data = _read_file(path)
    if data is None:
        raise IndexRefused(f"{path} is missing")
    if time_index:
        check_time_entries(_parsed(TimeIndex(path, base), data), next_offset)
    else:
        check_offset_entries(_parsed(OffsetIndex(path, base), data), log_bytes, next_offset)


_IndexT = TypeVar("_IndexT", bound="_SparseIndex")


def _parsed(index: _IndexT, data: bytes) -> _IndexT:
    """``index`` holding the entries of ``data``, which must be whole entries."""
    index._extend(_whole(data, index.ENTRY.size))
    return index


def replace_file(path: str, data: bytes) -> None:
    """Replace an index file by rename (a rebuilt sealed index): a process reading the old file
    keeps reading it whole, a later one reads the new one whole."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        _pwrite_all(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _pwrite_all(fd: int, data: bytes, at: int) -> None:
    written = 0
    while written < len(data):
        written += os.pwrite(fd, data[written:], at + written)


def _persist(index: _SparseIndex) -> None:
    """Append to the file the entries it lacks; cut a ragged tail (a writer died mid-entry).
    A refused file (``rewrite``) is overwritten whole, in place: other writers keep descriptors
    on it, so it must stay the same file.

    Index files only grow while a directory is open (recovery runs only with nobody else open),
    so once this object wrote ``n`` entries the file holds at least ``n``: nothing to check then.
    """
    entry_bytes = index.ENTRY.size
    want = len(index)
    if want <= index.persisted and not index.rewrite:
        return
    if index.fd < 0:
        index.fd = os.open(index.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fd = index.fd
    if index.rewrite:
        data = index.pack_from(0)
        _pwrite_all(fd, data, 0)
        os.ftruncate(fd, len(data))
        index.persisted = want
        index.rewrite = False
        return
    size = os.fstat(fd).st_size
    have = size // entry_bytes
    if have < want:
        data = index.pack_from(have)
        assert len(data) == (want - have) * entry_bytes
        _pwrite_all(fd, data, have * entry_bytes)
        size = max(size, want * entry_bytes)
    if size % entry_bytes:
        os.ftruncate(fd, size - size % entry_bytes)
    index.persisted = want


def _read_file(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


class _SparseIndex:
    """What the two index kinds share, written once: two parallel columns in file order (the
    first is the sorted key), the entry codec (``ENTRY``), the sparse lookup (``_floor``), the
    whole-entry rule and the writer's persistence (append what the file lacks, or overwrite a
    refused file whole)."""

    __slots__ = ("base", "fd", "path", "persisted", "rewrite")
    ENTRY: ClassVar[struct.Struct]

    def __init__(self, path: str, base: int):
        self.path = path
        self.base = base
        self.fd = -1  # opened by the first persist()
        self.persisted = 0  # entries this object knows the file holds
        self.rewrite = False  # the file was refused on load: persist() overwrites it whole

    def _columns(self) -> tuple[list[int], list[int]]:
        raise NotImplementedError

    def _extend(self, data: bytes) -> None:
        """Take in the entries of ``data`` (whole entries; ``load_indexes`` checks that)."""
        keys, values = self._columns()
        for key, value in self.ENTRY.iter_unpack(data):
            keys.append(key)
            values.append(value)

    def _floor(self, key: int) -> int:
        """Index of the largest entry whose key is <= ``key`` (-1 below the first)."""
        return bisect_right(self._columns()[0], key) - 1

    def __len__(self) -> int:
        return len(self._columns()[0])

    def to_bytes(self) -> bytes:
        return self.pack_from(0)

    def pack_from(self, i: int) -> bytes:
        keys, values = self._columns()
        return b"".join(map(self.ENTRY.pack, keys[i:], values[i:]))

    def persist(self) -> None:
        """Append the entries the file lacks (a writer, under the writer lock)."""
        _persist(self)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class OffsetIndex(_SparseIndex):
    """``relOffset -> position`` entries of one segment."""

    __slots__ = ("positions", "rel_offsets")
    ENTRY = OFFSET_ENTRY

    def __init__(self, path: str, base: int):
        super().__init__(path, base)
        self.rel_offsets: list[int] = []
        self.positions: list[int] = []

    def _columns(self) -> tuple[list[int], list[int]]:
        return self.rel_offsets, self.positions

    def append(self, rel_offset: int, position: int) -> None:
        assert 0 <= rel_offset <= INT32_MAX and 0 <= position <= INT32_MAX, (rel_offset, position)
        assert not self.rel_offsets or rel_offset > self.rel_offsets[-1], "offsets must increase"
        self.rel_offsets.append(rel_offset)
        self.positions.append(position)

    def lookup(self, offset: int) -> tuple[int, int]:
        """(offset, position) of the largest entry <= offset; ``(base, 0)`` below the first."""
        i = self._floor(offset - self.base)
        if i < 0:
            return self.base, 0
        return self.base + self.rel_offsets[i], self.positions[i]


class TimeIndex(_SparseIndex):
    """``timestamp -> relOffset`` entries of one segment, increasing in both."""

    __slots__ = ("rel_offsets", "timestamps")
    ENTRY = TIME_ENTRY

    def __init__(self, path: str, base: int):
        super().__init__(path, base)
        self.timestamps: list[int] = []
        self.rel_offsets: list[int] = []

    def _columns(self) -> tuple[list[int], list[int]]:
        return self.timestamps, self.rel_offsets

    @property
    def last_timestamp(self) -> int:
        return self.timestamps[-1] if self.timestamps else NO_TIMESTAMP

    def maybe_append(self, timestamp: int, rel_offset: int) -> bool:
        """Append only when ``timestamp`` exceeds the last entry's (empty counts as -1)."""
        if timestamp <= self.last_timestamp:
            return False
        # why: loaded entries (Kafka's) may name record offsets; an entry never goes back in offset
        if self.rel_offsets and rel_offset <= self.rel_offsets[-1]:
            return False
        assert 0 <= rel_offset <= INT32_MAX, rel_offset
        self.timestamps.append(timestamp)
        self.rel_offsets.append(rel_offset)
        return True

    def lookup(self, timestamp: int) -> tuple[int, int]:
        """(timestamp, offset) of the largest entry with ts <= timestamp; ``(-1, base)`` below."""
        i = self._floor(timestamp)
        if i < 0:
            return NO_TIMESTAMP, self.base
        return self.timestamps[i], self.base + self.rel_offsets[i]


class IndexBuilder:
    """The derivation state of one segment: feed it every batch header in file order."""

    __slots__ = (
        "base",
        "interval_bytes",
        "last_entry_pos",
        "max_timestamp",
        "offset_index",
        "offset_of_max_timestamp",
        "replay_cursor",
        "replay_len",
        "replay_mismatch",
        "time_index",
    )

    def __init__(self, offset_index: OffsetIndex, time_index: TimeIndex, interval_bytes: int):
        self.offset_index = offset_index
        self.time_index = time_index
        self.base = offset_index.base
        self.interval_bytes = interval_bytes
        self.last_entry_pos = 0
        self.max_timestamp = NO_TIMESTAMP
        self.offset_of_max_timestamp = offset_index.base
        self.replay_len = 0
        self.replay_cursor = 0
        self.replay_mismatch = False

    @classmethod
    def replaying(cls, offset_index: OffsetIndex, time_index: TimeIndex, interval_bytes: int) -> IndexBuilder:
        """A builder that starts from loaded index files and replays the segment's batches
        (module docstring)."""
        builder = cls(offset_index, time_index, interval_bytes)
        builder.replay_len = len(offset_index)
        if offset_index.positions:
            builder.last_entry_pos = offset_index.positions[-1]
        return builder

    @property
    def replay_matched(self) -> bool:
        """After replaying every batch: whether each loaded offset entry stood at a batch start."""
        return not self.replay_mismatch and self.replay_cursor == self.replay_len

    def observe(self, position: int, last_offset: int, max_timestamp: int) -> None:
        """Account for the batch at ``position`` (maxTsSoFar first, then the interval rule)."""
        if max_timestamp > self.max_timestamp:
            self.max_timestamp = max_timestamp
            self.offset_of_max_timestamp = last_offset
        if self.replay_cursor < self.replay_len:
            at = self.offset_index.positions[self.replay_cursor]
            if (
                at == position
                and self.base + self.offset_index.rel_offsets[self.replay_cursor] >= last_offset
            ):
                # why re-offer the time entry: .index and .timeindex are two writes; a writer
                # that died between them left the time entry of this point out
                self.replay_cursor += 1
                self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp - self.base)
            elif at <= position:
                self.replay_mismatch = True
                self.replay_cursor = self.replay_len
            return
        if position - self.last_entry_pos > self.interval_bytes:
            self.offset_index.append(last_offset - self.base, position)
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp - self.base)
            self.last_entry_pos = position

    def seal(self) -> None:
        """The final time entry: a segment stops being active (roll), is closed by the last
        closer, or was rebuilt by recovery (Kafka's onBecomeInactiveSegment, close, recover)."""
        self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp - self.base)
