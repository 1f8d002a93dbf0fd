"""Kafka's close-time time-index entry, byte for byte (docs/partition-log.md "Index rules").

Kafka appends ``(max timestamp so far, offset of that max)`` to a segment's time index when the
segment stops being active (roll) and when it is closed, and its recovery rebuild ends with the same
entry (LogSegment onBecomeInactiveSegment, close, recover; TimeIndex.maybeAppend with skipFullCheck).
A broker reads a segment's largest timestamp from that last entry, so a missing one makes its
ListOffsets and time retention wrong.

The expected bytes come from ``KafkaSegment`` below, a small model of Kafka's rules written from its
documentation (not pylog's code): per batch, ``validBytes - lastIndexEntry > index.interval.bytes``
gives an offset entry ``(lastOffset, position)`` and a time entry ``(maxTs, offsetOfMaxTs)`` only if
``maxTs`` exceeds the last time entry; a close appends the same entry by the same rule; recovery
starts from nothing and ends with it. A reopen keeps the files' entries and counts the interval from
the last offset entry (pylog's rule, documented there).

"Kafka-shaped" directories are built here with those files (and entries at points pylog would not
choose), then opened cleanly and uncleanly: Kafka's entries must survive.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
from pathlib import Path

import pytest
from helpers import parse_batches, segment_bases, segment_name

from pylog.engine import open_partition

TS = 1_700_000_000_000
CLEAN = ".kafka_cleanshutdown"
CHECKPOINT = "recovery-point-offset-checkpoint"


class KafkaSegment:
    """Kafka's index rules for one segment (LogSegment.append/recover, TimeIndex.maybeAppend)."""

    def __init__(self, base: int, interval: int):
        self.base = base
        self.interval = interval
        self.offset_entries: list[tuple[int, int]] = []  # (relative offset, position)
        self.time_entries: list[tuple[int, int]] = []  # (timestamp, relative offset)
        self.max_ts = -1
        self.offset_of_max = -1
        self.last_index_pos = 0
        self.size = 0

    def append(self, size: int, last_offset: int, max_ts: int) -> None:
        if max_ts > self.max_ts:
            self.max_ts, self.offset_of_max = max_ts, last_offset
        if self.size - self.last_index_pos > self.interval:
            self.offset_entries.append((last_offset - self.base, self.size))
            self.maybe_append_time()
            self.last_index_pos = self.size
        self.size += size

    def maybe_append_time(self) -> None:
        last_ts = self.time_entries[-1][0] if self.time_entries else -1
        if self.max_ts > last_ts:
            self.time_entries.append((self.max_ts, self.offset_of_max - self.base))

    def close(self) -> None:
        """onBecomeInactiveSegment / close / the end of recover: the final entry."""
        self.maybe_append_time()

    @classmethod
    def recovered(cls, log_bytes: bytes, base: int, interval: int) -> KafkaSegment:
        seg = cls(base, interval)
        for b in parse_batches(log_bytes):
            seg.append(b.size, b.last_offset, b.max_timestamp)
        seg.close()
        return seg

    def offset_bytes(self) -> bytes:
        return b"".join(struct.pack(">ii", rel, pos) for rel, pos in self.offset_entries)

    def time_bytes(self) -> bytes:
        return b"".join(struct.pack(">qi", ts, rel) for ts, rel in self.time_entries)


def files(path: Path, base: int) -> tuple[bytes, bytes, bytes]:
    return tuple(Path(path, segment_name(base, s)).read_bytes() for s in (".log", ".index", ".timeindex"))  # type: ignore[return-value]


def assert_indexes(path: Path, base: int, model: KafkaSegment) -> None:
    _, index, timeindex = files(path, base)
    assert timeindex == model.time_bytes(), (list(struct.iter_unpack(">qi", timeindex)), model.time_entries)
    assert index == model.offset_bytes(), (list(struct.iter_unpack(">ii", index)), model.offset_entries)


def append_batches(log, model: KafkaSegment, rng: random.Random, n: int, ts_low: int, ts_high: int) -> None:
    """Append ``n`` one-to-three-record batches with timestamps in a window (not monotonic)."""
    for _ in range(n):
        count = rng.randint(1, 3)
        stamps = [TS + rng.randint(ts_low, ts_high) for _ in range(count)]
        base = log.append([b"v" * rng.randint(5, 60) for _ in range(count)], timestamps_ms=stamps)
        data = Path(log.path, segment_name(model.base)).read_bytes()
        batch = parse_batches(data)[-1]
        assert batch.base_offset == base
        model.append(batch.size, batch.last_offset, batch.max_timestamp)


def brute_force_offset_for_timestamp(records: list, ts: int) -> int | None:
    return next((r.offset for r in records if r.timestamp >= ts), None)


def check_timestamp_lookups(log) -> None:
    """offset_for_timestamp agrees with a scan of every record, for every interesting ts."""
    records = list(log.records())
    stamps = sorted({r.timestamp for r in records})
    probes = {s + d for s in stamps for d in (-1, 0, 1)} | {0, TS * 2}
    for ts in sorted(probes):
        assert log.offset_for_timestamp(ts) == brute_force_offset_for_timestamp(records, ts), ts


