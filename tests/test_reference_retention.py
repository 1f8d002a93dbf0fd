"""Retention and the log start offset, rule by rule (docs/partition-log.md "Retention"; ISSUE 7).

Focused tests of each rule for both engines through the ``engine`` fixture; the differential,
crash and property suites live in tests/test_retention.py and friends.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct

import pytest
from helpers import kafka_build_batch

from pylog.errors import InvalidRecordError, OffsetOutOfRangeError
from pylog.partition import RetentionResult

TS = 1_700_000_000_000
DAY = 24 * 3600 * 1000


#: the one place that holds this module back for the native engine (ISSUE7.md: its
#: delete_before / apply_retention come with the native-log branch). The lead deletes this
#: fixture when merging that branch; every test below is written to pass for both engines.
def segment_bases(path) -> list[int]:
    return sorted(int(n[:20]) for n in os.listdir(path) if n.endswith(".log") and n.count(".") == 1)


def segment_sizes(path) -> list[int]:
    return [os.path.getsize(os.path.join(path, f"{b:020d}.log")) for b in segment_bases(path)]


def one_record_segments(log, n: int, *, ts0: int = TS, step: int = 1) -> None:
    """``n`` sealed one-batch segments (rolled after each append), then an empty active one."""
    for i in range(n):
        log.append([b"v" * 40], keys=[b"k%03d" % i], timestamps_ms=[ts0 + i * step])
        log.roll()


def read_checkpoint(path, name: str) -> str:
    with open(os.path.join(path, name)) as f:
        return f.read()


# ---------------------------------------------------------------------------------------------
# delete_before and the log start offset


def test_delete_before_moves_start_inside_a_segment(open_log):
    log = open_log(segment_bytes=1 << 20)
    log.append([b"a", b"b", b"c", b"d"], keys=[b"1", b"2", b"3", b"4"], timestamps_ms=[TS] * 4)
    log.append([b"e", b"f"], keys=[b"5", b"6"], timestamps_ms=[TS + 10, TS + 11])
    result = log.delete_before(2)
    assert result == RetentionResult(0, 0, 2)  # the only segment is the active one
    assert log.start_offset == 2
    assert [r.offset for r in log.records()] == [2, 3, 4, 5]
    assert log.read_columns(2, 10).offsets.tolist() == [2, 3, 4, 5]
    # read() gives whole batches: the one holding the start
    assert int.from_bytes(bytes(log.read(2, 1 << 20)[:8]), "big") == 0
    for bad in (0, 1):
        with pytest.raises(OffsetOutOfRangeError):
            log.read(bad, 100)
        with pytest.raises(OffsetOutOfRangeError):
            list(log.records(bad))
        with pytest.raises(OffsetOutOfRangeError):
            log.read_columns(bad, 10)
    assert log.offset_for_timestamp(0) == 2  # answers only offsets >= start
    assert log.offset_for_timestamp(TS + 5) == 4
    topic_partition = os.path.basename(log.path).rsplit("-", 1)
    assert read_checkpoint(log.path, "log-start-offset-checkpoint") == (
        f"0\n1\n{topic_partition[0]} {topic_partition[1]} 2\n"
    )


def test_delete_before_bounds(open_log):
    log = open_log()
    log.append([b"a", b"b", b"c"], keys=[b"1", b"2", b"3"])
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_before(4)  # past the end
    assert log.delete_before(1).start_offset == 1
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_before(0)  # below the start (deviation: Kafka answers success)
    assert log.delete_before(1) == RetentionResult(0, 0, 1)  # at the start: no-op
    assert log.delete_before(3) == RetentionResult(0, 0, 3)  # the end itself is allowed
    assert log.start_offset == log.end_offset == 3
    assert list(log.records()) == []
    with pytest.raises(TypeError):
        log.delete_before("2")


def test_delete_before_deletes_whole_segments_below(open_log):
    log = open_log()
    one_record_segments(log, 5)
    sizes = segment_sizes(log.path)
    result = log.delete_before(3)
    assert result == RetentionResult(3, sum(sizes[:3]), 3)
    assert segment_bases(log.path) == [3, 4, 5]
    assert not [n for n in os.listdir(log.path) if n.endswith(".deleted")]
    # inside a segment: the segment holding the start stays
    assert log.delete_before(4) == RetentionResult(1, sizes[3], 4)
    assert segment_bases(log.path) == [4, 5]
    assert [r.offset for r in log.records()] == [4]


def test_start_offset_survives_reopen_and_is_seen_by_another_opener(open_log, engine):
    log = open_log(segment_bytes=1 << 20)
    log.append([b"a"] * 6, keys=[b"k"] * 6)
    other = open_log(log.path)
    assert other.start_offset == 0
    list(other.records())  # caches the layout
    log.delete_before(4)
    assert [r.offset for r in other.records()] == [4, 5]
    assert other.start_offset == 4
    with pytest.raises(OffsetOutOfRangeError):
        other.read(3, 100)
    log.close()
    other.close()
    again = open_log(log.path)
    assert again.start_offset == 4
    assert again.end_offset == 6


def test_garbage_log_start_checkpoint_is_no_checkpoint_and_clamped_to_end(open_log, tmp_path):
    path = tmp_path / "t-3"
    log = open_log(path)
    log.append([b"a"] * 3, keys=[b"k"] * 3)
    log.close()
    (path / "log-start-offset-checkpoint").write_text("garbage\n")
    log = open_log(path)
    assert log.start_offset == 0
    log.close()
    (path / "log-start-offset-checkpoint").write_text("0\n1\nt 3 99\n")
    log = open_log(path)
    assert log.start_offset == log.end_offset == 3  # above the end: clamped to the end


def test_iterator_survives_deletion_of_its_segment(open_log):
    log = open_log()
    one_record_segments(log, 4)
    it = log.records()
    assert next(it).offset == 0
    log.delete_before(3)
    # the position now lies below the start: the reader neither fails nor goes back; it may still
    # serve the deleted segments it holds (native: its mappings) before the surviving offsets
    rest = [r.offset for r in it]
    assert rest[-1] == 3 and rest == sorted(set(rest)) and set(rest) <= {1, 2, 3}


# ---------------------------------------------------------------------------------------------
# apply_retention


def test_size_retention_whole_segments_oldest_first(open_log):
    log = open_log(retention_bytes=-1, retention_ms=-1)
    one_record_segments(log, 5)
    log.append([b"w" * 40], keys=[b"active"])
    sizes = segment_sizes(log.path)  # 5 sealed + the active one
    assert log.apply_retention() == RetentionResult(0, 0, 0)  # retention.bytes = -1: off
    log.close()
    # total - retention.bytes = diff; delete while diff - size >= 0
    retain = sum(sizes) - sizes[0] - sizes[1] - 1  # diff = sizes[0] + sizes[1] + 1
    log = open_log(log.path, retention_bytes=retain, retention_ms=-1)
    assert log.apply_retention() == RetentionResult(2, sizes[0] + sizes[1], 2)
    assert segment_bases(log.path) == [2, 3, 4, 5]
    assert log.start_offset == 2
    log.close()
    log = open_log(log.path, retention_bytes=0, retention_ms=-1)
    result = log.apply_retention()
    assert result == RetentionResult(3, sum(sizes[2:5]), 5)
    assert segment_bases(log.path) == [5]  # never the active segment, even over the limit
    assert [r.key for r in log.records()] == [b"active"]


def test_time_retention_stops_at_first_young_segment(open_log):
    # segments with largest timestamps TS, TS+1000, TS+2000, ...; one in the middle far in the future
    log = open_log(retention_ms=DAY, retention_bytes=-1)
    for i, ts in enumerate([TS, TS + 1000, TS + 100 * DAY, TS + 3000]):
        log.append([b"v"], keys=[b"k%d" % i], timestamps_ms=[ts])
        log.roll()
    assert log.apply_retention(now_ms=TS + DAY) == RetentionResult(0, 0, 0)  # not > retention.ms
    sizes = segment_sizes(log.path)
    # the future segment pins itself and every later one (Kafka's rule)
    assert log.apply_retention(now_ms=TS + 1001 + DAY) == RetentionResult(2, sizes[0] + sizes[1], 2)
    assert segment_bases(log.path) == [2, 3, 4]
    assert log.apply_retention(now_ms=TS + 200 * DAY) == RetentionResult(2, sizes[2] + sizes[3], 4)
    assert log.start_offset == 4 == log.end_offset


def test_compact_policy_runs_only_the_log_start_pass(open_log):
    log = open_log(cleanup_policy="compact", retention_ms=0, retention_bytes=0)
    one_record_segments(log, 3)
    assert log.apply_retention(now_ms=TS + 10 * DAY) == RetentionResult(0, 0, 0)
    assert segment_bases(log.path) == [0, 1, 2, 3]


def test_retention_logs_an_info_line(open_log, caplog):
    log = open_log(retention_ms=0)
    one_record_segments(log, 2)
    with caplog.at_level(logging.INFO, logger="pylog.retention"):
        result = log.apply_retention(now_ms=TS + DAY)
    assert result.deleted_segments == 2
    lines = [r for r in caplog.records if r.name == "pylog.retention"]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    text = lines[0].getMessage()
    assert log.path in text and "2 segments" in text and "retention.ms" in text and "now 2" in text


def test_retention_in_another_opener_is_seen_before_its_next_read(open_log):
    log = open_log(retention_ms=0)
    one_record_segments(log, 3)
    reader = open_log(log.path)
    assert [r.offset for r in reader.records()] == [0, 1, 2]
    mapped = reader.read(0, 1 << 20)  # may be a mapping of a segment about to go
    first = bytes(mapped)
    log.apply_retention(now_ms=TS + DAY)
    assert bytes(mapped) == first  # a view of a deleted segment stays valid
    assert reader.start_offset == 3
    with pytest.raises(OffsetOutOfRangeError):
        reader.read(0, 100)


def test_writer_repairs_files_a_dead_changer_left(open_log):
    """A process killed mid-change leaves the generation odd and ``.deleted``/``.cleaned`` files;
    the next writer runs recovery's temp-file steps before it re-lists."""
    log = open_log()
    one_record_segments(log, 2)
    stray_deleted = os.path.join(log.path, f"{0:020d}.log.deleted")
    stray_cleaned = os.path.join(log.path, f"{0:020d}.log.cleaned")
    for stray in (stray_deleted, stray_cleaned):
        with open(stray, "wb") as f:
            f.write(b"x" * 10)
    with open(os.path.join(log.path, ".pylog.shm"), "r+b") as f, mmap.mmap(f.fileno(), 4096) as page:
        (generation,) = struct.unpack_from("=I", page, 8)
        struct.pack_into("=I", page, 8, generation | 1)  # a change left half done
    log.append([b"after"], keys=[b"k"])
    assert not os.path.exists(stray_deleted) and not os.path.exists(stray_cleaned)
    assert [r.value for r in log.records()] == [b"v" * 40, b"v" * 40, b"after"]


# ---------------------------------------------------------------------------------------------
# the append-side key rule of compacted partitions


@pytest.mark.parametrize("policy", ["compact", "compact,delete"])
def test_compacted_partition_refuses_records_without_key(open_log, policy):
    log = open_log(cleanup_policy=policy)
    with pytest.raises(InvalidRecordError) as info:
        log.append([b"a", b"b"], keys=[b"k", None])
    assert info.value.kind is None
    with pytest.raises(InvalidRecordError):
        log.append([b"a"])  # no keys at all
    with pytest.raises(InvalidRecordError) as info:
        log.append_raw(kafka_build_batch([(TS, b"k", b"a", []), (TS, None, b"b", [])]))
    assert info.value.kind == "key"
    assert log.end_offset == 0
    assert log.append([None], keys=[b"k"]) == 0  # a tombstone has a key: fine
    assert log.append_raw(kafka_build_batch([(TS, b"k", b"a", [])])) == 1


def test_delete_policy_takes_records_without_key(open_log):
    log = open_log(cleanup_policy="delete")
    log.append([b"a"])
    log.append_raw(kafka_build_batch([(TS, None, b"b", [])]))
    assert [r.key for r in log.records()] == [None, None]
