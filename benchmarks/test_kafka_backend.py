"""The kafka backend against confluent-kafka used directly, on the same local broker (issue 9, "Speed").

Target: the backend's producer and consumer reach at least 2/3 of the records/s of
confluent-kafka used directly on the same workload.

- produce: 100-byte values with 16-byte keys to a 6-partition topic, delivery confirmed for every
  record, then a flush. pylog: ``producer.send(topic, value, key)`` keeping every future, then
  ``flush()`` (each future then reports success). Direct: ``confluent_kafka.Producer.produce(topic,
  value, key, on_delivery=...)`` (``poll`` only when librdkafka's queue is full), then ``flush()``;
  the callback counts the deliveries. Both producers get the very librdkafka properties the
  backend derives from ``acks=1, linger_ms=5`` (settings.producer_properties), so what differs is
  the adapter alone.
- consume: the same records, each with one header, read from the beginning of all six partitions
  by a consumer assigned to them (no group commits), every record's key, value, offset, timestamp
  and headers read. pylog: ``consumer.poll()`` (ConsumerRecords); direct:
  ``confluent_kafka.Consumer.consume(500)`` (librdkafka's default fetch settings) and the
  ``Message`` accessors.

``test_*_interleaved`` alternate the contenders run by run (the order swapped every round) in one
process and report medians and the ratio, per wall-clock second and per CPU second of the process
(librdkafka's threads included): on this shared 2-vCPU machine separate runs swing too much to
compare. The per-contender tests are plain pytest-benchmark runs. Each run checks its result
(counts, end offsets, every record's fields). CI runs them once each with ``--benchmark-disable``
at smoke size; figures: ``PYLOG_BENCH_SCALE=full`` (benchmarks/README.md, "kafka backend").
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import FULL

import pylog
from pylog.bench import make_values
from pylog.types import TopicPartition

sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))
import kafka_broker  # tests/kafka_broker.py: the broker of this test process

confluent_kafka = pytest.importorskip("confluent_kafka")

PRODUCE_RECORDS = 200_000 if FULL else 2_000
CONSUME_RECORDS = 500_000 if FULL else 2_000
ROUNDS = 5 if FULL else 1
PARTITIONS = 6
KEY_BYTES = 16
HEADERS = [("h", b"header-value")]
PRODUCER_SETTINGS = {"acks": 1, "linger_ms": 5}
TIMEOUT_S = 120.0


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # the same broker as tests/conftest.py's fixture when one process runs both directories
    yield from kafka_broker.session_bootstrap(tmp_path_factory)


@pytest.fixture(scope="module")
def log(kafka_bootstrap: str) -> Iterator[pylog.Log]:
    cleaner = kafka_broker.Cleaner(kafka_bootstrap)
    before = cleaner.snapshot()
    try:
        with pylog.open(f"kafka://{kafka_bootstrap}") as opened:
            yield opened
    finally:
        cleaner.clean(before)


@pytest.fixture(scope="module")
def records() -> tuple[list[bytes], list[bytes]]:
    count = max(PRODUCE_RECORDS, CONSUME_RECORDS)
    return make_values(count), [b"key-%012d" % i for i in range(count)]


def new_topic(log: pylog.Log, what: str) -> str:
    name = f"bench-{what}-{uuid.uuid4().hex[:8]}"
    log.create_topic(name, partitions=PARTITIONS)
    return name


def direct_producer_properties(log: pylog.Log) -> dict:
    """The librdkafka properties the backend's producer gets for PRODUCER_SETTINGS."""
    from pylog.kafka import settings
    from pylog.producer import ProducerConfig

    properties = dict(log.backend.properties)
    properties.update(settings.producer_properties(ProducerConfig.from_kwargs(dict(PRODUCER_SETTINGS))))
    return properties


def end_offsets(log: pylog.Log, topic: str) -> list[int]:
    """Each partition's end offset, asked with confluent_kafka itself (not the code measured)."""
    consumer = confluent_kafka.Consumer({**log.backend.properties, "group.id": "bench-watermarks"})
    try:
        return [
            consumer.get_watermark_offsets(confluent_kafka.TopicPartition(topic, p), TIMEOUT_S)[1]
            for p in range(PARTITIONS)
        ]
    finally:
        consumer.close()


# --- producing -------------------------------------------------------------------------------------


