"""Retention through the client API (docs/compaction.md "Retention"): ``Log.delete_records``
(Kafka's AdminClient semantics), ``Log.apply_retention``, the background retention of the
cleaner thread, the broker settings of ``pylog.open(config=...)``, and consumers whose position
falls below a new log start (``auto_offset_reset``), with the deletion made by another process.

Records are produced with explicit timestamps and topics with small segments, so each test knows
which segments retention may delete. Background work is awaited through its log lines (a handler
that sets an event), never by sleeping.
"""

from __future__ import annotations

import gc
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pylog
from pylog.bench_processes import same_pylog_env
from pylog.broker_config import BrokerConfig
from pylog.errors import InvalidConfigError, OffsetOutOfRangeError, UnknownTopicOrPartitionError
from pylog.partition import RetentionResult
from pylog.types import TopicPartition

DAY_MS = 24 * 3600 * 1000
WAIT_S = 30  # the bound of every wait for background work (a hang fails instead of blocking)
TP0 = TopicPartition("t", 0)
#: why a test's kafka param is skipped
ONE_RECORD_SEGMENTS = (
    "counts one-record segments (segment.bytes=100; Kafka's minimum is 1 MiB) and their sizes on disk"
)
BROKERS_RETAIN = "calls Log.apply_retention; a cluster's brokers apply retention on their own schedule"


def produce(
    log: pylog.Log, topic: str, n: int, *, partition: int = 0, ts: int | None = None, start: int = 0
) -> None:
    with log.producer(linger_ms=0) as producer:
        for i in range(start, start + n):
            # why get(): one batch per record, so the segments each test counts are known
            producer.send(
                topic, value=b"v%05d" % i, key=b"k%05d" % i, partition=partition, timestamp_ms=ts
            ).get()


def segmented_topic(log: pylog.Log, n: int, *, partitions: int = 1, **config: object) -> None:
    """Topic ``t`` whose segments each hold one record (a ~90-byte batch; segment.bytes=100)."""
    log.create_topic("t", partitions=partitions, config={"segment.bytes": 100, **config})
    for p in range(partitions):
        produce(log, "t", n, partition=p)


def read_values(log: pylog.Log, tp: TopicPartition = TP0, **config: object) -> list[bytes]:
    with log.consumer(auto_offset_reset="earliest", **config) as consumer:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        out: list[bytes] = []
        while consumer.position(tp) < end:
            for records in consumer.poll(timeout_ms=1000).values():
                out.extend(r.value for r in records)
        return out


class LogLines(logging.Handler):
    """Collects the messages of one logger and sets an event on each that contains ``needle``."""

    def __init__(self, needle: str):
        super().__init__(logging.DEBUG)
        self.needle = needle
        self.seen = threading.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.messages.append(message)
        if self.needle in message:
            self.seen.set()


@pytest.fixture
def retention_lines() -> Iterator[LogLines]:
    handler = LogLines("")
    logger = logging.getLogger("pylog.retention")
    old = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


# --- delete_records -------------------------------------------------------------------------------


def test_delete_records_moves_the_low_watermark_inside_a_segment(log: pylog.Log) -> None:
    log.create_topic("t", partitions=2)  # one segment: the new start lies inside it
    produce(log, "t", 10, partition=0)
    produce(log, "t", 4, partition=1)
    assert log.delete_records("t", {0: 7, 1: -1}) == {TP0: 7, TopicPartition("t", 1): 4}
    parts = log.describe_topic("t").partitions
    assert [(p.start_offset, p.end_offset) for p in parts] == [(7, 10), (4, 4)]
    assert read_values(log) == [b"v00007", b"v00008", b"v00009"]
    # the same offset again is a no-op; the result is still the low watermark
    assert log.delete_records("t", {0: 7}) == {TP0: 7}


@pytest.mark.embedded_only(ONE_RECORD_SEGMENTS)
def test_delete_records_deletes_whole_segments_below_the_new_start(log: pylog.Log) -> None:
    segmented_topic(log, 10)
    before = log.describe_topic("t").partitions[0].size_bytes
    assert log.delete_records("t", {0: 6}) == {TP0: 6}
    after = log.describe_topic("t").partitions[0]
    assert after.start_offset == 6 and after.size_bytes < before
    assert read_values(log) == [b"v%05d" % i for i in range(6, 10)]


@pytest.mark.parametrize(
    ("offsets", "error", "match"),
    [
        ({0: 11}, OffsetOutOfRangeError, "before offset 11"),
        ({0: -2}, OffsetOutOfRangeError, "-1 means the end"),
        ({0: 3, 1: 99}, OffsetOutOfRangeError, "t-1"),
        ({2: 1}, UnknownTopicOrPartitionError, "no partition 2"),
        ({True: 1}, UnknownTopicOrPartitionError, "no partition True"),
        ({0: "5"}, TypeError, "offset must be an integer"),
    ],
)
def test_delete_records_refuses_bad_arguments_and_changes_nothing(
    log: pylog.Log, offsets: dict, error: type[Exception], match: str
) -> None:
    log.create_topic("t", partitions=2)
    produce(log, "t", 10, partition=0)
    produce(log, "t", 10, partition=1)
    with pytest.raises(error, match=match):
        log.delete_records("t", offsets)
    assert [p.start_offset for p in log.describe_topic("t").partitions] == [0, 0]


