"""The reference engine's storage layer on its own: indexes, rolls, recovery, swaps, locking,
several processes on one directory (modelled by several objects: ``flock`` is per open file
description), checkpoints and the clean-shutdown marker.

The expected index bytes are computed here from the segment bytes by a small independent
implementation of the contract's index rules (``expected_indexes``), not with pylog's own code.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import reaped, xor_byte

from pylog.config import LogConfig
from pylog.errors import (
    CorruptBatchError,
    LogClosedError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
)
from pylog.reference import record
from pylog.reference.checkpoint import topic_partition
from pylog.reference.log import PartitionLog

HEADER = struct.Struct(">qiiBIhiqqqhii")
CLEAN = ".kafka_cleanshutdown"
CHECKPOINT = "recovery-point-offset-checkpoint"


def open_log(path: Path | str, **settings: object) -> PartitionLog:
    config = {k.replace("_", "."): v for k, v in settings.items()}
    return PartitionLog(str(path), LogConfig.from_mapping(config))


def bases_of(path: Path) -> list[int]:
    return sorted(int(p.name[:20]) for p in path.glob("*.log"))


def seg(path: Path, base: int, suffix: str) -> Path:
    return path / f"{base:020d}{suffix}"


def batches(data: bytes) -> list[tuple[int, int, int, int, int]]:
    """(position, baseOffset, lastOffset, maxTimestamp, size) of every whole batch."""
    out = []
    pos = 0
    while pos + 61 <= len(data):
        fields = HEADER.unpack_from(data, pos)
        size = 12 + fields[1]
        if pos + size > len(data):
            break
        out.append((pos, fields[0], fields[0] + fields[6], fields[8], size))
        pos += size
    return out


def expected_indexes(data: bytes, base: int, interval: int, sealed: bool) -> tuple[bytes, bytes]:
    """docs/partition-log.md "Index rules", written independently of pylog/reference/index.py."""
    offset_entries = []
    time_entries: list[tuple[int, int]] = []
    last_entry_pos = 0
    max_ts, max_ts_offset = -1, base
    for pos, _, last, batch_max_ts, _ in batches(data):
        if batch_max_ts > max_ts:
            max_ts, max_ts_offset = batch_max_ts, last
        if pos - last_entry_pos > interval:
            offset_entries.append((last - base, pos))
            if max_ts > (time_entries[-1][0] if time_entries else -1):
                time_entries.append((max_ts, max_ts_offset - base))
            last_entry_pos = pos
    if sealed and max_ts > (time_entries[-1][0] if time_entries else -1):
        time_entries.append((max_ts, max_ts_offset - base))
    return (
        b"".join(struct.pack(">ii", *e) for e in offset_entries),
        b"".join(struct.pack(">qi", *e) for e in time_entries),
    )


def fill(log: PartitionLog, n: int, *, per_batch: int = 3, ts0: int = 1_000) -> list[int]:
    """n batches with non-monotonic timestamps; returns their base offsets."""
    out = []
    for i in range(n):
        ts = [ts0 + ((i * 7919 + j * 31) % 500) for j in range(per_batch)]
        values = [b"value-%d-%d" % (i, j) * (1 + i % 4) for j in range(per_batch)]
        keys = [None if j == 0 else b"k%d" % j for j in range(per_batch)]
        out.append(log.append(values, keys=keys, timestamps_ms=ts))
    return out


def all_records(log: PartitionLog) -> list[tuple[int, bytes | None]]:
    return [(r.offset, r.value) for r in log.records()]


def crash_copy(src: Path, dst: Path) -> Path:
    """The directory as a crashed process would leave it: no clean-shutdown marker."""
    shutil.copytree(src, dst)
    (dst / CLEAN).unlink(missing_ok=True)
    return dst


# --------------------------------------------------------------------------------- basics


def test_append_read_records_roundtrip(tmp_path: Path) -> None:
    with open_log(tmp_path / "t-0", segment_bytes=600) as log:
        bases = fill(log, 40)
        assert bases == list(range(0, 120, 3))
        assert (log.start_offset, log.end_offset) == (0, 120)
        recs = list(log.records())
        assert [r.offset for r in recs] == list(range(120))
        assert recs[4].key == b"k1" and recs[3].key is None
        assert [r.offset for r in log.records(10, 20)] == list(range(10, 20))
        assert len(bases_of(tmp_path / "t-0")) > 3
        # read: whole batches of one segment, from the batch holding the offset, at least one
        one = log.read(4, 1)
        assert [r.offset for r in record.decode_records(one)] == [3, 4, 5]
        whole = log.read(0, 10**9)
        assert len(whole) == os.path.getsize(seg(tmp_path / "t-0", 0, ".log"))
        assert len(log.read(120, 100)) == 0
        with pytest.raises(OffsetOutOfRangeError):
            log.read(121, 100)
        with pytest.raises(OffsetOutOfRangeError):
            log.records(121)
        with pytest.raises(OffsetOutOfRangeError):
            log.records(10, 5)


def test_read_columns_across_segments(tmp_path: Path) -> None:
    with open_log(tmp_path / "c-0", segment_bytes=300) as log:
        fill(log, 20)
        cols = log.read_columns(5, 40)
        expected = [r for r in log.records(5)][:40]
        assert cols.offsets.tolist() == [r.offset for r in expected]
        assert cols.timestamps.tolist() == [r.timestamp for r in expected]
        assert [cols.key(i) for i in range(cols.num_records)] == [r.key for r in expected]
        assert [cols.value(i) for i in range(cols.num_records)] == [r.value for r in expected]
        assert cols.key_offsets.dtype.name == "int64" and len(cols.key_offsets) == 41
        assert cols.key_null.tolist() == [r.key is None for r in expected]
        assert log.read_columns(60, 10).num_records == 0


def test_closed_log_raises(tmp_path: Path) -> None:
    log = open_log(tmp_path / "x-1")
    log.append([b"a"])
    log.close()
    log.close()  # idempotent
    assert log.closed
    for call in (
        lambda: log.append([b"b"]),
        lambda: log.end_offset,
        lambda: log.read(0, 10),
        lambda: log.records(),
        lambda: log.sync(),
        lambda: log.roll(),
        lambda: log.wait_for(0, 1),
    ):
        with pytest.raises(LogClosedError):
            call()
    assert "closed" in repr(log)


def test_path_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        open_log(tmp_path / "f")


def test_too_large_writes_nothing(tmp_path: Path) -> None:
    with open_log(tmp_path / "l-0", max_message_bytes=200) as log:
        log.append([b"x"])
        size = os.path.getsize(seg(tmp_path / "l-0", 0, ".log"))
        with pytest.raises(RecordTooLargeError):
            log.append([b"y" * 300])
        with pytest.raises(RecordTooLargeError):
            log.append_raw(_big_raw_batch(300))
        assert log.end_offset == 1
        assert os.path.getsize(seg(tmp_path / "l-0", 0, ".log")) == size


def _big_raw_batch(n: int) -> bytes:
    values, keys, headers, ts = record.prepare_records([b"z" * n], None, None, [5], 5)
    return record.encode_batch(0, values, keys, headers, ts, "none", None)


def test_append_raw_rewrites_base_offset(tmp_path: Path) -> None:
    with open_log(tmp_path / "r-0") as log:
        log.append([b"a", b"b"])
        raw = bytearray(_big_raw_batch(3))
        struct.pack_into(">q", raw, 0, 12345)
        assert log.append_raw(raw) == 2
        assert [(r.offset, r.value) for r in log.records(2)] == [(2, b"zzz")]
        raw[30] ^= 1
        with pytest.raises(CorruptBatchError):
            log.append_raw(raw)
        assert log.end_offset == 3


# --------------------------------------------------------------------------------- indexes


def test_indexes_are_a_function_of_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "idx-2"
    interval = 150
    with open_log(path, segment_bytes=3000, index_interval_bytes=interval) as log:
        fill(log, 120)
        log.roll()
        fill(log, 7)
    bases = bases_of(path)
    assert len(bases) >= 4
    written = {}
    for i, base in enumerate(bases):
        data = seg(path, base, ".log").read_bytes()
        want = expected_indexes(data, base, interval, sealed=i < len(bases) - 1)
        got = (seg(path, base, ".index").read_bytes(), seg(path, base, ".timeindex").read_bytes())
        assert got == want, f"segment {base}"
        written[base] = got
    assert any(len(w[0]) > 0 for w in written.values())
    # recovery rebuilds exactly the same files
    for base in bases:
        seg(path, base, ".index").unlink()
        seg(path, base, ".timeindex").unlink()
    (path / CLEAN).unlink()
    (path / CHECKPOINT).unlink()
    with open_log(path, segment_bytes=3000, index_interval_bytes=interval) as log:
        assert log.end_offset == 127 * 3
    for base in bases:
        got = (seg(path, base, ".index").read_bytes(), seg(path, base, ".timeindex").read_bytes())
        assert got == written[base], f"segment {base}"


def test_missing_index_below_recovery_point_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "idx-3"
    with open_log(path, segment_bytes=2000, index_interval_bytes=100) as log:
        fill(log, 60)
    first = bases_of(path)[0]
    want = seg(path, first, ".index").read_bytes()
    seg(path, first, ".index").unlink()
    with seg(path, first, ".timeindex").open("ab") as f:
        f.write(b"\x00\x01\x02")  # ragged: not a whole number of entries
    want_time = seg(path, first, ".timeindex").read_bytes()[:-3]
    (path / CLEAN).unlink()
    with open_log(path, segment_bytes=2000, index_interval_bytes=100) as log:
        assert log.end_offset == 180
    assert seg(path, first, ".index").read_bytes() == want
    assert seg(path, first, ".timeindex").read_bytes() == want_time


def test_offset_for_timestamp(tmp_path: Path) -> None:
    with open_log(tmp_path / "ts-0", segment_bytes=500, index_interval_bytes=50) as log:
        fill(log, 60)
        recs = list(log.records())
        for target in (0, 1_000, 1_001, 1_137, 1_250, 1_499, 1_500):
            want = next((r.offset for r in recs if r.timestamp >= target), None)
            assert log.offset_for_timestamp(target) == want, target


# --------------------------------------------------------------------------------- rolls


def test_roll_on_segment_bytes(tmp_path: Path) -> None:
    path = tmp_path / "roll-0"
    with open_log(path, segment_bytes=700) as log:
        fill(log, 50)
        end = log.end_offset
    bases = bases_of(path)
    assert len(bases) > 2
    for i, base in enumerate(bases):
        data = seg(path, base, ".log").read_bytes()
        assert len(data) <= 700
        found = batches(data)
        assert found[0][1] == base
        nxt = bases[i + 1] if i + 1 < len(bases) else end
        assert found[-1][2] + 1 == nxt
        if i + 1 < len(bases):  # the next batch did not fit
            next_size = batches(seg(path, bases[i + 1], ".log").read_bytes())[0][4]
            assert len(data) + next_size > 700


def test_roll_on_segment_ms_uses_record_time(tmp_path: Path) -> None:
    path = tmp_path / "roll-1"
    with open_log(path, segment_ms=1000) as log:
        log.append([b"a"], timestamps_ms=[5_000])
        log.append([b"b"], timestamps_ms=[6_000])  # difference == segment.ms: no roll
        assert bases_of(path) == [0]
        log.append([b"c"], timestamps_ms=[6_001])  # > segment.ms after the first batch
        assert bases_of(path) == [0, 2]
        log.append([b"d"], timestamps_ms=[100])  # earlier time never rolls
        assert bases_of(path) == [0, 2]


def test_roll_on_full_index(tmp_path: Path) -> None:
    path = tmp_path / "roll-2"
    # 36 bytes: offset index full at 4 entries, time index at 36 // 12 - 1 = 2
    with open_log(path, segment_index_bytes=36, index_interval_bytes=0) as log:
        for i in range(12):
            log.append([b"v"], timestamps_ms=[100])  # one time entry only (same timestamp)
            del i
    # interval 0: every batch but the first gets an offset entry → full after 5 batches
    assert bases_of(path) == [0, 5, 10]
    assert os.path.getsize(seg(path, 0, ".index")) == 4 * 8
    path2 = tmp_path / "roll-3"
    with open_log(path2, segment_index_bytes=36, index_interval_bytes=0) as log:
        for i in range(6):
            log.append([b"v"], timestamps_ms=[100 + i])  # a time entry per batch
    # time index full at 2 entries (batches 1, 2) → roll before the 4th batch
    assert bases_of(path2) == [0, 3]
    assert os.path.getsize(seg(path2, 0, ".timeindex")) == 2 * 12  # + no seal: 102 == last


def test_roll_on_empty_is_noop(tmp_path: Path) -> None:
    path = tmp_path / "roll-4"
    with open_log(path) as log:
        log.roll()
        assert bases_of(path) == [0]
        log.append([b"a"])
        log.roll()
        log.roll()
        assert bases_of(path) == [0, 1]
        assert log.append([b"b"]) == 1


# --------------------------------------------------------------------------------- recovery


@pytest.fixture
def pristine(tmp_path: Path) -> tuple[Path, list[tuple[int, bytes | None]]]:
    path = tmp_path / "src-0"
    with open_log(path, segment_bytes=1000, index_interval_bytes=100) as log:
        fill(log, 30)
        log.append([b"last", b"one"], keys=[b"k", None], headers=[[("h", b"v")], []])
        recs = all_records(log)
    return path, recs


def test_recovery_truncates_at_every_byte_of_the_last_batch(tmp_path: Path, pristine) -> None:
    src, recs = pristine
    last_base = bases_of(src)[-1]
    data = seg(src, last_base, ".log").read_bytes()
    pos, base, _, _, size = batches(data)[-1]
    for cut in range(pos, pos + size):
        dst = crash_copy(src, tmp_path / f"cut{cut}-0")
        with open(seg(dst, last_base, ".log"), "r+b") as f:
            f.truncate(cut)
        with open_log(dst, segment_bytes=1000, index_interval_bytes=100) as log:
            assert log.end_offset == base
            assert all_records(log) == [r for r in recs if r[0] < base]
        assert os.path.getsize(seg(dst, last_base, ".log")) == pos
        want = expected_indexes(data[:pos], last_base, 100, sealed=False)
        assert seg(dst, last_base, ".index").read_bytes() == want[0]
        assert seg(dst, last_base, ".timeindex").read_bytes() == want[1]


def test_recovery_cuts_at_a_flipped_bit(tmp_path: Path, pristine) -> None:
    src, recs = pristine
    last_base = bases_of(src)[-1]
    data = seg(src, last_base, ".log").read_bytes()
    pos, base, _, _, size = batches(data)[-1]
    # bytes 0..15 (baseOffset, length, partitionLeaderEpoch) are outside the CRC; from the magic on
    # every bit flip must be caught
    for at in range(pos + 16, pos + size, 3):
        dst = crash_copy(src, tmp_path / f"flip{at}-0")
        xor_byte(seg(dst, last_base, ".log"), at, 0x10)
        with open_log(dst, segment_bytes=1000) as log:
            assert log.end_offset == base, at
            assert all_records(log) == [r for r in recs if r[0] < base]


def test_recovery_deletes_later_segments(tmp_path: Path, pristine) -> None:
    src, recs = pristine
    bases = bases_of(src)
    assert len(bases) >= 3
    dst = crash_copy(src, tmp_path / "later-0")
    (dst / CHECKPOINT).unlink()  # recovery point unknown: every segment is scanned
    victim = bases[1]
    data = seg(dst, victim, ".log").read_bytes()
    pos, base, _, _, _ = batches(data)[1]
    with open(seg(dst, victim, ".log"), "r+b") as f:
        f.seek(pos + 40)
        f.write(b"\xff")
    with open_log(dst, segment_bytes=1000) as log:
        assert bases_of(dst) == bases[:2]
        assert log.end_offset == base
        assert all_records(log) == [r for r in recs if r[0] < base]
        assert log.append([b"new"]) == base  # appends go on from the cut
    assert not seg(dst, bases[2], ".index").exists()
    assert not seg(dst, bases[2], ".timeindex").exists()


@pytest.mark.parametrize("crash_at", ["first delete", "second delete", "the cut"])
def test_a_crash_inside_a_recovery_cut_recovers_to_the_same_cut(
    tmp_path: Path, pristine, monkeypatch, crash_at: str
) -> None:
    """A crash at any step of a recovery cut (deleting the later segments, truncating) leaves a
    directory the next recovery brings to the same end: no later segment survives beside a cut,
    so offsets never show a gap. (Cutting before deleting failed this at "first delete".)"""
    import pylog.reference.recovery as recovery_module

    src, recs = pristine
    bases = bases_of(src)
    assert len(bases) >= 4
    dst = crash_copy(src, tmp_path / "crashcut-0")
    (dst / CHECKPOINT).unlink()
    victim = bases[1]
    data = seg(dst, victim, ".log").read_bytes()
    pos, base, _, _, _ = batches(data)[1]
    with open(seg(dst, victim, ".log"), "r+b") as f:
        f.seek(pos + 40)
        f.write(b"\xff")

    class Crash(Exception):
        pass

    crash_on_delete = {"first delete": 1, "second delete": 2}.get(crash_at)
    deletes = []
    real_delete = recovery_module.delete_segment_files

    def delete(dir_path: str, segment_base: int) -> None:
        deletes.append(segment_base)
        if len(deletes) == crash_on_delete:
            raise Crash
        real_delete(dir_path, segment_base)

    def truncate(fd: int, length: int) -> None:
        raise Crash

    real_ftruncate = os.ftruncate  # recovery_module.os is the global os: patched only inside
    with monkeypatch.context() as patch:
        patch.setattr(recovery_module, "delete_segment_files", delete)
        if crash_at == "the cut":
            patch.setattr(recovery_module.os, "ftruncate", truncate)
        with pytest.raises(Crash):
            open_log(dst, segment_bytes=1000)
    assert os.ftruncate is real_ftruncate, "restored before the reopen, which must really cut"
    assert len(deletes) == (crash_on_delete or len(bases) - 2), "the crash hit the step under test"
    with open_log(dst, segment_bytes=1000) as log:
        assert bases_of(dst) == bases[:2]
        assert log.end_offset == base
        assert all_records(log) == [r for r in recs if r[0] < base]


def test_corruption_below_recovery_point_is_reported_not_cut(tmp_path: Path, pristine) -> None:
    src, _ = pristine
    bases = bases_of(src)
    dst = crash_copy(src, tmp_path / "below-0")  # checkpoint = end: everything is below it
    victim = bases[0]
    data = seg(dst, victim, ".log").read_bytes()
    pos, base, last, _, _ = batches(data)[2]
    xor_byte(seg(dst, victim, ".log"), pos + 70, 0xFF)
    with open_log(dst, segment_bytes=1000) as log:
        assert bases_of(dst) == bases
        assert len(seg(dst, victim, ".log").read_bytes()) == len(data)
        with pytest.raises(CorruptBatchError) as info:
            list(log.records())
        assert info.value.path == str(seg(dst, victim, ".log"))
        assert info.value.position == pos
        with pytest.raises(CorruptBatchError) as info:
            log.read_columns(base, 10)
        assert info.value.position == pos
        assert [r.offset for r in log.records(last + 1, last + 4)] == [last + 1, last + 2, last + 3]


def test_empty_directory_gets_segment_zero(tmp_path: Path) -> None:
    path = tmp_path / "empty-0"
    with open_log(path) as log:
        assert (log.start_offset, log.end_offset) == (0, 0)
        assert list(log.records()) == []
    assert bases_of(path) == [0]
    assert seg(path, 0, ".index").exists() and seg(path, 0, ".timeindex").exists()


def test_temp_files_swap_completion_and_orphans(tmp_path: Path) -> None:
    path = tmp_path / "swap-0"
    with open_log(path, segment_bytes=800) as log:
        fill(log, 20)
        recs = all_records(log)
    bases = bases_of(path)
    assert len(bases) >= 4
    b0, b1, b2, b3 = bases[:4]
    # a finished clean of [b0, b2) as one segment, interrupted before the swap
    merged = seg(path, b0, ".log").read_bytes() + seg(path, b1, ".log").read_bytes()
    seg(path, b0, ".log.swap").write_bytes(merged)
    # an incomplete split at or above the lowest .cleaned base: deleted
    seg(path, b3, ".log.cleaned").write_bytes(b"junk")
    seg(path, b3, ".log.swap").write_bytes(b"junk")
    seg(path, b2, ".log.deleted").write_bytes(b"junk")
    orphan = seg(path, 99_999, ".index")
    orphan.write_bytes(b"\x00" * 8)
    (path / CLEAN).unlink()
    with open_log(path, segment_bytes=800) as log:
        assert all_records(log) == recs
    remaining = bases_of(path)
    assert remaining[0] == b0 and b1 not in remaining and b2 in remaining
    assert seg(path, b0, ".log").read_bytes() == merged
    assert not list(path.glob("*.swap")) and not list(path.glob("*.cleaned"))
    assert not list(path.glob("*.deleted")) and not orphan.exists()
    assert not seg(path, b1, ".index").exists()


# --------------------------------------------------------------------------------- processes


def test_two_objects_interleave_and_see_each_other(tmp_path: Path) -> None:
    path = tmp_path / "mp-0"
    a = open_log(path, segment_bytes=400)
    b = open_log(path, segment_bytes=400)
    try:
        got = []
        for i in range(30):
            writer = a if i % 3 else b
            got.append(writer.append([b"%d" % i, b"x"]))
        assert got == list(range(0, 60, 2))
        assert a.end_offset == b.end_offset == 60
        assert all_records(a) == all_records(b)
        assert [v for _, v in all_records(b)][::2] == [b"%d" % i for i in range(30)]
        assert len(bases_of(path)) > 3  # rolls by either object are seen by the other
        a.roll()
        assert b.append([b"after-roll"]) == 60
        assert bases_of(path)[-1] == 60
        assert [r.value for r in a.records(60)] == [b"after-roll"]
    finally:
        a.close()
        assert not (path / CLEAN).exists()  # b is still open
        b.close()
    assert (path / CLEAN).exists()


def test_second_opener_runs_no_recovery_and_first_opener_does(tmp_path: Path) -> None:
    path = tmp_path / "mp-1"
    a = open_log(path)
    a.append([b"one"])
    whole = os.path.getsize(seg(path, 0, ".log"))
    # a dead writer's torn tail: half a batch after the last whole one
    with open(seg(path, 0, ".log"), "ab") as f:
        f.write(_big_raw_batch(10)[:30])
    b = open_log(path)  # not the first opener: no recovery, the torn tail is just not seen
    assert b.end_offset == 1 and a.end_offset == 1
    assert os.path.getsize(seg(path, 0, ".log")) == whole + 30
    assert b.append([b"two"]) == 1  # a writer truncates the torn tail first
    data = seg(path, 0, ".log").read_bytes()
    assert [x[0] for x in batches(data)] == [0, whole] and len(data) == whole + batches(data)[1][4]
    assert a.end_offset == 2
    assert [r.value for r in a.records()] == [b"one", b"two"]
    a.close()
    b.close()
    with open_log(path) as c:
        assert [r.value for r in c.records()] == [b"one", b"two"]


def test_dead_writer_missing_index_entries_are_repaired(tmp_path: Path) -> None:
    path = tmp_path / "mp-2"
    with open_log(path, index_interval_bytes=0) as a:
        for _ in range(5):
            a.append([b"x" * 10])
        # a writer that died between its log write and its index write
        os.truncate(seg(path, 0, ".index"), 8 + 3)
        b = open_log(path, index_interval_bytes=0)
        b.append([b"y"])
        data = seg(path, 0, ".log").read_bytes()
        want = expected_indexes(data, 0, 0, sealed=False)
        assert seg(path, 0, ".index").read_bytes() == want[0]
        b.close()


def test_wait_for(tmp_path: Path) -> None:
    path = tmp_path / "w-0"
    with open_log(path) as a, open_log(path) as b:
        assert a.wait_for(0, 0) is False
        a.append([b"x"])
        assert a.wait_for(0, 0) is True
        assert a.wait_for(1, 1) is False
        started = threading.Event()
        results: list[bool] = []

        def waiter(log: PartitionLog) -> None:
            started.set()
            results.append(log.wait_for(1, 30_000))

        t = threading.Thread(target=waiter, args=(a,))
        t.start()
        started.wait()
        b.append([b"from another object"])  # only visible to `a` through the disk
        t.join(20)
        assert results == [True]
        t = threading.Thread(target=waiter, args=(b,))
        started.clear()
        t.start()
        started.wait()
        b.append([b"same object"])
        t.join(20)
        assert results == [True, True]


# --------------------------------------------------------------------------------- checkpoints


def test_clean_shutdown_marker_and_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "orders-7"
    with open_log(path) as log:
        log.append([b"a", b"b", b"c"])
        assert not (path / CLEAN).exists()
    assert (path / CLEAN).exists() and (path / CLEAN).stat().st_size == 0
    assert (path / CHECKPOINT).read_text() == "0\n1\norders 7 3\n"
    assert not (path / (CHECKPOINT + ".tmp")).exists()
    with open_log(path) as log:
        assert not (path / CLEAN).exists()  # the first opener consumes it
        log.append([b"d"])
        log.sync()
        assert (path / CHECKPOINT).read_text() == "0\n1\norders 7 4\n"
    other = tmp_path / "no_partition"
    with open_log(other) as log:
        log.append([b"a"])
    assert (other / CHECKPOINT).read_text() == "0\n1\nno_partition 0 1\n"


def test_flush_messages_syncs(tmp_path: Path) -> None:
    path = tmp_path / "f-1"
    with open_log(path, flush_messages=2) as log:
        log.append([b"a"])
        assert not (path / CHECKPOINT).exists()
        log.append([b"b"])
        assert (path / CHECKPOINT).read_text() == "0\n1\nf 1 2\n"


def test_batches_larger_than_the_scan_window(tmp_path: Path) -> None:
    path = tmp_path / "big-0"
    big = [b"a" * 70_000, b"b" * 150_000]
    with open_log(path) as log:
        log.append([b"small"])
        log.append(big)
        log.append([b"tail"])
        assert [r.value for r in log.records(1)] == [*big, b"tail"]
        assert len(log.read(2, 1)) == 12 + batches(seg(path, 0, ".log").read_bytes())[1][4] - 12
        with open_log(path) as other:  # derives the active segment from the bytes
            assert other.end_offset == 4
            assert [r.offset for r in other.records(2)] == [2, 3]
    dst = crash_copy(path, tmp_path / "big-1")
    (dst / CHECKPOINT).unlink()
    with open_log(dst) as log:
        assert log.end_offset == 4
        assert [r.value for r in log.records()] == [b"small", *big, b"tail"]


@pytest.mark.parametrize(
    ("new_base", "reason"),
    [(0, "baseOffset below the previous nextOffset"), (2**31 + 5, "relative offset past int32")],
)
def test_recovery_checks_offsets(tmp_path: Path, pristine, new_base: int, reason: str) -> None:
    src, recs = pristine
    victim = bases_of(src)[1]
    found = batches(seg(src, victim, ".log").read_bytes())
    assert len(found) >= 3, reason
    pos, base = found[2][0], found[2][1]
    dst = crash_copy(src, tmp_path / "offsets-0")
    (dst / CHECKPOINT).unlink()
    with open(seg(dst, victim, ".log"), "r+b") as f:
        f.seek(pos)
        f.write(struct.pack(">q", victim + new_base))  # baseOffset is outside the CRC
    with open_log(dst) as log:
        assert log.end_offset == base
        assert all_records(log) == [r for r in recs if r[0] < base]
    assert bases_of(dst) == bases_of(src)[:2]


def test_no_time_roll_when_the_first_batch_has_no_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "roll-5"
    raw = bytearray(_big_raw_batch(1))
    struct.pack_into(">qq", raw, 27, -1, -1)  # baseTimestamp, maxTimestamp
    struct.pack_into(">I", raw, 17, record.crc32c(memoryview(raw)[21:]))
    with open_log(path, segment_ms=10) as log:
        log.append_raw(raw)
        log.append([b"later"], timestamps_ms=[10**12])
        assert bases_of(path) == [0]
        log.append([b"much later"], timestamps_ms=[10**12 + 11])  # first batch: no timestamp
        assert bases_of(path) == [0]


CHILD = """
import os, sys
from pylog.config import LogConfig
from pylog.reference.log import PartitionLog
path, tag, n, mode = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3]), sys.argv[4]
config = LogConfig.from_mapping({"segment.bytes": 2000, "index.interval.bytes": 64})
log = PartitionLog(path, config)
for i in range(n):
    log.append([tag + b"-%d" % i])
