"""Shared workload of the compaction and retention tests, and their child processes.

Imported by tests/test_compaction*.py and tests/test_retention.py for the deterministic keyed
workload and the record/table views; run as a script it is the child process of the crash and
multi-process tests (never collected by pytest: its name does not start with ``test_``). Modes:

- ``compact ENGINE PATH CONFIG NOW MAP_BYTES``: open the partition and ``compact(NOW,
  map_bytes=MAP_BYTES)``; print ``done`` and the result as JSON. With ``PYLOG_TEST_PAUSE`` set the
  engine stops the process at that point first (it prints ``pause POINT`` and SIGSTOPs itself).
- ``retention ENGINE PATH CONFIG NOW``: the same with ``apply_retention(NOW)``.
- ``delete ENGINE PATH CONFIG OFFSET``: the same with ``delete_before(OFFSET)``.
- ``appender ENGINE PATH CONFIG KEYS``: print ``ready``; for each line on stdin append one keyed
  batch (``appended_batch(i)``) and print its base offset; at EOF append a ``STOP`` record, print
  ``stop BASE`` and exit.
- ``tail ENGINE PATH CONFIG``: print ``ready``, then follow the log from its start with
  ``wait_for`` + ``records()`` (advancing past the last record seen: compaction leaves gaps) until
  a record whose value is ``STOP``; print ``[[offset, key, value], ...]`` (strings) as JSON.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from typing import Any

TS = 1_700_000_000_000
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def key_of(i: int, keys: int) -> bytes:
    return b"key-%05d" % (i % keys)


def fill_keyed(
    log: Any,
    batches: int,
    *,
    per_batch: int = 5,
    keys: int = 20,
    tombstone_every: int = 0,
    codecs: tuple[str, ...] = ("none",),
    ts0: int = TS,
    start: int = 0,
) -> None:
    """Append ``batches`` batches of ``per_batch`` keyed records; record ``n`` (counted from
    ``start``) has key ``key_of(n, keys)``, value ``b"v%d" % n`` (``None``, a tombstone, for every
    ``tombstone_every``-th record when set) and timestamp ``ts0 + n``."""
    n = start
    for b in range(batches):
        ids = range(n, n + per_batch)
        log.append(
            [
                None if tombstone_every and i % tombstone_every == tombstone_every - 1 else b"v%d" % i
                for i in ids
            ],
            keys=[key_of(i, keys) for i in ids],
            timestamps_ms=[ts0 + i for i in ids],
            compression=codecs[b % len(codecs)],
        )
        n += per_batch


def appended_batch(i: int, keys: int) -> tuple[list[bytes], list[bytes]]:
    """(keys, values) of the appender child's i-th batch."""
    ks = [key_of(i * 3 + j, keys) for j in range(3)]
    return ks, [b"a%d.%d" % (i, j) for j in range(3)]


def triples(records: Iterable[Any]) -> list[tuple[int, bytes | None, bytes | None]]:
    return [(r.offset, r.key, r.value) for r in records]


def table(records: Iterable[Any]) -> dict[bytes, bytes]:
    """What a consumer reading from the start builds: key -> latest value, a tombstone deletes
    (records, or ``triples``)."""
    out: dict[bytes, bytes] = {}
    for r in records:
        key, value = (r.key, r.value) if hasattr(r, "value") else (r[1], r[2])
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def latest_per_key(records: Iterable[Any]) -> list[tuple[int, bytes | None, bytes | None]]:
    """The records compaction must keep: the last one of every key, at its original offset."""
    last: dict[bytes | None, tuple[int, bytes | None, bytes | None]] = {}
    for r in records:
        last[r.key] = (r.offset, r.key, r.value)
    return sorted(last.values())


def say(text: str) -> None:
    os.write(1, (text + "\n").encode())  # unbuffered: the parent reads it while we run


def _s(b: bytes | None) -> str | None:
    return None if b is None else b.decode()


def main(argv: list[str]) -> None:
    from pylog.engine import open_partition

    mode, engine, path, config = argv[0], argv[1], argv[2], json.loads(argv[3])
    log = open_partition(path, engine=engine, config=config)
    if mode == "compact":
        result = log.compact(int(argv[4]), map_bytes=int(argv[5]))
        say("done " + json.dumps(list(result)))
    elif mode == "retention":
        say("done " + json.dumps(list(log.apply_retention(int(argv[4])))))
    elif mode == "delete":
        say("done " + json.dumps(list(log.delete_before(int(argv[4])))))
    elif mode == "appender":
        keys = int(argv[4])
        say("ready")
        i = 0
        while sys.stdin.readline():
            ks, vs = appended_batch(i, keys)
            say(str(log.append(vs, keys=ks, timestamps_ms=[TS + i] * len(vs))))
            i += 1
        say(f"stop {log.append([b'STOP'], keys=[b'STOP'], timestamps_ms=[TS])}")
    elif mode == "tail":
        say("ready")
        seen: list[list] = []
        offset = log.start_offset
        while not (seen and seen[-1][2] == "STOP"):
            if not log.wait_for(offset, 60_000):
                raise SystemExit(f"tail: nothing past {offset} within 60 s")
            for record in log.records(offset):
                if record.offset < offset:
                    raise SystemExit(f"tail: asked from {offset}, got {record.offset}")
                seen.append([record.offset, _s(record.key), _s(record.value)])
                offset = record.offset + 1
                if record.value == b"STOP":
                    break
        say(json.dumps(seen))
    else:
        raise SystemExit(f"unknown mode {mode}")
    log.close()


if __name__ == "__main__":
    main(sys.argv[1:])
