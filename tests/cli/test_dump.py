"""``pylog dump``: every batch field against the bytes and the library, records against
``records()``, index entries against the files, the index checks, and the per-batch and
per-record fields against Kafka's own DumpLogSegments on the same segment (tests/kafka_tools.py;
skipped without Java/Maven outside CI). Real subprocesses (``run_pylog``)."""

from __future__ import annotations

import base64
import json
import re
import struct
from pathlib import Path

from helpers import (
    crc32c,
    parse_batches,
    raw_batch,
    raw_record,
    read_offset_index,
    read_time_index,
    segment_bases,
    segment_name,
)
from kafka_tools import dump as kafka_dump
from kafka_tools import sections

from pylog.engine import open_partition

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
CONFIG = {"segment.bytes": 4096, "index.interval.bytes": 300}
BASE_TS = 1_700_000_000_000


def write(path: Path, engine: str, batches: int = 25) -> None:
    with open_partition(path, engine=engine, config=CONFIG) as log:
        for i in range(batches):
            log.append(
                [f"value-{i}-{j}".encode() for j in range(3)] + [b"\xff\xfe binary"],
                keys=[f"key-{i}".encode(), None, b"k", b"\x80"],
                headers=[[("trace", b"t1"), ("empty", None)], [], [("h", b"\x00\xff")], []],
                timestamps_ms=[BASE_TS + 100 * i + j for j in (3, 0, 7, 1)],
                compression=CODECS[i % len(CODECS)],
            )


def dump_json(run_pylog, *args: object) -> dict:
    done = run_pylog("dump", *args, "--json")
    assert done.returncode == 0, done.stderr.decode() + done.stdout.decode()[-2000:]
    return json.loads(done.stdout)


def decoded(value):
    if isinstance(value, dict):
        return base64.b64decode(value["base64"])
    return None if value is None else value.encode()


def test_batch_fields_and_records_match_the_bytes_and_the_library(run_pylog, tmp_path, engine):
    partition = tmp_path / "t-0"
    write(partition, engine)
    base = segment_bases(partition)[0]
    log_path = partition / segment_name(base)
    (document,) = dump_json(run_pylog, log_path, "--print-data-log")["files"]
    data = log_path.read_bytes()
    raw = parse_batches(data)
    assert document["type"] == "log" and document["base_offset"] == base and document["size"] == len(data)
    assert document["trailing_bytes"] == 0 and document["problems"] == []
    assert len(document["batches"]) == len(raw)
    with open_partition(partition, engine=engine) as log:
        records = {r.offset: r for r in log.records()}
    for ours, theirs in zip(document["batches"], raw, strict=True):
        assert ours["position"] == theirs.position and ours["size"] == theirs.size
        assert ours["base_offset"] == theirs.base_offset and ours["last_offset"] == theirs.last_offset
        assert ours["count"] == theirs.records_count == 4
        assert ours["codec"] == CODECS[theirs.codec] and ours["attributes"] == theirs.attributes
        assert ours["crc"] == theirs.crc and ours["crc_valid"] is True
        assert crc32c(data[theirs.position + 21 : theirs.position + theirs.size]) == ours["crc"]
        assert (
            ours["base_timestamp"] == theirs.base_timestamp and ours["max_timestamp"] == theirs.max_timestamp
        )
        assert ours["timestamp_type"] == "CreateTime" and ours["partition_leader_epoch"] == 0
        assert (
            ours["producer_id"],
            ours["producer_epoch"],
            ours["base_sequence"],
            ours["last_sequence"],
        ) == (
            -1,
            -1,
            -1,
            -1,
        )
        assert ours["is_transactional"] is False and ours["is_control"] is False
        assert ours["delete_horizon_ms"] is None
        assert [r["offset"] for r in ours["records"]] == list(
            range(theirs.base_offset, theirs.last_offset + 1)
        )
        for record in ours["records"]:
            expected = records[record["offset"]]
            assert record["timestamp"] == expected.timestamp
            assert decoded(record["key"]) == expected.key and decoded(record["value"]) == expected.value
            assert record["key_size"] == (-1 if expected.key is None else len(expected.key))
            assert record["value_size"] == len(expected.value)
            assert record["header_keys"] == [k for k, _ in expected.headers]
            assert [(k, decoded(v)) for k, v in record["headers"]] == expected.headers
    binary = document["batches"][0]["records"][3]
    assert binary["value"] == {"base64": base64.b64encode(b"\xff\xfe binary").decode()}