def test_delete_records_below_the_start_and_of_unknown_topics_are_errors(log: pylog.Log) -> None:
    log.create_topic("t")
    produce(log, "t", 5)
    log.delete_records("t", {0: 3})
    with pytest.raises(OffsetOutOfRangeError, match=r"\[3, 5\]"):
        log.delete_records("t", {0: 2})
    with pytest.raises(UnknownTopicOrPartitionError):
        log.delete_records("nope", {0: 1})
    with pytest.raises(TypeError):
        log.delete_records("t", [(0, 1)])  # type: ignore[arg-type]
    assert log.describe_topic("t").partitions[0].start_offset == 3


# --- apply_retention ------------------------------------------------------------------------------


@pytest.mark.embedded_only(BROKERS_RETAIN)
def test_apply_retention_by_size_deletes_the_oldest_sealed_segments(log: pylog.Log) -> None:
    segmented_topic(log, 8)
    sizes_before = log.describe_topic("t").partitions[0]
    # retention.bytes of about three one-record segments: the oldest ones go, the active stays
    log.alter_topic_config("t", {"retention.bytes": 300})
    results = log.apply_retention("t")
    assert set(results) == {TP0}
    result = results[TP0]
    assert isinstance(result, RetentionResult) and result.deleted_segments >= 4
    after = log.describe_topic("t").partitions[0]
    assert after.start_offset == result.start_offset and after.end_offset == 8
    assert after.size_bytes < sizes_before.size_bytes
    assert read_values(log) == [b"v%05d" % i for i in range(result.start_offset, 8)]
    assert log.apply_retention("t")[TP0].deleted_segments == 0  # nothing more to delete


@pytest.mark.embedded_only(BROKERS_RETAIN)
def test_apply_retention_by_time_keeps_recent_records(log: pylog.Log) -> None:
    log.create_topic("t", config={"segment.bytes": 100, "retention.ms": DAY_MS})
    now = time.time_ns() // 1_000_000
    with log.producer(linger_ms=0) as producer:
        for i in range(6):
            ts = now - 3 * DAY_MS if i < 4 else now  # 4 old records, then 2 recent ones
            producer.send("t", key=b"k%d" % i, value=b"v%d" % i, timestamp_ms=ts).get()
    assert log.apply_retention()[TP0].start_offset == 4
    assert read_values(log) == [b"v4", b"v5"]


@pytest.mark.embedded_only(BROKERS_RETAIN)
def test_apply_retention_leaves_compact_only_topics_to_the_cleaner(log: pylog.Log) -> None:
    segmented_topic(log, 4, **{"retention.bytes": 0})
    log.create_topic("c", config={"cleanup.policy": "compact", "segment.bytes": 100, "retention.bytes": 0})
    produce(log, "c", 4)
    results = log.apply_retention()
    assert set(results) == {TP0}  # topic "c" has no delete in its policy
    assert log.describe_topic("c").partitions[0].start_offset == 0


# --- consumers below a new log start --------------------------------------------------------------

DELETE_IN_CHILD = """
import sys, pylog
with pylog.open(sys.argv[1], engine=sys.argv[2], config={"log.cleaner.enable": False}) as log:
    print(log.delete_records("t", {0: int(sys.argv[3])}), flush=True)
"""


