"""The consumer: poll() building ConsumerRecords, poll_columns() payload rate, end-to-end latency.

Targets (issue 6, "Speed"; 100-byte values, page cache):
- ``poll()`` producing ``ConsumerRecord``s: >= 3 M records/s and >= 3x the reference engine;
- ``poll_columns()``: >= 1 GB/s of payload;
- end-to-end latency, ``send()`` + ``flush()`` to a tailing consumer's ``poll()`` returning the
  record: one process p50 <= 50 us, p99 <= 500 us; two
  processes p50 <= 200 us, p99 <= 2 ms.

Each benchmark checks its result (every record seen once, in order). The ``interleaved`` tests
alternate the contenders round by round in one process and record medians in ``extra_info``
(the page cache makes separate runs swing; CONVENTIONS). Figures: benchmarks/README.md, end.

The rate benchmarks fill the log through the engine's ``append`` (the producer's own speed is
benchmarks/test_bench_producer.py's); the latency benchmarks produce with ``pylog.Producer``
(``send()`` + ``flush()``, the target's path) and, to show the consumer's share alone, with the
engine's ``append``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import pylog
from pylog import TopicPartition
from pylog.bench import BATCH_RECORDS, VALUE_BYTES, make_values, percentile
from pylog.bench_processes import same_pylog_env

TP = TopicPartition("bench", 0)
#: records per poll in the rate benchmarks (Kafka's default of 500 measures the per-poll
#: overhead, not the record path; a throughput consumer raises max_poll_records)
POLL_RECORDS = 10_000
REPO = Path(__file__).resolve().parents[1]


def filled(path: Path, records: int) -> int:
    with pylog.open(path, engine="native") as log:
        log.create_topic("bench", 1, {"segment.bytes": 64 << 20})
        handle = log._backend.partition_log(TP)
        values = make_values(BATCH_RECORDS)
        while handle.end_offset < records:
            handle.append(values)
        return handle.end_offset


@pytest.fixture(scope="module")
def consume_dir(tmp_path_factory, scale) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("consume") / "log"
    return path, filled(path, max(scale.iterate_records_native, scale.columns_records_native))


def drain_records(consumer, limit: int) -> tuple[int, int]:
    """Poll from the beginning until ``limit`` records; (count, last offset)."""
    consumer.seek(TP, 0)
    count, last = 0, -1
    while count < limit:
        fetched = consumer.poll(max_records=min(POLL_RECORDS, limit - count))
        records = fetched[TP]
        assert records[0].offset == last + 1
        count += len(records)
        last = records[-1].offset
    return count, last


def drain_columns(consumer, limit: int) -> tuple[int, int]:
    """poll_columns from the beginning until ``limit`` records; (count, payload bytes)."""
    consumer.seek(TP, 0)
    count, payload = 0, 0
    while count < limit:
        cols = consumer.poll_columns(max_records=min(100_000, limit - count))[TP]
        assert int(cols.offsets[0]) == count
        count += cols.num_records
        payload += int(cols.value_offsets[-1])
    return count, payload


def open_consumer(path: Path, engine: str):
    log = pylog.open(path, engine=engine)
    consumer = log.consumer(auto_offset_reset="earliest", max_poll_records=POLL_RECORDS)
    consumer.assign([TP])
    return log, consumer


def test_poll_records(benchmark, engine, consume_dir, scale):
    path, end = consume_dir
    limit = min(end, scale.iterate_records_native if engine == "native" else scale.iterate_records_reference)
    log, consumer = open_consumer(path, engine)
    try:
        count, last = benchmark(drain_records, consumer, limit)
        assert (count, last) == (limit, limit - 1)
        benchmark.extra_info["records"] = count
    finally:
        consumer.close()
        log.close()


def test_poll_columns(benchmark, engine, consume_dir, scale):
    path, end = consume_dir
    limit = min(end, scale.columns_records_native if engine == "native" else scale.columns_records_reference)
    log, consumer = open_consumer(path, engine)
    try:
        count, payload = benchmark(drain_columns, consumer, limit)
        assert (count, payload) == (limit, limit * VALUE_BYTES)
        benchmark.extra_info["payload_bytes"] = payload
    finally:
        consumer.close()
        log.close()


def interleaved_rates(
    path: Path, drain, limits: dict[str, int], rounds: int
) -> dict[str, tuple[float, float]]:
    """Median amount/s of ``drain`` per engine, the engines alternating round by round: (per
    wall-clock second, per second of this process's CPU time). why both: on a shared machine
    the wall-clock rate also counts the time spent waiting for a core; the CPU-time rate is
    what the work itself costs (it still suffers the shared caches)."""
    opened = {engine: open_consumer(path, engine) for engine in limits}
    rates: dict[str, list[tuple[float, float]]] = {engine: [] for engine in limits}
    try:
        for _ in range(rounds):
            for engine, (_, consumer) in opened.items():
                wall, cpu = time.perf_counter(), time.process_time()
                count, amount = drain(consumer, limits[engine])
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                assert count == limits[engine]
                done = count if drain is drain_records else amount
                rates[engine].append((done / wall, done / max(cpu, 1e-9)))
    finally:
        for log, consumer in opened.values():
            consumer.close()
            log.close()
    return {
        engine: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r))
        for engine, r in rates.items()
    }


def engine_records_rate(path: Path, limit: int, rounds: int) -> float:
    """The native engine's own ``records_chunk`` (6-field ``Record``s, no consumer) per CPU-s:
    the floor the consumer's record path is compared with."""
    with pylog.open(path, engine="native") as log:
        handle = log._backend.partition_log(TP)
        rates = []
        for _ in range(rounds):
            cpu, position = time.process_time(), 0
            while position < limit:
                _, position = handle.records_chunk(position, min(position + POLL_RECORDS, limit), 1 << 20)
            rates.append(limit / max(time.process_time() - cpu, 1e-9))
        return statistics.median(rates)


def test_poll_rate_native_vs_reference_interleaved(consume_dir, scale, record_property):
    path, end = consume_dir
    limits = {
        "native": min(end, scale.iterate_records_native),
        "reference": min(end, scale.iterate_records_reference),
    }
    rates = interleaved_rates(path, drain_records, limits, scale.repeat)
    record_property("poll_records_per_s", rates)
    (native, native_cpu), (reference, reference_cpu) = rates["native"], rates["reference"]
    print(
        f"\npoll() ConsumerRecords: native {native / 1e6:.2f} M rec/s ({native_cpu / 1e6:.2f} per CPU-s), "
        f"reference {reference / 1e6:.3f} M rec/s ({reference_cpu / 1e6:.3f} per CPU-s), "
        f"ratio {native / reference:.1f}x ({native_cpu / reference_cpu:.1f}x)"
    )
    engine_cpu = engine_records_rate(path, limits["native"], scale.repeat)
    print(f"the engine's records_chunk (Record, no consumer): {engine_cpu / 1e6:.2f} M rec/s per CPU-s")
    assert native > reference


def test_poll_columns_rate_interleaved(consume_dir, scale, record_property):
    path, end = consume_dir
    limits = {"native": min(end, scale.columns_records_native)}
    rates = interleaved_rates(path, drain_columns, limits, scale.repeat)
    record_property("poll_columns_bytes_per_s", rates)
    wall, cpu = rates["native"]
    print(f"\npoll_columns(): native {wall / 1e9:.2f} GB/s of payload ({cpu / 1e9:.2f} per CPU-s)")


# ---------------------------------------------------------------------------------------------
# end-to-end latency


class Sender:
    """One record to partition 0 of ``lat``: ``send()`` + ``flush()`` (acks=1: no fsync, the
    targets are for the page cache), or the engine's ``append`` (the consumer's share alone)."""

    def __init__(self, log: pylog.Log, via: str):
        self.value = b"x" * VALUE_BYTES
        self.producer = log.producer(acks=1) if via == "producer" else None
        self.handle = log._backend.partition_log(TopicPartition("lat", 0))

    def __call__(self) -> None:
        if self.producer is None:
            self.handle.append([self.value])
        else:
            self.producer.send("lat", self.value, partition=0)
            self.producer.flush()

    def close(self) -> None:
        if self.producer is not None:
            self.producer.close()


def one_process_latencies(path: Path, engine: str, rounds: int, via: str) -> list[int]:
    """send() + flush() one record, then the tailing consumer (another thread) returns it from
    poll: ns."""
    with pylog.open(path, engine=engine) as log:
        log.create_topic("lat", 1)
        tp = TopicPartition("lat", 0)
        send = Sender(log, via)
        consumer = log.consumer(auto_offset_reset="latest")
        consumer.assign([tp])
        consumer.poll()
        returned: list[int] = []
        got = threading.Event()
        stop = False

        def tail():
            expected = 0
            while not stop:
                fetched = consumer.poll(timeout_ms=1000)
                if fetched:
                    now = time.perf_counter_ns()
                    records = fetched[tp]
                    assert [r.offset for r in records] == [expected]
                    expected += 1
                    returned.append(now)
                    got.set()

        thread = threading.Thread(target=tail)
        thread.start()
        sent: list[int] = []
        try:
            for _ in range(rounds):
                got.clear()
                sent.append(time.perf_counter_ns())
                send()
                assert got.wait(10)
        finally:
            stop = True
            thread.join(5)
            consumer.close()
            send.close()
        return [b - a for a, b in zip(sent, returned, strict=True)]


CHILD = """
import sys, time, pylog
from pylog import TopicPartition
tp = TopicPartition("lat", 0)
with pylog.open(sys.argv[1], engine=sys.argv[2]) as log:
    consumer = log.consumer(auto_offset_reset="latest")
    consumer.assign([tp])
    consumer.poll()
    rounds = int(sys.argv[3])
    print("ready", flush=True)
    stamps = []
    expected = consumer.position(tp)
    while len(stamps) < rounds:
        fetched = consumer.poll(timeout_ms=1000)
        if fetched:
            stamps.append(time.perf_counter_ns())
            assert [r.offset for r in fetched[tp]] == [expected], fetched
            expected += 1
            print("got", flush=True)
    print(" ".join(map(str, stamps)), flush=True)
    consumer.close()
"""


def two_process_latencies(path: Path, engine: str, rounds: int, via: str) -> list[int]:
    """send() + flush() here; a consumer in a child process returns it from poll: ns
    (CLOCK_MONOTONIC is one clock for every process of the host)."""
    with pylog.open(path, engine=engine) as log:
        log.create_topic("lat", 1)
        send = Sender(log, via)
        env = same_pylog_env()
        sent: list[int] = []
        with subprocess.Popen(
            [sys.executable, "-P", "-c", CHILD, str(path), engine, str(rounds)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        ) as child:
            try:
                assert child.stdout is not None
                assert child.stdout.readline().strip() == "ready"
                for _ in range(rounds):
                    sent.append(time.perf_counter_ns())
                    send()
                    assert child.stdout.readline().strip() == "got"
                returned = list(map(int, child.stdout.readline().split()))
                assert child.wait(30) == 0
            finally:
                if child.poll() is None:
                    child.kill()
                send.close()
        return [b - a for a, b in zip(sent, returned, strict=True)]


def summary(latencies: list[int]) -> dict[str, float]:
    return {
        "p50_us": percentile(latencies, 0.5) / 1000,
        "p99_us": percentile(latencies, 0.99) / 1000,
        "max_us": max(latencies) / 1000,
    }


@pytest.mark.parametrize("via", ["producer", "append"])
@pytest.mark.parametrize("processes", [1, 2])
def test_end_to_end_latency(tmp_path, engine, scale, processes, via, record_property):
    rounds = max(scale.wakeup_rounds * 10, 50)
    measure = one_process_latencies if processes == 1 else two_process_latencies
    latencies = measure(tmp_path / "log", engine, rounds, via)
    assert len(latencies) == rounds and all(v > 0 for v in latencies)
    figures = summary(latencies)
    record_property(f"latency_{processes}p_{via}_{engine}", figures)
    print(f"\nend-to-end latency via {via}, {processes} process(es), {engine}: {figures}")


def test_poll_rate_by_poll_size_interleaved(consume_dir, scale, record_property):
    """Kafka's default max_poll_records=500 against 10,000-record polls (the per-poll cost)."""
    path, end = consume_dir
    limit = min(end, scale.iterate_records_native)
    log, consumer = open_consumer(path, "native")
    rates: dict[int, list[float]] = {500: [], POLL_RECORDS: []}
    try:
        for _ in range(scale.repeat):
            for size in rates:
                consumer.seek(TP, 0)
                count, cpu = 0, time.process_time()
                while count < limit:
                    records = consumer.poll(max_records=min(size, limit - count))[TP]
                    assert records[0].offset == count
                    count += len(records)
                rates[size].append(count / max(time.process_time() - cpu, 1e-9))
    finally:
        consumer.close()
        log.close()
    medians = {size: statistics.median(r) for size, r in rates.items()}
    record_property("poll_records_per_cpu_s_by_poll_size", medians)
    print(
        f"\npoll() per CPU-s: max_records=500 {medians[500] / 1e6:.2f} M rec/s, "
        f"{POLL_RECORDS} {medians[POLL_RECORDS] / 1e6:.2f} M rec/s"
    )
