"""Kafka's own DumpLogSegments judges the directories both engines write (tests/kafka_tools.py).

- Every batch Kafka reads is valid and matches what pylog reads; every index passes Kafka's
  broker-startup sanity check.
- The time index of every segment ends with Kafka's final entry — (largest timestamp, last offset
  of the first batch holding it) — after a roll, after ``close()``, and after recovery rebuilt the
  indexes. Kafka takes a segment's largest timestamp from that entry (retention, ListOffsets), so
  a missing one made a broker delete fresh data (LogSegment.onBecomeInactiveSegment / close /
  recover in storage/src/main/java/org/apache/kafka/storage/internals/log/LogSegment.java).
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

from helpers import crc32c, zigzag_varint
from kafka_tools import batches, dump, require_kafka, sections, time_index_entries

from pylog.errors import CorruptBatchError, InvalidRecordError, RecordTooLargeError

BASE_TS = 1_700_000_000_000


SETTINGS = {"segment_bytes": 4096, "index_interval_bytes": 1000}


def fill(open_log, path: Path, *, batches_count: int = 60, seed: int = 1) -> int:
    """Batches of 5 records (about 300 bytes) with timestamps that rise with noise, so the max
    is often in a batch after the segment's last interval entry (only the final entry has it),
    and is not always the last batch's."""
    rng = random.Random(seed)
    with open_log(path, **SETTINGS) as log:
        for i in range(batches_count):
            stamps = [BASE_TS + 1000 * i + rng.randrange(0, 2500) for _ in range(5)]
            log.append([rng.randbytes(40) for _ in range(5)], timestamps_ms=stamps)
        return log.end_offset


def expected_final_entry(dumped_batches: list[tuple[int, int, int, int, bool]]) -> tuple[int, int]:
    """Kafka's rule: the largest batch maxTimestamp, at the last offset of the first batch with it."""
    best_ts, best_offset = -1, -1
    for _base, last, _count, max_ts, _valid in dumped_batches:
        if max_ts > best_ts:
            best_ts, best_offset = max_ts, last
    return best_ts, best_offset


def segment_files(path: Path, suffix: str) -> list[Path]:
    return sorted(path.glob(f"*{suffix}"))


def check_final_entries(path: Path) -> None:
    logs = segment_files(path, ".log")
    out = sections(dump(logs + segment_files(path, ".timeindex")))
    for log_file in logs:
        dumped = batches(out[log_file.name])
        assert dumped and all(valid for *_, valid in dumped), log_file
        entries = time_index_entries(out[log_file.with_suffix(".timeindex").name])
        assert entries, f"{log_file.with_suffix('.timeindex')} has no entry"
        assert entries[-1] == expected_final_entry(dumped), log_file.name
        assert entries == sorted(set(entries)), "entries increase in both fields"


def test_kafka_reads_every_batch_and_accepts_every_index(open_log, tmp_path):
    require_kafka()
    path = tmp_path / "t-0"
    end = fill(open_log, path)
    logs = segment_files(path, ".log")
    assert len(logs) > 3, "the test needs several segments"
    out = sections(dump(logs))
    dumped = [b for log_file in logs for b in batches(out[log_file.name])]
    assert all(valid for *_, valid in dumped)
    assert [b[0] for b in dumped] == list(range(0, end, 5)) and dumped[-1][1] == end - 1
    with open_log(path) as log:
        ours = [(r.offset, r.timestamp) for r in log.records()]
    assert [max(ts for off, ts in ours if base <= off <= last) for base, last, *_ in dumped] == [
        b[3] for b in dumped
    ]
    indexes = segment_files(path, ".index") + segment_files(path, ".timeindex")
    sanity = dump(indexes, "--index-sanity-check")
    assert sanity.count("passed sanity check") == len(indexes), sanity


def test_every_time_index_ends_with_kafkas_final_entry_after_close(open_log, tmp_path):
    require_kafka()
    path = tmp_path / "t-0"
    fill(open_log, path)
    check_final_entries(path)


def test_recovery_rebuilds_time_indexes_ending_with_the_final_entry(open_log, tmp_path):
    require_kafka()
    path = tmp_path / "t-0"
    fill(open_log, path)
    # a crash before anything was synced: no marker, no recovery point, index files lost
    (path / ".kafka_cleanshutdown").unlink()
    (path / "recovery-point-offset-checkpoint").unlink()
    for index_file in segment_files(path, ".timeindex") + segment_files(path, ".index"):
        index_file.write_bytes(b"")
    with open_log(path) as log:
        assert log.end_offset == 300
        check_final_entries(path)  # what recovery rebuilt, while the log is still open


