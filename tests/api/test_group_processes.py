"""Consumer groups across real OS processes (the child is tests/api/group_process_child.py).

Synchronisation is by the children's reports on their stdout (read with ``select``, under an
overall deadline so that a hang fails instead of blocking), never by sleeping:

- ``test_sigkilled_member``: three members consume six partitions and commit after processing;
  one is SIGKILLed while it works; the survivors take over its partitions within the session
  timeout; every record is processed, none is lost, a record is processed twice only if the killed
  member processed it after its last commit of that partition, and the final committed offsets
  equal the log end.
- ``test_sigstopped_zombie_is_fenced``: a member stopped with SIGSTOP past its session timeout is
  evicted, its successor consumes and commits further, and once resumed the zombie's commit raises
  CommitFailedError and is not applied; its next poll reports the partition lost and rejoins.

Each test runs on the embedded backend's two engines (the children open the same directory) and
on a Kafka broker (the children connect to it; ``log_target`` of tests/api/conftest.py). Records
are written with the public producer (explicit partitions). The children's "violation" check reads
the embedded catalog's ownership table; on Kafka the parent's overlap check of the listeners'
reports is what remains (a Kafka coordinator's state is not readable from outside).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

import pylog
from pylog.bench_processes import same_pylog_env
from pylog.types import TopicPartition

from .conftest import LogTarget

CHILD = Path(__file__).with_name("group_process_child.py")
SESSION_MS, HEARTBEAT_MS = 3000, 200
DEADLINE_S = 60


class Child:
    def __init__(self, target: LogTarget, out_dir: Path, group: str, topic: str, mode: str, strategy: str):
        env = same_pylog_env()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(CHILD),
                *target.argv(),
                str(out_dir),
                group,
                topic,
                mode,
                str(SESSION_MS),
                str(HEARTBEAT_MS),
                strategy,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.buffer = b""
        self.lines: list[list[str]] = []
        self.holding: set[int] = set()
        self.committed: dict[int, int] = {}
        self.dead = False

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        *complete, self.buffer = self.buffer.split(b"\n")
        for raw in complete:
            words = raw.decode().split()
            self.lines.append(words)
            if words[0] == "holding":
                self.holding = set() if words[2] == "-" else {int(p) for p in words[2].split(",")}
            elif words[0] == "committed":
                self.committed[int(words[1])] = int(words[2])

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def finish(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(DEADLINE_S) == 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(BrokenPipeError):
                    stream.close()


def wait_for(children: list[Child], done: Callable[[], bool], what: str) -> None:
    """Read the children's reports until ``done()`` holds (checked after every chunk)."""
    deadline = time.monotonic() + DEADLINE_S
    while not done():
        fds = {c.proc.stdout.fileno(): c for c in children if not c.dead and c.proc.stdout is not None}
        assert fds, f"every child exited before {what} (their stderr is above)"
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out waiting for {what}"
        ready, _, _ = select.select(list(fds), [], [], remaining)
        for fd in ready:
            chunk = os.read(fd, 65536)
            if chunk:
                fds[fd].feed(chunk)
            else:
                fds[fd].dead = True


def append(log: pylog.Log, topic: str, partition: int, count: int, start: int) -> None:
    with contextlib.closing(log.producer(acks=1)) as producer:
        for i in range(count):
            producer.send(topic, f"{partition}:{start + i}".encode(), partition=partition)
        producer.flush()


def processed_records(tmp_path: Path, pid: int) -> list[tuple[int, int]]:
    path = tmp_path / f"processed-{pid}.txt"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        words = line.split()
        if len(words) == 2:  # a SIGKILL may cut the last line
            out.append((int(words[0]), int(words[1])))
    return out


