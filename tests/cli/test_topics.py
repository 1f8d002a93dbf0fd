"""``pylog topics``: real subprocesses (``run_pylog``), answers compared with the library's."""

from __future__ import annotations

from pathlib import Path

import pytest

import pylog
from cli.admin_checks import cell, json_answer, one_line_error, parse_table, parse_tables

QUIET = {"log.cleaner.enable": False}


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    path = tmp_path / "log"
    with pylog.open(path, config=QUIET) as log:
        log.create_topic("events", 2, {"segment.bytes": 1024})
        log.create_topic("state", 1, {"cleanup.policy": "compact"})
        producer = log.producer()
        for i in range(60):
            producer.send("events", b"x" * 100, partition=i % 2)
            producer.send("state", b"v%d" % i, key=b"k%d" % (i % 3))
        producer.close()
    return path


def test_a_missing_or_foreign_directory_is_one_line(run_pylog, tmp_path: Path) -> None:
    one_line_error(run_pylog("topics", "list", "--dir", tmp_path / "nowhere"), "no log directory at")
    one_line_error(run_pylog("topics", "list"), "PYLOG_DIR")
    one_line_error(run_pylog("topics", "describe", "--dir", tmp_path), "no catalog.db")
    assert not (tmp_path / "catalog.db").exists()


def test_list_as_table_and_json(run_pylog, log_dir: Path) -> None:
    document = json_answer(run_pylog("topics", "list", "--json", "--dir", log_dir))
    assert document == {"topics": [{"name": "events", "partitions": 2}, {"name": "state", "partitions": 1}]}
    # PYLOG_DIR stands for --dir
    table = run_pylog("topics", "list", env={"PYLOG_DIR": str(log_dir)})
    assert table.returncode == 0
    assert parse_table(table.stdout.decode(), "TOPIC") == [
        {"TOPIC": "events", "PARTITIONS": "2"},
        {"TOPIC": "state", "PARTITIONS": "1"},
    ]


def test_describe_json_and_table_agree_with_the_library(run_pylog, log_dir: Path) -> None:
    document = json_answer(run_pylog("topics", "describe", "--json", "--dir", log_dir))
    table = run_pylog("topics", "describe", "--dir", log_dir)
    assert table.returncode == 0
    tables = parse_tables(table.stdout.decode(), "PARTITION")
    with pylog.open(log_dir, config=QUIET) as log:
        assert [t["name"] for t in document["topics"]] == log.list_topics()
        for topic, rows in zip(document["topics"], tables, strict=True):
            described = log.describe_topic(topic["name"])
            assert topic["topic_id"] == described.topic_id
            assert topic["config"] == described.config
            assert len(topic["partitions"]) == len(rows) == len(described.partitions)
            for got, row, want in zip(topic["partitions"], rows, described.partitions, strict=True):
                got = dict(got)
                segments = got.pop("segments")
                assert got == want._asdict()
                assert segments == len(list((log_dir / f"{topic['name']}-{want.partition}").glob("*.log")))
                assert row == {
                    "PARTITION": str(want.partition),
                    "LOG-START": str(want.start_offset),
                    "END-OFFSET": str(want.end_offset),
                    "SIZE": str(want.size_bytes),
                    "SEGMENTS": str(segments),
                    "DIRTY-RATIO": "-" if want.dirty_ratio is None else f"{want.dirty_ratio:.3f}",
                    "CLEAN-OFFSET": cell(want.clean_offset),
                    "UNCLEANABLE": cell(want.uncleanable),
                }
    events = document["topics"][0]
    assert [p["end_offset"] for p in events["partitions"]] == [30, 30]
    assert all(p["segments"] > 1 for p in events["partitions"])  # 1 KiB segments
    assert events["partitions"][0]["dirty_ratio"] is None  # a delete-policy topic has no cleaner view
    assert document["topics"][1]["partitions"][0]["clean_offset"] is not None
    assert "Configs: segment.bytes=1024" in table.stdout.decode()
    # one topic only
    only = json_answer(run_pylog("topics", "describe", "state", "--json", "--dir", log_dir))
    assert only == {"topics": [document["topics"][1]]}