def test_index_entries_and_their_checks(run_pylog, tmp_path, engine):
    partition = tmp_path / "t-0"
    write(partition, engine)
    base = segment_bases(partition)[0]
    index = partition / segment_name(base, ".index")
    time_index = partition / segment_name(base, ".timeindex")
    offsets, times = dump_json(run_pylog, index, time_index)["files"]
    assert offsets["entries"] and times["entries"]
    assert [(e["offset"] - base, e["position"]) for e in offsets["entries"]] == read_offset_index(index)
    assert [(e["timestamp"], e["offset"] - base) for e in times["entries"]] == read_time_index(time_index)
    assert offsets["problems"] == times["problems"] == []
    checked = dump_json(run_pylog, index, time_index, "--index-sanity-check")["files"]
    assert [f["sanity_check"] for f in checked] == [None, None]
    assert "entries" not in dump_json(run_pylog, index, "--verify-index-only")["files"][0]
    # an entry pointing inside a batch: the check against the .log finds it, the text says where
    data = index.read_bytes()
    rel, position = struct.unpack_from(">ii", data, 0)
    index.write_bytes(struct.pack(">ii", rel, position + 3) + data[8:])
    done = run_pylog("dump", index, "--verify-index-only", "--json")
    assert done.returncode == 1
    (problem,) = json.loads(done.stdout)["files"][0]["problems"]
    assert (problem["kind"], problem["path"], problem["position"]) == ("index_entry", str(index), 0)
    # entries out of order fail the startup sanity check
    index.write_bytes(data[8:16] + data[:8] + data[16:])
    done = run_pylog("dump", index, "--index-sanity-check")
    assert done.returncode == 1 and b"failed sanity check" in done.stdout


def test_text_output_and_trailing_bytes(run_pylog, tmp_path, engine):
    partition = tmp_path / "t-0"
    write(partition, engine, batches=3)
    log_path = partition / segment_name(0)
    with open(log_path, "ab") as f:
        f.write(b"\x00" * 5)
    done = run_pylog("dump", log_path, "--deep-iteration")
    assert done.returncode == 1
    lines = done.stdout.decode().splitlines()
    assert lines[:2] == [f"Dumping {log_path}", "Log starting offset: 0"]
    assert lines[2].startswith("baseOffset: 0 lastOffset: 3 count: 4 baseSequence: -1 lastSequence: -1 ")
    assert lines[3].startswith(f"| offset: 0 CreateTime: {BASE_TS + 3} keySize: 5 valueSize: 9 ")
    assert f"Found 5 invalid bytes at the end of {log_path.name}" in lines
    assert any(line.startswith(f"torn_tail: {log_path} at byte ") for line in lines)


def test_a_control_batch_shows_its_marker(run_pylog, tmp_path):
    key = struct.pack(">hh", 0, 1)  # version 0, COMMIT
    value = struct.pack(">hi", 0, 7)  # version 0, coordinatorEpoch 7
    record = raw_record(key=key, value=value)
    batch = bytearray(raw_batch(record, 1, attributes=0x30, base_ts=BASE_TS, max_ts=BASE_TS))
    struct.pack_into(">qhi", batch, 43, 42, 3, 0)  # producerId 42, epoch 3, baseSequence 0
    struct.pack_into(">I", batch, 17, crc32c(bytes(batch[21:])))
    partition = tmp_path / "t-0"
    partition.mkdir()
    (partition / segment_name(0)).write_bytes(bytes(batch))
    (document,) = dump_json(run_pylog, partition / segment_name(0), "--deep-iteration")["files"]
    (found,) = document["batches"]
    assert found["is_control"] and found["is_transactional"] and found["producer_id"] == 42
    assert found["producer_epoch"] == 3 and found["base_sequence"] == found["last_sequence"] == 0
    assert found["records"][0]["control"] == {"type": "COMMIT", "version": 0, "coordinator_epoch": 7}


def test_bad_input_exits_2(run_pylog, tmp_path):
    assert run_pylog("dump", tmp_path / "nothing.log").returncode == 2
    (tmp_path / "notes.txt").write_text("x")
    done = run_pylog("dump", tmp_path / "notes.txt")
    assert done.returncode == 2 and done.stderr.startswith(b"pylog dump: ")


# ---------------------------------------------------------------------------------------------
# Kafka's DumpLogSegments on the same files

_FIELD = re.compile(r"(\w+): (\S+)")


