"""twainmq, the closest embedded peer on PyPI, as the ``twainmq`` contender of ``pylog bench``.

twainmq (https://pypi.org/project/twainmq/, measured here at 0.2.3) is a broker-free, file-based
message queue: a topic is a directory of text files, one per partition and UTC day
(``{partition}-{YYYYMMDD}_{first offset}.tmf``), one message per line:
``base85(key) + base85(timestamp as a double) + base85(zlib(payload))`` and a newline. Used the way
its docs show it and nothing else:

- producer: ``Twain(root).create_topic(name, "u8")``, ``Twain(root).producer(name)``,
  ``producer.write_message(key, value)``. There is no batch API (one call per message) and no
  codec choice (every payload is deflated at level 6, then base85-encoded), so only the
  ``send()``-style workloads have a twainmq figure, and only the no-codec ones (its deflate is
  always on, like a codec it cannot turn off). Every message needs a key: a one-byte ``u8`` key
  ``0`` (the smallest key type; one partition) where pylog sends none.
- consumer: ``Twain(root).consumer(name, start_from="start")`` and ``poll()`` until it returns None
  (``poll_many`` is a loop over ``poll``); ``poll`` never blocks, so a waiting consumer polls in a
  busy loop (the latency runs do that: the fastest way it offers, at the price of a busy core,
  where pylog's consumer sleeps until the append wakes it). In one process the poll runs on the
  writer's thread right after ``write_message`` returns (a busy-polling second thread would
  fight the writer for the GIL); across two, the child spins on ``poll()``. So twainmq's latency
  figures are those of a spinning reader, and its latency workload has no thread hand-off.
  Across processes its reader can see a half-written line and raise (``poller``: a torn read);
  the child then recovers by reopening, and that round's latency includes it (it shows in
  p99.9), rather than the run failing on twainmq's defect.

Durability model: ``write_message`` opens the partition file with ``O_APPEND``, makes one
``write()`` and closes it again; twainmq never calls ``fsync`` (nor ``fdatasync``) anywhere, so
a message is "written" once it is in the page cache: it survives the process crashing but not
the machine. It therefore takes part in the page-cache workloads only, never in ``durable``
(``acks="all"``, fsynced) ones, where a figure of it would compare different promises.

Each function below does one timed run for the runner (pylog/bench/runner.py) and checks its
own result (record counts, offsets, payload bytes, the values read back). Absent twainmq
(``available()`` False), the workloads leave the contender out and the table says
``MISSING_NOTE``.

Thread-safety: none needed; each run uses its own directory, and the two-process latency run's
child (``python -m pylog.bench.twainmq_baseline poller ...``) only reads.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

from pylog.bench.model import Context, LatencySample, Sample

#: what the table says when twainmq is not installed (the contender is then left out)
MISSING_NOTE = "twainmq not installed: pip install 'pylog[bench]'"
TOPIC = "bench"
#: twainmq's key type (a topic must have one): the smallest, one byte
KEY_TYPE = "u8"
KEY = 0
#: what twainmq's poll raises on a half-written line (base85, struct, zlib or UTF-8 errors)
TORN_READ = (ValueError, struct.error, zlib.error)
#: latency percentiles reported, as the latency workloads name them
PERCENTILES = {"p50": 0.50, "p99": 0.99, "p99.9": 0.999}


def available() -> bool:
    """Whether twainmq can be imported here."""
    return importlib.util.find_spec("twainmq") is not None


def version() -> str | None:
    try:
        return importlib.metadata.version("twainmq")
    except importlib.metadata.PackageNotFoundError:
        return None


def _twain(root: str):  # -> twainmq.Twain
    from twainmq import Twain

    os.makedirs(root, exist_ok=True)
    return Twain(root)


def create_topic(root: str) -> None:
    """A one-partition topic ``TOPIC`` with one-byte keys under ``root``."""
    _twain(root).create_topic(TOPIC, KEY_TYPE, partitions=1)


@contextlib.contextmanager
def open_consumer(root: str) -> Iterator[Any]:
    """A consumer from the topic's start, its open partition files closed afterwards.

    why by hand: twainmq's consumer has no ``close()``; each partition's reader keeps its file
    open until garbage collection (a ResourceWarning, and a leaked descriptor per run)."""
    consumer = _twain(root).consumer(TOPIC, start_from="start")
    try:
        yield consumer
    finally:
        for reader in getattr(consumer, "_consumerlets", {}).values():
            handle = getattr(reader, "_current_file_handle", None)
            if handle is not None:
                handle.close()


def topic_lines(root: str) -> int:
    """Messages stored in the topic: complete lines of its partition files (the day's file may
    have been split at midnight UTC)."""
    total = 0
    topic_dir = os.path.join(root, TOPIC)
    for name in os.listdir(topic_dir):
        if name.endswith(".tmf"):
            with open(os.path.join(topic_dir, name), "rb") as f:
                total += f.read().count(b"\n")
    return total


def write(root: str, values: Sequence[bytes], records: int) -> float:
    """Write ``records`` messages cycling through ``values`` with one producer; seconds taken."""
    tmq = _twain(root)
    with tmq.producer(TOPIC) as producer:
        write_message = producer.write_message
        count = len(values)
        t0 = time.perf_counter()
        for i in range(records):
            write_message(KEY, values[i % count])
        return time.perf_counter() - t0


def supports(function: str, **params: Any) -> bool:
    """Whether twainmq has the workload ``function(ctx, **params)`` describes (the registry of
    pylog/bench/workloads/__init__.py leaves the contender out otherwise): one-by-one sends
    without a codec (no batch API; its deflate cannot be turned off, nor swapped for lz4), and
    reads with ``poll()`` (no columnar reads)."""
    if function == "produce":
        return not params.get("batch") and params.get("compression") in (None, "none")
    if function == "consume":
        return not params.get("columns")
    return function == "latency"


#: at most this many records per twainmq run (at its ~10k messages/s, about a second)
MAX_RECORDS = 10_000


def share(values: Sequence[bytes]) -> list[bytes]:
    """twainmq's share of a workload's records: a tenth, like the reference engine's, and at most
    ``MAX_RECORDS`` (every figure is a rate, so a smaller run compares fairly; twainmq is that
    much slower, and the suite must stay within its few minutes)."""
    return list(values[: max(1, min(MAX_RECORDS, len(values) // 10))])


def produce_values(ctx: Context, values: Sequence[bytes]) -> Sample:
    """``write_message`` of every value into a new topic: one timed run; amount = records.
    Checked: the topic holds exactly that many lines; the first and last message read back are
    the values sent, and the payload bytes add up."""
    root = ctx.path("twainmq")
    create_topic(root)
    seconds = write(root, values, len(values))
    with open_consumer(root) as consumer:
        read = [message.message for message in consumer.poll_many(len(values) + 1)]
    ok = topic_lines(root) == len(values) == len(read)
    ok &= bool(read) and read[0] == values[0] and read[-1] == values[-1]
    ok &= sum(map(len, read)) == sum(map(len, values))
    return Sample(len(values), seconds, ok)


def produce(ctx: Context, *, batch: bool = False, compression: str | None = None) -> Sample:
    """The producer workloads' contender (``supports``: send() without a codec only): a tenth of
    ``ctx.shared["values"]`` written one ``write_message`` each."""
    if not supports("produce", batch=batch, compression=compression):
        raise ValueError("twainmq has no batch API and no codec choice")
    return produce_values(ctx, share(ctx.shared["values"]))


def consume_values(ctx: Context, values: Sequence[bytes]) -> Sample:
    """Read a whole topic holding ``values`` with ``poll()`` until it returns None: one timed run;
    amount = records. The topic is written once per workload (untimed, kept in ``ctx.shared``).
    Checked: every offset 0..n-1 in order, and the payload bytes."""
    key = f"twainmq-consume-{len(values)}"
    root = ctx.shared.get(key)
    if root is None:
        root = os.path.join(ctx.shared_dir, key)
        create_topic(root)
        write(root, values, len(values))
        ctx.shared[key] = root
    with open_consumer(root) as consumer:
        poll = consumer.poll
        n, payload, in_order = 0, 0, True
        t0 = time.perf_counter()
        while (message := poll()) is not None:
            in_order &= message.offset == n
            payload += len(message.message)
            n += 1
        seconds = time.perf_counter() - t0
    return Sample(n, seconds, in_order and n == len(values) and payload == sum(map(len, values)))


def consume(ctx: Context, *, columns: bool = False) -> Sample:
    """The consumer workloads' contender (``poll()`` only): a tenth of ``ctx.shared["values"]``."""
    if columns:
        raise ValueError("twainmq has no columnar reads")
    return consume_values(ctx, share(ctx.shared["values"]))


