"""Every command takes ``--dir PATH`` (default ``$PYLOG_DIR``), the issue's rule: the log-directory
commands open it, and the file commands (``dump``, ``verify``) look relative PATHs up under it and
``verify`` checks it when no PATH is given."""

from __future__ import annotations

import json

import pytest

import pylog
from pylog.cli import build_parser

# the command names as ``pylog --help`` lists them, each with one action where it has actions
INVOCATIONS = [
    ["topics", "list"],
    ["produce", "t"],
    ["consume", "t"],
    ["groups", "list"],
    ["dump"],
    ["verify"],
    ["compact"],
    ["delete-records", "t", "--before", "1"],
    ["mirror", "a", "kafka://127.0.0.1:9092"],
    ["bench"],
]


def test_every_command_is_covered_here():
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {argv[0] for argv in INVOCATIONS} == set(commands)


@pytest.mark.parametrize("argv", INVOCATIONS, ids=lambda argv: argv[0])
def test_every_command_takes_dir(argv):
    args = build_parser().parse_args([*argv, "--dir", "/somewhere"])
    assert args.dir == "/somewhere"


@pytest.mark.parametrize("argv", INVOCATIONS, ids=lambda argv: argv[0])
def test_dir_defaults_to_the_environment(argv, monkeypatch):
    monkeypatch.setenv("PYLOG_DIR", "/from/env")
    # bench's --dir is where its temporary work directory goes, not a log: it has no default
    expected = None if argv[0] == "bench" else "/from/env"
    assert build_parser().parse_args(argv).dir == expected


@pytest.fixture
def small_log(tmp_path):
    path = tmp_path / "log"
    with pylog.open(path) as log:
        log.create_topic("events", partitions=1)
        with log.producer(acks=1) as producer:
            producer.send("events", b"v")
    return path


def test_verify_checks_pylog_dir_without_a_path(run_pylog, small_log):
    done = run_pylog("verify", "--json", env={"PYLOG_DIR": str(small_log)})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["healthy"] and [p["path"] for p in report["partitions"]] == [str(small_log / "events-0")]


def test_dump_and_verify_look_a_relative_path_up_under_dir(run_pylog, small_log):
    segment = "events-0/00000000000000000000.log"
    dumped = run_pylog("dump", "--dir", small_log, segment, "--json")
    assert dumped.returncode == 0, dumped.stderr
    assert b'"base_offset":0' in dumped.stdout.replace(b" ", b"")
    verified = run_pylog("verify", "--dir", small_log, "events-0", "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["healthy"]


def test_no_path_and_no_dir_is_one_line(run_pylog):
    for command in ("dump", "verify"):
        done = run_pylog(command)
        assert done.returncode == 2
        assert done.stderr.decode().strip().splitlines() == [
            f"pylog {command}: no PATH: pass one, or --dir PATH, or set PYLOG_DIR"
        ]
