"""The catalog: the SQLite database ``<log dir>/catalog.db`` holding topics and consumer groups.

Format: an SQLite 3 database in WAL mode, marked as pylog's by ``PRAGMA application_id`` =
``APPLICATION_ID`` ("pylg") and versioned by ``PRAGMA user_version`` = ``SCHEMA_VERSION``. Tables:
``TOPIC_SCHEMA`` below (owned here), ``GROUP_SCHEMA`` (owned by ``pylog.embedded.group_schema``) and
``UNCLEANABLE_SCHEMA`` (owned by ``pylog.embedded.cleaner``), created together in one transaction by
whichever process creates the file.

Schema versions: 1 (topics and groups), 2 (adds ``uncleanable_partitions``). A catalog of an older
version that ``MIGRATIONS`` knows is upgraded when opened, in one write transaction that checks the
version again (so two processes opening it at once upgrade it once); a pylog that knows only
version 1 refuses a version-2 catalog ("newer than this pylog's").

- ``topics(name, topic_id, partitions, config)``: one row per live topic; ``topic_id`` is Kafka's
  ``Uuid`` string (the id in each partition's ``partition.metadata``), ``config`` a JSON object of
  the topic's config overrides under Kafka's names (validated by ``LogConfig.from_mapping``).
- ``topic_versions(id = 0, metadata_version, config_version)``: one row of two counters that only
  grow. ``metadata_version`` moves on every create, delete and added partition,
  ``config_version`` on every config change, in the same transaction as the change. A process
  notices a change through ``PRAGMA data_version`` (it moves on any commit by another
  connection), then reads these two counters (one row), and reads
  ``topics`` only when they moved.

Opening refuses, with ``CatalogError`` naming the path and without writing a byte: a file that is
not an SQLite database, an SQLite database of another application (another ``application_id``, or
none with tables in it), a pylog catalog of another schema version, and a corrupt one (``PRAGMA
quick_check``). An empty or missing file becomes a new catalog.

Concurrency: safe for any number of threads and processes. Each thread has its own connection
(``sqlite3`` connections must not be shared across threads); a process that forks gets fresh
connections in the child. ``write()`` is a ``BEGIN IMMEDIATE`` transaction: it takes SQLite's
write lock up front, so two writers never deadlock on a lock upgrade, and waits up to
``BUSY_TIMEOUT_S`` for it. ``read()`` is a deferred transaction (a consistent snapshot; WAL lets
it run beside a writer). Either one opened inside another transaction of the same thread joins
it. ``synchronous=NORMAL``: a committed transaction survives the process
dying (the project's "acknowledged" level); an fsync happens at checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pylog.embedded.cleaner import UNCLEANABLE_SCHEMA
from pylog.embedded.group_schema import GROUP_SCHEMA
from pylog.errors import CatalogError, ClientClosedError

CATALOG_FILE = "catalog.db"
#: ``PRAGMA application_id`` of a pylog catalog: the ASCII bytes "pylg" as a big-endian int32
APPLICATION_ID = 0x70796C67
SCHEMA_VERSION = 2
BUSY_TIMEOUT_S = 60.0
SQLITE_HEADER = b"SQLite format 3\x00"
#: SQLite's primary result codes for "malformed database" and "not a database"
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26

TOPIC_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE topics (
        name TEXT PRIMARY KEY,
        topic_id TEXT NOT NULL UNIQUE,
        partitions INTEGER NOT NULL CHECK (partitions >= 1),
        config TEXT NOT NULL
    )""",
    """CREATE TABLE topic_versions (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        metadata_version INTEGER NOT NULL,
        config_version INTEGER NOT NULL
    )""",
    "INSERT INTO topic_versions VALUES (0, 0, 0)",
)

#: version -> the statements that upgrade a catalog of that version to the next one
MIGRATIONS: dict[int, tuple[str, ...]] = {1: UNCLEANABLE_SCHEMA}


