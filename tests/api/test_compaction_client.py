"""Compaction through the client API (docs/compaction.md) and the background cleaner's rules.

Two halves:

- The cleaner's scheduling (``pylog.embedded.cleaner.Cleaner``) driven by hand with an injected
  clock over fake partition logs: filthiest first, ``wait=False`` and the stop event handed to
  ``compact``, per-partition backoff, uncleanable marking after ``log.cleaner.max.failures``, a
  failing partition never stopping the others, a loop that survives its own exceptions, a stop
  that interrupts a compaction in progress.
- End to end on the engines through the ``log`` fixture: ``Log.compact`` turning a change log into
  a table, tombstones, keyless records refused on a compacted topic (the producer's future fails
  with ``InvalidRecordError``), ``describe_topic``'s cleaner fields, the uncleanable mark in the
  catalog and what clears it, a failure injected into one partition of a real log, and another
  process consuming and producing while this one compacts.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import pylog
from pylog.bench_processes import same_pylog_env
from pylog.broker_config import BrokerConfig
from pylog.config import LogConfig
from pylog.embedded.cleaner import RETENTION_INITIAL_DELAY_MS, Cleaner
from pylog.errors import ClientClosedError, InvalidRecordError, UnknownTopicOrPartitionError
from pylog.partition import Cleanable, CleanResult, RetentionResult
from pylog.types import TopicPartition

# --- fakes for the scheduling tests ----------------------------------------------------------------


def cleanable(ratio: float, *, due: bool = True) -> Cleanable:
    return Cleanable(0, 10, 100, int(ratio * 100), ratio, False, due)


@dataclass
class FakeLog:
    """A partition log as the cleaner sees it: programmable ``cleanable`` and failures."""

    tp: TopicPartition
    calls: list[tuple[str, TopicPartition, dict]]
    policy: str = "compact"
    ratio: float = 0.9
    due: bool = True
    #: exceptions raised by the next compact() calls (one each), then success
    compact_errors: list[BaseException] = field(default_factory=list)
    retention_errors: list[BaseException] = field(default_factory=list)
    #: when set, compact() blocks until the cancel event is set (a long compaction)
    block: threading.Event | None = None

    @property
    def config(self) -> LogConfig:
        return LogConfig(cleanup_policy=self.policy)

    def cleanable(self, now_ms: int | None = None) -> Cleanable:
        return cleanable(self.ratio, due=self.due)

    def compact(self, now_ms: int | None = None, **kwargs: Any) -> CleanResult:
        self.calls.append(("compact", self.tp, {"now_ms": now_ms, **kwargs}))
        if self.block is not None:
            self.block.set()
            kwargs["cancel"].wait()
            return CleanResult(0, 0, 0, 0, 0, 0, 0, 0, skipped="cancelled")
        if self.compact_errors:
            raise self.compact_errors.pop(0)
        return CleanResult(1, 1, 100, 50, 10, 5, 0, 10)

    def apply_retention(self, now_ms: int | None = None, *, wait: bool = True) -> RetentionResult:
        self.calls.append(("retention", self.tp, {"now_ms": now_ms, "wait": wait}))
        if self.retention_errors:
            raise self.retention_errors.pop(0)
        return RetentionResult(1, 100, 1)


class FakeMarks:
    def __init__(self) -> None:
        self.marks: dict[TopicPartition, tuple[str, int]] = {}

    def read(self) -> dict[TopicPartition, str]:
        return {tp: reason for tp, (reason, _) in self.marks.items()}

    def mark(self, tp: TopicPartition, reason: str, since_ms: int, failures: int) -> None:
        self.marks[tp] = (reason, failures)

    def clear(self, tp: TopicPartition) -> bool:
        return self.marks.pop(tp, None) is not None


class FakeSource:
    def __init__(self) -> None:
        self.calls: list[tuple[str, TopicPartition, dict]] = []
        self.logs: dict[TopicPartition, FakeLog] = {}
        self.uncleanable_marks = FakeMarks()
        self.deleted: set[str] = set()
        self.listing_errors: list[BaseException] = []
        self.listed = threading.Event()

    def add(self, topic: str, partition: int = 0, **settings: Any) -> FakeLog:
        tp = TopicPartition(topic, partition)
        self.logs[tp] = FakeLog(tp, self.calls, **settings)
        return self.logs[tp]

    def partitions_with_policy(self, word: str) -> list[TopicPartition]:
        self.listed.set()
        if self.listing_errors:
            raise self.listing_errors.pop(0)
        return [tp for tp, log in self.logs.items() if word in log.policy]

    def partition_log(self, tp: TopicPartition) -> FakeLog:
        if tp.topic in self.deleted:
            raise UnknownTopicOrPartitionError(tp.topic)
        return self.logs[tp]

    def check_partition(self, tp: TopicPartition) -> None:
        if tp.topic in self.deleted:
            raise UnknownTopicOrPartitionError(tp.topic)

    def compacted(self) -> list[TopicPartition]:
        out = [tp for kind, tp, _ in self.calls if kind == "compact"]
        self.calls.clear()
        return out


class Clock:
    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def make_cleaner(source: FakeSource, clock: Clock, **settings: Any) -> Cleaner:
    config = {"log.cleaner.backoff.ms": 1000, "log.retention.check.interval.ms": 60_000, **settings}
    return Cleaner(source, BrokerConfig.from_mapping(config), clock_ms=clock)


# --- scheduling ---------------------------------------------------------------------------------


def test_the_filthiest_due_partition_is_compacted_first_without_waiting_for_the_lock() -> None:
    source, clock = FakeSource(), Clock()
    source.add("a", ratio=0.6)
    source.add("b", ratio=0.95)
    source.add("c", ratio=0.7)
    source.add("d", ratio=0.99, due=False)  # not due: left alone
    source.add("e", policy="delete", ratio=1.0)  # not compacted at all
    cleaner = make_cleaner(source, clock, **{"log.cleaner.dedupe.buffer.size": 4096})
    assert cleaner.compaction_round() == 3
    order = [tp.topic for kind, tp, _ in source.calls]
    assert order == ["b", "c", "a"]
    for _, _, kwargs in source.calls:
        assert kwargs["force"] is False and kwargs["wait"] is False
        assert kwargs["map_bytes"] == 4096 and kwargs["now_ms"] == clock.now
        cancel = kwargs["cancel"]  # the stop event, or a pending fork (pylog.forking)
        assert not cancel.is_set()
        cleaner._stop.set()
        assert cancel.is_set()
        cleaner._stop.clear()


def test_a_round_that_cleaned_something_is_followed_at_once_else_the_cleaner_backs_off() -> None:
    source, clock = FakeSource(), Clock()
    log = source.add("a")
    cleaner = make_cleaner(source, clock)
    assert cleaner.run_once() == 0  # cleaned: Kafka's cleaner does not pause after cleaning
    log.due = False
    assert cleaner.run_once() == pytest.approx(1.0)  # log.cleaner.backoff.ms


def test_a_failing_partition_backs_off_exponentially_then_is_marked_while_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, clock = FakeSource(), Clock()
    bad = source.add("bad", ratio=0.99)
    bad.compact_errors = [OSError(5, "Input/output error")] * 10
    source.add("good", ratio=0.6)
    cleaner = make_cleaner(source, clock, **{"log.cleaner.max.failures": 3})
    bad_tp, good_tp = TopicPartition("bad", 0), TopicPartition("good", 0)

    cleaner.compaction_round()
    assert source.compacted() == [bad_tp, good_tp] and cleaner.failures("compact", bad_tp) == 1
    clock.now += 999  # the first retry waits log.cleaner.backoff.ms
    cleaner.compaction_round()
    assert source.compacted() == [good_tp]
    clock.now += 1
    cleaner.compaction_round()
    assert source.compacted() == [bad_tp, good_tp] and cleaner.failures("compact", bad_tp) == 2
    clock.now += 1999  # then twice as long
    cleaner.compaction_round()
    assert source.compacted() == [good_tp]
    clock.now += 1
    cleaner.compaction_round()  # the third failure in a row: marked
    assert source.compacted() == [bad_tp, good_tp]
    assert source.uncleanable_marks.marks == {bad_tp: ("OSError: [Errno 5] Input/output error", 3)}
    clock.now += 10**9
    for _ in range(3):
        cleaner.compaction_round()
    assert source.compacted() == [good_tp] * 3  # skipped for good, the others still cleaned
    errors = [r for r in caplog.records if r.name == "pylog.cleaner" and r.levelname == "ERROR"]
    assert len(errors) == 3 and all(r.exc_info for r in errors)
    assert "marking it uncleanable" in errors[-1].getMessage()

    source.uncleanable_marks.clear(bad_tp)  # a config change or an explicit compact cleared it
    cleaner.compaction_round()
    assert source.compacted() == [bad_tp, good_tp] and cleaner.failures("compact", bad_tp) == 1


def test_a_success_resets_the_failures_in_a_row() -> None:
    source, clock = FakeSource(), Clock()
    flaky = source.add("flaky")
    tp = TopicPartition("flaky", 0)
    cleaner = make_cleaner(source, clock, **{"log.cleaner.max.failures": 2})
    for _ in range(4):  # fail, succeed, fail, succeed: never two in a row, never marked
        flaky.compact_errors = [RuntimeError("transient")]
        cleaner.compaction_round()
        assert cleaner.failures("compact", tp) == 1
        clock.now += 1000
        cleaner.compaction_round()
        assert cleaner.failures("compact", tp) == 0
    assert source.uncleanable_marks.marks == {}
    flaky.compact_errors = [RuntimeError("transient")]
    cleaner.compaction_round()
    cleaner.forget_failures(tp)  # an explicit compact of it succeeded (any thread)
    cleaner.run_once()
    assert cleaner.failures("compact", tp) == 0 and source.compacted()[-1] == tp


def test_a_deleted_topic_is_not_a_failure() -> None:
    source, clock = FakeSource(), Clock()
    source.add("gone").compact_errors = [FileNotFoundError(2, "No such file or directory")]
    cleaner = make_cleaner(source, clock, **{"log.cleaner.max.failures": 1})
    source.deleted.add("gone")
    cleaner.compaction_round()
    assert source.uncleanable_marks.marks == {}
    assert cleaner.failures("compact", TopicPartition("gone", 0)) == 0


def test_retention_runs_every_check_interval_on_delete_partitions_and_a_failure_backs_off_one() -> None:
    source, clock = FakeSource(), Clock()
    failing = source.add("d1", policy="delete")
    failing.retention_errors = [OSError(28, "No space left on device")] * 5
    source.add("d2", policy="compact,delete", due=False)
    source.add("c", policy="compact", due=False)  # its retention runs inside its compaction
    cleaner = make_cleaner(
        source, clock, **{"log.retention.check.interval.ms": 10**9, "log.cleaner.max.failures": 1}
    )
    assert cleaner.run_once() == pytest.approx(1.0)
    assert source.calls == []  # the first check waits Kafka's initial delay
    clock.now += RETENTION_INITIAL_DELAY_MS
    cleaner.run_once()
    retained = [tp.topic for kind, tp, _ in source.calls if kind == "retention"]
    assert retained == ["d1", "d2"]
    assert source.calls[-1][2] == {"now_ms": clock.now, "wait": False}
    assert source.uncleanable_marks.marks == {}  # retention failures never mark
    assert cleaner.failures("retention", TopicPartition("d1", 0)) == 1
    source.calls.clear()
    clock.now += 10**9 - 1
    cleaner.run_once()
    assert source.calls == []  # not before the interval
    clock.now += 1
    cleaner.run_once()
    assert [tp.topic for _, tp, _ in source.calls] == ["d1", "d2"]
    assert cleaner.failures("retention", TopicPartition("d1", 0)) == 2


def test_without_compaction_retention_covers_compact_only_partitions_too() -> None:
    source, clock = FakeSource(), Clock()
    source.add("c", policy="compact")
    source.add("d", policy="delete")
    cleaner = make_cleaner(source, clock, **{"log.cleaner.enable": False})
    clock.now += RETENTION_INITIAL_DELAY_MS
    cleaner.run_once()
    # as Kafka's LogManager without a cleaner: every log; no compaction at all
    assert sorted((kind, tp.topic) for kind, tp, _ in source.calls) == [
        ("retention", "c"),
        ("retention", "d"),
    ]


@pytest.fixture
def thread_cleaner() -> Iterator[tuple[FakeSource, Cleaner]]:
    source = FakeSource()
    cleaner = Cleaner(source, BrokerConfig.from_mapping({"log.cleaner.backoff.ms": 0}))
    yield source, cleaner
    cleaner.stop()


def test_the_loop_survives_its_own_exceptions_and_ends_when_the_backend_closes(
    thread_cleaner: tuple[FakeSource, Cleaner], caplog: pytest.LogCaptureFixture
) -> None:
    source, cleaner = thread_cleaner
    source.listing_errors = [RuntimeError("catalog hiccup"), ClientClosedError("closed")]
    cleaner.start()
    cleaner._thread.join(timeout=60)  # type: ignore[union-attr]
    assert not cleaner.running  # ended by ClientClosedError, after going on past the RuntimeError
    assert source.listing_errors == []
    assert any("the cleaner's loop failed" in r.getMessage() and r.exc_info for r in caplog.records)


def test_stop_interrupts_a_compaction_in_progress(thread_cleaner: tuple[FakeSource, Cleaner]) -> None:
    source, cleaner = thread_cleaner
    started = threading.Event()
    source.add("long", block=started)
    cleaner.start()
    assert started.wait(60)
    stopper = threading.Thread(target=cleaner.stop)
    stopper.start()
    stopper.join(timeout=60)  # the compaction returns once its cancel event is set
    assert not stopper.is_alive() and not cleaner.running


# --- end to end on the engines ----------------------------------------------------------------------

TS = 1_700_000_000_000
WAIT_S = 60  # the bound of every wait for the background cleaner (a hang fails, never blocks)


def send_all(log: pylog.Log, topic: str, pairs: list[tuple[bytes, bytes | None]], partition: int = 0) -> None:
    """One batch per record (``get()`` each), so segment.bytes=100 makes one segment per record."""
    with log.producer(linger_ms=0) as producer:
        for i, (key, value) in enumerate(pairs):
            producer.send(topic, key=key, value=value, partition=partition, timestamp_ms=TS + i).get()


def read_all(log: pylog.Log, tp: TopicPartition) -> list[tuple[int, bytes | None, bytes | None]]:
    with log.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        out = []
        while consumer.position(tp) < end:
            for records in consumer.poll(timeout_ms=1000).values():
                out.extend((r.offset, r.key, r.value) for r in records)
        return out


def table(records: list[tuple[int, bytes | None, bytes | None]]) -> dict[bytes, bytes]:
    """What a consumer reading from the start builds: the latest value per key, tombstones delete."""
    out: dict[bytes, bytes] = {}
    for _, key, value in records:
        assert key is not None
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def change_log(keys: int, versions: int) -> list[tuple[bytes, bytes | None]]:
    return [(b"k%02d" % k, b"v%02d-%d" % (k, v)) for v in range(versions) for k in range(keys)]


COMPACTED = {"cleanup.policy": "compact", "segment.bytes": 100}
#: why a test's kafka param is skipped: a cluster's brokers compact on their own schedule
#: (``Log.compact`` raises ``UnsupportedError`` there: tests/kafka_backend/test_admin.py)
BROKERS_COMPACT = "calls Log.compact, the embedded cleaner; a cluster's brokers compact on their own"


@pytest.mark.embedded_only(BROKERS_COMPACT)
def test_compact_turns_a_change_log_into_a_table(log: pylog.Log) -> None:
    log.create_topic("t", config=COMPACTED)
    tp = TopicPartition("t", 0)
    send_all(log, "t", change_log(5, 4))  # 20 records, 5 keys
    before = read_all(log, tp)
    described = log.describe_topic("t").partitions[0]
    assert described.dirty_ratio is not None and described.dirty_ratio > 0.9
    assert described.clean_offset == 0 and described.uncleanable is None

    result = log.compact("t")[tp]
    assert isinstance(result, CleanResult) and result.skipped is None and result.passes >= 1
    after = read_all(log, tp)
    assert table(after) == table(before)
    # of the sealed segments every key keeps its latest record, at its original offset; the
    # active segment (offset 19, one record per segment here) is neither cleaned nor looked at,
    # so k04's record 14 stays beside its newer one at 19 (Kafka's rule)
    sealed, active = before[:-1], before[-1]
    latest = {key: (offset, value) for offset, key, value in sealed}
    assert after == [*sorted((offset, key, value) for key, (offset, value) in latest.items()), active]
    assert len(after) == 6
    described = log.describe_topic("t").partitions[0]
    assert described.dirty_ratio == 0.0 and described.clean_offset == 19
    assert (described.start_offset, described.end_offset) == (0, 20)
    assert log.compact("t")[tp].skipped == "nothing to clean"


@pytest.mark.embedded_only(BROKERS_COMPACT)
def test_tombstones_survive_one_pass_then_go_after_delete_retention_ms(log: pylog.Log) -> None:
    log.create_topic("t", config={**COMPACTED, "delete.retention.ms": 0})
    tp = TopicPartition("t", 0)
    send_all(log, "t", [(b"a", b"1"), (b"b", b"1"), (b"a", None), (b"c", b"1")])
    log.compact("t")  # the first pass that sees the tombstone stamps its delete horizon
    assert [(key, value) for _, key, value in read_all(log, tp)] == [(b"b", b"1"), (b"a", None), (b"c", b"1")]
    send_all(log, "t", [(b"d", b"1"), (b"e", b"1")])  # new dirty data: the cleaner runs again
    result = log.compact("t")[tp]
    assert result.tombstones_removed == 1
    assert [(key, value) for _, key, value in read_all(log, tp)] == [
        (b"b", b"1"),
        (b"c", b"1"),
        (b"d", b"1"),
        (b"e", b"1"),
    ]


@pytest.mark.embedded_only(BROKERS_COMPACT)
def test_compact_leaves_a_delete_topic_alone_and_says_so(log: pylog.Log) -> None:
    log.create_topic("d", config={"segment.bytes": 100})
    log.create_topic("t", config=COMPACTED)
    send_all(log, "d", change_log(2, 3))
    send_all(log, "t", change_log(2, 3))
    everything = log.compact()
    assert set(everything) == {TopicPartition("t", 0)}  # topic None: the compacted topics only
    result = log.compact("d")[TopicPartition("d", 0)]
    assert result.passes == 0 and "has no compact" in (result.skipped or "")
    assert len(read_all(log, TopicPartition("d", 0))) == 6
    described = log.describe_topic("d").partitions[0]
    assert described.dirty_ratio is None and described.clean_offset is None


def test_a_null_key_on_a_compacted_topic_fails_the_future_and_writes_nothing(log: pylog.Log) -> None:
    log.create_topic("t", config={"cleanup.policy": "compact,delete"})
    with log.producer(linger_ms=0) as producer:
        producer.send("t", key=b"k", value=b"kept").get()
        future = producer.send("t", value=b"no key")
        with pytest.raises(InvalidRecordError):
            future.get(timeout=30)
        assert producer.send("t", key=b"k2", value=b"after").get().offset == 1
    assert [(key, value) for _, key, value in read_all(log, TopicPartition("t", 0))] == [
        (b"k", b"kept"),
        (b"k2", b"after"),
    ]


class FailingCompact:
    """An engine handle whose compaction fails (a damaged partition), everything else real. Each
    failure waits for a permit of ``attempts``, so the test decides how many failures happen."""

    def __init__(self, log: Any, attempts: threading.Semaphore):
        self._log = log
        self._attempts = attempts

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)

    def compact(self, *args: Any, **kwargs: Any) -> CleanResult:
        assert self._attempts.acquire(timeout=WAIT_S), "the test allowed no more failures"
        raise OSError(5, "Input/output error (injected)")


@pytest.fixture
def cleaner_lines() -> Iterator[LogLines]:
    handler = LogLines("cleaned t-")
    logger = logging.getLogger("pylog.cleaner")
    old = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


class LogLines(logging.Handler):
    """Collects one logger's messages; sets ``seen`` on one containing ``needle``, ``marked`` on
    an uncleanable marking."""

    def __init__(self, needle: str):
        super().__init__(logging.DEBUG)
        self.needle = needle
        self.seen = threading.Event()
        self.marked = threading.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.messages.append(message)
        if self.needle in message:
            self.seen.set()
        if "marking it uncleanable" in message:
            self.marked.set()


def test_a_failing_partition_is_marked_uncleanable_and_the_others_are_still_cleaned(
    engine: str, log_dir: Path, cleaner_lines: LogLines
) -> None:
    config = {"log.cleaner.backoff.ms": 0, "log.cleaner.max.failures": 2}
    with pylog.open(log_dir, engine=engine, config=config) as log:
        backend = log._backend
        real_partition_log = backend.partition_log
        broken = TopicPartition("t", 1)
        attempts = threading.Semaphore(0)
        backend.partition_log = lambda tp: (  # type: ignore[method-assign]
            FailingCompact(real_partition_log(tp), attempts) if tp == broken else real_partition_log(tp)
        )
        log.create_topic("t", partitions=2, config=COMPACTED)
        send_all(log, "t", change_log(3, 3), partition=1)
        send_all(log, "t", change_log(3, 3), partition=0)
        attempts.release(2)  # two failures in a row: marked
        assert cleaner_lines.marked.wait(WAIT_S), cleaner_lines.messages
        assert cleaner_lines.seen.wait(WAIT_S), cleaner_lines.messages
        good, bad = log.describe_topic("t").partitions
        assert good.uncleanable is None and good.dirty_ratio == 0.0
        assert bad.uncleanable == "OSError: [Errno 5] Input/output error (injected)"
        assert bad.dirty_ratio is not None and bad.dirty_ratio > 0.5
        # a config change of the topic clears the mark (the operator's fix)
        log.alter_topic_config("t", {"min.cleanable.dirty.ratio": 0.4})
        assert [p.uncleanable for p in log.describe_topic("t").partitions] == [None, None]
        # marked again, then an explicit compact that succeeds clears it too
        cleaner_lines.marked.clear()
        attempts.release(2)
        assert cleaner_lines.marked.wait(WAIT_S)
        backend.partition_log = real_partition_log  # type: ignore[method-assign]
        assert log.describe_topic("t").partitions[1].uncleanable is not None
        assert log.compact("t")[broken].passes >= 1
        assert [p.uncleanable for p in log.describe_topic("t").partitions] == [None, None]
        # 3 keys, latest of each among the sealed segments, plus the active segment's record
        assert table(read_all(log, broken)) == table([(0, k, v) for k, v in change_log(3, 3)])
        assert [offset for offset, _, _ in read_all(log, broken)] == [5, 6, 7, 8]


WORKER = r"""
import json, sys, pylog
from pylog.types import TopicPartition
log_dir, engine, extra = sys.argv[1], sys.argv[2], int(sys.argv[3])
tp = TopicPartition("t", 0)
with pylog.open(log_dir, engine=engine, config={"log.cleaner.enable": False}) as log:
    consumer = log.consumer(auto_offset_reset="earliest")
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    producer = log.producer(linger_ms=0)
    table, offsets = {}, []
    def consume():
        for records in consumer.poll(timeout_ms=10).values():
            for r in records:
                offsets.append(r.offset)
                if r.value is None:
                    table.pop(r.key.decode(), None)
                else:
                    table[r.key.decode()] = r.value.decode()
    print("ready", flush=True)
    sys.stdin.readline()  # the parent compacts while this process works
    for i in range(extra):
        producer.send("t", key=b"k%02d" % (i % 7), value=b"child-%d" % i).get()
        consume()
    producer.flush()
    end = consumer.end_offsets([tp])[tp]
    while consumer.position(tp) < end:
        consume()
    assert offsets == sorted(set(offsets)), "offsets went backwards or repeated"
    print(json.dumps(table), flush=True)
