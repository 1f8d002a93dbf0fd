"""The engine side of retention and compaction that is not a rule of its own: the log start
across processes and reopens, the deletion and swap protocols under crashes, readers during and
after a layout change, the cleaner lock, and the native engine's GIL-free compact (cancel,
Ctrl-C). docs/partition-log.md "Retention" / "Compaction"; ISSUE 7.

The rule-by-rule tests are tests/test_reference_retention.py (both engines) and the
cross-engine suites tests/test_retention.py, tests/test_compaction*.py. Crashes are real: a child
process stops itself at a named point (``PYLOG_TEST_PAUSE=POINT:N``: it prints ``pause POINT``
and SIGSTOPs), the test looks at the directory, then SIGKILLs it; no sleep stands in for
synchronization.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import read_shared_state, reaped, segment_bases, skip_if_engine_missing, write_shared_field

from pylog.bench_processes import same_pylog_env
from pylog.engine import RetentionResult, open_partition
from pylog.errors import OffsetOutOfRangeError

TS = 1_700_000_000_000
DAY = 24 * 3600 * 1000

#: a child that opens the log, runs one operation and prints its result
CHILD = r"""
import json, sys
from pylog.engine import open_partition
engine, path, config, op, arg = sys.argv[1:6]
log = open_partition(path, engine=engine, config=json.loads(config))
if op == "compact":
    result = log.compact(now_ms=int(arg))
elif op == "retention":
    result = log.apply_retention(now_ms=int(arg))
elif op == "delete_before":
    result = log.delete_before(int(arg))
else:
    raise SystemExit("unknown op " + op)
print("done", json.dumps(list(result)), flush=True)
log.close()
"""


def spawn(engine: str, path, config: dict, op: str, arg: int, pause: str | None = None) -> subprocess.Popen:
    env = same_pylog_env()
    if pause:
        env["PYLOG_TEST_PAUSE"] = pause
    return subprocess.Popen(
        # why -P and same_pylog_env: `-c` puts the working directory first on sys.path, and CI
        # runs from a clone whose pylog/ has no built extension
        [sys.executable, "-P", "-c", CHILD, engine, str(path), json.dumps(config), op, str(arg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def wait_paused(child: subprocess.Popen, point: str) -> None:
    """Read the child's ``pause POINT`` line and wait until it is stopped."""
    line = child.stdout.readline().decode()
    assert line.split() == ["pause", point], (line, child.stderr.read().decode())
    _, status = os.waitpid(child.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), status


def run_child(engine: str, path, config: dict, op: str, arg: int) -> list:
    child = spawn(engine, path, config, op, arg)
    with reaped([child]):
        out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err.decode()
    word, result = out.decode().split(" ", 1)
    assert word == "done"
    return json.loads(result)


def temp_files(path) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.endswith((".deleted", ".cleaned", ".swap")))


def table(log) -> dict[bytes, tuple[int, bytes | None]]:
    """The key -> (offset, value) table a consumer reading from the start builds."""
    out: dict[bytes, tuple[int, bytes | None]] = {}
    last = -1
    for r in log.records():
        assert r.offset > last, "offsets strictly increase"
        last = r.offset
        out[r.key] = (r.offset, r.value)
    return out


def sealed_segments(log, n: int, *, ts0: int = TS, value_bytes: int = 40) -> None:
    """``n`` sealed one-batch segments, then an empty active one."""
    for i in range(n):
        log.append([b"v" * value_bytes], keys=[b"k%03d" % i], timestamps_ms=[ts0 + i])
        log.roll()


# ---------------------------------------------------------------------------------------------
# the log start offset


def test_log_start_is_seen_by_another_process_and_after_reopen(tmp_path, engine, other_engine):
    path = tmp_path / "t-0"
    log = open_partition(path, engine=engine)
    try:
        sealed_segments(log, 5)
        assert log.start_offset == 0
        view = log.read(1, 1 << 20)  # positions this reader inside what goes
        deleted_bytes = log_size_below(path, 3)
        assert run_child(other_engine, path, {}, "delete_before", 3) == [3, deleted_bytes, 3, None]
        # the other process's change is noticed before the next read, by every kind of read
        assert log.start_offset == 3
        for read in (
            lambda: log.read(2, 100),
            lambda: list(log.records(2)),
            lambda: log.read_columns(2, 10),
        ):
            with pytest.raises(OffsetOutOfRangeError):
                read()
        assert [r.offset for r in log.records()] == [3, 4]
        assert log.offset_for_timestamp(TS) == 3
        assert len(bytes(view)) > 0
    finally:
        log.close()
    with open_partition(path, engine=other_engine) as again:
        assert again.start_offset == 3
        assert segment_bases(path) == [3, 4, 5]


