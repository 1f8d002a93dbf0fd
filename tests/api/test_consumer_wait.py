"""A consumer blocked in ``poll(timeout_ms)`` over several partitions wakes on an append to any of
them — from this process or another, by either engine — or on the fetcher's ``wakeup()``, and
uses no CPU while idle.

Every test that asserts a wake-up first raises the fetcher's fallback look (normally every
500 ms) past the poll's timeout, so the only way the poll can return early is the futex wake-up
itself (``futex_waitv`` on the partitions' ``.pylog.shm`` words and the wake word).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from api.test_consumer import offsets, produce
from pylog import TopicPartition
from pylog.bench_processes import same_pylog_env
from pylog.embedded import fetcher

PARTITIONS = [TopicPartition("w", p) for p in range(4)]
POLL_TIMEOUT_MS = 30_000
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_fallback(monkeypatch):
    monkeypatch.setattr(fetcher, "WAKE_FALLBACK_MS", 120_000)


@pytest.fixture
def consumer(log, no_fallback):
    log.create_topic("w", 4)
    c = log.consumer(auto_offset_reset="earliest")
    c.assign(PARTITIONS)
    assert c.poll() == {}
    yield c
    c.close()


def poll_in_thread(consumer) -> tuple[threading.Thread, list]:
    result: list = []

    def run():
        start = time.monotonic()
        fetched = consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
        result.append((fetched, time.monotonic() - start))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_an_append_in_this_process_wakes_the_poll(log, consumer):
    thread, result = poll_in_thread(consumer)
    produce(log, PARTITIONS[2], [b"hello"])
    thread.join(POLL_TIMEOUT_MS / 1000)
    fetched, elapsed = result[0]
    assert offsets(fetched) == {PARTITIONS[2]: [0]}
    assert elapsed < POLL_TIMEOUT_MS / 2000


CHILD = """
import sys, pylog
from pylog import TopicPartition
with pylog.open(sys.argv[1], engine=sys.argv[2]) as log:
    handle = log._backend.partition_log(TopicPartition("w", 3))
    print("ready", flush=True)
    sys.stdin.readline()
    handle.append([b"from another process"])
    print("appended", flush=True)
    sys.stdin.readline()
"""


@pytest.mark.parametrize("child_engine", ["same", "other"])
def test_an_append_in_another_process_wakes_the_poll(log, log_dir, engine, consumer, child_engine):
    child_engine = ("reference" if engine == "native" else "native") if child_engine == "other" else engine
    env = same_pylog_env()
    with subprocess.Popen(
        [sys.executable, "-P", "-c", CHILD, str(log_dir), child_engine],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as child:
        try:
            assert child.stdout is not None and child.stdin is not None
            assert child.stdout.readline().strip() == "ready"
            thread, result = poll_in_thread(consumer)
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "appended"
            thread.join(POLL_TIMEOUT_MS / 1000)
            fetched, elapsed = result[0]
            assert [r.value for r in fetched[PARTITIONS[3]]] == [b"from another process"]
            assert elapsed < POLL_TIMEOUT_MS / 2000
            child.stdin.write("done\n")
            child.stdin.flush()
            assert child.wait(60) == 0
        finally:
            if child.poll() is None:
                child.kill()


@pytest.mark.embedded_only("drives the embedded backend's fetcher directly")
def test_wakeup_from_another_thread_ends_a_blocked_fetch(log, no_fallback):
    log.create_topic("w", 4)
    f = log._backend.fetcher(log.consumer().config)
    f.add(PARTITIONS)
    for tp in PARTITIONS:
        f.seek(tp, 0)
    result: list = []

    def run():
        start = time.monotonic()
        result.append((f.fetch(PARTITIONS, 10, POLL_TIMEOUT_MS), time.monotonic() - start))

    thread = threading.Thread(target=run)
    thread.start()
    f.wakeup()
    thread.join(POLL_TIMEOUT_MS / 1000)
    fetched, elapsed = result[0]
    assert fetched == {} and elapsed < POLL_TIMEOUT_MS / 2000


@pytest.mark.embedded_only("drives the embedded backend's fetcher directly")
def test_a_wakeup_before_the_fetch_is_kept_for_it(log, no_fallback):
    log.create_topic("w", 1)
    f = log._backend.fetcher(log.consumer().config)
    f.add(PARTITIONS[:1])
    f.seek(PARTITIONS[0], 0)
    f.wakeup()
    start = time.monotonic()
    assert f.fetch(PARTITIONS[:1], 10, POLL_TIMEOUT_MS) == {}
    assert time.monotonic() - start < POLL_TIMEOUT_MS / 2000
    # consumed: the next fetch waits for its timeout
    start = time.monotonic()
    assert f.fetch(PARTITIONS[:1], 10, 50) == {}
    assert time.monotonic() - start >= 0.045


def test_an_idle_poll_uses_no_cpu(log):
    log.create_topic("w", 4)
    c = log.consumer(auto_offset_reset="earliest")
    c.assign(PARTITIONS)
    c.poll()
    wall_start, cpu_start = time.monotonic(), time.process_time()
    assert c.poll(timeout_ms=1500) == {}
    wall, cpu = time.monotonic() - wall_start, time.process_time() - cpu_start
    assert wall >= 1.45
    assert cpu < 0.05 * wall, f"an idle poll used {cpu:.3f} s of CPU in {wall:.2f} s"
    c.close()


@pytest.mark.embedded_only("the futex watch limit is the embedded fetcher's")
def test_partitions_past_the_watch_limit_are_found_by_the_fallback_look(log):
    """futex_waitv takes at most 128 words: the wake word and the first 127 partitions are
    watched; an append to another one is found at the next look (every 500 ms)."""
    log.create_topic("many", 130)
    tps = [TopicPartition("many", p) for p in range(130)]
    c = log.consumer(auto_offset_reset="earliest")
    c.assign(tps)
    assert c.poll() == {}
    thread, result = poll_in_thread(c)
    produce(log, tps[-1], [b"late"])
    thread.join(POLL_TIMEOUT_MS / 1000)
    fetched, elapsed = result[0]
    assert offsets(fetched) == {tps[-1]: [0]}
    assert elapsed < 10
    c.close()
