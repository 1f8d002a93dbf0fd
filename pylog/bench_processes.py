"""Child processes of the coordination benchmarks (``python -m pylog.bench_processes ROLE ...``).

Used by ``pylog bench`` and benchmarks/test_bench_coordination.py; one role per process:

- ``waiter PATH ENGINE ROUNDS``: for each round, reads the offset to wait for from stdin, says
  ``ready`` on stdout, blocks in ``wait_for`` and reports the ``time.perf_counter_ns()`` at which
  it returned. ``CLOCK_MONOTONIC`` (perf_counter) is one clock for
  every process of the machine, so the parent subtracts its own append-return time.
- ``idle PATH ENGINE MS``: one ``wait_for`` that times out after MS ms with no appends; reports
  the CPU time of the waiting thread (a polling waiter burns CPU, a woken one does not).
- ``appender PATH ENGINE SECONDS``: appends 10-record batches in a tight loop after ``go`` on
  stdin, and reports how many appends it made, its longest single append (an upper bound of the
  wait for the writer lock: it also holds the append's own work and any preemption of the
  process) and the longest writer-lock wait itself as the engine measured it
  (``take_longest_writer_lock_wait_ns``; -1 from an engine without that diagnostic, the reference).
- ``tail-consumer PATH ENGINE ROUNDS`` (``pylog bench``'s two-process latency): a consumer of
  partition 0 of topic ``lat`` of the log at PATH, from its end; says ``ready``, then for each
  record that ``poll`` returns prints ``got <perf_counter_ns>``; exits 1 if a record is missing,
  repeated or out of order, 0 after ROUNDS records.
- ``crash-writer PATH ENGINE BYTES`` (``pylog bench``'s recovery): appends 1,000-record batches
  to the partition at PATH until its log holds BYTES, says ``ready <end offset>``, and goes on
  appending until it is killed (the parent SIGKILLs it mid-append, a real crash).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from pylog.engine import open_partition


def same_pylog_env() -> dict[str, str]:
    """The environment for a child Python process that must import the same pylog as this one
    (benchmarks and tests spawn such children): the directory holding this pylog package first on
    ``PYTHONPATH``. Why: a source checkout without its built extension (CI runs the installed
    package from a clone) must never shadow it; start the child with ``-P`` or a script path, so
    that the working directory is not put first either."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    return env


@contextlib.contextmanager
def spawn(role: str, *args: object) -> Iterator[subprocess.Popen]:
    """A child process in ``role``; killed if still running at exit, its pipes closed."""
    env = same_pylog_env()
    with subprocess.Popen(
        # why -P: `-m` would put the working directory first on sys.path, so a source checkout
        # there (without its built extension) would shadow the pylog this process runs
        [sys.executable, "-P", "-m", "pylog.bench_processes", role, *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as child:
        try:
            yield child
        finally:
            if child.poll() is None:
                child.kill()


def _sleeping(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "S"


def wait_until_blocked(pid: int, timeout_s: float = 10.0) -> None:
    """Return once the process's main thread sleeps in the kernel (state S in /proc, Linux).

    why twice: between printing ``ready`` and entering ``wait_for`` the thread can sleep briefly
    on its stdout pipe; a second look a moment later confirms it is the wait itself.
    """
    deadline = time.monotonic() + timeout_s
    for look in range(2):
        if look:
            time.sleep(0.002)
        while not _sleeping(pid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"process {pid} never blocked")


def waiter(path: str, engine: str, rounds: int) -> None:
    with open_partition(path, engine=engine) as log:
        for _ in range(rounds):
            offset = int(sys.stdin.readline())
            print("ready", flush=True)
            woke = log.wait_for(offset, 10_000)
            print(f"{int(woke)} {time.perf_counter_ns()}", flush=True)


def idle(path: str, engine: str, ms: int) -> None:
    with open_partition(path, engine=engine) as log:
        end = log.end_offset
        print("ready", flush=True)
        # why the thread's CPU time: the waiting happens on this thread (both engines); the
        # process total also counts numpy's OpenBLAS worker threads, which spin on their own
        cpu = time.thread_time_ns()
        woke = log.wait_for(end, ms)
        print(f"{int(woke)} {time.thread_time_ns() - cpu}", flush=True)


def appender(path: str, engine: str, seconds: float) -> None:
    values = [b"x" * 100] * 10
    with open_partition(path, engine=engine) as log:
        print("ready", flush=True)
        sys.stdin.readline()
        take_lock_wait = getattr(log, "take_longest_writer_lock_wait_ns", lambda: -1)
        take_lock_wait()  # why: from here on, the waits of the loop alone (not the open's)
        count, longest = 0, 0
        stop = time.perf_counter_ns() + int(seconds * 1e9)
        while True:
            t0 = time.perf_counter_ns()
            if t0 >= stop:
                break
            log.append(values)
            longest = max(longest, time.perf_counter_ns() - t0)
            count += 1
        lock_wait = take_lock_wait()
        print(f"{count} {longest} {lock_wait}", flush=True)


def tail_consumer(path: str, engine: str, rounds: int) -> int:
    import pylog
    from pylog.types import TopicPartition

    tp = TopicPartition("lat", 0)
    with pylog.open(path, engine=engine, auto_create_topics=False) as log:
        consumer = log.consumer(auto_offset_reset="latest", enable_auto_commit=False)
        consumer.assign([tp])
        consumer.poll()
        expected = consumer.position(tp)
        print("ready", flush=True)
        seen = 0
        while seen < rounds:
            fetched = consumer.poll(timeout_ms=1000)
            if fetched:
                now = time.perf_counter_ns()
                if [r.offset for r in fetched[tp]] != [expected]:
                    return 1
                expected += 1
                seen += 1
                print(f"got {now}", flush=True)
        consumer.close()
    return 0


def crash_writer(path: str, engine: str, target_bytes: int) -> None:
    values = [bytes(range(100))] * 1000
    with open_partition(path, engine=engine) as log:
        while True:
            log.append(values)
            if log.end_offset * 110 >= target_bytes:
                break
        print(f"ready {log.end_offset}", flush=True)
        while True:  # until killed: the crash lands in the middle of appends
            log.append(values)


if __name__ == "__main__":
    role, path, engine, arg = sys.argv[1:5]
    if role == "waiter":
        waiter(path, engine, int(arg))
    elif role == "idle":
        idle(path, engine, int(arg))
    elif role == "appender":
        appender(path, engine, float(arg))
    elif role == "tail-consumer":
        sys.exit(tail_consumer(path, engine, int(arg)))
    elif role == "crash-writer":
        crash_writer(path, engine, int(arg))
    else:
        raise SystemExit(f"unknown role {role}")
