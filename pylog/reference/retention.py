"""Retention: which whole segments go, and how they go (the twin of native/src/retention.rs).

Kafka's ``deleteOldSegments`` (core/src/main/scala/kafka/log/UnifiedLog.scala: deleteOldSegments,
deletableSegments, deleteSegments, deleteLogStartOffsetBreachedSegments,
deleteRetentionSizeBreachedSegments, deleteRetentionMsBreachedSegments). Passes, in this order,
each over the segments the previous one left; each walks the **sealed** segments oldest first and
stops at the first that fails (the active segment is never deleted — a deviation: Kafka deletes a
non-empty active segment after rolling a new one):

1. ``log_start``: the next segment's base <= the log start offset (raised by ``delete_before``);
2. ``size`` (``cleanup.policy`` has ``delete``, ``retention.bytes >= 0``): with
   ``diff = total size (active included) - retention.bytes``, delete while ``diff - size >= 0``,
   then ``diff -= size``;
3. ``time`` (``cleanup.policy`` has ``delete``, ``retention.ms >= 0``):
   ``now - largest_timestamp > retention.ms``, where a segment's largest timestamp is its last
   time-index entry's, or its ``.log`` mtime in ms when it has none (Kafka's
   LogSegment.largestTimestamp).

The deletion protocol (``PartitionLog._delete_segments`` in log.py holds the locks and calls the
steps here, for all three passes and for ``delete_before``): under the writer lock with the layout
generation odd, write ``log-start-offset-checkpoint`` = max(current start, the first surviving
base) [pause ``retention-checkpointed``]; rename every file of each deleted segment to
``<name>.deleted``, oldest first (``rename_deleted``) [pause ``retention-renamed``]; fsync the
directory; end the change; release the writer lock; then unlink the ``.deleted`` files
(``unlink_deleted``). A crash anywhere leaves ``.deleted`` files that recovery (or the next writer's
dead-changer repair) deletes; a reader holding an fd of a deleted ``.log`` keeps a valid view.

Pure functions, no state: thread-safety is the caller's (the cleaner lock and the writer lock).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from typing import NamedTuple

from pylog.config import LogConfig
from pylog.reference import events
from pylog.reference.segments import DELETED_SUFFIX, file_prefix

#: the pass names, in the order they run (also the rule words of the INFO line, one line per
#: run that deleted something, naming the passes that did; native/src/retention.rs names them so)
LOG_START = "log-start"
SIZE = "retention.bytes"
TIME = "retention.ms"

#: the per-segment files a deletion renames, when present (Kafka's LogSegment files plus the
#: producer snapshot named by the same base); the ``.log`` last, as native/src/log.rs: while it
#: is there the segment is whole (a crash before it leaves indexes that are rebuilt)
SEGMENT_SUFFIXES = (".index", ".timeindex", ".txnindex", ".snapshot", ".log")


class SegmentInfo(NamedTuple):
    """What the predicates look at for one segment."""

    base: int
    size: int
    #: last time-index entry's ts, else the .log mtime in ms (only the time pass reads it)
    largest_timestamp: Callable[[], int]


def policy_has(config: LogConfig, word: str) -> bool:
    """Whether ``cleanup.policy`` (``delete``, ``compact`` or ``compact,delete``) names ``word``."""
    return word in config.cleanup_policy.split(",")


def passes(config: LogConfig) -> tuple[str, ...]:
    """The passes ``apply_retention`` runs for this config (Kafka: compact-only logs run only the
    log-start pass)."""
    if policy_has(config, "delete"):
        return (LOG_START, SIZE, TIME)
    return (LOG_START,)


def deletable(
    rule: str, segments: Sequence[SegmentInfo], log_start: int, config: LogConfig, now_ms: int
) -> int:
    """How many of the oldest segments ``rule`` deletes (``segments``: all of them, the active one
    last; it is never counted)."""
    sealed = len(segments) - 1
    count = 0
    if rule == LOG_START:
        while count < sealed and segments[count + 1].base <= log_start:
            count += 1
    elif rule == SIZE:
        if config.retention_bytes < 0:
            return 0
        diff = sum(s.size for s in segments) - config.retention_bytes
        while count < sealed and diff - segments[count].size >= 0:
            diff -= segments[count].size
            count += 1
    elif rule == TIME:
        if config.retention_ms < 0:
            return 0
        while count < sealed and now_ms - segments[count].largest_timestamp() > config.retention_ms:
            count += 1
    else:  # pragma: no cover - a caller's typo
        raise ValueError(rule)
    return count


def segment_files(dir_path: str, base: int) -> list[str]:
    """The existing files of segment ``base`` that a deletion renames, in ``SEGMENT_SUFFIXES``
    order."""
    prefix = os.path.join(dir_path, file_prefix(base))
    return [prefix + suffix for suffix in SEGMENT_SUFFIXES if os.path.exists(prefix + suffix)]


def rename_deleted(dir_path: str, bases: Sequence[int]) -> list[str]:
    """Rename every file of each segment to ``<name>.deleted``, oldest first; returns the new
    names (for ``unlink_deleted``)."""
    renamed = []
    for base in bases:
        for path in segment_files(dir_path, base):
            os.rename(path, path + DELETED_SUFFIX)
            renamed.append(path + DELETED_SUFFIX)
    return renamed


def unlink_deleted(paths: Sequence[str]) -> None:
    """The last step, after the writer lock is released. why tolerate a missing file: a writer's
    dead-changer repair (or recovery) may have deleted it first."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def log_deleted(dir_path: str, segments: int, deleted_bytes: int, start: int, rules: Sequence[str]) -> None:
    """The INFO line of a retention run that deleted something (events.py's rules apply)."""
    events.retention_deleted(dir_path, segments, deleted_bytes, start, ", ".join(rules))