def percentiles_us(latencies_ns: Sequence[int]) -> dict[str, float]:
    """Nearest-rank percentiles of ``latencies_ns``, in microseconds."""
    ordered = sorted(latencies_ns)
    last = len(ordered) - 1
    return {name: ordered[min(last, int(q * len(ordered)))] / 1e3 for name, q in PERCENTILES.items()}


def latency_one_process(ctx: Context, value: bytes, rounds: int) -> LatencySample:
    """End to end in one process: from calling ``write_message`` to a consumer's ``poll()``
    returning that message, one message in flight, ``rounds`` times. Checked: every message
    arrives once, in order, with its value."""
    root = ctx.path("twainmq")
    create_topic(root)
    tmq = _twain(root)
    latencies, ok = [], True
    # why the consumer after the producer: the producer creates the day's partition file; a
    # consumer made before that file exists starts at the file's end once it appears
    with tmq.producer(TOPIC) as producer, open_consumer(root) as consumer:
        for expected in range(rounds):
            t0 = time.perf_counter_ns()
            producer.write_message(KEY, value)
            while (message := consumer.poll()) is None:
                pass
            latencies.append(time.perf_counter_ns() - t0)
            ok &= message.offset == expected and message.message == value
        ok &= consumer.poll() is None
    return LatencySample(percentiles_us(latencies), ok)


