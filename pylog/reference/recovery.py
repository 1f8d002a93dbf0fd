"""Recovery of a partition directory after an unclean shutdown (Kafka's LogLoader.java and LogSegment.recover).

Run by the first opener, under the writer lock, when ``.kafka_cleanshutdown`` is absent:

1. delete ``*.deleted`` and ``*.cleaned`` files (noting the lowest ``.cleaned`` base);
2. finish interrupted swaps: a ``.swap`` file whose base is >= the lowest ``.cleaned`` base is
   deleted (an incomplete split, KAFKA-6264); for every remaining ``.log.swap``, the plain segments
   whose base lies in its offset range ``[base, nextOffset)`` are deleted, then every ``.swap`` file
   is renamed to its final name;
3. delete index files that have no ``.log``, and the ``.tmp`` of an unfinished index rebuild;
4. from the segment holding the recovery point to the last one, scan the batches checking framing,
   magic, CRC, ``baseOffset >= previous nextOffset`` (the segment base for its first batch) and
   ``lastOffset - base <= 2**31 - 1``; at the first failure delete every later segment, then
   truncate the ``.log`` there (this module owns that cut-and-delete rule); rewrite both index
   files from the bytes, each ending with the final time entry (Kafka's LogSegment.recover ends
   with it too, the last segment included);
5. segments below the recovery point are never rewritten: their index files are rebuilt only when
   missing or refused by the sanity check (``index.load_indexes``: whole entries, strictly
   increasing, inside the segment and its ``.log``), through a ``.tmp`` and a rename, as later
   opens trust them; files that pass are kept as they are;
6. a directory without segments gets an empty segment 0;
7. the directory is fsynced (deletions, renames and creations above are durable).

Nothing here reads records: a batch is whole when its framing and CRC are right. Every deletion,
completed swap, cut and rebuilt index is reported (``events``).
"""

from __future__ import annotations

import contextlib
import itertools
import os

from pylog.config import LogConfig
from pylog.errors import CorruptBatchError
from pylog.reference import events
from pylog.reference.checkpoint import fsync_dir
from pylog.reference.index import (
    IndexBuilder,
    IndexRefused,
    OffsetIndex,
    TimeIndex,
    load_indexes,
    replace_file,
)
from pylog.reference.segment import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
    Segment,
    iter_batches,
    parse_base,
    segment_paths,
    valid_batches,
)

DELETED_SUFFIX = ".deleted"
CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"


def recovery_point_within(recovery_point: int, end: int) -> int:
    """The one owner of the recovery-point clamp (Kafka's LogLoader: ``min(checkpoint, log end)``):
    the recovery point never lies past the log end, after a recovery cut here or when a log
    reloads and finds fewer offsets (log.py); native/src/recovery.rs's twin."""
    return min(recovery_point, end)


def list_segment_bases(dir_path: str) -> list[int]:
    """Bases of the ``{base:020}.log`` files, sorted."""
    bases = []
    for name in os.listdir(dir_path):
        if name.endswith(LOG_SUFFIX) and name.count(".") == 1:
            base = parse_base(name)
            if base is not None:
                bases.append(base)
    bases.sort()
    return bases


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def delete_segment_files(dir_path: str, base: int) -> None:
    for path in segment_paths(dir_path, base):
        _unlink(path)


