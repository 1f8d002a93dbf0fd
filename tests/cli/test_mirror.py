"""``pylog mirror SOURCE DEST``: real subprocesses (``run_pylog``); the copies are checked through
the library. Exit codes: 0 copied, 1 count check failed, 2 could not copy (one line on stderr)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pylog
from cli.admin_checks import json_answer, one_line_error, parse_table
from cli.conftest import run_with_terminal_stderr
from pylog.cli import main
from pylog.mirror import MirrorCountError, MirrorResult, PartitionResult
from pylog.types import TopicPartition

QUIET = {"log.cleaner.enable": False}


def fill(path: Path, records: int = 40, config: dict | None = None) -> None:
    """``events`` (2 partitions, ``records`` each, keyed, with headers) and ``other`` (1 record)."""
    with pylog.open(path, config=QUIET) as log:
        log.create_topic("events", 2, config)
        log.create_topic("other", 1)
        with log.producer(linger_ms=20) as producer:
            for i in range(2 * records):
                producer.send(
                    "events",
                    b"v%d" % i,
                    key=b"k%d" % i,
                    headers=[("n", b"%d" % i)],
                    partition=i % 2,
                    timestamp_ms=i,
                )
            producer.send("other", b"x")


def records_of(path: Path, topic: str) -> list[tuple]:
    with pylog.open(path, config=QUIET) as log:
        return [
            (p.partition, r.offset, r.timestamp, r.key, r.value, r.headers)
            for p in log.describe_topic(topic).partitions
            for r in log.backend.partition_log(TopicPartition(topic, p.partition)).records()
        ]


def test_copies_shows_a_table_and_resumes(run_pylog, tmp_path: Path) -> None:
    fill(tmp_path / "src")
    shown = run_pylog("mirror", tmp_path / "src", tmp_path / "dst", "--topic", "events")
    assert shown.returncode == 0, shown.stderr.decode()
    assert shown.stderr == b""
    text = shown.stdout.decode()
    assert text.startswith("mirrored 80 records")
    rows = parse_table(text, "TOPIC")
    assert [(r["TOPIC"], r["PARTITION"], r["RECORDS"], r["SOURCE-OFFSETS"], r["OFFSETS"]) for r in rows] == [
        ("events", "0", "40", "[0, 40)", "preserved"),
        ("events", "1", "40", "[0, 40)", "preserved"),
    ]
    assert records_of(tmp_path / "dst", "events") == records_of(tmp_path / "src", "events")
    with pylog.open(tmp_path / "dst", config=QUIET) as dst:
        assert dst.list_topics() == ["events"]

    again = json_answer(run_pylog("mirror", tmp_path / "src", tmp_path / "dst", "--json"))
    by_topic = {(p["topic"], p["partition"]): p["records_written"] for p in again["partitions"]}
    assert by_topic == {("events", 0): 0, ("events", 1): 0, ("other", 0): 1}
    assert again["created_topics"] == ["other"] and again["group_id"] == "pylog-mirror"


def test_a_relative_source_is_looked_up_under_dir(run_pylog, tmp_path: Path) -> None:
    fill(tmp_path / "src", records=2)
    done = run_pylog("mirror", "src", tmp_path / "dst", "--json", env={"PYLOG_DIR": str(tmp_path)})
    assert json_answer(done)["source"] == str(tmp_path / "src")
    assert records_of(tmp_path / "dst", "events") == records_of(tmp_path / "src", "events")


def test_group_option_keeps_progress_apart(run_pylog, tmp_path: Path) -> None:
    fill(tmp_path / "src", records=3)
    first = json_answer(run_pylog("mirror", tmp_path / "src", tmp_path / "a", "--group", "to-a", "--json"))
    second = json_answer(run_pylog("mirror", tmp_path / "src", tmp_path / "b", "--group", "to-b", "--json"))
    assert first["records"] == second["records"] == 7
    with pylog.open(tmp_path / "src", config=QUIET) as src:
        assert {"to-a", "to-b"} <= set(src.list_groups())
    reused = run_pylog("mirror", tmp_path / "src", tmp_path / "c", "--group", "to-a")
    one_line_error(reused, "pylog mirror: MirrorError", "pick another group id")


def test_errors_are_one_line_exit_2(run_pylog, tmp_path: Path) -> None:
    fill(tmp_path / "src", records=2)
    one_line_error(
        run_pylog("mirror", tmp_path / "src", tmp_path / "dst", "--topic", "nope"),
        "UnknownTopicOrPartitionError",
        "nope",
    )
    one_line_error(run_pylog("mirror", tmp_path / "absent", tmp_path / "dst"), "not a pylog log directory")
    assert not (tmp_path / "absent").exists()
    with pylog.open(tmp_path / "small", config=QUIET) as small:
        small.create_topic("events", 1)
    one_line_error(
        run_pylog("mirror", tmp_path / "src", tmp_path / "small"), "has 1 partition(s), the source 2"
    )


def test_count_check_failure_exits_1_naming_the_partition(tmp_path: Path, monkeypatch, capsys) -> None:
    """The exit-1 rule (a mismatch needs another writer mid-run, which tests/test_mirror.py makes
    happen in-process; here the command's handling of it): the table still shows, each mismatch
    gets a line on stderr."""
    result = MirrorResult("/a", "/b", "pylog-mirror")
    result.partitions[TopicPartition("t", 1)] = PartitionResult(
        "t", 1, 0, 5, 0, 5, records_read=5, records_written=5
    )
    mismatch = "t-1: the destination end moved by 6, 5 records were written"

    def failing(*args: object, **kwargs: object) -> None:
        raise MirrorCountError("count check failed", result, [mismatch])

    monkeypatch.setattr(pylog, "mirror", failing)
    assert main(["mirror", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    out, err = capsys.readouterr()
    assert parse_table(out, "TOPIC")[0]["RECORDS"] == "5"
    assert err == f"pylog mirror: count check failed: {mismatch}\n"


def test_progress_shows_only_on_a_terminal(tmp_path: Path) -> None:
    fill(tmp_path / "src", records=20_000)
    returncode, out, shown = run_with_terminal_stderr("mirror", tmp_path / "src", tmp_path / "dst", "--json")
    assert returncode == 0
    assert b"mirroring" in shown and b"records" in shown
    assert b"mirroring" not in out
    assert json.loads(out)["records"] == 40_001


# --- with a broker -------------------------------------------------------------------------------


def test_settings_kafka_refuses_are_named_on_stderr(run_pylog, tmp_path: Path, kafka_url: str) -> None:
    topic, group = f"mirror-cli-{uuid.uuid4().hex[:8]}", f"mirror-cli-{uuid.uuid4().hex[:8]}"
    with pylog.open(tmp_path / "src", config=QUIET) as src:
        src.create_topic(topic, 2, {"segment.bytes": 65536, "retention.ms": 3_600_000})
        with src.producer() as producer:
            for i in range(10):
                producer.send(topic, b"%d" % i, partition=i % 2)
    try:
        shown = run_pylog("mirror", tmp_path / "src", kafka_url, "--topic", topic, "--group", group, "--json")
        assert shown.returncode == 0, shown.stderr.decode()
        # (librdkafka may add its own log lines, e.g. while a fresh broker elects its coordinators)
        [line] = [line for line in shown.stderr.decode().splitlines() if line.startswith("pylog mirror:")]
        assert line.startswith(f"pylog mirror: topic {topic}: segment.bytes=65536 not carried over: ")
        document = json.loads(shown.stdout)
        assert document["records"] == 10
        assert [c["key"] for c in document["configs_not_carried"]] == ["segment.bytes"]
    finally:
        with pylog.open(kafka_url) as cluster:
            if topic in cluster.list_topics():
                cluster.delete_topic(topic)
        with pylog.open(tmp_path / "src", config=QUIET) as src:
            assert group in src.list_groups()  # progress lives on the source
