"""Compaction: one full pass of the log cleaner over keyed records (``compaction``); input records
per second.

The dirty log (100-byte values, keys ``k%08d`` of ``i % keys`` with keys a tenth of the records,
so nine records in ten are obsolete; sealed segments of ``cleanup.policy=compact``) is written once
per workload and copied, untimed, for every run; the timed call is the partition's
``compact(now, map_bytes=128 MiB)`` (Kafka's default ``log.cleaner.dedupe.buffer.size``: one
pass), what ``pylog compact`` and the background cleaner run. Checked: one pass read every record
and kept exactly one per key. The reference engine compacts a tenth of the records.

Baseline: sqlite3 doing the same job on a table of the same rows: delete every row but the newest
per key, then ``VACUUM`` (compaction also gives the space back).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time

from pylog.bench import sqlite3_baseline
from pylog.bench.measure import settle_page_cache
from pylog.bench.model import Context, Sample, Scale, Workload
from pylog.engine import open_partition

TS = 1_700_000_000_000
NOW = TS + 10**9
MAP_BYTES = 128 << 20
BATCH = 100


def config(records: int) -> dict:
    # about eight sealed segments (at least 1 MiB: many batches each)
    return {"cleanup.policy": "compact", "segment.bytes": max(1 << 20, records * 130 // 8)}


def keyed(records: int) -> tuple[list[bytes], list[bytes]]:
    keys = records // 10
    value = os.urandom(92)
    return [value + b"%08d" % i for i in range(records)], [b"k%08d" % (i % keys) for i in range(records)]


def write_dirty_log(path: str, records: int) -> None:
    values, keys = keyed(records)
    with open_partition(path, engine="native", config=config(records)) as log:
        for start in range(0, records, BATCH):
            end = min(records, start + BATCH)
            log.append(
                values[start:end], keys=keys[start:end], timestamps_ms=[TS + i for i in range(start, end)]
            )
        log.roll()


def compact(template: str, target: str, engine: str, records: int) -> Sample:
    shutil.copytree(template, target)
    with open_partition(target, engine=engine, config=config(records)) as log:
        settle_page_cache()
        t0 = time.perf_counter()
        result = log.compact(NOW, map_bytes=MAP_BYTES)
        elapsed = time.perf_counter() - t0
        ok = result.passes == 1 and result.records_read == records and result.records_kept == records // 10
        ok &= log.end_offset == records
    return Sample(records, elapsed, ok)


def sqlite_compact(template: str, target: str, records: int) -> Sample:
    shutil.copyfile(template, target)
    db = sqlite3.connect(target)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")
        settle_page_cache()
        t0 = time.perf_counter()
        with db:
            db.execute(
                "DELETE FROM records WHERE offset NOT IN (SELECT max(offset) FROM records GROUP BY key)"
            )
        db.execute("VACUUM")
        elapsed = time.perf_counter() - t0
        kept = db.execute("SELECT count(DISTINCT key), count(*) FROM records").fetchone()
    finally:
        db.close()
    return Sample(records, elapsed, kept == (records // 10, records // 10))


def workloads(scale: Scale) -> list[Workload]:
    native_n, reference_n = scale.compaction_records_native, scale.compaction_records_reference

    def setup(ctx: Context) -> None:
        for name, n in (("native", native_n), ("reference", reference_n)):
            write_dirty_log(ctx.path(f"template-{name}/table-0"), n)
        values, keys = keyed(native_n)
        db = sqlite3_baseline.connect(ctx.path("template.db"))
        with db:
            db.executemany(
                "INSERT INTO records VALUES (?, ?, ?, ?)",
                zip(range(native_n), [TS] * native_n, keys, values, strict=True),
            )
        db.close()

    def engine(name: str):
        def run(ctx: Context) -> Sample:
            n = ctx.records(name, native_n, reference_n)
            return compact(f"{ctx.shared_dir}/template-{name}/table-0", ctx.path("table-0"), name, n)

        return run

    def sqlite(ctx: Context) -> Sample:
        return sqlite_compact(f"{ctx.shared_dir}/template.db", ctx.path("records.db"), native_n)

    return [
        Workload(
            name="compaction",
            title="compaction of keyed 100-byte records, 1 in 10 kept, one pass",
            group="compaction",
            unit="k rec/s",
            divisor=1e3,
            higher_is_better=True,
            setup=setup,
            contenders={"native": engine("native"), "reference": engine("reference"), "sqlite3": sqlite},
        )
    ]
