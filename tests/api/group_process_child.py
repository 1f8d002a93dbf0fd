"""A consumer-group member in its own process, for tests/api/test_group_processes.py.

``python group_process_child.py LOCATION ENGINE OUT_DIR GROUP TOPIC MODE SESSION_MS HEARTBEAT_MS STRATEGY``

LOCATION and ENGINE: a log directory and its engine, or a ``kafka://`` URL and ``kafka``.
Consumes TOPIC in GROUP through the public API (``pylog.open(...).consumer``, auto-commit off) and
reports on stdout, one line each, flushed (time stamps are CLOCK_MONOTONIC seconds):

- ``assigned <t> <p,p,...>`` / ``revoked ...`` / ``lost ...`` from its rebalance listener, then
  ``holding <t> <p,p,...>`` (its whole assignment after each change);
- ``processed <p> <first> <next>``: records [first, next) of partition p were processed (appended,
  flushed, to ``<OUT_DIR>/processed-<pid>.txt`` as ``p offset`` lines *before* the commit);
- ``committed <p> <next>`` after a commit of them succeeded, ``commit-failed <p> <next>`` when it
  raised CommitFailedError;
- ``violation ...`` if, after a poll, what it holds is not owned by its member in the catalog's
  ``group_owners`` (read directly: the invariant as the coordinator's state records it; embedded
  backend only: a Kafka coordinator's state is not readable from outside).

MODE ``run``: poll, process, commit, until stdin is closed. MODE ``zombie``: after its first
processed batch it reads one line from stdin (the parent stops it meanwhile) and only then
commits; then it goes on as ``run``. MODE ``churn``: five times, a new consumer joins, polls ten
times (50 ms each) once it holds partitions (or after JOIN_DEADLINE_S without) and closes; then
the process exits.
"""

from __future__ import annotations

import os
import select
import sqlite3
import sys
import time

import pylog
from pylog.errors import CommitFailedError
from pylog.listener import ConsumerRebalanceListener
from pylog.types import OffsetAndMetadata

JOIN_DEADLINE_S = 15.0


def say(*words: object) -> None:
    print(*words, f"{time.clock_gettime(time.CLOCK_MONOTONIC):.6f}", flush=True)


def parts(tps: set) -> str:
    return ",".join(str(tp.partition) for tp in sorted(tps)) or "-"


def main() -> None:
    location, engine, out_dir, group, topic, mode, session_ms, heartbeat_ms, strategy = sys.argv[1:10]
    out = open(os.path.join(out_dir, f"processed-{os.getpid()}.txt"), "a")  # noqa: SIM115
    if engine == "kafka":
        log, catalog = pylog.open(location), None
    else:
        log = pylog.open(location, engine=engine)
        catalog = sqlite3.connect(os.path.join(location, "catalog.db"), timeout=30)
    for _ in range(5 if mode == "churn" else 1):
        consume(log, catalog, out, group, topic, mode, int(session_ms), int(heartbeat_ms), strategy)
    if catalog is not None:
        catalog.close()
    log.close()
    out.close()


def consume(log, catalog, out, group, topic, mode, session_ms, heartbeat_ms, strategy) -> None:
    consumer = log.consumer(
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=session_ms,
        heartbeat_interval_ms=heartbeat_ms,
        partition_assignment_strategy=(strategy,),
        max_poll_records=20,
    )

    class Listener(ConsumerRebalanceListener):
        def on_partitions_assigned(self, assigned: set) -> None:
            say("assigned", topic, parts(assigned))

        def on_partitions_revoked(self, revoked: set) -> None:
            say("revoked", topic, parts(revoked))

        def on_partitions_lost(self, lost: set) -> None:
            say("lost", topic, parts(lost))

    consumer.subscribe([topic], listener=Listener())

    def check_ownership() -> None:
        if catalog is None:
            return  # kafka: the listeners' reports are checked for overlaps by the parent
        member_id = consumer._member.member_id
        owned = {
            p
            for (p,) in catalog.execute(
                "SELECT partition FROM group_owners WHERE group_id=? AND topic=? AND member_id=?",
                (group, topic, member_id),
            )
        }
        held = {tp.partition for tp in consumer.assignment()}
        if not held <= owned and mode != "zombie":
            say("violation", member_id, sorted(held), sorted(owned))

    holding: set = set()
    waited = mode != "zombie"
    polls = 0
    # why counted from the first assignment: a join takes a Kafka coordinator a few round trips
    # (and the other members' rejoin), more than ten 50 ms polls; bounded all the same
    join_deadline = time.monotonic() + JOIN_DEADLINE_S
    while True:
        if mode == "churn":
            polls += 1 if holding or time.monotonic() > join_deadline else 0
            if polls > 10:
                break
        elif select.select([sys.stdin], [], [], 0)[0] and not sys.stdin.readline():
            break  # stdin closed: the parent is done
        batches = consumer.poll(timeout_ms=50)
        check_ownership()
        if consumer.assignment() != holding:
            holding = consumer.assignment()
            say("holding", topic, parts(holding))
        for tp, records in sorted(batches.items()):
            for r in records:
                out.write(f"{tp.partition} {r.offset}\n")
            out.flush()
            first, nxt = records[0].offset, records[-1].offset + 1
            say("processed", tp.partition, first, nxt)
            if not waited:
                sys.stdin.readline()  # the parent SIGSTOPs us before it writes this line
                waited = True
            try:
                consumer.commit({tp: OffsetAndMetadata(nxt, "", -1)})
            except CommitFailedError:
                say("commit-failed", tp.partition, nxt)
            else:
                say("committed", tp.partition, nxt)
    consumer.close()
    say("closed", topic, "-")


if __name__ == "__main__":
    main()