"""


def test_another_process_consumes_and_produces_while_this_one_compacts(
    log: pylog.Log, log_dir: Path, engine: str
) -> None:
    log.create_topic("t", config={"cleanup.policy": "compact", "segment.bytes": 300})
    tp = TopicPartition("t", 0)
    pairs = change_log(10, 20)
    send_all(log, "t", pairs)
    extra = 300
    with subprocess.Popen(
        [sys.executable, "-P", "-c", WORKER, str(log_dir), engine, str(extra)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=same_pylog_env(),
        text=True,
    ) as child:
        try:
            assert child.stdout is not None and child.stdin is not None
            assert child.stdout.readline().strip() == "ready"
            child.stdin.write("go\n")
            child.stdin.flush()
            cleaned = 0
            engine_log = log._backend.partition_log(tp)
            end = engine_log.end_offset
            for _ in range(8):  # compact each time the child has sealed a few more segments
                end += 40
                if not engine_log.wait_for(end, 30_000):
                    break  # the child is done producing
                cleaned += log.compact("t")[tp].segments_cleaned
            final = child.stdout.readline()
            assert child.wait(timeout=120) == 0
        finally:
            if child.poll() is None:
                child.kill()
    assert cleaned > 0
    expected = table([(0, k, v) for k, v in pairs])
    expected.update({b"k%02d" % (i % 7): b"child-%d" % i for i in range(extra)})
    assert json.loads(final) == {k.decode(): v.decode() for k, v in expected.items()}
    log.compact("t")
    assert table(read_all(log, tp)) == expected


@pytest.mark.embedded_only("marks a partition uncleanable in the catalog (the embedded cleaner's state)")
def test_a_mark_goes_with_its_topic(log: pylog.Log) -> None:
    log.create_topic("t", partitions=2, config=COMPACTED)
    marks = log._backend.uncleanable_marks
    marks.mark(TopicPartition("t", 1), "OSError: injected", 1, 3)
    assert [p.uncleanable for p in log.describe_topic("t").partitions] == [None, "OSError: injected"]
    log.delete_topic("t")
    marks.mark(TopicPartition("t", 0), "after the deletion", 1, 3)  # a cleaner late to the news
    log.create_topic("t", partitions=2, config=COMPACTED)
    assert [p.uncleanable for p in log.describe_topic("t").partitions] == [None, None]


CLEANING_PROCESS = r"""
import logging, sys, pylog
errors = []
class Lines(logging.Handler):
    def emit(self, record):
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            errors.append(message)
        elif message.startswith("cleaned t-"):
            print(message.split()[0], message.split()[1], flush=True)
