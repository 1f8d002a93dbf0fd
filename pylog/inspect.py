"""Looking inside segment files without opening a log: what ``pylog dump`` prints and what
``pylog verify`` checks (pylog/cli/dump.py, pylog/cli/verify.py, pylog/verification.py).

Read-only, and independent of the engines' open path (no lock, no recovery, nothing written), so
it can look at a directory a crashed or foreign process left, Kafka's included. The formats are
Kafka's (docs/partition-log.md "Files in a partition directory"):

- ``.log``: RecordBatch v2 back to back (clients/src/main/java/org/apache/kafka/common/record/
  DefaultRecordBatch.java; header layout in pylog/reference/batch.py). ``scan_log`` walks it batch
  by batch, in file order, framed by the reference's ``frame`` (Kafka's FileLogInputStream
  rule): fewer than 12 bytes or
  ``12 + length`` past the end is an incomplete (torn) batch; ``length < 49`` or magic != 2 stops
  the walk (no later batch boundary can be trusted); a CRC mismatch or records that do not decode
  (codec, decompression, record layout, count) are reported and the walk goes on with the next
  batch, since the framing still holds.
- ``.index``: 8-byte entries ``relOffset i32, position i32``; ``.timeindex``: 12-byte entries
  ``timestamp i64, relOffset i32`` (storage/src/main/java/org/apache/kafka/storage/internals/log/
  OffsetIndex.java, TimeIndex.java). ``read_offset_index`` / ``read_time_index`` return the whole
  entries and the count of trailing bytes.

Every problem found is a ``Problem``: a kind (a short name, e.g. ``crc``, ``torn_tail``,
``index_entry``), the file, the byte position in that file (None when it concerns the whole
file), the offset it concerns when known, and a message. Records are checked by the engine's own
decoder (native when the extension is built, else the reference one): ``record_spans`` for the
walk (every check of ``decode_records``, no record object built), ``decode_records`` where dump
shows the records. So what is reported corrupt here is exactly what a reader refuses.

Thread-safety: pure functions over files opened read-only; nothing is shared.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pylog.errors import CorruptBatchError
from pylog.partition import Record
from pylog.reference.batch import (
    CRC_START,
    LOG_OVERHEAD,
    TRANSACTIONAL_MASK,
    BatchHeader,
    frame,
    records_area,
)
from pylog.reference.index import OFFSET_ENTRY, TIME_ENTRY, IndexRefused, sanity_check_file
from pylog.reference.record import Malformed, decode_records_area
from pylog.reference.segments import TIME_INDEX_SUFFIX, parse_base

CODEC_NAMES = ("none", "gzip", "snappy", "lz4", "zstd")
DELETE_HORIZON_MASK = 0x40
INT32_MAX = 2**31 - 1
#: bytes of consecutive batches handed to the record decoder at once (fewer calls, bounded memory)
DECODE_CHUNK_BYTES = 8 << 20


def _crc32c_function() -> Callable[[Any], int]:
    try:
        from pylog import _native

        return _native.crc32c
    except ImportError:  # a checkout without the built extension
        from pylog.reference.batch import crc32c

        return crc32c


def _decoder() -> Callable[[Any], list[Record]]:
    """The engine's batch decoder (CRC, codec, record layout), native when it is built."""
    try:
        from pylog import _native

        return lambda buffer: _native.decode_records(buffer, Record)
    except ImportError:
        from pylog.reference.batch import decode_records

        return decode_records


def _span_checker() -> Callable[[Any], list[tuple[int, int, int]]]:
    """The same checks without building records: per batch (records, first, last offset)."""
    try:
        from pylog import _native

        return _native.record_spans
    except ImportError:
        from pylog.reference.batch import record_spans

        return record_spans


crc32c = _crc32c_function()
decode_records = _decoder()
record_spans = _span_checker()