def produce_with_pylog(log: pylog.Log, topic: str, values: list[bytes], keys: list[bytes]) -> Callable:
    """A run: send every record keeping its future, flush; returns a check of the futures."""
    producer = log.producer(**PRODUCER_SETTINGS)

    def run() -> Callable[[], None]:
        send = producer.send
        futures = [send(topic, v, k) for v, k in zip(values, keys, strict=True)]
        producer.flush()

        def check() -> None:
            assert all(f.succeeded() for f in futures), [f.exception for f in futures if f.failed()][:3]

        return check

    run.close = producer.close  # type: ignore[attr-defined]
    return run


def produce_direct(properties: dict, topic: str, values: list[bytes], keys: list[bytes]) -> Callable:
    """A run: confluent_kafka's produce with a delivery callback per record, flush."""
    producer = confluent_kafka.Producer(properties)

    def run() -> Callable[[], None]:
        delivered: list[int] = [0]
        failed: list = []

        def on_delivery(err, msg) -> None:
            if err is None:
                delivered[0] += 1
            else:
                failed.append(err)

        produce, poll = producer.produce, producer.poll
        for v, k in zip(values, keys, strict=True):
            while True:
                try:
                    produce(topic, v, k, -1, on_delivery)
                    break
                except BufferError:  # librdkafka's queue is full: serve reports, then again
                    poll(0.05)
        left = producer.flush(TIMEOUT_S)

        def check() -> None:
            assert left == 0 and not failed and delivered[0] == len(values), (left, failed[:3], delivered)

        return check

    run.close = lambda: producer.flush(TIMEOUT_S)  # type: ignore[attr-defined]
    return run


def producer_run(log: pylog.Log, topic: str, records, contender: str) -> Callable:
    values, keys = (column[:PRODUCE_RECORDS] for column in records)
    if contender == "pylog":
        return produce_with_pylog(log, topic, values, keys)
    return produce_direct(direct_producer_properties(log), topic, values, keys)


@pytest.mark.parametrize("contender", ["pylog", "confluent"])
def test_produce(benchmark, log, records, contender):
    topic = new_topic(log, "produce")
    run = producer_run(log, topic, records, contender)
    try:
        checks = []
        benchmark.pedantic(lambda: checks.append(run()), rounds=ROUNDS, iterations=1)
    finally:
        run.close()
    for check in checks:
        check()
    assert sum(end_offsets(log, topic)) == PRODUCE_RECORDS * len(checks)


