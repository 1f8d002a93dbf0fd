"""``pylog bench``: the engine's main workloads, native vs reference vs plain baselines, one run.

Every figure is the median of the same number of runs for every contender, on fresh temporary
directories (page cache, no fsync), and every ratio compares numbers measured in this same run, so
a noisy 2-core machine still gives honest ratios. Each run also checks its result (record counts,
bytes, offsets); a failed check turns that row's figures into ``wrong``.

Workloads (records of 100-byte values, no keys):
- append:       1,000-record batches via ``append``; baselines: ``os.write`` of the same encoded
                bytes in 1 MiB chunks, and sqlite3 ``executemany`` inserts (WAL, synchronous=OFF);
                then the share of ``os.write`` at the same call size, measured call by call
                (append one batch, ``os.write`` its bytes to another file), the stable measure.
- records():    iterate every record of the log.
- read_columns: columnar reads in 100,000-record slices, payload bytes per second.
- random read:  ``read(offset, 1)`` at random offsets of a log of 200,000 ten-record batches, once
                in one active segment (pread) and once in small sealed segments (mmap).
- recovery:     open after an unclean shutdown (no marker, no checkpoint): CRC scan of the log.
- wake-up:      another process blocks in ``wait_for``; latency from ``append`` returning here to
                ``wait_for`` returning there (p50 and p99 of each run, medians over runs).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from pylog.bench_processes import spawn, wait_until_blocked
from pylog.engine import open_partition

VALUE_BYTES = 100
BATCH_RECORDS = 1000
OS_WRITE_CHUNK_BYTES = 1 << 20


@dataclass
class Scale:
    """How much work each workload does; ``quick`` is a smoke-test size."""

    append_batches_native: int = 1000
    append_batches_reference: int = 40
    iterate_records_native: int = 1_000_000
    iterate_records_reference: int = 100_000
    columns_records_native: int = 2_000_000
    columns_records_reference: int = 100_000
    random_log_batches: int = 200_000
    random_reads_native: int = 200_000
    random_reads_reference: int = 10_000
    recovery_bytes: int = 1 << 30
    wakeup_rounds: int = 200
    repeat: int = 5

    def disk_bytes(self) -> int:
        """Peak temporary space: the largest log at once plus its os.write copy, with headroom."""
        record_bytes = VALUE_BYTES + 10
        append = 2 * self.append_batches_native * BATCH_RECORDS * record_bytes
        reads = max(self.iterate_records_native, self.columns_records_native) * record_bytes
        random_reads = self.random_log_batches * (61 + 10 * record_bytes)
        return int(1.25 * max(append, reads, random_reads, self.recovery_bytes)) + (16 << 20)

    @classmethod
    def quick(cls) -> Scale:
        return cls(
            append_batches_native=40,
            append_batches_reference=4,
            iterate_records_native=20_000,
            iterate_records_reference=4_000,
            columns_records_native=40_000,
            columns_records_reference=4_000,
            random_log_batches=2_000,
            random_reads_native=2_000,
            random_reads_reference=500,
            recovery_bytes=8 << 20,
            wakeup_rounds=10,
            repeat=3,
        )


class Sample(NamedTuple):
    """One timed run: how much work (bytes, records, reads), how long, and its own check."""

    amount: float
    seconds: float
    ok: bool


@dataclass
class Row:
    """One line of the table: a workload measured on each engine and its baselines."""

    workload: str
    unit: str
    native: float | None = None
    reference: float | None = None
    baselines: dict[str, float] = field(default_factory=dict)
    target: str = ""
    correct: bool = True
    #: latencies: the native/ref column then says how many times lower native's figure is
    lower_is_better: bool = False

    @property
    def speedup(self) -> float | None:
        """native/reference (reference/native for latencies); None when a ratio means nothing:
        a latency at or below zero (a waiter woken before the writer's call returned)."""
        if not (self.native and self.reference) or (
            self.lower_is_better and min(self.native, self.reference) <= 0
        ):
            return None
        return self.reference / self.native if self.lower_is_better else self.native / self.reference


class Progress:
    """A one-line progress display on stderr (a new line per step when not a terminal)."""

    def __init__(self, total: int, stream: Any = None):
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.started = time.perf_counter()

    def step(self, label: str) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.started
        width = 24
        filled = width * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (width - filled)
        line = f"[{bar}] {self.done:>2}/{self.total} {elapsed:6.1f}s  {label}"
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def settle_page_cache() -> None:
    """Write back dirty pages before a timed write run.

    why: after a few GB of writes the kernel throttles every writer to disk speed (dirty-page
    balancing), whichever one happens to run then; starting each write run from a clean state
    measures what this benchmark is about (handing bytes to the OS), for every contender alike.
    """
    os.sync()


def make_values(count: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(VALUE_BYTES) for _ in range(count)]


def median_rate(runs: list[tuple[float, float]]) -> float:
    """Median of amount/seconds over runs given as (amount, seconds)."""
    return statistics.median(amount / seconds for amount, seconds in runs if seconds > 0)


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


def log_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path) if f.endswith(".log"))