@dataclass
class Problem:
    """One thing wrong with a file. ``severity`` is ``error`` (damage: ``verify`` exits 1) or
    ``warning`` (not damage, e.g. a temporary file an interrupted operation left)."""

    kind: str
    path: str
    position: int | None
    message: str
    offset: int | None = None
    severity: str = "error"
    #: set by verify: whether ``--repair`` (the engine's recovery) would fix it
    repairable: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """A framed batch: its header as the reference engine parses it (pylog/reference/batch.py's
    ``BatchHeader``, which owns the header's fields and what follows from them: last and next
    offset, size, codec id, control bit), where it stands in its file, and whether its CRC holds.
    The properties here are only what dump shows on top (names, the last sequence, KIP-534)."""

    position: int
    header: BatchHeader
    crc_valid: bool

    @property
    def codec(self) -> str:
        cid = self.header.codec_id
        return CODEC_NAMES[cid] if cid < len(CODEC_NAMES) else f"unknown({cid})"

    @property
    def timestamp_type(self) -> str:
        return "LogAppendTime" if self.header.timestamp_type else "CreateTime"

    @property
    def is_transactional(self) -> bool:
        return bool(self.header.attributes & TRANSACTIONAL_MASK)

    @property
    def delete_horizon_ms(self) -> int | None:
        """KIP-534: with attribute bit 6 the baseTimestamp holds the delete horizon."""
        header = self.header
        return header.base_timestamp if header.attributes & DELETE_HORIZON_MASK else None

    @property
    def last_sequence(self) -> int:
        """Kafka's DefaultRecordBatch.lastSequence: baseSequence + lastOffsetDelta, wrapping
        past int32 max to 0; -1 without a sequence."""
        return sequence_at(self.header.base_sequence, self.header.last_offset_delta)

    def to_json(self) -> dict[str, Any]:
        header = self.header
        return {
            "position": self.position,
            "size": header.size_bytes,
            "base_offset": header.base_offset,
            "last_offset": header.last_offset,
            "count": header.records_count,
            "magic": header.magic,
            "codec": self.codec,
            "crc": header.crc,
            "crc_valid": self.crc_valid,
            "attributes": header.attributes,
            "timestamp_type": self.timestamp_type,
            "base_timestamp": header.base_timestamp,
            "max_timestamp": header.max_timestamp,
            "producer_id": header.producer_id,
            "producer_epoch": header.producer_epoch,
            "base_sequence": header.base_sequence,
            "last_sequence": self.last_sequence,
            "is_transactional": self.is_transactional,
            "is_control": header.is_control,
            "delete_horizon_ms": self.delete_horizon_ms,
            "partition_leader_epoch": header.partition_leader_epoch,
        }


def sequence_at(base_sequence: int, delta: int) -> int:
    """The sequence of the record ``delta`` after the batch's first (-1 without sequences)."""
    if base_sequence < 0:
        return -1
    return (base_sequence + delta) % (INT32_MAX + 1)


@dataclass
class LogScan:
    """What walking one ``.log`` found."""

    path: str
    base: int | None
    file_size: int
    batches: list[BatchInfo] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    #: where the last framed batch ends (bytes past it are torn or do not frame)
    framed_bytes: int = 0
    #: records decoded (control batches count their marker)
    records: int = 0

    @property
    def next_offset(self) -> int | None:
        """The next offset after the last framed batch (None: no batch)."""
        return self.batches[-1].header.next_offset if self.batches else None


