"""``pylog.mirror``: copies between log directories (and, with a broker, Kafka) keep partition, key,
value, headers and timestamps, and offsets where the destination allows; missing topics are made
with the source's partitions and config (refused settings reported); progress is committed on the
source so a run killed mid-way (SIGKILL) resumes without loss or duplicates; the final count check
fails loudly when the destination does not hold what was written.

Records are read back through the public consumer on both sides, so the same comparison runs on
every backend.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from helpers import CODECS, parse_batches

import pylog
from pylog.bench_processes import same_pylog_env
from pylog.errors import RecordTooLargeError, UnknownTopicOrPartitionError
from pylog.mirror import MirrorCountError, MirrorError
from pylog.types import TopicPartition

QUIET = {"log.cleaner.enable": False}


def read_all(log: pylog.Log, topic: str, timeout_s: float = 30.0) -> dict[int, list[tuple]]:
    """Every record of ``topic`` by partition as ``(offset, timestamp, key, value, headers)``,
    through a group-less consumer reading from each partition's start to its end now."""
    count = len(log.describe_topic(topic).partitions)
    tps = [TopicPartition(topic, p) for p in range(count)]
    out: dict[int, list[tuple]] = {p: [] for p in range(count)}
    with log.consumer(enable_auto_commit=False) as consumer:
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"reading {topic} did not reach {ends} in {timeout_s} s"
            for tp, records in consumer.poll(timeout_ms=200).items():
                out[tp.partition] += [
                    (r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in records
                ]
    return out


def without_offsets(records: dict[int, list[tuple]]) -> dict[int, list[tuple]]:
    return {p: [r[1:] for r in rs] for p, rs in records.items()}


def varied_records(log: pylog.Log, topic: str, partitions: int = 3, per_codec: int = 40) -> None:
    """Into ``topic`` (made here): for each of the five codecs a producer writes ``per_codec``
    records per partition: null keys, tombstones, empty values, headers (a None header value too),
    explicit old timestamps."""
    log.create_topic(topic, partitions, {"segment.bytes": 65536, "retention.ms": -1})
    n = 0
    for codec in CODECS:
        with log.producer(compression_type=None if codec == "none" else codec, linger_ms=50) as producer:
            for i in range(per_codec * partitions):
                key = None if n % 5 == 0 else f"key-{n % 17}".encode()
                value = None if n % 7 == 0 else b"" if n % 11 == 0 else f"value-{n}-".encode() * (n % 4 + 1)
                headers = [("trace", f"{n}".encode()), ("empty", None)] if n % 3 == 0 else None
                producer.send(
                    topic,
                    value,
                    key=key,
                    headers=headers,
                    partition=i % partitions,
                    timestamp_ms=1_000_000 + n,
                )
                n += 1


def codecs_in(log: pylog.Log, topic: str) -> set[int]:
    """The codec ids of the batches of ``topic`` on disk (embedded only)."""
    found = set()
    for p in log.describe_topic(topic).partitions:
        partition_log = log.backend.partition_log(TopicPartition(topic, p.partition))
        offset = partition_log.start_offset
        while offset < partition_log.end_offset:
            batches = parse_batches(partition_log.read(offset, 1 << 20))
            found |= {b.codec for b in batches}
            offset = batches[-1].next_offset
    return found


# --- embedded -> embedded ----------------------------------------------------------------------


def test_copies_every_record_with_offsets_and_config(tmp_path: Path) -> None:
    with pylog.open(tmp_path / "src", config=QUIET) as src:
        varied_records(src, "events")
        assert codecs_in(src, "events") == set(range(5))
        src.create_topic("empty", 2)
        expected = read_all(src, "events")

    result = pylog.mirror(tmp_path / "src", tmp_path / "dst")

    assert sorted(result.created_topics) == ["empty", "events"]
    assert result.configs_not_carried == []
    assert result.records == 600 and result.offsets_preserved
    for tp, p in result.partitions.items():
        if tp.topic == "events":
            assert (p.records_read, p.records_written, p.offsets_preserved) == (200, 200, True)
            assert p.destination_end_after == p.next_offset == p.source_end == 200
        else:
            assert (p.records_written, p.offsets_preserved) == (0, None)
    with pylog.open(tmp_path / "dst", config=QUIET) as dst:
        assert read_all(dst, "events") == expected
        assert dst.describe_topic("events").config == {"retention.ms": -1, "segment.bytes": 65536}
        assert len(dst.describe_topic("empty").partitions) == 2

    again = pylog.mirror(tmp_path / "src", tmp_path / "dst")
    assert again.records == 0 and again.created_topics == []


def test_a_second_run_copies_only_what_was_appended_since(tmp_path: Path) -> None:
    with pylog.open(tmp_path / "src", config=QUIET) as src:
        src.create_topic("t", 2)
        with src.producer() as producer:
            for i in range(10):
                producer.send("t", b"a%d" % i, partition=i % 2)
        pylog.mirror(src, tmp_path / "dst", ["t"])
        with src.producer() as producer:
            for i in range(6):
                producer.send("t", b"b%d" % i, partition=0)
        second = pylog.mirror(src, tmp_path / "dst", ["t"])
        assert {tp.partition: p.records_written for tp, p in second.partitions.items()} == {0: 6, 1: 0}
        assert second.partitions[TopicPartition("t", 0)].first_offset == 5
        expected = read_all(src, "t")
    with pylog.open(tmp_path / "dst", config=QUIET) as dst:
        assert read_all(dst, "t") == expected


def test_log_append_time_is_not_carried_and_times_are_kept(tmp_path: Path) -> None:
    with pylog.open(tmp_path / "src", config=QUIET) as src:
        src.create_topic("stamped", 1, {"message.timestamp.type": "LogAppendTime"})
        with src.producer() as producer:
            for i in range(5):
                producer.send("stamped", b"%d" % i, timestamp_ms=1)
        expected = read_all(src, "stamped")
    assert all(r[1] > 1 for r in expected[0])  # the source stamped its own times

    result = pylog.mirror(tmp_path / "src", tmp_path / "dst")

    [item] = result.configs_not_carried
    assert (item.topic, item.key, item.value) == ("stamped", "message.timestamp.type", "LogAppendTime")
    with pylog.open(tmp_path / "dst", config=QUIET) as dst:
        assert read_all(dst, "stamped") == expected
        assert dst.describe_topic("stamped").config == {}


def test_holes_in_the_source_renumber_and_say_why(tmp_path: Path) -> None:
    with pylog.open(tmp_path / "src", config=QUIET) as src:
        src.create_topic("trimmed", 1)
        src.create_topic("state", 1, {"cleanup.policy": "compact", "segment.bytes": 1024})
        with src.producer() as producer:
            for i in range(20):
                producer.send("trimmed", b"%d" % i)
            for i in range(60):
                producer.send("state", b"v%d" % i, key=b"k%d" % (i % 3))
                producer.flush()  # one batch each, so the segments roll and compaction leaves holes
        src.delete_records("trimmed", {0: 8})
        src.compact("state")
        kept = read_all(src, "state")[0]
        assert len(kept) < 60 and kept[-1][0] == 59  # holes below the tail
        expected = {"trimmed": read_all(src, "trimmed"), "state": {0: kept}}

    result = pylog.mirror(tmp_path / "src", tmp_path / "dst")

    trimmed = result.partitions[TopicPartition("trimmed", 0)]
    assert trimmed.offsets_preserved is False
    assert "source offset 8 was written at destination offset 0" in trimmed.renumbered
    state = result.partitions[TopicPartition("state", 0)]
    assert state.offsets_preserved is False and "hold no records" in state.renumbered
    assert state.records_written == len(kept)
    with pylog.open(tmp_path / "dst", config=QUIET) as dst:
        for topic, records in expected.items():
            copied = read_all(dst, topic)
            assert without_offsets(copied) == without_offsets(records)
            assert [r[0] for r in copied[0]] == list(range(len(records[0])))
        assert dst.describe_topic("state").config["cleanup.policy"] == "compact"


def test_refused_settings_are_reported_and_the_rest_carried(tmp_path: Path) -> None:
    """A destination refusing a setting (here an embedded one refusing a Kafka-only key and a
    value out of its range, given as an open source Log whose describe_topic says so)."""

    with pylog.open(tmp_path / "src", config=QUIET) as src:
        src.create_topic("t", 2, {"retention.ms": 5000})
        with src.producer() as producer:
            producer.send("t", b"x", partition=1)
        real_describe = src.backend.describe_topic

        def describe(name: str) -> Any:
            found = real_describe(name)
            return found._replace(config={**found.config, "min.insync.replicas": "2", "segment.bytes": "7"})

        src.backend.describe_topic = describe  # type: ignore[method-assign]
        result = pylog.mirror(src, tmp_path / "dst")
    refused = {item.key: item for item in result.configs_not_carried}
    assert set(refused) == {"min.insync.replicas", "segment.bytes"}
    assert "unknown config key 'min.insync.replicas'" in refused["min.insync.replicas"].reason
    assert refused["segment.bytes"].value == "7" and "segment.bytes" in refused["segment.bytes"].reason
    with pylog.open(tmp_path / "dst", config=QUIET) as dst:
        assert dst.describe_topic("t").config == {"retention.ms": 5000}
        assert read_all(dst, "t")[1][0][3] == b"x"


def test_refusals(tmp_path: Path) -> None:
    with pylog.open(tmp_path / "src", config=QUIET) as src, pylog.open(tmp_path / "dst", config=QUIET) as dst:
        src.create_topic("t", 3)
        dst.create_topic("t", 2)
        with pytest.raises(MirrorError, match="has 2 partition"):
            pylog.mirror(src, dst)
        with pytest.raises(UnknownTopicOrPartitionError):
            pylog.mirror(src, dst, ["nope"])
        src.create_topic("u", 1)
        pylog.mirror(src, dst, ["u"], group_id="g")
        with pytest.raises(MirrorError, match="pick another group id"):
            pylog.mirror(src, tmp_path / "elsewhere", ["u"], group_id="g")
    with pytest.raises(MirrorError, match="are the same log"):
        pylog.mirror(tmp_path / "src", tmp_path / "x" / ".." / "src")
    with pytest.raises(MirrorError, match="not a pylog log directory"):
        pylog.mirror(tmp_path / "missing", tmp_path / "dst")
    assert not (tmp_path / "missing").exists()


def test_count_check_fails_when_someone_else_writes_the_destination(tmp_path: Path) -> None:
    with pylog.open(tmp_path / "src", config=QUIET) as src:
        src.create_topic("t", 2)
        with src.producer() as producer:
            for i in range(10):
                producer.send("t", b"%d" % i, partition=i % 2)
    intruded = []

    with pylog.open(tmp_path / "dst", config=QUIET) as dst:

        def progress(copied: int, total: int) -> None:
            if copied and not intruded:  # another writer lands a record in partition 1
                with dst.producer() as producer:
                    producer.send("t", b"intruder", partition=1)
                intruded.append(copied)

        with pytest.raises(MirrorCountError) as caught:
            pylog.mirror(tmp_path / "src", dst, progress=progress)
    assert intruded
    assert caught.value.mismatches == ["t-1: the destination end moved by 6, 5 records were written"]
    assert caught.value.result.partitions[TopicPartition("t", 0)].records_written == 5


# --- resumption after SIGKILL ------------------------------------------------------------------

CHILD = """
import sys
import pylog

calls = 0


def progress(copied, total):
    global calls
    calls += 1
    if calls == int(sys.argv[3]):
        # the last send is written, not yet committed: stop here until killed
        print("stuck", copied, flush=True)
        sys.stdin.read()


pylog.mirror(sys.argv[1], sys.argv[2], progress=progress, commit_bytes=1,
             consumer_config={"max_poll_records": 300})
print("finished", flush=True)
"""


def committed_total(path: Path, group: str, topic: str) -> int:
    with pylog.open(path, config=QUIET) as log:
        described = log.describe_group(group)
    return sum(offset.offset for tp, offset in described.committed.items() if tp.topic == topic)


def numbered_source(path: Path, topic: str) -> dict[int, list[tuple]]:
    """``topic`` in a new log at ``path``: 3 partitions of 2,000 keyed records; returns them."""
    with pylog.open(path, config=QUIET) as src:
        src.create_topic(topic, 3)
        with src.producer() as producer:
            for n in range(3 * 2000):
                producer.send(topic, b"%06d" % n, key=b"k%d" % (n % 13), partition=n % 3)
        return read_all(src, topic)


def kill_mirror_midway(source: Path, destination: str, calls: int) -> None:
    """Run ``pylog.mirror(source, destination)`` in a child committing after every poll; at its
    ``calls``-th progress report (a send written, not committed) SIGKILL it."""
    child = subprocess.Popen(
        [sys.executable, "-P", "-c", CHILD, str(source), destination, str(calls)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=same_pylog_env(),
    )
    try:
        line = child.stdout.readline().decode()
        assert line.startswith("stuck"), (line, child.stderr.read().decode())
        child.kill()
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for f in (child.stdin, child.stdout, child.stderr):
            f.close()


def test_resumes_exactly_after_sigkill(tmp_path: Path) -> None:
    expected = numbered_source(tmp_path / "src", "t")
    kill_mirror_midway(tmp_path / "src", str(tmp_path / "dst"), 12)

    committed = committed_total(tmp_path / "src", "pylog-mirror", "t")
    with pylog.open(tmp_path / "dst", config=QUIET) as dst:
        written = sum(p.end_offset for p in dst.describe_topic("t").partitions)
    # killed mid-way, with records written past the last commit
    assert 0 < committed < written < 6000, (committed, written)

    result = pylog.mirror(tmp_path / "src", tmp_path / "dst")

    assert sum(p.skipped for p in result.partitions.values()) == written - committed
    assert result.records == 6000 - written and result.offsets_preserved
    with pylog.open(tmp_path / "dst", config=QUIET) as dst:
        assert read_all(dst, "t") == expected
    assert committed_total(tmp_path / "src", "pylog-mirror", "t") == 6000


# --- pylog -> Kafka -> pylog -------------------------------------------------------------------


@pytest.fixture
def kafka_names(kafka_url: str) -> Any:
    """Unique topic/group names on the shared broker, deleted afterwards."""
    made: dict[str, list[str]] = {"topics": [], "groups": []}

    def name(kind: str) -> str:
        value = f"mirror-{uuid.uuid4().hex[:10]}"
        made[kind].append(value)
        return value

    yield name
    with pylog.open(kafka_url) as cluster:
        for topic in made["topics"]:
            if topic in cluster.list_topics():
                cluster.delete_topic(topic)
        known = set(cluster.list_groups())
        for group in made["groups"]:
            if group in known:
                cluster.delete_group(group)


def test_round_trip_through_kafka_compares_every_record(
    tmp_path: Path, kafka_url: str, kafka_names: Any
) -> None:
    topic = kafka_names("topics")
    there, back = kafka_names("groups"), kafka_names("groups")
    with pylog.open(tmp_path / "src", config=QUIET) as src:
        varied_records(src, topic)
        assert codecs_in(src, topic) == set(range(5))
        expected = read_all(src, topic)

    out = pylog.mirror(tmp_path / "src", kafka_url, [topic], group_id=there)

    # Kafka refuses segment.bytes below 1 MiB (LogConfig's SEGMENT_BYTES_CONFIG atLeast 1024 * 1024)
    assert [(c.key, c.value) for c in out.configs_not_carried] == [("segment.bytes", 65536)]
    assert out.records == 600 and out.offsets_preserved
    with pylog.open(kafka_url) as cluster:
        assert read_all(cluster, topic) == expected
        assert cluster.describe_topic(topic).config.get("retention.ms") in (-1, "-1")

    home = pylog.mirror(kafka_url, tmp_path / "back", [topic], group_id=back)

    assert home.records == 600 and home.offsets_preserved and home.configs_not_carried == []
    with pylog.open(tmp_path / "back", config=QUIET) as copy:
        assert read_all(copy, topic) == expected
        assert copy.describe_topic(topic).config.get("retention.ms") == -1


def test_a_record_stamped_zero_is_not_copied_to_kafka_restamped(
    tmp_path: Path, kafka_url: str, kafka_names: Any
) -> None:
    topic, group = kafka_names("topics"), kafka_names("groups")
    with pylog.open(tmp_path / "src", config=QUIET) as src:
        src.create_topic(topic, 1)
        with src.producer() as producer:
            producer.send(topic, b"epoch", timestamp_ms=0)

        with pytest.raises(pylog.MirrorError, match="stamped 0"):
            pylog.mirror(src, kafka_url, [topic], group_id=group)

    with pylog.open(kafka_url) as cluster:
        assert cluster.describe_topic(topic).partitions[0].end_offset == 0


def test_nothing_is_committed_past_what_kafka_refused(
    tmp_path: Path, kafka_url: str, kafka_names: Any
) -> None:
    topic, group = kafka_names("topics"), kafka_names("groups")
    with pylog.open(kafka_url) as cluster:
        cluster.create_topic(topic, 1, {"max.message.bytes": 2000})
    with pylog.open(tmp_path / "src", config=QUIET) as src:
        src.create_topic(topic, 1)
        with src.producer() as producer:
            producer.send(topic, b"small")
            producer.send(topic, b"x" * 5000)  # larger than the destination topic takes

        with pytest.raises(RecordTooLargeError):
            pylog.mirror(src, kafka_url, [topic], group_id=group)

        with src.consumer(group_id=group, enable_auto_commit=False) as consumer:
            consumer.assign([TopicPartition(topic, 0)])
            assert consumer.committed(TopicPartition(topic, 0)) == 0  # the starting mark only


def test_resumes_into_kafka_after_sigkill_without_loss(
    tmp_path: Path, kafka_url: str, kafka_names: Any
) -> None:
    """Into Kafka the promise is no loss and the order kept; duplicates are allowed (records in
    flight at the kill), but only of records written after the last commit."""
    topic = kafka_names("topics")
    expected = numbered_source(tmp_path / "src", topic)
    kill_mirror_midway(tmp_path / "src", kafka_url, 12)
    committed = committed_total(tmp_path / "src", "pylog-mirror", topic)
    assert 0 < committed < 6000

    result = pylog.mirror(tmp_path / "src", kafka_url, [topic])

    with pylog.open(kafka_url) as cluster:
        copied = read_all(cluster, topic)
    assert committed_total(tmp_path / "src", "pylog-mirror", topic) == 6000
    duplicates = 0
    for partition, records in expected.items():
        # every record once, in order, with its key, value, headers and timestamp
        first_copies = list(dict.fromkeys((t, k, v, tuple(h)) for _, t, k, v, h in copied[partition]))
        assert first_copies == [(t, k, v, tuple(h)) for _, t, k, v, h in records], partition
        duplicates += len(copied[partition]) - len(first_copies)
    in_flight = sum(p.skipped for p in result.partitions.values())
    assert duplicates <= 6000 - committed - in_flight, (duplicates, committed, in_flight)


def test_a_full_librdkafka_queue_loses_and_repeats_nothing(
    tmp_path: Path, kafka_url: str, kafka_names: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a queue of 50 records, sends of 2,000 keep meeting BufferError mid-way: each is
    resumed at the record that failed."""
    # the module (pylog.mirror, the attribute, is the function)
    monkeypatch.setattr(sys.modules["pylog.mirror"], "KAFKA_QUEUE_RECORDS", 50)
    topic = kafka_names("topics")
    expected = numbered_source(tmp_path / "src", topic)
    result = pylog.mirror(tmp_path / "src", kafka_url, [topic], group_id=kafka_names("groups"))
    assert result.records == 6000 and result.offsets_preserved
    with pylog.open(kafka_url) as cluster:
        assert read_all(cluster, topic) == expected
