"""Consumer workloads: ``poll()`` (a ``ConsumerRecord`` per record) and ``poll_columns()`` (numpy
columns, no object per record) from the beginning of a one-partition log of 100-byte values, in
polls of 10,000 records; records per second (``poll``, ``poll-columns``).

The log is written once per workload (native engine, 1,000-record batches, 64 MiB segments so
reads cross sealed, mmapped segments) and read by every run; the reference engine reads a prefix
of it, sqlite3 at most ``sqlite_read_records`` (rates compare). Checked: every record seen once, in order (the offsets), and for
columns the payload bytes.

Baselines: sqlite3 reading the same records in offset order, 10,000 rows per query (the table's
offset is its rowid); twainmq when installed. No os.write: nothing is written.
"""

from __future__ import annotations

import time

import pylog
from pylog.bench import sqlite3_baseline
from pylog.bench.measure import BATCH_RECORDS, VALUE_BYTES, make_values
from pylog.bench.model import Context, Sample, Scale, Workload
from pylog.bench.workloads import with_twainmq
from pylog.types import TopicPartition

TOPIC = "consume"
TP = TopicPartition(TOPIC, 0)
POLL_RECORDS = 10_000
SEGMENT_BYTES = 64 << 20
TS = 1_700_000_000_000


def fill(path: str, values: list[bytes], records: int) -> None:
    """A log at ``path`` whose partition 0 holds ``records`` records cycling over ``values``."""
    with pylog.open(path, engine="native") as log:
        log.create_topic(TOPIC, 1, {"segment.bytes": SEGMENT_BYTES})
        handle = log._backend.partition_log(TP)
        while handle.end_offset < records:
            handle.append(values[: min(BATCH_RECORDS, records - handle.end_offset)])


def consume(path: str, engine: str, records: int, *, columns: bool) -> Sample:
    """Poll ``records`` records from offset 0 of the log at ``path``, timed."""
    with pylog.open(path, engine=engine, auto_create_topics=False) as log:
        consumer = log.consumer(max_poll_records=POLL_RECORDS, enable_auto_commit=False)
        consumer.assign([TP])
        consumer.seek(TP, 0)
        ok, count, payload = True, 0, 0
        t0 = time.perf_counter()
        if columns:
            poll_columns = consumer.poll_columns
            while count < records:
                cols = poll_columns(max_records=min(POLL_RECORDS, records - count))[TP]
                ok &= int(cols.offsets[0]) == count
                count += len(cols.offsets)
                payload += int(cols.value_offsets[-1])
        else:
            poll = consumer.poll
            while count < records:
                batch = poll(max_records=min(POLL_RECORDS, records - count))[TP]
                ok &= batch[0].offset == count and batch[-1].offset == count + len(batch) - 1
                count += len(batch)
        elapsed = time.perf_counter() - t0
        consumer.close()
    ok &= count == records and (not columns or payload == records * VALUE_BYTES)
    return Sample(count, elapsed, ok)


def sqlite_consume(path: str, records: int) -> Sample:
    db = sqlite3_baseline.connect(path)
    try:
        count, last = 0, -1
        t0 = time.perf_counter()
        while count < records:
            rows = db.execute(
                "SELECT offset, ts, key, value FROM records WHERE offset >= ? ORDER BY offset LIMIT ?",
                (count, min(POLL_RECORDS, records - count)),
            ).fetchall()
            if not rows:
                break
            count += len(rows)
            last = rows[-1][0]
        elapsed = time.perf_counter() - t0
    finally:
        db.close()
    return Sample(count, elapsed, count == records and last == records - 1)


def _workload(scale: Scale, columns: bool) -> Workload:
    if columns:
        native_n, reference_n = scale.columns_records_native, scale.columns_records_reference
    else:
        native_n, reference_n = scale.iterate_records_native, scale.iterate_records_reference

    sqlite_n = min(native_n, scale.sqlite_read_records)

    def setup(ctx: Context) -> None:
        values = make_values(BATCH_RECORDS)
        fill(ctx.path("log"), values, native_n)
        records = [values[i % BATCH_RECORDS] for i in range(native_n)]
        sqlite3_baseline.fill(ctx.path("records.db"), records[:sqlite_n], [TS] * sqlite_n)
        ctx.shared["values"] = records

    def engine(name: str):
        def run(ctx: Context) -> Sample:
            n = ctx.records(name, native_n, reference_n)
            return consume(f"{ctx.shared_dir}/log", name, n, columns=columns)

        return run

    def sqlite(ctx: Context) -> Sample:
        return sqlite_consume(f"{ctx.shared_dir}/records.db", sqlite_n)

    return Workload(
        name="poll-columns" if columns else "poll",
        title=f"consumer {'poll_columns()' if columns else 'poll()'} from the beginning, 100-byte values",
        group="consume",
        unit="M rec/s",
        divisor=1e6,
        higher_is_better=True,
        setup=setup,
        contenders=with_twainmq(
            {"native": engine("native"), "reference": engine("reference"), "sqlite3": sqlite},
            "consume",
            columns=columns,
        ),
    )


def workloads(scale: Scale) -> list[Workload]:
    return [_workload(scale, False), _workload(scale, True)]
