"""Cross-process coordination through ``.pylog.shm`` (docs/partition-log.md "Coordination").

Real child processes (tests/writer_process.py) are stopped at known points with the
``PYLOG_TEST_PAUSE`` hook (the child prints ``pause POINT`` and SIGSTOPs itself), looked at while
stopped, then SIGKILLed there: no sleeps stand in for synchronization.
"""

from __future__ import annotations

import os
import signal
import struct
import threading

import pytest
from helpers import (
    expected_indexes,
    kafka_build_batch,
    parse_batches,
    read_shared_state,
    reaped,
    segment_bases,
    segment_name,
    skip_if_engine_missing,
    spawn_child,
    write_shared_field,
)
from writer_process import batch_values

from pylog.engine import open_partition

TS = 1_700_000_000_000
MAGIC = int.from_bytes(b"PLSH", "little")


def in_thread(fn, timeout: float = 60.0):
    """Run ``fn`` in a daemon thread; its result, or a failure if it did not return in time
    (the calls under test must never block, so a hang here is the bug)."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # re-raised below
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "a read blocked while another process held the writer lock"
    if "error" in out:
        raise out["error"]
    return out["value"]


def assert_page_consistent(path, end_offset: int) -> None:
    page = read_shared_state(path)
    assert page["magic"] == MAGIC and page["version"] == 2
    assert page["generation"] % 2 == 0, page
    assert page["tail_seq"] % 2 == 0, page
    assert page["end_offset"] == end_offset, page


@pytest.mark.parametrize("point, nth", [("locked", 3), ("written", 3), ("publishing", 3), ("rolling", 1)])
def test_writer_killed_at_each_point_of_an_append(engine, other_engine, tmp_path, point, nth):
    """A writer is stopped (SIGSTOP) holding the writer lock at `point`: readers of both engines
    go on without waiting for it; then it is SIGKILLed there. The survivor (the other engine)
    appends at once, repairs the page, wakes a waiter, and no acknowledged record is lost."""
    config = {"segment.bytes": 3000, "index.interval.bytes": 256}
    path = tmp_path / "kill-0"
    survivor = open_partition(path, engine=other_engine, config=config)
    readers = [open_partition(path, engine=e, config=config) for e in (engine, other_engine)]
    try:
        survivor.append([b"before"], timestamps_ms=[TS])
        child = spawn_child("kill", engine, path, config, 7, env={"PYLOG_TEST_PAUSE": f"{point}:{nth}"})
        acked: list[tuple[int, int]] = []
        with reaped([child]):
            while True:
                line = child.stdout.readline().decode()
                assert line, child.stderr.read().decode()
                if line.startswith("pause"):
                    assert line.split() == ["pause", point]
                    break
                acked.append(tuple(map(int, line.split())))
            _, status = os.waitpid(child.pid, os.WUNTRACED)
            assert os.WIFSTOPPED(status), status
            page = read_shared_state(path)
            if point == "publishing":
                assert page["tail_seq"] % 2 == 1, "stopped half-way through the publication"
            if point == "rolling":
                assert page["generation"] % 2 == 1, "stopped half-way through a roll"

            acked_end = max(base + len(batch_values(7, i)) for i, base in acked) if acked else 1
            queued: dict = {}
            if point == "locked":
                # a writer thread of readers[0] now waits for the writer lock: the same object's
                # reads must not wait behind it
                blocked = threading.Thread(
                    target=lambda: queued.setdefault("base", readers[0].append([b"queued"]))
                )
                blocked.start()
            for reader in readers:  # never waits for the stopped writer
                end = in_thread(lambda r=reader: r.end_offset)
                assert end >= acked_end
                assert bytes(in_thread(lambda r=reader: r.read(0, 1)))
                values = in_thread(lambda r=reader: [x.value for x in r.records()])
                assert values[0] == b"before"
                assert in_thread(lambda r=reader, e=end: r.wait_for(e, 0)) is False
            end = readers[0].end_offset
            woke: dict = {}
            waiter = threading.Thread(target=lambda: woke.setdefault("ok", readers[1].wait_for(end, 60_000)))
            waiter.start()

            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        after = survivor.append([b"after"], timestamps_ms=[TS])
        waiter.join(60)
        assert woke.get("ok") is True, "the survivor's append wakes a waiter in another object"
        if point == "locked":
            blocked.join(60)
            assert not blocked.is_alive(), "the queued append never got the lock"
            assert sorted([after, queued["base"]]) == [end, end + 1]
        else:
            assert after == end
        total = end + 1 + len(queued)
        assert_page_consistent(path, total)
        for log in (survivor, *readers):
            final = {r.offset: r.value for r in log.records()}
            assert sorted(final) == list(range(total)), "contiguous offsets"
            assert final[0] == b"before" and final[after] == b"after"
            if queued:
                assert final[queued["base"]] == b"queued"
            for i, base in acked:
                want = batch_values(7, i)
                assert [final[base + j] for j in range(len(want))] == want, f"acked batch {i} lost"
    finally:
        for log in (survivor, *readers):
            log.close()
    with open_partition(path, engine=engine, config=config) as again:
        assert again.end_offset == total


def test_shared_state_deleted_or_damaged_is_rebuilt(engine, other_engine, tmp_path):
    """The page is derived state: deleted while nobody has the log open, it is rebuilt by the
    next opener; damaged (or left odd by a dead writer) while open, readers still read the files
    correctly and the next writer repairs it."""
    path = tmp_path / "shm-0"
    with open_partition(path, engine=engine) as log:
        for i in range(5):
            log.append([b"v%d" % i], timestamps_ms=[TS])
    (path / ".pylog.shm").unlink()
    a = open_partition(path, engine=engine)
    b = open_partition(path, engine=other_engine)
    try:
        assert_page_consistent(path, 5)
        assert [r.value for r in b.records()] == [b"v%d" % i for i in range(5)]
        for damage in ("magic", "generation", "tail_seq", "garbage"):
            if damage == "magic":
                write_shared_field(path, "magic", 0xDEAD)
            elif damage == "garbage":  # in place: truncating a mapped file would be a SIGBUS
                write_shared_field(path, "magic", 0x12345678)
                for name in ("generation", "tail_seq", "end_offset", "active_size"):
                    write_shared_field(path, name, 7)
            else:  # odd: a writer died half-way through a change / a publication
                write_shared_field(path, damage, read_shared_state(path)[damage] | 1)
            a.append([b"during-" + damage.encode()], timestamps_ms=[TS])  # a writer repairs
            end = a.end_offset
            assert_page_consistent(path, end)
            assert b.end_offset == end
            assert bytes(b.read(end - 1, 1))
            assert [r.value for r in b.records(end - 1)] == [b"during-" + damage.encode()]
            # damaged again, and only readers come by: they go to the files every time
            write_shared_field(path, "magic", 0)
            assert b.end_offset == end and a.end_offset == end
            assert [r.offset for r in a.records()] == list(range(end))
    finally:
        a.close()
        b.close()
    assert_page_consistent(path, end)


def test_stale_writer_never_cuts_a_segment_another_process_rolled_past(engine, other_engine, tmp_path):
    """Issue 5, section 4.1: a writer whose view is stale (here: a roll by a process that did not bump
    the layout generation, as a tool outside the protocol would) meets bytes that do not frame at
    the end of what it knew as the active segment. It must see that a later segment exists
    first, and never truncate the sealed one (others may have it mapped)."""
    config = {"index.interval.bytes": 64}
    path = tmp_path / "stale-0"
    stale = open_partition(path, engine=engine, config=config)
    other = open_partition(path, engine=other_engine, config=config)
    reader = open_partition(path, engine=other_engine, config=config)
    try:
        for i in range(3):
            stale.append([b"s%d" % i * 20], timestamps_ms=[TS + i])
        generation = read_shared_state(path)["generation"]
        for i in range(2):
            other.append([b"o%d" % i * 20], timestamps_ms=[TS + i])
        other.roll()
        assert segment_bases(path) == [0, 5]
        assert [r.offset for r in reader.records()] == [0, 1, 2, 3, 4]  # maps segment 0
        # bytes that do not frame at the end of the sealed segment 0, and a roll that "did not
        # speak the protocol": the stale writer's cached generation still looks current
        with open(path / segment_name(0), "ab") as f:
            f.write(kafka_build_batch([(TS, None, b"junk" * 20, [])], base_offset=5)[:40])
        write_shared_field(path, "generation", generation)
        sealed = (path / segment_name(0)).read_bytes()
        assert stale.append([b"next"], timestamps_ms=[TS]) == 5
        assert (path / segment_name(0)).read_bytes() == sealed, "a sealed segment was cut"
        assert [b.base_offset for b in parse_batches((path / segment_name(5)).read_bytes())] == [5]
        for log in (stale, other, reader):
            assert [r.offset for r in log.records()] == [0, 1, 2, 3, 4, 5]
    finally:
        for log in (stale, other, reader):
            log.close()


def _replacement(data: bytes, base: int, interval: int) -> tuple[bytes, bytes, bytes]:
    """The same batches (offsets, counts, timestamps) with other values, and their indexes."""
    out = bytearray()
    for batch in parse_batches(data):
        n = batch.last_offset_delta + 1
        out += kafka_build_batch(
            [(TS, None, b"NEW%d" % (batch.base_offset + j), []) for j in range(n)],
            base_offset=batch.base_offset,
        )
    off, tim = expected_indexes(bytes(out), base, interval, sealed=True)
    return (
        bytes(out),
        b"".join(struct.pack(">ii", *e) for e in off),
        b"".join(struct.pack(">qi", *e) for e in tim),
    )


def _swap_in(path, base: int, files: tuple[bytes, bytes, bytes]) -> None:
    for suffix, content in zip((".index", ".timeindex", ".log"), files[1:] + files[:1], strict=True):
        target = path / segment_name(base, suffix)
        tmp = target.with_name(target.name + ".swap")
        tmp.write_bytes(content)
        os.replace(tmp, target)


def test_replaced_middle_segment_is_noticed_before_the_next_read(engine, other_engine, tmp_path):
    """Issue 5, section 4.2: another process replaces a middle segment's files by rename (same offsets,
    other bytes: what a compaction swap leaves) and bumps the layout generation as a swap does.
    A reader that has the old segment mapped sees the new bytes on its next read; the old mapping
    stays valid (no SIGBUS). A replacement by a tool that does not bump the generation crashes
    nothing: readers keep serving the old inode until the next layout change, then the new."""
    config = {"segment.bytes": 600, "index.interval.bytes": 64}
    path = tmp_path / "swap-0"
    writer = open_partition(path, engine=other_engine, config=config)
    reader = open_partition(path, engine=engine, config=config)
    try:
        for i in range(30):
            writer.append([b"old%d" % i + b"." * 40], timestamps_ms=[TS + i])
        bases = segment_bases(path)
        assert len(bases) >= 4
        middle, after = bases[1], bases[2]
        old_view = reader.read(middle, 1)  # the old segment mapped (sealed)
        old_bytes = bytes(old_view)
        assert next(iter(reader.records(middle, after))).value.startswith(b"old")
        files = _replacement((path / segment_name(middle)).read_bytes(), middle, 64)
        # the protocol: generation odd, rename, even
        g = read_shared_state(path)["generation"]
        write_shared_field(path, "generation", g + 1)
        _swap_in(path, middle, files)
        write_shared_field(path, "generation", g + 2)
        got = reader.read(middle, 1)
        assert bytes(got) != old_bytes and bytes(got) == files[0][: len(bytes(got))]
        assert [r.value for r in reader.records(middle, after)] == [
            b"NEW%d" % o for o in range(middle, after)
        ]
        assert bytes(old_view) == old_bytes, "a view of the old mapping stays readable"

        # a tool outside the protocol: no generation bump. Nothing crashes; the old bytes until
        # the next layout change (here a roll), then the new ones.
        second = bases[2]
        files2 = _replacement((path / segment_name(second)).read_bytes(), second, 64)
        before = bytes(reader.read(second, 1))
        _swap_in(path, second, files2)
        assert bytes(reader.read(second, 1)) == before
        writer.roll()
        writer.append([b"after-roll"], timestamps_ms=[TS])
        got = bytes(reader.read(second, 1))
        assert got != before and got == files2[0][: len(got)]
        assert reader.end_offset == 31
    finally:
        writer.close()
        reader.close()


@pytest.mark.parametrize("pair", [("native", "native"), ("reference", "reference"), ("native", "reference")])
def test_two_tight_looping_writers_both_progress(tmp_path, pair):
    """Two processes append as fast as they can for a second, started together: both make
    progress, and their batches interleave throughout the log (neither writer holds the lock for a long run of
    appends while the other waits). The 10 s worst-wait measurement is in benchmarks/."""
    for name in pair:
        skip_if_engine_missing(name)
    config = {"segment.bytes": 1 << 20}
    path = tmp_path / "fair-0"
    open_partition(path, engine=pair[0], config=config).close()
    procs = [spawn_child("spin", e, path, config, w, 1.0) for w, e in enumerate(pair)]
    counts = []
    with reaped(procs):
        for p in procs:
            line = p.stdout.readline().decode().strip()
            assert line == "ready", p.stderr.read().decode()
        for p in procs:
            p.stdin.write(b"go\n")
            p.stdin.flush()
        for p in procs:
            line = p.stdout.readline().decode().split()
            assert line and line[0].isdigit(), p.stderr.read().decode()
            counts.append(int(line[0]))
            assert p.wait(120) == 0
    with open_partition(path, engine=pair[1], config=config) as log:
        writers = [r.value[:2] for r in log.records()]
    assert writers.count(b"w0") == counts[0] > 0 and writers.count(b"w1") == counts[1] > 0
    # the writer of each record, with runs of one writer collapsed
    runs = [w for i, w in enumerate(writers) if i == 0 or writers[i - 1] != w]
    assert len(runs) >= 10, f"the writers hardly interleaved: {len(runs)} runs"
