"""The segments of one partition, ordered by base offset, and the names of their files: the twin
of native/src/segments.rs, after Kafka's ``LogSegments``
(storage/src/main/java/org/apache/kafka/storage/internals/log/LogSegments.java: the ordered
collection with floor lookups) and ``LogFileUtils`` (…/log/LogFileUtils.java: file names and
suffixes). The log cleaner will select, swap and delete segments through this.

Invariants: base offsets strictly increase; the last segment is the active one (the only one not
sealed); never empty while a log is open. Not thread-safe: the log's lock guards it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pylog.reference.segment import Segment

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
#: added to a segment file scheduled for deletion, being cleaned, or swapped in by the cleaner;
#: recovery finishes or drops each (recovery.py)
DELETED_SUFFIX = ".deleted"
CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"


def file_prefix(base: int) -> str:
    """``{base:020}`` (Kafka's ``LogFileUtils.filenamePrefixFromOffset``)."""
    return f"{base:020d}"


def parse_base(file_name: str) -> int | None:
    """The base offset of ``{base:020}.<suffix>...``, or None when the name is not ours."""
    prefix = file_name.split(".", 1)[0]
    if len(prefix) != 20 or not prefix.isdigit():
        return None
    return int(prefix)


class Segments:
    """The ordered segments; indexable and iterable like the list they wrap."""

    __slots__ = ("_bases", "_segments")

    def __init__(self, segments: list[Segment] | None = None):
        self._segments: list[Segment] = []
        self._bases: list[int] = []
        self.replace(segments or [])

    def replace(self, segments: list[Segment]) -> None:
        """Replace every segment (sorted here by base offset)."""
        self._segments = sorted(segments, key=lambda s: s.base)
        self._bases = [s.base for s in self._segments]

    def append(self, segment: Segment) -> None:
        """Add a segment after the others (a roll)."""
        assert not self._bases or segment.base > self._bases[-1], (segment.base, self._bases[-1:])
        self._segments.append(segment)
        self._bases.append(segment.base)

    @property
    def active(self) -> Segment:
        return self._segments[-1]

    def floor_index(self, offset: int) -> int:
        """Index of the segment holding ``offset``: the last with base <= offset (the first when
        ``offset`` is below every base) — Kafka's ``LogSegments.floorSegment``."""
        return max(bisect_right(self._bases, offset) - 1, 0)

    def __len__(self) -> int:
        return len(self._segments)

    def __iter__(self) -> Iterator[Segment]:
        return iter(self._segments)

    def __getitem__(self, i):  # int or slice, as the list
        return self._segments[i]
