"""``pylog consume`` as a real subprocess: every output format, where it starts (--from-beginning,
--offset, --timestamp, --partition, --group) and ends (--max-records, the end of the log,
--follow until SIGINT), binary-safe round trips through ``produce`` (json and hex, also as a
shell pipeline), a closed pipe, and the refusals.

Expectations come from the library: the records the tests compare against are what
``Consumer.poll`` reads from the same directory."""

from __future__ import annotations

import json
import os
import random
import selectors
import shlex
import signal
import subprocess

import pytest

import pylog
from cli.admin_checks import one_line_error
from cli.conftest import pylog_command
from cli.read_back import read_all
from pylog import TopicPartition
from pylog.bench_processes import same_pylog_env
from pylog.cli import record_format


def write(path, topic: str, records: list[dict]) -> None:
    """``records`` (``Producer.send`` keyword arguments) appended in order, written to the OS
    (acks=1) before it returns."""
    with pylog.open(path, auto_create_topics=False) as log, log.producer(acks=1) as producer:
        for record in records:
            producer.send(topic, **record)


@pytest.fixture
def log_dir(tmp_path, engine):
    path = tmp_path / "log"
    with pylog.open(path, engine=engine) as log:
        log.create_topic("one")
        log.create_topic("three", partitions=3)
        log.create_topic("copy", partitions=3)
    return path


def lines(result) -> list[bytes]:
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    return result.stdout.splitlines()


SAMPLE = [
    {"value": b"plain", "key": b"k1", "partition": 0, "timestamp_ms": 1000},
    {"value": b"caf\xc3\xa9 \xff", "key": None, "partition": 0, "timestamp_ms": 2000},
    {
        "value": None,
        "key": b"\x00",
        "partition": 0,
        "timestamp_ms": 3000,
        "headers": [("h", b"1"), ("n", None)],
    },
    {"value": b"", "key": b"", "partition": 0, "timestamp_ms": 4000},
]


def test_text_prints_values_utf8_with_replacement_and_null(run_pylog, log_dir, engine):
    write(log_dir, "one", SAMPLE)
    out = lines(run_pylog("consume", "one", "--dir", log_dir, "--engine", engine, "--from-beginning"))
    assert out == [b"plain", "café \ufffd".encode(), b"null", b""]


def test_text_print_options_follow_kafkas_order(run_pylog, log_dir):
    write(log_dir, "one", SAMPLE)
    out = lines(
        run_pylog(
            "consume",
            "one",
            "--dir",
            log_dir,
            "--from-beginning",
            "--print-key",
            "--print-offset",
            "--print-partition",
            "--print-timestamp",
            "--print-headers",
            "--key-separator",
            "|",
        )
    )
    assert out[0] == b"CreateTime:1000|Partition:0|Offset:0|NO_HEADERS|k1|plain"
    assert out[2] == b"CreateTime:3000|Partition:0|Offset:2|h:1,n:null|\x00|null"


def test_json_lines_are_the_records_the_library_reads(run_pylog, log_dir, engine):
    write(log_dir, "one", SAMPLE)
    out = lines(
        run_pylog(
            "consume", "one", "--dir", log_dir, "--engine", engine, "--from-beginning", "--format", "json"
        )
    )
    expected = [record_format.record_to_json(r) for r in read_all(log_dir, "one")]
    assert [json.loads(line) for line in out] == expected
    assert expected[1]["value"] == {"base64": "Y2Fmw6kg/w=="}  # not UTF-8: marked base64
    assert expected[2]["headers"] == [["h", "1"], ["n", None]] and expected[2]["value"] is None
    assert expected[0]["timestamp_type"] == "CreateTime" and expected[0]["timestamp"] == 1000


def test_hex_lines(run_pylog, log_dir):
    write(log_dir, "one", SAMPLE)
    out = lines(run_pylog("consume", "one", "--dir", log_dir, "--from-beginning", "--format", "hex"))
    assert out == [b"6b31\t706c61696e", b"-\t636166c3a920ff", b"00\t-\t68:31\t6e:-", b"\t"]