def delete_records_in_another_process(log_dir: Path, engine: str, offset: int) -> None:
    done = subprocess.run(
        [sys.executable, "-P", "-c", DELETE_IN_CHILD, str(log_dir), engine, str(offset)],
        env=same_pylog_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"{{TopicPartition(topic='t', partition=0): {offset}}}" in done.stdout


@pytest.mark.parametrize(("policy", "resumes_at"), [("earliest", 7), ("latest", 10)])
def test_a_consumer_below_a_start_moved_by_another_process_applies_auto_offset_reset(
    log: pylog.Log, log_dir: Path, engine: str, policy: str, resumes_at: int
) -> None:
    segmented_topic(log, 10)
    with log.consumer(auto_offset_reset=policy) as consumer:
        consumer.assign([TP0])
        consumer.seek(TP0, 2)
        first = consumer.poll(timeout_ms=1000, max_records=1)
        assert [r.offset for r in first[TP0]] == [2]
        delete_records_in_another_process(log_dir, engine, 7)
        # position 3 now lies below the log start 7: reset by the policy, not an error
        consumer.seek(TP0, 3)
        records = []
        while consumer.position(TP0) < 10 and policy == "earliest":
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
        if policy == "latest":
            assert consumer.poll(timeout_ms=50) == {}
        assert consumer.position(TP0) == 10
        assert [r.offset for r in records] == list(range(resumes_at, 10))


def test_a_consumer_with_auto_offset_reset_none_gets_offset_out_of_range(
    log: pylog.Log, log_dir: Path, engine: str
) -> None:
    segmented_topic(log, 10)
    with log.consumer(auto_offset_reset="none") as consumer:
        consumer.assign([TP0])
        consumer.seek(TP0, 1)
        delete_records_in_another_process(log_dir, engine, 5)
        with pytest.raises(OffsetOutOfRangeError, match="auto_offset_reset is 'none'"):
            consumer.poll(timeout_ms=1000)


# --- the background retention -----------------------------------------------------------------


@pytest.mark.parametrize("cleaner_enable", [True, False])
def test_the_background_thread_applies_retention_every_check_interval(
    engine: str, log_dir: Path, retention_lines: LogLines, cleaner_enable: bool
) -> None:
    # why log.cleaner.enable=False too: as in Kafka it turns compaction off, not retention
    config = {"log.retention.check.interval.ms": 20, "log.cleaner.enable": cleaner_enable}
    with pylog.open(log_dir, engine=engine, config=config) as log:
        log.create_topic("t", config={"segment.bytes": 100})
        produce(log, "t", 6)
        retention_lines.seen.clear()
        log.alter_topic_config("t", {"retention.bytes": 0})
        assert retention_lines.seen.wait(WAIT_S), retention_lines.messages
        assert log.describe_topic("t").partitions[0].start_offset == 5  # all but the active segment
        assert any("t-0" in message for message in retention_lines.messages)


def test_close_stops_the_cleaner_thread(engine: str, log_dir: Path) -> None:
    def cleaners() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == f"pylog-cleaner {log_dir}"]

    log = pylog.open(log_dir, engine=engine, config={"log.cleaner.backoff.ms": 3_600_000})
    assert len(cleaners()) == 1
    log.close()  # returns although the thread was asleep for an hour: the stop event woke it
    assert cleaners() == []


def test_a_log_dropped_without_close_lets_its_cleaner_thread_end(engine: str, log_dir: Path) -> None:
    log = pylog.open(log_dir, engine=engine, config={"log.cleaner.backoff.ms": 10})
    (thread,) = [t for t in threading.enumerate() if t.name == f"pylog-cleaner {log_dir}"]
    del log  # the thread holds its backend weakly: nothing keeps the Log (and its files) alive
    gc.collect()
    thread.join(timeout=WAIT_S)
    assert not thread.is_alive()


# --- broker settings ----------------------------------------------------------------------------


def test_broker_config_defaults_are_kafkas() -> None:
    assert BrokerConfig().to_kafka_dict() == {
        "log.cleaner.enable": True,
        "log.cleaner.backoff.ms": 15_000,
        "log.cleaner.dedupe.buffer.size": 134_217_728,
        "log.retention.check.interval.ms": 300_000,
        "log.cleaner.max.failures": 3,
    }
    parsed = BrokerConfig.from_mapping({"log.cleaner.enable": "FALSE", "log.cleaner.backoff.ms": " 250 "})
    assert parsed.cleaner_enable is False and parsed.cleaner_backoff_ms == 250


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"log.cleaner.threads": 2}, "unknown log config key 'log.cleaner.threads'"),
        ({"segment.bytes": 1024}, "unknown log config key"),  # a topic setting, not a broker one
        ({"log.cleaner.enable": "yes"}, "must be a bool"),
        ({"log.cleaner.enable": 1}, "must be a bool"),
        ({"log.cleaner.backoff.ms": -1}, "must be in"),
        ({"log.cleaner.dedupe.buffer.size": 1023}, r"must be in \[1024"),
        ({"log.retention.check.interval.ms": 0}, "must be in"),
        ({"log.cleaner.max.failures": 0}, "must be in"),
        ({"log.cleaner.max.failures": True}, "must be an integer"),
        ({"log.cleaner.backoff.ms": 1.5}, "must be an integer"),
    ],
)
def test_bad_broker_settings_are_refused(log_dir: Path, config: dict, match: str) -> None:
    with pytest.raises(InvalidConfigError, match=match):
        pylog.open(log_dir, config=config)


def test_a_non_mapping_config_is_refused(log_dir: Path) -> None:
    with pytest.raises(InvalidConfigError, match="mapping"):
        pylog.open(log_dir, config=[("log.cleaner.enable", True)])  # type: ignore[arg-type]


def test_poll_columns_below_a_new_start_resets_to_it(log: pylog.Log, log_dir: Path, engine: str) -> None:
    segmented_topic(log, 10)
    with log.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign([TP0])
        consumer.seek(TP0, 1)
        delete_records_in_another_process(log_dir, engine, 6)
        offsets: list[int] = []
        while consumer.position(TP0) < 10:
            for columns in consumer.poll_columns(timeout_ms=1000).values():
                offsets.extend(int(o) for o in columns.offsets)
        assert offsets == [6, 7, 8, 9]
