"""The benchmark's data model: what one timed run returns, what a workload is, how big runs are.

- ``Sample(amount, seconds, ok)``: one timed run of a throughput contender; ``rate`` is
  ``amount / seconds`` (records, bytes, seeks... per second, as the workload's unit says, before
  its ``divisor``); ``ok`` is the run's own check of its result (counts, offsets, contents).
- ``LatencySample(percentiles_us, ok)``: one run of a latency contender, its percentiles in
  microseconds by name (``"p50"``, ``"p99"``, ``"p99.9"``); each name becomes a row (metric).
- ``Workload``: a kebab-case ``name`` (the ``--workload`` value), a table ``title``, a ``group``
  (``produce``, ``durable``, ``consume``, ``seek``, ``compaction``, ``latency``, ``recovery``,
  ``scaling``), the ``unit`` its figures are shown in (``rate / divisor`` for throughput),
  ``higher_is_better``, and ``contenders``: contender name -> a function of a ``Context`` doing
  one timed run. Contender names: ``native``, ``reference``, ``os.write``, ``sqlite3``,
  ``twainmq``. An optional ``setup(ctx)`` runs once before the repetitions (building a log the
  readers share; it stores what it made in ``ctx.shared``); ``note`` is printed under the table.
- ``Context``: a fresh ``work_dir`` per timed run (removed after it), the workload's
  ``shared_dir`` and ``shared`` dict (made by ``setup``, kept across its runs), and the ``Scale``.
- ``Scale``: how much work each workload does (``Scale.quick()``: the smoke size, ``Scale()``: the default
  suite); ``disk_bytes()`` is the peak temporary space the suite needs. The field names the
  pytest benchmarks of benchmarks/ read (``iterate_records_native``...) are kept.

Thread-safety: plain data, made and read by the runner's one thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: the contenders, in the table's column order; baselines are every one but the two engines
CONTENDERS = ("native", "reference", "os.write", "sqlite3", "twainmq")
ENGINES = ("native", "reference")
BASELINES = ("os.write", "sqlite3", "twainmq")
#: the baselines a user would pick instead of pylog (os.write is the ceiling, not an alternative)
ALTERNATIVES = ("sqlite3", "twainmq")
GROUPS = ("produce", "durable", "consume", "seek", "compaction", "latency", "recovery", "scaling")


@dataclass(frozen=True)
class Sample:
    """One timed run: how much work, how long, and whether its result checked out."""

    amount: float
    seconds: float
    ok: bool = True

    @property
    def rate(self) -> float:
        return self.amount / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class LatencySample:
    """One latency run: percentiles in microseconds by name (``p50``, ``p99``, ``p99.9``)."""

    percentiles_us: dict[str, float]
    ok: bool = True


@dataclass
class Scale:
    """How much work each workload does. Engine-specific counts exist because the reference
    engine is many times slower: every figure is a rate, so a smaller run compares fairly."""

    #: the ``--quick`` suite (bench-extras' scaling picks its log sizes from it)
    is_quick: bool = False
    repeat: int = 5
    #: producer: records per send()/send_batch() run (reference: a tenth)
    produce_records_native: int = 50_000
    produce_records_reference: int = 5_000
    #: durable produce: acknowledged (fsynced) records per thread and run
    durable_records_per_thread: int = 40
    #: consumer poll()/records()
    iterate_records_native: int = 400_000
    iterate_records_reference: int = 40_000
    #: consumer: the records the sqlite3 baseline reads (it is 5-10x slower than native)
    sqlite_read_records: int = 200_000
    #: consumer poll_columns()/read_columns()
    columns_records_native: int = 1_000_000
    columns_records_reference: int = 100_000
    #: seeks: the log (ten-record batches) and the seeks per run
    random_log_batches: int = 20_000
    random_reads_native: int = 5_000
    random_reads_reference: int = 1_000
    #: compaction: keyed records (keys: a tenth) per run (reference: a tenth)
    compaction_records_native: int = 200_000
    compaction_records_reference: int = 20_000
    #: recovery: bytes the crashed writer leaves unflushed
    recovery_bytes: int = 128 << 20
    #: latency: records per run (one in flight at a time)
    wakeup_rounds: int = 2_000

    @classmethod
    def quick(cls) -> Scale:
        """The ``--quick`` suite: a smoke test (under a minute), not a measurement."""
        return cls(
            is_quick=True,
            repeat=3,
            produce_records_native=5_000,
            produce_records_reference=1_000,
            durable_records_per_thread=5,
            iterate_records_native=20_000,
            iterate_records_reference=4_000,
            columns_records_native=40_000,
            columns_records_reference=4_000,
            random_log_batches=1_000,
            random_reads_native=1_000,
            random_reads_reference=200,
            compaction_records_native=10_000,
            compaction_records_reference=2_000,
            recovery_bytes=4 << 20,
            wakeup_rounds=60,
            sqlite_read_records=10_000,
        )

    def disk_bytes(self) -> int:
        """Peak temporary space: the largest workload's files at once, with headroom."""
        record_bytes = 100 + 16
        produce = 3 * self.produce_records_native * (1024 + 16)  # 1 KiB values, + os.write copy
        reads = 2 * max(self.iterate_records_native, self.columns_records_native) * record_bytes
        compaction = 3 * self.compaction_records_native * (record_bytes + 16)
        return int(1.25 * max(produce, reads, compaction, 2 * self.recovery_bytes)) + (32 << 20)


