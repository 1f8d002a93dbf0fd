"""Topic admin through ``pylog.Log``: create, list, describe, alter, grow and delete topics.

Runs on both engines and on a Kafka cluster through the ``log`` fixture. Tests that look at the
embedded backend's files (partition directories, ``partition.metadata``, ``-delete`` leftovers)
also take ``log_dir``, which skips their kafka param; a test whose point is the API and only
some checks are on the files reads the directory from ``embedded_dir(log)`` instead, so its
kafka param runs the rest.
"""

from __future__ import annotations

import base64
import logging
import multiprocessing
import os
import re
from pathlib import Path

import pytest

import pylog
import pylog.embedded.backend as embedded_backend
from pylog.errors import (
    ClientClosedError,
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidTopicError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from pylog.types import TopicPartition

LEGAL_NAMES = ["a", "orders", "Orders.v2", "with_underscore", "with-dash", "...", "x" * 249, "0-1"]
ILLEGAL_NAMES = ["", ".", "..", "x" * 250, "a/b", "../escape", "/abs", "a b", "ü", "a\0b", "a\\b", "tab\t"]


#: why a test's kafka param is skipped: a cluster's partitions have no local engine handle
HANDLE = "goes through the engine handle (partition_log), which a cluster's partitions do not have"
#: Kafka's smallest segment.bytes: 1 MiB (storage/src/main/java/org/apache/kafka/storage/internals/log/LogConfig.java)
KAFKA_MIN_SEGMENT_BYTES = 1024 * 1024


def backend(log: pylog.Log):
    return log._backend


def embedded_dir(log: pylog.Log) -> Path | None:
    """The log directory of an embedded log; None on a Kafka cluster (the brokers' files)."""
    return None if log.engine == "kafka" else Path(log.path)


def small_segment(log: pylog.Log) -> int:
    """A small segment.bytes override the backend takes (a cluster refuses pylog's small ones)."""
    return KAFKA_MIN_SEGMENT_BYTES if log.engine == "kafka" else 4096


# --- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LEGAL_NAMES)
def test_legal_names_are_created_inside_the_directory(log: pylog.Log, name: str) -> None:
    log_dir = embedded_dir(log)
    log.create_topic(name, partitions=2)
    assert name in log.list_topics()
    for n in range(2 if log_dir else 0):
        path = log_dir / f"{name}-{n}"
        assert path.is_dir()
        assert path.resolve().parent == log_dir.resolve()
    log.delete_topic(name)  # its -delete names stay within 255 characters
    assert log.list_topics() == []
    if log_dir:
        assert [p.name for p in log_dir.iterdir() if p.is_dir()] == []


@pytest.mark.parametrize("name", ILLEGAL_NAMES)
def test_illegal_names_are_refused_and_touch_nothing(log: pylog.Log, name: str) -> None:
    log_dir = embedded_dir(log)
    before = sorted(os.listdir(log_dir)) if log_dir else None
    with pytest.raises(InvalidTopicError):
        log.create_topic(name)
    with pytest.raises(InvalidTopicError):
        backend(log).partitions_for(name, create=True)
    with pytest.raises(InvalidTopicError):
        log.delete_topic(name)
    if log_dir:
        assert sorted(os.listdir(log_dir)) == before
        assert not (log_dir.parent / "escape-0").exists()
    assert log.list_topics() == []


@pytest.mark.parametrize("name", [None, 7, b"bytes"])
def test_non_str_names_are_refused(log: pylog.Log, name: object) -> None:
    with pytest.raises(InvalidTopicError):
        log.create_topic(name)  # type: ignore[arg-type]


def test_names_colliding_on_dot_and_underscore_are_refused(log: pylog.Log) -> None:
    log.create_topic("a.b")
    with pytest.raises(InvalidTopicError, match="collides"):
        log.create_topic("a_b")
    assert log.list_topics() == ["a.b"]


def test_create_twice_raises_topic_already_exists(log: pylog.Log) -> None:
    log.create_topic("t", partitions=2)
    with pytest.raises(TopicAlreadyExistsError):
        log.create_topic("t", partitions=3)
    assert backend(log).partitions_for("t") == 2


# --- partitions and config ----------------------------------------------------------------------


@pytest.mark.parametrize("partitions", [0, -1, 1.5, "2", True, None])
def test_bad_partition_counts_are_refused(log: pylog.Log, partitions: object) -> None:
    with pytest.raises(InvalidPartitionsError):
        log.create_topic("t", partitions=partitions)  # type: ignore[arg-type]
    assert log.list_topics() == []


@pytest.mark.parametrize(
    "config",
    [{"no.such.key": 1}, {"segment.bytes": 1}, {"segment.bytes": "big"}, {"cleanup.policy": "nope"}, [1]],
)
def test_bad_config_is_refused_and_nothing_is_created(log: pylog.Log, config: object) -> None:
    with pytest.raises(InvalidConfigError):
        log.create_topic("t", config=config)  # type: ignore[arg-type]
    assert log.list_topics() == []
    log_dir = embedded_dir(log)
    assert not (log_dir and (log_dir / "t-0").exists())


@pytest.mark.embedded_only(HANDLE)
def test_topic_config_reaches_the_engine(log: pylog.Log) -> None:
    log.create_topic("t", config={"segment.bytes": "2048", "message.timestamp.type": "LogAppendTime"})
    handle = backend(log).partition_log(TopicPartition("t", 0))
    assert handle.config.segment_bytes == 2048
    assert handle.config.log_append_time
    assert log.describe_topic("t").config == {
        "segment.bytes": 2048,
        "message.timestamp.type": "LogAppendTime",
    }


def test_describe_topic_reports_offsets_and_size(log: pylog.Log, log_dir: Path) -> None:
    log.create_topic("t", partitions=2)
    handle = backend(log).partition_log(TopicPartition("t", 1))
    handle.append([b"v" * 100] * 5)
    handle.flush()
    description = log.describe_topic("t")
    assert description.name == "t"
    assert [p.partition for p in description.partitions] == [0, 1]
    assert (description.partitions[0].start_offset, description.partitions[0].end_offset) == (0, 0)
    assert (description.partitions[1].start_offset, description.partitions[1].end_offset) == (0, 5)
    on_disk = sum(f.stat().st_size for f in (log_dir / "t-1").iterdir() if f.is_file())
    assert description.partitions[1].size_bytes == on_disk
    assert description.partitions[1].size_bytes > description.partitions[0].size_bytes
    with pytest.raises(UnknownTopicOrPartitionError):
        log.describe_topic("missing")


@pytest.mark.embedded_only(HANDLE)
def test_alter_topic_config_applies_to_handles_opened_afterwards(log: pylog.Log) -> None:
    log.create_topic("t", config={"segment.bytes": 4096})
    before = backend(log).partition_log(TopicPartition("t", 0))
    log.alter_topic_config("t", {"retention.ms": 60_000, "segment.bytes": None})
    after = backend(log).partition_log(TopicPartition("t", 0))
    assert after is not before
    assert after.config.retention_ms == 60_000
    assert after.config.segment_bytes == pylog.LogConfig().segment_bytes
    assert log.describe_topic("t").config == {"retention.ms": 60_000}
    before.append([b"in flight"])  # the replaced handle still works for a call in flight
    assert after.end_offset == 1


def test_alter_topic_config_refuses_bad_values_and_keeps_the_old(log: pylog.Log) -> None:
    log.create_topic("t", config={"segment.bytes": small_segment(log)})
    for bad in ({"segment.bytes": -5}, {"nope": 1}, {"nope": None}):
        with pytest.raises(InvalidConfigError):
            log.alter_topic_config("t", bad)
    assert log.describe_topic("t").config == {"segment.bytes": small_segment(log)}
    with pytest.raises(UnknownTopicOrPartitionError):
        log.alter_topic_config("missing", {"retention.ms": 1})


def test_create_partitions_grows_and_refuses_shrinking(log: pylog.Log) -> None:
    log.create_topic("t", partitions=2, config={"segment.bytes": small_segment(log)})
    version = backend(log).metadata_version()
    log.create_partitions("t", 4)
    assert backend(log).partitions_for("t") == 4
    assert backend(log).metadata_version() > version
    assert len(log.describe_topic("t").partitions) == 4
    log_dir = embedded_dir(log)
    if log_dir:  # the new partitions' engine handles and files
        assert backend(log).partition_log(TopicPartition("t", 3)).config.segment_bytes == 4096
        assert (log_dir / "t-3" / "partition.metadata").read_text() == (
            log_dir / "t-0" / "partition.metadata"
        ).read_text()
    for total in (4, 3, 0):
        with pytest.raises(InvalidPartitionsError):
            log.create_partitions("t", total)
    assert backend(log).partitions_for("t") == 4
    with pytest.raises(UnknownTopicOrPartitionError):
        log.create_partitions("missing", 3)


# --- the backend surface ----------------------------------------------------------------------------


def test_an_unknown_engine_is_refused(log_dir: Path) -> None:
    with pytest.raises(InvalidConfigError):
        pylog.open(log_dir, engine="turbo")


def test_config_changes_reach_handles_in_another_log(engine: str, log_dir: Path, monkeypatch) -> None:
    # a cached handle is served unchecked for SYNC_INTERVAL_S; 0 makes every call ask the catalog
    monkeypatch.setattr(embedded_backend, "SYNC_INTERVAL_S", 0.0)
    with pylog.open(log_dir, engine=engine) as first, pylog.open(log_dir, engine=engine) as second:
        first.create_topic("t", config={"segment.bytes": 4096})
        cached = backend(second).partition_log(TopicPartition("t", 0))
        assert cached.config.segment_bytes == 4096
        version = backend(second).metadata_version()
        first.alter_topic_config("t", {"segment.bytes": 8192})
        reopened = backend(second).partition_log(TopicPartition("t", 0))
        assert reopened is not cached and reopened.config.segment_bytes == 8192
        assert backend(second).metadata_version() == version


def test_partitions_for_and_auto_create(log: pylog.Log) -> None:
    with pytest.raises(UnknownTopicOrPartitionError):
        backend(log).partitions_for("auto")
    assert log.list_topics() == []
    assert backend(log).partitions_for("auto", create=True) == 1
    assert log.list_topics() == ["auto"]
    assert backend(log).partitions_for("auto", create=True) == 1


def test_auto_create_can_be_turned_off(engine: str, log_dir: Path) -> None:
    with pylog.open(log_dir, engine=engine, auto_create_topics=False) as log:
        with pytest.raises(UnknownTopicOrPartitionError):
            backend(log).partitions_for("auto", create=True)
        assert log.list_topics() == []


@pytest.mark.embedded_only(HANDLE)
def test_partition_log_is_cached_and_checks_the_partition(log: pylog.Log) -> None:
    log.create_topic("t", partitions=2)
    first = backend(log).partition_log(TopicPartition("t", 1))
    assert backend(log).partition_log(TopicPartition("t", 1)) is first
    assert backend(log).partition_log(("t", 1)) is first  # type: ignore[arg-type]
    for bad in (TopicPartition("t", 2), TopicPartition("t", -1), TopicPartition("nope", 0)):
        with pytest.raises(UnknownTopicOrPartitionError):
            backend(log).partition_log(bad)
        with pytest.raises(UnknownTopicOrPartitionError):
            backend(log).check_partition(bad)
    backend(log).check_partition(TopicPartition("t", 0))


def test_metadata_version_moves_on_create_delete_and_growth_only(log: pylog.Log) -> None:
    versions = [backend(log).metadata_version()]
    log.create_topic("t")
    versions.append(backend(log).metadata_version())
    log.alter_topic_config("t", {"retention.ms": 5})
    versions.append(backend(log).metadata_version())
    log.create_partitions("t", 2)
    versions.append(backend(log).metadata_version())
    log.delete_topic("t")
    versions.append(backend(log).metadata_version())
    assert versions[1] > versions[0]
    assert versions[2] == versions[1]
    assert versions[4] > versions[3] > versions[2]


def test_changes_by_another_log_are_seen(engine: str, log_dir: Path) -> None:
    with pylog.open(log_dir, engine=engine) as first, pylog.open(log_dir, engine=engine) as second:
        first.create_topic("t", partitions=2)
        assert second.list_topics() == ["t"]
        handle = backend(second).partition_log(TopicPartition("t", 0))
        first.create_partitions("t", 3)
        assert backend(second).partitions_for("t") == 3
        first.delete_topic("t")
        with pytest.raises(UnknownTopicOrPartitionError):
            backend(second).partition_log(TopicPartition("t", 0))
        with pytest.raises(UnknownTopicOrPartitionError):
            backend(second).check_partition(TopicPartition("t", 0))
        assert handle.closed
        first.create_topic("t")  # recreated: a new topic id, a fresh handle
        assert backend(second).partition_log(TopicPartition("t", 0)) is not handle
        assert backend(second).partition_log(TopicPartition("t", 0)).end_offset == 0


# --- partition.metadata and deletion ------------------------------------------------------------------


def test_partition_metadata_is_kafkas_format(log: pylog.Log) -> None:
    log.create_topic("t", partitions=3)
    topic_id = log.describe_topic("t").topic_id
    assert len(base64.urlsafe_b64decode(topic_id + "==")) == 16
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", topic_id) and not topic_id.startswith("-")
    log_dir = embedded_dir(log)
    for n in range(3 if log_dir else 0):  # a cluster's brokers write their own partition.metadata
        assert (
            log_dir / f"t-{n}" / "partition.metadata"
        ).read_bytes() == f"version: 0\ntopic_id: {topic_id}".encode()
    log.create_topic("u")
    assert log.describe_topic("u").topic_id != topic_id


def test_delete_topic_removes_everything(log: pylog.Log, log_dir: Path) -> None:
    log.create_topic("t", partitions=3)
    log.create_topic("keep")
    backend(log).partition_log(TopicPartition("t", 0)).append([b"x"])
    handle = backend(log).partition_log(TopicPartition("t", 0))
    log.delete_topic("t")
    assert log.list_topics() == ["keep"]
    assert sorted(p.name for p in log_dir.iterdir() if p.is_dir()) == ["keep-0"]
    assert handle.closed
    with pytest.raises(UnknownTopicOrPartitionError):
        backend(log).partition_log(TopicPartition("t", 0))
    with pytest.raises(UnknownTopicOrPartitionError):
        log.delete_topic("t")
    log.create_topic("t")
    assert backend(log).partition_log(TopicPartition("t", 0)).end_offset == 0


def test_interrupted_deletion_is_finished_on_open(
    engine: str, log_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pylog.open(log_dir, engine=engine) as log:
        log.create_topic("t", partitions=2)
    # a committed deletion whose removal did not finish: a renamed tree, partly emptied
    leftover = log_dir / ("t-1." + "ab" * 16 + "-delete")
    os.rename(log_dir / "t-1", leftover)
    (leftover / "partition.metadata").unlink()
    with caplog.at_level(logging.INFO, logger="pylog.topics"), pylog.open(log_dir, engine=engine) as log:
        assert not leftover.exists()
        assert any("left over" in r.getMessage() for r in caplog.records)
        assert (log_dir / "t-0").is_dir()


def test_deletion_that_crashed_before_commit_is_rolled_back_on_open(
    engine: str, log_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pylog.open(log_dir, engine=engine) as log:
        log.create_topic("t", partitions=1)
        backend(log).partition_log(TopicPartition("t", 0)).append([b"kept"])
    renamed = log_dir / ("t-0." + "cd" * 16 + "-delete")
    os.rename(log_dir / "t-0", renamed)  # the topic is still in the catalog
    with caplog.at_level(logging.WARNING, logger="pylog.topics"), pylog.open(log_dir, engine=engine) as log:
        assert not renamed.exists()
        assert [r.value for r in backend(log).partition_log(TopicPartition("t", 0)).records()] == [b"kept"]
        assert any("restored" in r.getMessage() for r in caplog.records)


def test_create_over_an_empty_leftover_directory(log: pylog.Log, log_dir: Path) -> None:
    (log_dir / "t-0").mkdir()
    log.create_topic("t")
    assert (log_dir / "t-0" / "partition.metadata").exists()


def test_create_refuses_a_directory_holding_foreign_records(
    engine: str, log: pylog.Log, log_dir: Path
) -> None:
    with pylog.open_partition(log_dir / "t-0", engine=engine) as foreign:
        foreign.append([b"precious"])
    with pytest.raises(pylog.errors.CatalogError, match="holds records"):
        log.create_topic("t")
    assert log.list_topics() == []
    with pylog.open_partition(log_dir / "t-0", engine=engine) as foreign:
        assert [r.value for r in foreign.records()] == [b"precious"]


# --- closing -------------------------------------------------------------------------------------------


def test_every_call_after_close_raises(engine: str, log_dir: Path) -> None:
    log = pylog.open(log_dir, engine=engine)
    log.create_topic("t")
    handle = backend(log).partition_log(TopicPartition("t", 0))
    log.close()
    log.close()  # idempotent
    assert log.closed and handle.closed
    calls = [
        lambda: log.create_topic("u"),
        lambda: log.delete_topic("t"),
        log.list_topics,
        lambda: log.describe_topic("t"),
        lambda: log.alter_topic_config("t", {}),
        lambda: log.create_partitions("t", 2),
        log.list_groups,
        lambda: log.describe_group("g"),
        lambda: log.delete_group("g"),
        lambda: log.reset_offsets("g", "t"),
        log.producer,
        log.consumer,
        lambda: backend(log).partition_log(TopicPartition("t", 0)),
        lambda: backend(log).partitions_for("t"),
        lambda: backend(log).check_partition(TopicPartition("t", 0)),
        backend(log).metadata_version,
    ]
    for call in calls:
        with pytest.raises(ClientClosedError):
            call()
    with pytest.raises(ClientClosedError), log:
        pass


def test_reopen_keeps_topics(engine: str, log_dir: Path) -> None:
    with pylog.open(log_dir, engine=engine) as log:
        log.create_topic("t", partitions=2, config={"retention.ms": 1234})
        backend(log).partition_log(TopicPartition("t", 1)).append([b"a", b"b"])
        topic_id = log.describe_topic("t").topic_id
    with pylog.open(log_dir, engine=engine) as log:
        description = log.describe_topic("t")
        assert description.topic_id == topic_id
        assert description.config == {"retention.ms": 1234}
        assert [p.end_offset for p in description.partitions] == [0, 2]


def test_other_engine_reads_the_same_directory(engine: str, other_engine: str, log_dir: Path) -> None:
    with pylog.open(log_dir, engine=engine) as log:
        log.create_topic("t")
        backend(log).partition_log(TopicPartition("t", 0)).append([b"shared"])
    with pylog.open(log_dir, engine=other_engine) as log:
        assert [r.value for r in backend(log).partition_log(TopicPartition("t", 0)).records()] == [b"shared"]


# --- deletion while another process uses the topic ------------------------------------------------


def _append_until_deleted(directory: str, engine: str, ready, deleted, results) -> None:  # type: ignore[no-untyped-def]
    """Child: append through the backend until the topic is gone; report how the loop ended.
    With ``deleted`` given, stop after ``ready`` and make one more call once the parent deleted."""
    try:
        with pylog.open(directory, engine=engine) as log:
            tp = TopicPartition("t", 0)
            appended = 0
            while True:
                try:
                    handle = backend(log).partition_log(tp)
                except UnknownTopicOrPartitionError:
                    results.put(("partition_log", appended))
                    return
                try:
                    handle.append([b"v" * 100])
                    appended += 1
                except Exception as error:  # an engine call on a handle whose directory went away
                    try:
                        backend(log).check_partition(tp)
                    except UnknownTopicOrPartitionError:
                        results.put((f"check_partition after {type(error).__name__}", appended))
                        return
                    results.put((f"unexpected {error!r}", appended))
                    return
                if appended == 20:
                    ready.set()
                    if deleted is not None:
                        deleted.wait(60)
    except BaseException as error:
        results.put((f"crashed {error!r}", -1))


@pytest.mark.parametrize("synchronized", [True, False], ids=["after-deletion", "while-appending"])
def test_deletion_reaches_a_process_appending_to_the_topic(
    engine: str, log: pylog.Log, log_dir: Path, synchronized: bool
) -> None:
    log.create_topic("t")
    log.create_topic("other")
    context = multiprocessing.get_context("spawn")
    ready, deleted, results = context.Event(), context.Event(), context.Queue()
    child = context.Process(
        target=_append_until_deleted,
        args=(str(log_dir), engine, ready, deleted if synchronized else None, results),
    )
    child.start()
    try:
        assert ready.wait(120)
        log.delete_topic("t")
        deleted.set()
        how, appended = results.get(timeout=120)
        child.join(60)
    finally:
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    assert appended >= 20
    if synchronized:  # the deletion committed before the child's next call
        assert how == "partition_log"
    else:
        assert how == "partition_log" or how.startswith("check_partition after "), how
    names = sorted(os.listdir(log_dir))
    assert not [n for n in names if n.startswith("t-")], names  # nothing recreated, nothing left
    assert "other-0" in names
    assert log.list_topics() == ["other"]
    log.create_topic("t")
    assert backend(log).partition_log(TopicPartition("t", 0)).end_offset == 0


def _crash_during_deletion(directory: str, engine: str, crash_at: str) -> None:
    """Child: delete topic ``t`` and die (os._exit, no cleanup) at ``crash_at``."""
    from pylog.embedded import backend as backend_module

    def die(*args: object, **kwargs: object) -> None:
        os._exit(17)

    with pylog.open(directory, engine=engine) as log:
        if crash_at == "before-commit":  # the renames are done, the transaction is not committed
            backend_module.layout.fsync_dir = die  # type: ignore[attr-defined]
        else:  # committed, the renamed trees not removed yet
            backend_module.layout.remove_tree = die  # type: ignore[attr-defined]
        log.delete_topic("t")


@pytest.mark.parametrize("crash_at", ["before-commit", "after-commit"])
def test_a_deletion_killed_half_way_leaves_a_whole_state(
    engine: str, log_dir: Path, crash_at: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pylog.open(log_dir, engine=engine) as log:
        log.create_topic("t", partitions=3)
        for n in range(3):
            backend(log).partition_log(TopicPartition("t", n)).append([b"record-%d" % n])
    context = multiprocessing.get_context("spawn")
    child = context.Process(target=_crash_during_deletion, args=(str(log_dir), engine, crash_at))
    child.start()
    child.join(120)
    assert child.exitcode == 17
    leftovers = [p.name for p in log_dir.iterdir() if p.name.endswith("-delete")]
    assert len(leftovers) == 3  # every partition was renamed as a whole, none half-removed
    with caplog.at_level(logging.INFO, logger="pylog.topics"), pylog.open(log_dir, engine=engine) as log:
        assert [p.name for p in log_dir.iterdir() if p.name.endswith("-delete")] == []
        if crash_at == "before-commit":  # not deleted: everything is back
            assert log.list_topics() == ["t"]
            for n in range(3):
                records = backend(log).partition_log(TopicPartition("t", n)).records()
                assert [r.value for r in records] == [b"record-%d" % n]
            assert sum("restored" in r.getMessage() for r in caplog.records) == 3
        else:  # deleted: nothing is left
            assert log.list_topics() == []
            assert [p.name for p in log_dir.iterdir() if p.is_dir()] == []
            assert sum("left over" in r.getMessage() for r in caplog.records) == 3


def test_deleting_a_topic_drops_its_committed_offsets(log: pylog.Log, log_dir: Path) -> None:
    """As Kafka's coordinator does: a topic created again under the name must not resume a group
    at an offset of the old topic's records."""
    import sqlite3

    db = sqlite3.connect(log_dir / "catalog.db")
    try:
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'group_offsets'").fetchone() is None:
            pytest.skip("the group schema (group_offsets) is not in this build")
        columns = [row[1] for row in db.execute("PRAGMA table_info(group_offsets)")]
        log.create_topic("t", partitions=2)
        log.create_topic("keep")
        rows = [("g", "t", 0), ("g", "t", 1), ("g", "keep", 0)]
        with db:
            for group, topic, partition in rows:
                values = {"group_id": group, "topic": topic, "partition": partition, "committed_offset": 500}
                values.update({c: "" if c == "metadata" else -1 for c in columns if c not in values})
                db.execute(
                    f"INSERT INTO group_offsets ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                    tuple(values.values()),
                )
        log.delete_topic("t")
        assert db.execute("SELECT topic, partition FROM group_offsets").fetchall() == [("keep", 0)]
    finally:
        db.close()


def test_a_lost_partition_metadata_is_written_again(log: pylog.Log, log_dir: Path) -> None:
    log.create_topic("t")
    backend(log).partition_log(TopicPartition("t", 0)).append([b"kept"])
    expected = (log_dir / "t-0" / "partition.metadata").read_bytes()
    log.close()
    (log_dir / "t-0" / "partition.metadata").unlink()
    with pylog.open(log_dir, engine=log.engine) as reopened:
        assert [r.value for r in backend(reopened).partition_log(TopicPartition("t", 0)).records()] == [
            b"kept"
        ]
    assert (log_dir / "t-0" / "partition.metadata").read_bytes() == expected


def test_a_partition_directory_of_another_topic_is_refused(log: pylog.Log, log_dir: Path) -> None:
    log.create_topic("t")
    log.create_topic("u")
    log.close()
    (log_dir / "t-0" / "partition.metadata").write_bytes(
        (log_dir / "u-0" / "partition.metadata").read_bytes()
    )
    with pylog.open(log_dir, engine=log.engine) as reopened:
        with pytest.raises(UnknownTopicOrPartitionError, match="belongs to another topic"):
            backend(reopened).partition_log(TopicPartition("t", 0))
        with pytest.raises(UnknownTopicOrPartitionError, match="belongs to another topic"):
            backend(reopened).check_partition(TopicPartition("t", 0))


def test_a_removed_partition_directory_is_reported_not_recreated(log: pylog.Log, log_dir: Path) -> None:
    import shutil

    log.create_topic("t")
    log.close()
    shutil.rmtree(log_dir / "t-0")
    with pylog.open(log_dir, engine=log.engine) as reopened:
        with pytest.raises(UnknownTopicOrPartitionError, match="missing"):
            backend(reopened).partition_log(TopicPartition("t", 0))
        assert not (log_dir / "t-0").exists()


def _churn_topics(directory: str, engine: str, worker: int, rounds: int, barrier, results) -> None:  # type: ignore[no-untyped-def]
    """Child: create, use and delete the same few topics as the other workers, at once."""
    expected = (TopicAlreadyExistsError, UnknownTopicOrPartitionError)
    unexpected: list[str] = []
    try:
        with pylog.open(directory, engine=engine) as log:
            barrier.wait()
            for n in range(rounds):
                name = f"churn-{n % 3}"
                for step in ("create", "append", "delete", "append"):
                    try:
                        if step == "create":
                            log.create_topic(name, partitions=2)
                        elif step == "delete":
                            log.delete_topic(name)
                        else:
                            tp = TopicPartition(name, worker % 2)
                            try:
                                backend(log).partition_log(tp).append([b"w%d" % worker])
                            except expected:
                                raise
                            except Exception:
                                backend(log).check_partition(tp)
                                raise
                    except expected:
                        pass
                    except Exception as error:
                        unexpected.append(f"{step} {name}: {error!r}")
        results.put((worker, unexpected))
    except BaseException as error:
        results.put((worker, [f"crashed: {error!r}"]))


def test_processes_creating_using_and_deleting_the_same_topics(
    engine: str, log: pylog.Log, log_dir: Path
) -> None:
    """Every call ends in success or a typed error, and afterwards the directory holds exactly the
    live topics' partitions, each with its partition.metadata (no stray or half-deleted one)."""
    context = multiprocessing.get_context("spawn")
    workers = 3
    barrier, results = context.Barrier(workers), context.Queue()
    children = [
        context.Process(target=_churn_topics, args=(str(log_dir), engine, w, 12, barrier, results))
        for w in range(workers)
    ]
    for child in children:
        child.start()
    try:
        outcomes = [results.get(timeout=300) for _ in children]
        for child in children:
            child.join(60)
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
    assert [child.exitcode for child in children] == [0] * workers
    assert [problems for _, problems in outcomes if problems] == []
    with pylog.open(log_dir, engine=engine) as fresh:
        live = {name: fresh.describe_topic(name).topic_id for name in fresh.list_topics()}
    dirs = sorted(p.name for p in log_dir.iterdir() if p.is_dir())
    assert dirs == sorted(f"{name}-{n}" for name in live for n in range(2))
    for name, topic_id in live.items():
        for n in range(2):
            assert (log_dir / f"{name}-{n}" / "partition.metadata").read_text().endswith(topic_id)


@pytest.mark.embedded_only(HANDLE)
def test_threads_appending_while_the_topic_changes_and_goes(log: pylog.Log) -> None:
    import threading

    log.create_topic("t", partitions=2)
    started = threading.Barrier(5)
    endings: list[str] = []

    def append(worker: int) -> None:
        tp = TopicPartition("t", worker % 2)
        appended = 0
        started.wait()
        while True:
            try:
                handle = backend(log).partition_log(tp)
            except UnknownTopicOrPartitionError:
                endings.append("partition_log")
                return
            try:
                handle.append([b"x"])
                appended += 1
            except Exception as error:
                try:
                    backend(log).check_partition(tp)
                except UnknownTopicOrPartitionError:
                    endings.append("check_partition")
                    return
                if not isinstance(error, pylog.LogClosedError):
                    endings.append(f"unexpected {error!r}")
                    return
                # a handle replaced meanwhile (the topic is still there): take the current one

    threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    started.wait()
    log.alter_topic_config("t", {"segment.bytes": 4096})
    log.create_partitions("t", 3)
    log.delete_topic("t")
    for thread in threads:
        thread.join(60)
    assert set(endings) <= {"check_partition", "partition_log"}, endings
    assert len(endings) == 4


KAFKA_PARTITION_METADATA = """
import java.io.File;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.storage.internals.checkpoint.PartitionMetadata;
import org.apache.kafka.storage.internals.checkpoint.PartitionMetadataFile;
import org.apache.kafka.storage.internals.log.LogDirFailureChannel;

public class KafkaPartitionMetadata {
    public static void main(String[] args) {
        // args: a directory to read partition.metadata from, a directory and a topic id to write
        PartitionMetadata ours = new PartitionMetadataFile(
            new File(args[0], "partition.metadata"), new LogDirFailureChannel(1)).read();
        System.out.println(ours.version() + " " + ours.topicId());
        PartitionMetadataFile theirs = new PartitionMetadataFile(
            new File(args[1], "partition.metadata"), new LogDirFailureChannel(1));
        theirs.record(Uuid.fromString(args[2]));
        theirs.maybeFlush();
    }
}
"""


def test_partition_metadata_round_trips_with_kafkas_own_class(
    log: pylog.Log, log_dir: Path, tmp_path: Path
) -> None:
    """Kafka's PartitionMetadataFile reads the file pylog writes, and pylog reads the one it writes."""
    import subprocess

    from kafka_tools import require_kafka

    from pylog.embedded.topics import new_topic_id, read_partition_metadata

    libs = require_kafka()
    log.create_topic("t")
    ours = log.describe_topic("t").topic_id
    theirs = new_topic_id()
    source = tmp_path / "KafkaPartitionMetadata.java"
    source.write_text(KAFKA_PARTITION_METADATA)
    written = tmp_path / "kafka-0"
    written.mkdir()
    done = subprocess.run(
        ["java", "-Xmx128m", "-cp", f"{libs}/*", str(source), str(log_dir / "t-0"), str(written), theirs],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", ours]
    assert read_partition_metadata(str(written)) == theirs
    assert (written / "partition.metadata").read_bytes() == f"version: 0\ntopic_id: {theirs}".encode()


def test_a_cached_handle_is_checked_against_the_catalog_within_the_sync_interval(
    engine: str, log_dir: Path, monkeypatch
) -> None:
    """Within SYNC_INTERVAL_S a cached handle is served without asking the catalog; once it has
    passed, another log's config change (or deletion) is seen by the next call."""
    clock = [1000.0]
    monkeypatch.setattr(embedded_backend.time, "monotonic", lambda: clock[0])
    with pylog.open(log_dir, engine=engine) as first, pylog.open(log_dir, engine=engine) as second:
        first.create_topic("t", config={"segment.bytes": 4096})
        cached = backend(second).partition_log(TopicPartition("t", 0))
        first.alter_topic_config("t", {"segment.bytes": 8192})
        assert backend(second).partition_log(TopicPartition("t", 0)) is cached  # within the interval
        clock[0] += embedded_backend.SYNC_INTERVAL_S
        reopened = backend(second).partition_log(TopicPartition("t", 0))
        assert reopened is not cached and reopened.config.segment_bytes == 8192
        first.delete_topic("t")
        clock[0] += embedded_backend.SYNC_INTERVAL_S
        with pytest.raises(UnknownTopicOrPartitionError):
            backend(second).partition_log(TopicPartition("t", 0))
