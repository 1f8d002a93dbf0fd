"""``pylog produce`` as a real subprocess: every input format, key separator, headers, partition
choice, compression and acks, batching, and the refusals (exit 2, one line, what was written).

Each test reads back what the command wrote with the library (``Consumer.poll``), so it checks
the records themselves, not the command's own report."""

from __future__ import annotations

import json

import pytest

import pylog
from cli.admin_checks import one_line_error
from cli.read_back import read_all
from pylog.cli import record_format
from pylog.cli.produce import MAX_RECORD_BYTES


@pytest.fixture
def log_dir(tmp_path, engine):
    path = tmp_path / "log"
    with pylog.open(path, engine=engine) as log:
        log.create_topic("one")
        log.create_topic("three", partitions=3)
    return path


def test_text_lines_are_values_as_bytes(run_pylog, log_dir, engine):
    data = b"first\ncrlf\r\n\n\xff\xfe not utf-8\nno final newline"
    result = run_pylog("produce", "one", "--dir", log_dir, "--engine", engine, input=data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    summary = result.stderr.decode().splitlines()
    assert len(summary) == 1 and summary[0].startswith("pylog produce: 5 records (") and " s" in summary[0]
    records = read_all(log_dir, "one")
    assert [r.value for r in records] == [
        b"first",
        b"crlf\r",
        b"",
        b"\xff\xfe not utf-8",
        b"no final newline",
    ]
    assert all(r.key is None and r.headers == [] for r in records)


def test_empty_input_writes_nothing_and_quiet_prints_nothing(run_pylog, log_dir):
    result = run_pylog("produce", "one", "--dir", log_dir, "--quiet", input=b"")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert read_all(log_dir, "one") == []


def test_key_separator_splits_at_the_first_and_headers_go_on_every_record(run_pylog, log_dir):
    result = run_pylog(
        "produce",
        "three",
        "--dir",
        log_dir,
        "--key-separator",
        "::",
        "--header",
        "trace=1",
        "--header",
        "trace=2",
        "--header",
        "empty=",
        "-q",
        input="k1::v1\nk2::v::2\n::no key\n",
    )
    assert result.returncode == 0, result.stderr
    records = read_all(log_dir, "three")
    assert sorted((r.key, r.value) for r in records) == [(b"", b"no key"), (b"k1", b"v1"), (b"k2", b"v::2")]
    assert all(r.headers == [("trace", b"1"), ("trace", b"2"), ("empty", b"")] for r in records)
    # a keyed record lands where the library's producer puts that key (Kafka's murmur2 rule)
    with pylog.open(log_dir, auto_create_topics=False) as log, log.producer(acks=1) as producer:
        for r in records:
            assert producer.send("three", b"probe", key=r.key).get(timeout=10).partition == r.partition


def test_a_line_without_the_key_separator_stops_there(run_pylog, log_dir):
    result = run_pylog(
        "produce", "one", "--dir", log_dir, "--key-separator", "=", input="a=1\nb=2\nbroken\nc=3\n"
    )
    error = one_line_error(result)
    assert "line 3" in error and "2 records before it were written" in error
    assert [(r.key, r.value) for r in read_all(log_dir, "one")] == [(b"a", b"1"), (b"b", b"2")]


def test_partition_sends_every_record_there(run_pylog, log_dir):
    result = run_pylog("produce", "three", "--dir", log_dir, "--partition", "2", "-q", input="x\ny\nz\n")
    assert result.returncode == 0, result.stderr
    assert [(r.partition, r.value) for r in read_all(log_dir, "three")] == [(2, b"x"), (2, b"y"), (2, b"z")]


def test_a_partition_the_topic_lacks_is_refused(run_pylog, log_dir):
    error = one_line_error(run_pylog("produce", "three", "--dir", log_dir, "--partition", "3", input="x\n"))
    assert "no partition 3" in error
    assert read_all(log_dir, "three") == []


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_shrinks_the_log_and_reads_back_the_same(run_pylog, log_dir, codec):
    lines = b"".join(b"the same text over and over again %d\n" % (i % 10) for i in range(5000))
    plain = run_pylog("produce", "three", "--dir", log_dir, "--partition", "0", "-q", input=lines)
    packed = run_pylog(
        "produce", "three", "--dir", log_dir, "--partition", "1", "--compression", codec, "-q", input=lines
    )
    assert plain.returncode == packed.returncode == 0, packed.stderr
    records = read_all(log_dir, "three")
    by_partition = {p: [r.value for r in records if r.partition == p] for p in (0, 1)}
    assert by_partition[0] == by_partition[1] == lines.splitlines()
    with pylog.open(log_dir, auto_create_topics=False) as log:
        sizes = {p.partition: p.size_bytes for p in log.describe_topic("three").partitions}
    assert sizes[1] * 3 < sizes[0]


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_every_acks_setting_writes_the_records(run_pylog, log_dir, acks):
    result = run_pylog("produce", "one", "--dir", log_dir, "--acks", acks, "-q", input="a\nb\n")
    assert result.returncode == 0, result.stderr
    assert [r.value for r in read_all(log_dir, "one")] == [b"a", b"b"]


def test_large_input_is_batched_not_one_batch_per_line(run_pylog, log_dir):
    count = 200_000
    data = b"".join(b"%09d" % i + b"\n" for i in range(count))[:-1]  # the last line has no newline
    result = run_pylog("produce", "one", "--dir", log_dir, "-q", input=data)
    assert result.returncode == 0, result.stderr
    records = read_all(log_dir, "one")
    assert len(records) == count and records[-1].value == b"%09d" % (count - 1)
    assert [r.offset for r in records] == list(range(count))
    with pylog.open(log_dir, auto_create_topics=False) as log:
        size = log.describe_topic("one").partitions[0].size_bytes
    # a record of a 9-byte value costs ~17 bytes inside a batch; a batch of its own would add
    # the 61-byte batch header to each
    assert size < count * 30


def test_file_is_read_like_stdin(run_pylog, log_dir, tmp_path):
    source = tmp_path / "input.txt"
    source.write_bytes(b"one\ntwo\n")
    result = run_pylog("produce", "one", "--dir", log_dir, "--file", source, "-q")
    assert result.returncode == 0, result.stderr
    assert [r.value for r in read_all(log_dir, "one")] == [b"one", b"two"]
    assert "cannot read" in one_line_error(
        run_pylog("produce", "one", "--dir", log_dir, "--file", tmp_path / "nope")
    )


def test_unknown_topic_is_refused_unless_create(run_pylog, log_dir):
    error = one_line_error(run_pylog("produce", "missing", "--dir", log_dir, input="x\n"))
    assert "unknown topic 'missing'" in error
    with pylog.open(log_dir, auto_create_topics=False) as log:
        assert "missing" not in log.list_topics()
    result = run_pylog("produce", "missing", "--dir", log_dir, "--create", "-q", input="x\n")
    assert result.returncode == 0, result.stderr
    assert [r.value for r in read_all(log_dir, "missing")] == [b"x"]


def test_missing_directory_and_bad_arguments_are_one_line_errors(run_pylog, tmp_path, log_dir):
    assert "no log directory" in one_line_error(run_pylog("produce", "one", "--dir", tmp_path / "nothing"))
    assert "--header must be NAME=VALUE" in one_line_error(
        run_pylog("produce", "one", "--dir", log_dir, "--header", "novalue")
    )
    assert "text only" in one_line_error(
        run_pylog("produce", "one", "--dir", log_dir, "--format", "json", "--key-separator", ":")
    )
    usage = run_pylog("produce", "one", "--dir", log_dir, "--compression", "brotli")
    assert usage.returncode == 2 and len(usage.stderr.splitlines()) == 1


def test_json_lines_carry_key_headers_partition_and_timestamp(run_pylog, log_dir):
    lines = [
        {
            "value": "plain",
            "key": "k",
            "headers": [["h", "v"], ["n", None]],
            "partition": 1,
            "timestamp": 1234,
        },
        {"value": {"base64": "AP8="}, "key": {"base64": "/w=="}, "partition": 2},
        {"value": None, "partition": 0},
        # what consume prints besides the record is accepted and ignored
        {"topic": "elsewhere", "offset": 99, "timestamp_type": "CreateTime", "value": "", "partition": 0},
    ]
    data = "\n".join(json.dumps(line) for line in lines) + "\n\n"  # a blank line is no record
    result = run_pylog("produce", "three", "--dir", log_dir, "--format", "json", "-q", input=data)
    assert result.returncode == 0, result.stderr
    records = read_all(log_dir, "three")
    got = [(r.partition, r.offset, r.key, r.value, r.headers) for r in records]
    assert got == [
        (0, 0, None, None, []),
        (0, 1, None, b"", []),
        (1, 0, b"k", b"plain", [("h", b"v"), ("n", None)]),
        (2, 0, b"\xff", b"\x00\xff", []),
    ]
    assert records[2].timestamp == 1234


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("not json", "not JSON"),
        ('{"key": "no value"}', 'no "value"'),
        ('{"value": "x", "vaule": "typo"}', "unknown member(s) vaule"),
        ('{"value": {"base64": "***"}}', "not valid base64"),
        ('{"value": 5}', "value must be a string"),
        ('{"value": "x", "partition": 7}', "no partition 7"),
        ('{"value": "x", "timestamp": -1}', "timestamp must be an integer"),
        ('{"value": "x", "headers": [["only a name"]]}', "each header"),
        ("[1, 2]", "must be an object"),
    ],
)
def test_a_bad_json_line_stops_there(run_pylog, log_dir, bad, says):
    data = '{"value": "before"}\n' + bad + '\n{"value": "after"}\n'
    error = one_line_error(run_pylog("produce", "three", "--dir", log_dir, "--format", "json", input=data))
    assert error.startswith("pylog produce: line 2: ") and says in error, error
    assert "1 records before it were written; none after it" in error
    assert [r.value for r in read_all(log_dir, "three")] == [b"before"]


