"""A consumer group of two processes sharing the partitions of one topic.

    python examples/consumer_group.py [DIR]

The parent creates a 4-partition topic and starts two child processes that join group "billing" and
split the partitions between them (range assignor); once both are in, it produces 1,000 records. Each
member processes what it gets and commits after each batch, and stops once the group as a whole has
committed every record. The parent then checks that every record was processed, by one member or the
other.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

import pylog

TOPIC, GROUP, RECORDS = "payments", "billing", 1000


def member(directory: str, name: str) -> None:
    """One group member: poll, process, commit; print what it processed."""
    processed: list[int] = []
    with pylog.open(directory) as log:
        consumer = log.consumer(TOPIC, group_id=GROUP, auto_offset_reset="earliest", enable_auto_commit=False)
        with consumer:
            while True:
                batches = consumer.poll(timeout_ms=200)
                for records in batches.values():
                    processed.extend(int(r.value) for r in records)
                if batches:
                    consumer.commit()  # after processing: a crash now replays, never loses
                committed = log.describe_group(GROUP).committed
                if sum(offset.offset for offset in committed.values()) == RECORDS:
                    break  # the group as a whole has processed every record
    print(name, " ".join(map(str, processed)), flush=True)


def wait_for_members(log: pylog.Log, count: int, timeout_s: float = 60) -> None:
    """Wait until ``count`` members own the group's partitions (an example may poll; tests may not)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            group = log.describe_group(GROUP)
        except pylog.errors.GroupIdNotFoundError:
            pass  # no member has joined yet
        else:
            if group.state == "Stable" and len(group.members) == count:
                return
        time.sleep(0.02)
    raise SystemExit(f"the group did not reach {count} members")


def main(directory: str) -> dict[str, int]:
    with pylog.open(directory) as log:
        log.create_topic(TOPIC, partitions=4)
        children = [
            subprocess.Popen(
                [sys.executable, __file__, "--member", directory, name], stdout=subprocess.PIPE, text=True
            )
            for name in ("a", "b")
        ]
        try:
            wait_for_members(log, 2)  # so that both share the work below
            with log.producer() as producer:
                for i in range(RECORDS):
                    producer.send(TOPIC, key=str(i % 10).encode(), value=str(i).encode())
            outputs = [child.communicate(timeout=120)[0] for child in children]
        finally:
            for child in children:
                child.kill()  # a no-op for a member that has finished
    seen: dict[str, int] = {}
    values: list[int] = []
    for child, out in zip(children, outputs, strict=True):
        if child.returncode != 0:
            raise SystemExit(f"member failed with exit code {child.returncode}")
        name, *numbers = out.split()
        seen[name] = len(numbers)
        values.extend(map(int, numbers))
    if sorted(set(values)) != list(range(RECORDS)):
        raise SystemExit("some records were not processed")
    return seen


if __name__ == "__main__":
    if sys.argv[1:2] == ["--member"]:
        member(sys.argv[2], sys.argv[3])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            seen = main(sys.argv[1] if len(sys.argv) > 1 else tmp)
        print(
            f"processed {RECORDS} records: " + ", ".join(f"member {k} {v}" for k, v in sorted(seen.items()))
        )