def log_size_below(path, offset: int) -> int:
    """``.log`` bytes of the segments whose next segment's base is <= ``offset``."""
    bases = segment_bases(path)
    return sum(
        os.path.getsize(os.path.join(path, f"{b:020d}.log"))
        for b, nxt in itertools.pairwise(bases)
        if nxt <= offset
    )


def test_delete_before_inside_a_segment_keeps_the_segment_and_filters_records(open_log):
    log = open_log()
    log.append([b"a", b"b", b"c", b"d"], keys=[b"1", b"2", b"3", b"4"], timestamps_ms=[TS] * 4)
    log.roll()
    log.append([b"e"], keys=[b"5"], timestamps_ms=[TS])
    assert log.delete_before(2) == RetentionResult(0, 0, 2)
    assert segment_bases(log.path) == [0, 4]
    assert [r.offset for r in log.records()] == [2, 3, 4]
    assert log.read_columns(2, 10).offsets.tolist() == [2, 3, 4]
    assert len(bytes(log.read(2, 1 << 20))) > 0  # whole batches: the one holding 2
    with pytest.raises(OffsetOutOfRangeError):
        log.read(1, 100)
    assert log.delete_before(2) == RetentionResult(0, 0, 2), "offset == start is a no-op"
    for bad in (1, 6, -1):
        with pytest.raises(OffsetOutOfRangeError):
            log.delete_before(bad)
    first_bytes = os.path.getsize(os.path.join(log.path, f"{0:020d}.log"))
    assert log.delete_before(5) == RetentionResult(1, first_bytes, 5)
    assert log.start_offset == log.end_offset == 5
    assert list(log.records()) == []


