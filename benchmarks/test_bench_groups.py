"""Consumer-group rebalances (issue 6 goal: a rebalance after a member leaves cleanly completes in
<= 100 ms for 3 members and 60 partitions).

- ``test_rebalance_after_clean_leave``: three members of one group share a 60-partition topic,
  each driven by its own thread the way ``pylog.Consumer`` drives it (idle in a wait that the
  member's wake-up callback ends, then ``member.poll``, then the change applied in the contract's
  order, ``revoked()`` included). One member closes (a clean leave); the time measured runs from
  ``close()`` being called until the two others hold all 60 partitions, as their drivers apply
  them (checked against the catalog's owners at the end of every round). Both an eager protocol
  (range: revoke all, then assign) and cooperative-sticky (only the leaver's partitions move).
- ``test_rebalance_after_clean_leave_processes``: the same with each member in its own process
  (the wake-ups cross processes through ``.groups.shm``); the children report every change of
  their holdings with a CLOCK_MONOTONIC time stamp, so the figure is leave-to-last-assignment.

Smoke size in CI (``--benchmark-disable``: one round); ``PYLOG_BENCH_SCALE=full`` for the figures in
benchmarks/README.md.
"""

from __future__ import annotations

import os
import select
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import FULL

import pylog
from pylog.bench_processes import same_pylog_env
from pylog.types import TopicPartition

PARTITIONS = 60
MEMBERS = 3
ROUNDS = 30 if FULL else 1
CHILD = Path(__file__).with_name("group_member_child.py")


class Driver:
    """One member, driven like a consumer idle in ``poll(timeout_ms)``."""

    def __init__(self, log: pylog.Log, group: str, strategy: str, changed: threading.Condition):
        self.member = log._backend.group_member(
            group_id=group,
            assignors=[strategy],
            session_timeout_ms=30_000,
            heartbeat_interval_ms=3_000,
            max_poll_interval_ms=300_000,
        )
        self.member.subscribe({"t"}, None)
        self.wake = threading.Event()
        self.member.set_wakeup(self.wake.set)
        self.held: set[TopicPartition] = set()
        self.changed = changed
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            change = self.member.poll(0)
            if change is not None:
                with self.changed:
                    self.held -= change.lost | change.revoked
                    if change.revoked:
                        self.member.revoked(change.revoked)
                    self.held |= change.assigned
                    self.changed.notify_all()
            self.wake.wait(1.0)  # a consumer blocked in its fetch; the member's callback ends it
            self.wake.clear()

    def stop(self) -> None:
        self.running = False
        self.wake.set()
        self.thread.join()


def _owners(log_dir: str, group: str) -> dict[tuple[str, int], str]:
    db = sqlite3.connect(os.path.join(log_dir, "catalog.db"))
    try:
        return {
            (t, p): m
            for t, p, m in db.execute(
                "SELECT topic, partition, member_id FROM group_owners WHERE group_id=?", (group,)
            )
        }
    finally:
        db.close()


def _wait_until(changed: threading.Condition, drivers: list[Driver], timeout_s: float = 30.0) -> None:
    everything = {TopicPartition("t", p) for p in range(PARTITIONS)}
    deadline = time.monotonic() + timeout_s
    with changed:
        while True:
            held = [d.held for d in drivers]
            if set().union(*held) == everything and sum(map(len, held)) == PARTITIONS:
                return
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the group did not settle"
            changed.wait(remaining)


