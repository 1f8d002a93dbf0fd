"""Child processes for the crash and multi-process tests (run as a script, never imported by pytest
as a test module). Modes:

- ``kill ENGINE PATH CONFIG SEED [big] [step K]``: append batches forever, printing ``index base``
  after each acknowledged append, until the parent SIGKILLs it (with ``PYLOG_TEST_PAUSE`` set, the
  log stops the process at a known point first, printing ``pause POINT``). With ``step K``: print ``ready`` once
  open and wait for a line on stdin before each group of K batches.
- ``writer ENGINE PATH CONFIG ID COUNT [K]``: print ``ready`` once open, wait for a line on stdin,
  append COUNT batches of ``writer_values(ID, i)``, close, print ``done``. With K: print each base
  offset, and wait for another line on stdin before each further group of K batches.
- ``torn ENGINE PATH CONFIG SEED COUNT``: append COUNT batches like ``kill`` (printing ``index base``),
  then write the first 2/3 of the encoded next batch at the end of the active segment file, as a
  crash half-way through a write would leave it, print ``torn BASE SEGMENT GOOD_SIZE CUT`` and
  SIGKILL itself.
- ``spin ENGINE PATH CONFIG ID SECONDS``: print ``ready``, wait for a line on stdin, append one
  record ``w{ID}:{i}`` at a time in a tight loop for SECONDS, close, print how many it appended
  and the longest single append in seconds (an upper bound of its longest wait for the lock).
- ``appender ENGINE PATH CONFIG``: print ``ready``; for each line on stdin append one record and
  print ``base t`` (``t``: ``time.monotonic()`` right after ``append`` returned); exit at EOF.
- ``reader ENGINE PATH CONFIG TOTAL``: print ``ready``, wait for a line on stdin, tail the log with
  ``wait_for`` + ``records()`` until TOTAL records were seen (TOTAL -1: until a record whose value
  is ``STOP``); print them as JSON ``[offset, sha1 of the value]``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sys
import time

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
        seed, big = int(argv[4]), "big" in argv[5:]
        step = int(argv[argv.index("step") + 1]) if "step" in argv else 0
        if step:
            say("ready")
        i = 0
        while True:
            if step and i % step == 0 and not sys.stdin.readline():
                return
            values = batch_values(seed, i, big)
            base = log.append(
                values, timestamps_ms=[TS + i] * len(values), compression=CODECS[(seed + i) % 5]
            )
            say(f"{i} {base}")
            i += 1
    elif mode == "torn":
        from helpers import kafka_build_batch, segment_bases, segment_name

        seed, count = int(argv[4]), int(argv[5])
        for i in range(count):
            values = batch_values(seed, i)
            base = log.append(values, timestamps_ms=[TS + i] * len(values))
            say(f"{i} {base}")
        values = batch_values(seed, count)
        base = log.end_offset
        batch = kafka_build_batch([(TS, None, v, []) for v in values], base_offset=base)
        segment = os.path.join(path, segment_name(segment_bases(path)[-1]))
        fd = os.open(segment, os.O_WRONLY | os.O_APPEND)
        good_size = os.fstat(fd).st_size
        cut = len(batch) * 2 // 3  # past the header: the length field promises more than is there
        assert os.write(fd, batch[:cut]) == cut
        say(f"torn {base} {os.path.basename(segment)} {good_size} {cut}")
        os.kill(os.getpid(), signal.SIGKILL)  # the crash: no close, no cleanup
    elif mode == "writer":
        writer_id, count = int(argv[4]), int(argv[5])
        step = int(argv[6]) if len(argv) > 6 else 0
        say("ready")
        sys.stdin.readline()
        for i in range(count):
            if step and i and i % step == 0:
                sys.stdin.readline()
            values = writer_values(writer_id, i)
            base = log.append(values, timestamps_ms=[TS + i] * len(values))
            if step:
                say(str(base))
        log.close()
        say("done")
    elif mode == "spin":
        writer_id, seconds = int(argv[4]), float(argv[5])
        say("ready")
        sys.stdin.readline()
        deadline = time.monotonic() + seconds
        n, longest = 0, 0.0
        while (start := time.monotonic()) < deadline:
            log.append([b"w%d:%d" % (writer_id, n)], timestamps_ms=[TS])
            longest = max(longest, time.monotonic() - start)
            n += 1
        log.close()
        say(f"{n} {longest!r}")
    elif mode == "appender":
        say("ready")
        i = 0
        while sys.stdin.readline():
            i += 1
            base = log.append([b"append-%d" % i], timestamps_ms=[TS + i])
            say(f"{base} {time.monotonic()!r}")
        log.close()
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
