"""API semantics of the partition log, for both engines (docs/partition-log.md, issue 2)."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    as_tuples,
    crc32c,
    expected_records,
    kafka_build_batch,
    parse_batches,
    segment_bases,
    segment_files,
)

from pylog.engine import Columns, Record, decode_records
from pylog.errors import (
    CorruptBatchError,
    InvalidConfigError,
    InvalidRecordError,
    LogClosedError,
    OffsetOutOfRangeError,
    PylogError,
    RecordTooLargeError,
)

TS = 1_700_000_000_000


def fill(log, sizes, *, ts0=TS, value_len=10):
    """Append batches with ``sizes`` records each; return the expected record tuples."""
    want = []
    n = log.end_offset
    for size in sizes:
        values = [bytes([n + i & 0xFF]) * value_len for i in range(size)]
        keys = [None if (n + i) % 3 == 0 else f"k{n + i}".encode() for i in range(size)]
        headers = [[("h", f"{n + i}".encode())] if (n + i) % 2 else [] for i in range(size)]
        stamps = [ts0 + n + i for i in range(size)]
        base = log.append(values, keys=keys, headers=headers, timestamps_ms=stamps)
        assert base == n
        want += expected_records(base, values, keys, headers, stamps)
        n += size
    return want


# ---------------------------------------------------------------------------------------------
# append


def test_empty_log(open_log):
    log = open_log()
    assert (log.start_offset, log.end_offset) == (0, 0)
    assert list(log.records()) == []
    assert not log.closed
    assert segment_bases(log.path) == [0]


def test_append_returns_contiguous_base_offsets(open_log):
    log = open_log()
    bases = [log.append([b"x"] * n, timestamps_ms=[TS] * n) for n in (1, 3, 2, 1, 5)]
    assert bases == [0, 1, 4, 6, 7]
    assert all(type(b) is int for b in bases)
    assert log.end_offset == 12
    assert log.start_offset == 0
    assert [r.offset for r in log.records()] == list(range(12))


def test_append_round_trips_every_field(open_log):
    log = open_log()
    values = [b"plain", bytearray(b"ba"), memoryview(b"mv-value"), None, b""]
    keys = [None, b"k1", bytearray(b"k2"), memoryview(b"k3"), b""]
    headers = [[], [("a", b"1"), ("b", None)], [("", b"")], [("\u00e9t\u00e9", memoryview(b"x"))], []]
    stamps = [5, 0, 2**40, 7, 5]
    base = log.append(values, keys=keys, headers=headers, timestamps_ms=stamps)
    got = list(log.records())
    assert as_tuples(got) == expected_records(base, values, keys, headers, stamps)
    for r in got:
        assert r.key is None or type(r.key) is bytes
        assert r.value is None or type(r.value) is bytes
        assert isinstance(r.headers, list)
        assert all(type(h) is tuple and type(h[0]) is str for h in r.headers)


def test_timestamps_accept_numpy_array(open_log):
    log = open_log()
    log.append([b"a", b"b"], timestamps_ms=np.array([10, 20], dtype=np.int64))
    assert [r.timestamp for r in log.records()] == [10, 20]


def test_default_timestamp_is_wall_clock_once_per_call(open_log):
    log = open_log()
    before = int(time.time() * 1000)
    log.append([b"a", b"b", b"c"])
    after = int(time.time() * 1000)
    stamps = {r.timestamp for r in log.records()}
    assert len(stamps) == 1
    assert before - 1 <= stamps.pop() <= after + 1
    assert {r.timestamp_type for r in log.records()} == {0}


def test_log_append_time(open_log):
    log = open_log(message_timestamp_type="LogAppendTime")
    before = int(time.time() * 1000)
    log.append([b"a", b"b"], timestamps_ms=[1, 2])
    after = int(time.time() * 1000)
    recs = list(log.records())
    assert [r.timestamp_type for r in recs] == [1, 1]
    assert recs[0].timestamp == recs[1].timestamp
    assert before - 1 <= recs[0].timestamp <= after + 1
    assert log.offset_for_timestamp(recs[0].timestamp) == 0
    assert log.offset_for_timestamp(recs[0].timestamp + 1) is None


# ---------------------------------------------------------------------------------------------
# records()


def test_records_are_plain_record_tuples(open_log):
    """Records are pylog.engine.Record in both engines: equal to the reference's, unhashable like
    any tuple holding a list (the native engine builds them without calling the class)."""
    log = open_log()
    log.append([b"v"], keys=[b"k"], headers=[[("h", None)]], timestamps_ms=[TS])
    (rec,) = list(log.records())
    assert type(rec) is Record
    assert rec == Record(0, TS, 0, b"k", b"v", [("h", None)])
    assert rec._replace(value=b"w").value == b"w"
    with pytest.raises(TypeError):
        hash(rec)


def test_columns_is_a_plain_named_tuple(open_log):
    log = open_log()
    log.append([b"a", None, b"ccc"], timestamps_ms=[TS, TS, TS])
    cols = log.read_columns(0, 10)
    assert len(cols) == 8 and cols._fields[0] == "offsets"
    assert cols.num_records == 3
    assert Columns._make(list(cols)).num_records == 3
    assert cols._replace(offsets=cols.offsets[:1]).num_records == 1


def test_records_ranges(open_log):
    log = open_log()
    want = fill(log, [3, 1, 4, 2])
    end = log.end_offset
    assert end == 10
    assert as_tuples(log.records()) == want
    assert as_tuples(log.records(0, end)) == want
    assert list(log.records(4, 4)) == []
    assert list(log.records(end, end)) == []
    assert list(log.records(end)) == []
    assert as_tuples(log.records(2, 5)) == want[2:5]  # end exclusive, start mid-batch
    assert as_tuples(log.records(5)) == want[5:]
    assert as_tuples(log.records(None, 3)) == want[:3]
    assert as_tuples(log.records(7, 10_000)) == want[7:]  # end clamped
    for start, stop in [(end + 1, None), (-1, None), (5, 4), (end + 1, end + 2)]:
        with pytest.raises(OffsetOutOfRangeError):
            log.records(start, stop)  # raised at call time, before iterating


def test_records_bounds_fixed_at_call_time(open_log):
    log = open_log()
    fill(log, [2])
    it = log.records()
    log.append([b"late"], timestamps_ms=[TS])
    assert [r.offset for r in it] == [0, 1]
    assert [r.offset for r in log.records()] == [0, 1, 2]


def test_records_across_segments(open_log):
    log = open_log(segment_bytes=300)
    want = fill(log, [2] * 12, value_len=30)
    assert len(segment_bases(log.path)) > 2
    assert as_tuples(log.records()) == want
    assert as_tuples(log.records(5, 19)) == want[5:19]


# ---------------------------------------------------------------------------------------------
# read()


def test_read_rules(open_log):
    log = open_log()
    fill(log, [3, 1, 4, 2])
    end = log.end_offset
    assert len(memoryview(log.read(end, 1 << 20))) == 0
    for bad in (-1, end + 1, 2**40):
        with pytest.raises(OffsetOutOfRangeError):
            log.read(bad, 1 << 20)
    everything = bytes(memoryview(log.read(0, 1 << 20)))
    batches = parse_batches(everything)
    assert [(b.base_offset, b.last_offset) for b in batches] == [(0, 2), (3, 3), (4, 7), (8, 9)]
    for offset in range(end):
        one = bytes(memoryview(log.read(offset, 1)))  # at least one whole batch
        (batch,) = parse_batches(one)
        assert batch.base_offset <= offset <= batch.last_offset
        (same,) = [b for b in batches if b.base_offset == batch.base_offset]
        assert one == everything[same.position : same.position + same.size]
        assert [r.offset for r in decode_records(one, engine=log_engine(log))][-1] == batch.last_offset
    # as many whole batches as fit
    two = parse_batches(bytes(memoryview(log.read(1, batches[0].size + batches[1].size))))
    assert [b.base_offset for b in two] == [0, 3]
    cut = parse_batches(bytes(memoryview(log.read(1, batches[0].size + batches[1].size - 1))))
    assert [b.base_offset for b in cut] == [0]


def log_engine(log) -> str:
    return "native" if type(log).__name__.startswith("Native") else "reference"


def test_read_one_segment_per_call(open_log):
    log = open_log(segment_bytes=400)
    want = fill(log, [3] * 10, value_len=40)
    bases = segment_bases(log.path)
    assert len(bases) >= 3
    offset, got = 0, []
    while offset < log.end_offset:
        buf = bytes(memoryview(log.read(offset, 1 << 30)))
        batches = parse_batches(buf)
        seg = max(b for b in bases if b <= offset)
        nxt = min((b for b in bases if b > seg), default=log.end_offset)
        assert batches[0].base_offset == offset
        assert seg <= offset < nxt
        assert batches[-1].next_offset == nxt, "a read must return its whole segment, and only it"
        got += [r for r in decode_records(buf, engine=log_engine(log)) if r.offset >= offset]
        offset = batches[-1].next_offset
    assert as_tuples(got) == want


def test_read_and_decode_match_records(open_log, engine):
    log = open_log()
    want = fill(log, [1, 2, 3])
    buf = log.read(0, 1 << 20)
    assert as_tuples(decode_records(buf, engine=engine)) == want
    assert as_tuples(decode_records(memoryview(buf), engine=engine)) == want


# ---------------------------------------------------------------------------------------------
# read_columns()


def check_columns_layout(cols: Columns) -> None:
    n = cols.num_records
    assert isinstance(cols, Columns)
    assert cols.offsets.dtype == np.int64 and cols.offsets.shape == (n,)
    assert cols.timestamps.dtype == np.int64 and cols.timestamps.shape == (n,)
    for data, offs, null in (
        (cols.keys, cols.key_offsets, cols.key_null),
        (cols.values, cols.value_offsets, cols.value_null),
    ):
        assert data.dtype == np.uint8 and data.ndim == 1
        assert offs.dtype == np.int64 and offs.shape == (n + 1,)
        assert null.dtype == np.bool_ and null.shape == (n,)
        assert offs[0] == 0 and offs[-1] == len(data)
        assert np.all(np.diff(offs) >= 0)
        assert np.all(np.diff(offs)[null] == 0), "a null has a zero-length slot"


def columns_as_tuples(cols: Columns) -> list[tuple]:
    return [
        (int(cols.offsets[i]), int(cols.timestamps[i]), cols.key(i), cols.value(i))
        for i in range(cols.num_records)
    ]


def test_read_columns(open_log):
    log = open_log(segment_bytes=350)
    want = fill(log, [3, 1, 4, 2, 5, 3, 2], value_len=25)
    assert len(segment_bases(log.path)) >= 2
    simple = [(r[0], r[1], r[3], r[4]) for r in want]
    end = log.end_offset
    cols = log.read_columns(0, 10_000)
    check_columns_layout(cols)
    assert columns_as_tuples(cols) == simple  # crosses batches and segments
    assert list(cols.key_null) == [r[3] is None for r in want]
    for start in range(end):
        for limit in (1, 2, 7):
            cols = log.read_columns(start, limit)
            check_columns_layout(cols)
            assert columns_as_tuples(cols) == simple[start : start + limit]
    empty = log.read_columns(end, 10)
    check_columns_layout(empty)
    assert empty.num_records == 0
    for bad in (-1, end + 1):
        with pytest.raises(OffsetOutOfRangeError):
            log.read_columns(bad, 10)


def test_read_columns_nulls_and_empty_values(open_log):
    log = open_log()
    log.append([None, b"", b"abc", None], keys=[b"", None, b"k", None], timestamps_ms=[1, 2, 3, 4])
    cols = log.read_columns(0, 100)
    check_columns_layout(cols)
    assert list(cols.value_null) == [True, False, False, True]
    assert list(cols.key_null) == [False, True, False, True]
    assert [cols.value(i) for i in range(4)] == [None, b"", b"abc", None]
    assert [cols.key(i) for i in range(4)] == [b"", None, b"k", None]
    assert list(cols.value_offsets) == [0, 0, 0, 3, 3]
    assert cols.values.tobytes() == b"abc"


# ---------------------------------------------------------------------------------------------
# offset_for_timestamp()


def brute_offset_for_timestamp(log, ts):
    return next((r.offset for r in log.records() if r.timestamp >= ts), None)


def test_offset_for_timestamp(open_log):
    log = open_log(segment_bytes=500, index_interval_bytes=100)
    assert log.offset_for_timestamp(0) is None  # empty log
    stamps_per_batch = [[100, 300, 200], [150], [400, 50], [50, 60], [700, 10], [500], [900, 901], [5]]
    for i, stamps in enumerate(stamps_per_batch):
        log.append([bytes(60)] * len(stamps), timestamps_ms=stamps)
        if i == 3:
            log.roll()
    assert len(segment_bases(log.path)) >= 3
    for ts in [0, 5, 50, 99, 100, 101, 150, 200, 250, 300, 301, 400, 450, 500, 699, 700, 900, 901]:
        assert log.offset_for_timestamp(ts) == brute_offset_for_timestamp(log, ts), ts
    assert log.offset_for_timestamp(902) is None
    assert log.offset_for_timestamp(2**62) is None


# ---------------------------------------------------------------------------------------------
# roll, close, context manager


def test_roll(open_log):
    log = open_log()
    log.roll()  # empty active segment: nothing happens
    assert segment_bases(log.path) == [0]
    fill(log, [2, 3])
    log.roll()
    assert segment_bases(log.path) == [0, 5]
    assert os.path.getsize(os.path.join(log.path, "00000000000000000005.log")) == 0
    log.roll()
    assert segment_bases(log.path) == [0, 5]
    assert log.append([b"z"], timestamps_ms=[TS]) == 5
    assert (log.start_offset, log.end_offset) == (0, 6)
    assert [r.offset for r in log.records()] == list(range(6))


def test_segment_bytes_rolls(open_log):
    log = open_log(segment_bytes=1000)
    fill(log, [1] * 40, value_len=50)
    for base in segment_bases(log.path):
        assert os.path.getsize(os.path.join(log.path, f"{base:020d}.log")) <= 1000
    assert len(segment_bases(log.path)) > 2


def test_segment_ms_rolls_by_record_time(open_log):
    log = open_log(segment_ms=1000)
    log.append([b"a"], timestamps_ms=[10_000])
    log.append([b"b"], timestamps_ms=[11_000])  # 1000 apart: not more than segment.ms
    assert segment_bases(log.path) == [0]
    log.append([b"c"], timestamps_ms=[11_001])  # 1001 > 1000 past the first batch's max
    assert segment_bases(log.path) == [0, 2]
    log.append([b"d"], timestamps_ms=[100])  # a time before the segment's never rolls
    assert segment_bases(log.path) == [0, 2]


def test_context_manager_and_closed_errors(open_log, engine):
    log = open_log()
    with log as entered:
        assert entered is log
        log.append([b"a"], timestamps_ms=[TS])
    assert log.closed
    calls = {
        "append": lambda: log.append([b"x"], timestamps_ms=[TS]),
        "append_raw": lambda: log.append_raw(kafka_build_batch([(TS, None, b"x", [])])),
        "read": lambda: log.read(0, 100),
        "records": lambda: list(log.records()),
        "read_columns": lambda: log.read_columns(0, 10),
        "offset_for_timestamp": lambda: log.offset_for_timestamp(0),
        "roll": log.roll,
        "flush": log.flush,
        "sync": log.sync,
        "wait_for": lambda: log.wait_for(0, 10),
    }
    for name, call in calls.items():
        with pytest.raises(LogClosedError):
            call()
            pytest.fail(f"{name} worked on a closed log")
    log.close()  # idempotent
    assert log.closed
    assert "closed" in repr(log)


def test_closed_log_properties(open_log):
    log = open_log()
    log.close()
    for prop in ("start_offset", "end_offset"):
        with pytest.raises(LogClosedError):
            getattr(log, prop)


def test_reopen_keeps_data(open_log, tmp_path):
    path = tmp_path / "p-0"
    log = open_log(path, segment_bytes=300)
    want = fill(log, [2, 3, 4, 1, 2], value_len=30)
    log.close()
    again = open_log(path, segment_bytes=300)
    assert as_tuples(again.records()) == want
    assert again.append([b"next"], timestamps_ms=[TS]) == len(want)


def test_a_later_opener_runs_no_recovery(open_log, other_engine, tmp_path):
    """Only the first opener recovers: a torn tail that a live writer (maybe in another process)
    could still be completing is left alone by a second open, ignored by its reads, and cut by
    the next writer before it appends."""
    path = tmp_path / "later-0"
    first = open_log(path)
    first.append([b"one"], timestamps_ms=[TS])
    log_file = path / "00000000000000000000.log"
    whole = log_file.stat().st_size
    torn = kafka_build_batch([(TS, None, b"x" * 40, [])])[:30]
    with open(log_file, "ab") as f:
        f.write(torn)
    second = open_log(path, engine=other_engine)
    assert second.end_offset == first.end_offset == 1
    assert log_file.stat().st_size == whole + len(torn), "a later opener cuts nothing"
    assert [r.value for r in second.records()] == [b"one"]
    assert second.append([b"two"], timestamps_ms=[TS]) == 1  # a writer cuts the torn tail first
    assert [b.position for b in parse_batches(log_file.read_bytes())] == [0, whole]
    assert [r.value for r in first.records()] == [b"one", b"two"]


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("t-007", "t 7"),
        ("t-", "t- 0"),
        ("-5", "-5 0"),
        ("t-99999999999", "t-99999999999 0"),
        ("t--1", "t- 1"),
    ],
)
def test_checkpoint_names_topic_and_partition(open_log, tmp_path, name, line):
    """The checkpoint's ``topic partition`` come from ``<topic>-<partition>`` when the suffix is
    a partition number (Kafka's int), else the whole directory name with partition 0."""
    log = open_log(tmp_path / name)
    log.append([b"a"], timestamps_ms=[TS])
    log.close()  # the last closer writes the checkpoint (a sync only every minute at most)
    assert (tmp_path / name / "recovery-point-offset-checkpoint").read_text() == f"0\n1\n{line} 1\n"


# ---------------------------------------------------------------------------------------------
# wait_for()


def test_wait_for_woken_by_append_from_another_thread(open_log):
    """A thread blocked in wait_for returns within 0.5 s of another thread's append returning
    (generous for a loaded CI box), round after round; at least one round must really block."""
    from helpers import assert_prompt_wake_ups, wake_up_gaps

    log = open_log()
    fill(log, [1])

    def append() -> float:
        log.append([b"wake"], timestamps_ms=[TS])
        return time.monotonic()

    assert_prompt_wake_ups(wake_up_gaps(log, append), 0.5)
    assert log.end_offset == 7


def test_wait_for_timeout_and_immediate(open_log):
    log = open_log()
    t0 = time.monotonic()
    assert log.wait_for(0, 50) is False
    assert time.monotonic() - t0 >= 0.045
    fill(log, [2])
    t0 = time.monotonic()
    assert log.wait_for(1, 60_000) is True
    assert log.wait_for(0, 0) is True
    assert time.monotonic() - t0 < 0.5, "data already there: no waiting"
    assert log.wait_for(2, 0) is False


# ---------------------------------------------------------------------------------------------
# config validation


@pytest.mark.parametrize(
    "config",
    [
        {"segment.byte": 1000},
        {"no.such.key": 1},
        {"segment.bytes": 13},
        {"segment.bytes": "lots"},
        {"segment.bytes": True},
        {"segment.bytes": 2**31},
        {"segment.ms": 0},
        {"index.interval.bytes": -1},
        {"segment.index.bytes": 11},
        {"max.message.bytes": -1},
        {"message.timestamp.type": "Whenever"},
        {"flush.messages": 0},
        {"flush.ms": -1},
        {"compression.type": "brotli"},
        {"cleanup.policy": "forever"},
        {"retention.ms": -2},
        {"min.cleanable.dirty.ratio": 1.5},
        {"min.cleanable.dirty.ratio": "half"},
        {"max.compaction.lag.ms": 0},
        {"retention.bytes": -2},
        {"delete.retention.ms": -1},
        {"min.compaction.lag.ms": -1},
    ],
)
def test_bad_config(tmp_path, config):
    """Validation is shared code (LogConfig) that runs before the engine is chosen: one engine
    name is enough, and the pure-Python one is always importable."""
    from pylog.engine import open_partition

    path = tmp_path / "p-0"
    with pytest.raises(InvalidConfigError) as info:
        open_partition(path, engine="reference", config=config)
    (key,) = config
    assert key in str(info.value)
    assert isinstance(info.value, ValueError)
    assert not path.exists() or os.listdir(path) == []


DAY_MS = 24 * 3600 * 1000
LONG_MAX = 2**63 - 1
#: docs/partition-log.md "Config": key -> (Kafka's default, a valid non-default value, bad values)
DOC_CONFIG = {
    "segment.bytes": (1024**3, 14, [13, -1, 2**31, "x", 1.5, None, True]),
    "segment.ms": (7 * DAY_MS, 1, [0, -1, "soon"]),
    "index.interval.bytes": (4096, 0, [-1, 2**31, "often"]),
    "segment.index.bytes": (10 * 1024 * 1024, 12, [11, 2**31, "big"]),
    "max.message.bytes": (1048588, 0, [-1, 2**31, "huge"]),
    "message.timestamp.type": ("CreateTime", "LogAppendTime", ["Whenever", "", 1]),
    "flush.messages": (LONG_MAX, 1, [0, 2**63, "all"]),
    "flush.ms": (LONG_MAX, 0, [-1, 2**63, "never"]),
    "compression.type": ("producer", "zstd", ["brotli", "", 4]),
    "cleanup.policy": ("delete", "compact", ["forever", "compact,forever", 0]),
    "retention.ms": (7 * DAY_MS, -1, [-2, "ever"]),
    "retention.bytes": (-1, 0, [-2, "all", 1.0]),
    "delete.retention.ms": (DAY_MS, 0, [-1, "day"]),
    "min.cleanable.dirty.ratio": (0.5, 0.25, [-0.1, 1.5, "half", None, True]),
    "min.compaction.lag.ms": (0, 1000, [-1, "now"]),
    "max.compaction.lag.ms": (LONG_MAX, 1, [0, -1, "later"]),
}


def test_native_defaults_equal_pylog_config():
    """native/src/config.rs keeps defaults for the Rust-only tests; pylog/config.py owns them."""
    from helpers import skip_if_engine_missing

    from pylog.config import LogConfig

    skip_if_engine_missing("native")
    from pylog import _native

    native, python = _native.default_config(), LogConfig().to_kafka_dict()
    assert native == python
    assert {k: type(v) for k, v in native.items()} == {k: type(v) for k, v in python.items()}
    assert {k: v[0] for k, v in DOC_CONFIG.items()} == python, "and both are the documented ones"


def test_native_engine_takes_only_the_complete_normalized_dict(tmp_path):
    """The ranges are pylog/config.py's; the Rust side guards only types and completeness."""
    from helpers import skip_if_engine_missing

    from pylog.config import LogConfig

    skip_if_engine_missing("native")
    from pylog import _native

    complete = LogConfig().to_kafka_dict()
    partial = {k: v for k, v in complete.items() if k != "flush.ms"}
    with pytest.raises(InvalidConfigError, match=r"missing flush\.ms"):
        _native.PartitionLog(str(tmp_path / "partial-0"), partial, Record)
    with pytest.raises(InvalidConfigError, match=r"segment\.bytes"):
        _native.PartitionLog(str(tmp_path / "type-0"), {**complete, "segment.bytes": "big"}, Record)
    assert not (tmp_path / "partial-0").exists() and not (tmp_path / "type-0").exists()
    log = _native.PartitionLog(str(tmp_path / "ok-0"), {**complete, "segment.bytes": 1000}, Record)
    log.close()


def test_config_table_covers_the_documented_keys():
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "partition-log.md").read_text()
    section = doc.split("## Config", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([a-z]+(?:\.[a-z]+)+)`", section))
    assert documented == set(DOC_CONFIG)


@pytest.mark.parametrize("key", sorted(DOC_CONFIG))
def test_every_documented_config_key(key):
    """Each key: Kafka's default, a valid value as int (float) and as its string form accepted and
    normalized, each bad value rejected with an error naming the key."""
    from pylog.config import LogConfig

    default, good, bad = DOC_CONFIG[key]
    attr = key.replace(".", "_")
    assert getattr(LogConfig(), attr) == default
    assert getattr(LogConfig.from_mapping({}), attr) == default
    if isinstance(good, str):  # names: exact, padded, and (but for the timestamp type) any case
        forms = [good, f" {good} "] + ([] if key == "message.timestamp.type" else [good.upper()])
    else:  # numbers: the int (float), its string form, padded
        forms = [good, str(good), f" {good} "]
    for form in forms:
        cfg = LogConfig.from_mapping({key: form})
        assert getattr(cfg, attr) == good, form
        assert cfg.to_kafka_dict()[key] == good
        assert type(cfg.to_kafka_dict()[key]) is type(default)
    for value in bad:
        with pytest.raises(InvalidConfigError) as info:
            LogConfig.from_mapping({key: value})
        assert key in str(info.value), value
    assert LogConfig.from_mapping({key: good}) != LogConfig(), "the valid value is not the default"


def test_config_string_forms(open_log):
    log = open_log(
        config={"segment.bytes": " 400 ", "compression.type": "GZIP", "min.cleanable.dirty.ratio": "0.2"}
    )
    fill(log, [2] * 6, value_len=40)
    assert len(segment_bases(log.path)) > 1
    buf = bytes(memoryview(log.read(0, 1 << 20)))
    assert {b.codec for b in parse_batches(buf)} == {1}


def test_unknown_engine(tmp_path):
    from pylog.engine import open_partition

    with pytest.raises(InvalidConfigError):
        open_partition(tmp_path / "x-0", engine="turbo")


# ---------------------------------------------------------------------------------------------
# bad input: typed error, nothing written, log still usable


def assert_unchanged_and_usable(log, before_files, before_end, want):
    assert log.end_offset == before_end
    assert segment_files(log.path) == before_files
    assert as_tuples(log.records()) == want
    base = log.append([b"after"], timestamps_ms=[TS])
    assert base == before_end
    assert [r.value for r in log.records(base)] == [b"after"]


BAD_APPENDS = [
    (TypeError, lambda log: log.append(["text"], timestamps_ms=[TS])),
    (TypeError, lambda log: log.append([1], timestamps_ms=[TS])),
    (TypeError, lambda log: log.append([b"ok", object()], timestamps_ms=[TS, TS])),
    (TypeError, lambda log: log.append([b"v"], keys=["k"], timestamps_ms=[TS])),
    (TypeError, lambda log: log.append([b"v"], keys=[5], timestamps_ms=[TS])),
    (TypeError, lambda log: log.append([b"v"], headers=[[("h", "str")]], timestamps_ms=[TS])),
    (TypeError, lambda log: log.append([b"v"], headers=[[(b"h", b"x")]], timestamps_ms=[TS])),
    (InvalidRecordError, lambda log: log.append([], timestamps_ms=[])),
    (InvalidRecordError, lambda log: log.append([b"a", b"b"], keys=[b"k"], timestamps_ms=[TS, TS])),
    (InvalidRecordError, lambda log: log.append([b"a"], headers=[[], []], timestamps_ms=[TS])),
    (InvalidRecordError, lambda log: log.append([b"a", b"b"], timestamps_ms=[TS])),
    (InvalidRecordError, lambda log: log.append([b"a"], timestamps_ms=[-1])),
    (InvalidRecordError, lambda log: log.append([b"a"], timestamps_ms=[2**63])),
    (InvalidConfigError, lambda log: log.append([b"a"], timestamps_ms=[TS], compression="brotli")),
    (RecordTooLargeError, lambda log: log.append([bytes(5000)], timestamps_ms=[TS])),
    (OffsetOutOfRangeError, lambda log: log.read(-1, 100)),
    (OffsetOutOfRangeError, lambda log: log.read(log.end_offset + 1, 100)),
    (OffsetOutOfRangeError, lambda log: list(log.records(-5))),
    (OffsetOutOfRangeError, lambda log: log.read_columns(log.end_offset + 1, 1)),
]


@pytest.mark.parametrize("expected, call", BAD_APPENDS)
def test_bad_input(open_log, expected, call):
    log = open_log(max_message_bytes=4000)
    want = fill(log, [2, 1])
    files, end = segment_files(log.path), log.end_offset
    with pytest.raises(expected):
        call(log)
    assert_unchanged_and_usable(log, files, end, want)


# The same bad calls without timestamps_ms: the native engine's fast path for lists of bytes
# must hand each of them to the general checks (same error class and message in both engines).
BAD_DEFAULT_TIMESTAMP_APPENDS = [
    (TypeError, lambda log: log.append(["text"])),
    (TypeError, lambda log: log.append([b"ok", 1])),
    (TypeError, lambda log: log.append((b"ok", bytearray(b"x"), "s"))),
    (TypeError, lambda log: log.append([b"v", b"w"], keys=[b"k", "k"])),
    (InvalidRecordError, lambda log: log.append([])),
    (InvalidRecordError, lambda log: log.append(())),
    (InvalidRecordError, lambda log: log.append([b"a", b"b"], keys=[b"k"])),
    (InvalidRecordError, lambda log: log.append([b"a"], keys=(b"k", None))),
]


@pytest.mark.parametrize("expected, call", BAD_DEFAULT_TIMESTAMP_APPENDS)
def test_bad_input_with_default_timestamps_same_in_both_engines(open_log, expected, call):
    messages = []
    for engine in ("native", "reference"):
        log = open_log(engine=engine, max_message_bytes=4000)
        want = fill(log, [2, 1])
        files, end = segment_files(log.path), log.end_offset
        with pytest.raises(expected) as raised:
            call(log)
        messages.append(str(raised.value))
        assert_unchanged_and_usable(log, files, end, want)
    assert messages[0] == messages[1]


class BytesSubclass(bytes):
    pass


def test_append_argument_containers_give_identical_batches(open_log):
    """Lists and tuples (the native fast path), a generator and a list with a bytearray (the
    general path) and bytes subclasses all encode the same records the same way."""
    values = [b"a", None, BytesSubclass(b"ccc"), b""]
    keys = [None, b"k1", b"", BytesSubclass(b"k3")]
    batches = []
    for engine in ("native", "reference"):
        for make in (list, tuple, lambda xs: (x for x in xs), lambda xs: [*xs[:-1], bytearray(xs[-1])]):
            log = open_log(engine=engine)
            base = log.append(make(values), keys=make(keys), timestamps_ms=None)
            assert [(r.key, r.value) for r in log.records()] == [
                (None if k is None else bytes(k), None if v is None else bytes(v))
                for k, v in zip(keys, values, strict=True)
            ]
            raw = bytearray(log.read(base, 1 << 20))
            raw[27:43] = bytes(16)  # baseTimestamp, maxTimestamp: the call's clock
            raw[17:21] = bytes(4)  # the CRC covers the timestamps
            batches.append(bytes(raw))
    assert len(set(batches)) == 1


def test_batch_larger_than_segment_bytes(open_log):
    log = open_log(segment_bytes=300)
    want = fill(log, [1])
    files, end = segment_files(log.path), log.end_offset
    with pytest.raises(RecordTooLargeError):
        log.append([bytes(400)], timestamps_ms=[TS])
    assert_unchanged_and_usable(log, files, end, want)


def test_record_too_large_is_pylog_error(open_log):
    log = open_log(max_message_bytes=100)
    with pytest.raises(PylogError):
        log.append([bytes(200)], timestamps_ms=[TS])
    assert log.end_offset == 0


def test_path_is_a_file(engine, tmp_path):
    from pylog.engine import open_partition

    path = tmp_path / "file-0"
    path.write_bytes(b"not a directory")
    with pytest.raises(NotADirectoryError):
        open_partition(path, engine=engine)
    assert path.read_bytes() == b"not a directory"


def good_raw_batch(n=2) -> bytearray:
    return bytearray(kafka_build_batch([(TS + i, b"k%d" % i, b"v%d" % i, []) for i in range(n)]))


def fix_crc(batch: bytearray) -> bytearray:
    batch[17:21] = crc32c(batch[21:]).to_bytes(4, "big")
    return batch


def _set(batch: bytearray, pos: int, width: int, value: int, *, crc: bool) -> bytearray:
    batch[pos : pos + width] = value.to_bytes(width, "big", signed=True)
    return fix_crc(batch) if crc else batch


MALFORMED = {
    "empty": lambda: bytearray(),
    "short": lambda: good_raw_batch()[:60],
    "truncated": lambda: good_raw_batch()[:-1],
    "trailing byte": lambda: good_raw_batch() + b"\0",
    "two batches": lambda: good_raw_batch() + good_raw_batch(),
    "length too big": lambda: _set(good_raw_batch(), 8, 4, len(good_raw_batch()) - 11, crc=False),
    "length too small": lambda: _set(good_raw_batch(), 8, 4, len(good_raw_batch()) - 13, crc=False),
    "magic 1": lambda: _set(good_raw_batch(), 16, 1, 1, crc=False),
    "bad crc": lambda: _set(good_raw_batch(), 17, 4, 12345, crc=False),
    "flipped value bit": lambda: _flip(good_raw_batch(), -3),
    "codec 5": lambda: _set(good_raw_batch(), 21, 2, 5, crc=True),
    "count 0": lambda: _set(good_raw_batch(), 57, 4, 0, crc=True),
    "count -1": lambda: _set(good_raw_batch(), 57, 4, -1, crc=True),
    "lastOffsetDelta": lambda: _set(good_raw_batch(), 23, 4, 0, crc=True),
}


def _flip(batch: bytearray, pos: int) -> bytearray:
    batch[pos] ^= 0x01
    return batch


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_append_raw(open_log, name):
    log = open_log()
    want = fill(log, [2])
    files, end = segment_files(log.path), log.end_offset
    with pytest.raises(CorruptBatchError):
        log.append_raw(bytes(MALFORMED[name]()))
    assert_unchanged_and_usable(log, files, end, want)


def test_append_raw_rewrites_base_offset_and_epoch(open_log):
    log = open_log()
    fill(log, [3])
    raw = bytearray(kafka_build_batch([(TS, b"k", b"v", [("h", b"x")]), (TS + 5, None, None, [])]))
    raw[0:8] = (987654).to_bytes(8, "big")
    raw[12:16] = (77).to_bytes(4, "big")
    assert log.append_raw(memoryview(bytes(raw))) == 3
    assert log.append_raw(bytearray(raw)) == 5
    recs = as_tuples(log.records(3))
    assert recs == [
        (3, TS, 0, b"k", b"v", (("h", b"x"),)),
        (4, TS + 5, 0, None, None, ()),
        (5, TS, 0, b"k", b"v", (("h", b"x"),)),
        (6, TS + 5, 0, None, None, ()),
    ]
    stored = parse_batches(bytes(memoryview(log.read(3, 1 << 20))))
    assert [(b.base_offset, b.partition_leader_epoch) for b in stored] == [(3, 0), (5, 0)]
    assert bytes(memoryview(log.read(3, 1)))[16:] == bytes(raw)[16:]  # rest unchanged


def test_append_raw_too_large(open_log):
    log = open_log(max_message_bytes=500)
    want = fill(log, [1])
    files = segment_files(log.path)
    with pytest.raises(RecordTooLargeError):
        log.append_raw(kafka_build_batch([(TS, None, bytes(600), [])]))
    assert log.end_offset == 1 and segment_files(log.path) == files
    assert as_tuples(log.records()) == want
    assert log.append_raw(kafka_build_batch([(TS, None, bytes(100), [])])) == 1


def test_segment_larger_than_a_read_window(open_log):
    """Everything works past the first 64 KiB / 1 MiB of a segment (engines read files in windows)."""
    log = open_log()
    for i in range(1200):
        log.append([b"%06d" % i + bytes(1000)], timestamps_ms=[TS + i])
    big = b"B" * 300_000
    log.append([big], timestamps_ms=[TS + 5000])
    log.append([b"tail"], timestamps_ms=[TS + 5001])
    assert os.path.getsize(os.path.join(log.path, "00000000000000000000.log")) > 1_500_000
    recs = list(log.records())
    assert [r.offset for r in recs] == list(range(1202))
    assert recs[1200].value == big and recs[1201].value == b"tail"
    cols = log.read_columns(0, 5000)
    assert cols.num_records == 1202 and cols.value(1201) == b"tail"
    assert log.offset_for_timestamp(TS + 1100) == 1100
    assert log.offset_for_timestamp(TS + 5001) == 1201
    assert [r.value for r in log.records(1199)] == [b"%06d" % 1199 + bytes(1000), big, b"tail"]


def test_pylog_engine_environment_variable(engine, tmp_path, monkeypatch):
    from pylog.engine import open_partition

    monkeypatch.setenv("PYLOG_ENGINE", engine)
    with open_partition(tmp_path / "env-0") as log:
        assert log_engine(log) == engine
        log.append([b"a"], timestamps_ms=[TS])
        assert [r.value for r in decode_records(log.read(0, 100))] == [b"a"]
    monkeypatch.setenv("PYLOG_ENGINE", "warp")
    with pytest.raises(InvalidConfigError):
        open_partition(tmp_path / "env-1")


# ---------------------------------------------------------------------------------------------
# edges: exotic bytes-likes, extreme timestamps, size limits, buffers outliving the log


def exotic_values():
    import array

    return [
        array.array("B", b"abc"),
        array.array("i", [1, -2]),  # bytes-like of 8 bytes
        np.frombuffer(b"numpy-bytes", dtype=np.uint8),
        np.array([1, 2, 3], dtype=np.int16),
        memoryview(b"0123456789")[2:7],
        memoryview(bytearray(b"mutable")),
    ]


def test_exotic_bytes_like_values(open_log):
    log = open_log()
    values = exotic_values()
    keys = list(reversed(exotic_values()))
    headers = [[("h", v)] for v in exotic_values()]
    log.append(values, keys=keys, headers=headers, timestamps_ms=[TS] * len(values))
    recs = list(log.records())
    assert [r.value for r in recs] == [bytes(memoryview(v).cast("B")) for v in values]
    assert [r.key for r in recs] == [bytes(memoryview(k).cast("B")) for k in keys]
    assert [r.headers for r in recs] == [[("h", bytes(memoryview(v).cast("B")))] for v in values]


def test_non_contiguous_buffer_is_not_bytes_like(open_log, engine):
    """Python's glossary: a bytes-like object exports a C-contiguous buffer. A strided view does
    not, so append, append_raw and decode_records refuse it (TypeError, or the BufferError that
    hashlib and file writes raise), and nothing is written."""
    log = open_log()
    rejected = (TypeError, BufferError)
    with pytest.raises(rejected):
        log.append([memoryview(b"abcdef")[::2]], timestamps_ms=[TS])
    with pytest.raises(rejected):
        log.append([b"v"], keys=[memoryview(b"abcdef")[::2]], timestamps_ms=[TS])
    raw = kafka_build_batch([(TS, None, b"a", [])])
    strided = memoryview(bytes(b for x in raw for b in (x, 0)))[::2]
    assert strided.tobytes() == raw and not strided.c_contiguous
    with pytest.raises(rejected):
        log.append_raw(strided)
    with pytest.raises(TypeError):
        log.append_raw([1, 2, 3])  # bytearray() would take it; it is not bytes-like
    with pytest.raises(rejected):
        log.append([b"v"], headers=[[("h", memoryview(b"abcdef")[::2])]], timestamps_ms=[TS])
    with pytest.raises(rejected):
        decode_records(strided, engine=engine)
    assert log.end_offset == 0
    assert log.append([memoryview(b"abcdef")[1:4]], timestamps_ms=[TS]) == 0


def test_header_iterables(open_log):
    log = open_log()
    log.append(
        (b"a", b"b", b"c"),
        keys=(None, b"k", None),
        headers=[iter([("x", b"1")]), (("y", None),), (h for h in [("z", bytearray(b"2"))])],
        timestamps_ms=(1, 2, 3),
    )
    assert [r.headers for r in log.records()] == [[("x", b"1")], [("y", None)], [("z", b"2")]]


def test_extreme_timestamps(open_log):
    log = open_log()
    top = 2**63 - 1
    log.append([b"a", b"b", b"c"], timestamps_ms=[top, 0, top - 1])
    log.append([b"d"], timestamps_ms=[0])
    assert [r.timestamp for r in log.records()] == [top, 0, top - 1, 0]
    assert log.offset_for_timestamp(top) == 0
    assert log.offset_for_timestamp(1) == 0
    (hdr, _) = parse_batches(bytes(memoryview(log.read(0, 1 << 20))))
    assert (hdr.base_timestamp, hdr.max_timestamp) == (top, top)


@pytest.mark.parametrize("bad", [[1.5], [True], ["5"], [None]])
def test_timestamp_types(open_log, bad):
    log = open_log()
    with pytest.raises((InvalidRecordError, TypeError)):
        log.append([b"a"], timestamps_ms=bad)
    assert log.end_offset == 0


def batch_size_for(value_len: int) -> int:
    return len(kafka_build_batch([(TS, None, bytes(value_len), [])]))


def test_max_message_bytes_boundary(open_log):
    size = batch_size_for(500)
    log = open_log(max_message_bytes=size)
    assert log.append([bytes(500)], timestamps_ms=[TS]) == 0
    with pytest.raises(RecordTooLargeError):
        log.append([bytes(501)], timestamps_ms=[TS])
    assert log.append_raw(kafka_build_batch([(TS, None, bytes(500), [])])) == 1
    with pytest.raises(RecordTooLargeError):
        log.append_raw(kafka_build_batch([(TS, None, bytes(501), [])]))
    assert log.end_offset == 2


def test_segment_bytes_boundary(open_log):
    size = batch_size_for(300)
    log = open_log(segment_bytes=2 * size)
    for i in range(5):
        log.append([bytes(300)], timestamps_ms=[TS + i])
    assert segment_bases(log.path) == [0, 2, 4], "two batches fill a segment exactly"
    with pytest.raises(RecordTooLargeError):
        log.append([bytes(300 + size + 1)], timestamps_ms=[TS])
    assert log.append([bytes(300 + size)], timestamps_ms=[TS]) == 5  # exactly segment.bytes
    assert segment_bases(log.path) == [0, 2, 4, 5]


def test_no_time_roll_without_a_timestamp(open_log):
    from helpers import raw_batch, raw_record

    log = open_log(segment_ms=1)
    log.append_raw(raw_batch(raw_record(), 1, base_ts=-1, max_ts=-1))
    log.append([b"later"], timestamps_ms=[TS])
    assert segment_bases(log.path) == [0], "first batch has no timestamp: no time-based roll"
    log.roll()
    log.append([b"a"], timestamps_ms=[TS])
    log.append([b"b"], timestamps_ms=[TS + 2])  # 2 > segment.ms past the first batch
    assert segment_bases(log.path) == [0, 2, 3]


def test_full_offset_index_rolls(open_log):
    # 36 bytes: offset index 4 entries; time index 2 (never full: one timestamp only)
    log = open_log(index_interval_bytes=0, segment_index_bytes=36)
    for i in range(12):
        log.append([b"v%d" % i], timestamps_ms=[TS])
    assert segment_bases(log.path) == [0, 5, 10]


def test_buffers_outlive_the_log(open_log):
    log = open_log()
    for i in range(3):
        log.append([b"x%d" % i * 100], timestamps_ms=[TS + i])
    log.roll()
    log.append([b"active"], timestamps_ms=[TS])
    sealed, active = log.read(0, 1 << 20), log.read(3, 1 << 20)
    cols = log.read_columns(0, 10)
    want_sealed, want_active = bytes(memoryview(sealed)), bytes(memoryview(active))
    log.close()
    assert bytes(memoryview(sealed)) == want_sealed
    assert bytes(memoryview(active)) == want_active
    assert [cols.value(i) for i in range(4)] == [b"x0" * 100, b"x1" * 100, b"x2" * 100, b"active"]


def test_read_buffer_is_read_only_or_a_copy(open_log):
    log = open_log()
    log.append([b"abc"], timestamps_ms=[TS])
    log.roll()
    view = memoryview(log.read(0, 100))
    if not view.readonly:
        view[-1] = 0  # writing into a copy must not change the log
    assert [r.value for r in log.records()] == [b"abc"]


def test_records_iterator_after_close(open_log):
    """A live iterator fetches in chunks: after close the next fetch raises LogClosedError."""
    log = open_log()
    for i in range(30):
        log.append([bytes([i]) * 100_000], timestamps_ms=[TS])
    got = []
    with pytest.raises(LogClosedError):
        for r in log.records():
            got.append(r.value)
            if len(got) == 2:
                log.close()
    assert 2 <= len(got) < 30
    assert got == [bytes([i]) * 100_000 for i in range(len(got))]


@pytest.mark.parametrize("kind", ["parent is a file", "device", "not writable"])
def test_unusable_paths(engine, tmp_path, kind):
    """Paths that cannot hold a partition raise the matching OSError subclass."""
    from pylog.engine import open_partition

    blocker = tmp_path / "afile"
    blocker.write_bytes(b"x")
    path, expected = {
        "parent is a file": (blocker / "child-0", NotADirectoryError),
        "device": (Path("/dev/null"), NotADirectoryError),
        # /sys refuses mkdir even to root (EPERM, or EROFS when mounted read-only)
        "not writable": (Path("/sys/pylog-test-0"), OSError),
    }[kind]
    if kind == "not writable" and not Path("/sys").is_dir():
        pytest.skip("no /sys here")
    with pytest.raises(expected) as info:
        open_partition(path, engine=engine)
    if kind == "not writable":
        with pytest.raises(OSError) as direct:
            os.mkdir(path)
        assert type(info.value) is type(direct.value), "the same error os.mkdir gives"
    assert blocker.read_bytes() == b"x"


def test_wait_for_does_not_burn_a_core(open_log):
    log = open_log()
    log.append([b"a"], timestamps_ms=[TS])
    cpu0, wall0 = time.process_time(), time.monotonic()
    assert log.wait_for(1, 400) is False
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    assert wall >= 0.39
    assert cpu < 0.5 * wall, f"wait_for used {cpu:.3f} s of CPU in {wall:.3f} s"


def test_directory_removed_under_an_open_handle(open_log, tmp_path):
    """A partition directory removed (a topic deleted by another process) under open handles:
    every later call raises the OS's error, never an internal one (the handle keeps its segments
    rather than ending up with none), nothing recreates the directory, close() still closes."""
    log = open_log(tmp_path / "t-0", segment_bytes=1024)
    log.append([b"x" * 100] * 5)
    other = open_log(tmp_path / "t-0")  # a second opener: the shared page is in use
    shutil.rmtree(tmp_path / "t-0")
    calls = {
        "append": lambda: log.append([b"y" * 100]),
        "records": lambda: list(log.records()),
        "end_offset": lambda: log.end_offset,
        "roll": log.roll,
        "read": lambda: log.read(0, 1 << 20),
    }
    outcomes = []
    for _ in range(3):
        for name, call in calls.items():
            try:
                call()
                outcomes.append((name, "ok"))
            except FileNotFoundError:
                outcomes.append((name, "FileNotFoundError"))
        assert not (tmp_path / "t-0").exists()
    # never InternalError/IndexError (those would have escaped above); the write fails every time
    assert [o for n, o in outcomes if n == "append"] == ["FileNotFoundError"] * 3
    for handle in (log, other):
        with contextlib.suppress(FileNotFoundError):
            handle.close()
        assert handle.closed
    assert not (tmp_path / "t-0").exists()