def random_records(seed: int, count: int) -> list[dict]:
    """Keys, values and headers of random bytes: null key, empty value, non-UTF-8, line breaks."""
    rng = random.Random(seed)
    pieces = [b"", b"\n", b"\r\n", b"\xff\xfe", "é".encode(), b"\x00", b'"\\', b"\t", b"-", b"text"]

    def blob() -> bytes:
        return b"".join(
            rng.choice(pieces) if rng.random() < 0.5 else rng.randbytes(rng.randrange(5)) for _ in range(3)
        )

    records = []
    for i in range(count):
        headers = [
            (rng.choice(["h", "é", "a b", ""]), None if rng.random() < 0.2 else blob())
            for _ in range(rng.randrange(3))
        ]
        records.append(
            {
                "value": None if i % 17 == 3 else blob(),
                "key": None if i % 5 == 0 else blob(),
                "headers": headers,
                "partition": i % 3,
                "timestamp_ms": 1_600_000_000_000 + rng.randrange(10**6),
            }
        )
    return records


@pytest.mark.parametrize("form", ["json", "hex"])
def test_binary_round_trip_through_produce(run_pylog, log_dir, engine, form):
    write(log_dir, "three", random_records(7, 300))
    out = run_pylog(
        "consume", "three", "--dir", log_dir, "--engine", engine, "--from-beginning", "--format", form
    )
    assert out.returncode == 0 and out.stderr == b""
    back = run_pylog(
        "produce", "copy", "--dir", log_dir, "--engine", engine, "--format", form, "-q", input=out.stdout
    )
    assert back.returncode == 0, back.stderr
    original, copied = read_all(log_dir, "three"), read_all(log_dir, "copy")
    assert len(original) == 300
    if form == "json":  # json carries partition and timestamp: the copy is the same log
        fields = ("partition", "offset", "timestamp", "key", "value", "headers")
        assert [tuple(getattr(r, f) for f in fields) for r in copied] == [
            tuple(getattr(r, f) for f in fields) for r in original
        ]
    else:  # hex carries key, value and headers; all of them went to one partition (sticky)

        def content(records):
            return sorted(((r.key, r.value, r.headers) for r in records), key=repr)

        assert content(copied) == content(original)


def shell(command: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", "set -o pipefail; " + command],
        env=same_pylog_env(),
        cwd=cwd,
        capture_output=True,
        timeout=120,
        check=False,
    )


def pylog_shell(*args: object) -> str:
    return shlex.join(pylog_command(*args))


def test_consume_piped_into_produce_copies_the_log(log_dir, tmp_path):
    write(log_dir, "three", random_records(11, 200))
    result = shell(
        pylog_shell("consume", "three", "--dir", log_dir, "--from-beginning", "--format", "json")
        + " | "
        + pylog_shell("produce", "copy", "--dir", log_dir, "--format", "json", "-q"),
        tmp_path,
    )
    assert (result.returncode, result.stderr) == (0, b"")
    fields = ("partition", "offset", "timestamp", "key", "value", "headers")
    assert [tuple(getattr(r, f) for f in fields) for r in read_all(log_dir, "copy")] == [
        tuple(getattr(r, f) for f in fields) for r in read_all(log_dir, "three")
    ]


def test_produce_piped_into_consume(log_dir, tmp_path):
    result = shell(
        "printf 'a\\nb\\nc' | "
        + pylog_shell("produce", "one", "--dir", log_dir, "-q")
        + " && "
        + pylog_shell("consume", "one", "--dir", log_dir, "--from-beginning"),
        tmp_path,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"a\nb\nc\n", b"")


