"""``pylog.mirror``'s speed target (issue 9, "Speed"): at least 50 MB/s of 100-byte records from a
pylog directory into the local broker, on this 2-core machine; beside it the same copy into
another pylog directory, to tell the destination's share from the mirror's own.

The source (built once per module): topic ``mirror-bench`` (prefixed: the dev broker is shared), 4 partitions of 100-byte random values
without keys or headers (``PYLOG_BENCH_SCALE=full``: 1,000,000 records, 100 MB; smoke: 20,000).
Each round copies it whole into a fresh destination topic; the check: every record written, the
destination's end offsets summing to the count, offsets preserved. MB/s (of keys and values, what
``MirrorResult.bytes`` counts), MB per CPU second of this process and the load average are in
``extra_info``. The broker: tests/kafka_broker.py's
(``PYLOG_KAFKA_BOOTSTRAP``, or one started for this process). Figures:
docs/kafka.md ("Moving data", speed).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FULL

import pylog
from pylog.bench import make_values, settle_page_cache

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import kafka_broker  # tests/kafka_broker.py: the broker of this test process

RECORDS = 1_000_000 if FULL else 20_000
PARTITIONS = 4
CHUNK = 10_000
TOPIC = "mirror-bench"


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("mirror-source"))
    values = make_values(RECORDS)
    with pylog.open(path, config={"log.cleaner.enable": False}) as log:
        log.create_topic(TOPIC, PARTITIONS)
        with log.producer() as producer:
            for i in range(0, RECORDS, CHUNK):
                producer.send_batch(TOPIC, values[i : i + CHUNK], partition=(i // CHUNK) % PARTITIONS)
    return path


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # the broker benchmarks/test_kafka_backend.py and tests/ use (PYLOG_KAFKA_BOOTSTRAP, or one
    # started for this process; skipped without Java/Maven unless PYLOG_REQUIRE_KAFKA=1)
    yield from kafka_broker.session_bootstrap(tmp_path_factory)


def _measure(benchmark, source: str, destination, make_group) -> None:
    results = []

    def setup():
        settle_page_cache()
        return (make_group(),), {}

    def copy(group: str):
        cpu = time.process_time()
        result = pylog.mirror(source, destination(group), [TOPIC], group_id=group)
        results.append((result, time.process_time() - cpu))
        return result

    result = benchmark.pedantic(copy, setup=setup, rounds=3 if FULL else 1)
    assert result.records == RECORDS and result.bytes == RECORDS * 100
    assert result.offsets_preserved
    assert sum(p.destination_end_after for p in result.partitions.values()) == RECORDS
    rates = sorted(r.bytes / r.seconds / 1e6 for r, _ in results)
    per_cpu = sorted(r.bytes / cpu / 1e6 for r, cpu in results)
    benchmark.extra_info["MB/s (median of rounds)"] = round(rates[len(rates) // 2], 1)
    # why also per CPU second of this process (librdkafka's threads included): on a shared
    # 2-core machine wall-clock MB/s swing with the load; this says what one free core would do
    benchmark.extra_info["MB per CPU second (median)"] = round(per_cpu[len(per_cpu) // 2], 1)
    benchmark.extra_info["load average"] = round(os.getloadavg()[0], 1)
    benchmark.extra_info["records"] = RECORDS


def test_mirror_pylog_to_kafka(benchmark, source: str, kafka_bootstrap: str) -> None:
    url = f"kafka://{kafka_bootstrap}"
    made: list[str] = []

    def make_group() -> str:
        name = f"mirror-bench-{uuid.uuid4().hex[:8]}"
        made.append(name)
        with pylog.open(url) as cluster:  # a fresh destination topic: the mirror creates it
            if TOPIC in cluster.list_topics():
                cluster.delete_topic(TOPIC)
        return name

    try:
        _measure(benchmark, source, lambda group: url, make_group)
    finally:
        with pylog.open(url) as cluster:
            if TOPIC in cluster.list_topics():
                cluster.delete_topic(TOPIC)
        with pylog.open(source) as log:
            for group in made:
                if group in log.list_groups():
                    log.delete_group(group)


def test_mirror_pylog_to_pylog(benchmark, source: str, tmp_path) -> None:
    _measure(
        benchmark,
        source,
        lambda group: str(tmp_path / group),
        lambda: f"to-dir-{uuid.uuid4().hex[:8]}",
    )