if mode == "die":
    os._exit(0)  # acknowledged appends, no close: like a SIGKILL after the last write
log.close()
"""


def _child(path: Path, tag: str, n: int, mode: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    return subprocess.Popen([sys.executable, "-c", CHILD, str(path), tag, str(n), mode], env=env)


def test_processes_append_concurrently(tmp_path: Path) -> None:
    path = tmp_path / "proc-0"
    with reaped([_child(path, tag, 150, "close") for tag in ("a", "b", "c")]) as children:
        assert [c.wait(120) for c in children] == [0, 0, 0]
    assert (path / CLEAN).exists()
    with open_log(path, segment_bytes=2000, index_interval_bytes=64) as log:
        values = [r.value for r in log.records()]
        assert [r.offset for r in log.records()] == list(range(450))
    for tag in ("a", "b", "c"):  # each process's appends in its own order, none lost
        assert [v for v in values if v.startswith(tag.encode())] == [
            b"%s-%d" % (tag.encode(), i) for i in range(150)
        ]
    bases = bases_of(path)
    for i, base in enumerate(bases):
        data = seg(path, base, ".log").read_bytes()
        want = expected_indexes(data, base, 64, sealed=i < len(bases) - 1)
        got = (seg(path, base, ".index").read_bytes(), seg(path, base, ".timeindex").read_bytes())
        assert got == want, f"segment {base}"


def test_acknowledged_appends_survive_a_dead_process(tmp_path: Path) -> None:
    path = tmp_path / "proc-1"
    with reaped([_child(path, "d", 40, "die")]) as (child,):
        assert child.wait(120) == 0
    assert not (path / CLEAN).exists()
    with open_log(path, segment_bytes=2000, index_interval_bytes=64) as log:  # recovers
        assert [r.value for r in log.records()] == [b"d-%d" % i for i in range(40)]


def test_threads_share_one_log(tmp_path: Path) -> None:
    path = tmp_path / "thr-0"
    with open_log(path, segment_bytes=3000) as log:
        bases: list[int] = []
        seen: list[int] = []

        def writer(tag: int) -> None:
            for i in range(100):
                bases.append(log.append([b"%d-%d" % (tag, i)]))

        def reader() -> None:
            while log.wait_for(399, 20_000) is False:
                pass
            seen.append(sum(1 for _ in log.records()))

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        threads.append(threading.Thread(target=reader))
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(bases) == list(range(400))
        assert seen == [400]
        assert [r.offset for r in log.records()] == list(range(400))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("orders-3", ("orders", 3)),
        ("my-topic-12", ("my-topic", 12)),
        ("t-007", ("t", 7)),
        ("plain", ("plain", 0)),
        ("t-", ("t-", 0)),
        ("-5", ("-5", 0)),
        ("t-99999999999", ("t-99999999999", 0)),  # not a u32
    ],
)
def test_checkpoint_topic_partition(name: str, expected: tuple[str, int]) -> None:
    assert topic_partition(f"/x/{name}") == expected
    assert topic_partition(f"/x/{name}/") == expected


def test_replaced_active_segment_triggers_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "re-0"
    a = open_log(path)
    try:
        for v in (b"a", b"b", b"c"):
            a.append([v])
        other = tmp_path / "re-1"
        shutil.copytree(path, other)
        (other / CLEAN).unlink(missing_ok=True)
        with open_log(other) as c:
            c.append([b"d"])
            c.append([b"e"])
        # a new inode under the old name: the one `a` holds now has no links
        os.replace(seg(other, 0, ".log"), seg(path, 0, ".log"))
        assert a.end_offset == 5
        assert [r.value for r in a.records()] == [b"a", b"b", b"c", b"d", b"e"]
        assert a.append([b"f"]) == 5
    finally:
        a.close()


# ---------------------------------------------------------------------------------------------
# what gets fsynced

FS_TS = 1_700_000_000_000


@pytest.fixture
def fsynced(monkeypatch):
    """Record the path behind every fd the reference modules fsync (they all call ``os.fsync``
    of the one ``os`` module), still doing the real fsync."""
    import pylog.reference.checkpoint as checkpoint_module
    import pylog.reference.log as log_module
    import pylog.reference.recovery as recovery_module

    real = os.fsync
    calls: list[str] = []

    def recording(fd: int) -> None:
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    assert all(m.os is os for m in (log_module, checkpoint_module, recovery_module))
    monkeypatch.setattr(os, "fsync", recording)
    return calls


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to name fsynced fds")
def test_sync_fsyncs_the_log_the_directory_and_the_checkpoint(tmp_path, fsynced):
    path = tmp_path / "fs-0"
    log = open_log(path)
    try:
        directory, ckpt_tmp = (
            str(path.resolve()),
            str(path.resolve() / "recovery-point-offset-checkpoint.tmp"),
        )
        log_file = str(seg(path, 0, ".log").resolve())
        assert fsynced[-1:] == [directory], "recovery at open ends with a directory fsync"
        fsynced.clear()
        log.append([b"a", b"b"], timestamps_ms=[FS_TS, FS_TS])
        log.flush()
        assert fsynced == [], "flush() writes out, it never fsyncs"
        assert not (path / "recovery-point-offset-checkpoint").exists() or read_text_offset(path) == 0

        log.sync()  # the first sync after the segment was created: the directory entry too
        assert log_file in fsynced
        assert fsynced.index(log_file) < fsynced.index(ckpt_tmp), "data before the checkpoint"
        assert fsynced[fsynced.index(ckpt_tmp) + 1 :] == [directory], "the checkpoint's rename"
        assert directory in fsynced[: fsynced.index(ckpt_tmp)], "the new segment's directory entry"
        assert read_text_offset(path) == 2
        fsynced.clear()

        log.append([b"c"], timestamps_ms=[FS_TS])
        log.sync()  # no new file since the last sync: the directory only for the checkpoint
        assert log_file in fsynced
        assert fsynced[fsynced.index(ckpt_tmp) :] == [ckpt_tmp, directory]
        assert directory not in fsynced[: fsynced.index(ckpt_tmp)]
        assert read_text_offset(path) == 3
        fsynced.clear()

        log.roll()
        log.append([b"d"], timestamps_ms=[FS_TS])
        assert fsynced == []
        log.sync()  # after a roll: the new segment's file and the directory, then the checkpoint
        new_file = str(seg(path, 3, ".log").resolve())
        assert new_file in fsynced
        # the roll at the recovery point wrote the old segment's seal entry since the last sync
        assert str(seg(path, 0, ".timeindex").resolve()) in fsynced
        assert fsynced.index(new_file) < fsynced.index(ckpt_tmp)
        assert directory in fsynced[: fsynced.index(ckpt_tmp)]
        assert fsynced[-1] == directory
        assert read_text_offset(path) == 4
    finally:
        log.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to name fsynced fds")
def test_flush_messages_one_fsyncs_every_append(tmp_path, fsynced):
    path = tmp_path / "fm-0"
    log = open_log(path, **{"flush.messages": 1})
    try:
        log_file = str(seg(path, 0, ".log").resolve())
        ckpt_tmp = str(path.resolve() / "recovery-point-offset-checkpoint.tmp")
        for i in range(3):
            fsynced.clear()
            log.append([b"v%d" % i], timestamps_ms=[FS_TS])
            assert fsynced.count(log_file) == 1, fsynced
            assert fsynced.index(log_file) < fsynced.index(ckpt_tmp)
            assert read_text_offset(path) == i + 1
        fsynced.clear()
        log.flush()
        assert fsynced == []
    finally:
        log.close()


def read_text_offset(path: Path) -> int:
    return int((path / "recovery-point-offset-checkpoint").read_text().split()[-1])