def test_close_writes_the_final_entry_and_reopen_continues(engine, tmp_path):
    path = tmp_path / "t-0"
    config = {"index.interval.bytes": 200}
    rng = random.Random(5)
    model = KafkaSegment(0, 200)
    log = open_partition(path, engine=engine, config=config)
    append_batches(log, model, rng, 40, 0, 1000)
    # the last batches carry the largest timestamps after the last interval entry
    extra = 5000
    while model.max_ts <= model.time_entries[-1][0] or extra == 5000:
        extra += 1000
        log.append([b"late"], timestamps_ms=[TS + extra])
        batch = parse_batches(Path(path, segment_name(0)).read_bytes())[-1]
        model.append(batch.size, batch.last_offset, batch.max_timestamp)
    open_entries = model.time_entries[:]
    assert files(path, 0)[2] == b"".join(struct.pack(">qi", *e) for e in open_entries)
    assert model.max_ts > model.time_entries[-1][0], "the test needs records past the last entry"
    check_timestamp_lookups(log)  # finds the records after the last interval entry
    log.close()
    model.close()
    assert_indexes(path, 0, model)
    assert model.time_entries[-1] == (TS + extra, model.offset_of_max), "the final entry holds the max"

    # reopen (clean): the final entry is loaded back; later entries only when the max rises above it
    log = open_partition(path, engine=engine, config=config)
    check_timestamp_lookups(log)
    append_batches(log, model, rng, 30, 0, 6000)  # below the final entry's ts: no time entry
    assert_indexes(path, 0, model)
    append_batches(log, model, rng, 30, 8000, 9000)  # above it: entries again
    assert_indexes(path, 0, model)
    assert len(model.time_entries) > len(open_entries) + 1
    check_timestamp_lookups(log)
    log.close()
    model.close()
    assert_indexes(path, 0, model)

    # the other engine reads the same files and closes them to the same bytes
    other = "reference" if engine == "native" else "native"
    try:
        log = open_partition(path, engine=other, config=config)
    except ImportError:
        return
    check_timestamp_lookups(log)
    log.close()
    assert_indexes(path, 0, model)


def test_roll_and_close_across_segments(engine, tmp_path):
    path = tmp_path / "t-1"
    config = {"index.interval.bytes": 150, "segment.bytes": 2500}
    rng = random.Random(9)
    log = open_partition(path, engine=engine, config=config)
    for _ in range(80):
        log.append([b"x" * rng.randint(10, 90)], timestamps_ms=[TS + rng.randint(0, 10_000)])
    check_timestamp_lookups(log)
    log.close()
    bases = segment_bases(path)
    assert len(bases) > 3
    for base in bases:  # roll and close write the same final entry: recover's rule everywhere
        log_bytes = files(path, base)[0]
        assert_indexes(path, base, KafkaSegment.recovered(log_bytes, base, 150))


@pytest.mark.parametrize("torn", [False, True])
def test_recovery_rebuild_ends_with_the_final_entry(engine, tmp_path, torn):
    path = tmp_path / "t-2"
    config = {"index.interval.bytes": 400, "segment.bytes": 3000}
    rng = random.Random(11)
    log = open_partition(path, engine=engine, config=config)
    for _ in range(70):
        log.append([b"y" * rng.randint(10, 70)], timestamps_ms=[TS + rng.randint(0, 5000)])
    log.append([b"max"], timestamps_ms=[TS + 9000])  # the last segment's max, past its last entry
    log.close()
    os.remove(path / CLEAN)
    (path / CHECKPOINT).unlink()
    bases = segment_bases(path)
    last = bases[-1]
    for base in bases:  # recovery must not trust the old files: empty them
        Path(path, segment_name(base, ".timeindex")).write_bytes(b"")
    if torn:
        with open(path / segment_name(last), "ab") as f:
            f.write(b"\x00" * 30)
    log = open_partition(path, engine=engine, config=config)
    check_timestamp_lookups(log)
    log.close()
    for base in bases:
        log_bytes = files(path, base)[0]
        assert len(parse_batches(log_bytes)) > 0
        assert_indexes(path, base, KafkaSegment.recovered(log_bytes, base, 400))
    assert struct.unpack(">qi", files(path, last)[2][-12:])[0] == TS + 9000, "the final entry"


def build_kafka_dir(tmp_path: Path, name: str, *, live_interval: int) -> tuple[Path, list[int]]:
    """A directory shaped like Kafka's: the .log files written by pylog, the index files by the
    Kafka model with its own (live) interval and final entries, a clean-shutdown marker."""
    scratch = tmp_path / f"scratch-{name}"
    log = open_partition(scratch, engine="reference", config={"segment.bytes": 4000})
    rng = random.Random(len(name))
    for _ in range(90):
        count = rng.randint(1, 4)
        log.append(
            [b"k" * rng.randint(10, 80) for _ in range(count)],
            timestamps_ms=[TS + rng.randint(0, 20_000) for _ in range(count)],
        )
    log.append([b"max"], timestamps_ms=[TS + 25_000])  # the active segment's max: only a final entry has it
    log.close()
    path = tmp_path / name
    path.mkdir()
    bases = segment_bases(scratch)
    for base in bases:
        log_bytes = Path(scratch, segment_name(base)).read_bytes()
        shutil.copyfile(scratch / segment_name(base), path / segment_name(base))
        model = KafkaSegment(base, live_interval)
        for b in parse_batches(log_bytes):
            model.append(b.size, b.last_offset, b.max_timestamp)
        model.close()
        Path(path, segment_name(base, ".index")).write_bytes(model.offset_bytes())
        Path(path, segment_name(base, ".timeindex")).write_bytes(model.time_bytes())
    (path / CLEAN).write_bytes(b"")
    return path, bases


