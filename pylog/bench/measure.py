"""Measuring helpers shared by the workloads of ``pylog bench`` and the pytest benchmarks of
benchmarks/ (which import them from ``pylog.bench``): test data, a clean page cache, percentiles,
filling and crashing logs, timed runs of several threads, and the cross-process wake-up
measurements.

All functions are plain and stateless; the child processes they drive are
pylog/bench_processes.py's roles. CLOCK_MONOTONIC (``time.perf_counter_ns``) is one clock for
every process of the machine, so latencies across processes subtract stamps of both sides.
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from pylog.bench_processes import spawn, wait_until_blocked
from pylog.engine import open_partition

VALUE_BYTES = 100
BATCH_RECORDS = 1000
OS_WRITE_CHUNK_BYTES = 1 << 20


def settle_page_cache() -> None:
    """Write back dirty pages before a timed write run.

    why: after a few GB of writes the kernel throttles every writer to disk speed (dirty-page
    balancing), whichever one happens to run then; starting each write run from a clean state
    measures what this benchmark is about (handing bytes to the OS), for every contender alike.
    """
    os.sync()


def make_values(count: int, seed: int = 7, size: int = VALUE_BYTES) -> list[bytes]:
    """``count`` random (incompressible) values of ``size`` bytes, the same for every seed."""
    rng = random.Random(seed)
    return [rng.randbytes(size) for _ in range(count)]


def make_text_values(count: int, size: int, seed: int = 7) -> list[bytes]:
    """``count`` values of ``size`` bytes that compress about 2-3x, as JSON-ish event payloads do
    (why: random bytes would make every codec a pure cost and say nothing about lz4)."""
    rng = random.Random(seed)
    words = [b"user", b"event", b"click", b"view", b"session", b"page", b"item", b"price", b"ok"]
    out = []
    for i in range(count):
        parts = [b'{"id":%d,' % i]
        while sum(map(len, parts)) < size:
            parts.append(b'"%s":"%s",' % (rng.choice(words), rng.randbytes(3).hex().encode()))
        out.append(b"".join(parts)[:size])
    return out


def batch_spans(data: bytes | memoryview) -> list[memoryview]:
    """The RecordBatches of a segment's bytes, one view each (a batch is 8 bytes of base offset,
    4 of length, then ``length`` bytes: Kafka's DefaultRecordBatch framing)."""
    view = memoryview(data)
    spans, at = [], 0
    while at + 12 <= len(view):
        end = at + 12 + int.from_bytes(view[at + 8 : at + 12], "big")
        spans.append(view[at:end])
        at = end
    return spans


def timed_threads(
    threads: int,
    prepare: Callable[[int], Callable[[], None]],
    before_release: Callable[[], None] | None = None,
) -> tuple[float, list[BaseException]]:
    """Run ``threads`` threads released together, the one timing of the multi-threaded workloads
    and their baselines: thread ``i`` calls ``prepare(i)`` (untimed: connections, handles), waits
    at a barrier, then runs the loop ``prepare`` returned; the main thread calls
    ``before_release`` (e.g. ``settle_page_cache``), releases them and times until the last one
    ends. Returns the seconds and every exception a thread raised, so a failing contender is
    reported as not ok rather than as a fast run. A ``prepare`` that fails breaks the barrier
    (the others stop at once) instead of leaving the main thread waiting forever."""
    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            loop = prepare(i)
        except BaseException as error:
            errors.append(error)
            start.abort()
            return
        try:
            start.wait()
            loop()
        except threading.BrokenBarrierError:
            pass  # another thread's prepare failed; its error is the one reported
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=body, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    if before_release is not None:
        before_release()
    with contextlib.suppress(threading.BrokenBarrierError):  # a prepare failed: time nothing
        start.wait()
    t0 = time.perf_counter()
    for worker in workers:
        worker.join()
    return time.perf_counter() - t0, errors


def fill_log(path: str, batches: int, records_per_batch: int, values: list[bytes], **config: Any) -> int:
    """Write ``batches`` batches with the native engine; returns the end offset."""
    with open_partition(path, engine="native", config=config or None) as log:
        chunk = values[:records_per_batch]
        for _ in range(batches):
            log.append(chunk)
        return log.end_offset


