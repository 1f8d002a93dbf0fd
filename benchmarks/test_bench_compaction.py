"""The compaction and retention speed targets (issue 7, "Speed"), each checked on its own result:

- ``compact()`` of 1,000,000 keyed 100-byte records over 100,000 keys (full scale; smoke: 20,000
  over 2,000): MB/s of input (the sealed ``.log`` bytes the pass reads), both engines, and an
  interleaved native/reference run for the ratio (targets: >= 500 MB/s on one core, >= 10x);
- p99 of a foreground ``send()`` + ``flush()`` (acks=1) while another partition is compacted in a
  thread (the engine call the background cleaner makes, looped over a log whose cleaner
  checkpoint is reset each time so every call is a full pass), and while retention deletes
  segments there, against the same with nothing running (target: <= 2x);
- the cleaner's memory: peak anonymous RSS growth of a fresh child process during
  ``compact(map_bytes=M)`` against M plus one segment (target: within it).

CI runs these with ``--benchmark-disable`` (each body once, as a smoke test). Figures and commands:
benchmarks/README.md ("Compaction and retention").
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import FULL

import pylog
from pylog.bench import percentile, settle_page_cache
from pylog.bench_processes import same_pylog_env
from pylog.engine import open_partition

TS = 1_700_000_000_000
NOW = TS + 10**9
RECORDS = 1_000_000 if FULL else 20_000
KEYS = RECORDS // 10
BATCH = 1_000
SEGMENT_BYTES = 16 << 20 if FULL else 256 << 10
MAP_BYTES = 128 << 20  # Kafka's default log.cleaner.dedupe.buffer.size: one pass
CONFIG = {"cleanup.policy": "compact", "segment.bytes": SEGMENT_BYTES}


def _scale(engine: str) -> int:
    """Records the engine compacts: the reference gets a tenth (its MB/s is what is compared)."""
    return RECORDS if engine == "native" else RECORDS // 10


def write_dirty_log(path: Path, records: int, keys: int) -> int:
    """``records`` keyed 100-byte values (key ``k%08d`` of ``i % keys``), sealed; returns the
    input bytes of a full pass (every sealed ``.log``)."""
    with open_partition(path, engine="native", config=CONFIG) as log:
        value = os.urandom(100)
        for start in range(0, records, BATCH):
            ids = range(start, min(start + BATCH, records))
            log.append(
                [value[:92] + b"%08d" % i for i in ids],
                keys=[b"k%08d" % (i % keys) for i in ids],
                timestamps_ms=[TS + i for i in ids],
            )
        log.roll()
    return sum(p.stat().st_size for p in path.glob("*.log"))


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[str, tuple[Path, int]]:
    root = tmp_path_factory.mktemp("compaction-templates")
    out = {}
    for engine in ("native", "reference"):
        path = root / engine / "table-0"
        out[engine] = (path, write_dirty_log(path, _scale(engine), _scale(engine) // 10))
    return out


def _compact_copy(template: Path, target: Path, engine: str):
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(template, target)
    settle_page_cache()
    log = open_partition(target, engine=engine, config=CONFIG)
    return log


def test_compact_throughput(benchmark, engine, tmp_path, templates):
    template, input_bytes = templates[engine]
    runs = iter(range(1_000_000))
    opened = []

    def setup():
        log = _compact_copy(template, tmp_path / f"run-{next(runs)}" / "table-0", engine)
        opened.append(log)
        return (log,), {}

    def compact(log):
        return log.compact(NOW, map_bytes=MAP_BYTES)

    try:
        result = benchmark.pedantic(compact, setup=setup, rounds=3)
        assert result.passes == 1 and result.bytes_read == input_bytes
        assert result.records_read == _scale(engine) and result.records_kept == _scale(engine) // 10
        log = opened[-1]
        assert len({r.key for r in log.records()}) == _scale(engine) // 10
    finally:
        for log in opened:
            log.close()
    benchmark.extra_info["input_bytes"] = input_bytes
    benchmark.extra_info["records"] = _scale(engine)


def test_compact_native_vs_reference_interleaved(benchmark, tmp_path, templates):
    """Alternating runs (native, reference, native, ...) on fresh copies: the MB/s of each is the
    median of its runs, so both saw the same machine state. Figures in extra_info."""
    rounds = 3 if FULL else 1
    rates: dict[str, list[float]] = {"native": [], "reference": []}

    def interleave():
        for i in range(rounds):
            for engine in ("native", "reference"):
                template, input_bytes = templates[engine]
                log = _compact_copy(template, tmp_path / f"{engine}-{i}" / "table-0", engine)
                try:
                    t0 = time.perf_counter()
                    result = log.compact(NOW, map_bytes=MAP_BYTES)
                    seconds = time.perf_counter() - t0
                finally:
                    log.close()
                assert result.bytes_read == input_bytes and result.records_kept == _scale(engine) // 10
                rates[engine].append(input_bytes / seconds / 1e6)
        return rates

    benchmark.pedantic(interleave, rounds=1)
    native, reference = statistics.median(rates["native"]), statistics.median(rates["reference"])
    benchmark.extra_info.update(
        native_mb_s=round(native, 1), reference_mb_s=round(reference, 2), ratio=round(native / reference, 1)
    )
    print(
        f"\ncompact MB/s of input: native {native:.1f}, reference {reference:.2f}, {native / reference:.1f}x"
    )


# ----------------------------------------------------------------------------------------------
# foreground latency while another partition is compacted / retention deletes


SENDS = 3000 if FULL else 200


def _busy_compaction(
    path: Path, engine: str, started: threading.Event, stop: threading.Event, done: list[int]
) -> None:
    log = open_partition(path, engine=engine, config=CONFIG)
    try:
        while not stop.is_set():
            started.set()
            (path / "cleaner-offset-checkpoint").unlink(missing_ok=True)  # dirty again: a full pass
            result = log.compact(NOW, map_bytes=MAP_BYTES)
            assert result.passes >= 1, result
            done.append(result.bytes_read)
    finally:
        log.close()


def _busy_retention(
    path: Path, engine: str, started: threading.Event, stop: threading.Event, done: list[int]
) -> None:
    config = {"segment.bytes": 1 << 20, "retention.bytes": 4 << 20}
    log = open_partition(path, engine=engine, config=config)
    values = [os.urandom(100) for _ in range(BATCH)]
    try:
        while not stop.is_set():
            started.set()
            for _ in range(10):  # ~1 MB: one more segment to delete
                log.append(values, timestamps_ms=[TS] * BATCH)
            deleted = log.apply_retention(NOW)
            done.append(deleted.deleted_segments)
    finally:
        log.close()


def _send_flush_latencies(producer, sends: int) -> list[int]:
    out = []
    value = b"x" * 100
    for _ in range(sends):
        t0 = time.perf_counter_ns()
        producer.send("fg", value)
        producer.flush()
        out.append(time.perf_counter_ns() - t0)
    return out


@pytest.mark.parametrize("background", ["compaction", "retention"])
def test_send_flush_p99_while_another_partition_is_cleaned(
    benchmark, engine, tmp_path, templates, background
):
    template, _ = templates[engine]
    busy_path = tmp_path / "busy" / "table-0"
    shutil.copytree(template, busy_path)
    log = pylog.open(tmp_path / "fg-log", engine=engine)
    log.create_topic("fg")
    producer = log.producer(acks=1)
    _send_flush_latencies(producer, 20)  # warm
    result: dict[str, object] = {}

    def measure():
        idle = _send_flush_latencies(producer, SENDS)
        started, stop, done = threading.Event(), threading.Event(), []
        worker = threading.Thread(
            target=_busy_compaction if background == "compaction" else _busy_retention,
            args=(busy_path, engine, started, stop, done),
        )
        worker.start()
        try:
            assert started.wait(60), "the background work did not start"
            busy = _send_flush_latencies(producer, SENDS)
        finally:
            stop.set()
            worker.join()
        assert done, "the background work ran during the measurement"
        result.update(idle=idle, busy=busy, work=len(done))
        return result

    try:
        benchmark.pedantic(measure, rounds=1)
    finally:
        producer.close()
        log.close()
    p99_idle = percentile(result["idle"], 0.99) / 1000
    p99_busy = percentile(result["busy"], 0.99) / 1000
    benchmark.extra_info.update(
        p99_idle_us=round(p99_idle, 1),
        p99_busy_us=round(p99_busy, 1),
        p50_idle_us=round(statistics.median(result["idle"]) / 1000, 1),
        p50_busy_us=round(statistics.median(result["busy"]) / 1000, 1),
        ratio=round(p99_busy / p99_idle, 2),
        background_runs=result["work"],
    )
    print(f"\n{engine} {background}: send+flush p99 idle {p99_idle:.0f} us, busy {p99_busy:.0f} us")


# ----------------------------------------------------------------------------------------------
# the cleaner's memory

MEMORY_CHILD = r"""
import json, os, resource, sys, threading, time
from pylog.engine import open_partition

