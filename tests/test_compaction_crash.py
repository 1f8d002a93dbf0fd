"""A cleaner or a retention run killed at every step recovers to the old or the new segment set
(issue 7 "Tests"; docs/partition-log.md "Compaction" / "Retention" and "Recovery").

A child process (tests/compaction_child.py) runs ``compact`` / ``apply_retention`` /
``delete_before`` with ``PYLOG_TEST_PAUSE=POINT:N``: the engine prints ``pause POINT`` and
SIGSTOPs itself the N-th time it reaches POINT. The parent looks at the directory while it is
stopped (the temporary files and the odd layout generation the contract puts there), SIGKILLs it,
then reopens the partition with the other engine (recovery: no clean-shutdown marker) and checks the
records are exactly what the protocol leaves: per group, all old or all new, never a mix; every
key's latest record there. In the last case another process keeps the log open across the crash
and its next append takes the dead-writer repair path instead of recovery. No sleeps: the
child's own SIGSTOP is the synchronization.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from compaction_child import TS, fill_keyed, latest_per_key, table, triples
from helpers import check_segment_indexes, read_shared_state, reaped, segment_bases

from pylog.bench_processes import same_pylog_env
from pylog.engine import open_partition

CHILD = Path(__file__).resolve().parent / "compaction_child.py"
NOW = TS + 10_000_000
BIG_MAP = 1 << 24
#: one group: small segments (manual rolls) that fit one segment.bytes together
ONE_GROUP = {"cleanup.policy": "compact", "segment.bytes": 1 << 20, "index.interval.bytes": 200}
#: several groups: full segments, each its own group
GROUPS = {"cleanup.policy": "compact", "segment.bytes": 1500, "index.interval.bytes": 200}
RETENTION = {"segment.bytes": 1500, "index.interval.bytes": 200, "retention.bytes": 3000}

#: what each pause point leaves on disk (temporary suffixes present) and whether the layout
#: generation is odd there (the swap and the retention renames run with it odd)
ON_DISK = {
    "clean-written": ({".cleaned"}, False),
    "clean-swapping": ({".swap"}, True),
    "clean-deleting": ({".swap", ".deleted"}, True),
    "clean-swapped": ({".deleted"}, True),
    "clean-checkpointed": (set(), False),
    "retention-checkpointed": (set(), True),
    "retention-renamed": ({".deleted"}, True),
}


def build(path: Path, config: dict, *, groups: bool) -> None:
    with open_partition(path, engine="reference", config=config) as log:
        if groups:
            fill_keyed(log, 60, keys=12, tombstone_every=9)
        else:
            for _ in range(4):
                fill_keyed(log, 10, keys=12, tombstone_every=9, start=log.end_offset)
                log.roll()
            fill_keyed(log, 3, keys=12, start=log.end_offset)  # the active segment
        assert len(segment_bases(path)) >= 4


def spawn(mode: str, engine: str, path: Path, config: dict, *args: object, pause: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(CHILD), mode, engine, str(path), json.dumps(config), *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**same_pylog_env(), "PYLOG_TEST_PAUSE": pause},
    )


def temp_suffixes(path: Path) -> set[str]:
    return {
        "." + n.rsplit(".", 1)[1] for n in os.listdir(path) if n.endswith((".cleaned", ".swap", ".deleted"))
    }


def stop_and_kill(child: subprocess.Popen, path: Path, point: str) -> None:
    """Wait for the child to stop itself at ``point``, check what the contract puts on disk
    there, then SIGKILL it."""
    with reaped([child]):
        line = child.stdout.readline().decode().strip()
        assert line == f"pause {point}", f"child said {line!r}; stderr: {child.stderr.read().decode()}"
        _, status = os.waitpid(child.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), status
        suffixes, odd = ON_DISK[point]
        assert temp_suffixes(path) == suffixes, (point, sorted(os.listdir(path)))
        generation = read_shared_state(path)["generation"]
        assert (generation % 2 == 1) == odd, (point, generation)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()


def expected_mix(old: list, new: list, new_bases: list[int], swapped_groups: int) -> list:
    """The records when the first ``swapped_groups`` groups of the pass are swapped in: a group
    is the offset range of one cleaned segment of the fully compacted copy."""
    cut = new_bases[swapped_groups] if swapped_groups < len(new_bases) else None
    if cut is None:
        return new
    return [t for t in new if t[0] < cut] + [t for t in old if t[0] >= cut]


def compacted_copy(template: Path, tmp_path: Path, engine: str, config: dict) -> tuple[list, list[int]]:
    done = tmp_path / "done" / template.name
    shutil.copytree(template, done)
    with open_partition(done, engine=engine, config=config) as log:
        result = log.compact(NOW, map_bytes=BIG_MAP)
        assert result.passes == 1
        return triples(log.records()), segment_bases(done)[:-1]


CLEAN_CASES = [
    # (point, nth, layout, groups swapped in when killed there)
    ("clean-written", 1, "one", 0),
    ("clean-swapping", 1, "one", 1),
    ("clean-deleting", 1, "one", 1),
    ("clean-swapped", 1, "one", 1),
    ("clean-checkpointed", 1, "one", 1),
    ("clean-written", 3, "groups", 2),
    ("clean-swapping", 3, "groups", 3),
    ("clean-deleting", 2, "groups", 2),
    ("clean-swapped", 2, "groups", 2),
    ("clean-checkpointed", 1, "groups", None),
]


@pytest.mark.parametrize("point, nth, layout, swapped", CLEAN_CASES)
def test_cleaner_killed_at_each_step_recovers_to_old_or_new(
    engine, other_engine, tmp_path, point, nth, layout, swapped
):
    config = ONE_GROUP if layout == "one" else GROUPS
    template = tmp_path / "template" / "crash-0"
    build(template, config, groups=layout == "groups")
    with open_partition(template, engine="reference", config=config) as log:
        old = triples(log.records())
    new, new_bases = compacted_copy(template, tmp_path, engine, config)
    if layout == "groups":
        assert len(new_bases) > 3, "several groups in one pass"
    else:
        assert len(new_bases) == 1, "one group"
    path = tmp_path / "crash" / "crash-0"
    shutil.copytree(template, path)

    stop_and_kill(spawn("compact", engine, path, config, NOW, BIG_MAP, pause=f"{point}:{nth}"), path, point)

    want = new if swapped is None else expected_mix(old, new, new_bases, swapped)
    with open_partition(path, engine=other_engine, config=config) as log:  # recovery runs
        got = triples(log.records())
        assert got == want, f"killed at {point}:{nth}"
        assert table(got) == table(old) and set(latest_per_key(_recs(old))) <= set(got)
        assert temp_suffixes(path) == set()
        check_segment_indexes(path, 200)
        if point == "clean-checkpointed":
            assert log.cleanable(NOW).first_dirty_offset == segment_bases(path)[-1]
        again = log.compact(NOW, map_bytes=BIG_MAP)  # finishing the job gives the one-pass result
        assert triples(log.records()) == new, again
    with open_partition(path, engine=engine, config=config) as log:
        assert triples(log.records()) == new


def _recs(t: list):
    from pylog.engine import Record

    return [Record(o, 0, 0, k, v, []) for o, k, v in t]


RETENTION_CASES = [
    ("retention", "retention-checkpointed"),
    ("retention", "retention-renamed"),
    ("delete", "retention-checkpointed"),
    ("delete", "retention-renamed"),
]


@pytest.mark.parametrize("mode, point", RETENTION_CASES)
def test_retention_killed_at_each_step_recovers_to_the_new_start(engine, other_engine, tmp_path, mode, point):
    # delete_before runs only the log-start pass: no size rule to run afterwards
    config = RETENTION if mode == "retention" else {**RETENTION, "retention.bytes": -1}
    template = tmp_path / "template" / "ret-0"
    with open_partition(template, engine="reference", config=config) as log:
        fill_keyed(log, 60, keys=1000)
        old = triples(log.records())
    bases = segment_bases(template)
    done = tmp_path / "done" / "ret-0"
    shutil.copytree(template, done)
    arg = NOW if mode == "retention" else bases[3] + 2
    with open_partition(done, engine=engine, config=config) as log:
        result = log.apply_retention(arg) if mode == "retention" else log.delete_before(arg)
        start = result.start_offset
        assert result.deleted_segments >= 2
    new_bases = segment_bases(done)
    path = tmp_path / "crash" / "ret-0"
    shutil.copytree(template, path)

    stop_and_kill(spawn(mode, engine, path, config, arg, pause=f"{point}:1"), path, point)

    with open_partition(path, engine=other_engine, config=config) as log:
        assert log.start_offset == start, "the checkpoint was durable before any rename"
        assert triples(log.records()) == [t for t in old if t[0] >= start]
        assert temp_suffixes(path) == set()
        log.apply_retention(NOW if mode == "retention" else TS)  # the log-start pass finishes it
        assert segment_bases(path) == new_bases
        assert log.start_offset == start


@pytest.mark.parametrize(
    "point", ["clean-written", "clean-swapping", "clean-deleting", "clean-swapped", "retention-renamed"]
)
def test_a_process_keeping_the_log_open_repairs_after_the_dead_cleaner(engine, other_engine, tmp_path, point):
    """The dead-writer repair path: no recovery runs (another process had the log open all
    along); its next append finds the generation left odd, runs recovery's temp-file steps and
    re-lists (ISSUE7 section 2)."""
    retention = point.startswith("retention")
    config = RETENTION if retention else ONE_GROUP
    template = tmp_path / "template" / "live-0"
    if retention:
        with open_partition(template, engine="reference", config=config) as log:
            fill_keyed(log, 60, keys=1000)
    else:
        build(template, config, groups=False)
    with open_partition(template, engine="reference", config=config) as log:
        old = triples(log.records())
    if retention:
        done = tmp_path / "done" / "live-0"
        shutil.copytree(template, done)
        with open_partition(done, engine=engine, config=config) as log:
            start = log.apply_retention(NOW).start_offset
        want = [t for t in old if t[0] >= start]
    else:
        new, _ = compacted_copy(template, tmp_path, engine, config)
        want = old if point == "clean-written" else new
    path = tmp_path / "crash" / "live-0"
    shutil.copytree(template, path)
    survivor = open_partition(path, engine=other_engine, config=config)
    try:
        end = survivor.end_offset
        mode, arg = ("retention", NOW) if retention else ("compact", NOW)
        extra = () if retention else (BIG_MAP,)
        stop_and_kill(spawn(mode, engine, path, config, arg, *extra, pause=f"{point}:1"), path, point)
        assert survivor.append([b"after"], keys=[b"after"], timestamps_ms=[TS]) == end
        assert triples(survivor.records()) == [*want, (end, b"after", b"after")]
        assert read_shared_state(path)["generation"] % 2 == 0
        # the repair runs only for a change left half-done (odd generation); a dead cleaner's
        # unswapped .cleaned files wait for the next compact()
        assert temp_suffixes(path) == ({".cleaned"} if point == "clean-written" else set())
        with open_partition(path, engine=engine, config=config) as peer:
            assert triples(peer.records()) == [*want, (end, b"after", b"after")]
    finally:
        survivor.close()
    with open_partition(path, engine=engine, config=config) as log:
        assert triples(log.records()) == [*want, (end, b"after", b"after")]
        if not retention:
            log.roll()
            log.compact(NOW, map_bytes=BIG_MAP)
            assert temp_suffixes(path) == set()
            assert triples(log.records()) == latest_per_key(_recs([*new, (end, b"after", b"after")]))