def test_reopen_and_append_keeps_entries_kafka_can_read(open_log, tmp_path):
    require_kafka()
    path = tmp_path / "t-0"
    fill(open_log, path, batches_count=3)
    with open_log(path, **SETTINGS) as log:
        # the close of the first session left its final entry; later entries only when the max
        # rises: the 5th batch passes the index interval (an entry), the 6th raises the max
        # again without one (only the final entry holds it), the 7th does not raise it
        for ts in (BASE_TS + 200_000, BASE_TS + 250_000, BASE_TS + 300_000, BASE_TS):
            log.append([b"x" * 40] * 5, timestamps_ms=[ts] * 5)
    check_final_entries(path)


def control_batch(commit: bool, *, producer_id: int = 7, epoch: int = 1, ts: int = BASE_TS) -> bytes:
    """A transaction marker as Kafka's coordinator writes it (REC/EndTransactionMarker.java): one
    control record, key = (version 0, type 1 commit / 0 abort), value = (version 0, epoch 5)."""
    key, value = struct.pack(">hh", 0, 1 if commit else 0), struct.pack(">hi", 0, 5)
    body = b"\x00" + zigzag_varint(0) + zigzag_varint(0)
    body += zigzag_varint(len(key)) + key + zigzag_varint(len(value)) + value + zigzag_varint(0)
    record = zigzag_varint(len(body)) + body
    tail = struct.pack(">hiqqqhii", 0x30, 0, ts, ts, producer_id, epoch, -1, 1) + record
    return struct.pack(">qiibI", 0, 9 + len(tail), 0, 2, crc32c(tail)) + tail


def mutated(rng: random.Random, batch: bytes) -> bytes:
    """1-5 random bytes changed after the CRC field, sometimes cut short; then the length field
    and the CRC-32C rewritten so that framing and checksum agree (only the content is wrong)."""
    out = bytearray(batch)
    for _ in range(rng.randint(1, 5)):
        out[rng.randrange(21, len(out))] = rng.randrange(256)
    if rng.random() < 0.2:
        del out[rng.randrange(61, len(out)) :]
    out[8:12] = struct.pack(">i", len(out) - 12)
    out[17:21] = struct.pack(">I", crc32c(bytes(out[21:])))
    return bytes(out)


def test_append_raw_accepts_only_batches_kafka_decodes(open_log, tmp_path):
    """A batch the engine accepts is a batch every reader can decode — Kafka's own reader too:
    mutated batches of every codec (and transaction markers) go through ``append_raw``; Kafka's
    DumpLogSegments then decodes every record of every accepted one, at the offsets pylog gives."""
    require_kafka()
    rng = random.Random(20261201)
    with open_log(tmp_path / "sources") as source:
        for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
            source.append(
                [rng.randbytes(rng.randrange(0, 30)) for _ in range(3)] + [None],
                keys=[b"k1", None, b"k3", b"k4"],
                headers=[[("h", b"x"), ("n", None)], [], [("e", b"")], []],
                timestamps_ms=[BASE_TS, BASE_TS + 5, BASE_TS - 3, BASE_TS + 1],
                compression=codec,
            )
        sources = [bytes(source.read(offset, 1)) for offset in range(0, source.end_offset, 4)]
    sources += [control_batch(True), control_batch(False)]
    target = open_log(tmp_path / "t-0", segment_bytes=1 << 20)
    accepted = refused = 0
    for i in range(3000):
        batch = mutated(rng, sources[i % len(sources)])
        before = target.end_offset
        try:
            target.append_raw(batch)
        except (CorruptBatchError, InvalidRecordError, RecordTooLargeError):
            refused += 1
            assert target.end_offset == before
            continue
        accepted += 1
    ours = [r.offset for r in target.records()]
    target.close()
    assert accepted > 50 and refused > 50, (accepted, refused)
    logs = segment_files(tmp_path / "t-0", ".log")
    kafka_data = [
        int(line.split()[2])
        for line in dump(logs, "--deep-iteration", "--print-data-log").splitlines()
        if line.startswith("| offset:") and "endTxnMarker" not in line and "isControl" not in line
    ]
    assert kafka_data == ours
