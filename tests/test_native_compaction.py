"""The native cleaner (native/src/cleaner.rs, offset_map.rs) against the reference one: with
codec none both engines must write the same bytes (docs/partition-log.md "Compaction";
ISSUE 7), pass for pass, for histories that exercise every rule: superseded keys, keyless
records, tombstones and their delete horizon, grouping of small segments, a bounded map forcing
several passes, records with headers, LogAppendTime batches, control-free compressed batches
(compared by records, compressed bytes are not canonical). Also the native engine's own
promises: the GIL is released while it cleans, and another process reads the result.

The rule-by-rule tests are tests/test_reference_compaction.py (both engines), the differential,
crash and property suites tests/test_compaction*.py.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import check_segment_indexes, kafka_decode, parse_batches, segment_files, skip_if_engine_missing

from pylog.bench_processes import same_pylog_env
from pylog.engine import open_partition

TS = 1_700_000_000_000
DAY = 24 * 3600 * 1000


@pytest.fixture
def engines() -> tuple[str, str]:
    for name in ("native", "reference"):
        skip_if_engine_missing(name)
    return ("native", "reference")


def history(seed: int, *, n_batches: int, keys: int, tombstones: float, keyless_first: int = 0):
    """A deterministic list of append calls: (values, keys, headers, timestamps)."""
    rnd = random.Random(seed)
    calls = []
    offset = 0
    for b in range(n_batches):
        size = rnd.randint(1, 6)
        vals, ks, hs, ts = [], [], [], []
        for _ in range(size):
            keyless = b < keyless_first
            ks.append(None if keyless else b"k%d" % rnd.randrange(keys))
            vals.append(
                None
                if (not keyless and rnd.random() < tombstones)
                else b"v%d-" % offset + bytes(rnd.randrange(20))
            )
            hs.append([("h", b"%d" % offset)] if rnd.random() < 0.3 else [])
            ts.append(TS + offset * 10 + rnd.randrange(5))
            offset += 1
        calls.append((vals, ks, hs, ts))
    return calls


def replay(log, calls, *, roll_every: int) -> None:
    for i, (vals, ks, hs, ts) in enumerate(calls, 1):
        log.append(vals, keys=ks, headers=hs, timestamps_ms=ts)
        if roll_every and i % roll_every == 0:
            log.roll()


def run_both(tmp_path: Path, engines, config: dict, steps) -> list[tuple]:
    """Run ``steps(log, engine)`` on one directory per engine; return what each step returned
    per engine after checking the directories hold identical segment files."""
    results = {}
    for engine in engines:
        path = tmp_path / engine / "topic-0"
        path.parent.mkdir()
        log = open_partition(path, engine=engine, config=config)
        try:
            results[engine] = steps(log, engine)
        finally:
            log.close()
    native, reference = (segment_files(tmp_path / e / "topic-0") for e in engines)
    assert sorted(native) == sorted(reference)
    for name in native:
        assert native[name] == reference[name], name
    for name in ("cleaner-offset-checkpoint", "log-start-offset-checkpoint"):
        a, b = (tmp_path / e / "topic-0" / name for e in engines)
        assert a.exists() == b.exists(), name
        if a.exists():
            assert a.read_text() == b.read_text(), name
    assert results["native"] == results["reference"]
    return results["native"]


@pytest.mark.parametrize("seed", range(4))
def test_engines_write_the_same_bytes_over_a_history(tmp_path, engines, seed):
    config = {
        "cleanup.policy": "compact",
        "segment.bytes": 700,
        "index.interval.bytes": 150,
        "delete.retention.ms": DAY,
        "min.cleanable.dirty.ratio": 0.01,
    }
    calls = history(seed, n_batches=120, keys=9, tombstones=0.15)

    def steps(log, engine):
        out = []
        replay(log, calls[:60], roll_every=7)
        out.append(tuple(log.cleanable(now_ms=TS)))
        out.append(tuple(log.compact(now_ms=TS)))
        replay(log, calls[60:100], roll_every=5)
        out.append(tuple(log.compact(now_ms=TS + DAY // 2)))
        replay(log, calls[100:], roll_every=4)
        # the last word on two keys is a tombstone: the next pass gives their batch a horizon
        log.append([None, None], keys=[b"k0", b"k1"], timestamps_ms=[TS + 5000, TS + 5001])
        log.roll()
        out.append(tuple(log.compact(now_ms=TS + DAY)))
        # past that horizon (a new segment makes another pass run): the tombstones go
        log.append([b"x"], keys=[b"other"], timestamps_ms=[TS + 6000])
        log.roll()
        out.append(tuple(log.compact(now_ms=TS + 2 * DAY)))
        out.append(tuple(log.cleanable(now_ms=TS + 2 * DAY)))
        out.append([(r.offset, r.key, r.value, r.headers, r.timestamp) for r in log.records()])
        return out

    out = run_both(tmp_path, engines, config, steps)
    # what was compared is not trivial: records went, tombstones went after their horizon
    compact_results = out[1:5]
    assert all(r[0] == 1 for r in compact_results), compact_results
    assert sum(r[5] for r in compact_results) < sum(r[4] for r in compact_results)
    assert compact_results[2][6] == 0 and compact_results[3][6] >= 2, compact_results
    assert not [r for r in out[-1] if r[1] in (b"k0", b"k1")]


@pytest.mark.parametrize("map_bytes", [1024, 2048, 1 << 20])
def test_engines_agree_when_the_map_fills(tmp_path, engines, map_bytes):
    config = {"cleanup.policy": "compact", "segment.bytes": 4000}
    calls = history(7, n_batches=150, keys=120, tombstones=0.05)

    def steps(log, engine):
        replay(log, calls, roll_every=10)
        result = log.compact(now_ms=TS, map_bytes=map_bytes)
        return [tuple(result), [(r.offset, r.key, r.value) for r in log.records()]]

    (result, records) = run_both(tmp_path, engines, config, steps)
    if map_bytes < 4096:
        assert result[0] > 1, result  # several passes
    # everything below the active segment (empty: the history ends with a roll) is clean:
    # each key once, at its last offset
    last = {}
    for i, (_, ks, _, _) in enumerate(calls):
        for j, k in enumerate(ks):
            last[k] = sum(len(c[1]) for c in calls[:i]) + j
    assert sorted(o for o, _, _ in records) == sorted(last.values())


def copy_partition(src: Path, dst: Path) -> None:
    """The files of a closed partition directory (not the per-process lock and page files)."""
    dst.mkdir(parents=True)
    for name in os.listdir(src):
        if not name.startswith(".pylog."):
            shutil.copy2(src / name, dst / name)


def test_engines_agree_on_keyless_records_and_log_append_time(tmp_path, engines):
    """Keyless records written before the topic became compacted are dropped by the cleaner
    (Kafka counts them invalid) unless beyond the map; LogAppendTime batches keep their
    maxTimestamp. One directory is written (LogAppendTime stamps the wall clock), copied, and
    each engine compacts its copy."""
    calls = history(3, n_batches=30, keys=4, tombstones=0.1, keyless_first=8)
    src = tmp_path / "src-0"
    log = open_partition(src, engine="native", config={"segment.bytes": 600})
    replay(log, calls[:8], roll_every=3)
    log.close()
    compacted = {"cleanup.policy": "compact", "segment.bytes": 600}
    log = open_partition(
        src, engine="native", config={**compacted, "message.timestamp.type": "LogAppendTime"}
    )
    replay(log, calls[8:], roll_every=4)
    log.close()
    out = {}
    for engine in engines:
        path = tmp_path / engine / "topic-0"
        copy_partition(src, path)
        log = open_partition(path, engine=engine, config=compacted)
        out[engine] = (tuple(log.compact(now_ms=TS)), [(r.offset, r.key, r.timestamp) for r in log.records()])
        log.close()
    assert out["native"] == out["reference"]
    assert segment_files(tmp_path / "native" / "topic-0") == segment_files(tmp_path / "reference" / "topic-0")
    result, records = out["native"]
    assert all(key is not None for _, key, _ in records)
    assert result[4] > result[5]  # records were dropped


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_give_the_same_records(tmp_path, engines, codec):
    config = {"cleanup.policy": "compact", "segment.bytes": 1500, "compression.type": codec}
    calls = history(11, n_batches=60, keys=6, tombstones=0.1)
    out = {}
    for engine in engines:
        path = tmp_path / engine / "topic-0"
        log = open_partition(path, engine=engine, config=config)
        replay(log, calls, roll_every=6)
        result = log.compact(now_ms=TS)
        counts = (result.passes, result.records_read, result.records_kept, result.tombstones_removed)
        out[engine] = (counts, result.clean_offset, [tuple(r) for r in log.records()])
        # every cleaned batch keeps its codec and decodes with kafka-python's classes
        for name in sorted(os.listdir(path)):
            if name.endswith(".log"):
                data = (path / name).read_bytes()
                for b in parse_batches(data):
                    assert b.attributes & 0x07 in (0, {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}[codec])
                if data:
                    kafka_decode(data)
        log.close()
    # compressed bytes differ by the codec implementation (so segment sizes and grouping may),
    # the records and their counts may not
    assert out["native"] == out["reference"]


def test_cleaned_segments_follow_the_index_rules(tmp_path):
    skip_if_engine_missing("native")
    path = tmp_path / "t-0"
    log = open_partition(
        path,
        engine="native",
        config={"cleanup.policy": "compact", "segment.bytes": 3000, "index.interval.bytes": 200},
    )
    replay(log, history(5, n_batches=200, keys=20, tombstones=0.05), roll_every=9)
    assert log.compact(now_ms=TS).passes == 1
    log.close()
    assert check_segment_indexes(path, 200) > 0


def test_compact_releases_the_gil(tmp_path):
    """A Python thread runs while the native engine compacts. With a switch interval of
    seconds the interpreter never takes the GIL from a thread that holds it, so the other
    thread (which gives the GIL up at every step) only advances if compact released it."""
    skip_if_engine_missing("native")
    path = tmp_path / "t-0"
    log = open_partition(
        path, engine="native", config={"cleanup.policy": "compact", "segment.bytes": 4 << 20}
    )
    for _ in range(50):
        log.append([b"x" * 100] * 2000, keys=[b"k%d" % (j % 500) for j in range(2000)])
    log.roll()
    done = threading.Event()
    started = threading.Event()
    ticks = 0

    def spin() -> None:
        nonlocal ticks
        started.set()
        while not done.is_set():
            ticks += 1
            time.sleep(0)  # gives the GIL up

    interval = sys.getswitchinterval()
    sys.setswitchinterval(5.0)
    t = threading.Thread(target=spin)
    try:
        t.start()
        started.wait()
        before = ticks
        result = log.compact(now_ms=TS)
        during = ticks - before
    finally:
        done.set()
        t.join()
        sys.setswitchinterval(interval)
    assert result.records_kept == 500
    assert during > 10, during
    log.close()


CHILD_READER = r"""
import sys
from pylog.engine import open_partition
log = open_partition(sys.argv[1], engine=sys.argv[2], config={"cleanup.policy": "compact"})
print(sorted((r.key.decode(), r.offset) for r in log.records()), flush=True)
log.close()
"""


@pytest.mark.parametrize("reader", ["native", "reference"])
def test_another_process_reads_what_the_native_cleaner_wrote(tmp_path, engines, reader):
    path = tmp_path / "t-0"
    log = open_partition(path, engine="native", config={"cleanup.policy": "compact", "segment.bytes": 800})
    replay(log, history(9, n_batches=80, keys=5, tombstones=0.0), roll_every=5)
    log.roll()
    expected = {}
    for r in log.records():
        expected[r.key.decode()] = r.offset
    log.compact(now_ms=TS)
    out = subprocess.run(
        [sys.executable, "-P", "-c", CHILD_READER, str(path), reader],
        capture_output=True,
        text=True,
        check=True,
        env=same_pylog_env(),
    ).stdout
    assert out.strip() == str(sorted(expected.items()))
    log.close()
