"""The partition-log contract both engines implement: shared types and argument checks.

A leaf module (it imports nothing of the engines), so ``pylog.engine`` (which chooses and opens an
engine), ``pylog.native`` and ``pylog.reference`` all import from here without an import circle.
The behaviour contract is docs/partition-log.md.

- ``Record``: one record as a consumer sees it; ``Columns``: records as Arrow-layout columns.
- ``PartitionLog``: the protocol of one topic-partition directory (thread-safe; several processes
  may open one directory).
- ``RetentionResult`` / ``CleanResult`` / ``Cleanable``: what ``apply_retention``, ``compact`` and
  ``cleanable`` report (docs/partition-log.md, "Retention" and "Compaction").
- ``check_record_range`` / ``timestamps_from_array`` / ``as_int``: argument checks shared by both
  engines, so both raise the same error for the same bad argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

import numpy as np

from pylog import arrow
from pylog.config import LogConfig
from pylog.errors import InvalidRecordError, OffsetOutOfRangeError

if TYPE_CHECKING:  # collections.abc.Buffer is 3.12+; the typing_extensions stub serves 3.11
    from typing_extensions import Buffer

INT64_MAX = 2**63 - 1

BytesLike = bytes | bytearray | memoryview
Header = tuple[str, bytes | None]


class Record(NamedTuple):
    """One record as a consumer sees it (kafka-python's ConsumerRecord fields, minus topic)."""

    offset: int
    timestamp: int
    timestamp_type: int  # 0 CreateTime, 1 LogAppendTime
    key: bytes | None
    value: bytes | None
    headers: list[Header]


class Columns(NamedTuple):
    """Records as columns (Arrow's binary layout for keys and values); no object per record.

    Also an Arrow data source (the PyCapsule interface, ``pylog.arrow``), zero-copy, as
    ``struct<offset: int64, timestamp: timestamp[ms, tz=UTC], key: large_binary, value: large_binary>``:
    ``pyarrow.array(columns)``, ``pyarrow.RecordBatchReader.from_stream(columns)``; consumers that
    take any tuple for a list of columns (``pyarrow.table``, ``polars.DataFrame``) get
    ``columns.as_arrow()``.
    """

    offsets: np.ndarray  # int64[n]
    timestamps: np.ndarray  # int64[n]
    keys: np.ndarray  # uint8, all keys back to back
    key_offsets: np.ndarray  # int64[n + 1]; key i is keys[key_offsets[i]:key_offsets[i + 1]]
    key_null: np.ndarray  # bool[n]
    values: np.ndarray  # uint8
    value_offsets: np.ndarray  # int64[n + 1]
    value_null: np.ndarray  # bool[n]

    @property
    def num_records(self) -> int:
        """How many records the columns hold. (``len(columns)`` is 8, as for any 8-field named
        tuple; overriding it broke ``_replace`` and ``_make``.)"""
        return len(self.offsets)

    def key(self, i: int) -> bytes | None:
        return (
            None if self.key_null[i] else self.keys[self.key_offsets[i] : self.key_offsets[i + 1]].tobytes()
        )

    def value(self, i: int) -> bytes | None:
        if self.value_null[i]:
            return None
        return self.values[self.value_offsets[i] : self.value_offsets[i + 1]].tobytes()

    def as_arrow(self) -> arrow.ArrowColumns:
        """The columns as an Arrow source that is not a tuple, for ``pyarrow.table``,
        ``polars.DataFrame`` and others that read a tuple as a list of columns."""
        return arrow.ArrowColumns(self)

    def __arrow_c_array__(self, requested_schema: object | None = None) -> tuple[object, object]:
        """Arrow PyCapsule interface: the columns as one struct array (zero-copy; ``pylog.arrow``)."""
        return arrow.export_array(self, requested_schema)

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        """Arrow PyCapsule interface: a stream of one record batch holding the columns (zero-copy)."""
        return arrow.export_stream(self, requested_schema)


#: ``skipped`` of a ``compact(wait=False)`` / ``apply_retention(wait=False)`` that found the
#: partition's cleaner lock held (both engines say it in these words)
CLEANER_BUSY = "another cleaner holds the lock"


class RetentionResult(NamedTuple):
    """What one ``apply_retention`` / ``delete_before`` run removed."""

    #: whole segments deleted (renamed ``.deleted``, then unlinked)
    deleted_segments: int
    #: their ``.log`` bytes
    deleted_bytes: int
    #: the log start offset afterwards
    start_offset: int
    #: why nothing was looked at (``apply_retention(wait=False)`` found another cleaner holding
    #: the partition's cleaner lock), or None
    skipped: str | None = None


class Cleanable(NamedTuple):
    """The cleaner's view of a partition now (Kafka's LogCleanerManager ``cleanableOffsets`` and
    ``LogToClean``); ``due`` is the background cleaner's rule, explicit ``compact()`` ignores it."""

    #: ``cleaner-offset-checkpoint``, reset to the log start when outside [start, end]
    first_dirty_offset: int
    #: min(active segment base, the first segment younger than min.compaction.lag.ms), >= first dirty
    first_uncleanable_offset: int
    #: bytes of the segments with base < first dirty
    clean_bytes: int
    #: bytes of the segments from the one holding first dirty up to first uncleanable
    cleanable_bytes: int
    #: cleanable / (clean + cleanable), 0.0 when both are 0
    dirty_ratio: float
    #: a dirty segment's first batch is older than max.compaction.lag.ms
    needs_compaction_now: bool
    #: cleanable_bytes > 0 and (dirty_ratio > min.cleanable.dirty.ratio or needs_compaction_now)
    due: bool


class CleanResult(NamedTuple):
    """What one ``compact()`` call did, summed over its passes."""

    #: cleaning passes run (one per offset map filled)
    passes: int
    #: segments read and replaced
    segments_cleaned: int
    #: ``.log`` bytes read by the passes (the input; MB/s figures are of this)
    bytes_read: int
    #: ``.log`` bytes of the cleaned segments written
    bytes_written: int
    #: records (not control records) in the rewritten segments before / after
    records_read: int
    records_kept: int
    #: tombstones dropped because their batch's delete horizon had passed
    tombstones_removed: int
    #: ``cleaner-offset-checkpoint`` afterwards: everything below it is clean
    clean_offset: int
    #: why nothing was done (``cleanup.policy`` without compact, nothing cleanable, not due,
    #: another process cleaning, cancelled), or None
    skipped: str | None = None


@runtime_checkable
class PartitionLog(Protocol):
    """One topic-partition directory. Thread-safe; several processes may open the same directory."""

    @property
    def path(self) -> str: ...
    @property
    def config(self) -> LogConfig: ...
    @property
    def start_offset(self) -> int: ...
    @property
    def end_offset(self) -> int: ...
    @property
    def closed(self) -> bool: ...

    def append(
        self,
        values: Sequence[BytesLike | None],
        *,
        keys: Sequence[BytesLike | None] | None = None,
        headers: Sequence[Iterable[Header]] | None = None,
        timestamps_ms: Sequence[int] | np.ndarray | None = None,
        compression: str | None = None,
    ) -> int: ...
    def append_raw(self, batch: Buffer) -> int: ...
    def read(self, offset: int, max_bytes: int) -> memoryview: ...
    def records(self, start_offset: int | None = None, end_offset: int | None = None) -> Iterator[Record]: ...
    def read_columns(self, offset: int, max_records: int) -> Columns: ...
    def offset_for_timestamp(self, ts_ms: int) -> int | None: ...
    def roll(self) -> None: ...
    def flush(self) -> None: ...
    def sync(self) -> None: ...
    def wait_for(self, offset: int, timeout_ms: int) -> bool: ...
    def close(self) -> None: ...
    # retention and compaction (docs/partition-log.md, "Retention" and "Compaction")
    def delete_before(self, offset: int) -> RetentionResult: ...
    def apply_retention(self, now_ms: int | None = None, *, wait: bool = True) -> RetentionResult: ...
    def cleanable(self, now_ms: int | None = None) -> Cleanable: ...
    def compact(
        self,
        now_ms: int | None = None,
        *,
        map_bytes: int | None = None,
        force: bool = True,
        wait: bool = True,
        cancel: object | None = None,
    ) -> CleanResult: ...
    def __enter__(self) -> PartitionLog: ...
    def __exit__(self, *exc: object) -> None: ...


def check_record_range(
    start_offset: int | None, end_offset: int | None, log_start: int, log_end: int
) -> tuple[int, int]:
    """Resolve ``records(start_offset, end_offset)`` bounds (docs/partition-log.md, Reading)."""
    start = log_start if start_offset is None else as_int(start_offset, "start_offset")
    end = log_end if end_offset is None else min(as_int(end_offset, "end_offset"), log_end)
    if not log_start <= start <= log_end:
        raise OffsetOutOfRangeError(f"offset {start} is outside the log [{log_start}, {log_end}]")
    if end < start:
        raise OffsetOutOfRangeError(f"end offset {end_offset} is below start offset {start}")
    return start, end


def as_int(value: object, name: str) -> int:
    """An integer argument (a Python or numpy int, not a bool), else ``TypeError`` naming it: the
    check of every int argument of the Python engine layers (the native methods bound directly,
    such as ``read``, make the same check in Rust)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}")
    return int(value)


def timestamps_from_array(timestamps_ms: np.ndarray) -> list:
    """``append(timestamps_ms=array)`` for both engines: a 1-D integer array within [0, 2**63-1]
    (vectorized check) becomes a list of ints; an object array a list of its items (checked per
    item later); anything else raises ``InvalidRecordError``."""
    if timestamps_ms.ndim != 1:
        raise InvalidRecordError("timestamps_ms must be a one-dimensional array")
    kind = timestamps_ms.dtype.kind
    if kind in "iu":
        if timestamps_ms.size and (
            (kind == "i" and timestamps_ms.min() < 0) or (kind == "u" and timestamps_ms.max() > INT64_MAX)
        ):
            raise InvalidRecordError("timestamps_ms outside [0, 2**63-1]")
        return timestamps_ms.tolist()
    if kind == "O":
        return list(timestamps_ms)
    raise InvalidRecordError(f"timestamps_ms must hold integers, not {timestamps_ms.dtype}")