def kafka_fields(line: str) -> dict[str, str]:
    return dict(_FIELD.findall(line))


def test_the_fields_agree_with_kafkas_dump_log_segments(run_pylog, tmp_path, engine):
    partition = tmp_path / "t-0"
    write(partition, engine, batches=60)
    base = segment_bases(partition)[1]
    files = [partition / segment_name(base, suffix) for suffix in (".log", ".index", ".timeindex")]
    theirs = sections(kafka_dump(files, "--deep-iteration", "--print-data-log"))
    ours = dump_json(run_pylog, *files, "--print-data-log")["files"]
    their_batches = [kafka_fields(line) for line in theirs[files[0].name] if line.startswith("baseOffset:")]
    their_records = [kafka_fields(line) for line in theirs[files[0].name] if line.startswith("| offset:")]
    assert len(their_batches) == len(ours[0]["batches"]) > 3
    for batch, kafka in zip(ours[0]["batches"], their_batches, strict=True):
        for ours_name, kafka_name in (
            ("base_offset", "baseOffset"),
            ("last_offset", "lastOffset"),
            ("count", "count"),
            ("base_sequence", "baseSequence"),
            ("last_sequence", "lastSequence"),
            ("producer_id", "producerId"),
            ("producer_epoch", "producerEpoch"),
            ("partition_leader_epoch", "partitionLeaderEpoch"),
            ("position", "position"),
            ("max_timestamp", "CreateTime"),
            ("size", "size"),
            ("magic", "magic"),
            ("codec", "compresscodec"),
            ("crc", "crc"),
        ):
            assert str(batch[ours_name]) == kafka[kafka_name], (ours_name, batch, kafka)
        assert kafka["isvalid"] == "true" == str(batch["crc_valid"]).lower()
        assert kafka["isTransactional"] == str(batch["is_transactional"]).lower()
        assert kafka["isControl"] == str(batch["is_control"]).lower()
    records = [r for b in ours[0]["batches"] for r in b["records"]]
    assert len(records) == len(their_records)
    for record, kafka in zip(records, their_records, strict=True):
        assert str(record["offset"]) == kafka["offset"] and str(record["timestamp"]) == kafka["CreateTime"]
        assert str(record["key_size"]) == kafka["keySize"] and str(record["value_size"]) == kafka["valueSize"]
        assert str(record["sequence"]) == kafka["sequence"]
    their_offsets = [kafka_fields(line) for line in theirs[files[1].name] if line.startswith("offset:")]
    assert [(str(e["offset"]), str(e["position"])) for e in ours[1]["entries"]] == [
        (e["offset"], e["position"]) for e in their_offsets
    ]
    their_times = [kafka_fields(line) for line in theirs[files[2].name] if line.startswith("timestamp:")]
    assert [(str(e["timestamp"]), str(e["offset"])) for e in ours[2]["entries"]] == [
        (e["timestamp"], e["offset"]) for e in their_times
    ]
    assert all(f["problems"] == [] for f in ours)


def test_kafka_and_we_find_the_same_index_mismatch(run_pylog, tmp_path, engine):
    import subprocess

    from kafka_tools import DUMP_LOG_SEGMENTS, require_kafka

    libs = require_kafka()
    partition = tmp_path / "t-0"
    write(partition, engine)
    base = segment_bases(partition)[0]
    index = partition / segment_name(base, ".index")
    data = index.read_bytes()
    assert len(data) >= 16, "the test needs two entries"
    rel0 = struct.unpack_from(">i", data, 0)[0]
    rel, position = struct.unpack_from(">ii", data, 8)
    assert rel - 1 > rel0
    index.write_bytes(data[:8] + struct.pack(">ii", rel - 1, position) + data[16:])
    kafka = subprocess.run(
        [
            "java",
            "-Xmx256m",
            "-cp",
            f"{libs}/*",
            DUMP_LOG_SEGMENTS,
            "--verify-index-only",
            "--files",
            str(index),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"Index offset: {base + rel - 1}, log offset: {base + rel}" in kafka.stderr, kafka.stderr[-2000:]
    done = run_pylog("dump", index, "--verify-index-only", "--json")
    assert done.returncode == 1
    (problem,) = json.loads(done.stdout)["files"][0]["problems"]
    assert (problem["kind"], problem["position"], problem["offset"]) == ("index_entry", 8, base + rel - 1)
    assert f"lastOffset is {base + rel}" in problem["message"]