def _map(path: str) -> tuple[int, mmap.mmap | bytes]:
    """The file's size and its bytes (a read-only mapping; ``b""`` for an empty file)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return 0, b""
        return size, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def scan_log(
    path: str,
    *,
    previous_next_offset: int | None = None,
    decode: bool = True,
    advance: Callable[[float], None] | None = None,
) -> LogScan:
    """Walk ``path`` batch by batch (module docstring). ``previous_next_offset``: the next offset
    of the segment before (offsets must not go back across segments). ``decode``: decode every
    record with the engine's decoder (structure check), not only framing and CRC. ``advance``
    is called with the bytes walked (a progress bar)."""
    base = parse_base(os.path.basename(path))
    size, data = _map(path)
    scan = LogScan(path, base, size)
    try:
        view = memoryview(data)
        try:
            _walk(scan, view, previous_next_offset, decode, advance)
        finally:
            view.release()
    finally:
        if isinstance(data, mmap.mmap):
            data.close()
    return scan


def _walk(
    scan: LogScan,
    view: memoryview,
    previous_next_offset: int | None,
    decode: bool,
    advance: Callable[[float], None] | None,
) -> None:
    path, end = scan.path, scan.file_size
    expected = scan.base if scan.base is not None else 0
    if previous_next_offset is not None:
        expected = max(expected, previous_next_offset)
    chunk: list[BatchInfo] = []  # consecutive CRC-valid batches waiting for the decoder
    pos = 0
    reported = 0
    while pos < end:
        remaining = end - pos
        try:
            header = frame(view, pos, end)  # the reference's framing rule, checks in its order
        except CorruptBatchError as error:  # length < 49 or magic != 2: no later boundary holds
            scan.problems.append(
                Problem(
                    str(error.kind),
                    path,
                    pos,
                    f"{error.args[0]}; {remaining} bytes from here cannot be read",
                    expected,
                )
            )
            break
        if header is None:  # incomplete: the torn tail a crash leaves
            if remaining < LOG_OVERHEAD:
                why = f"{remaining} bytes at the end do not hold a batch header"
            else:
                (length,) = struct.unpack_from(">i", view, pos + 8)
                why = f"incomplete batch: {LOG_OVERHEAD + length} bytes claimed, {remaining} on disk"
            scan.problems.append(Problem("torn_tail", path, pos, why, expected))
            break
        batch_size = header.size_bytes
        actual_crc = crc32c(view[pos + CRC_START : pos + batch_size])
        crc_valid = actual_crc == header.crc
        batch = BatchInfo(pos, header, crc_valid)
        scan.batches.append(batch)
        _check_header(scan, batch, expected)
        expected = max(expected, batch.header.next_offset)
        if not crc_valid:
            scan.problems.append(
                Problem(
                    "crc",
                    path,
                    pos,
                    f"CRC-32C mismatch: stored {header.crc:#010x}, computed {actual_crc:#010x}",
                    offset=batch.header.base_offset,
                )
            )
        if decode:
            if not crc_valid:
                _decode_chunk(scan, view, chunk)
                chunk = []
            else:
                chunk.append(batch)
                if pos + batch_size - chunk[0].position >= DECODE_CHUNK_BYTES:
                    _decode_chunk(scan, view, chunk)
                    chunk = []
        pos += batch_size
        if advance is not None and pos - reported >= DECODE_CHUNK_BYTES:
            advance(pos - reported)
            reported = pos
    if decode:
        _decode_chunk(scan, view, chunk)
    scan.framed_bytes = pos  # pos only ever moves past a framed batch
    if advance is not None:
        advance(end - reported)
    seen: set[tuple[str, int | None]] = set()  # the header rules and the decoder may agree
    unique = []
    for problem in scan.problems:
        if (problem.kind, problem.position) not in seen:
            seen.add((problem.kind, problem.position))
            unique.append(problem)
    scan.problems = unique


def _check_header(scan: LogScan, batch: BatchInfo, expected: int) -> None:
    """Header rules a reader and recovery rely on (docs/partition-log.md "Decoding rules",
    recovery's ``batch_fits``). why ``count <= lastOffsetDelta + 1`` and not ``==``: compaction
    keeps a batch's original offsets when it drops records, and may keep it empty (Kafka's
    MemoryRecords.filterTo, DefaultRecordBatch.writeEmptyHeader)."""
    path, pos = scan.path, batch.position
    if batch.header.last_offset_delta < 0:
        # why offset_order: its lastOffset goes back, and recovery cuts here (batch_fits)
        scan.problems.append(
            Problem(
                "offset_order",
                path,
                pos,
                f"lastOffsetDelta {batch.header.last_offset_delta} < 0",
                batch.header.base_offset,
            )
        )
    elif batch.header.records_count < 0 or batch.header.records_count > batch.header.last_offset_delta + 1:
        scan.problems.append(
            Problem(
                "record_count",
                path,
                pos,
                f"record count {batch.header.records_count} does not fit lastOffsetDelta {batch.header.last_offset_delta}",
                batch.header.base_offset,
            )
        )
    if batch.header.base_offset < expected:
        base = scan.base if scan.base is not None else 0
        if batch.header.base_offset < base:
            kind, why = "segment_base", f"below the segment's base offset {base} (its file name)"
        elif len(scan.batches) == 1:
            # why apart: recovery checks offsets within a segment, not across segments
            kind, why = "segment_overlap", f"below the end {expected} of the segment before"
        else:
            kind, why = "offset_order", f"below the next offset {expected} after the batch before"
        scan.problems.append(
            Problem(
                kind,
                path,
                pos,
                f"baseOffset {batch.header.base_offset} goes back: {why}",
                batch.header.base_offset,
            )
        )
    if scan.base is not None and batch.header.last_offset - scan.base > INT32_MAX:
        scan.problems.append(
            Problem(
                "offset_order",
                path,
                pos,
                f"lastOffset {batch.header.last_offset} is too far past the segment base {scan.base} (int32)",
                batch.header.base_offset,
            )
        )


def _decode_chunk(scan: LogScan, view: memoryview, chunk: list[BatchInfo]) -> None:
    """Decode the records of consecutive framed, CRC-valid batches with the engine's decoder; a
    batch it refuses is reported (its position, the decoder's kind) and decoding goes on after
    it. Each data batch's records must lie in ``[baseOffset, lastOffset]``."""
    while chunk:
        start = chunk[0].position
        stop = chunk[-1].position + chunk[-1].header.size_bytes
        try:
            spans = record_spans(view[start:stop])
        except CorruptBatchError as error:
            at = start + (error.position or 0)
            bad = next((i for i, b in enumerate(chunk) if b.position == at), 0)
            kind = str(error.kind) if error.kind is not None else "record"
            scan.problems.append(
                Problem(
                    kind, scan.path, chunk[bad].position, str(error.args[0]), chunk[bad].header.base_offset
                )
            )
            _decode_chunk(scan, view, chunk[:bad])  # the batches before it are good: check them
            chunk = chunk[bad + 1 :]
            continue
        _take_records(scan, chunk, spans)
        return


def _take_records(scan: LogScan, batches: list[BatchInfo], spans: list[tuple[int, int, int]]) -> None:
    """Count the records of ``batches`` and check that each data batch's records lie in its
    offsets (``spans``: what the decoder found, one per batch)."""
    for batch, (records, first, last) in zip(batches, spans, strict=True):
        scan.records += records if not batch.header.is_control else batch.header.records_count
        if records and (first < batch.header.base_offset or last > batch.header.last_offset):
            scan.problems.append(
                Problem(
                    "offset",
                    scan.path,
                    batch.position,
                    f"records at offsets {first}..{last} outside the batch's {batch.header.base_offset}..{batch.header.last_offset}",
                    batch.header.base_offset,
                )
            )


def batch_records(path: str, batch: BatchInfo) -> list[Record]:
    """Every record of one batch, a control batch's marker included (``pylog dump
    --deep-iteration``); ``CorruptBatchError`` when it does not decode."""
    with open(path, "rb") as f:
        data = os.pread(f.fileno(), batch.header.size_bytes, batch.position)
    if len(data) < batch.header.size_bytes:
        raise CorruptBatchError("the batch runs past the end of the file", path, batch.position)
    if not batch.header.is_control:
        return decode_records(data)
    # the engines' decoders drop control records (consumers never see them); dump shows them
    if not batch.crc_valid:
        raise CorruptBatchError("CRC-32C mismatch", path, batch.position)
    header = batch.header
    try:
        return decode_records_area(records_area(data, 0, header), header, check_leftover=header.codec_id == 0)
    except Malformed as e:
        raise CorruptBatchError(str(e.args[0]), path, batch.position, e.kind) from None


# ---------------------------------------------------------------------------------------------
# Index files


@dataclass
class IndexEntries:
    """The whole entries of an index file, and how many bytes follow the last whole one."""

    path: str
    base: int | None
    entries: list[tuple[int, int]]
    trailing_bytes: int
    exists: bool = True


def read_offset_index(path: str) -> IndexEntries:
    """``(offset, position)`` per entry of a ``.index`` (absolute offsets)."""
    return _read_entries(path, OFFSET_ENTRY, lambda rel, pos, base: (base + rel, pos))


def read_time_index(path: str) -> IndexEntries:
    """``(timestamp, offset)`` per entry of a ``.timeindex`` (absolute offsets)."""
    return _read_entries(path, TIME_ENTRY, lambda ts, rel, base: (ts, base + rel))


def _read_entries(
    path: str, entry: struct.Struct, make: Callable[[int, int, int], tuple[int, int]]
) -> IndexEntries:
    base = parse_base(os.path.basename(path))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return IndexEntries(path, base, [], 0, exists=False)
    whole = len(data) - len(data) % entry.size
    at = base or 0
    entries = [make(a, b, at) for a, b in entry.iter_unpack(data[:whole])]
    return IndexEntries(path, base, entries, len(data) - whole)


def check_offset_index(index: IndexEntries, scan: LogScan) -> list[Problem]:
    """The ``.index`` against its ``.log``'s bytes: whole entries, strictly increasing offsets
    and positions, and every entry at a batch start whose lastOffset is the entry's offset
    (Kafka's DumpLogSegments index check; our entries are ``(batch.lastOffset, position)``)."""
    path = index.path
    if not index.exists:
        return [
            Problem(
                "missing_index", path, None, "the offset index is missing (the next recovery rebuilds it)"
            )
        ]
    problems = []
    if index.trailing_bytes:
        at = len(index.entries) * OFFSET_ENTRY.size
        problems.append(
            Problem("index_size", path, at, f"{index.trailing_bytes} bytes after the last whole 8-byte entry")
        )
    by_position = {b.position: b for b in scan.batches}
    previous: tuple[int, int] | None = None
    for i, (offset, position) in enumerate(index.entries):
        at = i * OFFSET_ENTRY.size
        batch = by_position.get(position)
        if previous is not None and (offset <= previous[0] or position <= previous[1]):
            why = f"entry ({offset}, {position}) does not follow ({previous[0]}, {previous[1]})"
            problems.append(Problem("index_entry", path, at, why, offset))
        elif index.base is not None and offset < index.base:
            problems.append(
                Problem("index_entry", path, at, f"offset {offset} below the segment base", offset)
            )
        elif batch is None:
            problems.append(
                Problem(
                    "index_entry",
                    path,
                    at,
                    f"position {position} (offset {offset}) is not a batch start",
                    offset,
                )
            )
        elif batch.header.last_offset != offset:
            why = f"offset {offset} at position {position}, where the batch's lastOffset is {batch.header.last_offset}"
            problems.append(Problem("index_entry", path, at, why, offset))
        previous = (offset, position)
    return problems


def check_time_index(index: IndexEntries, scan: LogScan) -> list[Problem]:
    """The ``.timeindex`` against its ``.log``'s bytes: whole entries, strictly increasing in
    both fields, every entry's offset the lastOffset of a batch whose maxTimestamp is the entry's
    timestamp (the batch where that maximum was first seen; Kafka's DumpLogSegments time index
    check), so no entry exceeds the segment's largest timestamp."""
    path = index.path
    if not index.exists:
        return [
            Problem("missing_index", path, None, "the time index is missing (the next recovery rebuilds it)")
        ]
    problems = []
    if index.trailing_bytes:
        at = len(index.entries) * TIME_ENTRY.size
        problems.append(
            Problem(
                "index_size", path, at, f"{index.trailing_bytes} bytes after the last whole 12-byte entry"
            )
        )
    by_last_offset = {b.header.last_offset: b for b in scan.batches}
    largest = max((b.header.max_timestamp for b in scan.batches), default=-1)
    previous: tuple[int, int] | None = None
    for i, (timestamp, offset) in enumerate(index.entries):
        at = i * TIME_ENTRY.size
        batch = by_last_offset.get(offset)
        if previous is not None and (timestamp <= previous[0] or offset <= previous[1]):
            why = f"entry ({timestamp}, {offset}) does not follow ({previous[0]}, {previous[1]})"
            problems.append(Problem("time_index_entry", path, at, why, offset))
        elif timestamp > largest:
            why = f"timestamp {timestamp} above the segment's largest timestamp {largest}"
            problems.append(Problem("time_index_entry", path, at, why, offset))
        elif batch is None:
            problems.append(
                Problem("time_index_entry", path, at, f"offset {offset} is not a batch's last offset", offset)
            )
        elif batch.header.max_timestamp != timestamp:
            why = f"timestamp {timestamp} at offset {offset}, where the batch's maxTimestamp is {batch.header.max_timestamp}"
            problems.append(Problem("time_index_entry", path, at, why, offset))
        previous = (timestamp, offset)
    return problems


def sanity_check(index_path: str, log_size: int, next_offset: int | None) -> str | None:
    """The check a broker (and both engines) run on an index at startup to decide whether to
    rebuild it (Kafka's AbstractIndex.sanityCheck, made strict: pylog/reference/index.py's
    ``sanity_check_file``, the check ``load_indexes`` runs): None when it passes, else why not."""
    base = parse_base(os.path.basename(index_path)) or 0
    time_index = index_path.endswith(TIME_INDEX_SUFFIX)
    try:
        sanity_check_file(index_path, base, log_size, next_offset, time_index=time_index)
    except IndexRefused as refused:
        return str(refused)
    return None