def check_no_overlap(children: list[Child], ended: dict[Child, float]) -> None:
    """No two members held one partition at the same instant, as their listeners saw it: a member
    holds a partition from its ``assigned`` report (made after the catalog gave it the partition)
    to its ``revoked`` report (made before it gives it back), or to its death."""
    intervals: dict[int, list[tuple[float, float, int]]] = {}
    for c in children:
        since: dict[int, float] = {}
        for words in c.lines:
            if words[0] not in ("assigned", "revoked", "lost") or words[2] == "-":
                continue
            for p in map(int, words[2].split(",")):
                if words[0] == "assigned":
                    since[p] = float(words[-1])
                else:
                    intervals.setdefault(p, []).append((since.pop(p), float(words[-1]), c.proc.pid))
        for p, start in since.items():
            intervals.setdefault(p, []).append((start, ended.get(c, float("inf")), c.proc.pid))
    for p, spans in intervals.items():
        spans.sort()
        for (_, end, pid), (start, _, other) in itertools.pairwise(spans):
            assert end <= start, f"partition {p} held by {pid} and {other} at once"


@pytest.mark.parametrize("strategy", ["cooperative-sticky", "range"])
def test_sigkilled_member(log_target: LogTarget, tmp_path: Path, strategy: str) -> None:
    per_phase, partitions = 100, 6
    with log_target.open() as log:
        log.create_topic("t", partitions)
        for p in range(partitions):
            append(log, "t", p, per_phase, 0)
        children = [Child(log_target, tmp_path, "g", "t", "run", strategy) for _ in range(3)]
        try:
            everything = set(range(partitions))

            def all_committed(upto: int) -> Callable[[], bool]:
                def done() -> bool:
                    best: dict[int, int] = {}
                    for c in children:
                        for p, o in c.committed.items():
                            best[p] = max(best.get(p, 0), o)
                    return all(best.get(p, 0) == upto for p in everything)

                return done

            wait_for(
                children,
                lambda: all(len(c.holding) == 2 for c in children) and all_committed(per_phase)(),
                "three members sharing six partitions, all committed",
            )
            victim, survivors = children[0], children[1:]
            victim_parts = set(victim.holding)
            for p in range(partitions):
                append(log, "t", p, per_phase, per_phase)
            wait_for(
                children,
                lambda: any(w[0] == "processed" and int(w[2]) >= per_phase for w in victim.lines),
                "the victim working on the second phase",
            )
            killed_at = time.clock_gettime(time.CLOCK_MONOTONIC)
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait()
            victim.dead = True
            wait_for(
                survivors,
                lambda: survivors[0].holding | survivors[1].holding == everything,
                "the survivors taking over",
            )
            takeover_at = max(
                float(w[-1]) for c in survivors for w in c.lines if w[0] == "holding" and w[2] != "-"
            )
            wait_for(survivors, all_committed(2 * per_phase), "every record committed")
            for c in survivors:
                c.finish()
            victim.kill()
        finally:
            for c in children:
                c.kill()
        # the survivors took the victim's partitions within the session timeout (the victim's last
        # heartbeat was before the kill; slack for the handoff and a loaded machine)
        assert takeover_at - killed_at <= SESSION_MS / 1000 + 1.0, takeover_at - killed_at
        assert victim_parts
        seen: Counter[tuple[int, int]] = Counter()
        for c in children:
            seen.update(processed_records(tmp_path, c.proc.pid))
        expected = {(p, o) for p in everything for o in range(2 * per_phase)}
        assert set(seen) == expected  # none lost, nothing invented
        victim_last_commit = {p: 0 for p in everything}
        victim_last_commit.update(victim.committed)
        victim_processed = set(processed_records(tmp_path, victim.proc.pid))
        for (p, o), n in seen.items():
            if n > 1:  # only what the victim processed after its last commit of that partition
                assert n == 2 and (p, o) in victim_processed and o >= victim_last_commit[p], (p, o, n)
        check_no_overlap(children, {victim: killed_at})
        assert not [w for c in children for w in c.lines if w[0] == "violation"]
        group = log.describe_group("g")
        assert group.state == "Empty"
        assert {tp: om.offset for tp, om in group.committed.items()} == {
            TopicPartition("t", p): 2 * per_phase for p in everything
        }
        assert set(group.lag.values()) == {0}


