"""``poll_columns``: the engine's columns per partition, positions advanced as ``poll`` does."""

from __future__ import annotations

import pytest

from api.test_consumer import (
    DATA_OFFSETS,
    T0,
    T1,
    offsets,
    on_kafka,
    produce,
    transactional_log,
)
from pylog import Columns
from pylog.errors import ClientClosedError, OffsetOutOfRangeError


@pytest.fixture
def topic(log):
    # small segments on the embedded backend (polls across rolls); Kafka's least is 1 MiB
    log.create_topic("t", 2, None if on_kafka(log) else {"segment.bytes": 400})
    return "t"


def columns_rows(columns: Columns) -> list[tuple]:
    return [
        (int(columns.offsets[i]), int(columns.timestamps[i]), columns.key(i), columns.value(i))
        for i in range(columns.num_records)
    ]


def test_poll_columns_matches_poll_record_for_record(log, topic):
    for i in range(20):
        produce(log, T0, [b"v%d" % i, None], keys=[None, b"k%d" % i], timestamps_ms=[1000 + i, 1000 + i])
        produce(log, T1, [b"w%d" % i])
    by_records = log.consumer(auto_offset_reset="earliest", max_poll_records=7)
    by_columns = log.consumer(auto_offset_reset="earliest", max_poll_records=7)
    for c in (by_records, by_columns):
        c.assign([T0, T1])
    rows: dict = {T0: [], T1: []}
    polls = 0
    wait_ms = 1000 if on_kafka(log) else 0  # Kafka's consumer returns what it has fetched
    while fetched := by_columns.poll_columns(timeout_ms=wait_ms):
        polls += 1
        assert all(isinstance(v, Columns) for v in fetched.values())
        assert sum(v.num_records for v in fetched.values()) <= 7
        for tp, cols in fetched.items():
            rows[tp] += columns_rows(cols)
    expected: dict = {T0: [], T1: []}
    while fetched := by_records.poll(timeout_ms=wait_ms):
        for tp, records in fetched.items():
            expected[tp] += [(r.offset, r.timestamp, r.key, r.value) for r in records]
    assert rows == expected and len(rows[T0]) == 40 and polls >= 9
    assert by_columns.position(T0) == by_records.position(T0) == 40
    assert by_columns.poll_columns() == {}
    assert offsets(by_columns.poll()) == {}
    for c in (by_records, by_columns):
        c.close()


@pytest.mark.embedded_only("writes raw transactional batches through the engine")
def test_poll_columns_steps_over_markers_like_poll(log, topic):
    tlog = log._backend.partition_log(T0)
    for batch, _ in transactional_log():
        tlog.append_raw(batch)
    c = log.consumer(auto_offset_reset="earliest", max_poll_records=2)
    c.assign([T0])
    got = []
    while fetched := c.poll_columns():
        got += [int(o) for o in fetched[T0].offsets]
    assert got == DATA_OFFSETS
    assert c.position(T0) == tlog.end_offset
    c.close()


def test_poll_columns_reset_and_errors(log, topic):
    produce(log, T0, [b"a", b"b"])
    c = log.consumer(auto_offset_reset="none")
    c.assign([T0])
    c.seek(T0, 9)
    with pytest.raises(OffsetOutOfRangeError):
        for _ in range(200):  # on Kafka the fetch that reports it comes within a few polls
            c.poll_columns(timeout_ms=50 if on_kafka(log) else 0)
    c.seek(T0, 1)
    assert columns_rows(c.poll_columns(timeout_ms=10_000, max_records=5)[T0])[0][3] == b"b"
    with pytest.raises(ValueError):
        c.poll_columns(max_records=0)
    c.close()
    with pytest.raises(ClientClosedError):
        c.poll_columns()