# --- consuming -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def filled_topic(log: pylog.Log, records) -> tuple[str, int]:
    """CONSUME_RECORDS keyed records with one header each, written with confluent_kafka directly."""
    topic = new_topic(log, "consume")
    values, keys = records
    producer = confluent_kafka.Producer(direct_producer_properties(log))
    for v, k in zip(values[:CONSUME_RECORDS], keys[:CONSUME_RECORDS], strict=True):
        while True:
            try:
                producer.produce(topic, v, k, headers=HEADERS)
                break
            except BufferError:  # librdkafka's queue is full: let it drain
                producer.poll(0.05)
    assert producer.flush(TIMEOUT_S) == 0
    ends = end_offsets(log, topic)
    assert sum(ends) == CONSUME_RECORDS
    # a run that reads every partition's offsets 0..end-1 once sums its offsets to this
    return topic, sum(end * (end - 1) // 2 for end in ends)


class Tally:
    """What a consume run read: records, key+value bytes, the sum of offsets, headers, timestamps."""

    def __init__(self, count: int, payload: int, offsets: int, headers: int, latest_timestamp: int) -> None:
        self.count, self.payload, self.offsets = count, payload, offsets
        self.headers, self.latest_timestamp = headers, latest_timestamp

    def check(self, records: tuple[list[bytes], list[bytes]], offsets_sum: int) -> None:
        values, keys = (column[:CONSUME_RECORDS] for column in records)
        assert self.count == CONSUME_RECORDS
        assert self.payload == sum(map(len, values)) + sum(map(len, keys))
        assert self.offsets == offsets_sum  # with the count: every offset of every partition once
        assert self.headers == CONSUME_RECORDS
        assert self.latest_timestamp > 0


def consume_with_pylog(log: pylog.Log, topic: str) -> Tally:
    consumer = log.consumer(auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        deadline = time.monotonic() + TIMEOUT_S
        count = payload = offsets = headers = latest = 0
        while count < CONSUME_RECORDS:
            assert time.monotonic() < deadline, f"pylog consumer read {count} of {CONSUME_RECORDS}"
            for batch in consumer.poll(timeout_ms=1000).values():
                for r in batch:
                    payload += len(r.key) + len(r.value)
                    offsets += r.offset
                    headers += len(r.headers)
                    if r.timestamp > latest:
                        latest = r.timestamp
                count += len(batch)
    finally:
        consumer.close()
    return Tally(count, payload, offsets, headers, latest)


def consume_direct(log: pylog.Log, topic: str) -> Tally:
    properties = dict(log.backend.properties)
    properties.update({"group.id": f"bench-direct-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False})
    consumer = confluent_kafka.Consumer(properties)
    try:
        consumer.assign(
            [
                confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                for p in range(PARTITIONS)
            ]
        )
        deadline = time.monotonic() + TIMEOUT_S
        count = payload = offsets = headers = latest = 0
        consume = consumer.consume
        while count < CONSUME_RECORDS:
            assert time.monotonic() < deadline, f"confluent consumer read {count} of {CONSUME_RECORDS}"
            messages = consume(500, 1.0)
            for m in messages:
                if m.error() is not None:
                    raise confluent_kafka.KafkaException(m.error())
                payload += len(m.key()) + len(m.value())
                offsets += m.offset()
                headers += len(m.headers())
                _, timestamp = m.timestamp()
                if timestamp > latest:
                    latest = timestamp
            count += len(messages)
    finally:
        consumer.close()
    return Tally(count, payload, offsets, headers, latest)


CONSUMERS = {"pylog": consume_with_pylog, "confluent": consume_direct}


def consumer_run(log: pylog.Log, records, filled_topic, contender: str) -> Callable[[], Callable[[], None]]:
    """A run: one consume of the whole topic; returns the check of what it read."""
    topic, offsets_sum = filled_topic

    def run() -> Callable[[], None]:
        tally = CONSUMERS[contender](log, topic)
        return lambda: tally.check(records, offsets_sum)

    return run


@pytest.mark.parametrize("contender", ["pylog", "confluent"])
def test_consume(benchmark, log, records, filled_topic, contender):
    run = consumer_run(log, records, filled_topic, contender)
    checks = []
    benchmark.pedantic(lambda: checks.append(run()), rounds=ROUNDS, iterations=1)
    assert len(checks) == ROUNDS
    for check in checks:
        check()


# --- interleaved: the ratio ------------------------------------------------------------------------


def interleaved(
    runs: dict[str, Callable[[], Callable[[], None]]], records_per_run: int
) -> dict[str, tuple[float, float]]:
    """Median (records/s, records per CPU-s) per contender, the order swapped every round; then
    every run's check (outside the timing)."""
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    names = list(runs)
    checks = []
    for round_ in range(ROUNDS):
        for name in names if round_ % 2 == 0 else names[::-1]:
            wall, cpu = time.perf_counter(), time.process_time()
            checks.append(runs[name]())
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rates[name].append((records_per_run / wall, records_per_run / max(cpu, 1e-9)))
    for check in checks:
        check()
    return {
        name: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r))
        for name, r in rates.items()
    }


def report(what: str, rates: dict[str, tuple[float, float]], record_property) -> None:
    (pylog_wall, pylog_cpu), (direct_wall, direct_cpu) = rates["pylog"], rates["confluent"]
    record_property(f"{what}_records_per_s", rates)
    print(
        f"\n{what}: pylog {pylog_wall / 1e3:.0f} k rec/s ({pylog_cpu / 1e3:.0f} k per CPU-s), "
        f"confluent direct {direct_wall / 1e3:.0f} k rec/s ({direct_cpu / 1e3:.0f} k per CPU-s), "
        f"ratio {pylog_wall / direct_wall:.2f} ({pylog_cpu / direct_cpu:.2f} per CPU-s); target >= 0.67"
    )


def test_produce_interleaved(log, records, record_property):
    topic = new_topic(log, "produce-interleaved")
    runs = {name: producer_run(log, topic, records, name) for name in ("pylog", "confluent")}
    try:
        rates = interleaved(runs, PRODUCE_RECORDS)
    finally:
        for run in runs.values():
            run.close()
    assert sum(end_offsets(log, topic)) == PRODUCE_RECORDS * ROUNDS * 2
    report("produce", rates, record_property)


def test_consume_interleaved(log, records, filled_topic, record_property):
    runs = {name: consumer_run(log, records, filled_topic, name) for name in CONSUMERS}
    rates = interleaved(runs, CONSUME_RECORDS)
    report("consume", rates, record_property)