@pytest.mark.parametrize("strategy", ["cooperative-sticky", "range"])
def test_rebalance_after_clean_leave(benchmark, tmp_path, strategy):
    log_dir = str(tmp_path / "log")
    log = pylog.open(log_dir)
    log.create_topic("t", PARTITIONS)
    changed = threading.Condition()
    rounds: list[list[Driver]] = []
    timings: list[float] = []

    def setup():
        group = f"g{len(rounds)}"
        drivers = [Driver(log, group, strategy, changed) for _ in range(MEMBERS)]
        _wait_until(changed, drivers)
        leaver = drivers[-1]
        leaver.stop()  # its driver thread ends; the member itself is still in the group
        rounds.append(drivers)
        return (drivers,), {}

    def leave_and_rebalance(drivers):
        started = time.perf_counter()
        drivers[-1].member.close()
        _wait_until(changed, drivers[:-1])
        timings.append(time.perf_counter() - started)

    benchmark.pedantic(leave_and_rebalance, setup=setup, rounds=ROUNDS, iterations=1)
    for i, drivers in enumerate(rounds):
        survivors = drivers[:-1]
        owners = _owners(log_dir, f"g{i}")
        for d in survivors:
            assert {(tp.topic, tp.partition) for tp in d.held} == {
                k for k, m in owners.items() if m == d.member.member_id
            }
        assert len(owners) == PARTITIONS
        for d in survivors:
            d.stop()
            d.member.close()
    log.close()
    timings.sort()
    benchmark.extra_info.update(
        strategy=strategy,
        members=MEMBERS,
        partitions=PARTITIONS,
        rebalance_median_ms=timings[len(timings) // 2] * 1e3,
        rebalance_max_ms=timings[-1] * 1e3,
    )


@pytest.mark.parametrize("strategy", ["cooperative-sticky", "range"])
def test_rebalance_after_clean_leave_processes(benchmark, tmp_path, strategy):
    log_dir = str(tmp_path / "log")
    with pylog.open(log_dir) as log:
        log.create_topic("t", PARTITIONS)
    timings: list[float] = []
    env = same_pylog_env()
    groups = iter(range(10_000))

    def setup():
        group = f"g{next(groups)}"
        children = [
            subprocess.Popen(
                [sys.executable, str(CHILD), log_dir, group, strategy],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
                env=env,
            )
            for _ in range(MEMBERS)
        ]
        counts = dict.fromkeys(range(MEMBERS), 0)
        _read_until_settled(children, counts)
        return (children, counts), {}

    def leave_and_rebalance(children, counts):
        del counts[MEMBERS - 1]
        started = time.clock_gettime(time.CLOCK_MONOTONIC)
        children[-1].stdin.write("leave\n")
        children[-1].stdin.flush()
        finished = _read_until_settled(children, counts)
        timings.append(finished - started)
        spawned.append(children)

    spawned: list[list[subprocess.Popen]] = []
    benchmark.pedantic(leave_and_rebalance, setup=setup, rounds=max(ROUNDS // 3, 1), iterations=1)
    for children in spawned:
        for child in children:
            child.stdin.close()
            assert child.wait(30) == 0
            child.stdout.close()
    timings.sort()
    benchmark.extra_info.update(
        strategy=strategy,
        members=MEMBERS,
        partitions=PARTITIONS,
        rebalance_median_ms=timings[len(timings) // 2] * 1e3,
        rebalance_max_ms=timings[-1] * 1e3,
    )


def _read_until_settled(children, counts):
    """Children print ``held <count> <monotonic seconds>`` after every change of their holdings;
    ``counts`` (child index -> holdings) is updated until each child in it holds its even share of
    PARTITIONS (what both assignors give 2 or 3 members of one topic); returns the latest stamp."""
    share = PARTITIONS // len(counts)
    buffers = {i: b"" for i in counts}
    by_fd = {children[i].stdout.fileno(): i for i in counts}
    latest = 0.0
    while any(count != share for count in counts.values()):
        ready, _, _ = select.select(list(by_fd), [], [], 30)
        assert ready, "the group did not settle"
        for fd in ready:
            chunk = os.read(fd, 65536)
            assert chunk, "a member process died"
            i = by_fd[fd]
            buffers[i] += chunk
            *lines, buffers[i] = buffers[i].split(b"\n")
            for line in lines:
                _, count, at = line.split()
                counts[i] = int(count)
                latest = max(latest, float(at))
    return latest