def test_create_with_kafka_config_names(run_pylog, tmp_path: Path) -> None:
    path = tmp_path / "new"
    made = run_pylog(
        "topics", "create", "orders", "--partitions", "3", "--config", "retention.ms=60000",
        "--config", "cleanup.policy=compact,delete", "--dir", path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert b"orders" in made.stdout
    one_line_error(run_pylog("topics", "create", "orders", "--dir", path), "TopicAlreadyExistsError")
    again = run_pylog("topics", "create", "orders", "--partitions", "5", "--if-not-exists", "--dir", path)
    assert again.returncode == 0 and b"already exists" in again.stdout
    with pylog.open(path, config=QUIET) as log:
        described = log.describe_topic("orders")
        assert len(described.partitions) == 3  # --if-not-exists changed nothing
        assert described.config == {"retention.ms": 60000, "cleanup.policy": "compact,delete"}


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ("segment.bytes", "--config must be key=value, not 'segment.bytes'"),
        ("=1", "--config must be key=value"),
        ("segment.bytes=big", "InvalidConfigError: segment.bytes must be an integer"),
        ("no.such.key=1", "InvalidConfigError: unknown config key 'no.such.key'"),
    ],
)
def test_create_refuses_a_malformed_config(run_pylog, log_dir: Path, config: str, fragment: str) -> None:
    one_line_error(run_pylog("topics", "create", "more", "--config", config, "--dir", log_dir), fragment)
    with pylog.open(log_dir, config=QUIET) as log:
        assert log.list_topics() == ["events", "state"]


def test_create_refuses_bad_names_and_counts(run_pylog, log_dir: Path) -> None:
    one_line_error(run_pylog("topics", "create", "a/b", "--dir", log_dir), "InvalidTopicError")
    one_line_error(
        run_pylog("topics", "create", "z", "--partitions", "0", "--dir", log_dir), "InvalidPartitionsError"
    )
    one_line_error(
        run_pylog("topics", "create", "z", "--partitions", "two", "--dir", log_dir), "invalid int value"
    )


def test_unknown_topics_are_one_line(run_pylog, log_dir: Path) -> None:
    for action in (("describe", "nope"), ("delete", "nope"), ("alter", "nope", "--partitions", "4")):
        one_line_error(
            run_pylog("topics", *action, "--dir", log_dir), "unknown topic 'nope' (topics: events, state)"
        )
    gone = run_pylog("topics", "delete", "nope", "--if-exists", "--dir", log_dir)
    assert gone.returncode == 0


def test_alter_sets_and_deletes_config_and_grows(run_pylog, log_dir: Path) -> None:
    changed = run_pylog(
        "topics", "alter", "events", "--config", "retention.ms=1000", "--delete-config", "segment.bytes",
        "--partitions", "4", "--dir", log_dir,
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    with pylog.open(log_dir, config=QUIET) as log:
        described = log.describe_topic("events")
        assert described.config == {"retention.ms": 1000}
        assert [p.end_offset for p in described.partitions] == [30, 30, 0, 0]


def test_alter_refuses_shrinking_and_bad_config_changing_nothing(run_pylog, log_dir: Path) -> None:
    for count in ("2", "1"):
        one_line_error(
            run_pylog(
                "topics",
                "alter",
                "events",
                "--partitions",
                count,
                "--config",
                "retention.ms=5",
                "--dir",
                log_dir,
            ),
            "partitions can only be added",
        )
    one_line_error(
        run_pylog("topics", "alter", "events", "--config", "retention.ms=-5", "--dir", log_dir),
        "retention.ms",
    )
    one_line_error(run_pylog("topics", "alter", "events", "--dir", log_dir), "nothing to alter")
    one_line_error(
        run_pylog("topics", "alter", "events", "--config", "a=1", "--delete-config", "a", "--dir", log_dir),
        "both set",
    )
    with pylog.open(log_dir, config=QUIET) as log:
        described = log.describe_topic("events")
        assert described.config == {"segment.bytes": 1024} and len(described.partitions) == 2


def test_delete(run_pylog, log_dir: Path) -> None:
    deleted = run_pylog("topics", "delete", "events", "--dir", log_dir)
    assert deleted.returncode == 0, deleted.stderr
    with pylog.open(log_dir, config=QUIET) as log:
        assert log.list_topics() == ["state"]
    assert not (log_dir / "events-0").exists()
