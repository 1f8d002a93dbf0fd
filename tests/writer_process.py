"""Child processes for the crash and multi-process tests (run as a script, never imported by pytest
as a test module). Modes:

- ``kill ENGINE PATH CONFIG SEED [big]``: append batches forever, printing ``index base`` after each
  acknowledged append, until the parent SIGKILLs it.
- ``writer ENGINE PATH CONFIG ID COUNT``: print ``ready`` once open, wait for a line on stdin, append
  COUNT batches of ``writer_values(ID, i)``, close, print ``done``.
- ``reader ENGINE PATH CONFIG TOTAL``: print ``ready``, wait for a line on stdin, tail the log with
  ``wait_for`` + ``records()`` until TOTAL records were seen (TOTAL -1: until a record whose value
  is ``STOP``); print them as JSON ``[offset, sha1 of the value]``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys

CODECS = ("none", "gzip", "lz4", "zstd", "snappy")
TS = 1_700_000_000_000


def batch_values(seed: int, i: int, big: bool = False) -> list[bytes]:
    """Deterministic values of batch ``i``; with ``big`` every third batch is ~600 KB (a write
    that SIGKILL can interrupt half-way, leaving a torn tail)."""
    n = 1 + (seed * 7 + i) % 5
    if big and i % 3 == 0:  # incompressible, so every codec writes ~1 MB at once
        rng = random.Random(seed * 1_000_003 + i)
        return [b"%d:%d:%d:" % (seed, i, j) + rng.randbytes(200_000) for j in range(n)]
    size = (seed + 3 * i) % 300
    return [b"%d:%d:%d:" % (seed, i, j) + bytes([65 + (i + j) % 26]) * size for j in range(n)]


def writer_values(writer_id: int, i: int) -> list[bytes]:
    return [b"w%d:%d:%d" % (writer_id, i, j) + b"." * (i % 40) for j in range(1 + i % 4)]


def digest(value: bytes | None) -> str:
    return "null" if value is None else hashlib.sha1(value).hexdigest()


def say(text: str) -> None:
    os.write(1, (text + "\n").encode())  # unbuffered: the parent counts what was acknowledged


def main(argv: list[str]) -> None:
    from pylog.engine import open_partition

    mode, engine, path, config = argv[0], argv[1], argv[2], json.loads(argv[3])
    log = open_partition(path, engine=engine, config=config)
    if mode == "kill":
        seed, big = int(argv[4]), argv[5:] == ["big"]
        i = 0
        while True:
            values = batch_values(seed, i, big)
            base = log.append(
                values, timestamps_ms=[TS + i] * len(values), compression=CODECS[(seed + i) % 5]
            )
            say(f"{i} {base}")
            i += 1
    elif mode == "writer":
        writer_id, count = int(argv[4]), int(argv[5])
        say("ready")
        sys.stdin.readline()
        for i in range(count):
            values = writer_values(writer_id, i)
            log.append(values, timestamps_ms=[TS + i] * len(values))
        log.close()
        say("done")
    elif mode == "reader":
        total = int(argv[4])
        say("ready")
        sys.stdin.readline()
        seen: list[list] = []
        offset = log.start_offset
        stop = False
        while not stop and (total < 0 or offset < total):
            if not log.wait_for(offset, 60_000):
                raise SystemExit(f"reader: nothing past {offset} within 60 s")
            for record in log.records(offset):
                if record.offset != offset:
                    raise SystemExit(f"reader: expected offset {offset}, got {record.offset}")
                seen.append([record.offset, digest(record.value)])
                offset += 1
                stop = total < 0 and record.value == b"STOP"
        log.close()
        say(json.dumps(seen))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
