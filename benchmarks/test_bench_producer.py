"""The producer's speed targets (issue 6, "Speed"), each contender in the same run:

- per-record ``send()`` (keeping every future) + one ``flush()``, 100-byte values, acks=1: without
  keys to one partition, and with 16-byte keys over 6 partitions, with ``linger_ms`` 0
  (kafka-python's default) and 5 (Kafka 4.0's, KIP-1030); against sqlite3
  ``executemany`` of the same rows (WAL, 10,000-row transactions);
- ``send_batch()`` of 1,000-record lists against the engine's bulk ``append`` of the same lists;
- ``acks="all"``: 1 thread and 8 threads each doing ``send().get()`` (a durable write each), so
  group commit is what lets 8 threads go faster.

Each test checks what it wrote. Figures: benchmarks/README.md ("Producer").
"""

from __future__ import annotations

import sqlite3
import threading

import pytest
from conftest import FULL

import pylog
from pylog.bench import make_values, settle_page_cache
from pylog.engine import open_partition
from pylog.types import TopicPartition

RECORDS = 1_000_000 if FULL else 20_000
BATCH = 1_000
DURABLE_PER_THREAD = 100 if FULL else 20


@pytest.fixture(scope="module")
def values() -> list[bytes]:
    return make_values(RECORDS)


@pytest.fixture(scope="module")
def keys() -> list[bytes]:
    return [b"key-%012d" % i for i in range(RECORDS)]


def _records(engine: str) -> int:
    return RECORDS if engine == "native" else RECORDS // 10


def _fresh_log(tmp_path, runs, engine):
    log = pylog.open(tmp_path / f"log-{next(runs)}", engine=engine)
    log.create_topic("six", partitions=6)
    log.create_topic("one")
    for topic, partitions in (("six", 6), ("one", 1)):  # open the partitions outside the timing
        for p in range(partitions):
            log._backend.partition_log(TopicPartition(topic, p))
    settle_page_cache()
    return log


def _end_offsets(log: pylog.Log, topic: str, partitions: int) -> int:
    return sum(log._backend.partition_log(TopicPartition(topic, p)).end_offset for p in range(partitions))


@pytest.mark.parametrize("linger_ms", [0, 5], ids=["linger0", "linger5"])
@pytest.mark.parametrize("keyed", [False, True], ids=["no-keys", "keys-6-partitions"])
def test_send_then_flush(benchmark, engine, tmp_path, values, keys, keyed, linger_ms):
    n = _records(engine)
    runs = iter(range(1_000_000))
    opened = []

    def setup():
        log = _fresh_log(tmp_path, runs, engine)
        opened.append(log)
        return (log.producer(acks=1, linger_ms=linger_ms),), {}

    def produce(producer):
        send = producer.send
        if keyed:
            futures = [send("six", v, k) for v, k in zip(values[:n], keys[:n], strict=True)]
        else:
            futures = [send("one", v) for v in values[:n]]
        producer.flush()
        return futures

    try:
        futures = benchmark.pedantic(produce, setup=setup, rounds=3)
        assert futures[-1].get(timeout=0).offset >= 0
        assert _end_offsets(opened[-1], "six" if keyed else "one", 6 if keyed else 1) == n
    finally:
        for log in opened:
            log.close()
    benchmark.extra_info["records"] = n


def test_sqlite_executemany_baseline(benchmark, tmp_path, values, keys):
    """The same rows as ``test_send_then_flush[native-keys-6-partitions]`` into sqlite3."""
    runs = iter(range(1_000_000))
    rows = [(i % 6, k, v) for i, (k, v) in enumerate(zip(keys, values, strict=True))]

    def setup():
        db = sqlite3.connect(tmp_path / f"db-{next(runs)}.sqlite", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE records (partition INTEGER, key BLOB, value BLOB)")
        return (db,), {}

    def insert(db):
        for start in range(0, len(rows), 10_000):
            db.execute("BEGIN")
            db.executemany("INSERT INTO records VALUES (?, ?, ?)", rows[start : start + 10_000])
            db.execute("COMMIT")
        return db.execute("SELECT count(*) FROM records").fetchone()[0]

    assert benchmark.pedantic(insert, setup=setup, rounds=3) == RECORDS
    benchmark.extra_info["records"] = RECORDS


def test_send_batch(benchmark, engine, tmp_path, values):
    n = _records(engine)
    runs = iter(range(1_000_000))
    opened = []

    def setup():
        log = _fresh_log(tmp_path, runs, engine)
        opened.append(log)
        return (log.producer(acks=1),), {}

    def produce(producer):
        futures = [producer.send_batch("one", values[i : i + BATCH], partition=0) for i in range(0, n, BATCH)]
        producer.flush()
        return futures

    try:
        futures = benchmark.pedantic(produce, setup=setup, rounds=3)
        assert futures[-1].get(timeout=0)[0].base_offset == n - BATCH
    finally:
        for log in opened:
            log.close()
    benchmark.extra_info["records"] = n


def test_engine_bulk_append(benchmark, engine, tmp_path, values):
    """The engine's own ``append`` of the same 1,000-record lists (what send_batch is held to)."""
    n = _records(engine)
    runs = iter(range(1_000_000))
    opened = []

    def setup():
        log = open_partition(tmp_path / f"raw-{next(runs)}" / "one-0", engine=engine)
        opened.append(log)
        settle_page_cache()
        return (log,), {}

    def append_all(log):
        for i in range(0, n, BATCH):
            log.append(values[i : i + BATCH])
        return log.end_offset

    try:
        assert benchmark.pedantic(append_all, setup=setup, rounds=3) == n
    finally:
        for log in opened:
            log.close()
    benchmark.extra_info["records"] = n


@pytest.mark.parametrize("threads", [1, 8])
def test_acks_all_threads(benchmark, engine, tmp_path, threads):
    runs = iter(range(1_000_000))
    opened = []
    per_thread = DURABLE_PER_THREAD * 8 // threads  # the same records in total

    def setup():
        log = _fresh_log(tmp_path, runs, engine)
        opened.append(log)
        return (log.producer(acks="all"),), {}

    def produce(producer):
        barrier = threading.Barrier(threads)

        def work():
            barrier.wait()
            for _ in range(per_thread):
                producer.send("one", b"x" * 100).get(timeout=60)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return producer

    try:
        benchmark.pedantic(produce, setup=setup, rounds=3)
        assert _end_offsets(opened[-1], "one", 1) == per_thread * threads
    finally:
        for log in opened:
            log.close()
    benchmark.extra_info["records"] = per_thread * threads