@pytest.mark.parametrize("form", ["text", "json"])
def test_a_closed_pipe_ends_quietly(log_dir, tmp_path, form):
    with pylog.open(log_dir, auto_create_topics=False) as log, log.producer(acks=1) as producer:
        producer.send_batch("one", [b"%0100d" % i for i in range(100_000)], partition=0).get(timeout=60)
    result = shell(
        pylog_shell("consume", "one", "--dir", log_dir, "--from-beginning", "--format", form) + " | head -1",
        tmp_path,
    )
    # pipefail: the status is consume's (head exits 0)
    assert (result.returncode, result.stderr) == (0, b"")
    assert len(result.stdout.splitlines()) == 1


def test_without_from_beginning_it_starts_at_the_end(run_pylog, log_dir):
    write(log_dir, "one", SAMPLE)
    assert lines(run_pylog("consume", "one", "--dir", log_dir)) == []


def test_offset_on_a_partition_and_on_each(run_pylog, log_dir):
    write(
        log_dir, "three", [{"value": b"%d-%d" % (p, i), "partition": p} for p in range(3) for i in range(4)]
    )
    out = lines(run_pylog("consume", "three", "--dir", log_dir, "--partition", "1", "--offset", "2"))
    assert out == [b"1-2", b"1-3"]
    out = lines(run_pylog("consume", "three", "--dir", log_dir, "--offset", "3"))
    assert sorted(out) == [b"0-3", b"1-3", b"2-3"]
    out = lines(
        run_pylog(
            "consume",
            "three",
            "--dir",
            log_dir,
            "--partition",
            "0",
            "--partition",
            "2",
            "--offset",
            "earliest",
        )
    )
    assert sorted(out) == sorted([b"0-%d" % i for i in range(4)] + [b"2-%d" % i for i in range(4)])
    assert (
        lines(run_pylog("consume", "three", "--dir", log_dir, "--offset", "99")) == []
    )  # clamped to the end
    assert lines(run_pylog("consume", "three", "--dir", log_dir, "--offset", "latest")) == []


def test_timestamp_starts_at_the_first_record_at_or_after_it(run_pylog, log_dir):
    write(log_dir, "one", [{"value": b"t%d" % t, "timestamp_ms": t * 1000} for t in (1, 2, 3, 4)])
    assert lines(run_pylog("consume", "one", "--dir", log_dir, "--timestamp", "2500")) == [b"t3", b"t4"]
    out = run_pylog("consume", "one", "--dir", log_dir, "--timestamp", "1970-01-01T00:00:02Z")
    assert lines(out) == [b"t2", b"t3", b"t4"]
    assert lines(run_pylog("consume", "one", "--dir", log_dir, "--timestamp", "9999")) == []


def test_max_records(run_pylog, log_dir):
    write(log_dir, "one", [{"value": b"%d" % i} for i in range(10)])
    assert lines(run_pylog("consume", "one", "--dir", log_dir, "--from-beginning", "--max-records", "3")) == [
        b"0",
        b"1",
        b"2",
    ]


def test_group_commits_what_it_printed(run_pylog, log_dir):
    write(log_dir, "three", [{"value": b"first-%d" % i, "partition": i % 3} for i in range(6)])
    group = ("--group", "g", "--from-beginning")
    assert len(lines(run_pylog("consume", "three", "--dir", log_dir, *group, "--max-records", "2"))) == 2
    rest = lines(run_pylog("consume", "three", "--dir", log_dir, *group))
    assert len(rest) == 4  # the two printed before are not printed again
    assert lines(run_pylog("consume", "three", "--dir", log_dir, *group)) == []  # nothing new
    write(log_dir, "three", [{"value": b"second", "partition": 1}])
    assert lines(run_pylog("consume", "three", "--dir", log_dir, *group)) == [b"second"]
    with pylog.open(log_dir, auto_create_topics=False) as log:
        consumer = log.consumer(group_id="g")
        assert [consumer.committed(TopicPartition("three", p)) for p in range(3)] == [2, 3, 2]
        consumer.close()


