"""``pylog verify --repair``: the engine's own crash recovery, applied on purpose, and an account of
what it cut.

Repairing a partition = leaving it as a crash would (no ``.kafka_cleanshutdown`` marker), deleting
the index files ``pylog verify`` found wrong (they are derived data; recovery rebuilds missing
ones: docs/partition-log.md "Recovery"), then opening it with the engine as the first opener and
closing it cleanly. Recovery (pylog/reference/recovery.py, native/src/recovery.rs; Kafka's
storage/src/main/java/org/apache/kafka/storage/internals/log/LogLoader.java) rescans from the
segment holding the recovery point, cuts at the first torn or corrupt batch and deletes the
segments after it; the clean close writes the recovery point and the marker.

A partition is repaired only when ``PartitionHealth.repairable``: never when recovery would cut
below the recovery point (synced data; ``pylog.verification`` says why), and never while another
process has it open (it would not be the first opener, so no recovery would run; and it could be
writing). Nothing else is changed: no byte of a ``.log`` is written here, only by the engine.

Thread-safety: one call at a time per directory; no process may open it meanwhile.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from pylog.engine import open_partition
from pylog.errors import PylogError
from pylog.reference.checkpoint import CLEAN_SHUTDOWN_FILE, topic_partition
from pylog.reference.lock import OPEN_LOCK_FILE
from pylog.reference.segment import segment_paths
from pylog.verification import PartitionHealth

INDEX_KINDS = frozenset({"index_entry", "index_size", "time_index_entry"})


@dataclass
class RepairResult:
    """What repairing one partition did."""

    path: str
    repaired: bool
    reason: str = ""
    bytes_cut: int = 0
    end_offset_before: int | None = None
    end_offset_after: int | None = None
    records_removed: int = 0
    segments_deleted: list[str] = field(default_factory=list)
    indexes_rebuilt: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        removed = None
        before, after = self.end_offset_before, self.end_offset_after
        if before is not None and after is not None and after < before:
            removed = [self.end_offset_after, self.end_offset_before]
        return {
            "path": self.path,
            "repaired": self.repaired,
            "reason": self.reason,
            "bytes_cut": self.bytes_cut,
            "end_offset_before": self.end_offset_before,
            "end_offset_after": self.end_offset_after,
            "offsets_removed": removed,
            "records_removed": self.records_removed,
            "segments_deleted": self.segments_deleted,
            "indexes_rebuilt": self.indexes_rebuilt,
        }


def topic_config(partition_dir: str) -> dict[str, Any]:
    """The topic's config overrides from the log directory's catalog (``{}`` outside a log
    directory): recovery rebuilds indexes with the topic's ``index.interval.bytes``."""
    catalog = os.path.join(os.path.dirname(os.path.abspath(partition_dir)), "catalog.db")
    if not os.path.exists(catalog):
        return {}
    topic, _partition = topic_partition(partition_dir)
    try:
        with contextlib.closing(sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT config FROM topics WHERE name = ?", (topic,)).fetchone()
    except sqlite3.Error:
        return {}
    if row is None:
        return {}
    try:
        config = json.loads(row[0])
    except ValueError:
        return {}
    return config if isinstance(config, dict) else {}


def open_elsewhere(dir_path: str) -> bool:
    """Whether another process has the partition open (it holds ``.pylog.open`` shared)."""
    path = os.path.join(dir_path, OPEN_LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the lock we may have taken
    return False


def repair_partition(
    health: PartitionHealth, *, engine: str | None = None, config: dict[str, Any] | None = None
) -> RepairResult:
    """Apply the engine's recovery to the partition ``health`` describes (module docstring);
    ``config`` (Kafka's names) goes over the topic's settings from the catalog."""
    path = health.path
    result = RepairResult(path, repaired=False, end_offset_before=health.end_offset)
    if health.healthy:
        result.reason = "healthy: nothing to repair"
        return result
    unsafe = health.unsafe_to_recover()
    if unsafe is not None:
        result.reason = (
            f"not repaired: recovery would cut {unsafe.path} at byte {unsafe.position}, "
            f"below the recovery point {health.recovery_point or 0} (synced data)"
        )
        return result
    if not any(p.repairable for p in health.problems if p.severity == "error"):
        first = next(p for p in health.problems if p.severity == "error")
        result.reason = f"not repaired: {first.kind} at {first.path} byte {first.position}: {first.message}"
        return result
    if open_elsewhere(path):
        result.reason = "not repaired: another process has the partition open"
        return result
    sizes_before = {base: scan.file_size for base, scan in health.scans.items()}
    for problem in health.problems:
        if problem.kind in INDEX_KINDS and os.path.exists(problem.path):
            os.unlink(problem.path)
            result.indexes_rebuilt.append(problem.path)
        elif problem.kind == "missing_index":
            result.indexes_rebuilt.append(problem.path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(path, CLEAN_SHUTDOWN_FILE))  # as a crash leaves it
    try:
        log = open_partition(path, engine=engine, config={**topic_config(path), **(config or {})})
    except PylogError as error:
        result.reason = f"not repaired: the engine refused to open it: {type(error).__name__}: {error}"
        return result
    try:
        result.end_offset_after = log.end_offset
    finally:
        log.close()
    result.repaired = True
    for base, before in sizes_before.items():
        log_path = segment_paths(path, base)[0]
        if not os.path.exists(log_path):
            result.segments_deleted.append(log_path)
            result.bytes_cut += before
        else:
            result.bytes_cut += max(before - os.path.getsize(log_path), 0)
    after = result.end_offset_after
    for scan in health.scans.values():
        for batch in scan.batches:
            if after is not None and batch.header.base_offset >= after and batch.crc_valid:
                result.records_removed += batch.header.records_count
    result.reason = "recovered" if result.bytes_cut else "recovered (nothing cut)"
    return result