def latency_two_processes(ctx: Context, value: bytes, rounds: int) -> LatencySample:
    """End to end across processes: from calling ``write_message`` here to ``poll()`` returning
    the message in a child that polls in a busy loop (``perf_counter`` is CLOCK_MONOTONIC, one
    clock for both processes); one message in flight. Checked: the child saw every message in
    order with ``len(value)`` bytes and exited cleanly."""
    from pylog.bench_processes import same_pylog_env

    root = ctx.path("twainmq")
    create_topic(root)
    # why first: the producer creates the day's partition file, which the child's consumer must
    # find (one made before it exists starts at the file's end once it appears)
    producer = _twain(root).producer(TOPIC)
    latencies, ok = [], True
    with subprocess.Popen(
        # why -P: the working directory (a source checkout without its extension) must not
        # shadow the pylog this process runs
        [
            sys.executable,
            "-P",
            "-m",
            "pylog.bench.twainmq_baseline",
            "poller",
            root,
            str(rounds),
            str(os.getpid()),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        env=same_pylog_env(),
    ) as child:
        assert child.stdout is not None
        try:
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError("the twainmq poller failed to start")
            for expected in range(rounds):
                t0 = time.perf_counter_ns()
                producer.write_message(KEY, value)
                offset, size, at = map(int, child.stdout.readline().split())
                latencies.append(at - t0)
                ok &= offset == expected and size == len(value)
            ok &= child.wait(timeout=60) == 0
        finally:
            producer.close()
            if child.poll() is None:
                child.kill()
    return LatencySample(percentiles_us(latencies), ok)


def latency(ctx: Context, *, processes: int = 1) -> LatencySample:
    """The latency workloads' contender: ``ctx.scale.wakeup_rounds`` messages of
    ``ctx.shared["value"]`` (100 bytes when the workload gives none), one in flight, in one
    process or across two."""
    value = ctx.shared.get("value", b"v" * 100)
    rounds = ctx.scale.wakeup_rounds
    if processes == 1:
        return latency_one_process(ctx, value, rounds)
    return latency_two_processes(ctx, value, rounds)


def poller(root: str, rounds: int, parent: int) -> None:
    """The child of ``latency_two_processes``: busy-poll ``rounds`` messages, reporting each
    one's offset, size and the ``perf_counter_ns`` at which ``poll()`` returned it; gives up
    when process ``parent`` (which started it) is no longer its parent.

    A torn read (``TORN_READ``): twainmq's ``poll`` can read a line the producer is still
    writing (one ``write()`` that crosses a page boundary becomes visible page by page) and then
    raises on the half line (twainmq 0.2.3's consumer.py decodes it unchecked); the consumer's
    file position is then past the half line. Recovered the only way its API allows: a new
    consumer from the start, skipping the messages already seen; that round's latency includes
    the recovery."""
    with contextlib.ExitStack() as stack:
        consumer = stack.enter_context(open_consumer(root))
        print("ready", flush=True)
        for expected in range(rounds):
            spins = 0
            while True:
                try:
                    message = consumer.poll()
                except TORN_READ:
                    stack.close()
                    consumer = stack.enter_context(open_consumer(root))
                    for _ in range(expected):
                        consumer.poll()
                    message = None
                if message is not None:
                    break
                spins += 1
                # why: a spinning orphan would burn a core forever if the parent died
                if spins % 10_000 == 0 and os.getppid() != parent:
                    raise SystemExit("the benchmark process is gone")
            at = time.perf_counter_ns()
            print(f"{message.offset} {len(message.message)} {at}", flush=True)


if __name__ == "__main__":
    role, path, count, parent_pid = sys.argv[1:5]
    if role != "poller":
        raise SystemExit(f"unknown role {role}")
    poller(path, int(count), int(parent_pid))
