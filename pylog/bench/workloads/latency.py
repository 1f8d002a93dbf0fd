"""End-to-end latency: from before ``send()`` to a tailing consumer's ``poll()`` returning the
record, one record in flight at a time; p50, p99 and p99.9 in microseconds (one row each), in one
process (``latency-1-process``: the consumer polls in another thread) and across two
(``latency-2-processes``: the consumer is a child process, pylog/bench_processes.py's
``tail-consumer``; CLOCK_MONOTONIC is one clock for both, so the child's stamp minus ours is the
latency).

The producer sends with ``acks=1`` and ``flush()`` (the page-cache path; a durable write's cost is
the durable workloads'); the consumer waits in ``poll(timeout_ms=1000)``, woken by the append
(no polling sleep). Checked: every record arrives once, in order. A run's percentile is over its
records (p99.9 of 2,000 records is its second largest); figures are medians over runs.
Baselines: twainmq when installed (its consumer busy-polls: the fastest way it offers); os.write
and sqlite3 have no wake-up path to compare.
"""

from __future__ import annotations

import threading
import time

import pylog
from pylog.bench.measure import percentile
from pylog.bench.model import Context, LatencySample, Scale, Workload
from pylog.bench.workloads import with_twainmq
from pylog.bench_processes import spawn
from pylog.types import TopicPartition

TOPIC = "lat"
TP = TopicPartition(TOPIC, 0)
PERCENTILES = {"p50": 0.5, "p99": 0.99, "p99.9": 0.999}
VALUE = b"x" * 100


def summary(latencies_ns: list[int], ok: bool) -> LatencySample:
    return LatencySample({name: percentile(latencies_ns, q) / 1e3 for name, q in PERCENTILES.items()}, ok)


def one_process(path: str, engine: str, rounds: int) -> LatencySample:
    with pylog.open(path, engine=engine) as log:
        log.create_topic(TOPIC, 1)
        consumer = log.consumer(auto_offset_reset="latest", enable_auto_commit=False)
        consumer.assign([TP])
        consumer.poll()
        returned: list[int] = []
        order_ok = [True]
        got = threading.Event()
        stop = threading.Event()

        def tail() -> None:
            expected = 0
            # why stop at ``rounds``: a poll after the last record would wait out its timeout
            while expected < rounds and not stop.is_set():
                fetched = consumer.poll(timeout_ms=1000)
                if fetched:
                    now = time.perf_counter_ns()
                    offsets = [r.offset for r in fetched[TP]]
                    order_ok[0] &= offsets == [expected]
                    expected += len(offsets)
                    returned.append(now)
                    got.set()

        thread = threading.Thread(target=tail, name="bench-tail")
        sent: list[int] = []
        with log.producer(acks=1) as producer:
            thread.start()
            try:
                for _ in range(rounds):
                    got.clear()
                    sent.append(time.perf_counter_ns())
                    producer.send(TOPIC, VALUE, partition=0)
                    producer.flush()
                    if not got.wait(10):
                        break
            finally:
                stop.set()
                thread.join(5)
        consumer.close()
    ok = order_ok[0] and len(returned) == len(sent) == rounds
    return summary([b - a for a, b in zip(sent, returned, strict=False)] or [0], ok)


def two_processes(path: str, engine: str, rounds: int) -> LatencySample:
    with pylog.open(path, engine=engine) as log:
        log.create_topic(TOPIC, 1)
        sent: list[int] = []
        returned: list[int] = []
        with log.producer(acks=1) as producer, spawn("tail-consumer", path, engine, rounds) as child:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError("the tail-consumer process failed to start")
            for _ in range(rounds):
                sent.append(time.perf_counter_ns())
                producer.send(TOPIC, VALUE, partition=0)
                producer.flush()
                line = child.stdout.readline().split()
                if len(line) != 2 or line[0] != "got":
                    break
                returned.append(int(line[1]))
            ok = child.wait(timeout=60) == 0
    ok &= len(returned) == len(sent) == rounds
    return summary([b - a for a, b in zip(sent, returned, strict=False)] or [0], ok)


def workloads(scale: Scale) -> list[Workload]:
    out = []
    for processes, measure in ((1, one_process), (2, two_processes)):

        def engine(name: str, measure=measure):
            def run(ctx: Context) -> LatencySample:
                return measure(ctx.path("log"), name, scale.wakeup_rounds)

            return run

        plural = "process" if processes == 1 else "processes"
        out.append(
            Workload(
                name=f"latency-{processes}-{plural}",
                title=f"send() + flush() to a tailing poll() returning it, {processes} {plural}",
                group="latency",
                unit="us",
                higher_is_better=False,
                metrics=tuple(PERCENTILES),
                contenders=with_twainmq(
                    {"native": engine("native"), "reference": engine("reference")},
                    "latency",
                    processes=processes,
                ),
            )
        )
    return out