def test_sigstopped_zombie_is_fenced(log_target: LogTarget, tmp_path: Path) -> None:
    with log_target.open() as log:
        log.create_topic("z", 2)
        for p in range(2):
            append(log, "z", p, 10, 0)
        successor = Child(log_target, tmp_path, "g", "z", "run", "cooperative-sticky")
        children = [successor]
        try:
            wait_for(
                children,
                lambda: successor.holding == {0, 1} and successor.committed == {0: 10, 1: 10},
                "the first member holding both and committing",
            )
            zombie = Child(log_target, tmp_path, "g", "z", "zombie", "cooperative-sticky")
            children.append(zombie)
            wait_for(children, lambda: len(zombie.holding) == 1, "the zombie joining")
            (zp,) = zombie.holding
            append(log, "z", zp, 10, 10)
            wait_for(
                children, lambda: any(w[0] == "processed" for w in zombie.lines), "the zombie processing"
            )
            zombie.proc.send_signal(signal.SIGSTOP)  # between its processing and its commit
            stale_offset = int(next(w for w in zombie.lines if w[0] == "processed")[3])
            assert stale_offset == 20
            append(log, "z", zp, 10, 20)
            wait_for(
                [successor],
                lambda: successor.holding == {0, 1} and successor.committed.get(zp) == 30,
                "the successor taking over the zombie's partition and committing past it",
            )
            zombie.send("go")  # read when it runs again: it then commits its stale batch
            zombie.proc.send_signal(signal.SIGCONT)
            wait_for(
                [zombie],
                lambda: any(w[0] in ("commit-failed", "committed") for w in zombie.lines),
                "the zombie's commit",
            )
            outcome = next(w for w in zombie.lines if w[0] in ("commit-failed", "committed"))
            assert outcome[:3] == ["commit-failed", str(zp), str(stale_offset)]

            def rejoined() -> bool:  # its partition reported lost, then a new assignment
                kinds = [w[0] for w in zombie.lines]
                return "lost" in kinds and "assigned" in kinds[kinds.index("lost") :]

            wait_for([zombie], rejoined, "the zombie rejoining")
            assert ["lost", "z", str(zp)] in [w[:3] for w in zombie.lines]
            committed = log.describe_group("g").committed
            assert committed[TopicPartition("z", zp)].offset == 30  # the stale commit was not applied
            wait_for(
                children,
                lambda: (
                    zombie.holding | successor.holding == {0, 1} and not zombie.holding & successor.holding
                ),
                "the group settling",
            )
            for c in children:
                c.finish()
        finally:
            for c in children:
                c.kill()
        assert log.describe_group("g").committed[TopicPartition("z", zp)].offset == 30


@pytest.mark.parametrize("strategy", ["cooperative-sticky", "range"])
def test_churning_members_never_share_a_partition(
    log_target: LogTarget, tmp_path: Path, strategy: str
) -> None:
    """Four processes join and leave five times each while a fifth stays: after every poll each
    member's holdings are owned by it in the catalog (embedded), and the listeners' reports never
    overlap."""
    with log_target.open() as log:
        log.create_topic("c", 8)
        steady = Child(log_target, tmp_path, "g", "c", "run", strategy)
        churners = [Child(log_target, tmp_path, "g", "c", "churn", strategy) for _ in range(4)]
        children = [steady, *churners]
        try:
            wait_for(children, lambda: all(c.dead for c in churners), "the churners to finish")
            wait_for([steady], lambda: steady.holding == set(range(8)), "the steady member holding all")
            steady.finish()
            wait_for([steady], lambda: steady.dead, "the steady member's last report")
        finally:
            for c in children:
                c.kill()
        assert all(c.proc.returncode == 0 for c in children)
        assert not [w for c in children for w in c.lines if w[0] == "violation"]
        assert sum(w[0] == "closed" for c in churners for w in c.lines) == 20
        check_no_overlap(children, {})
        assert any(w[0] == "assigned" for c in churners for w in c.lines)  # they did take part
