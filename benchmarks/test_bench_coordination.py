"""Coordination between processes (issue 5 §3): cross-process wake-up latency, a waiter's idle CPU,
and two writer processes appending in tight loops. Figures go to ``extra_info`` (and the goals are
checked only at ``PYLOG_BENCH_SCALE=full``, on an otherwise idle machine):

- wake-up, from ``append`` returning in process A to ``wait_for`` returning in process B (both
  ``CLOCK_MONOTONIC``): p50 <= 100 us, p99 <= 1 ms; an idle waiter uses no measurable CPU;
- two processes appending one record at a time for 10 s: both progress, and the longest single
  append of either (an upper bound of its wait for the writer lock) stays under 10 ms.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from helpers import reaped, spawn_child

from pylog.engine import open_partition

FULL = os.environ.get("PYLOG_BENCH_SCALE", "smoke") == "full"


@pytest.fixture(params=["native", "reference"])
def appender(request) -> str:
    return request.param


def test_cross_process_wake_up(benchmark, engine, appender, tmp_path):
    path = tmp_path / "wake-0"
    log = open_partition(path, engine=engine)
    gaps: list[float] = []
    try:
        with reaped([spawn_child("appender", appender, path, {})]) as (child,):
            assert child.stdout.readline().strip() == b"ready"

            def one_wake_up() -> None:
                target = log.end_offset
                entered = threading.Event()
                woke: dict = {}

                def wait() -> None:
                    entered.set()
                    woke["ok"] = log.wait_for(target, 10_000)
                    woke["t"] = time.monotonic()

                t = threading.Thread(target=wait)
                t.start()
                entered.wait()
                time.sleep(0.001)  # workload shape: the waiter is asleep when the append comes
                child.stdin.write(b"append\n")
                child.stdin.flush()
                returned = float(child.stdout.readline().split()[1])
                t.join()
                assert woke["ok"]
                gaps.append(woke["t"] - returned)

            benchmark.pedantic(one_wake_up, rounds=1000 if FULL else 20)
            child.stdin.close()
            child.wait(30)
        before = resource.getrusage(resource.RUSAGE_SELF)
        idle_start = time.monotonic()
        assert log.wait_for(1 << 40, 3000 if FULL else 600) is False
        after = resource.getrusage(resource.RUSAGE_SELF)
        idle = time.monotonic() - idle_start
    finally:
        log.close()
    gaps.sort()
    p50, p99 = gaps[len(gaps) // 2], gaps[int(len(gaps) * 0.99)]
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    benchmark.extra_info.update(
        wake_p50_us=round(p50 * 1e6),
        wake_p99_us=round(p99 * 1e6),
        wake_max_us=round(gaps[-1] * 1e6),
        idle_cpu_percent=round(100 * cpu / idle, 3),
    )
    if FULL:
        assert p50 <= 100e-6 and p99 <= 1e-3, benchmark.extra_info


@pytest.mark.parametrize("pair", [("native", "native"), ("reference", "reference"), ("native", "reference")])
def test_two_tight_looping_writers(benchmark, tmp_path, pair):
    seconds = 10.0 if FULL else 0.5
    path = tmp_path / "fair-0"
    config = {"segment.bytes": 64 << 20}
    open_partition(path, engine=pair[0], config=config).close()
    results: list[tuple[int, float]] = []

    def run() -> None:
        procs = [spawn_child("spin", e, path, config, w, seconds) for w, e in enumerate(pair)]
        with reaped(procs):
            for p in procs:
                assert p.stdout.readline().strip() == b"ready", p.stderr.read().decode()
            for p in procs:
                p.stdin.write(b"go\n")
                p.stdin.flush()
            for p in procs:
                n, longest = p.stdout.readline().split()
                results.append((int(n), float(longest)))
                assert p.wait(120) == 0

    benchmark.pedantic(run, rounds=1)
    benchmark.extra_info.update(
        appends=[n for n, _ in results], longest_append_ms=[round(x * 1e3, 2) for _, x in results]
    )
    assert all(n > 0 for n, _ in results), results
    if FULL:
        assert max(x for _, x in results) < 0.010, benchmark.extra_info
