"""``pylog groups``: real subprocesses (``run_pylog``), answers compared with the library's; a live
member is a consumer of this test process, heartbeating while the command runs in its child."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import pylog
from cli.admin_checks import json_answer, one_line_error, parse_table
from pylog.types import OffsetAndMetadata, TopicPartition

QUIET = {"log.cleaner.enable": False}
T0, T1 = TopicPartition("t", 0), TopicPartition("t", 1)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[pylog.Log]:
    """A log with topic ``t`` (2 partitions of 10 records, timestamps 1000, 2000, ... 10000 ms) and
    the empty group ``app`` committed at 5 on both."""
    with pylog.open(tmp_path / "log", config=QUIET) as opened:
        opened.create_topic("t", 2)
        producer = opened.producer()
        for partition in (0, 1):
            for i in range(10):
                producer.send("t", b"v", partition=partition, timestamp_ms=(i + 1) * 1000)
        producer.flush()
        producer.close()
        opened.reset_offsets("app", "t", to=5)
        yield opened


def committed(log: pylog.Log, group_id: str) -> dict[TopicPartition, int]:
    return {tp: om.offset for tp, om in log.describe_group(group_id).committed.items()}


def live_member(log: pylog.Log, group_id: str = "app") -> pylog.Consumer:
    """A consumer of ``group_id`` owning both partitions of ``t``."""
    consumer = log.consumer(group_id=group_id, session_timeout_ms=60_000, heartbeat_interval_ms=1_000)
    consumer.subscribe(["t"])
    for _ in range(100):
        consumer.poll(timeout_ms=100)
        if consumer.assignment() == {T0, T1}:
            return consumer
    raise AssertionError("the consumer was never assigned both partitions")


def test_list_as_table_and_json(run_pylog, log: pylog.Log) -> None:
    log.reset_offsets("batch", "t", to="latest")
    document = json_answer(run_pylog("groups", "list", "--json", "--dir", log.path))
    assert document == {
        "groups": [
            {"group_id": g, "state": log.describe_group(g).state, "members": 0} for g in log.list_groups()
        ]
    }
    assert [g["group_id"] for g in document["groups"]] == ["app", "batch"]
    table = run_pylog("groups", "list", "--dir", log.path)
    assert parse_table(table.stdout.decode(), "GROUP") == [
        {"GROUP": "app", "STATE": "Empty", "MEMBERS": "0"},
        {"GROUP": "batch", "STATE": "Empty", "MEMBERS": "0"},
    ]


def test_a_live_group_is_described_and_only_dry_runs_reset(run_pylog, log: pylog.Log) -> None:
    consumer = live_member(log)
    try:
        consumer.commit({T0: OffsetAndMetadata(7, "", -1)})
        document = json_answer(run_pylog("groups", "describe", "app", "--json", "--dir", log.path))
        described = log.describe_group("app")
        (member,) = described.members
        assert document["state"] == described.state == "Stable"
        assert document["generation"] == described.generation and document["protocol"] == described.protocol
        assert document["members"] == [
            {
                "member_id": member.member_id,
                "group_instance_id": None,
                "client_host": member.client_host,
                "client_pid": os.getpid(),
                "assignment": [["t", 0], ["t", 1]],
            }
        ]
        assert document["partitions"] == [
            {"topic": "t", "partition": 0, "committed_offset": 7, "end_offset": 10, "lag": 3,
             "member_id": member.member_id},
            {"topic": "t", "partition": 1, "committed_offset": 5, "end_offset": 10, "lag": 5,
             "member_id": member.member_id},
        ]  # fmt: skip
        assert {(p["topic"], p["partition"]): p["lag"] for p in document["partitions"]} == {
            tuple(tp): lag for tp, lag in described.lag.items()
        }
        table = run_pylog("groups", "describe", "app", "--dir", log.path).stdout.decode()
        assert "State: Stable" in table and "Members: 1" in table
        assert [
            (
                r["TOPIC"],
                r["PARTITION"],
                r["CURRENT-OFFSET"],
                r["LOG-END-OFFSET"],
                r["LAG"],
                r["CONSUMER-ID"],
                r["PID"],
            )
            for r in parse_table(table, "TOPIC")
        ] == [
            ("t", "0", "7", "10", "3", member.member_id, str(os.getpid())),
            ("t", "1", "5", "10", "5", member.member_id, str(os.getpid())),
        ]
        one_line_error(
            run_pylog("groups", "reset-offsets", "app", "--topic", "t", "--to-earliest", "--dir", log.path),
            "NonEmptyGroupError",
            "live members",
        )
        one_line_error(run_pylog("groups", "delete", "app", "--dir", log.path), "NonEmptyGroupError")
        plan = json_answer(
            run_pylog("groups", "reset-offsets", "app", "--topic", "t", "--shift-by", "-2", "--dry-run", "--json",
                      "--dir", log.path)
        )  # fmt: skip
        assert plan == {
            "group_id": "app",
            "topic": "t",
            "dry_run": True,
            "partitions": [
                {"partition": 0, "current": 7, "new": 5},
                {"partition": 1, "current": 5, "new": 3},
            ],
        }
        assert committed(log, "app") == {T0: 7, T1: 5}
        assert log.describe_group("app").members  # the member was live all along
    finally:
        consumer.close()
    done = run_pylog("groups", "reset-offsets", "app", "--topic", "t", "--to-earliest", "--dir", log.path)
    assert done.returncode == 0, done.stderr
    assert committed(log, "app") == {T0: 0, T1: 0}


TARGETS = [
    (["--to-earliest"], "earliest"),
    (["--to-latest"], "latest"),
    (["--to-offset", "3"], 3),
    (["--to-offset", "99"], 99),
    (["--to-datetime", "1970-01-01T00:00:03Z"], {"timestamp": 3000}),
    (["--to-datetime", "4500"], {"timestamp": 4500}),
    (["--to-datetime", "2999-01-01T00:00:00"], {"timestamp": 32472144000000}),
    (["--shift-by", "-2"], {"shift": -2}),
    (["--shift-by", "100"], {"shift": 100}),
]


@pytest.mark.parametrize(("options", "to"), TARGETS, ids=[" ".join(o) for o, _ in TARGETS])
def test_dry_run_prints_the_plan_and_changes_nothing(run_pylog, log: pylog.Log, options: list, to) -> None:
    log.reset_offsets("app", "t", to=8, partitions=[1])
    before = committed(log, "app")
    plan = json_answer(
        run_pylog(
            "groups",
            "reset-offsets",
            "app",
            "--topic",
            "t",
            *options,
            "--dry-run",
            "--json",
            "--dir",
            log.path,
        )
    )
    expected = log.reset_offsets("app", "t", to=to, dry_run=True)
    assert plan["dry_run"] is True
    assert plan["partitions"] == [
        {"partition": tp.partition, "current": before[tp], "new": new} for tp, new in sorted(expected.items())
    ]
    table = run_pylog(
        "groups", "reset-offsets", "app", "--topic", "t", *options, "--dry-run", "--dir", log.path
    )
    assert b"dry run, nothing changed" in table.stdout
    assert parse_table(table.stdout.decode(), "TOPIC") == [
        {
            "TOPIC": "t",
            "PARTITION": str(tp.partition),
            "CURRENT-OFFSET": str(before[tp]),
            "NEW-OFFSET": str(new),
        }
        for tp, new in sorted(expected.items())
    ]
    assert committed(log, "app") == before


def test_reset_writes_each_target(run_pylog, log: pylog.Log) -> None:
    def reset(*options: str) -> dict[TopicPartition, int]:
        result = run_pylog("groups", "reset-offsets", "app", "--topic", "t", *options, "--dir", log.path)
        assert result.returncode == 0, result.stderr
        assert b"dry run" not in result.stdout
        return committed(log, "app")

    assert reset("--to-offset", "3", "--partition", "1") == {T0: 5, T1: 3}
    assert reset("--shift-by", "-1") == {T0: 4, T1: 2}
    assert reset("--to-datetime", "1970-01-01T00:00:02.500Z", "--partition", "0") == {T0: 2, T1: 2}
    assert reset("--to-latest", "--partition", "0", "--partition", "1") == {T0: 10, T1: 10}
    assert reset("--to-earliest") == {T0: 0, T1: 0}
    # a group that does not exist yet is created, as Kafka's tool does
    fresh = run_pylog(
        "groups", "reset-offsets", "new", "--topic", "t", "--to-offset", "4", "--json", "--dir", log.path
    )
    assert json_answer(fresh)["partitions"] == [
        {"partition": 0, "current": None, "new": 4},
        {"partition": 1, "current": None, "new": 4},
    ]
    assert committed(log, "new") == {T0: 4, T1: 4}


def test_refusals_are_one_line_and_change_nothing(run_pylog, log: pylog.Log) -> None:
    def reset(*options: object):
        return run_pylog("groups", "reset-offsets", *options, "--dir", log.path)

    one_line_error(
        run_pylog("groups", "describe", "nope", "--dir", log.path), "unknown group 'nope' (groups: app)"
    )
    one_line_error(run_pylog("groups", "delete", "nope", "--dir", log.path), "unknown group 'nope'")
    one_line_error(reset("app", "--topic", "nope", "--to-earliest"), "unknown topic 'nope'")
    one_line_error(reset("app", "--topic", "t", "--to-earliest", "--partition", "2"), "has no partition 2")
    one_line_error(reset("app", "--topic", "t", "--to-earliest", "--partition", "x"), "invalid int value")
    one_line_error(reset("app", "--topic", "t"), "one of the arguments --to-earliest")
    one_line_error(reset("app", "--topic", "t", "--to-earliest", "--to-latest"), "not allowed with")
    one_line_error(reset("app", "--to-earliest"), "--topic")
    one_line_error(reset("app", "--topic", "t", "--to-datetime", "soon"), "not a timestamp")
    log.reset_offsets("half", "t", to=1, partitions=[0])
    one_line_error(reset("half", "--topic", "t", "--shift-by", "1"), "NoOffsetForPartitionError", "t-1")
    assert committed(log, "half") == {T0: 1}
    assert committed(log, "app") == {T0: 5, T1: 5}
    one_line_error(run_pylog("groups", "list", "--dir", Path(log.path) / "missing"), "no log directory")


def test_delete(run_pylog, log: pylog.Log) -> None:
    deleted = run_pylog("groups", "delete", "app", "--dir", log.path)
    assert deleted.returncode == 0, deleted.stderr
    assert log.list_groups() == []
    one_line_error(run_pylog("groups", "describe", "app", "--dir", log.path), "(the log has no groups)")
