"""Threads and processes sharing one partition (docs/partition-log.md "Multi-process", issue 2).

Synchronization is by barriers, events and pipes only: children print ``ready`` once their log is
open and start when the parent writes a line to their stdin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from helpers import segment_bases, skip_if_engine_missing
from writer_process import writer_values

from pylog.engine import open_partition

HERE = Path(__file__).resolve().parent
TS = 1_700_000_000_000


def test_threads_append_read_and_wait(open_log):
    log = open_log(segment_bytes=5000, index_interval_bytes=200)
    writers, batches = 3, 150
    total = sum(len(writer_values(w, i)) for w in range(writers) for i in range(batches))
    barrier = threading.Barrier(writers + 3)
    errors: list[BaseException] = []
    bases: dict[int, list[int]] = {w: [] for w in range(writers)}
    tails: dict[str, list[tuple[int, bytes]]] = {}

    def guarded(fn):
        def run(*args):
            try:
                fn(*args)
            except BaseException as exc:
                errors.append(exc)
                barrier.abort()

        return run

    @guarded
    def append(w):
        barrier.wait()
        for i in range(batches):
            values = writer_values(w, i)
            bases[w].append(log.append(values, timestamps_ms=[TS + i] * len(values)))

    @guarded
    def tail(name):
        seen = tails.setdefault(name, [])
        barrier.wait()
        offset = 0
        while offset < total:
            assert log.wait_for(offset, 60_000), f"{name}: no data past {offset}"
            for r in log.records(offset):
                assert r.offset == offset
                seen.append((r.offset, r.value))
                offset += 1

    @guarded
    def columns():
        barrier.wait()
        offset = 0
        while offset < total:
            assert log.wait_for(offset, 60_000)
            cols = log.read_columns(offset, 37)
            assert len(cols) > 0
            assert list(cols.offsets) == list(range(offset, offset + len(cols)))
            for i in range(len(cols)):
                assert cols.value(i).startswith(b"w")
            offset += len(cols)

    threads = [threading.Thread(target=append, args=(w,)) for w in range(writers)]
    threads += [threading.Thread(target=tail, args=(n,)) for n in ("t1", "t2")]
    threads.append(threading.Thread(target=columns))
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]

    final = [(r.offset, r.value) for r in log.records()]
    assert [o for o, _ in final] == list(range(total))
    assert tails["t1"] == final and tails["t2"] == final
    by_value = {v: o for o, v in final}
    assert len(by_value) == total, "every record exactly once"
    for w in range(writers):
        assert bases[w] == sorted(bases[w])
        for i, base in enumerate(bases[w]):
            for j, v in enumerate(writer_values(w, i)):
                assert by_value[v] == base + j
    assert len(segment_bases(log.path)) > 2


def spawn(mode: str, engine: str, path: Path, config: dict, *args: object) -> subprocess.Popen:
    argv = [sys.executable, str(HERE / "writer_process.py"), mode, engine, str(path), json.dumps(config)]
    return subprocess.Popen(
        argv + [str(a) for a in args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )


def expect_line(proc: subprocess.Popen, text: str) -> None:
    line = proc.stdout.readline().decode().strip()
    assert line == text, f"child said {line!r}; stderr: {proc.stderr.read().decode()}"


@pytest.mark.parametrize(
    "writer_engines, reader_engine",
    [
        (("native", "native"), "native"),
        (("reference", "reference"), "reference"),
        (("native", "reference"), "reference"),
    ],
    ids=["native", "reference", "mixed"],
)
def test_two_writer_processes_and_a_tailing_reader(tmp_path, writer_engines, reader_engine):
    for name in {*writer_engines, reader_engine}:
        skip_if_engine_missing(name)
    config = {"segment.bytes": 3000, "index.interval.bytes": 256}
    path = tmp_path / "multi-0"
    open_partition(path, engine=reader_engine, config=config).close()
    count = 250
    total = sum(len(writer_values(w, i)) for w in range(2) for i in range(count))
    procs = [spawn("writer", e, path, config, w, count) for w, e in enumerate(writer_engines)]
    procs.append(spawn("reader", reader_engine, path, config, total))
    try:
        for p in procs:
            expect_line(p, "ready")
        for p in procs:  # all open: start together
            p.stdin.write(b"go\n")
            p.stdin.flush()
        for p in procs[:2]:
            expect_line(p, "done")
        seen = json.loads(procs[2].stdout.readline())
        for p in procs:
            assert p.wait(120) == 0, p.stderr.read().decode()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            for f in (p.stdin, p.stdout, p.stderr):
                f.close()

    with open_partition(path, engine=reader_engine, config=config) as log:
        final = [(r.offset, r.value.decode()) for r in log.records()]
        assert log.end_offset == total
    assert [o for o, _ in final] == list(range(total)), "contiguous offsets"
    assert [tuple(x) for x in seen] == final, "the reader saw everything, in order"
    counts = Counter(v for _, v in final)
    for w in range(2):
        order = []
        for i in range(count):
            for v in writer_values(w, i):
                assert counts[v.decode()] == 1, f"{v!r} not present exactly once"
                order.append(v.decode())
        offsets = [o for o, v in final if v.startswith(f"w{w}:")]
        assert [final[o][1] for o in offsets] == order, f"writer {w}'s records out of order"
    assert len(segment_bases(path)) > 3, "rolls must happen during the run"
