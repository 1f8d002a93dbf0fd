"""Threads and processes sharing one partition (docs/partition-log.md "Multi-process", issue 2).

Synchronization is by barriers, events and pipes only: children print ``ready`` once their log is
open and start when the parent writes a line to their stdin.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter

import pytest
from helpers import expect_line, reaped, segment_bases, skip_if_engine_missing, spawn_child
from writer_process import batch_values, digest, writer_values

from pylog.engine import open_partition
from pylog.reference.shared_state import WAKE_FALLBACK_SECONDS

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
            assert cols.num_records > 0
            assert list(cols.offsets) == list(range(offset, offset + cols.num_records))
            for i in range(cols.num_records):
                assert cols.value(i).startswith(b"w")
            offset += cols.num_records

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
    procs = [spawn_child("writer", e, path, config, w, count) for w, e in enumerate(writer_engines)]
    procs.append(spawn_child("reader", reader_engine, path, config, total))
    with reaped(procs):
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

    with open_partition(path, engine=reader_engine, config=config) as log:
        final = [(r.offset, r.value.decode()) for r in log.records()]
        assert log.end_offset == total
    assert [tuple(x) for x in seen] == [(o, digest(v.encode())) for o, v in final], "reader saw all, in order"
    assert [o for o, _ in final] == list(range(total)), "contiguous offsets"
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


# ---------------------------------------------------------------------------------------------
# several log objects on one directory (each holds its own locks, like separate processes)


def run_ops(logs, ops):
    """Apply (who, op, arg) steps; ``who`` picks the object doing it."""
    for who, op, arg in ops:
        log = logs[who % len(logs)]
        if op == "append":
            log.append(arg, timestamps_ms=[TS + len(a) for a in arg])
        elif op == "raw":
            log.append_raw(arg)
        else:
            log.roll()


def random_ops(seed: int, n: int):
    import random

    from helpers import kafka_build_batch

    rng = random.Random(seed)
    ops = []
    for _ in range(n):
        who = rng.randrange(2)
        r = rng.random()
        if r < 0.08:
            ops.append((who, "roll", None))
        elif r < 0.2:
            recs = [(TS + rng.randrange(100), None, rng.randbytes(rng.randrange(80)), []) for _ in range(3)]
            ops.append((who, "raw", kafka_build_batch(recs)))
        else:
            ops.append((who, "append", [rng.randbytes(rng.randrange(120)) for _ in range(rng.randint(1, 4))]))
    return ops


@pytest.mark.parametrize("pair", [("native", "native"), ("reference", "reference"), ("native", "reference")])
def test_alternating_writers_match_a_single_writer(tmp_path, pair):
    """Two objects taking turns produce the same files as one: each re-syncs to the tail (and
    notices the other's rolls) before writing, and indexes are a function of the bytes."""
    from helpers import check_segment_indexes, segment_files

    for name in pair:
        skip_if_engine_missing(name)
    config = {"segment.bytes": 1500, "index.interval.bytes": 100}
    ops = random_ops(5, 150)
    single = tmp_path / "single" / "alt-0"
    with open_partition(single, engine=pair[1], config=config) as log:
        run_ops([log], ops)
        want = [(r.offset, r.value) for r in log.records()]
    shared = tmp_path / "shared" / "alt-0"
    logs = [open_partition(shared, engine=name, config=config) for name in pair]
    try:
        run_ops(logs, ops)
        for log in logs:  # each sees everything, whoever wrote it
            assert log.end_offset == len(want)
            assert [(r.offset, r.value) for r in log.records()] == want
    finally:
        for log in logs:
            log.close()
    assert segment_files(shared) == segment_files(single)
    assert len(segment_bases(shared)) > 3
    check_segment_indexes(shared, 100)


def test_readers_ignore_a_torn_tail_and_writers_cut_it(engine, other_engine, tmp_path):
    from helpers import check_segment_indexes, kafka_build_batch, segment_files, segment_name

    config = {"index.interval.bytes": 50}
    path = tmp_path / "torn-0"
    writer = open_partition(path, engine=engine, config=config)
    reader = open_partition(path, engine=other_engine, config=config)
    try:
        for i in range(4):
            writer.append([b"v%d" % i * 20], timestamps_ms=[TS + i])
        assert reader.end_offset == 4
        log_file = path / segment_name(0)
        good_size = log_file.stat().st_size
        # a slow writer in another process: half a batch on disk so far
        batch = bytearray(kafka_build_batch([(TS + 9, None, b"slow" * 30, [])]))
        batch[0:8] = (4).to_bytes(8, "big")
        with open(log_file, "ab") as f:
            f.write(batch[:50])
        assert reader.end_offset == 4, "a reader only ever sees complete batches"
        assert [r.offset for r in reader.records()] == [0, 1, 2, 3]
        assert reader.wait_for(4, 20) is False

        woke = {}
        started = threading.Event()

        def wait():
            started.set()
            woke["ok"] = reader.wait_for(4, 60_000)
            woke["at"] = time.monotonic()

        t = threading.Thread(target=wait)
        t.start()
        assert started.wait(10)
        with open(log_file, "ab") as f:  # the slow writer finishes its batch
            f.write(batch[50:])
        written = time.monotonic()
        t.join(30)
        assert woke.get("ok") is True, "wait_for must notice another writer's append"
        # a write outside the protocol (no futex wake) is noticed at wait_for's fallback look
        assert woke["at"] - written < WAKE_FALLBACK_SECONDS + 1.0, "a plain write wakes wait_for"
        assert [r.value for r in reader.records(4)] == [b"slow" * 30]

        # now a writer dies half-way: the next writer cuts the torn tail before appending
        with open(log_file, "ab") as f:
            f.write(batch[:30])
        assert writer.append([b"after"], timestamps_ms=[TS + 20]) == 5
        assert log_file.stat().st_size == good_size + len(batch) + len(bytes(reader.read(5, 1)))
        for log in (writer, reader):
            assert [r.value for r in log.records(4)] == [b"slow" * 30, b"after"]
    finally:
        writer.close()
        reader.close()
    check_segment_indexes(path, 50)
    assert segment_files(path)[segment_name(0)][good_size : good_size + len(batch)][8:] == bytes(batch)[8:]


@pytest.mark.parametrize("appender", ["same", "other"])
def test_wait_for_woken_by_another_process(engine, other_engine, tmp_path, appender):
    """A thread blocked in wait_for returns within 1 s (generous for a loaded CI box) of an append
    made by another process returning; both timestamps are CLOCK_MONOTONIC, shared by processes."""
    from helpers import assert_prompt_wake_ups, wake_up_gaps

    path = tmp_path / "wake-0"
    log = open_partition(path, engine=engine)
    child_engine = engine if appender == "same" else other_engine
    try:
        with reaped([spawn_child("appender", child_engine, path, {})]) as (child,):
            expect_line(child, "ready")
            bases = []

            def append() -> float:
                child.stdin.write(b"append\n")
                child.stdin.flush()
                line = child.stdout.readline()
                assert line, child.stderr.read().decode()
                base, returned = line.split()
                bases.append(int(base))
                return float(returned)

            gaps = wake_up_gaps(log, append)
            child.stdin.close()
            assert child.wait(30) == 0, child.stderr.read().decode()
        assert_prompt_wake_ups(gaps, 1.0)
        assert bases == list(range(len(gaps)))
        assert [r.value for r in log.records()] == [b"append-%d" % i for i in range(1, len(gaps) + 1)]
    finally:
        log.close()


@pytest.mark.parametrize(
    "killed, survivor, reader",
    [
        ("native", "native", "native"),
        ("reference", "reference", "reference"),
        ("native", "reference", "native"),
    ],
    ids=["native", "reference", "mixed"],
)
def test_writer_killed_while_others_write_and_read(tmp_path, killed, survivor, reader):
    """A writer dies (SIGKILL, maybe half-way through a big write) while another writer and a
    tailing reader go on: the survivor cuts the torn tail, the reader never sees it, every
    acknowledged batch of the dead writer and every batch of the survivor is there once.

    The writers go in rounds, both released at once for each (pipes only): the victim 3 batches
    (one ~1 MB), the survivor 30. So they contend for the log within a round and their offsets
    interleave across rounds. In round 3 the victim is killed right after its first ack of the
    round, while it is writing its next batch and the survivor writes its own."""
    import signal

    from helpers import check_segment_indexes

    for name in (killed, survivor, reader):
        skip_if_engine_missing(name)
    config = {"segment.bytes": 2_500_000, "index.interval.bytes": 4096}
    path = tmp_path / "kill-0"
    open_partition(path, engine=survivor, config=config).close()
    count, survivor_step, victim_step, kill_round = 300, 30, 3, 3
    procs = [
        spawn_child("writer", survivor, path, config, 1, count, survivor_step),
        spawn_child("reader", reader, path, config, -1),
        spawn_child("kill", killed, path, config, 7, "big", "step", victim_step),
    ]
    writer, tail, victim = procs
    acked: list[tuple[int, int]] = []  # the victim's (batch index, base offset)
    survivor_bases: list[list[int]] = []  # per round

    def go(proc) -> None:
        proc.stdin.write(b"go\n")
        proc.stdin.flush()

    def victim_ack() -> None:
        line = victim.stdout.readline()
        assert line, victim.stderr.read().decode()
        acked.append(tuple(map(int, line.split())))

    with reaped(procs):
        for p in procs:
            expect_line(p, "ready")
        go(tail)
        for r in range(count // survivor_step):
            if r <= kill_round:
                go(victim)
            go(writer)
            if r < kill_round:
                for _ in range(victim_step):
                    victim_ack()
            elif r == kill_round:
                victim_ack()
                os.kill(victim.pid, signal.SIGKILL)
                assert victim.wait() == -signal.SIGKILL
            bases = [writer.stdout.readline() for _ in range(survivor_step)]
            assert all(b.strip().isdigit() for b in bases), writer.stderr.read().decode()
            survivor_bases.append([int(b) for b in bases])
        expect_line(writer, "done")
        with open_partition(path, engine=survivor, config=config) as log:
            log.append([b"STOP"], timestamps_ms=[TS])
        seen = json.loads(tail.stdout.readline())
        for p in (writer, tail):
            assert p.wait(120) == 0, p.stderr.read().decode()

    assert len(acked) == victim_step * kill_round + 1
    victim_bases = [base for _, base in acked]
    flat = [b for bases in survivor_bases for b in bases]
    assert min(victim_bases) < max(flat) and min(flat) < max(victim_bases), "offsets interleave"
    for r in range(1, kill_round + 1):  # round r of one writer comes after round r-1 of the other
        round_victim = victim_bases[victim_step * r : victim_step * (r + 1)]
        assert min(round_victim) > max(survivor_bases[r - 1])
        assert min(survivor_bases[r]) > max(victim_bases[victim_step * (r - 1) : victim_step * r])
    with open_partition(path, engine=reader, config=config) as log:
        final = [(r.offset, r.value) for r in log.records()]
    assert [o for o, _ in final] == list(range(len(final))), "contiguous offsets"
    assert [tuple(x) for x in seen] == [(o, digest(v)) for o, v in final], "reader saw all, in order"
    by_value = Counter(v for _, v in final)
    survivor_values = [v for i in range(count) for v in writer_values(1, i)]
    assert all(by_value[v] == 1 for v in survivor_values)
    assert [v for _, v in final if v.startswith(b"w1:")] == survivor_values
    values_at = dict(final)
    for i, base in acked:
        want = batch_values(7, i, True)
        assert [values_at.get(base + j) for j in range(len(want))] == want, f"acked batch {i} damaged"
    check_segment_indexes(path, 4096)


def test_next_writer_repairs_missing_index_entries(engine, other_engine, tmp_path):
    """A writer that died between its log write and its index write leaves entries missing;
    the next writer (no recovery: the partition is still open elsewhere) appends them."""
    from helpers import check_segment_indexes, read_offset_index, segment_name

    config = {"index.interval.bytes": 60}
    path = tmp_path / "repair-0"
    first = open_partition(path, engine=engine, config=config)
    try:
        for i in range(20):
            first.append([b"v%d" % i * 10], timestamps_ms=[TS + i])
        index = path / segment_name(0, ".index")
        timeindex = path / segment_name(0, ".timeindex")
        entries = len(read_offset_index(index))
        assert entries > 5
        os.truncate(index, 8 * 2)
        os.truncate(timeindex, 12 * 1)
        second = open_partition(path, engine=other_engine, config=config)
        try:
            second.append([b"next"], timestamps_ms=[TS + 100])
            check_segment_indexes(path, 60)
            assert len(read_offset_index(index)) >= entries
            # the second writer "dies" after its log write: its index entries never reach the files
            sizes = index.stat().st_size, timeindex.stat().st_size
            second.append([b"again" * 20], timestamps_ms=[TS + 101])
            assert index.stat().st_size > sizes[0]
            os.truncate(index, sizes[0])
            os.truncate(timeindex, sizes[1])
            first.append([b"third"], timestamps_ms=[TS + 102])  # must add the dead writer's entries
            check_segment_indexes(path, 60)
            assert [r.value for r in second.records(20)] == [b"next", b"again" * 20, b"third"]
        finally:
            second.close()
    finally:
        first.close()
    check_segment_indexes(path, 60)


def test_replaced_active_segment_is_reloaded(engine, other_engine, tmp_path):
    """Another process replaces the active segment by rename (the old inode's link count drops to
    0): readers and writers notice before their next operation and reload from the directory."""
    import struct

    from helpers import check_segment_indexes, expected_indexes, parse_batches, segment_name

    config = {"index.interval.bytes": 10}
    path = tmp_path / "replace-0"
    log = open_partition(path, engine=engine, config=config)
    other = open_partition(path, engine=other_engine, config=config)
    try:
        for i in range(5):
            log.append([b"v%d" % i * 30], timestamps_ms=[TS + i])
        assert other.end_offset == 5
        data = (path / segment_name(0)).read_bytes()
        keep = data[: parse_batches(data)[2].position]
        off, tim = expected_indexes(keep, 0, 10, sealed=False)
        for suffix, content in (
            (".index", b"".join(struct.pack(">ii", *e) for e in off)),
            (".timeindex", b"".join(struct.pack(">qi", *e) for e in tim)),
            (".log", keep),
        ):
            target = path / segment_name(0, suffix)
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_bytes(content)
            os.replace(tmp, target)
        for reader in (log, other):
            assert reader.end_offset == 2
            assert [r.value for r in reader.records()] == [b"v0" * 30, b"v1" * 30]
        assert other.append([b"new"], timestamps_ms=[TS]) == 2
        assert [r.value for r in log.records(2)] == [b"new"]
        assert log.append([b"newer"], timestamps_ms=[TS]) == 3
    finally:
        other.close()
        log.close()
    check_segment_indexes(path, 10)


def test_idle_reader_notices_appends_rolls_and_replacements(engine, other_engine, tmp_path):
    """An object left idle (its directory unchanged for a while: engines may then skip the
    directory checks) still notices another writer's appends, rolls and a replaced segment.
    The sleeps are not synchronization: they create the idle state under test."""
    import time

    from helpers import segment_name

    config = {"segment.bytes": 400}
    path = tmp_path / "idle-0"
    reader = open_partition(path, engine=engine, config=config)
    writer = open_partition(path, engine=other_engine, config=config)
    try:
        writer.append([b"a" * 100], timestamps_ms=[TS])
        for _ in range(2):  # look, go idle, look again: the second look may record "quiet"
            assert reader.end_offset == 1
            time.sleep(0.25)
        writer.append([b"b" * 100], timestamps_ms=[TS])  # same segment: no directory change
        assert reader.end_offset == 2
        assert [r.value for r in reader.records(1)] == [b"b" * 100]
        time.sleep(0.25)
        assert reader.end_offset == 2
        time.sleep(0.25)
        for i in range(6):  # rolls: new files in the directory
            writer.append([b"c%d" % i * 50], timestamps_ms=[TS])
        assert len(segment_bases(path)) > 1
        assert reader.end_offset == 8
        assert [r.offset for r in reader.records()] == list(range(8))
        time.sleep(0.25)
        assert reader.end_offset == 8
        time.sleep(0.25)
        last = segment_bases(path)[-1]
        (path / segment_name(last)).unlink()  # the active segment replaced by an empty one
        (path / segment_name(last)).write_bytes(b"")
        assert reader.end_offset == last
        assert reader.wait_for(last, 0) is False
    finally:
        writer.close()
        reader.close()


@pytest.mark.parametrize("tail", ["incomplete", "bad-crc"])
def test_last_closer_trims_a_dead_writers_tail(engine, tmp_path, tail):
    """A dead writer left a torn (or CRC-broken) batch at the tail. Readers never see it; the last
    process to close syncs under the writer lock, so the tail is cut before the clean-shutdown
    marker says the log needs no scan."""
    from helpers import kafka_build_batch, parse_batches, read_checkpoint, segment_name

    path = tmp_path / "tail-0"
    log = open_partition(path, engine=engine)
    for _ in range(3):
        log.append([b"x" * 50], timestamps_ms=[TS])
    log_file = path / segment_name(0)
    good = log_file.read_bytes()
    batch = bytearray(kafka_build_batch([(TS, None, b"y" * 100, [])], base_offset=3))
    if tail == "incomplete":
        batch = batch[:40]
    else:
        batch[-1] ^= 0xFF  # complete framing, wrong CRC
    with open(log_file, "ab") as f:
        f.write(batch)
    assert log.end_offset == 3, "a reader only sees complete, CRC-valid batches"
    assert [r.offset for r in log.records()] == [0, 1, 2]
    log.close()
    assert log_file.read_bytes() == good
    assert (path / ".kafka_cleanshutdown").exists()
    assert read_checkpoint(path)[2] == "tail 0 3"
    with open_partition(path, engine=engine) as again:
        assert again.append([b"z"], timestamps_ms=[TS]) == 3
        assert [r.offset for r in again.records()] == [0, 1, 2, 3]
    assert [b.base_offset for b in parse_batches(log_file.read_bytes())] == [0, 1, 2, 3]


def test_native_engine_releases_the_gil_during_long_work(tmp_path):
    """While one thread is inside a long native call (columnar decode of ~40 MB), another Python
    thread keeps running. Holding the GIL there would freeze it for the whole call."""
    skip_if_engine_missing("native")
    values = [bytes([i % 251]) * 100 for i in range(1000)]
    with open_partition(tmp_path / "gil-0", engine="native") as log:
        for _ in range(400):
            log.append(values, timestamps_ms=[TS] * 1000)
        spins = [0]
        stop = threading.Event()

        def spin():
            while not stop.is_set():
                spins[0] += 1

        spinner = threading.Thread(target=spin)
        spinner.start()
        try:
            progress = []
            for _ in range(3):
                before = spins[0]
                start = time.perf_counter()
                cols = log.read_columns(0, 400_000)
                elapsed = time.perf_counter() - start
                assert cols.num_records == 400_000
                progress.append((spins[0] - before, elapsed))
        finally:
            stop.set()
            spinner.join(10)
        # the spinner manages millions of increments a second when it has the GIL; a native call
        # that kept the GIL would leave it at ~0 for the whole call
        assert max(n / secs for n, secs in progress) > 100_000, progress
