"""Operator events: what recovery, index loading and a writer's tail repair did to the files,
logged through Python's ``logging``. The twin of ``native/src/events.rs``: same logger names,
levels and text in both engines.

Levels follow Kafka's LogLoader and LogSegment
(storage/src/main/java/org/apache/kafka/storage/internals/log/LogLoader.java, LogSegment.java):
WARNING when bytes are cut (corruption or a torn tail) or an index file is refused and rebuilt;
INFO for segments and temporary files deleted, swaps completed and the recovery summary.

Loggers: ``pylog.recovery`` (recovery at open), ``pylog.index`` (index loading and rebuilds),
``pylog.log`` (a live writer's tail repair), ``pylog.retention`` (segments deleted by retention,
INFO) and ``pylog.cleaner`` (cleaning passes, skipped compactions, stale files, INFO).

why deferred: a handler may call back into pylog (read the log it is told about, open the
directory); run while the engine holds its lock or the writer lock, that could deadlock. So, as
the native engine does, records raised while this thread holds the log's lock (``DeferringRLock``)
or is inside ``deferred()`` are queued on the thread and handed to ``logging`` when the outermost
of them is left, after the locks were released.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType


class _ThreadState(threading.local):
    """This thread's nesting depth of deferring regions and the events queued inside them."""

    def __init__(self) -> None:
        self.depth = 0
        self.queue: list[tuple[logging.Logger, int, str, tuple[object, ...]]] = []


_local = _ThreadState()


def _leave() -> None:
    """Leave one deferring region; the outermost hands the queued events to ``logging``."""
    state = _local
    state.depth -= 1
    if state.depth == 0 and state.queue:
        _flush(state)


def _flush(state: _ThreadState) -> None:
    pending, state.queue = state.queue, []
    for logger, level, msg, args in pending:
        _emit(logger, level, msg, args)


class deferred:
    """Queue this thread's events until the outermost ``deferred`` (or lock) is left."""

    def __enter__(self) -> None:
        _local.depth += 1

    def __exit__(self, *exc: object) -> None:
        _leave()


class DeferringRLock:
    """A re-entrant lock whose holder's events are logged once it is released (``deferred``).

    why so plain: every reference-engine call takes it, so it adds only a thread-local counter to
    the RLock (no method calls of its own)."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def __enter__(self) -> bool:
        _local.depth += 1
        try:
            return self._lock.acquire()
        except BaseException:
            _leave()
            raise

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lock.release()
        state = _local  # _leave(), inlined: this runs at the end of every engine call
        state.depth -= 1
        if state.depth == 0 and state.queue:
            _flush(state)


class _Unraisable:
    """Reports its exception through ``sys.unraisablehook`` when dropped (CPython runs a failing
    ``__del__`` through PyErr_WriteUnraisable, what the native bridge calls for a failing handler;
    Python has no public call for it before 3.13)."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def __del__(self) -> None:
        raise self.exc


def _emit(logger: logging.Logger, level: int, msg: str, args: tuple[object, ...]) -> None:
    # why: a failing handler must not turn the engine call's result into an error (the call
    # succeeded, files changed) nor keep the later records from the other handlers; reported as
    # unraisable, as the native engine does (python/logging.rs)
    try:
        logger.log(level, msg, *args)
    except Exception as e:
        _Unraisable(e)


def _log(logger: logging.Logger, level: int, msg: str, *args: object) -> None:
    state = _local
    if state.depth > 0:
        state.queue.append((logger, level, msg, args))
    else:
        _emit(logger, level, msg, args)


RECOVERY = logging.getLogger("pylog.recovery")
INDEX = logging.getLogger("pylog.index")
LOG = logging.getLogger("pylog.log")


def recovery_truncated(log_path: str, valid_bytes: int, file_bytes: int, next_offset: int) -> None:
    """Recovery cut a segment at the first invalid batch."""
    _log(
        RECOVERY,
        logging.WARNING,
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
    _log(RECOVERY, logging.INFO, "deleted segment %s after the truncation of %s", log_path, cut_log_path)


def recovery_deleted_file(path: str, why: str) -> None:
    """Recovery deleted a temporary or orphan file."""
    _log(RECOVERY, logging.INFO, "deleted %s (%s)", path, why)


def recovery_swap_completed(source: str, target: str) -> None:
    """Recovery finished an interrupted swap: one swap file renamed to its final name."""
    _log(RECOVERY, logging.INFO, "completed an interrupted swap: renamed %s to %s", source, target)


def recovery_done(dir_path: str, segments: int, log_end: int, recovery_point: int, cut: int) -> None:
    """The summary of one recovery."""
    _log(
        RECOVERY,
        logging.INFO,
        "recovered %s: %d segments, log end offset %d, recovery point %d, %d bytes truncated",
        dir_path,
        segments,
        log_end,
        recovery_point,
        cut,
    )


def index_rebuilt(log_path: str, reason: str) -> None:
    """An index file pair was refused on load and rebuilt from the segment's bytes."""
    _log(INDEX, logging.WARNING, "rebuilding the index files of %s: %s", log_path, reason)


def torn_tail_truncated(log_path: str, valid_bytes: int, file_bytes: int, next_offset: int) -> None:
    """A writer cut a torn tail left by a writer that died mid-append."""
    _log(
        LOG,
        logging.WARNING,
        "%s: torn batch at byte position %d; truncated %d bytes (file was %d bytes), log end offset %d",
        log_path,
        valid_bytes,
        max(file_bytes - valid_bytes, 0),
        file_bytes,
        next_offset,
    )


RETENTION = logging.getLogger("pylog.retention")
CLEANER = logging.getLogger("pylog.cleaner")


def retention_deleted(dir_path: str, segments: int, deleted_bytes: int, start: int, rules: str) -> None:
    """A retention run (``apply_retention``, ``delete_before``'s deletion, compact's) deleted
    segments."""
    _log(
        RETENTION,
        logging.INFO,
        "%s: deleted %d segments (%d bytes) by %s; log start offset now %d",
        dir_path,
        segments,
        deleted_bytes,
        rules,
        start,
    )


def cleaner_pass_done(
    dir_path: str,
    pass_number: int,
    segments: int,
    bytes_read: int,
    bytes_written: int,
    records_read: int,
    records_kept: int,
    tombstones_removed: int,
    seconds: float,
) -> None:
    """One cleaning pass finished (its checkpoint written)."""
    rate = bytes_read / 1e6 / seconds if seconds > 0 else 0.0
    _log(
        CLEANER,
        logging.INFO,
        "%s: cleaning pass %d: %d segments, %d bytes read, %d bytes written, %d records read, "
        "%d kept, %d tombstones removed, %.3f s, %.1f MB/s",
        dir_path,
        pass_number,
        segments,
        bytes_read,
        bytes_written,
        records_read,
        records_kept,
        tombstones_removed,
        seconds,
        rate,
    )


def cleaner_skipped(dir_path: str, reason: str) -> None:
    """``compact()`` did nothing, and why (a policy without compact)."""
    _log(CLEANER, logging.INFO, "%s: not compacted: %s", dir_path, reason)