def test_delete_before_leaves_the_deletion_to_retention_while_a_cleaner_runs(open_log):
    log = open_log()
    sealed_segments(log, 4)
    with open(os.path.join(log.path, ".pylog.cleaner"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert log.delete_before(3) == RetentionResult(0, 0, 3)
        assert segment_bases(log.path) == [0, 1, 2, 3, 4], "the busy cleaner lock is not waited for"
        assert log.start_offset == 3
        fcntl.flock(held, fcntl.LOCK_UN)
    result = log.apply_retention(now_ms=TS)
    assert result.deleted_segments == 3 and result.start_offset == 3
    assert segment_bases(log.path) == [3, 4]


# ---------------------------------------------------------------------------------------------
# retention


def test_retention_never_deletes_the_active_segment(open_log):
    log = open_log(retention_ms=0, retention_bytes=0)
    sealed_segments(log, 3)
    log.append([b"tail"], keys=[b"t"], timestamps_ms=[TS])  # a non-empty active segment
    result = log.apply_retention(now_ms=TS + DAY)
    assert result.deleted_segments == 3
    assert result.start_offset == 3
    assert segment_bases(log.path) == [3]
    assert [r.value for r in log.records()] == [b"tail"]
    assert log.apply_retention(now_ms=TS + 10 * DAY).deleted_segments == 0


def test_retention_by_size_then_time_in_one_run(open_log):
    # sizes: 5 sealed segments of equal size s; retention.bytes = 3.5 s keeps 3 sealed + active
    log = open_log(retention_ms=DAY)
    sealed_segments(log, 5, ts0=TS)
    size = os.path.getsize(os.path.join(log.path, f"{0:020d}.log"))
    log.close()
    log = open_log(log.path, retention_bytes=int(size * 3.5), retention_ms=DAY)
    # size deletes 1 (diff 1.5 s); then time deletes the segments older than a day at now
    result = log.apply_retention(now_ms=TS + 2 + DAY + 1)  # segments 0..2 are > a day old
    assert result.deleted_segments == 3
    assert result.deleted_bytes == 3 * size
    assert segment_bases(log.path) == [3, 4, 5]
    assert temp_files(log.path) == []


def test_a_reader_keeps_its_view_of_a_deleted_segment(open_log):
    writer = open_log(segment_bytes=1 << 20)
    for i in range(3):
        writer.append([b"%d" % i * 100] * 10, keys=[b"k"] * 10, timestamps_ms=[TS] * 10)
        writer.roll()
    reader = open_log(writer.path)
    view = reader.read(0, 1 << 20)
    before = bytes(view)
    it = reader.records()
    first = next(it)
    assert writer.delete_before(20).deleted_segments == 2
    assert not any(n.startswith(f"{0:020d}") for n in os.listdir(writer.path)), "unlinked"
    assert bytes(view) == before, "the mapping of the unlinked segment stays valid"
    rest = [r.offset for r in it]
    assert first.offset == 0
    assert rest[-10:] == list(range(20, 30)), "the iterator goes on to the surviving records"
    assert reader.start_offset == 20


def test_a_reader_proceeds_when_a_dead_changer_left_the_generation_odd(open_log):
    log = open_log()
    sealed_segments(log, 3)
    reader = open_log(log.path)
    assert reader.start_offset == 0
    generation = read_shared_state(log.path)["generation"]
    write_shared_field(log.path, "generation", generation | 1)  # a changer died mid-change
    os.rename(  # ... after moving the first segment away
        os.path.join(log.path, f"{0:020d}.log"), os.path.join(log.path, f"{0:020d}.log.deleted")
    )
    # bounded wait, then the listing as it is
    assert [r.offset for r in reader.records()] == [1, 2]
    # the next writer repairs: recovery's temp-file steps, generation even again
    log.append([b"x"], keys=[b"x"], timestamps_ms=[TS])
    assert read_shared_state(log.path)["generation"] % 2 == 0
    assert temp_files(log.path) == []
    assert [r.offset for r in reader.records()] == [1, 2, 3]


def test_a_later_opener_repairs_what_a_dead_changer_left(open_log):
    log = open_log()
    sealed_segments(log, 3)
    generation = read_shared_state(log.path)["generation"]
    write_shared_field(log.path, "generation", generation | 1)
    first = os.path.join(log.path, f"{0:020d}")
    for suffix in (".index", ".timeindex", ".log"):
        os.rename(first + suffix, first + suffix + ".deleted")
    another = open_log(log.path)  # not the first opener: no recovery, but the repair
    assert temp_files(log.path) == []
    assert read_shared_state(log.path)["generation"] % 2 == 0
    assert [r.offset for r in another.records()] == [1, 2]
    assert [r.offset for r in log.records()] == [1, 2]


def test_a_half_renamed_group_of_a_dead_cleaner_is_dropped_while_another_cleaner_runs(tmp_path, engine):
    """A cleaner killed between renaming one group's ``.cleaned`` files to ``.swap`` leaves both
    at one base: the repair must drop that swap (never put the cleaned index over the old
    segment's), even while a live cleaner holds the cleaner lock (its ``.cleaned`` files stay)."""
    with open_partition(tmp_path / "t-0", engine=engine) as log:
        sealed_segments(log, 3)
        first = os.path.join(log.path, f"{0:020d}")
        index_before = Path(first + ".index").read_bytes()
        for suffix in (".log", ".timeindex"):
            with open(first + suffix, "rb") as src, open(first + suffix + ".cleaned", "wb") as dst:
                dst.write(src.read())
        with open(first + ".index.swap", "wb") as swap:
            swap.write(b"\0" * 8)  # the cleaned group's index, already renamed
        generation = read_shared_state(log.path)["generation"]
        write_shared_field(log.path, "generation", generation | 1)
        with open(os.path.join(log.path, ".pylog.cleaner"), "a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)  # a live cleaner
            log.append([b"x"], keys=[b"x"], timestamps_ms=[TS])  # the writer's repair
            assert Path(first + ".index").read_bytes() == index_before
            assert temp_files(log.path) == [f"{0:020d}.log.cleaned", f"{0:020d}.timeindex.cleaned"]
            assert [r.offset for r in log.records()] == [0, 1, 2, 3]


# ---------------------------------------------------------------------------------------------
# crashes in the deletion protocol


@pytest.mark.parametrize("point", ["retention-checkpointed", "retention-renamed"])
@pytest.mark.parametrize("survivor", ["live writer", "reopen"])
def test_crash_in_retention(tmp_path, engine, point, survivor):
    skip_if_engine_missing("native")
    path = tmp_path / "t-0"
    config = {"retention.bytes": "0"}
    with open_partition(path, engine=engine) as log:
        sealed_segments(log, 4)
        expected = {r.offset: r.value for r in log.records() if r.offset >= 4}
    live = open_partition(path, engine=engine, config=config) if survivor == "live writer" else None
    try:
        child = spawn("native", path, config, "retention", TS, pause=f"{point}:1")
        with reaped([child]):
            wait_paused(child, point)
            assert read_shared_state(path)["generation"] % 2 == 1
            checkpoint = (path / "log-start-offset-checkpoint").read_text()
            assert checkpoint == "0\n1\nt 0 4\n", "durable before any rename"
            renamed = [n for n in os.listdir(path) if n.endswith(".deleted")]
            if point == "retention-renamed":
                assert sorted({int(n[:20]) for n in renamed}) == [0, 1, 2, 3]
            else:
                assert renamed == []
            child.kill()
        if live is None:
            live = open_partition(path, engine=engine, config=config)
        else:
            live.append([b"after"], keys=[b"a"], timestamps_ms=[TS])  # a writer repairs
            expected[4] = b"after"
        assert live.start_offset == 4
        assert {r.offset: r.value for r in live.records()} == expected
        assert temp_files(path) == []
        # what the crash left below the start goes at the next run
        live.apply_retention(now_ms=TS)
        assert segment_bases(path)[0] == 4
        assert {r.offset: r.value for r in live.records()} == expected
    finally:
        if live is not None:
            live.close()


# ---------------------------------------------------------------------------------------------
# crashes in the compaction swap (native cleaner; the survivor is either engine)

COMPACT = {"cleanup.policy": "compact", "segment.bytes": "400", "min.cleanable.dirty.ratio": "0.01"}


def keyed_log(path, engine: str) -> dict[bytes, tuple[int, bytes | None]]:
    """A compacted partition with 8 keys written 6 times each over many small segments; returns
    the table a consumer builds from it."""
    with open_partition(path, engine=engine, config=COMPACT) as log:
        for i in range(48):
            log.append([b"value-%03d" % i * 3], keys=[b"key-%d" % (i % 8)], timestamps_ms=[TS + i])
        log.roll()
        assert len(segment_bases(path)) > 4
        return table(log)


@pytest.mark.parametrize(
    "point", ["clean-written", "clean-swapping", "clean-deleting", "clean-swapped", "clean-checkpointed"]
)
@pytest.mark.parametrize("survivor", ["live writer", "reopen"])
def test_crash_in_the_swap_recovers_the_old_or_the_new_set(tmp_path, engine, point, survivor):
    """The survivor (a live writer's repair, or recovery at reopen) is of either engine and
    reads the table itself; the cleaner is the native one in a child process."""
    skip_if_engine_missing("native")
    path = tmp_path / "t-0"
    expected = keyed_log(path, engine)
    opened = []
    if survivor == "live writer":
        opened.append(open_partition(path, engine=engine, config=COMPACT))
    try:
        child = spawn("native", path, COMPACT, "compact", TS, pause=f"{point}:1")
        with reaped([child]):
            wait_paused(child, point)
            generation = read_shared_state(path)["generation"]
            names = os.listdir(path)
            if point in ("clean-swapping", "clean-deleting", "clean-swapped"):
                assert generation % 2 == 1, "the swap runs with the layout generation odd"
            else:
                assert generation % 2 == 0
            if point == "clean-written":
                assert any(n.endswith(".log.cleaned") for n in names)
            if point == "clean-swapping":
                assert any(n.endswith(".log.swap") for n in names)
            if point == "clean-deleting":
                assert any(n.endswith(".log.deleted") for n in names)
            if opened and point != "clean-deleting":
                # another process reading now sees the old or the new set (at clean-deleting a
                # dead changer's half-swap has neither: readers wait, then list as it is)
                assert table(opened[-1]) == expected
            child.kill()
        if survivor == "reopen":
            opened.append(open_partition(path, engine=engine, config=COMPACT))  # recovers
        else:
            live = opened[0]
            live.append([b"after"], keys=[b"key-after"], timestamps_ms=[TS + 100])  # repairs
            expected[b"key-after"] = (live.end_offset - 1, b"after")
        reader = opened[-1]
        left = temp_files(path)
        if survivor == "live writer" and point == "clean-written":
            # a live writer repairs only what a dead *changer* left (generation odd); stale
            # `.cleaned` files of a dead cleaner go with the next compact (below)
            assert left and all(n.endswith(".cleaned") for n in left)
        else:
            assert left == [], "the repair or recovery finished or dropped the swap"
        assert table(reader) == expected
        # a compaction run afterwards (another process) completes the job
        result = run_child("native", path, COMPACT, "compact", TS + 200)
        assert result[-1] is None or result[-1] == "nothing to clean"
        assert temp_files(path) == []
        assert table(reader) == expected
        clean_offset = int((path / "cleaner-offset-checkpoint").read_text().split()[-1])
        keys = [r.key for r in reader.records() if r.offset < clean_offset]
        assert len(keys) == len(set(keys)), "the clean section holds each key once"
    finally:
        for log in opened:
            log.close()


# ---------------------------------------------------------------------------------------------
# the native compact call: GIL released, cancel, Ctrl-C, the cleaner lock


def native_keyed(path, n_segments: int = 12):
    log = open_partition(path, engine="native", config={**COMPACT, "segment.bytes": "2000"})
    for s in range(n_segments):
        log.append([b"v%d" % s] * 20, keys=[b"k%d" % i for i in range(20)], timestamps_ms=[TS] * 20)
        log.roll()
    return log


def test_compact_cancelled_stops_at_a_safe_point(tmp_path):
    skip_if_engine_missing("native")
    log = native_keyed(tmp_path / "t-0")
    try:
        before = table(log)
        cancel = threading.Event()
        cancel.set()
        result = log.compact(now_ms=TS, cancel=cancel)
        assert result.skipped == "cancelled"
        assert temp_files(log.path) == []
        assert table(log) == before
        result = log.compact(now_ms=TS)
        assert result.skipped is None and result.segments_cleaned > 0
        assert table(log) == before
    finally:
        log.close()


def test_ctrl_c_stops_compact_with_keyboard_interrupt(tmp_path):
    skip_if_engine_missing("native")
    log = native_keyed(tmp_path / "t-0")
    try:
        before = table(log)

        class SigintOnFirstLook:
            """A cancel object whose first look delivers SIGINT to this process, as Ctrl-C."""

            looks = 0

            def is_set(self) -> bool:
                self.looks += 1
                if self.looks == 1:
                    signal.raise_signal(signal.SIGINT)
                return False

        cancel = SigintOnFirstLook()
        with pytest.raises(KeyboardInterrupt):
            log.compact(now_ms=TS, cancel=cancel)
        assert cancel.looks >= 1
        assert temp_files(log.path) == [], "no half-done swap is left"
        assert table(log) == before
        # the cleaner lock went with the call
        assert log.compact(now_ms=TS, wait=False).skipped is None
    finally:
        log.close()


def test_compact_without_wait_skips_a_busy_partition_and_releases_the_gil(tmp_path):
    skip_if_engine_missing("native")
    log = native_keyed(tmp_path / "t-0")
    try:
        with open(os.path.join(log.path, ".pylog.cleaner"), "a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            assert log.compact(now_ms=TS, wait=False).skipped == "another cleaner holds the lock"
            # a blocking compact waits for the lock without holding the GIL: this thread runs
            result: list = []
            worker = threading.Thread(target=lambda: result.append(log.compact(now_ms=TS)))
            worker.start()
            counted = sum(1 for _ in range(100_000))  # Python code runs while it waits
            assert counted == 100_000 and worker.is_alive()
            fcntl.flock(held, fcntl.LOCK_UN)
            worker.join(timeout=60)
        assert result and result[0].skipped is None and result[0].segments_cleaned > 0
    finally:
        log.close()


def test_compact_refuses_a_too_small_map_and_a_delete_policy_says_so(tmp_path):
    skip_if_engine_missing("native")
    from pylog.errors import InvalidConfigError

    log = native_keyed(tmp_path / "t-0")
    try:
        with pytest.raises(InvalidConfigError):
            log.compact(map_bytes=1023)
    finally:
        log.close()
    with open_partition(tmp_path / "d-0", engine="native") as plain:
        sealed_segments(plain, 2)
        result = plain.compact(now_ms=TS)
        assert result.skipped == "cleanup.policy=delete has no compact"
        assert result.passes == 0 and segment_bases(plain.path) == [0, 1, 2]
