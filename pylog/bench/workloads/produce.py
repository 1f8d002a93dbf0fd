"""Producer workloads: ``send()`` one record at a time and ``send_batch()`` of 1,000-record lists,
with 100-byte and 1 KiB values, uncompressed and lz4 (names ``send-100b-none`` ...
``send-batch-1kib-lz4``); throughput in records per second.

Every run opens a fresh log with one partition, produces with ``acks=1`` (written to the OS, no
fsync: the page-cache path) and ``linger_ms=5`` (Kafka 4.0's default, KIP-1030), flushes, and
checks the partition's end offset and its last record's value. Values compress about 2-3x
(``make_text_values``), so lz4 has something to do.

Contenders: both engines (the reference produces a tenth of the records: rates compare), the
``os.write`` ceiling (the RecordBatches a native run wrote, one write per batch), sqlite3 (one
``execute`` per record for send(), one ``executemany`` per batch for send_batch(); a transaction
per 1,000 records) and twainmq when installed.
"""

from __future__ import annotations

import time

import pylog
from pylog.bench import os_write_baseline, sqlite3_baseline
from pylog.bench.measure import BATCH_RECORDS, make_text_values, settle_page_cache
from pylog.bench.model import Context, Sample, Scale, Workload
from pylog.bench.workloads import with_twainmq
from pylog.types import TopicPartition

TOPIC = "bench"
TP = TopicPartition(TOPIC, 0)
SIZES = {"100b": 100, "1kib": 1024}
CODECS = ("none", "lz4")
LINGER_MS = 5


def produce(path: str, engine: str, values: list[bytes], *, batch: bool, codec: str) -> Sample:
    """One timed producer run into a fresh log at ``path``: every value to partition 0, flush."""
    with pylog.open(path, engine=engine) as log:
        log.create_topic(TOPIC, 1)
        handle = log._backend.partition_log(TP)  # opened outside the timing
        compression = None if codec == "none" else codec
        with log.producer(acks=1, linger_ms=LINGER_MS, compression_type=compression) as producer:
            settle_page_cache()
            t0 = time.perf_counter()
            if batch:
                send_batch = producer.send_batch
                for start in range(0, len(values), BATCH_RECORDS):
                    send_batch(TOPIC, values[start : start + BATCH_RECORDS], partition=0)
            else:
                send = producer.send
                for value in values:
                    send(TOPIC, value, partition=0)
            producer.flush()
            elapsed = time.perf_counter() - t0
        n = len(values)
        last = list(handle.records(n - 1, n))
        ok = handle.end_offset == n and len(last) == 1 and bytes(last[0].value) == values[-1]
    return Sample(n, elapsed, ok)


def _workload(scale: Scale, api: str, size_name: str, codec: str) -> Workload:
    batch = api == "send-batch"
    size = SIZES[size_name]
    native_n, reference_n = scale.produce_records_native, scale.produce_records_reference
    if size > 100:  # 1 KiB values: a quarter of the records, so a run writes similar bytes
        native_n, reference_n = native_n // 4, max(reference_n // 4, BATCH_RECORDS)

    def setup(ctx: Context) -> None:
        values = make_text_values(native_n, size)
        ctx.shared["values"] = values
        ctx.shared["batch_records"] = BATCH_RECORDS
        sample = produce(ctx.path("encoded"), "native", values, batch=batch, codec=codec)
        if not sample.ok:
            raise RuntimeError("the native run that encodes the os.write bytes failed its check")
        ctx.shared["batches"] = os_write_baseline.encoded_batches(ctx.path(f"encoded/{TOPIC}-0"))

    def engine(name: str):
        def run(ctx: Context) -> Sample:
            values = ctx.shared["values"][: ctx.records(name, native_n, reference_n)]
            return produce(ctx.path("log"), name, values, batch=batch, codec=codec)

        return run

    def os_write(ctx: Context) -> Sample:
        return os_write_baseline.write_batches(ctx.path("raw.bin"), ctx.shared["batches"], native_n)

    def sqlite(ctx: Context) -> Sample:
        return sqlite3_baseline.insert(
            ctx.path("records.db"), ctx.shared["values"], per_record=not batch, batch=BATCH_RECORDS
        )

    call = "send_batch()" if batch else "send()"
    return Workload(
        name=f"{api}-{size_name}-{codec}",
        title=f"producer {call}, {size}-byte values, {codec}",
        group="produce",
        unit="k rec/s",
        divisor=1e3,
        higher_is_better=True,
        setup=setup,
        contenders=with_twainmq(
            {
                "native": engine("native"),
                "reference": engine("reference"),
                "os.write": os_write,
                "sqlite3": sqlite,
            },
            "produce",
            batch=batch,
            compression=None if codec == "none" else codec,
        ),
    )


def workloads(scale: Scale) -> list[Workload]:
    return [
        _workload(scale, api, size_name, codec)
        for api in ("send", "send-batch")
        for size_name in SIZES
        for codec in CODECS
    ]
