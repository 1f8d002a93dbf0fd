"""The two producer cores agree: the Rust accumulator (native engine) and the pure-Python core
(the reference engine's, and the oracle) give the same partitions, offsets and batch cuts for
the same sends. Runs on the native engine only: the Rust core exists only there. No kafka param:
both cores are the embedded backend's (the kafka backend's one core, over librdkafka, is tested in
tests/kafka_backend/test_producer_kafka.py and by tests/api/test_producer.py's kafka param)."""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import pytest

import pylog
from pylog._native import RecordFuture
from pylog.future import FutureRecordMetadata
from pylog.types import TopicPartition


def _sends(seed: int, n: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = rng.random()
        send: dict[str, Any] = {
            "value": rng.randbytes(rng.randrange(0, 300)) if rng.random() > 0.05 else None
        }
        if kind < 0.4:
            send["key"] = rng.randbytes(rng.randrange(0, 24))
        elif kind < 0.5:
            send["partition"] = rng.randrange(5)
        if rng.random() < 0.2:
            send["headers"] = [(f"h{j}", rng.randbytes(3) if j else None) for j in range(rng.randrange(1, 3))]
        if rng.random() < 0.3:
            send["timestamp_ms"] = 1_700_000_000_000 + i
        out.append(send)
    return out


def _run(path: Path, python_core: bool, sends: list[dict[str, Any]], **config: Any):
    with pylog.open(path, engine="native") as log:
        log.create_topic("t", partitions=5)
        with log.producer(acks=1, python_core=python_core, linger_ms=60_000, **config) as producer:
            futures = [producer.send("t", **s) for s in sends]
            producer.flush()
            expected_type = FutureRecordMetadata if python_core else RecordFuture
            assert all(type(f) is expected_type for f in futures)
            metas = [f.get(timeout=0) for f in futures]
        batches = {}
        for p in range(5):
            plog = log._backend.partition_log(TopicPartition("t", p))
            data = bytes(plog.read(0, 1 << 26)) if plog.end_offset else b""
            counts, pos = [], 0
            while pos < len(data):
                counts.append(int.from_bytes(data[pos + 57 : pos + 61], "big"))
                pos += 12 + int.from_bytes(data[pos + 8 : pos + 12], "big")
            batches[p] = counts
            records = list(plog.records())
            assert [r.value for r in records] == [
                s.get("value") for s, m in zip(sends, metas, strict=True) if m.partition == p
            ]
    return metas, batches


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cores_agree_on_keyed_and_explicit_records(tmp_path: Path, seed: int) -> None:
    sends = [s for s in _sends(seed, 3000) if "key" in s or "partition" in s]
    py_metas, py_batches = _run(tmp_path / "py", True, sends, batch_size=2000)
    rs_metas, rs_batches = _run(tmp_path / "rs", False, sends, batch_size=2000)
    strip = [
        (m.partition, m.offset, m.serialized_key_size, m.serialized_value_size, m.serialized_header_size)
        for m in py_metas
    ]
    assert strip == [
        (m.partition, m.offset, m.serialized_key_size, m.serialized_value_size, m.serialized_header_size)
        for m in rs_metas
    ]
    assert py_batches == rs_batches
    explicit = [m.timestamp for s, m in zip(sends, rs_metas, strict=True) if "timestamp_ms" in s]
    assert explicit == [s["timestamp_ms"] for s in sends if "timestamp_ms" in s]


def test_cores_agree_on_sticky_batch_cuts(tmp_path: Path) -> None:
    sends = [{"value": b"x" * (50 + i % 40)} for i in range(2000)]
    runs = {}
    for python_core in (True, False):
        metas, batches = _run(tmp_path / str(python_core), python_core, sends, batch_size=3000)
        partitions = [m.partition for m in metas]
        runs[python_core] = [len(list(g)) for _, g in itertools.groupby(partitions)]
        # a sticky run is one batch: switches happen exactly at batch completion
        assert sorted(runs[python_core]) == sorted(n for counts in batches.values() for n in counts)
        assert all(a != b for a, b in itertools.pairwise(k for k, _ in itertools.groupby(partitions)))
    assert runs[True] == runs[False]
