"""Offset and time indexes of one segment, and the rule that derives them from the segment bytes.

File formats (§2.2, §2.3), big-endian, never preallocated (entries = file length // entry size)::

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
maximum was first seen. Sealing appends one final time entry by the same "only if greater" rule.
"""

from __future__ import annotations

import os
import struct
from bisect import bisect_right

OFFSET_ENTRY = struct.Struct(">ii")
TIME_ENTRY = struct.Struct(">qi")
OFFSET_ENTRY_BYTES = OFFSET_ENTRY.size  # 8
TIME_ENTRY_BYTES = TIME_ENTRY.size  # 12
NO_TIMESTAMP = -1
INT32_MAX = 2**31 - 1


def offset_index_max_entries(segment_index_bytes: int) -> int:
    return segment_index_bytes // OFFSET_ENTRY_BYTES


def time_index_max_entries(segment_index_bytes: int) -> int:
    # why: Kafka's TimeIndex.isFull is entries >= maxEntries - 1, the last slot is kept for the
    # seal entry written at roll.
    return segment_index_bytes // TIME_ENTRY_BYTES - 1


def _persist(index: OffsetIndex | TimeIndex, entry_bytes: int) -> None:
    """Append to the file the entries it lacks; cut a ragged tail (a writer died mid-entry).

    Index files only grow while a directory is open (recovery runs only with nobody else open),
    so once this object wrote ``n`` entries the file holds at least ``n``: nothing to check then.
    """
    want = len(index)
    if want <= index.persisted:
        return
    if index.fd < 0:
        index.fd = os.open(index.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fd = index.fd
    size = os.fstat(fd).st_size
    have = size // entry_bytes
    if have < want:
        data = index.pack_from(have)
        assert len(data) == (want - have) * entry_bytes
        written = os.pwrite(fd, data, have * entry_bytes)
        while written < len(data):
            written += os.pwrite(fd, data[written:], have * entry_bytes + written)
        size = max(size, want * entry_bytes)
    if size % entry_bytes:
        os.ftruncate(fd, size - size % entry_bytes)
    index.persisted = want


def _close_fd(index: OffsetIndex | TimeIndex) -> None:
    if index.fd >= 0:
        os.close(index.fd)
        index.fd = -1


def _read_file(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


class OffsetIndex:
    """``relOffset -> position`` entries of one segment."""

    __slots__ = ("base", "fd", "path", "persisted", "positions", "rel_offsets")

    def __init__(self, path: str, base: int):
        self.path = path
        self.base = base
        self.fd = -1  # opened by the first persist()
        self.persisted = 0  # entries this object knows the file holds
        self.rel_offsets: list[int] = []
        self.positions: list[int] = []

    @classmethod
    def load(cls, path: str, base: int) -> OffsetIndex:
        """The whole entries of the file (a missing file is an empty index)."""
        index = cls(path, base)
        data = _read_file(path)
        if data:
            count = len(data) // OFFSET_ENTRY_BYTES
            for rel, pos in OFFSET_ENTRY.iter_unpack(memoryview(data)[: count * OFFSET_ENTRY_BYTES]):
                index.rel_offsets.append(rel)
                index.positions.append(pos)
        return index

    def __len__(self) -> int:
        return len(self.rel_offsets)

    def append(self, rel_offset: int, position: int) -> None:
        assert 0 <= rel_offset <= INT32_MAX and 0 <= position <= INT32_MAX, (rel_offset, position)
        assert not self.rel_offsets or rel_offset > self.rel_offsets[-1], "offsets must increase"
        self.rel_offsets.append(rel_offset)
        self.positions.append(position)

    def lookup(self, offset: int) -> tuple[int, int]:
        """(offset, position) of the largest entry <= offset; ``(base, 0)`` below the first."""
        i = bisect_right(self.rel_offsets, offset - self.base) - 1
        if i < 0:
            return self.base, 0
        return self.base + self.rel_offsets[i], self.positions[i]

    def to_bytes(self) -> bytes:
        return self.pack_from(0)

    def pack_from(self, i: int) -> bytes:
        return b"".join(map(OFFSET_ENTRY.pack, self.rel_offsets[i:], self.positions[i:]))

    def persist(self) -> None:
        """Append the entries the file lacks (a writer, under the writer lock)."""
        _persist(self, OFFSET_ENTRY_BYTES)

    def close(self) -> None:
        _close_fd(self)


class TimeIndex:
    """``timestamp -> relOffset`` entries of one segment, increasing in both."""

    __slots__ = ("base", "fd", "path", "persisted", "rel_offsets", "timestamps")

    def __init__(self, path: str, base: int):
        self.path = path
        self.base = base
        self.fd = -1
        self.persisted = 0
        self.timestamps: list[int] = []
        self.rel_offsets: list[int] = []

    @classmethod
    def load(cls, path: str, base: int) -> TimeIndex:
        index = cls(path, base)
        data = _read_file(path)
        if data:
            count = len(data) // TIME_ENTRY_BYTES
            for ts, rel in TIME_ENTRY.iter_unpack(memoryview(data)[: count * TIME_ENTRY_BYTES]):
                index.timestamps.append(ts)
                index.rel_offsets.append(rel)
        return index

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def last_timestamp(self) -> int:
        return self.timestamps[-1] if self.timestamps else NO_TIMESTAMP

    def maybe_append(self, timestamp: int, rel_offset: int) -> bool:
        """Append only when ``timestamp`` exceeds the last entry's (empty counts as -1)."""
        if timestamp <= self.last_timestamp:
            return False
        assert 0 <= rel_offset <= INT32_MAX, rel_offset
        self.timestamps.append(timestamp)
        self.rel_offsets.append(rel_offset)
        return True

    def lookup(self, timestamp: int) -> tuple[int, int]:
        """(timestamp, offset) of the largest entry with ts <= timestamp; ``(-1, base)`` below."""
        i = bisect_right(self.timestamps, timestamp) - 1
        if i < 0:
            return NO_TIMESTAMP, self.base
        return self.timestamps[i], self.base + self.rel_offsets[i]

    def to_bytes(self) -> bytes:
        return self.pack_from(0)

    def pack_from(self, i: int) -> bytes:
        return b"".join(map(TIME_ENTRY.pack, self.timestamps[i:], self.rel_offsets[i:]))

    def persist(self) -> None:
        _persist(self, TIME_ENTRY_BYTES)

    def close(self) -> None:
        _close_fd(self)


class IndexBuilder:
    """The derivation state of one segment: feed it every batch header in file order."""

    __slots__ = (
        "base",
        "interval_bytes",
        "last_entry_pos",
        "max_timestamp",
        "offset_index",
        "offset_of_max_timestamp",
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

    def observe(self, position: int, last_offset: int, max_timestamp: int) -> None:
        """Account for the batch at ``position`` (maxTsSoFar first, then the interval rule)."""
        if max_timestamp > self.max_timestamp:
            self.max_timestamp = max_timestamp
            self.offset_of_max_timestamp = last_offset
        if position - self.last_entry_pos > self.interval_bytes:
            self.offset_index.append(last_offset - self.base, position)
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp - self.base)
            self.last_entry_pos = position

    def seal(self) -> None:
        """The final time entry of a segment that stops being active (§2.6)."""
        self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp - self.base)
