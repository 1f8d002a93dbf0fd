"""Compaction on the engine seam (issue 7; docs/partition-log.md "Compaction"; Kafka's LogCleaner,
core/src/main/scala/kafka/log/LogCleaner.scala and LogCleanerManager.scala).

Every test runs on both engines (the ``engine`` fixture) and checks what Kafka's rules say must
survive, record by record:

- the latest record of every key survives at its original offset, the active segment and the
  part younger than ``min.compaction.lag.ms`` are never cleaned, a rewritten batch keeps its
  base and last offsets, readers advance by next offset across the gaps;
- tombstones with a controllable clock (``now_ms``): kept by the first pass that recopies them,
  which stores the delete horizon in the batch (attribute bit 6, ``baseTimestamp``, KIP-534),
  dropped by a later pass once ``now >= horizon``;
- the cleaned files decode with kafka-python's record classes and Kafka's own DumpLogSegments,
  keep their codec, keep the sealed-segment index rules and the last source segment's mtime;
- ``cleanable()`` numbers, ``force`` / ``wait`` / ``cancel``, the cleaner lock, the append-side
  key rule, a bounded key map forcing several passes with the same result, stray ``.cleaned`` /
  ``.swap`` files, and another process reading and appending while this one compacts.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
from pathlib import Path

import pytest
from compaction_child import (
    TS,
    appended_batch,
    fill_keyed,
    latest_per_key,
    table,
    triples,
)
from helpers import (
    as_tuples,
    check_segment_indexes,
    kafka_build_batch,
    kafka_codecs,
    kafka_decode,
    parse_batches,
    reaped,
    segment_bases,
    segment_name,
)
from kafka_tools import batches as dumped_batches
from kafka_tools import dump, kafka_libs, sections

from pylog.bench_processes import same_pylog_env
from pylog.engine import CleanResult, open_partition
from pylog.errors import CorruptKind, InvalidConfigError, InvalidRecordError

CHILD = Path(__file__).resolve().parent / "compaction_child.py"
NOW = TS + 10_000_000
DRM = 1000  # delete.retention.ms
HORIZON_BIT = 0x40
CONTROL_BIT = 0x20
BIG_MAP = 1 << 24

COMPACT = {
    "cleanup.policy": "compact",
    "segment.bytes": 2000,
    "index.interval.bytes": 200,
    "delete.retention.ms": DRM,
}


def sealed_bytes(path: Path) -> int:
    bases = segment_bases(path)
    return sum((path / segment_name(b)).stat().st_size for b in bases[:-1])


def all_batches(path: Path) -> list:
    out = []
    for base in segment_bases(path):
        out.extend(parse_batches((path / segment_name(base)).read_bytes()))
    return out


def temp_files(path: Path) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.endswith((".cleaned", ".swap", ".deleted")))


def checkpoint_line(path: Path, name: str) -> str:
    lines = (path / name).read_text().splitlines()
    assert lines[:2] == ["0", "1"] and len(lines) == 3, lines
    return lines[2]


# ----------------------------------------------------------------------------------------------
# what survives


def test_latest_record_of_every_key_survives_at_its_offset(open_log, tmp_path):
    path = tmp_path / "compacted-3"
    log = open_log(path, config=COMPACT)
    fill_keyed(log, 60, keys=20, tombstone_every=7)
    log.append(
        [b"with-headers"], keys=[b"key-00001"], headers=[[("h", b"x"), ("n", None)]], timestamps_ms=[TS]
    )
    log.roll()
    before = list(log.records())
    bases = segment_bases(path)
    assert len(bases) > 5
    read_bytes = sealed_bytes(path)
    end = log.end_offset

    result = log.compact(NOW)

    assert isinstance(result, CleanResult)
    want = latest_per_key(before)
    assert triples(log.records()) == want
    by_offset = {t[0]: t for t in as_tuples(before)}
    assert as_tuples(log.records()) == [by_offset[o] for o, _, _ in want], "timestamps and headers kept"
    assert table(log.records()) == table(before)
    assert result.skipped is None and result.passes == 1
    assert result.records_read == len(before) and result.records_kept == len(want)
    assert result.bytes_read == read_bytes and result.bytes_written == sealed_bytes(path)
    assert result.tombstones_removed == 0 and result.clean_offset == end
    assert result.segments_cleaned == len(bases) - 1
    assert log.start_offset == 0 and log.end_offset == end
    assert checkpoint_line(path, "cleaner-offset-checkpoint") == f"compacted 3 {end}"
    assert temp_files(path) == []
    log.close()
    again = open_log(path, config=COMPACT)
    assert as_tuples(again.records()) == [by_offset[o] for o, _, _ in want]


def test_active_segment_and_young_segments_are_never_cleaned(open_log, tmp_path):
    path = tmp_path / "active-0"
    log = open_log(path, config=COMPACT)
    fill_keyed(log, 40, keys=10)
    active = segment_bases(path)[-1]
    assert active > 0 and log.end_offset - active >= 10, "the active segment holds duplicates"
    before = list(log.records())
    log.compact(NOW)
    below = [r for r in before if r.offset < active]
    want = latest_per_key(below) + triples(r for r in before if r.offset >= active)
    assert triples(log.records()) == want
    assert log.cleanable(NOW).first_dirty_offset == active

    # min.compaction.lag.ms: a segment whose largest timestamp is younger than now - lag stays
    path = tmp_path / "lag-0"
    log = open_log(path, config={**COMPACT, "min.compaction.lag.ms": 5_000})
    fill_keyed(log, 40, keys=10)  # timestamps TS + record number
    log.roll()
    before = list(log.records())
    bases = segment_bases(path)
    young = bases[len(bases) // 2]
    largest = max(r.timestamp for r in before if r.offset < young)
    now = largest + 5_000  # the segments below `young` are old enough, `young` itself is not
    assert max(r.timestamp for r in before if young <= r.offset < bases[bases.index(young) + 1]) > now - 5_000
    view = log.cleanable(now)
    assert view.first_uncleanable_offset == young
    log.compact(now)
    want = latest_per_key(r for r in before if r.offset < young) + triples(
        r for r in before if r.offset >= young
    )
    assert triples(log.records()) == want
    assert log.cleanable(now).first_dirty_offset == young


def test_rewritten_batches_keep_their_offsets_and_readers_advance_by_next_offset(open_log, tmp_path):
    path = tmp_path / "offsets-0"
    log = open_log(path, config=COMPACT)
    fill_keyed(log, 50, keys=7)
    log.roll()
    original = {(b.base_offset, b.last_offset) for b in all_batches(path)}
    before = list(log.records())
    log.compact(NOW)
    after = all_batches(path)
    assert after and all((b.base_offset, b.last_offset) in original for b in after)
    survivors = [o for o, _, _ in triples(log.records())]
    # a chain of read(offset, 1) calls, each from the previous batch's next offset, sees them all
    seen, offset = [], 0
    while offset < log.end_offset:
        batch = parse_batches(bytes(log.read(offset, 1)), strict=False)[0]
        assert batch.last_offset >= offset
        seen.extend(r.offset for r in log.records(batch.base_offset, batch.next_offset) if r.offset >= offset)
        offset = batch.next_offset
    assert seen == survivors
    # a position in a removed range continues at the next surviving offset
    removed = sorted({r.offset for r in before} - set(survivors))
    assert removed
    for gap in removed[:: max(1, len(removed) // 10)]:
        nxt = min(o for o in survivors if o > gap)
        assert next(iter(log.records(gap))).offset == nxt
        cols = log.read_columns(gap, 3)
        assert int(cols.offsets[0]) == nxt


# ----------------------------------------------------------------------------------------------
# tombstones


def test_tombstone_lifecycle_with_a_controllable_clock(open_log, tmp_path):
    path = tmp_path / "tomb-0"
    log = open_log(path, config=COMPACT)
    log.append([b"v1", b"v2"], keys=[b"k1", b"k2"], timestamps_ms=[TS, TS + 1])
    log.append([None], keys=[b"k1"], timestamps_ms=[TS + 2])  # a tombstone for k1
    log.append([b"v3", None], keys=[b"k3", b"k2"], timestamps_ms=[TS + 3, TS + 4])
    log.append([b"v3b"], keys=[b"k3"], timestamps_ms=[TS + 5])
    log.roll()
    reader_before = table(log.records())

    t0 = NOW
    first = log.compact(t0)
    assert triples(log.records()) == [(2, b"k1", None), (4, b"k2", None), (5, b"k3", b"v3b")]
    assert first.tombstones_removed == 0
    horizons = {b.base_offset: b for b in all_batches(path)}
    for base in (2, 3):  # the batches holding the kept tombstones got a horizon
        b = horizons[base]
        assert b.attributes & HORIZON_BIT, f"batch {base} has no delete horizon"
        assert b.base_timestamp == t0 + DRM
    assert not horizons[5].attributes & HORIZON_BIT, "a batch without a tombstone gets no horizon"
    assert [r.timestamp for r in log.records()] == [TS + 2, TS + 4, TS + 5], "record timestamps kept"
    assert table(log.records()) == reader_before

    # a later pass before the horizon keeps them, and keeps the horizon it found
    log.append([b"v4"], keys=[b"k4"], timestamps_ms=[TS + 6])
    log.roll()
    second = log.compact(t0 + DRM - 1)
    assert second.passes == 1 and second.tombstones_removed == 0
    assert [k for _, k, _ in triples(log.records())] == [b"k1", b"k2", b"k3", b"k4"]
    assert {b.base_offset: b.base_timestamp for b in all_batches(path)}[2] == t0 + DRM

    # once now >= horizon a pass drops them; a reader from the start builds the same table
    log.append([b"v5"], keys=[b"k5"], timestamps_ms=[TS + 7])
    log.roll()
    third = log.compact(t0 + DRM)
    assert third.tombstones_removed == 2
    assert triples(log.records()) == [(5, b"k3", b"v3b"), (6, b"k4", b"v4"), (7, b"k5", b"v5")]
    assert table(log.records()) == {**reader_before, b"k4": b"v4", b"k5": b"v5"}


def test_a_pass_needs_dirty_data_so_tombstones_wait_for_the_next_one(open_log, tmp_path):
    """Kafka's rule (kafka-log.md section 5.7): a tombstone goes only when a later pass runs; with
    nothing dirty an explicit compact() says so and changes nothing."""
    path = tmp_path / "quiet-0"
    log = open_log(path, config=COMPACT)
    log.append([b"v", None], keys=[b"a", b"b"], timestamps_ms=[TS, TS])
    log.roll()
    log.compact(NOW)
    files = {n: (path / n).read_bytes() for n in os.listdir(path) if n.endswith(".log")}
    result = log.compact(NOW + 10 * DRM)
    assert result.skipped == "nothing to clean" and result.passes == 0
    assert triples(log.records()) == [(0, b"a", b"v"), (1, b"b", None)]
    assert {n: (path / n).read_bytes() for n in os.listdir(path) if n.endswith(".log")} == files


# ----------------------------------------------------------------------------------------------
# the files: an independent decoder, codecs, index rules, grouping, mtime


def test_compacted_files_decode_with_kafka_python_and_keep_codec_and_index_rules(open_log, tmp_path):
    codecs = tuple(kafka_codecs())
    path = tmp_path / "decode-0"
    config = {**COMPACT, "segment.bytes": 4000, "index.interval.bytes": 100}
    log = open_log(path, config=config)
    fill_keyed(log, 80, per_batch=4, keys=15, tombstone_every=9, codecs=codecs)
    log.roll()
    codec_of = {b.base_offset: b.codec for b in all_batches(path)}
    log.compact(NOW)
    ours = as_tuples(log.records())
    decoded = []
    for base in segment_bases(path):
        for _batch, recs in kafka_decode((path / segment_name(base)).read_bytes()):
            decoded.extend(recs)
    assert decoded == ours
    rebuilt = 0
    for b in all_batches(path):
        if b.records_count == 0:  # an empty batch keeping a group's last offset: no codec
            assert b.codec == 0 and not b.attributes & (HORIZON_BIT | 0x07)
            continue
        assert b.codec == codec_of[b.base_offset], f"batch {b.base_offset} changed codec"
        rebuilt += b.records_count < 4 or bool(b.attributes & HORIZON_BIT)
    assert rebuilt > 0, "some batches were rebuilt (recompressed)"
    assert len({b.codec for b in all_batches(path)} - {0}) >= min(2, len(codecs) - 1)
    check_segment_indexes(path, 100)


@pytest.mark.skipif(kafka_libs()[0] is None, reason="Kafka's tools are not available (tests/kafka_tools.py)")
def test_kafka_dump_log_segments_reads_the_compacted_segments(open_log, tmp_path):
    path = tmp_path / "dump-0"
    log = open_log(path, config={**COMPACT, "segment.bytes": 4000})
    fill_keyed(log, 60, keys=12, tombstone_every=5, codecs=("none", "gzip", "lz4", "zstd"))
    log.roll()
    log.compact(NOW)
    ours = [r.offset for r in log.records()]
    log.close()
    logs = [path / segment_name(b) for b in segment_bases(path)]
    out = sections(dump(logs))
    got = [b for f in logs for b in dumped_batches(out[f.name])]
    assert got and all(valid for *_, valid in got)
    text = dump(logs, "--deep-iteration")
    kafka_offsets = [int(line.split()[2]) for line in text.splitlines() if line.startswith("| offset:")]
    assert kafka_offsets == ours
    indexes = sorted(path.glob("*.index")) + sorted(path.glob("*.timeindex"))
    sanity = dump(indexes, "--index-sanity-check")
    assert sanity.count("passed sanity check") + sanity.count(" is empty.") == len(indexes), sanity


def test_small_segments_are_grouped_and_keep_the_last_sources_mtime(open_log, tmp_path):
    path = tmp_path / "groups-0"
    config = {**COMPACT, "segment.bytes": 1500}
    log = open_log(path, config=config)
    for i in range(30):
        fill_keyed(log, 1, per_batch=2, keys=6, start=2 * i)
        log.roll()
    bases = segment_bases(path)
    assert len(bases) == 31
    for i, base in enumerate(bases[:-1]):  # distinct whole-second mtimes, rising
        os.utime(path / segment_name(base), (1_700_000_000 + i, 1_700_000_000 + i))
    mtime_of = {b: int((path / segment_name(b)).stat().st_mtime) for b in bases[:-1]}
    before = list(log.records())
    log.compact(NOW)
    after = segment_bases(path)
    assert len(after) < len(bases) - 1, "tiny segments were grouped"
    assert triples(log.records()) == latest_per_key(before)
    for i, base in enumerate(after[:-1]):
        assert (path / segment_name(base)).stat().st_size <= 1500
        last_source = max(b for b in bases[:-1] if b < after[i + 1])
        assert int((path / segment_name(base)).stat().st_mtime) == mtime_of[last_source]
    check_segment_indexes(path, COMPACT["index.interval.bytes"])


# ----------------------------------------------------------------------------------------------
# the key map: bounded memory, several passes, same result


def test_a_bounded_key_map_forces_several_passes_with_the_same_result(open_log, tmp_path):
    path = tmp_path / "passes-0"
    config = {**COMPACT, "segment.bytes": 6000}
    log = open_log(path, config=config)
    fill_keyed(log, 120, keys=150, tombstone_every=11)
    log.roll()
    log.close()
    copy = tmp_path / "copy" / "passes-0"
    shutil.copytree(path, copy)
    small = open_log(path, config=config)
    big = open_log(copy, config=config)
    before = list(small.records())
    few = small.compact(NOW, map_bytes=1024)  # 42 slots, 37 entries
    one = big.compact(NOW, map_bytes=BIG_MAP)
    assert one.passes == 1 and few.passes >= 4, (one, few)
    assert as_tuples(small.records()) == as_tuples(big.records())
    assert triples(small.records()) == latest_per_key(before)
    assert few.clean_offset == one.clean_offset == small.end_offset


@pytest.mark.parametrize("map_bytes", [0, 1023, -1])
def test_map_bytes_below_the_minimum_is_refused(open_log, tmp_path, map_bytes):
    path = tmp_path / "map-0"
    log = open_log(path, config=COMPACT)
    fill_keyed(log, 10, keys=3)
    log.roll()
    before = list(log.records())
    with pytest.raises(InvalidConfigError):
        log.compact(NOW, map_bytes=map_bytes)
    assert as_tuples(log.records()) == as_tuples(before)
    assert temp_files(path) == []


# ----------------------------------------------------------------------------------------------
# cleanable() and when compact() runs


def test_cleanable_numbers_follow_kafkas_rules(open_log, tmp_path):
    path = tmp_path / "ratio-0"
    log = open_log(path, config=COMPACT)
    fill_keyed(log, 30, keys=10)
    log.roll()
    bases = segment_bases(path)
    dirty = sealed_bytes(path)
    view = log.cleanable(NOW)
    assert view.first_dirty_offset == 0 and view.first_uncleanable_offset == bases[-1]
    assert (view.clean_bytes, view.cleanable_bytes) == (0, dirty)
    assert view.dirty_ratio == 1.0 and view.due and not view.needs_compaction_now
    log.compact(NOW)
    clean = sealed_bytes(path)
    view = log.cleanable(NOW)
    active = segment_bases(path)[-1]
    assert view.first_dirty_offset == view.first_uncleanable_offset == active
    assert (view.clean_bytes, view.cleanable_bytes, view.dirty_ratio, view.due) == (clean, 0, 0.0, False)

    fill_keyed(log, 2, keys=10, start=1000)
    log.roll()
    new = (path / segment_name(active)).stat().st_size
    view = log.cleanable(NOW)
    assert (view.clean_bytes, view.cleanable_bytes) == (clean, new)
    assert view.dirty_ratio == pytest.approx(new / (clean + new))
    assert view.due == (new / (clean + new) > 0.5)
    assert log.cleanable(NOW) == view, "a pure look: nothing changed"


def test_force_false_runs_only_when_due_and_max_lag_makes_it_due(open_log, tmp_path):
    path = tmp_path / "due-0"
    config = {**COMPACT, "min.cleanable.dirty.ratio": 1.0, "max.compaction.lag.ms": 60_000}
    log = open_log(path, config=config)
    fill_keyed(log, 20, keys=5)
    log.roll()
    before = as_tuples(log.records())
    first_batch_max = TS + 4
    early = log.cleanable(first_batch_max + 60_000)  # not older than the lag yet
    assert early.dirty_ratio == 1.0 and not early.needs_compaction_now and not early.due
    skipped = log.compact(first_batch_max + 60_000, force=False)
    assert skipped.skipped == "not due" and skipped.passes == 0
    assert as_tuples(log.records()) == before
    late = log.cleanable(first_batch_max + 60_001)
    assert late.needs_compaction_now and late.due
    ran = log.compact(first_batch_max + 60_001, force=False)
    assert ran.skipped is None and ran.passes == 1
    assert triples(log.records()) == latest_per_key(log.records())


def test_compact_on_a_delete_policy_says_so_and_does_nothing(open_log, tmp_path, caplog):
    path = tmp_path / "policy-0"
    log = open_log(path, config={"segment.bytes": 1000})
    fill_keyed(log, 20, keys=3)
    log.roll()
    files = {n: (path / n).read_bytes() for n in os.listdir(path) if n.endswith((".log", ".index"))}
    view = log.cleanable(NOW)
    assert view.cleanable_bytes > 0 and not view.due
    with caplog.at_level(logging.INFO, logger="pylog"):
        result = log.compact(NOW)
    assert result == CleanResult(
        0, 0, 0, 0, 0, 0, 0, clean_offset=0, skipped="cleanup.policy=delete has no compact"
    )
    assert {n: (path / n).read_bytes() for n in os.listdir(path) if n.endswith((".log", ".index"))} == files
    assert not (path / "cleaner-offset-checkpoint").exists()
    assert any(r.name.startswith("pylog") and "compact" in r.getMessage() for r in caplog.records)


def test_compaction_logs_an_info_line_per_pass(open_log, tmp_path, caplog):
    path = tmp_path / "logged-0"
    log = open_log(path, config=COMPACT)
    fill_keyed(log, 20, keys=100)  # more keys than a 1024-byte map holds (37): several passes
    log.roll()
    with caplog.at_level(logging.INFO, logger="pylog"):
        log.compact(NOW, map_bytes=1024)
    lines = [r for r in caplog.records if r.name == "pylog.cleaner" and r.levelno == logging.INFO]
    assert len(lines) >= 2 and all(log.path in r.getMessage() for r in lines), [r.getMessage() for r in lines]


# ----------------------------------------------------------------------------------------------
# the append-side rule


@pytest.mark.parametrize("policy", ["compact", "compact,delete"])
def test_a_compacted_partition_refuses_records_without_a_key(open_log, tmp_path, policy):
    path = tmp_path / "nokey-0"
    log = open_log(path, config={"cleanup.policy": policy})
    log.append([b"ok"], keys=[b"k"], timestamps_ms=[TS])
    size = (path / segment_name(0)).stat().st_size
    for kwargs in ({"keys": [b"a", None]}, {"keys": None}, {}):
        with pytest.raises(InvalidRecordError) as info:
            log.append([b"x", b"y"], timestamps_ms=[TS, TS], **kwargs)
        assert info.value.kind is None
    raw = kafka_build_batch([(TS, b"a", b"x", []), (TS, None, b"y", [])])
    with pytest.raises(InvalidRecordError) as info:
        log.append_raw(raw)
    assert info.value.kind == CorruptKind.KEY
    assert log.end_offset == 1 and (path / segment_name(0)).stat().st_size == size
    assert log.append_raw(kafka_build_batch([(TS, b"a", b"x", [])])) == 1
    # a delete policy takes them
    other = open_log(tmp_path / "delete-0")
    assert other.append([b"x"], timestamps_ms=[TS]) == 0


def test_the_key_rule_is_the_validators_last(open_log, tmp_path):
    """The key rule is append_raw's last check (one decode of the batch): a keyless batch that
    also breaks an earlier rule (here a CreateTime maxTimestamp that lies) reports that rule."""
    import crc32c  # the reference engine's dependency

    log = open_log(tmp_path / "order-0", config={"cleanup.policy": "compact"})
    raw = bytearray(kafka_build_batch([(TS, None, b"y", [])]))
    raw[35:43] = (TS + 1).to_bytes(8, "big")  # maxTimestamp
    raw[17:21] = crc32c.crc32c(bytes(raw[21:])).to_bytes(4, "big")
    with pytest.raises(InvalidRecordError) as info:
        log.append_raw(bytes(raw))
    assert info.value.kind == CorruptKind.TIMESTAMP
    assert log.end_offset == 0


# ----------------------------------------------------------------------------------------------
# the cleaner lock, cancel, stray files


def test_cleaner_lock_held_elsewhere_skips_with_wait_false(open_log, tmp_path):
    path = tmp_path / "locked-0"
    log = open_log(path, config=COMPACT)
    fill_keyed(log, 20, keys=4)
    log.roll()
    before = as_tuples(log.records())
    fd = os.open(path / ".pylog.cleaner", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another open file description: as another process
        result = log.compact(NOW, wait=False)
        assert result.skipped == "another cleaner holds the lock" and result.passes == 0
        assert as_tuples(log.records()) == before
        # wait=True waits for it: released from another thread once the call is under way
        done: dict = {}
        t = threading.Thread(target=lambda: done.setdefault("r", log.compact(NOW)))
        t.start()
        t.join(0.3)
        assert "r" not in done, "compact(wait=True) did not wait for the lock"
    finally:
        os.close(fd)
    t.join(60)
    assert done["r"].passes == 1
    assert triples(log.records()) == latest_per_key(log.records())


def test_cancel_stops_at_a_safe_point(open_log, tmp_path):
    path = tmp_path / "cancel-0"
    log = open_log(path, config={**COMPACT, "segment.bytes": 1000})
    fill_keyed(log, 40, keys=4)
    log.roll()
    before = list(log.records())
    assert len(segment_bases(path)) > 5
    stop = threading.Event()
    stop.set()
    result = log.compact(NOW, cancel=stop)
    assert result.skipped == "cancelled"
    assert temp_files(path) == [], "no half-done swap, no .cleaned left"
    # whole groups only: every record left is one from before, every key's latest is there
    assert set(as_tuples(log.records())) <= set(as_tuples(before))
    assert set(latest_per_key(before)) <= set(triples(log.records()))
    result = log.compact(NOW, cancel=threading.Event())
    assert result.skipped is None
    assert triples(log.records()) == latest_per_key(before)


def test_stale_cleaned_and_deleted_files_are_removed_by_compact(open_log, tmp_path):
    path = tmp_path / "stale-0"
    log = open_log(path, config=COMPACT)
    fill_keyed(log, 20, keys=4)
    log.roll()
    before = list(log.records())
    bases = segment_bases(path)
    (path / (segment_name(bases[0]) + ".cleaned")).write_bytes(b"left by a dead cleaner")
    (path / (segment_name(bases[1], ".index") + ".cleaned")).write_bytes(b"x" * 8)
    (path / (segment_name(99_999) + ".deleted")).write_bytes(b"old")
    log.compact(NOW)
    assert temp_files(path) == []
    assert triples(log.records()) == latest_per_key(before)


def test_stray_swap_and_cleaned_files_follow_recovery_rules(engine, tmp_path):
    """A directory damaged mid-clean by another tool: at an unclean open a ``.swap`` below every
    ``.cleaned`` completes (it replaces the segments in its offset range), ``.cleaned`` files and a
    ``.swap`` above the lowest ``.cleaned`` go (kafka-log.md section 4.2)."""
    config = COMPACT
    path = tmp_path / "stray-0"
    with open_partition(path, engine=engine, config=config) as log:
        fill_keyed(log, 40, keys=5)
        log.roll()
        before = list(log.records())
    done = tmp_path / "done" / "stray-0"
    shutil.copytree(path, done)
    with open_partition(done, engine=engine, config=config) as log:
        log.compact(NOW)
        compacted = triples(log.records())
    new_bases = segment_bases(done)
    first, second = new_bases[0], new_bases[1]
    assert len(new_bases) > 2, "several groups"
    old_bases = segment_bases(path)
    for suffix in (".log", ".index", ".timeindex"):
        shutil.copy(done / segment_name(first, suffix), path / (segment_name(first, suffix) + ".swap"))
    high = segment_bases(path)[-2]
    (path / (segment_name(high) + ".cleaned")).write_bytes(b"garbage")
    (path / (segment_name(high + 1) + ".swap")).write_bytes(b"garbage above the lowest .cleaned")
    os.remove(path / ".kafka_cleanshutdown")
    want = [t for t in compacted if t[0] < second] + [t for t in triples(before) if t[0] >= second]
    with open_partition(path, engine=engine, config=config) as log:
        assert triples(log.records()) == want, "the first group swapped in, the rest as it was"
    assert temp_files(path) == []
    assert segment_bases(path) == [first] + [b for b in old_bases if b >= second]
    assert compacted == latest_per_key(before)


# ----------------------------------------------------------------------------------------------
# other processes and other objects


def test_another_object_sees_the_swap_and_keeps_its_old_view(engine, other_engine, tmp_path):
    path = tmp_path / "views-0"
    cleaner = open_partition(path, engine=engine, config=COMPACT)
    reader = open_partition(path, engine=other_engine, config=COMPACT)
    try:
        fill_keyed(cleaner, 40, keys=5)
        cleaner.roll()
        before = list(reader.records())
        view = reader.read(0, 10_000)
        old = bytes(view)
        cleaner.compact(NOW)
        assert triples(reader.records()) == latest_per_key(before)
        assert bytes(view) == old, "a view of a swapped-out segment stays valid"
        assert reader.append([b"after"], keys=[b"new"], timestamps_ms=[TS]) == cleaner.end_offset - 1
        assert triples(cleaner.records())[-1] == (reader.end_offset - 1, b"new", b"after")
    finally:
        cleaner.close()
        reader.close()


def _spawn(mode: str, engine: str, path: Path, config: dict, *args: object, env: dict | None = None):
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, str(CHILD), mode, engine, str(path), json.dumps(config), *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**same_pylog_env(), **(env or {})},
    )


def _line(proc) -> str:
    line = proc.stdout.readline().decode().strip()
    assert line, proc.stderr.read().decode()
    return line


def test_another_process_reads_and_appends_while_this_one_compacts(engine, other_engine, tmp_path):
    path = tmp_path / "busy-0"
    keys = 12
    config = {**COMPACT, "segment.bytes": 1500}
    log = open_partition(path, engine=engine, config=config)
    try:
        fill_keyed(log, 40, keys=keys)
        initial = list(log.records())
        appender = _spawn("appender", other_engine, path, config, keys)
        tail = _spawn("tail", other_engine, path, config)
        with reaped([appender, tail]):
            assert _line(appender) == "ready" and _line(tail) == "ready"
            bases: list[int] = []
            for round_ in range(6):
                # 15 batches asked of the other process, appended while this one compacts
                appender.stdin.write(b"go\n" * 15)
                appender.stdin.flush()
                bases.extend(int(_line(appender)) for _ in range(5))  # dirty data to clean
                log.roll()
                result = log.compact(NOW + round_)
                assert result.skipped is None, result
                bases.extend(int(_line(appender)) for _ in range(10))
            appender.stdin.close()
            stop = int(_line(appender).split()[1])
            assert appender.wait(60) == 0
            seen = json.loads(_line(tail))
            assert tail.wait(60) == 0
        n = len(bases)
        written = table(initial)
        for i in range(n):
            ks, vs = appended_batch(i, keys)
            written.update(zip(ks, vs, strict=True))
        written[b"STOP"] = b"STOP"
        offsets = [o for o, _, _ in seen]
        assert offsets == sorted(set(offsets)), "the tailing reader went forwards only"
        got: dict[bytes, bytes] = {}
        for _, k, v in seen:
            got[k.encode()] = v.encode()
        assert got == written, "the other process's table is the log's table"
        assert seen[-1][0] == stop
        log.roll()
        log.compact(NOW + 100)
        assert table(log.records()) == written
        assert len({r.key for r in log.records()}) == len(list(log.records())), "one record per key"
    finally:
        log.close()
