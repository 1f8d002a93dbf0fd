"""``pylog compact`` and ``pylog delete-records``: real subprocesses (``run_pylog``), their effects
checked through the library (records read back, log start offsets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pylog
from cli.admin_checks import cell, json_answer, one_line_error, parse_table
from cli.conftest import run_with_terminal_stderr
from pylog.types import TopicPartition

QUIET = {"log.cleaner.enable": False}
KEYS = 5


def fill(path: Path, engine: str) -> None:
    """``state``: compacted, 2 partitions of 200 records over 5 keys (a tombstone for key 0 halfway)
    in 1 KiB segments; ``events``: delete policy, 2 partitions of 50 records."""
    with pylog.open(path, engine=engine, config=QUIET) as log:
        log.create_topic(
            "state", 2, {"cleanup.policy": "compact", "segment.bytes": 1024, "delete.retention.ms": 0}
        )
        log.create_topic("events", 2)
        producer = log.producer()
        for i in range(200):
            for partition in (0, 1):
                value = None if i == 100 else b"%d" % i
                producer.send("state", value, key=b"k%d" % (i % KEYS if i != 100 else 0), partition=partition)
        for i in range(100):
            producer.send("events", b"e", partition=i % 2)
        producer.close()


def read_back(log: pylog.Log, tp: TopicPartition) -> list[tuple[int, bytes | None, bytes | None]]:
    """Every record of ``tp`` as (offset, key, value), through a consumer."""
    consumer = log.consumer(auto_offset_reset="earliest")
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        out: list[tuple[int, bytes | None, bytes | None]] = []
        while consumer.position(tp) < end:
            for records in consumer.poll(timeout_ms=200).values():
                out += [(r.offset, r.key, r.value) for r in records]
        return out
    finally:
        consumer.close()


def latest_by_key(records: list[tuple[int, bytes | None, bytes | None]]) -> dict[bytes | None, bytes | None]:
    return {key: value for _, key, value in records}


def test_compact_prints_results_and_compacts(run_pylog, tmp_path: Path, engine: str) -> None:
    path = tmp_path / "log"
    fill(path, engine)
    tps = [TopicPartition("state", p) for p in (0, 1)]
    with pylog.open(path, engine=engine, config=QUIET) as log:
        before = {tp: read_back(log, tp) for tp in tps}
    document = json_answer(run_pylog("compact", path, "state", "--json", "--engine", engine))
    rows = {TopicPartition(r["topic"], r["partition"]): r for r in document["partitions"]}
    assert list(rows) == tps
    with pylog.open(path, engine=engine, config=QUIET) as log:
        described = log.describe_topic("state")
        for tp in tps:
            result = rows[tp]
            assert result["passes"] >= 1 and result["skipped"] is None
            assert result["records_read"] > result["records_kept"] > 0
            assert result["bytes_read"] > result["bytes_written"] > 0
            assert result["clean_offset"] == described.partitions[tp.partition].clean_offset > 0
            after = read_back(log, tp)
            # what was removed is what the cleaner says it dropped; the latest value of every key stays
            assert len(before[tp]) - len(after) == result["records_read"] - result["records_kept"]
            assert latest_by_key(after) == latest_by_key(before[tp])
            assert [o for o, _, _ in after] == sorted({o for o, _, _ in after})
    # a second run has nothing to do; the table says so per partition
    table = run_pylog("compact", "state", "--dir", path, "--engine", engine)
    assert table.returncode == 0, table.stderr
    parsed = parse_table(table.stdout.decode(), "TOPIC")
    assert [(r["TOPIC"], r["PARTITION"]) for r in parsed] == [("state", "0"), ("state", "1")]
    again = json_answer(run_pylog("compact", "--dir", path, "state", "--json", "--engine", engine))[
        "partitions"
    ]
    assert [(r["passes"], r["skipped"]) for r in again] == [(0, "nothing to clean")] * 2
    for row, result in zip(parsed, again, strict=True):
        assert row == {
            "TOPIC": "state",
            "PARTITION": str(result["partition"]),
            "PASSES": str(result["passes"]),
            "SEGMENTS": str(result["segments_cleaned"]),
            "BYTES-READ": str(result["bytes_read"]),
            "BYTES-WRITTEN": str(result["bytes_written"]),
            "RECORDS-READ": str(result["records_read"]),
            "RECORDS-KEPT": str(result["records_kept"]),
            "TOMBSTONES-REMOVED": str(result["tombstones_removed"]),
            "CLEAN-OFFSET": str(result["clean_offset"]),
            "SKIPPED": cell(result["skipped"]),
        }


def test_compact_path_and_topic_forms(run_pylog, tmp_path: Path) -> None:
    path = tmp_path / "log"
    fill(path, "reference")
    # only the compacted topics, without a topic
    for args in ((path,), ("--dir", path)):
        document = json_answer(run_pylog("compact", *args, "--json"))
        assert {r["topic"] for r in document["partitions"]} == {"state"}
    # a delete-policy topic named explicitly: its partitions say why they were left alone
    skipped = json_answer(run_pylog("compact", path, "events", "--json"))["partitions"]
    assert [r["skipped"] for r in skipped] == ["cleanup.policy=delete has no compact"] * 2
    one_line_error(run_pylog("compact", path, "nope"), "unknown topic 'nope' (topics: events, state)")
    one_line_error(run_pylog("compact", "nope", "--dir", path), "unknown topic 'nope'")
    one_line_error(run_pylog("compact", tmp_path / "missing"), "no log directory at")
    one_line_error(run_pylog("compact"), "PYLOG_DIR")
    one_line_error(run_pylog("compact", path, "state", "extra"), "at most PATH and TOPIC")


def test_delete_records_moves_the_log_start(run_pylog, tmp_path: Path, engine: str) -> None:
    path = tmp_path / "log"
    fill(path, engine)
    moved = run_pylog(
        "delete-records", "events", "--offset", "0=10", "--offset", "1=-1", "--dir", path, "--engine", engine
    )
    assert moved.returncode == 0, moved.stderr
    assert parse_table(moved.stdout.decode(), "TOPIC") == [
        {"TOPIC": "events", "PARTITION": "0", "LOG-START": "10"},
        {"TOPIC": "events", "PARTITION": "1", "LOG-START": "50"},
    ]
    # --before: every partition; one already past it is left where it is
    document = json_answer(run_pylog("delete-records", "events", "--before", "20", "--json", "--dir", path))
    assert document == {
        "partitions": [
            {"topic": "events", "partition": 0, "start_offset": 20},
            {"topic": "events", "partition": 1, "start_offset": 50},
        ]
    }
    with pylog.open(path, engine=engine, config=QUIET) as log:
        assert [p.start_offset for p in log.describe_topic("events").partitions] == [20, 50]
        assert [o for o, _, _ in read_back(log, TopicPartition("events", 0))] == list(range(20, 50))
        assert read_back(log, TopicPartition("events", 1)) == []


def test_delete_records_refusals_change_nothing(run_pylog, tmp_path: Path) -> None:
    path = tmp_path / "log"
    fill(path, "reference")

    def delete(*args: object):
        return run_pylog("delete-records", *args, "--dir", path)

    one_line_error(delete("nope", "--before", "1"), "unknown topic 'nope'")
    one_line_error(delete("events", "--offset", "2=1"), "UnknownTopicOrPartitionError", "no partition 2")
    one_line_error(
        delete("events", "--offset", "0=1", "--offset", "1=51"), "OffsetOutOfRangeError", "[0, 50]"
    )
    one_line_error(delete("events", "--before", "51"), "OffsetOutOfRangeError")
    for bad in ("0", "0=x", "a=1", "=1"):
        one_line_error(delete("events", "--offset", bad), "--offset must be PARTITION=OFFSET")
    one_line_error(delete("events", "--offset", "0=1", "--offset", "0=2"), "partition 0 twice")
    one_line_error(delete("events"), "one of the arguments --offset --before is required")
    one_line_error(delete("events", "--offset", "0=1", "--before", "1"), "not allowed with")
    one_line_error(delete("events", "--offset", "0=-2"), "OffsetOutOfRangeError")
    with pylog.open(path, engine="reference", config=QUIET) as log:
        assert [p.start_offset for p in log.describe_topic("events").partitions] == [0, 0]


@pytest.mark.parametrize("command", ["compact", "delete-records"])
def test_help(run_pylog, command: str) -> None:
    shown = run_pylog(command, "--help")
    assert shown.returncode == 0 and b"--dir" in shown.stdout


def test_compact_shows_progress_only_on_a_terminal(tmp_path: Path) -> None:
    path = tmp_path / "log"
    fill(path, "reference")
    returncode, out, shown = run_with_terminal_stderr("compact", path, "--json")
    assert returncode == 0
    assert b"compacting" in shown and b"partitions" in shown
    assert b"compacting" not in out  # stdout keeps only the data
    assert {r["topic"] for r in json.loads(out)["partitions"]} == {"state"}
