"""Reads: records() iteration, read_columns() payload rate, random read(offset, 1) lookups."""

from __future__ import annotations

import random

import pytest

from pylog.bench import BATCH_RECORDS, VALUE_BYTES, fill_log, make_values
from pylog.engine import open_partition


@pytest.fixture(scope="module")
def read_log(tmp_path_factory, scale) -> tuple[str, int]:
    path = str(tmp_path_factory.mktemp("reads") / "log-0")
    batches = max(scale.iterate_records_reference, 20_000) // BATCH_RECORDS
    end = fill_log(path, batches, BATCH_RECORDS, make_values(BATCH_RECORDS), **{"segment.bytes": 1 << 20})
    return path, end


@pytest.fixture(scope="module")
def random_log(tmp_path_factory, scale) -> tuple[str, int]:
    path = str(tmp_path_factory.mktemp("random") / "log-0")
    end = fill_log(path, scale.random_log_batches, 10, make_values(10))
    return path, end


def test_records_iteration(benchmark, engine, read_log):
    path, end = read_log
    with open_partition(path, engine=engine) as log:

        def iterate():
            count = 0
            for record in log.records():
                count += 1
                last = record
            return count, last

        count, last = benchmark(iterate)
    assert count == end
    assert last.offset == end - 1 and len(last.value) == VALUE_BYTES


def test_read_columns(benchmark, engine, read_log):
    path, end = read_log
    with open_partition(path, engine=engine) as log:

        def scan():
            offset, payload = 0, 0
            while offset < end:
                cols = log.read_columns(offset, 100_000)
                payload += int(cols.value_offsets[-1])
                offset = int(cols.offsets[-1]) + 1
            return offset, payload

        offset, payload = benchmark(scan)
    assert offset == end and payload == end * VALUE_BYTES


def test_random_reads(benchmark, engine, random_log, scale):
    path, end = random_log
    rng = random.Random(3)
    targets = [rng.randrange(end) for _ in range(min(scale.random_reads_reference, 2_000))]
    with open_partition(path, engine=engine) as log:

        def lookups():
            hits = 0
            for offset in targets:
                buf = memoryview(log.read(offset, 1))
                base = int.from_bytes(buf[0:8], "big")
                hits += base <= offset <= base + int.from_bytes(buf[23:27], "big")
            return hits

        assert benchmark(lookups) == len(targets)