def test_group_with_an_offset_assigns_and_commits(run_pylog, log_dir):
    write(log_dir, "one", [{"value": b"%d" % i} for i in range(5)])
    assert lines(run_pylog("consume", "one", "--dir", log_dir, "--group", "g2", "--offset", "3")) == [
        b"3",
        b"4",
    ]
    write(log_dir, "one", [{"value": b"5"}])
    assert lines(run_pylog("consume", "one", "--dir", log_dir, "--group", "g2")) == [b"5"]


def read_line(stream, timeout: float) -> bytes:
    """One line from ``stream`` (a pipe), or fail after ``timeout`` seconds without one."""
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    try:
        assert selector.select(timeout), "no output in time"
        return stream.readline()
    finally:
        selector.close()


def test_follow_prints_what_is_produced_later_and_stops_on_sigint(log_dir):
    write(log_dir, "one", [{"value": b"before"}])
    command = pylog_command(
        "consume", "one", "--dir", log_dir, "--follow", "--from-beginning", "--group", "f"
    )
    with subprocess.Popen(
        command, env=same_pylog_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
    ) as child:
        try:
            assert read_line(child.stdout, 60) == b"before\n"  # it is running and reading
            write(log_dir, "one", [{"value": b"after"}])
            assert read_line(child.stdout, 60) == b"after\n"
            child.send_signal(signal.SIGINT)
            assert child.wait(timeout=60) == 130
        finally:
            if child.poll() is None:
                child.kill()
        assert child.stdout.read() == b""
        assert child.stderr.read().decode().splitlines() == ["pylog consume: interrupted"]
    with pylog.open(log_dir, auto_create_topics=False) as log:
        consumer = log.consumer(group_id="f")
        assert consumer.committed(TopicPartition("one", 0)) == 2  # both printed lines were committed
        consumer.close()


def test_refusals_are_one_line(run_pylog, log_dir, tmp_path):
    assert "unknown topic 'nope'" in one_line_error(run_pylog("consume", "nope", "--dir", log_dir))
    assert "no partition 3" in one_line_error(
        run_pylog("consume", "three", "--dir", log_dir, "--partition", "3")
    )
    assert "--offset must be" in one_line_error(
        run_pylog("consume", "one", "--dir", log_dir, "--offset", "-1")
    )
    assert "not a timestamp" in one_line_error(
        run_pylog("consume", "one", "--dir", log_dir, "--timestamp", "soon")
    )
    assert "text only" in one_line_error(
        run_pylog("consume", "one", "--dir", log_dir, "--format", "json", "--print-key")
    )
    assert "--max-records" in one_line_error(
        run_pylog("consume", "one", "--dir", log_dir, "--max-records", "0")
    )
    assert "no log directory" in one_line_error(run_pylog("consume", "one", "--dir", tmp_path / "absent"))
    both = run_pylog("consume", "one", "--dir", log_dir, "--from-beginning", "--offset", "1")
    assert both.returncode == 2 and len(both.stderr.splitlines()) == 1
    assert not os.path.exists(tmp_path / "absent")


def test_without_follow_it_ends_at_the_end_the_log_had_when_it_started(log_dir):
    count = 50_000  # about 5 MB of output: far more than a pipe holds, so the child blocks writing
    with pylog.open(log_dir, auto_create_topics=False) as log, log.producer(acks=1) as producer:
        producer.send_batch("one", [b"%099d" % i for i in range(count)], partition=0).get(timeout=60)
    command = pylog_command("consume", "one", "--dir", log_dir, "--from-beginning")
    with subprocess.Popen(
        command, env=same_pylog_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as child:
        try:
            first = read_line(child.stdout, 60)  # it has started (and taken the end offsets)
            write(log_dir, "one", [{"value": b"appended later"}])
            rest = child.stdout.read()
            assert child.wait(timeout=60) == 0
        finally:
            if child.poll() is None:
                child.kill()
        assert child.stderr.read() == b""
    printed = [first.rstrip(b"\n"), *rest.splitlines()]
    assert printed == [b"%099d" % i for i in range(count)]
