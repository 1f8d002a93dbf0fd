"""``pylog.forking``: a fork waits for pylog's background work, so a child never inherits a lock
held by a thread it does not have.

The bug this guards against: the cleaner's round was inside SQLite when a test forked, and the
child's first ``sqlite3.connect`` waited forever on a lock SQLite's copy in the child showed held.
The stress test below reproduces that without the gate (about one fork in seven hung in a run of
200 here); the others pin the gate's rules one by one.
"""

from __future__ import annotations

import faulthandler
import os
import sqlite3
import threading
import time

import pylog
from pylog import forking
from pylog.broker_config import BrokerConfig
from pylog.embedded.cleaner import Cleaner

#: a child that does not exit in this long prints its stacks and exits 1
CHILD_DEADLINE_S = 10.0
#: how long a test waits for a thread to reach the state it waits for
STATE_DEADLINE_S = 10.0


def fork_and_wait(child_body=lambda: None) -> int:
    """Fork; the child runs ``child_body`` under a deadline; the child's exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        faulthandler.dump_traceback_later(CHILD_DEADLINE_S, exit=True)
        code = 0
        try:
            child_body()
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + STATE_DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.001)


def test_a_child_never_inherits_sqlite_half_way_through_a_background_unit(tmp_path) -> None:
    path = str(tmp_path / "busy.db")
    with sqlite3.connect(path) as db:
        db.execute("create table t(a)")
    stop = threading.Event()

    def busy() -> None:  # what the cleaner and the heartbeat thread do: open, query, close
        while not stop.is_set():
            with forking.background_work():
                conn = sqlite3.connect(path)
                conn.execute("select count(*) from t").fetchone()
                conn.close()

    def child() -> None:
        conn = sqlite3.connect(path)
        conn.execute("select count(*) from t").fetchone()
        conn.close()

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        codes = [fork_and_wait(child) for _ in range(100)]
    finally:
        stop.set()
        thread.join()
    assert codes == [0] * 100


class NoPartitions:
    """A cleaner's source that is never asked for anything (the cleaner is not started)."""


def test_a_fork_waits_for_the_unit_in_progress_and_tells_long_work_to_stop() -> None:
    entered, release = threading.Event(), threading.Event()
    forked: list[int] = []
    source = NoPartitions()
    cleaner = Cleaner(source, BrokerConfig())  # type: ignore[arg-type]

    def unit() -> None:
        with forking.background_work():
            entered.set()
            release.wait()

    def fork() -> None:
        forked.append(fork_and_wait())

    worker = threading.Thread(target=unit)
    worker.start()
    entered.wait()
    assert not cleaner._cancel.is_set()
    forker = threading.Thread(target=fork)
    forker.start()
    wait_until(forking.fork_pending, "the fork waits")
    assert cleaner._cancel.is_set()  # a compaction in progress stops at its next safe point
    assert forked == []  # still waiting for the unit
    release.set()
    forker.join()
    worker.join()
    assert forked == [0]
    assert not forking.fork_pending()
    assert not cleaner._cancel.is_set()


def test_a_unit_does_not_start_while_a_fork_waits() -> None:
    entered, release = threading.Event(), threading.Event()
    pending_inside_late_unit: list[bool] = []

    def first() -> None:
        with forking.background_work():
            entered.set()
            release.wait()

    def late() -> None:
        with forking.background_work():
            pending_inside_late_unit.append(forking.fork_pending())

    holder = threading.Thread(target=first)
    holder.start()
    entered.wait()
    forker = threading.Thread(target=fork_and_wait)
    forker.start()
    wait_until(forking.fork_pending, "the fork waits")
    latecomer = threading.Thread(target=late)
    latecomer.start()
    # the forker and the latecomer both wait on the gate (white box: the condition's waiters)
    wait_until(lambda: len(forking._gate.cond._waiters) >= 2, "the late unit waits")  # type: ignore[attr-defined]
    assert pending_inside_late_unit == []
    release.set()
    for thread in (forker, latecomer, holder):
        thread.join()
    assert pending_inside_late_unit == [False]  # it ran once the fork was done


def test_a_fork_from_inside_a_unit_does_not_wait_for_itself_and_the_child_can_leave_it() -> None:
    def child() -> None:
        with forking.background_work():  # the child's gate is its own
            pass

    with forking.background_work():
        code = fork_and_wait(child)
    assert code == 0
    assert fork_and_wait(child) == 0


def test_the_cleaner_inherited_by_a_child_is_stopped_there(tmp_path) -> None:
    log = pylog.open(str(tmp_path / "log"))
    try:
        cleaner = log._backend._cleaner  # the embedded backend's cleaner, running here
        assert cleaner.running

        def child() -> None:
            assert not cleaner.running
            cleaner.stop()  # returns at once: no thread to join, a fresh stop event

        assert fork_and_wait(child) == 0
        assert cleaner.running
    finally:
        log.close()
