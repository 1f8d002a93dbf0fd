"""The catalog database (``pylog.embedded.catalog``): creation, refusal of foreign or damaged files,
and concurrent use by threads and real processes.

A file pylog refuses must be left byte for byte as it was: each refusal test compares the bytes.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
from pathlib import Path

import pytest

import pylog
from pylog.embedded.catalog import APPLICATION_ID, CATALOG_FILE, SCHEMA_VERSION, TOPIC_SCHEMA, Catalog
from pylog.embedded.cleaner import UNCLEANABLE_SCHEMA
from pylog.embedded.group_schema import GROUP_SCHEMA
from pylog.errors import CatalogError, TopicAlreadyExistsError


def catalog_path(directory: Path) -> Path:
    return directory / CATALOG_FILE


def make_catalog(directory: Path) -> Path:
    Catalog(directory).close()
    return catalog_path(directory)


def assert_refused(directory: Path, match: str) -> None:
    path = catalog_path(directory)
    before = path.read_bytes()
    with pytest.raises(CatalogError, match=match) as caught:
        pylog.open(directory)
    assert str(path) in str(caught.value)
    assert path.read_bytes() == before


def test_a_new_catalog_is_marked_versioned_and_in_wal_mode(tmp_path: Path) -> None:
    path = make_catalog(tmp_path)
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"topics", "topic_versions"} <= tables
        schema = TOPIC_SCHEMA + GROUP_SCHEMA + UNCLEANABLE_SCHEMA
        expected = sum(ddl.lstrip().upper().startswith("CREATE TABLE") for ddl in schema)
        assert len(tables) == expected
    finally:
        db.close()


def test_an_empty_file_becomes_a_catalog(tmp_path: Path) -> None:
    catalog_path(tmp_path).touch()
    with pylog.open(tmp_path) as log:
        log.create_topic("t")
        assert log.list_topics() == ["t"]


def test_reopening_keeps_the_catalog(tmp_path: Path) -> None:
    with pylog.open(tmp_path) as log:
        log.create_topic("t", partitions=3)
    with pylog.open(tmp_path) as log:
        assert log.list_topics() == ["t"]
        assert log._backend.partitions_for("t") == 3


@pytest.mark.parametrize(
    "content",
    [b"not a database at all\n" * 100, b"SQLite format 2\x00" + bytes(4080), b"\x00" * 4096, b"SQLite"],
    ids=["text", "other-magic", "zeros", "short"],
)
def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path, content: bytes) -> None:
    catalog_path(tmp_path).write_bytes(content)
    assert_refused(tmp_path, "not an SQLite database")


def test_a_directory_in_the_catalogs_place_is_refused(tmp_path: Path) -> None:
    catalog_path(tmp_path).mkdir()
    with pytest.raises(CatalogError, match="directory"):
        pylog.open(tmp_path)


def test_another_applications_database_is_refused_untouched(tmp_path: Path) -> None:
    db = sqlite3.connect(catalog_path(tmp_path))
    db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER)")
    db.execute("INSERT INTO accounts VALUES (1, 100)")
    db.commit()
    db.close()
    assert_refused(tmp_path, "another application")


def test_a_database_with_another_application_id_is_refused_untouched(tmp_path: Path) -> None:
    db = sqlite3.connect(catalog_path(tmp_path))
    db.execute("PRAGMA application_id = 1234")
    db.commit()
    db.close()
    assert_refused(tmp_path, "another application")


def test_a_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = make_catalog(tmp_path)
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    assert_refused(tmp_path, "newer")


def test_a_version_1_catalog_is_upgraded_keeping_its_topics(tmp_path: Path) -> None:
    """A catalog made before the uncleanable_partitions table (schema version 1) opens: the table
    is added and the version moves to 2; its topics stay."""
    with pylog.open(tmp_path) as log:
        log.create_topic("kept", partitions=2)
    db = sqlite3.connect(catalog_path(tmp_path))
    db.execute("DROP TABLE uncleanable_partitions")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with pylog.open(tmp_path) as log:
        assert log.list_topics() == ["kept"]
        assert log.describe_topic("kept").partitions[1].uncleanable is None
    db = sqlite3.connect(catalog_path(tmp_path))
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        assert db.execute("SELECT count(*) FROM uncleanable_partitions").fetchone()[0] == 0
    finally:
        db.close()


def test_an_unknown_older_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = make_catalog(tmp_path)
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 0")
    db.commit()
    db.close()
    assert_refused(tmp_path, "schema version 0")


def test_a_corrupt_catalog_is_refused_untouched(tmp_path: Path) -> None:
    with pylog.open(tmp_path) as log:
        for n in range(20):
            log.create_topic(f"topic-{n}")
    path = catalog_path(tmp_path)
    assert not Path(str(path) + "-wal").exists() or Path(str(path) + "-wal").stat().st_size == 0
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    assert len(data) >= 2 * page
    data[page : 2 * page] = b"\xa5" * page  # page 2: a table's b-tree page, header and cells
    path.write_bytes(bytes(data))
    assert_refused(tmp_path, "corrupt")


def test_a_truncated_catalog_is_refused_untouched(tmp_path: Path) -> None:
    with pylog.open(tmp_path) as log:
        for n in range(20):
            log.create_topic(f"topic-{n}")
    path = catalog_path(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 7])
    assert_refused(tmp_path, "corrupt")


# --- concurrency --------------------------------------------------------------------------------


def test_threads_create_topics_concurrently(tmp_path: Path) -> None:
    shared = [f"shared-{n}" for n in range(5)]
    outcomes: list[str] = []
    errors: list[BaseException] = []
    with pylog.open(tmp_path) as log:
        barrier = threading.Barrier(6)

        def work(worker: int) -> None:
            try:
                barrier.wait()
                for n in range(5):
                    log.create_topic(f"own-{worker}-{n}", partitions=2)
                for name in shared:
                    try:
                        log.create_topic(name)
                        outcomes.append("created")
                    except TopicAlreadyExistsError:
                        outcomes.append("exists")
                    log._backend.partitions_for(f"auto-{n}", create=True)
            except BaseException as error:  # reported below
                errors.append(error)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert outcomes.count("created") == len(shared)
        expected = {f"own-{w}-{n}" for w in range(6) for n in range(5)} | set(shared) | {"auto-4"}
        assert set(log.list_topics()) == expected


def _create_topics_in_a_child(directory: str, worker: int, barrier, results) -> None:  # type: ignore[no-untyped-def]
    try:
        with pylog.open(directory) as log:
            barrier.wait()
            created = exists = 0
            for n in range(8):
                log.create_topic(f"own-{worker}-{n}", partitions=2)
                try:
                    log.create_topic(f"shared-{n}")
                    created += 1
                except TopicAlreadyExistsError:
                    exists += 1
                log._backend.partitions_for(f"auto-{n}", create=True)
                log._backend.list_topics()
            results.put((worker, created, exists, None))
    except BaseException as error:
        results.put((worker, 0, 0, repr(error)))


def test_processes_create_topics_concurrently(tmp_path: Path) -> None:
    """Real processes racing to create the catalog and topics: no lost or duplicate topic, no
    "database is locked"."""
    directory = str(tmp_path / "log")
    context = multiprocessing.get_context("spawn")
    workers = 4
    barrier = context.Barrier(workers)
    results = context.Queue()
    processes = [
        context.Process(target=_create_topics_in_a_child, args=(directory, w, barrier, results))
        for w in range(workers)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert [error for *_, error in outcomes if error] == []
    assert sum(created for _, created, _, _ in outcomes) == 8
    assert sum(exists for _, _, exists, _ in outcomes) == 8 * (workers - 1)
    with pylog.open(directory) as log:
        expected = (
            {f"own-{w}-{n}" for w in range(workers) for n in range(8)}
            | {f"shared-{n}" for n in range(8)}
            | {f"auto-{n}" for n in range(8)}
        )
        assert set(log.list_topics()) == expected
        db = sqlite3.connect(catalog_path(Path(directory)))
        try:
            assert db.execute("SELECT count(*), count(DISTINCT topic_id) FROM topics").fetchone() == (
                len(expected),
                len(expected),
            )
        finally:
            db.close()
        dirs = {name for name in os.listdir(directory) if os.path.isdir(os.path.join(directory, name))}
        assert dirs == {f"own-{w}-{n}-{p}" for w in range(workers) for n in range(8) for p in range(2)} | {
            f"{name}-0" for name in expected if not name.startswith("own-")
        }


# --- noticing other connections' commits --------------------------------------------------------


def test_data_version_moves_with_every_commit_of_another_connection(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    other = Catalog(tmp_path)
    try:
        first, _ = catalog.data_version()
        with catalog.read() as db:
            db.execute("SELECT * FROM topics").fetchall()
        assert catalog.data_version()[0] == first  # reads change nothing
        versions = [first]
        for n in range(5):
            with other.write() as db:
                db.execute("UPDATE topic_versions SET config_version = ?", (n + 1,))
            versions.append(catalog.data_version()[0])
        assert len(set(versions)) == len(versions)
    finally:
        catalog.close()
        other.close()


def test_topic_changes_of_another_log_are_seen_at_once(tmp_path: Path) -> None:
    with pylog.open(tmp_path) as first, pylog.open(tmp_path) as second:
        assert second.list_topics() == []
        first.create_topic("t")
        assert second.list_topics() == ["t"]
        first.create_partitions("t", 3)
        assert second._backend.partitions_for("t") == 3
        first.delete_topic("t")
        assert second.list_topics() == []


def test_a_finished_threads_connection_is_closed(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    try:
        opened: list[sqlite3.Connection] = []
        for _ in range(3):
            thread = threading.Thread(target=lambda: opened.append(catalog.connection()))
            thread.start()
            thread.join()
        # each new connection closes the ones of threads that finished before it
        assert len(catalog._connections) <= 2  # the main thread's and at most the last thread's
        with pytest.raises(sqlite3.ProgrammingError):
            opened[0].execute("SELECT 1")
    finally:
        catalog.close()


def test_changes_are_seen_after_the_opening_thread_finished(tmp_path: Path) -> None:
    """The thread that opened the log ends (its connection is closed when another thread opens
    one): the commit marker must still watch the live ``-shm`` file."""
    opened: list[pylog.Log] = []
    thread = threading.Thread(target=lambda: opened.append(pylog.open(tmp_path)))
    thread.start()
    thread.join()
    (log,) = opened
    try:
        log.create_topic("first")  # this thread's new connection closes the finished thread's
        with pylog.open(tmp_path) as other:
            other.create_topic("t")
        assert log.list_topics() == ["first", "t"]
        with pylog.open(tmp_path) as other:
            other.delete_topic("t")
        assert log.list_topics() == ["first"]
    finally:
        log.close()