logging.getLogger("pylog").addHandler(Lines(logging.DEBUG))
logging.getLogger("pylog.cleaner").setLevel(logging.DEBUG)
config = {"log.cleaner.backoff.ms": 0}
with pylog.open(sys.argv[1], engine=sys.argv[2], config=config) as log:
    print("ready", flush=True)
    sys.stdin.readline()
print("errors", len(errors), errors[:3], flush=True)
"""


def test_the_background_cleaners_of_two_processes_take_turns(
    engine: str, log_dir: Path, cleaner_lines: LogLines
) -> None:
    """Both processes' cleaners work on the same compacted partitions (``wait=False``: a busy
    partition is skipped, never waited for, never cleaned twice at once) while this one produces."""
    config = {"log.cleaner.backoff.ms": 0}
    with pylog.open(log_dir, engine=engine, config=config) as log:
        log.create_topic("t", partitions=2, config={**COMPACTED, "min.cleanable.dirty.ratio": 0.01})
        with subprocess.Popen(
            [sys.executable, "-P", "-c", CLEANING_PROCESS, str(log_dir), engine],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=same_pylog_env(),
            text=True,
        ) as child:
            try:
                assert child.stdout is not None and child.stdin is not None
                assert child.stdout.readline().strip() == "ready"
                child_lines: list[str] = []

                def read_child() -> None:
                    assert child.stdout is not None
                    for line in child.stdout:
                        child_lines.append(line.strip())
                        if line.startswith("cleaned"):
                            cleaner_lines.seen.set()  # the child's cleaner cleaned something

                reader = threading.Thread(target=read_child, daemon=True)
                reader.start()
                pairs = change_log(8, 10)
                for partition in (0, 1):
                    send_all(log, "t", pairs, partition=partition)
                # whichever process's cleaner got there (this one's lines set it too)
                assert cleaner_lines.seen.wait(WAIT_S)
                child.stdin.write("stop\n")
                child.stdin.flush()
                assert child.wait(timeout=120) == 0
                reader.join(timeout=WAIT_S)
                report = child_lines[-1].split()
            finally:
                if child.poll() is None:
                    child.kill()
        assert report[:2] == ["errors", "0"], report
        assert not [m for m in cleaner_lines.messages if "failed" in m]
        expected = table([(0, k, v) for k, v in pairs])
        for partition in (0, 1):
            tp = TopicPartition("t", partition)
            log.compact("t")
            assert table(read_all(log, tp)) == expected
            assert log.describe_topic("t").partitions[partition].uncleanable is None


def test_close_stops_a_background_compaction_at_a_safe_point(engine: str, log_dir: Path) -> None:
    """A map far too small for the keys makes the background compaction many passes long;
    close() during it returns (the stop event is the compaction's cancel), leaves no temporary
    file, loses nothing, and an explicit compact finishes the job later. (Whether close() caught
    the compaction mid-way depends on the machine's speed; what must hold holds either way.)"""
    pairs = [(b"k%05d" % (i % 4000), b"v%d" % i) for i in range(16_000)]
    expected = table([(0, k, v) for k, v in pairs])
    with pylog.open(log_dir, engine=engine, config={"log.cleaner.enable": False}) as log:
        log.create_topic("t", config={"cleanup.policy": "compact", "segment.bytes": 64 << 10})
        with log.producer(linger_ms=5) as producer:
            for key, value in pairs:
                producer.send("t", key=key, value=value)
    passes = LogLines("cleaning pass")
    logger = logging.getLogger("pylog.cleaner")
    logger.addHandler(passes)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        config = {"log.cleaner.backoff.ms": 0, "log.cleaner.dedupe.buffer.size": 16 << 10}
        log = pylog.open(log_dir, engine=engine, config=config)
        try:
            assert passes.seen.wait(WAIT_S), passes.messages  # the first of many passes is done
        finally:
            log.close()
    finally:
        logger.removeHandler(passes)
        logger.setLevel(old_level)
    assert not [m for m in passes.messages if "failed" in m]
    leftovers = [n for n in os.listdir(log_dir / "t-0") if n.endswith((".cleaned", ".swap", ".deleted"))]
    assert leftovers == []
    with pylog.open(log_dir, engine=engine, config={"log.cleaner.enable": False}) as log:
        tp = TopicPartition("t", 0)
        assert table(read_all(log, tp)) == expected
        # None: the explicit call did what close() interrupted; or the background one had finished
        assert log.compact("t")[tp].skipped in (None, "nothing to clean")
        assert table(read_all(log, tp)) == expected
        assert log.describe_topic("t").partitions[0].dirty_ratio == 0.0


@pytest.mark.embedded_only(BROKERS_COMPACT)
def test_compact_some_partitions_leaves_the_others_dirty(log):
    """``Log.compact(topic, partitions=[...])`` cleans only those (the CLI's per-partition
    progress uses it); a partition the topic lacks is refused before anything is compacted."""
    log.create_topic("table", partitions=2, config={"cleanup.policy": "compact", "segment.bytes": 1024})
    with log.producer(acks=1) as producer:
        for i in range(400):
            producer.send("table", key=b"k%d" % (i % 5), value=b"v%d" % i, partition=i % 2)
    with pytest.raises(pylog.errors.UnknownTopicOrPartitionError):
        log.compact("table", partitions=[0, 2])
    assert all(p.clean_offset in (None, 0) for p in log.describe_topic("table").partitions)
    results = log.compact("table", partitions=[1])
    assert [tp.partition for tp in results] == [1]
    assert results[pylog.TopicPartition("table", 1)].segments_cleaned > 0
    clean = {p.partition: p.clean_offset for p in log.describe_topic("table").partitions}
    assert clean[1] and clean[1] > 0
    assert clean[0] in (None, 0)