def snapshot(path: Path, bases: list[int]) -> dict[int, tuple[bytes, bytes, bytes]]:
    return {b: files(path, b) for b in bases}


def test_kafka_directory_opened_cleanly_keeps_its_entries(engine, tmp_path):
    # Kafka's entries at a live interval of 700 bytes; pylog is configured with 100
    path, bases = build_kafka_dir(tmp_path, "kafka-0", live_interval=700)
    before = snapshot(path, bases)
    log = open_partition(path, engine=engine, config={"index.interval.bytes": 100, "segment.bytes": 4000})
    check_timestamp_lookups(log)
    assert snapshot(path, bases) == before
    last = bases[-1]
    log_bytes, index, timeindex = before[last]
    start = len(parse_batches(log_bytes))
    log.append([b"new"] * 2, timestamps_ms=[TS + 30_000, TS + 30_001])
    log.append([b"new"] * 2, timestamps_ms=[TS + 30_002, TS + 30_003])
    check_timestamp_lookups(log)
    log.close()
    after = snapshot(path, bases)
    for base in bases[:-1]:
        assert after[base] == before[base]
    new_log, new_index, new_time = after[last]
    assert new_index.startswith(index) and new_time.startswith(timeindex), "Kafka's entries stay first"
    # continuing Kafka's state: interval counted from Kafka's last offset entry, max above its final entry
    model = KafkaSegment(last, 100)
    model.offset_entries = list(struct.iter_unpack(">ii", index))
    model.time_entries = list(struct.iter_unpack(">qi", timeindex))
    model.last_index_pos = model.offset_entries[-1][1] if model.offset_entries else 0
    batches = parse_batches(new_log)
    assert len(batches) == start + 2
    for b in batches:  # the bytes past Kafka's last entry get entries too (the next writer's)
        if b.position <= model.last_index_pos:
            if b.max_timestamp > model.max_ts:
                model.max_ts, model.offset_of_max = b.max_timestamp, b.last_offset
        else:
            model.size = b.position
            model.append(b.size, b.last_offset, b.max_timestamp)
    model.close()
    assert_indexes(path, last, model)


def test_kafka_directory_opened_uncleanly_keeps_its_entries(engine, tmp_path):
    # Kafka flushes a segment at roll, so its recovery point is the active segment's base: the
    # sealed segments keep Kafka's files; the active one is rebuilt as Kafka's recover rebuilds it
    path, bases = build_kafka_dir(tmp_path, "kafka-1", live_interval=700)
    os.remove(path / CLEAN)
    last = bases[-1]
    (path / CHECKPOINT).write_text(f"0\n1\nkafka 1 {last}\n")
    before = snapshot(path, bases)
    log = open_partition(path, engine=engine, config={"index.interval.bytes": 700, "segment.bytes": 4000})
    check_timestamp_lookups(log)
    log.close()
    after = snapshot(path, bases)
    for base in bases[:-1]:
        assert after[base] == before[base], f"segment {base}: Kafka's index files changed"
    # the recovered active segment: Kafka's recover rule with the final entry, as Kafka wrote it
    assert struct.unpack(">qi", before[last][2][-12:])[0] == TS + 25_000
    assert after[last] == before[last]
    assert_indexes(path, last, KafkaSegment.recovered(before[last][0], last, 700))


def test_offset_for_timestamp_after_the_last_interval_entry(engine, tmp_path):
    path = tmp_path / "t-3"
    config = {"index.interval.bytes": 1000}
    log = open_partition(path, engine=engine, config=config)
    for i in range(34):
        log.append([b"z" * 40], timestamps_ms=[TS + i])
    log.append([b"after"], timestamps_ms=[TS + 10_000])  # past every interval entry
    entries = list(struct.iter_unpack(">qi", files(path, 0)[2]))
    assert entries and entries[-1][0] < TS + 10_000
    assert log.offset_for_timestamp(TS + 5000) == 34
    log.close()
    log = open_partition(path, engine=engine, config=config)
    assert log.offset_for_timestamp(TS + 5000) == 34
    assert log.offset_for_timestamp(TS + 10_001) is None
    log.roll()
    log.append([b"next"], timestamps_ms=[TS + 20_000])
    assert log.offset_for_timestamp(TS + 5000) == 34  # now in a sealed segment, by its final entry
    assert log.offset_for_timestamp(TS + 15_000) == 35
    log.close()
