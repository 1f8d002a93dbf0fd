"""Durable produce: ``acks="all"`` with one thread and with eight (``durable-1-thread``,
``durable-8-threads``); acknowledged records per second.

Each thread sends one 100-byte record and waits for its future (``send().get()``): the record is
fsynced before the next is sent, so one thread measures the latency of a durable write and eight
threads measure group commit (one fsync covers every batch appended before it began;
pylog/embedded/group_commit.py), which is what lets eight threads go faster than one. Checked: every
future succeeded and the partition's end offset is the number of records sent.

Baselines: ``os.write`` + ``fsync`` of the same encoded one-record batch per commit (the ceiling:
the disk's sync cost alone), sqlite3 with ``synchronous=FULL`` and one transaction per record (its
durable commit), twainmq when installed.
"""

from __future__ import annotations

import pylog
from pylog.bench import os_write_baseline, sqlite3_baseline
from pylog.bench.measure import make_text_values, timed_threads
from pylog.bench.model import Context, Sample, Scale, Workload
from pylog.bench.workloads import with_twainmq
from pylog.types import TopicPartition

TOPIC = "durable"
TP = TopicPartition(TOPIC, 0)


def produce_durable(path: str, engine: str, value: bytes, threads: int, per_thread: int) -> Sample:
    """``threads`` threads each ``send().get()`` ``per_thread`` records with ``acks="all"``."""
    with pylog.open(path, engine=engine) as log:
        log.create_topic(TOPIC, 1)
        handle = log._backend.partition_log(TP)
        with log.producer(acks="all") as producer:

            def send_loop() -> None:
                for _ in range(per_thread):
                    producer.send(TOPIC, value, partition=0).get(timeout=60)

            elapsed, errors = timed_threads(threads, lambda _: send_loop)
        sent = threads * per_thread
        ok = not errors and handle.end_offset == sent
    return Sample(sent, elapsed, ok)


def _workload(scale: Scale, threads: int) -> Workload:
    per_thread = scale.durable_records_per_thread

    def setup(ctx: Context) -> None:
        value = make_text_values(1, 100)[0]
        ctx.shared["value"] = value
        produce_durable(ctx.path("encoded"), "native", value, 1, 1)
        ctx.shared["batch"] = os_write_baseline.encoded_batches(ctx.path(f"encoded/{TOPIC}-0"))[0]

    def engine(name: str):
        def run(ctx: Context) -> Sample:
            return produce_durable(ctx.path("log"), name, ctx.shared["value"], threads, per_thread)

        return run

    def os_write(ctx: Context) -> Sample:
        return os_write_baseline.write_durable(ctx.path("raw.bin"), ctx.shared["batch"], threads, per_thread)

    def sqlite(ctx: Context) -> Sample:
        return sqlite3_baseline.insert_durable(
            ctx.path("records.db"), ctx.shared["value"], threads, per_thread
        )

    plural = "thread" if threads == 1 else "threads"
    return Workload(
        name=f"durable-{threads}-{plural}",
        title=f'producer acks="all", send().get() in {threads} {plural}, 100-byte values',
        group="durable",
        unit="rec/s",
        higher_is_better=True,
        setup=setup,
        contenders=with_twainmq(
            {
                "native": engine("native"),
                "reference": engine("reference"),
                "os.write": os_write,
                "sqlite3": sqlite,
            },
            "produce_durable",
            threads=threads,
            records_per_thread=per_thread,
        ),
    )


def workloads(scale: Scale) -> list[Workload]:
    return [_workload(scale, 1), _workload(scale, 8)]
