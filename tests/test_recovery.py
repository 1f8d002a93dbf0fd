"""Recovery and durability (docs/partition-log.md "Durability, recovery and processes"; Kafka's LogLoader and LogSegment.recover).

A crash is simulated by closing cleanly and then removing ``.kafka_cleanshutdown`` (optionally
putting back an older ``recovery-point-offset-checkpoint``), or for real by SIGKILL of a child process.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from helpers import (
    IN_CI,
    as_tuples,
    check_segment_indexes,
    expected_indexes,
    parse_batches,
    read_checkpoint,
    reaped,
    segment_bases,
    segment_files,
    segment_name,
    spawn_child,
    synced_offset,
    write_shared_field,
    xor_byte,
)
from hypothesis import given
from hypothesis import strategies as st
from writer_process import batch_values

from pylog.bench_processes import same_pylog_env
from pylog.engine import ENGINES, open_partition
from pylog.errors import CorruptBatchError

TS = 1_700_000_000_000
CLEAN = ".kafka_cleanshutdown"
CHECKPOINT = "recovery-point-offset-checkpoint"
INTERVAL = 100


def crash(path: Path, checkpoint_offset: int | None = None) -> None:
    """Turn a cleanly closed directory into what an unclean stop leaves behind."""
    os.remove(path / CLEAN)
    if checkpoint_offset is None:
        (path / CHECKPOINT).unlink(missing_ok=True)
    else:
        (path / CHECKPOINT).write_text(f"0\n1\n{topic_partition(path)} {checkpoint_offset}\n")


def topic_partition(path: Path) -> str:
    topic, _, part = path.name.rpartition("-")
    return f"{topic} {part}" if topic and part.isdigit() else f"{path.name} 0"


def write_template(path: Path, engine: str, *, segments: int = 2) -> list[tuple]:
    """A closed log with ``segments`` segments; the last batch is small. Returns its records."""
    config = {"index.interval.bytes": INTERVAL}
    with open_partition(path, engine=engine, config=config) as log:
        for s in range(segments):
            for i in range(6):
                n = 1 + (i % 3)
                log.append(
                    [b"%d-%d-%d" % (s, i, j) * 5 for j in range(n)],
                    keys=[b"k%d" % j if j % 2 else None for j in range(n)],
                    timestamps_ms=[TS + 10 * i + j for j in range(n)],
                )
            if s < segments - 1:
                log.roll()
        log.append([b"last"], keys=[b"lk"], headers=[[("h", b"v")]], timestamps_ms=[TS + 999])
        return as_tuples(log.records())


def reopen_state(path: Path, engine: str):
    """Open (running recovery), read everything, close; return what a user can observe."""
    with open_partition(path, engine=engine, config={"index.interval.bytes": INTERVAL}) as log:
        state = (log.start_offset, log.end_offset, as_tuples(log.records()))
    return state, segment_files(path)


def recover_both(template: Path, tmp: Path, tag: str, mutate) -> tuple:
    """Copy ``template`` per engine, apply ``mutate``, reopen; assert identical outcomes."""
    outcomes = {}
    for engine in ENGINES:
        path = tmp / f"{tag}-{engine}" / template.name
        shutil.copytree(template, path)
        mutate(path)
        outcomes[engine] = reopen_state(path, engine)
    assert outcomes["native"][0] == outcomes["reference"][0]
    assert outcomes["native"][1] == outcomes["reference"][1], "files differ after recovery"
    return outcomes["reference"]


def last_batch(path: Path):
    base = segment_bases(path)[-1]
    data = (path / segment_name(base)).read_bytes()
    return base, data, parse_batches(data)[-1]


@pytest.mark.parametrize("writer", ENGINES)
@pytest.mark.parametrize("keep_checkpoint", [False, True])
def test_cut_last_batch_at_every_byte(both_engines, tmp_path, writer, keep_checkpoint):
    template = tmp_path / "template" / "cut-0"
    want = write_template(template, writer)
    end = want[-1][0] + 1
    base, data, batch = last_batch(template)
    log_name = segment_name(base)

    for cut in range(batch.position, batch.position + batch.size + 1):

        def mutate(path, cut=cut):
            crash(path, end if keep_checkpoint else None)
            os.truncate(path / log_name, cut)

        (start, new_end, records), files = recover_both(template, tmp_path, f"cut{cut}", mutate)
        if cut == batch.position + batch.size:
            assert (new_end, records) == (end, want)
        else:
            assert (start, new_end, records) == (0, end - 1, want[:-1]), cut
            assert files[log_name] == data[: batch.position]
        # a recovery rebuild ends with Kafka's final time entry, the last segment's too
        off, tim = expected_indexes(files[log_name], base, INTERVAL, sealed=True)
        assert files[segment_name(base, ".index")] == b"".join(struct.pack(">ii", *e) for e in off)
        assert files[segment_name(base, ".timeindex")] == b"".join(struct.pack(">qi", *e) for e in tim)


@pytest.mark.parametrize("writer", ENGINES)
def test_flip_bits_in_last_batch(both_engines, tmp_path, writer):
    template = tmp_path / "template" / "flip-0"
    want = write_template(template, writer)
    end = want[-1][0] + 1
    base, _, batch = last_batch(template)
    log_name = segment_name(base)
    for pos in range(batch.position, batch.position + batch.size):
        rel = pos - batch.position
        bit = rel % 8

        def mutate(path, pos=pos, bit=bit):
            crash(path)
            xor_byte(path / log_name, pos, 1 << bit)

        (_, new_end, records), _ = recover_both(template, tmp_path, f"flip{pos}", mutate)
        assert records[: len(want) - 1] == want[:-1], rel  # earlier batches are never touched
        if 8 <= rel < 12 or rel >= 16:  # length, magic and everything under the CRC: cut
            assert (new_end, records) == (end - 1, want[:-1]), rel
        elif 12 <= rel < 16:  # partitionLeaderEpoch is not under the CRC: kept as is
            assert (new_end, records) == (end, want), rel


def test_corrupt_non_last_segment_drops_later_segments(both_engines, tmp_path):
    template = tmp_path / "template" / "later-0"
    want = write_template(template, "reference", segments=3)
    bases = segment_bases(template)
    assert len(bases) == 3
    first = parse_batches((template / segment_name(0)).read_bytes())

    def mutate(path):
        crash(path)  # no checkpoint: recovery starts at segment 0
        os.truncate(path / segment_name(0), first[-1].position + first[-1].size - 3)

    (_, end, records), files = recover_both(template, tmp_path, "later", mutate)
    assert end == first[-1].base_offset
    assert records == want[:end]
    assert sorted(files) == [segment_name(0, s) for s in (".index", ".log", ".timeindex")]
    # the log goes on from there
    for engine in ENGINES:
        path = tmp_path / f"later-{engine}" / "later-0"
        with open_partition(path, engine=engine) as log:
            assert log.append([b"again"], timestamps_ms=[TS]) == end
            assert as_tuples(log.records())[:-1] == want[:end]


@pytest.mark.parametrize("where", ["value", "crc", "attributes"])
def test_corruption_below_recovery_point_is_reported_not_cut(engine, tmp_path, where):
    path = tmp_path / "below-0"
    with open_partition(path, engine=engine) as log:
        for i in range(5):
            log.append([b"value-%d" % i] * 3, timestamps_ms=[TS + i] * 3)
        log.sync()
        assert synced_offset(path) == 15
        log.roll()
        log.append([b"after"], timestamps_ms=[TS])
    data = (path / segment_name(0)).read_bytes()
    victim = parse_batches(data)[2]
    pos = {
        "value": victim.position + victim.size - 2,
        "crc": victim.position + 18,
        "attributes": victim.position + 22,
    }[where]
    crash(path, 15)  # the crash happened after sync(): segment 0 lies below the recovery point
    xor_byte(path / segment_name(0), pos, 0x40)
    with open_partition(path, engine=engine) as log:
        assert log.end_offset == 16, "corruption below the recovery point must not cut the log"
        assert (path / segment_name(0)).stat().st_size == len(data)
        assert [r.offset for r in log.records(0, victim.base_offset)] == list(range(6))
        with pytest.raises(CorruptBatchError) as info:
            list(log.records())
        assert Path(info.value.path).name == segment_name(0)
        assert Path(info.value.path).parent.resolve() == path.resolve()
        assert info.value.position == victim.position
        with pytest.raises(CorruptBatchError):
            log.read_columns(victim.base_offset, 10)
        raw = bytes(memoryview(log.read(victim.base_offset, 1)))  # framing only, no CRC check
        assert parse_batches(raw)[0].base_offset == victim.base_offset
        assert [r.value for r in log.records(15)] == [b"after"]


# ---------------------------------------------------------------------------------------------
# clean shutdown marker and recovery-point checkpoint


def test_clean_shutdown_marker(engine, tmp_path, open_log):
    path = tmp_path / "marker-0"
    log = open_log(path)
    assert not (path / CLEAN).exists()
    log.append([b"a"], timestamps_ms=[TS])
    second = open_log(path)  # a second open log of the same directory
    log.close()
    assert not (path / CLEAN).exists(), "only the last one to close writes the marker"
    assert second.end_offset == 1
    second.close()
    assert (path / CLEAN).exists()
    assert (path / CLEAN).stat().st_size == 0
    assert read_checkpoint(path) == ["0", "1", "marker 0 1"]
    again = open_log(path)
    assert not (path / CLEAN).exists(), "the first opener removes the marker"
    assert again.end_offset == 1


def test_clean_shutdown_skips_the_scan(engine, tmp_path):
    path = tmp_path / "skip-0"
    with open_partition(path, engine=engine) as log:
        log.append([b"one"], timestamps_ms=[TS])
        log.append([b"two"], timestamps_ms=[TS])
    data = (path / segment_name(0)).read_bytes()
    xor_byte(path / segment_name(0), len(data) - 3, 1)  # corrupt the last batch's value
    with open_partition(path, engine=engine) as log:
        assert log.end_offset == 2, "with the marker there is no scan, so nothing is cut"
        with pytest.raises(CorruptBatchError):
            list(log.records())
    os.remove(path / CLEAN)  # now the same bytes after an unclean stop: recovery cuts
    with open_partition(path, engine=engine) as log:
        assert log.end_offset == 1
        assert [r.value for r in log.records()] == [b"one"]


@pytest.mark.parametrize(
    "name, line",
    [("orders-12", "orders 12"), ("my-topic-0", "my-topic 0"), ("plain", "plain 0"), ("x-1a", "x-1a 0")],
)
def test_checkpoint_format_and_sync(engine, tmp_path, open_log, name, line):
    """sync() advances the recovery point (on the page); the checkpoint file is written at most
    every RECOVERY_POINT_CHECKPOINT_INTERVAL_MS by a sync (not within a test's first minute)
    and always by the last closer."""
    path = tmp_path / name
    log = open_log(path)
    log.append([b"a", b"b"], timestamps_ms=[TS, TS])
    log.sync()
    assert synced_offset(path) == 2
    assert not (path / CHECKPOINT).exists(), "a sync within the interval leaves the checkpoint"
    log.append([b"c"], timestamps_ms=[TS])
    log.flush()
    assert synced_offset(path) == 2, "only sync() advances it"
    log.close()
    assert (path / CHECKPOINT).read_text() == f"0\n1\n{line} 3\n"
    assert not (path / (CHECKPOINT + ".tmp")).exists()


@pytest.mark.parametrize("setting", [{"flush_messages": 1}, {"flush_ms": 0}, {"flush_messages": 3}])
def test_flush_policy_syncs(engine, tmp_path, open_log, setting):
    path = tmp_path / "flush-0"
    log = open_log(path, **setting)
    every = setting.get("flush_messages", 1)
    for i in range(1, 7):
        log.append([b"x"], timestamps_ms=[TS])
        assert synced_offset(path) == i - i % every


# ---------------------------------------------------------------------------------------------
# interrupted swaps and temporary files


def three_segments(path: Path, engine: str) -> list[tuple]:
    with open_partition(path, engine=engine, config={"index.interval.bytes": INTERVAL}) as log:
        for s in range(3):
            for i in range(5):
                log.append([b"s%d-%d" % (s, i)] * 2, timestamps_ms=[TS + 5 * s + i] * 2)
            if s < 2:
                log.roll()
        assert segment_bases(path) == [0, 10, 20]
        return as_tuples(log.records())


@pytest.mark.parametrize("checkpoint", [None, 30], ids=["full-recovery", "swap-below-recovery-point"])
@pytest.mark.parametrize("index_swaps", [False, True])
def test_swap_is_finished(both_engines, tmp_path, checkpoint, index_swaps):
    template = tmp_path / "template" / "swap-0"
    want = three_segments(template, "reference")
    tag = f"swap-{checkpoint}-{index_swaps}"

    def mutate(path):
        crash(path, checkpoint)
        # a compaction of [0, 20) that was interrupted after writing the .swap files
        merged = (path / segment_name(0)).read_bytes() + (path / segment_name(10)).read_bytes()
        (path / (segment_name(0) + ".swap")).write_bytes(merged)
        if index_swaps:
            off, tim = expected_indexes(merged, 0, INTERVAL, sealed=True)
            (path / (segment_name(0, ".index") + ".swap")).write_bytes(
                b"".join(struct.pack(">ii", *e) for e in off)
            )
            (path / (segment_name(0, ".timeindex") + ".swap")).write_bytes(
                b"".join(struct.pack(">qi", *e) for e in tim)
            )

    (_, end, records), files = recover_both(template, tmp_path, tag, mutate)
    assert (end, records) == (30, want)
    assert sorted(files) == sorted(
        segment_name(b, s) for b in (0, 20) for s in (".log", ".index", ".timeindex")
    )
    path = tmp_path / f"{tag}-native" / "swap-0"
    assert not [n for n in os.listdir(path) if n.endswith((".swap", ".cleaned", ".deleted"))]
    check_segment_indexes(path, INTERVAL)


def test_swap_at_or_above_cleaned_is_deleted(both_engines, tmp_path):
    template = tmp_path / "template" / "cleaned-0"
    want = three_segments(template, "reference")
    before = segment_files(template)

    def mutate(path):
        crash(path)
        seg10 = (path / segment_name(10)).read_bytes()
        (path / (segment_name(10) + ".cleaned")).write_bytes(seg10)
        (path / (segment_name(10) + ".swap")).write_bytes(seg10[: len(seg10) // 2])
        (path / (segment_name(0) + ".deleted")).write_bytes(b"old")
        (path / (segment_name(0, ".index") + ".deleted")).write_bytes(b"old")
        (path / segment_name(40, ".index")).write_bytes(b"\0" * 8)  # orphan index: no .log

    (_, end, records), files = recover_both(template, tmp_path, "cleaned", mutate)
    assert (end, records) == (30, want)
    assert files == before
    path = tmp_path / "cleaned-reference" / "cleaned-0"
    assert not [n for n in os.listdir(path) if n.endswith((".swap", ".cleaned", ".deleted"))]


@pytest.mark.parametrize("damage", ["missing", "partial"])
def test_index_below_recovery_point_rebuilt(both_engines, tmp_path, damage):
    template = tmp_path / "template" / "idx-0"
    three_segments(template, "reference")
    before = segment_files(template)

    def mutate(path):
        crash(path, 30)
        target = path / segment_name(0, ".index")
        if damage == "missing":
            target.unlink()
            (path / segment_name(10, ".timeindex")).unlink()
        else:
            os.truncate(target, target.stat().st_size - 3)
            os.truncate(path / segment_name(10, ".timeindex"), 5)

    _, files = recover_both(template, tmp_path, f"idx-{damage}", mutate)
    assert files == before


def test_empty_directory_gets_segment_zero(engine, tmp_path):
    path = tmp_path / "empty-0"
    path.mkdir()
    with open_partition(path, engine=engine) as log:
        assert (log.start_offset, log.end_offset) == (0, 0)
    assert sorted(segment_files(path)) == [segment_name(0, s) for s in (".index", ".log", ".timeindex")]


# ---------------------------------------------------------------------------------------------
# SIGKILL of a writing process


@pytest.mark.parametrize(
    "config, big",
    [
        ({"segment.bytes": 4000}, False),
        ({"segment.bytes": 20000, "flush.messages": 5}, False),
        ({"segment.bytes": 3_000_000}, True),
    ],
    ids=["small-segments", "flush-messages", "big-batches"],
)
def test_sigkill_loses_no_acknowledged_batch(engine, tmp_path, config, big):
    path = tmp_path / "kill-0"
    rng = random.Random(zlib.crc32(f"{engine}{config}".encode()))
    acked: list[tuple[int, int, int]] = []  # (seed, batch index, base offset)
    for seed in range(5):
        want_acks = rng.randint(1, 30 if big else 120)
        with reaped([spawn_child("kill", engine, path, config, seed, *(["big"] if big else []))]) as (proc,):
            for _ in range(want_acks):
                line = proc.stdout.readline()
                assert line, f"writer died early: {proc.stderr.read().decode()}"
                i, base = map(int, line.split())
                acked.append((seed, i, base))
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait() == -signal.SIGKILL
        with open_partition(path, engine=engine, config=config) as log:
            everything = list(log.records())  # all CRC-valid after recovery
            assert [r.offset for r in everything] == list(range(log.end_offset))
            for s, i, base in acked:
                values = batch_values(s, i, big)
                got_values = [r.value for r in log.records(base, base + len(values))]
                assert got_values == values, f"acknowledged batch {s}/{i} at {base} damaged"
        check_segment_indexes(path, 4096)
    if not big:
        assert len(segment_bases(path)) > 1, "the writer should have rolled at least once"


@pytest.mark.parametrize("finder", ["reopen", "live-writer"])
def test_sigkill_half_way_through_a_write_leaves_a_torn_tail_that_is_cut(
    engine, other_engine, tmp_path, finder
):
    """A writer process dies in the middle of writing a batch (the child writes a prefix of a real
    encoded batch at the end of the active segment, then SIGKILLs itself). Either a later open
    (recovery) or a writer that was open all along in another process (this one, no recovery)
    finds the torn tail: every acknowledged record is intact, the torn bytes are gone, and the
    next append gets the offset right after the last acknowledged batch."""
    config = {"segment.bytes": 4000, "index.interval.bytes": 100}
    path = tmp_path / "torn-0"
    live = open_partition(path, engine=other_engine, config=config) if finder == "live-writer" else None
    try:
        acked: list[tuple[int, int]] = []
        with reaped([spawn_child("torn", engine, path, config, 3, 25)]) as (proc,):
            for line in iter(proc.stdout.readline, b""):
                if line.startswith(b"torn "):
                    break
                i, base = map(int, line.split())
                acked.append((i, base))
            else:
                raise AssertionError(f"no torn line: {proc.stderr.read().decode()}")
            assert proc.wait() == -signal.SIGKILL
        _, torn_base, segment, good_size, cut = line.split()
        torn_base, good_size, cut = int(torn_base), int(good_size), int(cut)
        segment_file = path / segment.decode()
        assert len(acked) == 25 and segment_file.name == segment_name(segment_bases(path)[-1])
        data = segment_file.read_bytes()
        assert len(data) == good_size + cut, "the torn bytes are on disk"
        whole = parse_batches(data, strict=False)
        assert sum(b.size for b in whole) == good_size and whole[-1].next_offset == torn_base
        assert struct.unpack_from(">q", data, good_size)[0] == torn_base
        assert struct.unpack_from(">i", data, good_size + 8)[0] + 12 > cut, "a prefix, not a batch"
        assert not (path / CLEAN).exists()

        log = live if live is not None else open_partition(path, engine=engine, config=config)
        try:
            assert log.end_offset == torn_base
            for i, base in acked:
                values = batch_values(3, i)
                assert [r.value for r in log.records(base, base + len(values))] == values
            assert [r.offset for r in log.records()] == list(range(torn_base))
            assert log.append([b"next"], timestamps_ms=[TS]) == torn_base
            assert segment_file.read_bytes()[:good_size] == data[:good_size]
            after = parse_batches(segment_file.read_bytes())  # strict: whole batches only
            assert after[-1].position == good_size and after[-1].base_offset == torn_base
            assert [r.value for r in log.records(torn_base)] == [b"next"]
        finally:
            log.close()
            live = None
    finally:
        if live is not None:
            live.close()
    check_segment_indexes(path, 100)


def test_recovery_scans_a_large_segment_whole(both_engines, tmp_path):
    template = tmp_path / "template" / "large-0"
    with open_partition(template, engine="reference") as log:
        for i in range(1500):
            log.append([b"%06d" % i + bytes(1000)], timestamps_ms=[TS + i])
        log.append([b"B" * 200_000], timestamps_ms=[TS])
        want = as_tuples(log.records())
    assert len(want) == 1501
    size = (template / segment_name(0)).stat().st_size

    (_, end, records), files = recover_both(template, tmp_path, "large", lambda p: crash(p))
    assert (end, records) == (1501, want), "recovery must not cut valid data"
    assert len(files[segment_name(0)]) == size


def set_last_base_offset(path: Path, new_base: int) -> None:
    base, _, batch = last_batch(path)
    with open(path / segment_name(base), "r+b") as f:
        f.seek(batch.position)
        f.write(new_base.to_bytes(8, "big"))  # not under the CRC


@pytest.mark.parametrize(
    "shift, kept",
    [(-1, False), (-5, False), (0, True), (7, True), (2**31 + 10, False)],
    ids=["overlap-1", "overlap-5", "same", "gap-7", "past-int32"],
)
def test_recovery_checks_base_offsets(both_engines, tmp_path, shift, kept):
    template = tmp_path / "template" / "base-0"
    want = write_template(template, "reference")
    end = want[-1][0] + 1
    seg_base = segment_bases(template)[-1]

    def mutate(path):
        crash(path)
        set_last_base_offset(path, end - 1 + shift)

    (_, new_end, records), _ = recover_both(template, tmp_path, f"base{shift}", mutate)
    if not kept:
        assert (new_end, records) == (end - 1, want[:-1])
        return
    # kept: the batch now starts at end - 1 + shift, leaving a gap that readers step over
    assert new_end == end + shift
    assert records[:-1] == want[:-1]
    assert records[-1] == (end - 1 + shift, *want[-1][1:])
    for engine in ENGINES:
        path = tmp_path / f"base{shift}-{engine}" / "base-0"
        with open_partition(path, engine=engine) as log:
            for inside_gap in range(end - 1, end + shift):  # offsets in the gap land on the batch
                assert [r.offset for r in log.records(inside_gap)] == [end - 1 + shift]
                assert (
                    parse_batches(bytes(memoryview(log.read(inside_gap, 1))))[0].base_offset
                    == end - 1 + shift
                )
                assert list(log.read_columns(inside_gap, 5).offsets) == [end - 1 + shift]
            assert [r.offset for r in log.records(end - 2)] == [end - 2, end - 1 + shift]
            cols = log.read_columns(end - 1, 10)
            assert list(cols.offsets) == [end - 1 + shift]
            assert log.offset_for_timestamp(TS + 999) == end - 1 + shift
            raw = parse_batches(bytes(memoryview(log.read(end - 1, 1))))
            assert raw[0].base_offset == end - 1 + shift
            assert log.append([b"next"], timestamps_ms=[TS]) == end + shift
    assert seg_base <= end - 1


@given(
    seed=st.integers(0, 2**16),
    where=st.floats(0, 1),
    kind=st.sampled_from(["cut", "flip", "zero-tail", "garbage-tail"]),
    checkpoint=st.sampled_from([None, "start", "end"]),
)
def test_recovery_fuzz(both_engines, tmp_path_factory, seed, where, kind, checkpoint):
    """Random damage anywhere in the last segment, any recovery point: both engines recover the
    same files, keep a prefix of the acknowledged records, and rebuild indexes by the rules."""
    rng = random.Random(seed)
    tmp = tmp_path_factory.mktemp("fuzz")
    template = tmp / "template" / "fuzz-0"
    config = {"index.interval.bytes": INTERVAL, "segment.bytes": 2000}
    with open_partition(template, engine=rng.choice(ENGINES), config=config) as log:
        for _ in range(rng.randint(5, 40)):
            n = rng.randint(1, 4)
            log.append(
                [rng.randbytes(rng.randint(0, 90)) for _ in range(n)],
                timestamps_ms=[TS + rng.randint(0, 1000) for _ in range(n)],
            )
        want = as_tuples(log.records())
    base, data, _ = last_batch(template)
    if not data:
        return
    pos = min(int(where * len(data)), len(data) - 1)
    bit, garbage = rng.randrange(8), rng.randbytes(70)  # drawn once: both engines get the same damage

    def mutate(path):
        rp = {"start": 0, "end": len(want), None: None}[checkpoint]
        crash(path, rp)
        target = path / segment_name(base)
        if kind == "cut":
            os.truncate(target, pos)
        elif kind == "flip":
            xor_byte(target, pos, 1 << bit)
        else:
            with open(target, "ab") as f:
                f.write(bytes(37) if kind == "zero-tail" else garbage)

    (_, end, records), files = recover_both(template, tmp, "fuzzed", mutate)
    batches = parse_batches(data)
    hit = next(b for b in batches if b.position + b.size > pos)  # the batch holding ``pos``
    rel = pos - hit.position
    if kind in ("zero-tail", "garbage-tail") or (kind == "flip" and 12 <= rel < 16):
        kept = len(data)  # a torn tail is cut; the leader epoch is not under the CRC
    elif kind == "flip" and rel < 8:
        kept = None  # a flipped baseOffset may be accepted (with a gap) or cut
    else:
        kept = hit.position  # cut at (or flipped inside) this batch: it and all after it go
    if kept is not None:
        damaged = bytearray(data)
        if kind == "flip":
            damaged[pos] ^= 1 << bit
        assert files[segment_name(base)] == damaged[:kept]
        n = len(want) if kept == len(data) else hit.base_offset
        assert (end, records) == (n, want[:n])
    else:
        assert records[: hit.base_offset] == want[: hit.base_offset]
    check_segment_indexes(tmp / "fuzzed-native" / "fuzz-0", INTERVAL)


@pytest.mark.parametrize("clean", [True, False], ids=["clean-shutdown", "crash-after-sync"])
@pytest.mark.parametrize("damage", ["truncated-tail", "length-bit-flip"])
def test_framing_damage_below_recovery_point_is_reported(engine, tmp_path, clean, damage):
    """A sealed, synced segment whose last batch lost bytes, or whose batch length field had a
    bit flipped (so the batch seems to run past the end of the file), is corrupt: reading there
    must raise CorruptBatchError (path, position), never skip those offsets."""
    path = tmp_path / "sealed-0"
    with open_partition(path, engine=engine, config={"segment.bytes": 300}) as log:
        for i in range(10):
            log.append([b"x%d" % i * 20], timestamps_ms=[TS + i])
        assert segment_bases(path)[:2] == [0, 2]
    data = (path / segment_name(0)).read_bytes()
    victim = parse_batches(data)[-1 if damage == "truncated-tail" else 0]
    if damage == "truncated-tail":
        os.truncate(path / segment_name(0), len(data) - 1)
    else:
        flip_length(path / segment_name(0), victim.position)
    if not clean:
        crash(path, 10)
    with open_partition(path, engine=engine, config={"segment.bytes": 300}) as log:
        assert log.end_offset == 10
        assert [r.offset for r in log.records(0, victim.base_offset)] == list(range(victim.base_offset))
        with pytest.raises(CorruptBatchError) as info:
            list(log.records())
        assert Path(info.value.path).name == segment_name(0)
        assert info.value.position == victim.position
        with pytest.raises(CorruptBatchError):
            log.read_columns(0, 100)
        with pytest.raises(CorruptBatchError) as info:  # never other offsets, never nothing
            log.read(victim.base_offset, 1000)
        assert Path(info.value.path).name == segment_name(0)
        assert info.value.position == victim.position


def flip_length(path: Path, position: int) -> bytes:
    """Add 1 MiB to the length field of the batch at ``position``; returns the damaged file."""
    return xor_byte(path, position + 9, 0x10)


@pytest.mark.parametrize("victim_index", [0, 4])
def test_open_refusing_synced_damage_keeps_the_clean_marker(engine, tmp_path, victim_index):
    """After a clean shutdown there is no scan; a bit flip in a batch length of the synced active
    segment then looks like a torn tail. Treating it as one would make end_offset drop below the
    checkpointed recovery point and let the next append truncate synced data and hand out its
    offsets again. Open raises instead (for the first batch as for a later one) and leaves the
    directory as it was: the marker stays, so the next open does not run a recovery that would cut."""
    path = tmp_path / "keep-0"
    with open_partition(path, engine=engine) as log:
        for i in range(10):
            log.append([b"x%d" % i * 20], timestamps_ms=[TS + i])
    assert read_checkpoint(path)[2] == "keep 0 10"
    victim = parse_batches((path / segment_name(0)).read_bytes())[victim_index]
    damaged = flip_length(path / segment_name(0), victim.position)
    for _ in range(2):
        with pytest.raises(CorruptBatchError) as info:
            open_partition(path, engine=engine)
        assert Path(info.value.path).name == segment_name(0)
        assert info.value.position == victim.position
        assert (path / CLEAN).exists()
        assert (path / segment_name(0)).read_bytes() == damaged


def test_writer_rereads_the_checkpoint_before_cutting(engine, tmp_path):
    """Another process advanced the recovery point past what this one knows; bytes that do not
    frame below it are corruption for this writer too: nothing is cut, no offset reused."""
    path = tmp_path / "stale-0"
    first = open_partition(path, engine=engine)
    first.append([b"first"], timestamps_ms=[TS])
    with open_partition(path, engine=engine) as other:
        for i in range(5):
            other.append([b"other-%d" % i], timestamps_ms=[TS + i])
        other.sync()
        assert synced_offset(path) == 6  # on the page only: the checkpoint file is not written
        assert not (path / CHECKPOINT).exists()
        victim = parse_batches((path / segment_name(0)).read_bytes())[1]
        damaged = flip_length(path / segment_name(0), victim.position)
        with pytest.raises(CorruptBatchError) as info:
            first.append([b"again"], timestamps_ms=[TS])
        assert info.value.position == victim.position
        with pytest.raises(CorruptBatchError):
            first.end_offset  # noqa: B018 - a reader's re-sync obeys the same rule
        assert other.end_offset == 6
    with pytest.raises(CorruptBatchError):
        first.close()  # the last closer's tail sync: same rule, and the log is closed anyway
    assert first.closed
    assert (path / segment_name(0)).read_bytes() == damaged
    assert not (path / CLEAN).exists()


def test_recovery_below_the_checkpoint_lowers_it(engine, tmp_path):
    """Recovery cut below the checkpoint: the checkpoint follows, so a torn tail a dead writer
    leaves later (above the new recovery point) is still cut by the next writer."""
    path = tmp_path / "lower-0"
    with open_partition(path, engine=engine) as log:
        for i in range(10):
            log.append([b"x%d" % i * 20], timestamps_ms=[TS + i])
    victim = parse_batches((path / segment_name(0)).read_bytes())[5]
    xor_byte(path / segment_name(0), victim.position + victim.size - 1, 0xFF)  # last value byte: bad CRC
    crash(path, 10)
    with open_partition(path, engine=engine) as log:
        assert log.end_offset == 5
        assert read_checkpoint(path)[2] == "lower 0 5"
        with open(path / segment_name(0), "ab") as f:
            f.write(b"\x00" * 20)  # a dead writer's torn tail, above the recovery point
        assert log.append([b"new"], timestamps_ms=[TS]) == 5
    assert [r.offset for r in open_partition(path, engine=engine).records()] == list(range(6))


def test_flush_ms_syncs_once_the_interval_passed(engine, tmp_path, open_log):
    """The sleep creates the condition under test (time since the last sync), it synchronizes nothing."""
    import time

    path = tmp_path / "flushms-0"
    log = open_log(path, flush_ms=100)
    log.append([b"a"], timestamps_ms=[TS])
    time.sleep(0.15)
    log.append([b"b"], timestamps_ms=[TS])
    assert synced_offset(path) == 2


@pytest.mark.parametrize("where", ["inside-header", "inside-value"])
def test_bad_index_entry_below_recovery_point(engine, tmp_path, where):
    """Index files below the recovery point are trusted when they hold whole entries. An entry
    whose position points inside a batch must never make a read skip or misplace offsets: every
    read that looks through it raises CorruptBatchError naming the file and the bad position,
    while reads that do not use the entry (its own segment before it, other segments) work."""
    config = {"segment.bytes": 500, "index.interval.bytes": 0}
    path = tmp_path / "badidx-0"
    with open_partition(path, engine=engine, config=config) as log:
        for i in range(12):
            log.append([b"x%d" % i * 20], timestamps_ms=[TS + i])
        assert segment_bases(path)[0:2] == [0, 4]
    batches = parse_batches((path / segment_name(0)).read_bytes())
    pos = 5 if where == "inside-header" else batches[1].position + batches[1].size - 20
    (path / segment_name(0, ".index")).write_bytes(struct.pack(">ii", 1, pos))
    with open_partition(path, engine=engine, config=config) as log:
        reads = {
            "records": lambda: [r.offset for r in log.records(2, 4)],
            "read_columns": lambda: list(log.read_columns(2, 2).offsets),
            "read": lambda: parse_batches(bytes(memoryview(log.read(2, 1))))[0].base_offset,
            "offset_for_timestamp": lambda: log.offset_for_timestamp(TS + 2),
        }
        for name, read in reads.items():
            with pytest.raises(CorruptBatchError) as info:
                read()
            assert Path(info.value.path).name == segment_name(0), name
            assert Path(info.value.path).parent.resolve() == path.resolve(), name
            assert info.value.position == pos, name
        # below the entry in the same segment, and in the other segments, reads are unaffected
        assert [r.offset for r in log.records(0, 2)] == [0, 1]
        assert [r.offset for r in log.records(4, 12)] == list(range(4, 12))
        assert list(log.read_columns(4, 4).offsets) == [4, 5, 6, 7]
        assert parse_batches(bytes(memoryview(log.read(8, 1))))[0].base_offset == 8
        assert log.offset_for_timestamp(TS + 5) == 5
        assert log.offset_for_timestamp(TS + 9) == 9


# ----------------------------------------------------------------------------------------------
# damaged index files (Kafka's sanityCheck/recoverSegment): both engines rebuild them, the same way


def _entries(fmt: str, entries: list[tuple[int, int]]) -> bytes:
    return b"".join(struct.pack(fmt, *e) for e in entries)


def _damage(path: Path, how: str) -> None:
    bases = segment_bases(path)
    first, middle, last = bases[0], bases[1], bases[-1]
    if how == "offset-beyond-log":
        (path / segment_name(first, ".index")).write_bytes(_entries(">ii", [(1, 50), (5, 10**6)]))
    elif how == "offset-out-of-order":
        data = (path / segment_name(first, ".index")).read_bytes()
        assert len(data) >= 16
        (path / segment_name(first, ".index")).write_bytes(data[8:16] + data[:8] + data[16:])
    elif how == "time-beyond-segment":
        (path / segment_name(middle, ".timeindex")).write_bytes(_entries(">qi", [(TS + 1, 10**6)]))
    elif how == "time-out-of-order":
        (path / segment_name(middle, ".timeindex")).write_bytes(_entries(">qi", [(TS + 50, 3), (TS + 20, 5)]))
    elif how == "ragged":
        with open(path / segment_name(first, ".timeindex"), "ab") as f:
            f.write(b"\x01\x02\x03\x04\x05")
    elif how == "missing":
        os.remove(path / segment_name(middle, ".index"))
    elif how == "active-not-at-a-batch":
        data = bytearray((path / segment_name(last, ".index")).read_bytes())
        assert len(data) >= 8
        struct.pack_into(">i", data, 4, struct.unpack_from(">i", data, 4)[0] + 1)
        (path / segment_name(last, ".index")).write_bytes(bytes(data))
    elif how == "active-time-garbage":
        (path / segment_name(last, ".timeindex")).write_bytes(_entries(">qi", [(TS + 900, 1), (TS + 5, 2)]))
    else:
        raise AssertionError(how)


def _observe_everything(path: Path, engine: str) -> tuple:
    """Open, check every offset reads its own batch and every timestamp lookup, close."""
    with open_partition(path, engine=engine, config={"index.interval.bytes": INTERVAL}) as log:
        records = as_tuples(log.records())
        for r in records:
            batches = parse_batches(log.read(r[0], 1))
            assert batches and batches[0].base_offset <= r[0] <= batches[0].last_offset, r[0]
        stamps = sorted({r[1] for r in records})
        for ts in [s + d for s in stamps for d in (-1, 0, 1)]:
            want = next((r[0] for r in records if r[1] >= ts), None)
            assert log.offset_for_timestamp(ts) == want, ts
        state = (log.start_offset, log.end_offset, records)
    return state, segment_files(path)


DAMAGES = [
    "offset-beyond-log",
    "offset-out-of-order",
    "time-beyond-segment",
    "time-out-of-order",
    "ragged",
    "missing",
    "active-not-at-a-batch",
    "active-time-garbage",
]


@pytest.mark.parametrize("clean", [True, False], ids=["clean-open", "recovery"])
@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_index_files_are_rebuilt_the_same_way(both_engines, tmp_path, how, clean):
    template = tmp_path / "template" / "dmg-0"
    want = write_template(template, "reference", segments=3)
    end = want[-1][0] + 1
    outcomes = {}
    for engine in ENGINES:
        path = tmp_path / engine / template.name
        shutil.copytree(template, path)
        _damage(path, how)
        if not clean:
            crash(path, end)  # the damaged sealed segments lie below the recovery point
        outcomes[engine] = _observe_everything(path, engine)
        state, _ = outcomes[engine]
        assert state == (0, end, want), engine
        check_segment_indexes(path, INTERVAL)  # rebuilt to what the index rules give
    assert outcomes["native"][1] == outcomes["reference"][1], "the engines left different files"


@pytest.mark.parametrize("engine_name", ENGINES)
def test_checkpoint_of_a_directory_with_a_space(both_engines, tmp_path, engine_name):
    # "my topic-3" writes "my topic 3 <offset>": the offset is the last token, not the third one
    path = tmp_path / "my topic-3"
    with open_partition(path, engine=engine_name) as log:
        for i in range(10):
            log.append([b"v%d" % i], timestamps_ms=[TS + i])
        log.roll()
        log.append([b"after"], timestamps_ms=[TS + 10])
        log.sync()
    assert read_checkpoint(path)[2] == "my topic 3 11"
    # a bit flip in a synced batch of a segment below the one holding the recovery point (11):
    # recovery does not re-validate it (misread as 3, it would cut there and drop segment 10)
    os.remove(path / CLEAN)
    batches = parse_batches((path / segment_name(0)).read_bytes())
    xor_byte(path / segment_name(0), batches[5].position + batches[5].size - 1, 0x01)
    with open_partition(path, engine=engine_name) as log:
        assert log.end_offset == 11, "the synced data was cut"
        assert segment_bases(path) == [0, 10]
        with pytest.raises(CorruptBatchError):
            list(log.records())


@pytest.mark.skipif(
    shutil.which("strace") is None and not IN_CI,
    reason="needs strace to kill the opener at a chosen write (.ci/run installs it; CI never skips)",
)
@pytest.mark.parametrize("suffix", [".index", ".timeindex"])
def test_sigkill_while_rebuilding_an_index_below_the_recovery_point(engine, tmp_path, suffix):
    """Later opens trust an index file below the recovery point as it is, so a kill half-way
    through its rebuild must not leave 0 bytes (a whole number of entries, which passes the sanity
    check): the opener is killed at its first write to the file (strace injects SIGKILL there),
    and the next open still rebuilds it."""
    path = tmp_path / "kill-0"
    three_segments(path, "reference")
    before = segment_files(path)
    crash(path, 30)
    target = path / segment_name(0, suffix)
    os.truncate(target, target.stat().st_size - 3)  # refused: not a whole number of entries
    opener = (
        "from pylog.engine import open_partition; "
        f"open_partition({str(path)!r}, engine={engine!r}, config={{'index.interval.bytes': {INTERVAL}}})"
    )
    strace = ["strace", "-f", "-qq", "-o", os.devnull, "-P", str(target), "-P", f"{target}.tmp"]
    strace += ["-e", "trace=write,pwrite64", "-e", "inject=write,pwrite64:signal=SIGKILL"]
    # why -P: `-c` would put the working directory first on sys.path, and from a checkout whose
    # pylog is not built (CI tests the installed package) the child would import that one
    child = subprocess.run([*strace, sys.executable, "-P", "-c", opener], env=dict(os.environ), check=False)
    assert child.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), child.returncode
    assert (path / CLEAN).exists() is False
    reopen_state(path, engine)
    assert segment_files(path) == before


@pytest.mark.parametrize(
    "text",
    [
        "0\n1\n{tp} 1_0\n",  # digit separators
        "0\n1\n{tp} \u0661\u0660\n",  # non-ASCII digits
        "-1\n1\n{tp} 10\n",  # a negative version
        "0\n1_0\n{tp} 10\n",
        "0\n1\nt 0_0 10\n",
        "0\n1\nt -0 10\n",  # an unsigned partition with a sign
    ],
    ids=["separators", "non-ascii", "negative-version", "count-separators", "partition-separators", "signed"],
)
def test_malformed_checkpoint_numbers_read_alike(both_engines, tmp_path, caplog, text):
    """Both engines read the numbers of a checkpoint as Rust's parser does: one that only Python's
    int() takes makes the file unreadable (recover everything) in both, not a recovery point of 10
    in one of them."""
    template = tmp_path / "template" / "ck-0"
    three_segments(template, "reference")
    seen = {}
    for engine in ENGINES:
        path = tmp_path / engine / "ck-0"
        shutil.copytree(template, path)
        crash(path)
        (path / CHECKPOINT).write_text(text.format(tp=topic_partition(path)), encoding="utf-8")
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="pylog.recovery"):
            reopen_state(path, engine)
        seen[engine] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("recovered ")]
    assert len(seen["native"]) == 1 and "recovery point 0," in seen["native"][0]
    assert [m.replace("native", "reference") for m in seen["native"]] == seen["reference"]


# ---------------------------------------------------------------------------------------------
# what sync() fsyncs (docs/partition-log.md "Durability"): the active segment's index files are
# not among them, since recovery rescans the segment holding the checkpoint and rewrites them


@pytest.mark.parametrize("checkpoint", ["as-sync-left-it", "stale", "current", "page-ahead"])
@pytest.mark.parametrize("index_state", ["empty", "missing", "garbage"])
def test_synced_records_survive_losing_the_unsynced_active_indexes(
    both_engines, tmp_path, checkpoint, index_state
):
    """A crash after sync() (no clean marker, page cache intact, the active segment's index
    files as a power loss may leave them, a torn unsynced tail) keeps every synced record and
    cuts only the tail, whatever the checkpoint says (a sync leaves none within the interval;
    stale; current as the interval's write leaves it); the rebuilt index files equal the
    recomputation from the bytes. ``page-ahead``: the page claims more than the disk kept (as a
    power loss may leave it): the first opener's recovery still cuts only the torn tail."""
    outcomes = {}
    for engine in ENGINES:
        live = tmp_path / f"live-{engine}" / "d-0"
        copy = tmp_path / f"copy-{engine}" / "d-0"
        config = {"index.interval.bytes": INTERVAL}
        with open_partition(live, engine=engine, config=config) as log:
            for i in range(8):
                log.append([b"v%d" % i * 40] * 3, timestamps_ms=[TS + i] * 3)
            log.roll()
            for i in range(8):
                log.append([b"w%d" % i * 40] * 3, timestamps_ms=[TS + 100 + i] * 3)
            log.sync()
            synced = as_tuples(log.records())
            # the crash: the files as they are now (open: no marker), copied
            copy.parent.mkdir()
            shutil.copytree(live, copy)
            assert synced_offset(copy) == 48
        assert not (copy / CLEAN).exists()
        assert not (copy / CHECKPOINT).exists(), "a sync within the interval writes no checkpoint"
        active = segment_bases(copy)[-1]
        for suffix in (".index", ".timeindex"):
            index = copy / (segment_name(active)[: -len(".log")] + suffix)
            if index_state == "missing":
                index.unlink()
            elif index_state == "empty":
                index.write_bytes(b"")
            else:
                index.write_bytes(b"\xff" * 24)
        if checkpoint == "stale":
            (copy / CHECKPOINT).write_text("0\n1\nd 0 3\n")
        elif checkpoint == "current":
            (copy / CHECKPOINT).write_text("0\n1\nd 0 48\n")
        elif checkpoint == "page-ahead":
            write_shared_field(copy, "recovery_point", 10**6)
        with open(copy / segment_name(active), "ab") as f:
            f.write(b"\x00" * 7 + b"\x10")  # a torn tail: half a batch header
        with open_partition(copy, engine=engine, config=config) as log:
            assert as_tuples(log.records()) == synced
        assert check_segment_indexes(copy, INTERVAL) == 2
        outcomes[engine] = segment_files(copy)
    assert outcomes["native"] == outcomes["reference"]


STRACE_CHILD = r"""
import os, sys
from pylog.engine import open_partition
path, engine, marks = sys.argv[1], sys.argv[2], sys.argv[3]
def mark(n):
    fd = os.open(os.path.join(marks, "mark-%d" % n), os.O_CREAT | os.O_WRONLY)
    os.fsync(fd)
    os.close(fd)
with open_partition(path, engine=engine) as log:
    log.append([b"a"], timestamps_ms=[1])
    log.sync()
    mark(1)
    log.append([b"b"], timestamps_ms=[2])
    log.sync()
    mark(2)
    log.roll()
    log.append([b"c"], timestamps_ms=[3])
    log.sync()
    mark(3)
"""


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_sync_fsyncs_the_active_log_not_its_indexes(engine, tmp_path):
    """Pins what one sync() fsyncs (strace): the active .log (and the directory when files were
    created), never the active segment's index files nor the checkpoint (written at most every
    RECOVERY_POINT_CHECKPOINT_INTERVAL_MS); after a roll the next sync also fsyncs the sealed
    segment with its index files (its seal entry was written since); the last closer fsyncs the
    active index files and writes the checkpoint."""
    marks = tmp_path / "marks"
    marks.mkdir()
    trace = tmp_path / "trace"
    strace = ["strace", "-f", "-qq", "-y", "-e", "trace=fsync,fdatasync", "-o", str(trace)]
    child = [sys.executable, "-P", "-c", STRACE_CHILD, str(tmp_path / "d-0"), engine, str(marks)]
    done = subprocess.run(
        [*strace, *child],
        env=same_pylog_env(),
        capture_output=True,
        timeout=120,
    )
    if done.returncode != 0 and b"ptrace" in done.stderr:
        pytest.skip("ptrace not permitted here")
    assert done.returncode == 0, done.stderr
    phases: list[list[str]] = [[]]
    for line in trace.read_text().splitlines():
        if "<" not in line or "fsync" not in line:
            continue
        name = os.path.basename(line.split("<", 1)[1].split(">", 1)[0])
        if name.startswith("mark-"):
            phases.append([])
        else:
            phases[-1].append(name)
    log0, log1 = segment_name(0), segment_name(2)  # the roll after two records
    stem0, stem1 = log0[: -len(".log")], log1[: -len(".log")]
    assert len(phases) == 4, phases
    # phase 0 includes open (segment 0's creation, so the directory is due): its sync's tail
    assert phases[0][-2:] == [log0, "d-0"], phases[0]
    assert CHECKPOINT + ".tmp" not in phases[0]
    assert phases[1] == [log0], "one sync = one fsync of the active .log"
    assert phases[2] == [log0, stem0 + ".index", stem0 + ".timeindex", log1, "d-0"], phases[2]
    assert phases[3][:3] == [log1, stem1 + ".index", stem1 + ".timeindex"], phases[3]
    assert CHECKPOINT + ".tmp" in phases[3], phases[3]
    assert (tmp_path / "d-0" / CHECKPOINT).read_text() == "0\n1\nd 0 3\n"