class Bench:
    def __init__(self, root: str, scale: Scale, progress: Progress | None = None):
        self.root = root
        self.scale = scale
        self.progress = progress
        self.values = make_values(BATCH_RECORDS)
        self._dirs = 0

    def fresh_dir(self, name: str) -> str:
        self._dirs += 1
        path = os.path.join(self.root, f"{name}-{self._dirs}")
        return path

    def step(self, label: str) -> None:
        if self.progress:
            self.progress.step(label)

    def measure(self, row: Row, label: str, run: Callable[[], Sample]) -> float:
        """Median rate of ``scale.repeat`` runs of ``run`` (the same count for every contender).
        A run whose own check fails marks the row ``wrong`` (the table says so) instead of
        stopping the benchmark."""
        samples = []
        for r in range(self.scale.repeat):
            self.step(f"{row.workload.strip(' .')}: {label} run {r + 1}")
            sample = run()
            row.correct &= sample.ok
            samples.append((sample.amount, sample.seconds))
        return median_rate(samples)

    def measure_value(self, row: Row, label: str, run: Callable[[], float | None]) -> float:
        """Median of ``scale.repeat`` figures from ``run`` (None: its own check failed)."""
        values = []
        for r in range(self.scale.repeat):
            self.step(f"{row.workload.strip(' .')}: {label} run {r + 1}")
            value = run()
            row.correct &= value is not None
            values.append(value or 0.0)
        return statistics.median(values)

    # -- append ---------------------------------------------------------------------------------
    def time_append(self, engine: str, batches: int) -> tuple[Sample, str]:
        path = self.fresh_dir(f"append-{engine}")
        values = self.values
        with open_partition(path, engine=engine) as log:
            settle_page_cache()
            t0 = time.perf_counter()
            for _ in range(batches):
                log.append(values)
            elapsed = time.perf_counter() - t0
            ok = log.end_offset == batches * BATCH_RECORDS
        return Sample(log_bytes(path), elapsed, ok), path

    def bench_append(self) -> Row:
        row = Row("append 1000-record batches", "MB/s")
        encoded: list[str] = []  # the first native log: the bytes the os.write baseline writes

        def native() -> Sample:
            sample, path = self.time_append("native", self.scale.append_batches_native)
            if encoded:
                shutil.rmtree(path)
            else:
                encoded.append(path)
            return sample

        def reference() -> Sample:
            sample, path = self.time_append("reference", self.scale.append_batches_reference)
            shutil.rmtree(path)
            return sample

        row.native = self.measure(row, "native", native) / 1e6
        row.baselines["os.write"] = (
            self.measure(row, "os.write", lambda: self.time_os_write(encoded[0])) / 1e6
        )
        row.reference = self.measure(row, "reference", reference) / 1e6
        # sqlite3 rows -> the encoded bytes the same records take in our batches
        bytes_per_record = log_bytes(encoded[0]) / (self.scale.append_batches_native * BATCH_RECORDS)
        sqlite_rows = self.measure(
            row, "sqlite3", lambda: self.time_sqlite(self.scale.append_batches_reference)
        )
        row.baselines["sqlite3"] = sqlite_rows * bytes_per_record / 1e6
        shutil.rmtree(encoded[0])
        return row

    def time_os_write(self, source_dir: str) -> Sample:
        """Write the bytes the native engine wrote, with plain os.write in 1 MiB chunks."""
        data = b"".join(
            Path(source_dir, f).read_bytes() for f in sorted(os.listdir(source_dir)) if f.endswith(".log")
        )
        view = memoryview(data)
        target = self.fresh_dir("oswrite") + ".bin"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            settle_page_cache()
            t0 = time.perf_counter()
            for start in range(0, len(view), OS_WRITE_CHUNK_BYTES):
                os.write(fd, view[start : start + OS_WRITE_CHUNK_BYTES])
            elapsed = time.perf_counter() - t0
        finally:
            os.close(fd)
        written = os.path.getsize(target)
        os.unlink(target)
        return Sample(len(data), elapsed, written == len(data))

    def time_sqlite(self, batches: int) -> Sample:
        """sqlite3 inserts of the same records, one transaction per 1,000-record batch.

        The amount is records; the caller converts them to the bytes the same records take in a
        RecordBatch, so all append figures are comparable MB/s of the same data.
        """
        path = self.fresh_dir("sqlite") + ".db"
        db = sqlite3.connect(path)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("CREATE TABLE records (offset INTEGER PRIMARY KEY, ts INTEGER, key BLOB, value BLOB)")
        offset = 0
        now = int(time.time() * 1000)
        settle_page_cache()
        t0 = time.perf_counter()
        for _ in range(batches):
            rows = [(offset + i, now, None, v) for i, v in enumerate(self.values)]
            offset += len(rows)
            with db:
                db.executemany("INSERT INTO records VALUES (?, ?, ?, ?)", rows)
        elapsed = time.perf_counter() - t0
        count = db.execute("SELECT count(*) FROM records").fetchone()[0]
        db.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.unlink(path + suffix)
        return Sample(batches * BATCH_RECORDS, elapsed, count == offset)

    # -- reads ----------------------------------------------------------------------------------
    def bench_records(self, path: str, total: int) -> Row:
        row = Row("records() iteration", "M rec/s", target=">= 5x ref")

        def iterate(engine: str, count: int) -> Sample:
            with open_partition(path, engine=engine) as log:
                t0 = time.perf_counter()
                n, last = 0, -1
                for rec in log.records(0, count):
                    n += 1
                    last = rec.offset
                elapsed = time.perf_counter() - t0
            return Sample(n, elapsed, n == count and last == count - 1)

        native = min(self.scale.iterate_records_native, total)
        reference = min(self.scale.iterate_records_reference, total)
        row.native = self.measure(row, "native", lambda: iterate("native", native)) / 1e6
        row.reference = self.measure(row, "reference", lambda: iterate("reference", reference)) / 1e6
        return row

    def bench_columns(self, path: str, total: int) -> Row:
        row = Row("read_columns() payload", "GB/s", target=">= 1 GB/s")

        def scan(engine: str, count: int) -> Sample:
            with open_partition(path, engine=engine) as log:
                t0 = time.perf_counter()
                offset, payload = 0, 0
                while offset < count:
                    cols = log.read_columns(offset, min(100_000, count - offset))
                    if len(cols.offsets) == 0:
                        break
                    payload += int(cols.value_offsets[-1])
                    offset = int(cols.offsets[-1]) + 1
                elapsed = time.perf_counter() - t0
            return Sample(payload, elapsed, offset == count and payload == count * VALUE_BYTES)

        native = min(self.scale.columns_records_native, total)
        reference = min(self.scale.columns_records_reference, total)
        row.native = self.measure(row, "native", lambda: scan("native", native)) / 1e9
        row.reference = self.measure(row, "reference", lambda: scan("reference", reference)) / 1e9
        return row

    def bench_random_reads(self, sealed: bool) -> Row:
        """Not ``sealed``: Kafka's default 1 GiB segments, so the whole log is the active segment
        (read with pread). ``sealed``: segments of an eighth of the log (at most 16 MiB), so
        nearly all reads hit sealed, mmapped segments (the zero-copy path)."""
        config: dict[str, int] = {}
        if sealed:
            log_size = self.scale.random_log_batches * (61 + 10 * (VALUE_BYTES + 10))
            config["segment.bytes"] = max(64 << 10, min(16 << 20, log_size // 8))
            row = Row(
                f"  ... sealed {config['segment.bytes'] >> 10} KiB segments",
                "k reads/s",
                target=">= 1,000k/s",
            )
        else:
            row = Row("random read(offset, 1)", "k reads/s")
        path = self.fresh_dir("random")
        self.step(f"{row.workload.strip(' .')}: building the log")
        end = fill_log(path, self.scale.random_log_batches, 10, self.values, **config)
        if sealed:
            row.correct &= len([f for f in os.listdir(path) if f.endswith(".log")]) > 4

        def lookups(engine: str, count: int) -> Sample:
            rng = random.Random(11)
            targets = [rng.randrange(end) for _ in range(count)]
            with open_partition(path, engine=engine, config=config or None) as log:
                read = log.read
                t0 = time.perf_counter()
                for offset in targets:
                    read(offset, 1)
                elapsed = time.perf_counter() - t0
                ok = True  # check a sample: the returned batch holds the offset
                for offset in targets[:50]:
                    buf = memoryview(log.read(offset, 1))
                    base = int.from_bytes(buf[0:8], "big")
                    ok &= base <= offset <= base + int.from_bytes(buf[23:27], "big")
            return Sample(count, elapsed, ok)

        native, reference = self.scale.random_reads_native, self.scale.random_reads_reference
        row.native = self.measure(row, "native", lambda: lookups("native", native)) / 1e3
        row.reference = self.measure(row, "reference", lambda: lookups("reference", reference)) / 1e3
        shutil.rmtree(path)
        return row

    def bench_recovery(self) -> Row:
        size_mib = self.scale.recovery_bytes >> 20
        row = Row(f"recovery of {size_mib} MiB unflushed", "GB/s", target=">= 1 GB/s")
        path = self.fresh_dir("recovery")
        self.step(f"{row.workload}: building the log")
        batch_bytes = BATCH_RECORDS * (VALUE_BYTES + 10) + 61
        batches = max(1, self.scale.recovery_bytes // batch_bytes)
        end = fill_log(path, batches, BATCH_RECORDS, self.values)
        size = log_bytes(path)

        def recover(engine: str) -> Sample:
            make_unclean(path)
            t0 = time.perf_counter()
            log = open_partition(path, engine=engine)
            elapsed = time.perf_counter() - t0
            ok = log.end_offset == end
            log.close()
            return Sample(size, elapsed, ok)

        row.native = self.measure(row, "native", lambda: recover("native")) / 1e9
        row.reference = self.measure(row, "reference", lambda: recover("reference")) / 1e9
        shutil.rmtree(path)
        return row

    def bench_append_interleaved(self) -> Row:
        """``append`` vs ``os.write`` of the same encoded batch, alternating call by call."""
        row = Row("  ... share of os.write, same call", "x", target=">= 0.6 (interleaved)")
        batches = {
            "native": self.scale.append_batches_native,
            "reference": self.scale.append_batches_reference,
        }

        def share(engine: str) -> float | None:
            root = self.fresh_dir(f"interleaved-{engine}")
            os.makedirs(root)
            try:
                result = interleaved_append(root, engine, batches[engine], self.values)
            finally:
                shutil.rmtree(root)
            return result.share if result.end_offset == (batches[engine] + 1) * BATCH_RECORDS else None

        row.native = self.measure_value(row, "native", lambda: share("native"))
        row.reference = self.measure_value(row, "reference", lambda: share("reference"))
        return row

    def bench_wakeup(self) -> list[Row]:
        """``append`` returning here to ``wait_for`` returning in another process (same engine)."""
        p50 = Row("wake-up in another process, p50", "us", target="<= 100 us", lower_is_better=True)
        p99 = Row("  ... p99", "us", target="<= 1000 us", lower_is_better=True)
        runs: dict[str, list[list[int]]] = {"native": [], "reference": []}

        def run(engine: str) -> float | None:
            path = self.fresh_dir(f"wakeup-{engine}")
            try:
                latencies = wakeup_latencies(path, engine, engine, self.scale.wakeup_rounds)
            finally:
                shutil.rmtree(path, ignore_errors=True)
            runs[engine].append(latencies)
            return percentile(latencies, 0.5) / 1e3 if len(latencies) == self.scale.wakeup_rounds else None

        p50.native = self.measure_value(p50, "native", lambda: run("native"))
        p50.reference = self.measure_value(p50, "reference", lambda: run("reference"))
        p99.native = statistics.median(percentile(r, 0.99) / 1e3 for r in runs["native"])
        p99.reference = statistics.median(percentile(r, 0.99) / 1e3 for r in runs["reference"])
        p99.correct = p50.correct
        return [p50, p99]

    def run(self) -> list[Row]:
        rows = [self.bench_append(), self.bench_append_interleaved()]
        path = self.fresh_dir("reads")
        self.step("reads: building the log")
        total = max(self.scale.iterate_records_native, self.scale.columns_records_native)
        batches = total // BATCH_RECORDS
        # a few segments, so reads cross segment boundaries and sealed segments are mmapped
        fill_log(path, batches, BATCH_RECORDS, self.values, **{"segment.bytes": 64 << 20})
        rows.append(self.bench_records(path, batches * BATCH_RECORDS))
        rows.append(self.bench_columns(path, batches * BATCH_RECORDS))
        shutil.rmtree(path)
        rows.append(self.bench_random_reads(sealed=False))
        rows.append(self.bench_random_reads(sealed=True))
        rows.append(self.bench_recovery())
        rows.extend(self.bench_wakeup())
        return rows

    def steps(self) -> int:
        """Progress steps of ``run``: every ``measure`` (18 contenders x repeat) and 4 builds."""
        return 18 * self.scale.repeat + 4


def make_unclean(path: str) -> None:
    """Leave the directory as a crash would: no clean-shutdown marker, no recovery point."""
    for name in (".kafka_cleanshutdown", "recovery-point-offset-checkpoint"):
        with_path = os.path.join(path, name)
        if os.path.exists(with_path):
            os.unlink(with_path)


def format_table(rows: list[Row]) -> str:
    header = f"{'workload':<32} {'unit':<9} {'native':>9} {'reference':>10} {'native/ref':>10}  baselines (native/baseline)  target"
    lines = [header, "-" * len(header)]
    for row in rows:

        def num(x: float | None) -> str:
            return "-" if x is None else f"{x:,.2f}" if x < 100 else f"{x:,.0f}"

        speed = "-" if row.speedup is None else f"{row.speedup:,.1f}x"
        base = ", ".join(
            f"{name} {num(value)} ({row.native / value:.2f})"
            if row.native and value
            else f"{name} {num(value)}"
            for name, value in row.baselines.items()
        )
        native = num(row.native)
        if not row.correct:  # a run's own check failed: no figure of this row means anything
            native, reference, speed = "wrong", "wrong", "wrong"
        else:
            reference = num(row.reference)
        lines.append(
            f"{row.workload:<32} {row.unit:<9} {native:>9} {reference:>10} {speed:>10}  {base or '-':<28} {row.target}"
        )
    return "\n".join(lines)


def main(directory: str | None, quick: bool, repeat: int | None, json_path: str | None) -> int:
    scale = Scale.quick() if quick else Scale()
    if repeat is not None:
        scale.repeat = repeat
    owned = directory is None
    root = tempfile.mkdtemp(prefix="pylog-bench-") if owned else directory
    assert root is not None
    os.makedirs(root, exist_ok=True)
    need = scale.disk_bytes()
    free = shutil.disk_usage(root).free
    if free < need:
        if owned:
            shutil.rmtree(root, ignore_errors=True)
        print(
            f"pylog bench: needs about {need >> 20} MiB free in {root}, found {free >> 20} MiB; "
            "use --dir on a larger file system, or --quick",
            file=sys.stderr,
        )
        return 2
    bench = Bench(root, scale)
    bench.progress = Progress(bench.steps())
    try:
        rows = bench.run()
    finally:
        bench.progress.finish()
        if owned:
            shutil.rmtree(root, ignore_errors=True)
    print(f"pylog bench: {VALUE_BYTES}-byte values, page cache, no fsync, medians of {scale.repeat} runs")
    print(format_table(rows))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(
                {"scale": asdict(scale), "rows": [asdict(r) | {"speedup": r.speedup} for r in rows]},
                f,
                indent=2,
            )
    return 0 if all(r.correct for r in rows) else 1
