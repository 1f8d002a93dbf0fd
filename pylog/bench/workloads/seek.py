"""Random seeks: by offset (``consumer.seek`` then ``poll(max_records=1)``) and by timestamp
(``offsets_for_times``, ``seek`` to the offset found, ``poll(max_records=1)``), at random targets
of a log of ten-record batches in several sealed segments; seeks per second (``seek-offset``,
``seek-timestamp``).

Record ``i`` has timestamp ``TS + i``, so the answer to every seek is known: checked, every seek
returns the record at the target offset (by timestamp: the first record at or after the time).
The log is built once per workload; the reference engine does fewer seeks (rates compare).

Baseline: sqlite3 with the same records, a lookup by primary key (offset) and by an index on the
timestamp (``WHERE ts >= ? ORDER BY ts LIMIT 1``): what a B-tree gives. No os.write (no writes).
"""

from __future__ import annotations

import random
import time

import pylog
from pylog.bench import sqlite3_baseline
from pylog.bench.measure import make_values
from pylog.bench.model import Context, Sample, Scale, Workload
from pylog.types import TopicPartition

TOPIC = "seek"
TP = TopicPartition(TOPIC, 0)
TS = 1_700_000_000_000
BATCH = 10


def fill(path: str, batches: int, segment_bytes: int) -> list[bytes]:
    """The log at ``path``: ``batches`` ten-record batches, record i at time TS + i."""
    values = make_values(BATCH)
    with pylog.open(path, engine="native") as log:
        log.create_topic(TOPIC, 1, {"segment.bytes": segment_bytes})
        handle = log._backend.partition_log(TP)
        for b in range(batches):
            handle.append(values, timestamps_ms=[TS + b * BATCH + i for i in range(BATCH)])
    return values


def targets(end: int, count: int) -> list[int]:
    rng = random.Random(11)
    return [rng.randrange(end) for _ in range(count)]


def seek(path: str, engine: str, offsets: list[int], *, by_timestamp: bool) -> Sample:
    with pylog.open(path, engine=engine, auto_create_topics=False) as log:
        consumer = log.consumer(enable_auto_commit=False)
        consumer.assign([TP])
        wrong = 0
        position, poll, offsets_for_times = consumer.seek, consumer.poll, consumer.offsets_for_times
        t0 = time.perf_counter()
        if by_timestamp:
            for target in offsets:
                found = offsets_for_times({TP: TS + target})[TP]
                position(TP, found.offset)
                record = poll(max_records=1)[TP][0]
                wrong += record.offset != target or record.timestamp != TS + target
        else:
            for target in offsets:
                position(TP, target)
                wrong += poll(max_records=1)[TP][0].offset != target
        elapsed = time.perf_counter() - t0
        consumer.close()
    return Sample(len(offsets), elapsed, wrong == 0)


def sqlite_seek(path: str, offsets: list[int], *, by_timestamp: bool) -> Sample:
    db = sqlite3_baseline.connect(path)
    try:
        wrong = 0
        execute = db.execute
        t0 = time.perf_counter()
        if by_timestamp:
            for target in offsets:
                row = execute(
                    "SELECT offset, ts, key, value FROM records WHERE ts >= ? ORDER BY ts LIMIT 1",
                    (TS + target,),
                ).fetchone()
                wrong += row[0] != target
        else:
            for target in offsets:
                row = execute(
                    "SELECT offset, ts, key, value FROM records WHERE offset = ?", (target,)
                ).fetchone()
                wrong += row[0] != target
        elapsed = time.perf_counter() - t0
    finally:
        db.close()
    return Sample(len(offsets), elapsed, wrong == 0)


def _workload(scale: Scale, by_timestamp: bool) -> Workload:
    batches = scale.random_log_batches
    end = batches * BATCH
    log_bytes = batches * (61 + BATCH * 110)
    segment_bytes = max(64 << 10, min(16 << 20, log_bytes // 8))  # about eight segments

    def setup(ctx: Context) -> None:
        values = fill(ctx.path("log"), batches, segment_bytes)
        sqlite3_baseline.fill(
            ctx.path("records.db"), [values[i % BATCH] for i in range(end)], [TS + i for i in range(end)]
        )

    def engine(name: str):
        def run(ctx: Context) -> Sample:
            count = ctx.records(name, scale.random_reads_native, scale.random_reads_reference)
            return seek(f"{ctx.shared_dir}/log", name, targets(end, count), by_timestamp=by_timestamp)

        return run

    def sqlite(ctx: Context) -> Sample:
        offsets = targets(end, scale.random_reads_native)
        return sqlite_seek(f"{ctx.shared_dir}/records.db", offsets, by_timestamp=by_timestamp)

    what = "offsets_for_times + seek + poll(1)" if by_timestamp else "seek + poll(1)"
    return Workload(
        name="seek-timestamp" if by_timestamp else "seek-offset",
        title=f"random {what}, {end:,} records in about 8 segments",
        group="seek",
        unit="k seeks/s",
        divisor=1e3,
        higher_is_better=True,
        setup=setup,
        contenders={"native": engine("native"), "reference": engine("reference"), "sqlite3": sqlite},
    )


def workloads(scale: Scale) -> list[Workload]:
    return [_workload(scale, False), _workload(scale, True)]
