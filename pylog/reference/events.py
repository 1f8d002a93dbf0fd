"""Operator events: what recovery, index loading and a writer's tail repair did to the files,
logged through Python's ``logging``. The twin of ``native/src/events.rs``: same logger names,
levels and text in both engines.

Levels follow Kafka's LogLoader and LogSegment
(storage/src/main/java/org/apache/kafka/storage/internals/log/LogLoader.java, LogSegment.java):
WARNING when bytes are cut (corruption or a torn tail) or an index file is refused and rebuilt;
INFO for segments and temporary files deleted, swaps completed and the recovery summary.

Loggers: ``pylog.recovery`` (recovery at open), ``pylog.index`` (index loading and rebuilds),
``pylog.log`` (a live writer's tail repair). Callers log after the file operation is done; the
reference engine holds only its own locks then, and a handler that calls back into the same log
object from another thread waits for them like any other caller.
"""

from __future__ import annotations

import logging

RECOVERY = logging.getLogger("pylog.recovery")
INDEX = logging.getLogger("pylog.index")
LOG = logging.getLogger("pylog.log")


def recovery_truncated(log_path: str, valid_bytes: int, file_bytes: int, next_offset: int) -> None:
    """Recovery cut a segment at the first invalid batch."""
    RECOVERY.warning(
        "%s: invalid or torn batch at byte position %d; truncated %d bytes (file was %d bytes), "
        "log end offset now %d",
        log_path,
        valid_bytes,
        file_bytes - valid_bytes,
        file_bytes,
        next_offset,
    )


def recovery_deleted_segment(log_path: str, cut_log_path: str) -> None:
    """Recovery deleted a segment after the one it cut."""
    RECOVERY.info("deleted segment %s after the truncation of %s", log_path, cut_log_path)


def recovery_deleted_file(path: str, why: str) -> None:
    """Recovery deleted a temporary or orphan file."""
    RECOVERY.info("deleted %s (%s)", path, why)


def recovery_swap_completed(source: str, target: str) -> None:
    """Recovery finished an interrupted swap: one swap file renamed to its final name."""
    RECOVERY.info("completed an interrupted swap: renamed %s to %s", source, target)


def recovery_done(dir_path: str, segments: int, log_end: int, recovery_point: int, cut: int) -> None:
    """The summary of one recovery."""
    RECOVERY.info(
        "recovered %s: %d segments, log end offset %d, recovery point %d, %d bytes truncated",
        dir_path,
        segments,
        log_end,
        recovery_point,
        cut,
    )


def index_rebuilt(log_path: str, reason: str) -> None:
    """An index file pair was refused on load and rebuilt from the segment's bytes."""
    INDEX.warning("rebuilding the index files of %s: %s", log_path, reason)


def torn_tail_truncated(log_path: str, valid_bytes: int, file_bytes: int, next_offset: int) -> None:
    """A writer cut a torn tail left by a writer that died mid-append."""
    LOG.warning(
        "%s: torn batch at byte position %d; truncated %d bytes (file was %d bytes), log end offset %d",
        log_path,
        valid_bytes,
        max(file_bytes - valid_bytes, 0),
        file_bytes,
        next_offset,
    )