path, config, map_bytes = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])

def rss_anon():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0

log = open_partition(path, engine="native", config=config)
before_anon = rss_anon()
before_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
peak = [before_anon]
stop = threading.Event()

def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], rss_anon())
        time.sleep(0.002)

t = threading.Thread(target=sample)
t.start()
result = log.compact(int(sys.argv[4]), map_bytes=map_bytes)
stop.set()
t.join()
after_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
log.close()
print(json.dumps({"anon_delta": peak[0] - before_anon, "maxrss_delta": after_peak - before_peak,
                  "passes": result.passes, "bytes_read": result.bytes_read}))
"""


@pytest.mark.parametrize("map_mb", [1, 16] if FULL else [1])
def test_cleaner_memory_stays_within_map_plus_a_segment(benchmark, tmp_path, templates, map_mb):
    template, input_bytes = templates["native"]
    path = tmp_path / "mem" / "table-0"
    map_bytes = map_mb << 20
    out: dict = {}

    def run():
        shutil.rmtree(path, ignore_errors=True)
        shutil.copytree(template, path)
        done = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, str(path), json.dumps(CONFIG), str(map_bytes), str(NOW)],
            capture_output=True,
            text=True,
            env=same_pylog_env(),
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        out.update(json.loads(done.stdout.strip().splitlines()[-1]))
        return out

    benchmark.pedantic(run, rounds=1)
    assert out["bytes_read"] >= input_bytes and out["passes"] >= 1
    bound = map_bytes + SEGMENT_BYTES
    benchmark.extra_info.update(
        anon_delta_mb=round(out["anon_delta"] / 2**20, 1),
        maxrss_delta_mb=round(out["maxrss_delta"] / 2**20, 1),
        bound_mb=round(bound / 2**20, 1),
        passes=out["passes"],
    )
    print(
        f"\ncleaner memory, map {map_mb} MiB: anon +{out['anon_delta'] / 2**20:.1f} MiB (bound {bound / 2**20:.1f} MiB)"
    )