@dataclass
class Context:
    """What a contender's run gets: a fresh ``work_dir``, the workload's shared state, the scale."""

    scale: Scale
    work_dir: str
    shared_dir: str
    shared: dict[str, Any] = field(default_factory=dict)

    def path(self, name: str) -> str:
        """``name`` inside this run's work directory."""
        return os.path.join(self.work_dir, name)

    def records(self, contender: str, native: int, reference: int) -> int:
        """The reference engine's smaller count for it, the native one for everyone else."""
        return reference if contender == "reference" else native


Contender = Callable[[Context], "Sample | LatencySample"]


@dataclass
class Workload:
    """One line (throughput) or one line per percentile (latency) of the table."""

    name: str
    title: str
    group: str
    unit: str
    higher_is_better: bool
    contenders: dict[str, Contender]
    #: the table shows ``rate / divisor`` in ``unit`` (e.g. 1e6 for "M rec/s")
    divisor: float = 1.0
    setup: Callable[[Context], None] | None = None
    note: str = ""
    #: metric names of a latency workload (its rows), in order
    metrics: tuple[str, ...] = ("throughput",)

    def __post_init__(self) -> None:
        unknown = set(self.contenders) - set(CONTENDERS)
        if unknown or self.group not in GROUPS:
            raise ValueError(f"workload {self.name}: unknown contender(s) {unknown} or group {self.group}")


@dataclass
class Row:
    """One row of the table and of the JSON document's ``rows`` (pylog/bench/report.py): one
    metric of one workload, every contender's median, the per-run values and the ratios."""

    workload: str
    title: str
    group: str
    metric: str
    unit: str
    higher_is_better: bool
    figures: dict[str, float] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    #: ``"native/<contender>"`` -> native's figure / that contender's (as the name says, also for
    #: latencies, where below 1 means native is faster), and ``"native/best-baseline"``
    ratios: dict[str, float] = field(default_factory=dict)
    #: the alternative ``native/best-baseline`` compares with (the faster of sqlite3 and twainmq)
    best_baseline: str | None = None
    #: False when any contender's run failed its check or raised (the exit code is then 1)
    ok: bool = True
    #: the contenders whose runs failed or raised (all of them when the setup failed): their
    #: cells, and the ratios involving them, say ``wrong``; the others' figures still stand
    failed: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def label(self) -> str:
        """The table's first column: the workload name, and the metric unless it is throughput."""
        return self.workload if self.metric == "throughput" else f"{self.workload} {self.metric}"
