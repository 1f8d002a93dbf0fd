"""The ``os.write`` contender: the physical ceiling of a write workload.

It writes the very bytes the native engine wrote for the same records (its RecordBatches, read
back from a native run's segment files, one ``os.write`` per batch, as the engine issues one write
per batch), with nothing else: no encoding, no index, no locking. ``durable`` adds one ``fsync``
per commit, as ``acks="all"`` needs one per acknowledged write. A pylog figure near this column
means the engine costs little beyond the system call; the native/os.write ratio is that share.

Thread-safety: each call uses its own file descriptor; ``write_durable`` starts its own threads.
"""

from __future__ import annotations

import os
import time

from pylog.bench.measure import batch_spans, settle_page_cache, timed_threads
from pylog.bench.model import Sample


def encoded_batches(partition_dir: str) -> list[bytes]:
    """The RecordBatches of every ``.log`` segment of ``partition_dir``, in offset order."""
    out: list[bytes] = []
    for name in sorted(f for f in os.listdir(partition_dir) if f.endswith(".log")):
        with open(os.path.join(partition_dir, name), "rb") as f:
            out.extend(bytes(span) for span in batch_spans(f.read()))
    return out


def write_batches(path: str, batches: list[bytes], records: int) -> Sample:
    """``os.write`` each batch to a new file at ``path``; ``amount`` is ``records`` (the records
    those batches hold), checked against the file's size."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        settle_page_cache()
        write = os.write
        t0 = time.perf_counter()
        for batch in batches:
            write(fd, batch)
        elapsed = time.perf_counter() - t0
    finally:
        os.close(fd)
    return Sample(records, elapsed, os.path.getsize(path) == sum(map(len, batches)))


def write_durable(path: str, batch: bytes, threads: int, commits_per_thread: int) -> Sample:
    """``threads`` threads each ``os.write`` + ``fsync`` one encoded record batch
    ``commits_per_thread`` times into one shared file (O_APPEND): the ceiling of acknowledged
    one-record writes. ``amount``: commits."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)

    def commit_loop() -> None:
        for _ in range(commits_per_thread):
            os.write(fd, batch)
            os.fsync(fd)

    try:
        elapsed, errors = timed_threads(threads, lambda _: commit_loop, before_release=settle_page_cache)
    finally:
        os.close(fd)
    commits = threads * commits_per_thread
    return Sample(commits, elapsed, not errors and os.path.getsize(path) == commits * len(batch))
