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

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from pylog.broker_config import BrokerConfig
from pylog.config import LogConfig
from pylog.embedded.cleaner import RETENTION_INITIAL_DELAY_MS, Cleaner
from pylog.errors import ClientClosedError, UnknownTopicOrPartitionError
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

    def apply_retention(self, now_ms: int | None = None) -> RetentionResult:
        self.calls.append(("retention", self.tp, {"now_ms": now_ms}))
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
        assert kwargs["cancel"] is cleaner._stop


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
    assert source.calls[-1][2] == {"now_ms": clock.now}
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
