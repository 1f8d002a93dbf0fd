"""The ``sqlite3`` contender: what a Python user would otherwise pick for an embedded, durable,
ordered store (the standard library's SQLite), set up the way that is fastest for a log.

One table ``records(offset INTEGER PRIMARY KEY, ts INTEGER, key BLOB, value BLOB)`` (the offset is
the rowid, so reads by offset are B-tree lookups), WAL journal; ``synchronous=OFF`` for the
page-cache workloads (like pylog's acks=1: written to the OS, not synced), ``FULL`` for the
durable ones (a WAL fsync per commit, like acks="all"). Transactions: one per producer batch.

Thread-safety: a connection per thread (sqlite3's own rule); writers on one file serialize on
SQLite's lock, waiting through ``busy_timeout``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence

from pylog.bench.measure import settle_page_cache, timed_threads
from pylog.bench.model import Sample

SCHEMA = "CREATE TABLE IF NOT EXISTS records (offset INTEGER PRIMARY KEY, ts INTEGER, key BLOB, value BLOB)"


def connect(path: str, synchronous: str = "OFF") -> sqlite3.Connection:
    """A connection in WAL mode with ``synchronous`` (``OFF`` or ``FULL``) and the table."""
    db = sqlite3.connect(path, timeout=60, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute(SCHEMA)
    db.commit()
    return db


def insert(
    path: str,
    values: Sequence[bytes],
    *,
    per_record: bool,
    batch: int,
    keys: Sequence[bytes] | None = None,
    timestamps: Sequence[int] | None = None,
) -> Sample:
    """Insert ``values`` (offsets 0..), one transaction per ``batch`` records: one ``execute``
    per record (``per_record``, the send() shape) or one ``executemany`` per batch (send_batch).
    Checked: the row count and the last row's value."""
    db = connect(path)
    now = int(time.time() * 1000)
    n = len(values)
    ts = timestamps or [now] * n
    ks: Sequence[bytes | None] = keys or [None] * n
    sql = "INSERT INTO records VALUES (?, ?, ?, ?)"
    try:
        settle_page_cache()
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            end = min(n, start + batch)
            with db:
                if per_record:
                    execute = db.execute
                    for i in range(start, end):
                        execute(sql, (i, ts[i], ks[i], values[i]))
                else:
                    db.executemany(
                        sql,
                        zip(range(start, end), ts[start:end], ks[start:end], values[start:end], strict=True),
                    )
        elapsed = time.perf_counter() - t0
        ok = db.execute("SELECT count(*) FROM records").fetchone()[0] == n
        ok &= (
            n == 0
            or db.execute("SELECT value FROM records WHERE offset = ?", (n - 1,)).fetchone()[0] == values[-1]
        )
    finally:
        db.close()
    return Sample(n, elapsed, ok)


def insert_durable(path: str, value: bytes, threads: int, commits_per_thread: int) -> Sample:
    """``threads`` threads, each with its own connection (synchronous=FULL), commit one-row
    transactions ``commits_per_thread`` times: acknowledged one-record writes. ``amount``:
    commits, checked against the row count."""
    connect(path, "FULL").close()
    connections: list[sqlite3.Connection] = []

    def prepare(thread: int) -> Callable[[], None]:
        db = connect(path, "FULL")
        connections.append(db)

        def commit_loop() -> None:
            for _ in range(commits_per_thread):
                with db:
                    db.execute("INSERT INTO records (ts, key, value) VALUES (?, ?, ?)", (thread, None, value))

        return commit_loop

    try:
        elapsed, errors = timed_threads(threads, prepare)
    finally:
        for db in connections:
            db.close()
    db = connect(path)
    try:
        count = db.execute("SELECT count(*) FROM records").fetchone()[0]
    finally:
        db.close()
    return Sample(threads * commits_per_thread, elapsed, not errors and count == threads * commits_per_thread)


def fill(path: str, values: Sequence[bytes], timestamps: Sequence[int], batch: int = 10_000) -> None:
    """A table holding ``values`` at offsets 0.. with ``timestamps`` and an index on ts (untimed)."""
    db = connect(path)
    try:
        for start in range(0, len(values), batch):
            end = min(len(values), start + batch)
            with db:
                db.executemany(
                    "INSERT INTO records VALUES (?, ?, NULL, ?)",
                    zip(range(start, end), timestamps[start:end], values[start:end], strict=True),
                )
        with db:
            db.execute("CREATE INDEX IF NOT EXISTS records_ts ON records (ts)")
    finally:
        db.close()
