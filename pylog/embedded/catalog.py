"""The catalog: an SQLite database ``<log dir>/catalog.db`` holding topics and consumer groups.

SKELETON (lead): to be completed by the topics work (schema version check, foreign/corrupt refusal,
per-thread connections, WAL, busy timeout).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pylog.embedded.group_schema import GROUP_SCHEMA

CATALOG_FILE = "catalog.db"
SCHEMA_VERSION = 1
TOPIC_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE topics (
        name TEXT PRIMARY KEY,
        topic_id TEXT NOT NULL,
        partitions INTEGER NOT NULL,
        config TEXT NOT NULL
    )""",
)


class Catalog:
    """One connection per thread; ``write()`` is a BEGIN IMMEDIATE transaction."""

    def __init__(self, directory: str):
        self.path = str(Path(directory) / CATALOG_FILE)
        self._local = threading.local()
        with self.write() as db:
            if db.execute("PRAGMA user_version").fetchone()[0] == 0:
                for ddl in TOPIC_SCHEMA + GROUP_SCHEMA:
                    db.execute(ddl)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            self._local.db = db
        return db

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("COMMIT")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