def test_hex_lines_and_their_errors(run_pylog, log_dir):
    header = b"h".hex()
    data = f"-\t6869\n6b\t\t{header}:-\t{header}:00ff\n".encode()
    result = run_pylog("produce", "one", "--dir", log_dir, "--format", "hex", "-q", input=data)
    assert result.returncode == 0, result.stderr
    got = [(r.key, r.value, r.headers) for r in read_all(log_dir, "one")]
    assert got == [(None, b"hi", []), (b"k", b"", [("h", None), ("h", b"\x00\xff")])]
    for bad, says in [("zz\t00", "key is not hex"), ("00", "no tab"), ("-\t-\tnocolon", "header 1")]:
        error = one_line_error(
            run_pylog("produce", "one", "--dir", log_dir, "--format", "hex", input=f"-\t61\n{bad}\n-\t62\n")
        )
        assert "line 2" in error and says in error, error
    assert [r.value for r in read_all(log_dir, "one")][2:] == [b"a", b"a", b"a"]


def test_a_record_too_large_is_refused_with_its_line(run_pylog, log_dir):
    huge = b"x" * (MAX_RECORD_BYTES + 1)
    error = one_line_error(
        run_pylog("produce", "one", "--dir", log_dir, input=b"small\n" + huge + b"\nafter\n")
    )
    assert "line 2" in error and "larger than" in error
    assert [r.value for r in read_all(log_dir, "one")] == [b"small"]


def test_record_format_json_round_trips_bytes():
    for data in (None, b"", b"text", "é".encode(), b"\xff\x00", b"line\nbreak"):
        assert record_format.decode_json_bytes(record_format.encode_json_bytes(data), "value") == data
