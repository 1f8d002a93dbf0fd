"""The health rules of a log directory, a partition directory or one segment: what ``pylog
verify`` checks and reports (pylog/cli/verify.py prints it; ``pylog.repair`` fixes what the
engine's recovery fixes).

Per partition directory (docs/partition-log.md "Files in a partition directory"):

- every segment ``{base:020}.log`` walked batch by batch (``pylog.inspect.scan_log``): framing,
  magic, CRC-32C, every record decoded by the engine's decoder (codec, layout, count), header
  rules (``lastOffsetDelta >= 0``, ``count <= lastOffsetDelta + 1``), offsets never going back
  across batches and segments, no batch below its segment's base (the file name), no relative
  offset past int32;
- a torn tail (an incomplete batch at the end of a ``.log``) is damage a crash left;
- the ``.index`` / ``.timeindex`` of every segment present and consistent with the bytes
  (``pylog.inspect.check_offset_index`` / ``check_time_index``);
- the checkpoints (``recovery-point-offset-checkpoint``, ``log-start-offset-checkpoint``,
  ``cleaner-offset-checkpoint``) parse, and their offsets lie in ``[first segment base, end]``;
- leftovers of interrupted operations (``.deleted``, ``.cleaned``, ``.swap``, an index without
  its ``.log``) are warnings: not damage, the next open finishes them.

Repairability (``Problem.repairable``) follows the engine's recovery, which is Kafka's
(storage/src/main/java/org/apache/kafka/storage/internals/log/LogLoader.java, LogSegment.recover;
pylog/reference/recovery.py): recovery rescans from the segment holding the recovery point and
cuts the log at the first batch that does not frame, fails its CRC or does not fit after the one
before, deleting every later segment; it rebuilds missing or refused indexes. So damage it would
cut is repairable only when the cut lies at or above the recovery point (the unsynced tail,
which a crash may tear); below it the data was synced whole, and a cut would destroy acknowledged,
durable records: reported, never repaired. Damage recovery does not look at (a well-framed,
CRC-valid batch whose records do not decode) is not repairable either.

Thread-safety: pure functions over files read without locks; a directory being written while it
is verified may show a batch half-written at its tail.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pylog.inspect import (
    LogScan,
    Problem,
    check_offset_index,
    check_time_index,
    read_offset_index,
    read_time_index,
    scan_log,
)
from pylog.reference.checkpoint import (
    CLEAN_SHUTDOWN_FILE,
    CLEANER_OFFSET_FILE,
    LOG_START_OFFSET_FILE,
    RECOVERY_POINT_FILE,
    read_offset_checkpoint,
)
from pylog.reference.recovery import list_segment_bases
from pylog.reference.segment import segment_paths
from pylog.reference.segments import (
    CLEANED_SUFFIX,
    DELETED_SUFFIX,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    SWAP_SUFFIX,
    TIME_INDEX_SUFFIX,
    parse_base,
)

#: damage the engine's recovery cuts the log at (framing, CRC, offsets that do not fit)
CUT_KINDS = frozenset({"torn_tail", "framing", "magic", "crc", "offset_order", "segment_base"})
#: problems recovery fixes without cutting data (indexes rebuilt, leftovers finished)
REBUILT_KINDS = frozenset(
    {"missing_index", "index_entry", "index_size", "time_index_entry", "leftover", "orphan_index"}
)
CHECKPOINT_FILES = (RECOVERY_POINT_FILE, LOG_START_OFFSET_FILE, CLEANER_OFFSET_FILE)
_PARTITION_DIR = re.compile(r"^.+-[0-9]+$", re.DOTALL)


@dataclass
class PartitionHealth:
    """What verifying one partition directory found."""

    path: str
    segments: int = 0
    batches: int = 0
    records: int = 0
    bytes: int = 0
    #: the first segment's base (None: no segment)
    start_offset: int | None = None
    #: the next offset after the last framed batch (the segment base when it has none)
    end_offset: int | None = None
    recovery_point: int | None = None
    clean_shutdown: bool = False
    problems: list[Problem] = field(default_factory=list)
    scans: dict[int, LogScan] = field(default_factory=dict, repr=False)

    @property
    def healthy(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    @property
    def repairable(self) -> bool:
        """Whether running the engine's recovery is safe and may help: some error it fixes, and
        no damage it would cut below the recovery point (``unsafe_to_recover``)."""
        return self.unsafe_to_recover() is None and any(p.repairable for p in self.problems)

    def unsafe_to_recover(self) -> Problem | None:
        """The first damage a recovery would cut at but must not (synced data, below the recovery
        point, in a segment recovery scans): None when recovery is safe."""
        point = self.recovery_point or 0
        bases = sorted(self.scans)
        floor = bases[max(bisect.bisect_right(bases, point) - 1, 0)] if bases else 0
        for problem in self.problems:
            if problem.kind in CUT_KINDS and not problem.repairable:
                base = parse_base(os.path.basename(problem.path))
                if base is not None and base >= floor:
                    return problem
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "healthy": self.healthy,
            "segments": self.segments,
            "batches": self.batches,
            "records": self.records,
            "bytes": self.bytes,
            "start_offset": self.start_offset,
            "end_offset": self.end_offset,
            "recovery_point": self.recovery_point,
            "clean_shutdown": self.clean_shutdown,
        }


def is_partition_dir(path: str) -> bool:
    """A directory holding segment files or checkpoints."""
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return any(n.endswith(LOG_SUFFIX) and parse_base(n) is not None for n in names) or any(
        n in CHECKPOINT_FILES for n in names
    )


def partition_dirs(log_dir: str) -> list[str]:
    """The partition directories (``<topic>-<n>``) of a log directory, sorted; a directory being
    deleted (``-delete``) is not one."""
    found = []
    for name in sorted(os.listdir(log_dir)):
        path = os.path.join(log_dir, name)
        if _PARTITION_DIR.match(name) and os.path.isdir(path) and is_partition_dir(path):
            found.append(path)
    return found


def segment_bytes(paths: list[str]) -> int:
    """Bytes of the ``.log`` files under ``paths`` (partition directories or one ``.log``), for
    a progress bar."""
    total = 0
    for path in paths:
        if os.path.isfile(path):
            total += os.path.getsize(path)
            continue
        for base in list_segment_bases(path):
            total += os.path.getsize(segment_paths(path, base)[0])
    return total


def verify_partition(
    dir_path: str, *, only_base: int | None = None, advance: Callable[[float], None] | None = None
) -> PartitionHealth:
    """Check one partition directory (``only_base``: only that segment, with the directory's
    checkpoints for context)."""
    health = PartitionHealth(dir_path)
    problems = health.problems
    bases = list(list_segment_bases(dir_path))
    health.segments = len(bases)
    health.start_offset = bases[0] if bases else None
    health.clean_shutdown = os.path.exists(os.path.join(dir_path, CLEAN_SHUTDOWN_FILE))
    if only_base is None:
        problems.extend(_leftovers(dir_path, set(bases)))
    previous_next: int | None = None
    for i, base in enumerate(bases):
        log_path, index_path, time_index_path = segment_paths(dir_path, base)
        if only_base is not None and base != only_base:
            if base < only_base:  # the offsets of the segments before still bound this one's
                previous_next = _quick_next_offset(log_path, base, previous_next)
            continue
        if previous_next is not None and base < previous_next:
            problems.append(
                Problem(
                    "segment_overlap",
                    log_path,
                    0,
                    f"segment base {base} (its file name) lies below the end {previous_next} of the segment before",
                    base,
                )
            )
        scan = scan_log(log_path, previous_next_offset=previous_next, advance=advance)
        health.scans[base] = scan
        health.batches += len(scan.batches)
        health.records += scan.records
        health.bytes += scan.file_size
        problems.extend(scan.problems)
        problems.extend(check_offset_index(read_offset_index(index_path), scan))
        problems.extend(check_time_index(read_time_index(time_index_path), scan))
        if i < len(bases) - 1 and scan.framed_bytes < scan.file_size:
            for problem in scan.problems:
                if problem.kind == "torn_tail":
                    problem.message += " (in a sealed segment: every later segment depends on it)"
        previous_next = max(
            base, scan.next_offset if scan.next_offset is not None else base, previous_next or 0
        )
    health.end_offset = previous_next if bases else None
    # one segment: its end is not the log's, so only whether the checkpoints parse is checked
    problems.extend(_check_checkpoints(health, ranges=only_base is None))
    _classify(health)
    return health


def _quick_next_offset(log_path: str, base: int, previous_next: int | None) -> int:
    """The next offset of a segment by its framing alone (``only_base``'s context)."""
    scan = scan_log(log_path, previous_next_offset=previous_next, decode=False)
    return max(base, scan.next_offset if scan.next_offset is not None else base, previous_next or 0)


def _leftovers(dir_path: str, bases: set[int]) -> list[Problem]:
    """Warnings: files an interrupted deletion, cleaning or swap left, and index files without
    their ``.log`` (recovery deletes or finishes them; docs/partition-log.md "Recovery")."""
    found = []
    for name in sorted(os.listdir(dir_path)):
        path = os.path.join(dir_path, name)
        if name.endswith((DELETED_SUFFIX, CLEANED_SUFFIX, SWAP_SUFFIX)):
            found.append(
                Problem(
                    "leftover",
                    path,
                    None,
                    "left by an interrupted operation; the next open finishes it",
                    severity="warning",
                )
            )
        elif name.endswith((INDEX_SUFFIX, TIME_INDEX_SUFFIX)) and name.count(".") == 1:
            base = parse_base(name)
            if base is not None and base not in bases:
                found.append(
                    Problem("orphan_index", path, None, "an index without its .log", severity="warning")
                )
    return found


def _check_checkpoints(health: PartitionHealth, *, ranges: bool) -> list[Problem]:
    """Each checkpoint present parses (Kafka's text checkpoint, pylog/reference/checkpoint.py)
    and its offset lies in ``[first segment base, end offset]``; the recovery point is noted."""
    found = []
    start, end = health.start_offset, health.end_offset
    for name in CHECKPOINT_FILES:
        path = os.path.join(health.path, name)
        if not os.path.exists(path):
            continue
        offset = read_offset_checkpoint(health.path, name)
        if offset is None:
            found.append(
                Problem(
                    "checkpoint",
                    path,
                    0,
                    "does not parse as a checkpoint (version, count, 'topic partition offset')",
                )
            )
            continue
        if name == RECOVERY_POINT_FILE:
            health.recovery_point = offset
        if not ranges:
            continue
        if end is not None and offset > end:
            found.append(
                Problem("checkpoint", path, 0, f"offset {offset} lies past the log end {end}", offset)
            )
        elif start is not None and offset < start and name != LOG_START_OFFSET_FILE:
            # a log start below the first segment is harmless (the first base wins); the others
            # name offsets that should exist
            found.append(
                Problem(
                    "checkpoint",
                    path,
                    0,
                    f"offset {offset} lies below the first segment base {start}",
                    offset,
                    "warning",
                )
            )
    return found


def _classify(health: PartitionHealth) -> None:
    """Set ``repairable`` on every problem (module docstring)."""
    point = health.recovery_point or 0
    for problem in health.problems:
        if problem.kind in REBUILT_KINDS:
            problem.repairable = True
        elif problem.kind == "checkpoint":
            # a clean close rewrites the recovery point; the other two are not rewritten by an open
            problem.repairable = os.path.basename(problem.path) == RECOVERY_POINT_FILE
        elif problem.kind in CUT_KINDS:
            cut = _cut_offset(health, problem)
            problem.repairable = cut is not None and cut >= point
            if not problem.repairable:
                problem.message += f"; not repairable: below the recovery point {point} (synced data, which recovery never cuts)"
        else:
            problem.repairable = False
            problem.message += "; not repairable: recovery checks framing and CRC only"


def _cut_offset(health: PartitionHealth, problem: Problem) -> int | None:
    """Where recovery would cut for this problem: the next offset of the last good batch before
    it in its segment (the segment base when there is none)."""
    base = parse_base(os.path.basename(problem.path))
    if base is None or base not in health.scans:
        return None
    scan = health.scans[base]
    cut = base
    for batch in scan.batches:
        if problem.position is not None and batch.position >= problem.position:
            break
        cut = max(cut, batch.header.next_offset)
    return cut


@dataclass
class Report:
    """What ``verify_path`` found under one PATH."""

    path: str
    kind: str  # "log_dir" | "partition" | "segment"
    partitions: list[PartitionHealth]

    @property
    def problems(self) -> list[Problem]:
        return [p for health in self.partitions for p in health.problems]

    @property
    def healthy(self) -> bool:
        return all(h.healthy for h in self.partitions)


def classify_path(path: str) -> tuple[str, list[str], int | None]:
    """(kind, partition directories, the one segment's base or None) of a PATH; ``ValueError``
    when it is none of a segment file, a partition directory or a log directory."""
    if os.path.isfile(path):
        name = os.path.basename(path)
        base = parse_base(name)
        if base is None or not name.endswith((LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX)):
            raise ValueError(f"{path} is not a segment file ({{base:020}}.log, .index or .timeindex)")
        return "segment", [os.path.dirname(os.path.abspath(path))], base
    if not os.path.isdir(path):
        raise ValueError(f"no such file or directory: {path}")
    if is_partition_dir(path):
        return "partition", [path], None
    found = partition_dirs(path)
    if found or os.path.exists(os.path.join(path, "catalog.db")):
        return "log_dir", found, None
    raise ValueError(f"{path} is neither a log directory, a partition directory nor a segment file")


def verify_path(path: str, *, advance: Callable[[float], None] | None = None) -> Report:
    """Verify what ``path`` names (``classify_path``)."""
    kind, dirs, only_base = classify_path(path)
    partitions = [verify_partition(d, only_base=only_base, advance=advance) for d in dirs]
    return Report(path, kind, partitions)
