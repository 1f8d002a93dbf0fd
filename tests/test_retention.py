"""Retention and the log start offset on the engine seam (issue 7; docs/partition-log.md
"Retention"; Kafka's UnifiedLog deleteOldSegments / deleteRecordsOnLeader,
core/src/main/scala/kafka/log/UnifiedLog.scala, kafka-log.md section 6).

Both engines through the ``engine`` fixture, with a controllable clock (``now_ms``):

- ``delete_before``: the log start moves inside a segment, is checkpointed in Kafka's
  ``log-start-offset-checkpoint`` format, readers below it get ``OffsetOutOfRangeError``, other
  objects notice it before their next read, the whole segments below it go;
- ``apply_retention`` by size and by time (each segment's largest timestamp), oldest first,
  whole segments only, stopping at the first that fails, never the active segment, only the
  log-start pass for a compact-only policy;
- a reader holding a view of a deleted segment keeps valid bytes; the cleaner lock held
  elsewhere defers the deletion, not the new start; a damaged checkpoint is no checkpoint.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

import pytest
from compaction_child import TS, fill_keyed, triples
from helpers import parse_batches, segment_bases, segment_name

from pylog.engine import RetentionResult, open_partition
from pylog.errors import OffsetOutOfRangeError
from pylog.partition import CLEANER_BUSY

CONFIG = {"segment.bytes": 1500, "index.interval.bytes": 200}
CHECKPOINT = "log-start-offset-checkpoint"


def sizes(path: Path) -> dict[int, int]:
    return {b: (path / segment_name(b)).stat().st_size for b in segment_bases(path)}


def filled(open_log, path: Path, batches: int = 40, **config) -> object:
    log = open_log(path, config={**CONFIG, **config})
    fill_keyed(log, batches, keys=1000)
    assert len(segment_bases(path)) >= 5
    return log


def checkpointed_start(path: Path) -> str:
    lines = (path / CHECKPOINT).read_text().splitlines()
    assert lines[:2] == ["0", "1"] and len(lines) == 3, lines
    return lines[2]


# ----------------------------------------------------------------------------------------------
# delete_before (Kafka's DeleteRecords)


def test_delete_before_moves_the_start_inside_a_segment(open_log, engine, other_engine, tmp_path):
    path = tmp_path / "records-5"
    log = filled(open_log, path)
    other = open_partition(path, engine=other_engine, config=CONFIG)
    try:
        bases = segment_bases(path)
        before = list(log.records())
        end = log.end_offset
        target = bases[1] + 3
        deleted_size = sizes(path)[bases[0]]
        (path / segment_name(bases[0], ".snapshot")).write_bytes(b"")  # Kafka's per-segment extras
        (path / segment_name(bases[0], ".txnindex")).write_bytes(b"")

        result = log.delete_before(target)

        assert result == RetentionResult(1, deleted_size, target)
        assert segment_bases(path) == bases[1:]
        assert not [n for n in os.listdir(path) if n.startswith(segment_name(bases[0], ""))]
        assert checkpointed_start(path) == f"records 5 {target}"
        for reader in (log, other):  # this object and another one (the other engine) alike
            assert reader.start_offset == target and reader.end_offset == end
            assert triples(reader.records()) == triples(r for r in before if r.offset >= target)
            for below in (target - 1, bases[0]):
                with pytest.raises(OffsetOutOfRangeError):
                    reader.read(below, 100)
                with pytest.raises(OffsetOutOfRangeError):
                    list(reader.records(below))
                with pytest.raises(OffsetOutOfRangeError):
                    reader.read_columns(below, 10)
            batch = parse_batches(bytes(reader.read(target, 1)), strict=False)[0]
            assert batch.base_offset <= target <= batch.last_offset, "read() returns the whole batch"
            cols = reader.read_columns(target, 3)
            assert [int(o) for o in cols.offsets] == [target, target + 1, target + 2]
            assert reader.offset_for_timestamp(TS) == target, "answers only offsets >= start"
        assert log.delete_before(target) == RetentionResult(0, 0, target), "at the start: a no-op"
    finally:
        other.close()
    log.close()
    with open_partition(path, engine=engine, config=CONFIG) as again:
        assert again.start_offset == target
    os.remove(path / ".kafka_cleanshutdown")  # an unclean open (recovery) keeps it too
    with open_partition(path, engine=other_engine, config=CONFIG) as again:
        assert again.start_offset == target
        assert again.append([b"more"], keys=[b"k"], timestamps_ms=[TS]) == end


def test_delete_before_out_of_range_is_refused_and_the_end_is_allowed(open_log, tmp_path):
    path = tmp_path / "range-0"
    log = filled(open_log, path)
    end = log.end_offset
    assert log.delete_before(0) == RetentionResult(0, 0, 0)
    assert not (path / CHECKPOINT).exists(), "a no-op writes nothing"
    for bad in (end + 1, end + 1000, -1):
        with pytest.raises(OffsetOutOfRangeError):
            log.delete_before(bad)
    assert log.start_offset == 0
    log.delete_before(10)
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_before(9)  # below the start: said, not silently accepted (deviation from Kafka)
    bases = segment_bases(path)
    result = log.delete_before(end)
    assert result.start_offset == end and log.start_offset == end and log.end_offset == end
    assert result.deleted_segments == len(bases) - 1, "every sealed segment, never the active one"
    assert segment_bases(path) == bases[-1:]
    assert list(log.records()) == []
    assert log.append([b"next"], timestamps_ms=[TS]) == end
    assert [r.offset for r in log.records()] == [end]


def test_a_busy_cleaner_lock_defers_the_deletion_not_the_new_start(open_log, tmp_path):
    path = tmp_path / "busy-0"
    log = filled(open_log, path)
    bases = segment_bases(path)
    fd = os.open(path / ".pylog.cleaner", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another cleaner holds it (a second open file description)
        result = log.delete_before(bases[3])
        assert result == RetentionResult(0, 0, bases[3])
        assert log.start_offset == bases[3] and segment_bases(path) == bases
        # the background cleaner's call: skipped while busy, nothing deleted, said so
        skipped = log.apply_retention(TS, wait=False)
        assert skipped == RetentionResult(0, 0, bases[3], CLEANER_BUSY)
        assert segment_bases(path) == bases
    finally:
        os.close(fd)
    size = sum(sizes(path)[b] for b in bases[:3])
    assert log.apply_retention(TS) == RetentionResult(3, size, bases[3]), "the log-start pass"
    assert segment_bases(path) == bases[3:]


# ----------------------------------------------------------------------------------------------
# apply_retention


@pytest.mark.parametrize("policy", ["delete", "compact,delete"])
def test_size_retention_deletes_whole_segments_oldest_first(open_log, tmp_path, policy):
    path = tmp_path / "size-0"
    log = filled(open_log, path, 60, **{"retention.bytes": 4000, "cleanup.policy": policy})
    before = sizes(path)
    bases = sorted(before)
    diff = sum(before.values()) - 4000  # the active segment counts in the total
    want = []
    for b in bases[:-1]:
        if diff - before[b] < 0:
            break
        want.append(b)
        diff -= before[b]
    assert 0 < len(want) < len(bases) - 1
    records = list(log.records())
    result = log.apply_retention(TS)
    assert result == RetentionResult(len(want), sum(before[b] for b in want), bases[len(want)])
    assert segment_bases(path) == bases[len(want) :]
    assert log.start_offset == bases[len(want)]
    assert triples(log.records()) == triples(r for r in records if r.offset >= bases[len(want)])
    assert checkpointed_start(path).endswith(f" {bases[len(want)]}")
    assert sum(sizes(path).values()) - 4000 < sizes(path)[bases[len(want)]], "within one segment"
    assert log.apply_retention(TS) == RetentionResult(0, 0, bases[len(want)]), "nothing more"


def segment_max_ts(log, path: Path) -> dict[int, int]:
    bases = segment_bases(path)
    out = {}
    for i, b in enumerate(bases):
        stop = bases[i + 1] if i + 1 < len(bases) else log.end_offset
        out[b] = max(r.timestamp for r in log.records(b, stop))
    return out


def test_time_retention_uses_each_segments_largest_timestamp_and_stops_at_the_first_young_one(
    open_log, tmp_path, caplog
):
    path = tmp_path / "time-0"
    log = open_log(path, config={**CONFIG, "retention.ms": 1000})
    for i in range(40):  # 100 ms of record time per batch
        log.append([b"x" * 60] * 4, timestamps_ms=[TS + 100 * i + j for j in range(4)])
    largest = segment_max_ts(log, path)
    bases = sorted(largest)
    cut = bases[3]
    now = largest[bases[2]] + 1001  # segments 0..2 are older than retention.ms, 3 is not
    assert not now - largest[cut] > 1000
    with caplog.at_level(logging.INFO, logger="pylog"):
        result = log.apply_retention(now)
    assert result.deleted_segments == 3 and result.start_offset == cut
    assert segment_bases(path) == bases[3:]
    lines = [r.getMessage() for r in caplog.records if r.name == "pylog.retention"]
    assert len(lines) == 1 and log.path in lines[0], lines
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pylog"):
        assert log.apply_retention(now).deleted_segments == 0
    assert not [r for r in caplog.records if r.name == "pylog.retention"], "only runs that deleted"

    # everything old: every sealed segment goes, never the active one
    result = log.apply_retention(TS + 10**9)
    assert result.deleted_segments == len(bases) - 4
    assert segment_bases(path) == bases[-1:] and log.start_offset == bases[-1]
    assert [r.offset for r in log.records()] == list(range(bases[-1], log.end_offset))


def test_a_future_timestamp_pins_its_segment_and_every_later_one(open_log, tmp_path):
    path = tmp_path / "future-0"
    log = open_log(path, config={**CONFIG, "retention.ms": 1000})
    for i in range(40):
        ts = TS + 10**9 if i == 12 else TS + i
        log.append([b"y" * 60] * 4, timestamps_ms=[ts] * 4)
    bases = segment_bases(path)
    pinned = max(b for b in bases if b <= 12 * 4)
    assert 0 < pinned < bases[-2]
    result = log.apply_retention(TS + 10**6)
    assert result.start_offset == pinned and segment_bases(path) == [b for b in bases if b >= pinned]


def test_compact_only_policy_runs_only_the_log_start_pass(open_log, tmp_path):
    path = tmp_path / "compact-0"
    log = filled(open_log, path, **{"cleanup.policy": "compact", "retention.bytes": 0, "retention.ms": 0})
    bases = segment_bases(path)
    assert log.apply_retention(TS + 10**9) == RetentionResult(0, 0, 0)
    assert segment_bases(path) == bases
    log.delete_before(bases[2] + 1)  # the log-start rule still applies
    assert segment_bases(path) == bases[2:]


def test_retention_minus_one_keeps_everything(open_log, tmp_path):
    path = tmp_path / "keep-0"
    log = filled(open_log, path, **{"retention.bytes": -1, "retention.ms": -1})
    bases = segment_bases(path)
    assert log.apply_retention(TS + 10**12) == RetentionResult(0, 0, 0)
    assert segment_bases(path) == bases


def test_a_reader_holding_a_deleted_segment_keeps_a_valid_view(engine, other_engine, tmp_path):
    path = tmp_path / "view-0"
    config = {**CONFIG, "retention.bytes": 0}
    writer = open_partition(path, engine=engine, config=config)
    reader = open_partition(path, engine=other_engine, config=config)
    try:
        fill_keyed(writer, 40, keys=1000)
        view = reader.read(0, 1 << 20)  # the first sealed segment, mapped
        old = bytes(view)
        assert parse_batches(old)[0].base_offset == 0
        result = writer.apply_retention(TS)
        assert result.deleted_segments > 3 and segment_bases(path) == [result.start_offset]
        assert bytes(view) == old, "unlink does not invalidate a mapping"
        assert reader.start_offset == writer.start_offset == segment_bases(path)[0]
        with pytest.raises(OffsetOutOfRangeError):
            reader.read(0, 100)
    finally:
        writer.close()
        reader.close()


# ----------------------------------------------------------------------------------------------
# the checkpoint file


@pytest.mark.parametrize(
    "content, expect",
    [
        ("0\n1\nck 0 7\n", 7),
        ("garbage", 0),
        ("0\n1\nck 0 x\n", 0),
        ("", 0),
        ("0\n1\nck 0 99999\n", "end"),  # above the end: clamped to the end
    ],
)
def test_log_start_checkpoint_is_read_by_kafkas_rules(engine, tmp_path, content, expect):
    path = tmp_path / "ck-0"
    with open_partition(path, engine=engine, config=CONFIG) as log:
        fill_keyed(log, 10, keys=1000)
        end = log.end_offset
    (path / CHECKPOINT).write_text(content)
    with open_partition(path, engine=engine, config=CONFIG) as log:
        want = end if expect == "end" else expect
        assert log.start_offset == want
        assert [r.offset for r in log.records()] == list(range(want, end))