def percentile(samples: list[int], q: float) -> int:
    """The ``q`` quantile (nearest rank) of ``samples``."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Interleaved(NamedTuple):
    """``append`` vs ``os.write`` of the same encoded batch, call by call."""

    end_offset: int
    append_median_ns: float
    os_write_median_ns: float
    batch_bytes: int

    @property
    def share(self) -> float:
        """The append's MB/s as a share of ``os.write``'s at the same call size."""
        return self.os_write_median_ns / self.append_median_ns


def interleaved_append(root: str, engine: str, batches: int, values: list[bytes]) -> Interleaved:
    """Append one batch of ``values``, then ``os.write`` that batch's encoded bytes to another
    file, ``batches`` times, timing each call; medians of both.

    why interleaved: on these VMs the kernel's dirty-page throttling makes separate runs swing
    by 10x; alternating call by call exposes both contenders to the same page-cache state.
    """
    log = open_partition(os.path.join(root, f"interleaved-{engine}"), engine=engine)
    raw = os.open(os.path.join(root, f"interleaved-{engine}.bin"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        encoded = bytes(log.read(log.append(values), 1))
        settle_page_cache()
        append_ns, write_ns = [], []
        for _ in range(batches):
            t0 = time.perf_counter_ns()
            log.append(values)
            t1 = time.perf_counter_ns()
            os.write(raw, encoded)
            t2 = time.perf_counter_ns()
            append_ns.append(t1 - t0)
            write_ns.append(t2 - t1)
        end = log.end_offset
    finally:
        os.close(raw)
        log.close()
    return Interleaved(end, statistics.median(append_ns), statistics.median(write_ns), len(encoded))


def _expect_ready(child: subprocess.Popen, role: str) -> None:
    assert child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        raise RuntimeError(f"the {role} process failed")


def wakeup_latencies(path: str, writer_engine: str, waiter_engine: str, rounds: int) -> list[int]:
    """Nanoseconds from ``append`` returning here to ``wait_for`` returning in another process
    (blocked before each append), per round. One monotonic clock serves both processes."""
    latencies = []
    with open_partition(path, engine=writer_engine) as writer:
        values = make_values(1)
        with spawn("waiter", path, waiter_engine, rounds) as child:
            assert child.stdin is not None and child.stdout is not None
            for _ in range(rounds):
                child.stdin.write(f"{writer.end_offset}\n")
                child.stdin.flush()
                _expect_ready(child, "waiter")
                wait_until_blocked(child.pid)
                writer.append(values)
                returned = time.perf_counter_ns()
                woke, at = map(int, child.stdout.readline().split())
                if not woke:
                    raise RuntimeError("the waiter timed out although a record was appended")
                latencies.append(at - returned)
            child.stdin.close()
            if child.wait(timeout=60) != 0:
                raise RuntimeError("the waiter process failed")
    return latencies


def idle_wait_cpu_share(path: str, engine: str, ms: int) -> float:
    """CPU time a ``wait_for`` of ``ms`` with nothing appended uses, as a share of one core."""
    with spawn("idle", path, engine, ms) as child:
        assert child.stdout is not None
        _expect_ready(child, "idle waiter")
        woke, cpu_ns = map(int, child.stdout.readline().split())
        if woke or child.wait(timeout=60) != 0:
            raise RuntimeError("the idle waiter woke without an append, or failed")
    return cpu_ns / (ms * 1e6)


def tight_appenders(path: str, engines: tuple[str, str], seconds: float) -> list[tuple[int, int, int]]:
    """Two processes append 10-record batches in tight loops for ``seconds``; per process, the
    number of appends, its longest single append in ns (an upper bound of its writer-lock wait)
    and its longest writer-lock wait in ns as the engine measured it (-1: not measured)."""
    with (
        spawn("appender", path, engines[0], seconds) as first,
        spawn("appender", path, engines[1], seconds) as second,
    ):
        children = [first, second]
        for child in children:
            _expect_ready(child, "appender")
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = []
        for child in children:
            assert child.stdout is not None
            count, longest, lock_wait = map(int, child.stdout.readline().split())
            results.append((count, longest, lock_wait))
        for child in children:
            if child.wait(timeout=60) != 0:
                raise RuntimeError("an appender failed")
    return results


def make_unclean(path: str) -> None:
    """Leave the directory as a crash would: no clean-shutdown marker, no recovery point."""
    for name in (".kafka_cleanshutdown", "recovery-point-offset-checkpoint"):
        with_path = os.path.join(path, name)
        if os.path.exists(with_path):
            os.unlink(with_path)
