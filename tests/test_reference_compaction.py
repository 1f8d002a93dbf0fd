"""Compaction, rule by rule (docs/partition-log.md "Compaction"; ISSUE 7).

Focused tests of each cleaner rule for both engines through the ``engine`` fixture; the
differential, crash and property suites live in tests/test_compaction*.py.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path

import pytest
from helpers import (
    check_segment_indexes,
    expected_indexes,
    kafka_decode,
    parse_batches,
    read_offset_index,
    read_time_index,
    segment_bases,
    segment_name,
)

from pylog.errors import InvalidConfigError
from pylog.partition import CleanResult

TS = 1_700_000_000_000
DAY = 24 * 3600 * 1000
HORIZON_BIT = 0x40


#: the one place that holds this module back for the native engine (ISSUE7.md: its
#: cleanable / compact come with the native-log and native-cleaner branches). The lead deletes
#: this fixture when merging those; every test below is written to pass for both engines.
def table(log) -> dict:
    """What a consumer reading from the start builds: key → (offset, value), tombstones remove."""
    out: dict = {}
    for r in log.records():
        if r.value is None:
            out.pop(r.key, None)
        else:
            out[r.key] = (r.offset, r.value)
    return out


def changelog(log, n: int, keys: int, *, ts0: int = TS, per_batch: int = 1, roll_every: int = 0) -> None:
    """``n`` records over ``keys`` keys, in batches of ``per_batch``; roll every ``roll_every``
    batches (0: only by segment.bytes)."""
    for batches, start in enumerate(range(0, n, per_batch), 1):
        idx = range(start, min(start + per_batch, n))
        log.append(
            [b"value-%d" % i for i in idx],
            keys=[b"key-%d" % (i % keys) for i in idx],
            timestamps_ms=[ts0 + i for i in idx],
        )
        if roll_every and batches % roll_every == 0:
            log.roll()


def log_bytes(path, base: int) -> bytes:
    return Path(path, segment_name(base)).read_bytes()


def all_batches(path) -> list:
    out = []
    for base in segment_bases(path):
        out += [(base, b) for b in parse_batches(log_bytes(path, base))]
    return out


# ---------------------------------------------------------------------------------------------
# what survives


def test_latest_record_of_every_key_survives_at_its_offset(open_log):
    log = open_log(cleanup_policy="compact", segment_bytes=600)
    changelog(log, 200, 7)
    before = table(log)
    active_base = segment_bases(log.path)[-1]
    active_before = log_bytes(log.path, active_base)
    result = log.compact(now_ms=TS)
    assert result.passes == 1 and result.skipped is None
    assert result.records_read == active_base  # every record below the active segment
    assert table(log) == before
    # below the active segment exactly the latest record of each key written there is left
    latest_below: dict = {}
    for i in range(active_base):
        latest_below[b"key-%d" % (i % 7)] = i
    below = [r for r in log.records() if r.offset < active_base]
    assert sorted(r.offset for r in below) == sorted(latest_below.values())
    assert result.records_kept == len(below)
    assert log_bytes(log.path, active_base) == active_before  # the active segment is never cleaned
    assert segment_bases(log.path)[-1] == active_base
    assert log.end_offset == 200
    # a reopen reads the same table
    log.close()
    again = open_log(log.path, cleanup_policy="compact", segment_bytes=600)
    assert table(again) == before


def test_cleaned_segments_keep_offsets_batches_and_index_rules(open_log):
    log = open_log(cleanup_policy="compact", segment_bytes=2000, index_interval_bytes=100)
    changelog(log, 120, 5, per_batch=3, roll_every=6)
    before = {b.base_offset: b for _, b in all_batches(log.path)}
    log.compact(now_ms=TS)
    for _, b in all_batches(log.path):
        old = before[b.base_offset]
        # a rewritten batch keeps its first and last offsets (readers advance by next offset)
        assert (b.base_offset, b.last_offset_delta) == (old.base_offset, old.last_offset_delta)
        assert b.records_count <= old.records_count
    check_segment_indexes(log.path, 100)
    for base in segment_bases(log.path)[:-1]:
        want_off, want_time = expected_indexes(log_bytes(log.path, base), base, 100, sealed=True)
        assert read_offset_index(Path(log.path, segment_name(base, ".index"))) == want_off
        assert read_time_index(Path(log.path, segment_name(base, ".timeindex"))) == want_time
    # an independent decoder reads the same records from the cleaned segments
    decoded = [
        r for base in segment_bases(log.path) for _, rs in kafka_decode(log_bytes(log.path, base)) for r in rs
    ]
    assert [(r[0], r[3], r[4]) for r in decoded] == [(r.offset, r.key, r.value) for r in log.records()]


def test_unchanged_batches_are_copied_byte_for_byte(open_log):
    log = open_log(cleanup_policy="compact")
    log.append([b"a", b"b"], keys=[b"1", b"2"], timestamps_ms=[TS, TS + 1])
    log.roll()
    log.append([b"c"], keys=[b"3"], timestamps_ms=[TS + 2])
    log.roll()
    before = log_bytes(log.path, 0) + log_bytes(log.path, 2)
    result = log.compact(now_ms=TS)
    assert result.records_read == result.records_kept == 3
    assert log_bytes(log.path, 0) == before  # the two segments grouped, bytes unchanged


def test_group_last_batch_emptied_is_kept_as_an_empty_header(open_log):
    # segment.bytes 200: the two sealed segments do not fit one group
    log = open_log(cleanup_policy="compact", segment_bytes=200)
    log.append([b"old"], keys=[b"k"], timestamps_ms=[TS])  # 0
    log.append([b"x", b"y"], keys=[b"k", b"k"], timestamps_ms=[TS + 1, TS + 5])  # 1-2
    log.roll()
    log.append([b"new"], keys=[b"k"], timestamps_ms=[TS + 9])  # 3: supersedes everything
    log.roll()
    log.compact(now_ms=TS)
    assert segment_bases(log.path) == [0, 3, 4]
    batches = parse_batches(log_bytes(log.path, 0))
    # offset 0's batch is dropped; the group's last batch (1-2) stays as an empty header, so the
    # cleaned segment still ends at offset 3
    assert [(b.base_offset, b.last_offset_delta, b.records_count) for b in batches] == [(1, 1, 0)]
    assert [(b.base_offset, b.records_count) for b in parse_batches(log_bytes(log.path, 3))] == [(3, 1)]
    empty = batches[0]
    assert empty.length == 49
    assert empty.base_timestamp == empty.max_timestamp == TS + 5
    assert empty.attributes & 0x07 == 0 and empty.attributes & HORIZON_BIT == 0
    assert [(r.offset, r.value) for r in log.records()] == [(3, b"new")]


def test_rebuilt_batch_fields(open_log):
    log = open_log(cleanup_policy="compact")
    log.append([b"a", b"b", b"c"], keys=[b"1", b"2", b"1"], timestamps_ms=[TS + 7, TS + 3, TS + 5])
    log.roll()
    log.compact(now_ms=TS)
    (batch,) = parse_batches(log_bytes(log.path, 0))
    assert (batch.base_offset, batch.last_offset_delta, batch.records_count) == (0, 2, 2)
    # baseTimestamp = the first kept record's, maxTimestamp = the kept records' max
    assert (batch.base_timestamp, batch.max_timestamp) == (TS + 3, TS + 5)
    assert [(r.offset, r.timestamp) for r in log.records()] == [(1, TS + 3), (2, TS + 5)]


@pytest.mark.parametrize("codec", ["gzip", "lz4", "zstd", "snappy"])
def test_compressed_batches_are_recompressed_with_their_codec(open_log, codec):
    log = open_log(cleanup_policy="compact")
    log.append([b"v1", b"v2", b"v3"], keys=[b"a", b"b", b"a"], timestamps_ms=[TS] * 3, compression=codec)
    log.roll()
    log.compact(now_ms=TS)
    (batch,) = parse_batches(log_bytes(log.path, 0))
    assert batch.codec == {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}[codec]
    assert [(r.offset, r.key, r.value) for r in log.records()] == [(1, b"b", b"v2"), (2, b"a", b"v3")]
    ((_, records),) = kafka_decode(log_bytes(log.path, 0))  # an independent decoder
    assert [(r[0], r[3], r[4]) for r in records] == [(1, b"b", b"v2"), (2, b"a", b"v3")]


# ---------------------------------------------------------------------------------------------
# tombstones (KIP-534)


def test_tombstone_lifecycle_with_delete_horizon(open_log):
    log = open_log(cleanup_policy="compact", delete_retention_ms=1000)
    log.append([b"v"], keys=[b"k"], timestamps_ms=[TS])
    log.append([None], keys=[b"k"], timestamps_ms=[TS + 1])
    log.append([b"w"], keys=[b"other"], timestamps_ms=[TS + 2])
    log.roll()
    first = log.compact(now_ms=TS + 10)
    assert first.tombstones_removed == 0
    tomb = next(b for _, b in all_batches(log.path) if b.base_offset == 1)
    assert tomb.attributes & HORIZON_BIT and tomb.base_timestamp == TS + 10 + 1000
    assert [(r.offset, r.key, r.value) for r in log.records()] == [(1, b"k", None), (2, b"other", b"w")]
    # a later pass (new dirty data) before the horizon keeps it, at the horizon drops it
    log.append([b"x"], keys=[b"other"], timestamps_ms=[TS + 3])
    log.roll()
    assert log.compact(now_ms=TS + 1009).tombstones_removed == 0
    assert (
        tomb.base_timestamp == next(b for _, b in all_batches(log.path) if b.base_offset == 1).base_timestamp
    )
    log.append([b"y"], keys=[b"other"], timestamps_ms=[TS + 4])
    log.roll()
    last = log.compact(now_ms=TS + 1010)
    assert last.tombstones_removed == 1
    assert [(r.offset, r.key, r.value) for r in log.records()] == [(4, b"other", b"y")]


# ---------------------------------------------------------------------------------------------
# passes, the map bound, the cleanable range


def test_bounded_map_forces_several_passes_with_the_same_result(open_log, tmp_path):
    small = open_log(tmp_path / "small-0", cleanup_policy="compact", segment_bytes=4000)
    big = open_log(tmp_path / "big-0", cleanup_policy="compact", segment_bytes=4000)
    for log in (small, big):
        changelog(log, 600, 150)
        log.roll()
    # 1024 bytes: 42 slots, full at 37 entries -> about 600 / 37 passes
    r_small = small.compact(now_ms=TS, map_bytes=1024)
    r_big = big.compact(now_ms=TS)
    assert r_big.passes == 1 and r_small.passes > 5
    assert r_small.clean_offset == r_big.clean_offset == 600
    assert table(small) == table(big)
    assert [r.offset for r in small.records()] == [r.offset for r in big.records()]
    assert len(list(small.records())) == 150
    with open(os.path.join(small.path, "cleaner-offset-checkpoint")) as f:
        assert f.read().split()[-1] == "600"


def test_map_bytes_below_minimum_is_invalid_config(open_log):
    log = open_log(cleanup_policy="compact")
    with pytest.raises(InvalidConfigError):
        log.compact(map_bytes=1023)


def test_cleanable_numbers_and_lag_rules(open_log):
    log = open_log(cleanup_policy="compact", min_cleanable_dirty_ratio=0.5)
    for i in range(4):  # segments [0], [1], [2], [3] with largest ts TS + i * 1000
        log.append([b"v%d" % i], keys=[b"k"], timestamps_ms=[TS + i * 1000])
        log.roll()
    sizes = [os.path.getsize(os.path.join(log.path, segment_name(b))) for b in range(4)]
    c = log.cleanable(now_ms=TS)
    assert (c.first_dirty_offset, c.first_uncleanable_offset) == (0, 4)
    assert (c.clean_bytes, c.cleanable_bytes, c.dirty_ratio) == (0, sum(sizes), 1.0)
    assert c.due and not c.needs_compaction_now
    log.close()
    # min.compaction.lag.ms: the first segment younger than the lag is uncleanable
    log = open_log(log.path, cleanup_policy="compact", min_compaction_lag_ms=1500)
    c = log.cleanable(now_ms=TS + 3000)  # segments with ts > TS + 1500: 2 and 3
    assert c.first_uncleanable_offset == 2 and c.cleanable_bytes == sizes[0] + sizes[1]
    assert log.compact(now_ms=TS + 3000).clean_offset == 2
    c = log.cleanable(now_ms=TS + 3000)
    assert (c.first_dirty_offset, c.first_uncleanable_offset, c.cleanable_bytes, c.due) == (2, 2, 0, False)
    log.close()
    # max.compaction.lag.ms: a dirty segment's first batch older than it makes it due now
    log = open_log(
        log.path, cleanup_policy="compact", min_cleanable_dirty_ratio=0.99, max_compaction_lag_ms=500
    )
    c = log.cleanable(now_ms=TS + 3000)
    assert c.first_dirty_offset == 2 and c.needs_compaction_now and c.due
    assert c.dirty_ratio < 0.99
    log.close()
    log = open_log(log.path, cleanup_policy="compact", min_cleanable_dirty_ratio=0.99)
    c = log.cleanable(now_ms=TS + 3000)
    assert not c.needs_compaction_now and not c.due
    assert log.compact(now_ms=TS + 3000, force=False).skipped == "not due"
    assert log.compact(now_ms=TS + 3000).skipped is None  # explicit: runs below the ratio


def test_delete_policy_says_so_and_does_nothing(open_log, caplog):
    log = open_log(cleanup_policy="delete")
    changelog(log, 10, 2)
    log.roll()
    before = sorted(os.listdir(log.path))
    with caplog.at_level(logging.INFO, logger="pylog.cleaner"):
        result = log.compact(now_ms=TS)
    assert result == CleanResult(0, 0, 0, 0, 0, 0, 0, 0, "cleanup.policy=delete has no compact")
    assert sorted(os.listdir(log.path)) == before
    assert any("has no compact" in r.getMessage() for r in caplog.records if r.name == "pylog.cleaner")
    assert not log.cleanable(now_ms=TS).due


def test_nothing_to_clean(open_log):
    log = open_log(cleanup_policy="compact")
    log.append([b"a"], keys=[b"k"])
    assert log.compact(now_ms=TS).skipped == "nothing to clean"  # only the active segment


def test_busy_cleaner_lock_is_skipped_without_waiting(open_log):
    log = open_log(cleanup_policy="compact")
    changelog(log, 10, 2)
    log.roll()
    fd = os.open(os.path.join(log.path, ".pylog.cleaner"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = log.compact(now_ms=TS, wait=False)
        assert result.skipped == "another cleaner holds the lock" and result.passes == 0
    finally:
        os.close(fd)
    assert log.compact(now_ms=TS, wait=False).passes == 1


def test_cancel_stops_with_nothing_half_done(open_log):
    log = open_log(cleanup_policy="compact", segment_bytes=500)
    changelog(log, 100, 3)
    log.roll()
    before = table(log)
    stop = threading.Event()
    stop.set()
    result = log.compact(now_ms=TS, cancel=stop)
    assert result.skipped == "cancelled" and result.passes == 0
    assert not [n for n in os.listdir(log.path) if n.endswith((".cleaned", ".swap", ".deleted"))]
    assert table(log) == before
    with pytest.raises(AttributeError):  # a cancel without is_set() fails when first asked
        log.compact(now_ms=TS, cancel=object())
    assert not [n for n in os.listdir(log.path) if n.endswith((".cleaned", ".swap", ".deleted"))]
    assert log.compact(now_ms=TS, cancel=threading.Event()).passes == 1
    assert table(log) == before


def test_stale_files_of_a_dead_cleaner_are_removed_first(open_log):
    log = open_log(cleanup_policy="compact")
    changelog(log, 10, 2)
    log.roll()
    stray = [
        os.path.join(log.path, segment_name(0, s)) for s in (".log.cleaned", ".index.cleaned", ".log.deleted")
    ]
    for path in stray:
        Path(path).write_bytes(b"junk")
    assert log.compact(now_ms=TS).passes == 1
    assert not any(os.path.exists(p) for p in stray)
    assert len(table(log)) == 2


def test_compact_runs_retention_for_compact_delete(open_log):
    log = open_log(cleanup_policy="compact,delete", retention_ms=DAY)
    changelog(log, 10, 10)
    log.roll()
    log.append([b"new"], keys=[b"n"], timestamps_ms=[TS + 2 * DAY])
    result = log.compact(now_ms=TS + 2 * DAY)
    assert result.passes == 1
    assert log.start_offset == 10  # the cleaned segment was older than retention.ms
    assert [r.key for r in log.records()] == [b"n"]


def test_pass_logs_an_info_line(open_log, caplog):
    log = open_log(cleanup_policy="compact")
    changelog(log, 20, 4)
    log.roll()
    with caplog.at_level(logging.INFO, logger="pylog.cleaner"):
        log.compact(now_ms=TS)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "pylog.cleaner"]
    assert log.path in line and "cleaning pass 1" in line and "20 records read, 4 kept" in line


def test_another_opener_reads_the_compacted_log(open_log):
    log = open_log(cleanup_policy="compact", segment_bytes=400)
    changelog(log, 60, 4)
    log.roll()
    reader = open_log(log.path, cleanup_policy="compact", segment_bytes=400)
    before = table(reader)
    it = reader.records()
    first = next(it)
    log.compact(now_ms=TS)
    assert table(reader) == before
    assert len(list(reader.records())) == 4
    # an iterator positioned in a swapped-out segment continues at the next surviving offset
    rest = [r.offset for r in it]
    assert rest == sorted(rest) and (not rest or rest[0] > first.offset)
    assert {r.key for r in reader.records()} == set(before)