def _scan_next_offset(path: str, base: int) -> int:
    """nextOffset of a log file by framing (a torn or corrupt tail ends it)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        next_offset = base
        try:
            for batch in iter_batches(fd, 0, os.fstat(fd).st_size, path=path, need_body=False):
                next_offset = max(next_offset, batch.header.next_offset)
        except CorruptBatchError:
            pass
        return next_offset
    finally:
        os.close(fd)


def remove_temp_files(dir_path: str, *, include_cleaned: bool = True) -> int:
    """Steps 1-2 of the module docstring, the temporary files of a deletion, a cleaning or a
    swap: the one owner of those rules (native/src/recovery.rs ``remove_temp_files``), run by
    recovery, by a writer that finds the layout generation left odd by a dead changer (a
    retention deletion or a compaction swap killed half-way; log.py) before it re-lists, and by
    a cleaner for what a dead cleaner left (cleaner.py). ``include_cleaned=False`` when a live
    cleaner (another holder of the cleaner lock) may be writing ``.cleaned`` files: they are
    left alone but still count for the lowest ``.cleaned`` base (why: a cleaner killed between
    its renames of one group's ``.cleaned`` files to ``.swap`` leaves both at one base, and that
    swap must be dropped, not finished, or the cleaned index would land over the old segment's). Returns how many files it
    deleted or renamed (the caller fsyncs the directory)."""
    names = sorted(os.listdir(dir_path))  # a stable order of deletions (and their events)
    min_cleaned: int | None = None
    swaps: list[str] = []
    changed = 0
    for name in names:
        path = os.path.join(dir_path, name)
        if name.endswith(DELETED_SUFFIX):
            _unlink(path)
            events.recovery_deleted_file(path, "a deletion left unfinished")
            changed += 1
        elif name.endswith(CLEANED_SUFFIX):
            base = parse_base(name)
            if base is not None:
                min_cleaned = base if min_cleaned is None else min(min_cleaned, base)
            if not include_cleaned:
                continue
            _unlink(path)
            events.recovery_deleted_file(path, "an unfinished cleaning")
            changed += 1
        elif name.endswith(SWAP_SUFFIX):
            swaps.append(name)
    valid_swaps = []
    for name in sorted(swaps):
        base = parse_base(name)
        if base is None or (min_cleaned is not None and base >= min_cleaned):
            _unlink(os.path.join(dir_path, name))
            events.recovery_deleted_file(os.path.join(dir_path, name), "an unfinished swap")
            changed += 1
        else:
            valid_swaps.append(name)
    for name in valid_swaps:
        if name.endswith(LOG_SUFFIX + SWAP_SUFFIX):
            base = parse_base(name)
            assert base is not None
            next_offset = _scan_next_offset(os.path.join(dir_path, name), base)
            for other in list_segment_bases(dir_path):
                if base <= other < max(next_offset, base + 1):
                    delete_segment_files(dir_path, other)
                    events.recovery_deleted_file(
                        segment_paths(dir_path, other)[0], "replaced by an interrupted swap"
                    )
                    changed += 1
    for name in valid_swaps:
        path = os.path.join(dir_path, name)
        os.replace(path, path[: -len(SWAP_SUFFIX)])
        events.recovery_swap_completed(path, path[: -len(SWAP_SUFFIX)])
        changed += 1
    return changed


def remove_temp_files_and_complete_swaps(dir_path: str) -> None:
    """Steps 1-3 of the module docstring (recovery's)."""
    remove_temp_files(dir_path)
    # orphan index files, and the .tmp of an unfinished index rebuild (index.replace_file)
    bases = set(list_segment_bases(dir_path))
    for name in sorted(os.listdir(dir_path)):
        if name.endswith((INDEX_SUFFIX + ".tmp", TIME_INDEX_SUFFIX + ".tmp")) and name.count(".") == 2:
            if parse_base(name) is not None:
                _unlink(os.path.join(dir_path, name))
                events.recovery_deleted_file(os.path.join(dir_path, name), "an unfinished index rebuild")
        elif (name.endswith(INDEX_SUFFIX) or name.endswith(TIME_INDEX_SUFFIX)) and name.count(".") == 1:
            base = parse_base(name)
            if base is not None and base not in bases:
                _unlink(os.path.join(dir_path, name))
                events.recovery_deleted_file(os.path.join(dir_path, name), "an index without its log")


def _write_file(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        # the clean-shutdown marker a later close writes makes later opens trust these files
        os.fsync(fd)
    finally:
        os.close(fd)


def derive_indexes(
    dir_path: str, base: int, config: LogConfig, *, sealed: bool
) -> tuple[OffsetIndex, TimeIndex]:
    """The index entries of a segment's whole batches (framing only), as the index rules say."""
    log_path, index_path, time_index_path = segment_paths(dir_path, base)
    builder = IndexBuilder(
        OffsetIndex(index_path, base), TimeIndex(time_index_path, base), config.index_interval_bytes
    )
    fd = os.open(log_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        # below the recovery point what does not frame or fit ends the index: it is reported
        # when read, never cut
        end = os.fstat(fd).st_size
        for batch in valid_batches(fd, 0, end, base=base, next_offset=base, path=log_path, check_crc=False):
            builder.observe(batch.position, batch.header.last_offset, batch.header.max_timestamp)
    finally:
        os.close(fd)
    if sealed:
        builder.seal()
    return builder.offset_index, builder.time_index


def _rebuild_if_refused(dir_path: str, base: int, next_base: int, config: LogConfig) -> None:
    """Step 5: rebuild a sealed segment's index files when the sanity check refuses them."""
    log_path, index_path, time_index_path = segment_paths(dir_path, base)
    try:
        load_indexes(index_path, time_index_path, base, os.stat(log_path).st_size, next_base)
        return
    except IndexRefused as refused:
        reason = str(refused)
    events.index_rebuilt(log_path, reason)
    offset_index, time_index = derive_indexes(dir_path, base, config, sealed=True)
    # why by rename: later opens trust a file below the recovery point as it is, and a kill
    # between truncating it and writing it would leave 0 bytes (a whole number of entries)
    replace_file(index_path, offset_index.to_bytes())
    replace_file(time_index_path, time_index.to_bytes())


def recover_segment(dir_path: str, base: int, config: LogConfig, *, later: list[int]) -> tuple[int, int]:
    """Validate one segment, cut it at the first bad batch, rewrite its indexes.

    When bytes are cut, every segment in ``later`` is deleted first. why that order: until the
    cut, the bad batch is still on disk, so a crash in between leads the next recovery to the
    same cut; cutting first would let it keep the later segments, with a gap in the offsets.
    Returns (bytes cut, next offset after the last valid batch).
    """
    log_path, index_path, time_index_path = segment_paths(dir_path, base)
    builder = IndexBuilder(
        OffsetIndex(index_path, base), TimeIndex(time_index_path, base), config.index_interval_bytes
    )
    fd = os.open(log_path, os.O_RDWR | os.O_CLOEXEC)
    try:
        file_size = os.fstat(fd).st_size
        valid = 0
        next_offset = base
        batches = valid_batches(fd, 0, file_size, base=base, next_offset=base, path=log_path, check_crc=True)
        for batch in batches:
            header = batch.header
            builder.observe(batch.position, header.last_offset, header.max_timestamp)
            valid = batch.position + header.size_bytes
            next_offset = header.next_offset
        truncated = valid < file_size
        if truncated:
            for later_base in later:
                delete_segment_files(dir_path, later_base)
                events.recovery_deleted_segment(segment_paths(dir_path, later_base)[0], log_path)
            if later:
                fsync_dir(dir_path)  # the deletes are durable before the cut is
            os.ftruncate(fd, valid)
            os.fsync(fd)
            events.recovery_truncated(log_path, valid, file_size, next_offset)
    finally:
        os.close(fd)
    builder.seal()  # every rebuilt index ends with the final entry, as Kafka's recover does
    _write_file(index_path, builder.offset_index.to_bytes())
    _write_file(time_index_path, builder.time_index.to_bytes())
    return file_size - valid, next_offset


def recover(dir_path: str, config: LogConfig, recovery_point: int | None) -> None:
    """Bring the directory to a whole state (module docstring); the caller holds the writer lock."""
    remove_temp_files_and_complete_swaps(dir_path)
    bases = list_segment_bases(dir_path)
    if not bases:
        Segment.create(dir_path, 0, config).close()
        fsync_dir(dir_path)
        events.recovery_done(dir_path, 1, 0, 0, 0)
        return
    point = 0 if recovery_point is None else recovery_point
    first = 0
    for i, base in enumerate(bases):
        if base <= point:
            first = i
    for base, next_base in itertools.pairwise(bases[: first + 1]):
        _rebuild_if_refused(dir_path, base, next_base, config)
    cut, log_end, segments = 0, bases[-1], len(bases)
    for i in range(first, len(bases)):
        cut, log_end = recover_segment(dir_path, bases[i], config, later=bases[i + 1 :])
        if cut:
            segments = i + 1
            break
    fsync_dir(dir_path)
    events.recovery_done(dir_path, segments, log_end, recovery_point_within(point, log_end), cut)
