"""Recovery after a crash (``recovery-after-kill``): a writer child process (pylog/bench_processes.py
``crash-writer``, native engine, ``acks=1``-like appends to the OS, never flushed) is SIGKILLed
while appending; then the timed ``open_partition`` recovers the partition: it finds no clean
shutdown marker, so it scans and checks every batch after the last recovery point (CRC,
structure) and truncates a torn tail. Megabytes of log on disk per second of open.

Checked: every record the child had reported written before the kill is there after recovery,
the end offset is a whole number of batches, and the last record reads back. A real kill, not
simulated: what the page cache holds survives a process crash, and the engine must find it.
No baselines (os.write has no recovery; sqlite3's WAL replay is a different shape of work).

The engine's WARNING that it cut the torn tail (``pylog.recovery``) is the expected outcome here,
not news for whoever runs the benchmark: it is captured during the open instead of printed
between the progress bar's lines.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator

from pylog.bench.measure import BATCH_RECORDS
from pylog.bench.model import Context, Sample, Scale, Workload
from pylog.bench_processes import spawn
from pylog.engine import open_partition


@contextlib.contextmanager
def recovery_warnings_captured() -> Iterator[list[logging.LogRecord]]:
    """``pylog.recovery``'s records during the block, into the yielded list instead of stderr."""
    logger = logging.getLogger("pylog.recovery")
    captured: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = captured.append  # type: ignore[method-assign]
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield captured
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def crash_and_recover(path: str, engine: str, target_bytes: int) -> Sample:
    with spawn("crash-writer", path, "native", target_bytes) as child:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        if len(line) != 2 or line[0] != "ready":
            raise RuntimeError("the crash-writer process failed")
        written = int(line[1])
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path) if f.endswith(".log"))
    with recovery_warnings_captured():
        t0 = time.perf_counter()
        log = open_partition(path, engine=engine)
        elapsed = time.perf_counter() - t0
    try:
        end = log.end_offset
        last = list(log.records(end - 1, end))
        ok = end >= written and end % BATCH_RECORDS == 0 and len(last) == 1 and last[0].offset == end - 1
    finally:
        log.close()
    return Sample(size / 1e6, elapsed, ok)


def workloads(scale: Scale) -> list[Workload]:
    def engine(name: str):
        def run(ctx: Context) -> Sample:
            return crash_and_recover(ctx.path("partition-0"), name, scale.recovery_bytes)

        return run

    return [
        Workload(
            name="recovery-after-kill",
            title=f"open after SIGKILL of a writer, {scale.recovery_bytes >> 20} MiB unflushed",
            group="recovery",
            unit="MB/s",
            higher_is_better=True,
            contenders={"native": engine("native"), "reference": engine("reference")},
        )
    ]