def is_corruption(error: BaseException) -> bool:
    """Whether an ``sqlite3`` error says the database file is corrupt or not a database."""
    code = getattr(error, "sqlite_errorcode", None)
    return (
        isinstance(error, sqlite3.DatabaseError)
        and code is not None
        and code & 0xFF
        in (
            _SQLITE_CORRUPT,
            _SQLITE_NOTADB,
        )
    )


class _ThreadState(threading.local):
    """This thread's connection and the ``data_version`` it last acted on."""

    db: sqlite3.Connection | None = None
    pid: int = 0
    data_version: int | None = None


class Catalog:
    """The catalog of one log directory: per-thread connections, ``read()`` and ``write()``."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.path = str(Path(directory) / CATALOG_FILE)
        self._state = _ThreadState()
        self._lock = threading.Lock()
        #: every thread's connection, with its thread (a finished thread's one is closed when the
        #: next connection opens: thread-locals of a finished thread are never used again)
        self._connections: list[tuple[weakref.ref[threading.Thread], sqlite3.Connection]] = []
        self._closed = False
        self._pid = os.getpid()
        #: a connection no thread uses, open as long as the catalog: when the last connection to
        #: the database closes, SQLite checkpoints and removes the WAL and ``-shm`` files, which a
        #: short-lived thread's connection (closed once the thread has finished) would otherwise
        #: make happen again and again
        self._anchor: sqlite3.Connection | None = None
        try:
            self._open()
            self._anchor = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            self._anchor.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except BaseException:
            self.close()
            raise

    # --- opening ----------------------------------------------------------------------------------

    def _open(self) -> None:
        self._refuse_non_sqlite()
        try:
            db = self.connection()
            application_id, user_version, objects = self._identity(db)
            if application_id == 0 and user_version == 0 and objects == 0:
                self._create(db)
                application_id, user_version, objects = self._identity(db)
            upgrade = application_id == APPLICATION_ID and user_version in MIGRATIONS
            if not upgrade:
                self._check_identity(application_id, user_version)
            status = db.execute("PRAGMA quick_check").fetchall()
            if status != [("ok",)]:
                problems = "; ".join(str(row[0]) for row in status[:3])
                raise CatalogError(f"the catalog {self.path} is corrupt: {problems}")
            if upgrade:  # why after the check: a corrupt catalog is refused without a write
                self._migrate()
                application_id, user_version, objects = self._identity(db)
                self._check_identity(application_id, user_version)
            mode = db.execute("PRAGMA journal_mode").fetchone()[0]
            if mode.lower() != "wal":
                db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as error:
            if is_corruption(error):
                raise CatalogError(
                    f"the catalog {self.path} is corrupt or not a database: {error}"
                ) from error
            # a read-only directory, a file we may not read, a lock held past the busy timeout
            raise CatalogError(f"cannot open the catalog {self.path}: {error}") from error

    def _refuse_non_sqlite(self) -> None:
        try:
            with open(self.path, "rb") as file:
                header = file.read(len(SQLITE_HEADER))
        except FileNotFoundError:
            return
        except IsADirectoryError:
            raise CatalogError(f"the catalog {self.path} is a directory") from None
        if header and header != SQLITE_HEADER:  # empty is a catalog not yet created
            raise CatalogError(f"{self.path} is not an SQLite database; pylog will not overwrite it")

    @staticmethod
    def _identity(db: sqlite3.Connection) -> tuple[int, int, int]:
        application_id = db.execute("PRAGMA application_id").fetchone()[0]
        user_version = db.execute("PRAGMA user_version").fetchone()[0]
        objects = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        return application_id, user_version, objects

    def _check_identity(self, application_id: int, user_version: int) -> None:
        if application_id != APPLICATION_ID:
            raise CatalogError(
                f"{self.path} is an SQLite database of another application (application_id "
                f"{application_id:#x}); pylog will not use or overwrite it"
            )
        if user_version > SCHEMA_VERSION:
            raise CatalogError(
                f"the catalog {self.path} has schema version {user_version}, newer than this pylog's "
                f"{SCHEMA_VERSION}: upgrade pylog"
            )
        if user_version != SCHEMA_VERSION:
            raise CatalogError(
                f"the catalog {self.path} has schema version {user_version}; this pylog reads only "
                f"version {SCHEMA_VERSION}"
            )

    def _create(self, db: sqlite3.Connection) -> None:
        # journal_mode cannot change inside a transaction; switching an empty database to WAL is
        # idempotent when another process races us to create the catalog.
        db.execute("PRAGMA journal_mode=WAL")
        with self.write() as tx:
            application_id, user_version, objects = self._identity(tx)
            if application_id or user_version or objects:
                return  # another process created it first; the caller checks what it made
            for ddl in TOPIC_SCHEMA + GROUP_SCHEMA + UNCLEANABLE_SCHEMA:
                tx.execute(ddl)
            tx.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _migrate(self) -> None:
        """Upgrade an older catalog to ``SCHEMA_VERSION``, one version step at a time, in one
        write transaction (another process may have upgraded it meanwhile: checked inside)."""
        with self.write() as tx:
            version = tx.execute("PRAGMA user_version").fetchone()[0]
            while version in MIGRATIONS:
                for ddl in MIGRATIONS[version]:
                    tx.execute(ddl)
                version += 1
                tx.execute(f"PRAGMA user_version = {version}")

    # --- connections and transactions -------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit mode: transactions are explicit)."""
        if self._closed:
            raise ClientClosedError(f"the catalog {self.path} is closed")
        state = self._state
        db = state.db
        if db is not None and state.pid == os.getpid():
            return db
        # why: an SQLite connection must not cross fork(); the child opens its own
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA synchronous=NORMAL")
        pid = os.getpid()
        state.db, state.pid, state.data_version = db, pid, None
        with self._lock:
            if self._pid != pid:  # forked: the parent's connections are the parent's business
                self._pid, self._connections = pid, []
            finished = [
                conn for thread, conn in self._connections if (t := thread()) is None or not t.is_alive()
            ]
            self._connections = [(thread, conn) for thread, conn in self._connections if conn not in finished]
            self._connections.append((weakref.ref(threading.current_thread()), db))
        for conn in finished:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        return db

    def data_version(self) -> tuple[int, int | None]:
        """``PRAGMA data_version`` of this thread's connection and the value this thread last
        acknowledged with ``acknowledge``: unequal when another connection committed since."""
        state = self._state
        db = state.db
        if db is None or state.pid != os.getpid() or self._closed:
            db = self.connection()
        return db.execute("PRAGMA data_version").fetchone()[0], state.data_version

    def acknowledge(self, data_version: int) -> None:
        """Remember that this thread acted on every commit up to ``data_version``."""
        self._state.data_version = data_version

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``), committed at the end, rolled back on error.
        Inside another transaction of this thread it joins that one (the outer one commits or
        rolls back; open the outer one with ``write()`` if the inner one writes)."""
        db = self.connection()
        if db.in_transaction:
            yield db
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException as error:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            if is_corruption(error):
                raise CatalogError(f"the catalog {self.path} is corrupt: {error}") from error
            raise
        db.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot of the catalog (inside another transaction
        of this thread: that one's snapshot)."""
        db = self.connection()
        if db.in_transaction:
            yield db
            return
        db.execute("BEGIN")
        try:
            yield db
        except BaseException as error:
            if is_corruption(error):
                raise CatalogError(f"the catalog {self.path} is corrupt: {error}") from error
            raise
        finally:
            with contextlib.suppress(sqlite3.Error):
                db.execute("COMMIT")

    def close(self) -> None:
        """Close every thread's connection; later use raises ``ClientClosedError``."""
        with self._lock:
            self._closed = True
            connections = [db for _, db in self._connections]
            self._connections = []
        for db in connections:
            with contextlib.suppress(sqlite3.Error):
                db.close()
        self._state.db = None
        anchor, self._anchor = self._anchor, None
        if anchor is not None:
            with contextlib.suppress(sqlite3.Error):
                anchor.close()
