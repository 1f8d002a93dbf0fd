"""Independent helpers for the cross-engine tests: they share no code with either engine.

Batch headers are parsed with ``struct`` straight from Kafka's layout (DefaultRecordBatch.java), index entries
are recomputed from the ``.log`` bytes by the contract's rules, and kafka-python's record classes
serve as the third-party encoder/decoder.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import crc32c as _crc32c

with warnings.catch_warnings():
    # kafka-python's package __init__ uses importlib.resources.read_text (deprecated in 3.11+);
    # import it once here so pytest's filterwarnings=error does not turn that into an error
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka.codec as kafka_codec
    from kafka.record.default_records import DefaultRecordBatchBuilder
    from kafka.record.memory_records import MemoryRecords

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _native_import_error() -> str | None:
    import importlib

    try:
        importlib.import_module("pylog._native")
    except ImportError as exc:  # the extension is not built in this checkout
        return f"{type(exc).__name__}: {exc}"
    return None


NATIVE_IMPORT_ERROR = _native_import_error()


def skip_if_engine_missing(name: str) -> None:
    """Skip a native test when the extension is not built, outside CI only."""
    import pytest

    if name == "native" and NATIVE_IMPORT_ERROR is not None and not IN_CI:
        pytest.skip(
            "pylog._native is not importable (build it with tools/build_inplace.sh); "
            f"CI treats this as a failure: {NATIVE_IMPORT_ERROR}"
        )


#: why tests that need both engines at once are skipped (None: run them; never skipped in CI)
BOTH_ENGINES_SKIP = (
    None
    if NATIVE_IMPORT_ERROR is None or IN_CI
    else f"pylog._native is not importable (build it with tools/build_inplace.sh): {NATIVE_IMPORT_ERROR}"
)

HEADER = struct.Struct(">qiibIhiqqqhii")
assert HEADER.size == 61
LOG_OVERHEAD = 12
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
CODEC_IDS = {name: i for i, name in enumerate(CODECS)}
SEGMENT_SUFFIXES = (".log", ".index", ".timeindex")


@dataclass(frozen=True)
class Batch:
    position: int
    base_offset: int
    length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        return LOG_OVERHEAD + self.length

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.last_offset + 1

    @property
    def codec(self) -> int:
        return self.attributes & 0x07


def crc32c(data: bytes | bytearray | memoryview) -> int:
    return _crc32c.crc32c(bytes(data))


def parse_batches(buf: bytes | bytearray | memoryview, *, strict: bool = True) -> list[Batch]:
    """Frame whole batches back to back; with ``strict`` the buffer must hold only whole batches."""
    data = bytes(buf)
    out: list[Batch] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 61:
            assert not strict, f"{len(data) - pos} trailing bytes at {pos}"
            break
        fields = HEADER.unpack_from(data, pos)
        batch = Batch(pos, *fields)
        if pos + batch.size > len(data):
            assert not strict, f"batch at {pos} runs past the end"
            break
        out.append(batch)
        pos += batch.size
    return out


def batch_crc_ok(buf: bytes, batch: Batch) -> bool:
    return crc32c(buf[batch.position + 21 : batch.position + batch.size]) == batch.crc


def segment_name(base: int, suffix: str = ".log") -> str:
    return f"{base:020d}{suffix}"


def segment_bases(path: str | os.PathLike[str]) -> list[int]:
    return sorted(int(n[:-4]) for n in os.listdir(path) if n.endswith(".log") and n[:-4].isdigit())


def read_offset_index(path: str | os.PathLike[str]) -> list[tuple[int, int]]:
    data = Path(path).read_bytes()
    assert len(data) % 8 == 0, f"{path}: {len(data)} bytes is not whole 8-byte entries"
    return [struct.unpack_from(">ii", data, i) for i in range(0, len(data), 8)]


def read_time_index(path: str | os.PathLike[str]) -> list[tuple[int, int]]:
    data = Path(path).read_bytes()
    assert len(data) % 12 == 0, f"{path}: {len(data)} bytes is not whole 12-byte entries"
    return [struct.unpack_from(">qi", data, i) for i in range(0, len(data), 12)]


def expected_indexes(
    log_bytes: bytes, base: int, interval: int, *, sealed: bool
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Index entries of a segment recomputed from its bytes (docs/partition-log.md "Index rules")."""
    offset_entries: list[tuple[int, int]] = []
    time_entries: list[tuple[int, int]] = []
    last_entry_pos = 0
    max_ts = -1
    offset_of_max = base
    for batch in parse_batches(log_bytes):
        if batch.max_timestamp > max_ts:
            max_ts, offset_of_max = batch.max_timestamp, batch.last_offset
        if batch.position - last_entry_pos > interval:
            offset_entries.append((batch.last_offset - base, batch.position))
            last_ts = time_entries[-1][0] if time_entries else -1
            if max_ts > last_ts:
                time_entries.append((max_ts, offset_of_max - base))
            last_entry_pos = batch.position
    if sealed:
        last_ts = time_entries[-1][0] if time_entries else -1
        if max_ts > last_ts:
            time_entries.append((max_ts, offset_of_max - base))
    return offset_entries, time_entries


def expected_time_index_with_closes(
    log_bytes: bytes, base: int, interval: int, got_time: list[tuple[int, int]], *, sealed: bool
) -> list[tuple[int, int]]:
    """The time entries the index rules give when the segment may have been closed (Kafka's
    close-time final entry) after any of its batches: a file entry equal to the final entry at a
    batch boundary is taken as such a close; every other entry must be the rules' own."""
    entries: list[tuple[int, int]] = []
    max_ts, offset_of_max, last_entry_pos = -1, base, 0

    def offer() -> None:
        if max_ts > (entries[-1][0] if entries else -1):
            entries.append((max_ts, offset_of_max - base))

    for batch in parse_batches(log_bytes):
        if batch.max_timestamp > max_ts:
            max_ts, offset_of_max = batch.max_timestamp, batch.last_offset
        if batch.position - last_entry_pos > interval:
            offer()
            last_entry_pos = batch.position
        closed = (max_ts, offset_of_max - base)
        if len(entries) < len(got_time) and got_time[len(entries)] == closed:
            offer()
    if sealed:
        offer()
    return entries


def check_segment_indexes(directory: str | os.PathLike[str], interval: int) -> int:
    """Assert every segment's index files match the recomputation (close-time final entries
    allowed where a close could have written them); return the segment count."""
    bases = segment_bases(directory)
    for i, base in enumerate(bases):
        log_bytes = Path(directory, segment_name(base)).read_bytes()
        sealed = i < len(bases) - 1
        want_off, _ = expected_indexes(log_bytes, base, interval, sealed=sealed)
        got_off = read_offset_index(Path(directory, segment_name(base, ".index")))
        got_time = read_time_index(Path(directory, segment_name(base, ".timeindex")))
        want_time = expected_time_index_with_closes(log_bytes, base, interval, got_time, sealed=sealed)
        assert got_off == want_off, f"segment {base}: offset index {got_off} != {want_off}"
        assert got_time == want_time, f"segment {base}: time index {got_time} != {want_time}"
    return len(bases)


def xor_byte(path: str | os.PathLike[str], pos: int, mask: int) -> bytes:
    """Flip bits of the byte at ``pos`` of a file in place (``byte ^= mask``); returns the file."""
    with open(path, "r+b") as f:
        f.seek(pos)
        (byte,) = f.read(1)
        f.seek(pos)
        f.write(bytes([byte ^ mask]))
    return Path(path).read_bytes()


def segment_files(directory: str | os.PathLike[str]) -> dict[str, bytes]:
    """Contents of every .log/.index/.timeindex file in a partition directory."""
    return {
        name: Path(directory, name).read_bytes()
        for name in sorted(os.listdir(directory))
        if name.endswith(SEGMENT_SUFFIXES)
    }


def all_log_bytes(directory: str | os.PathLike[str]) -> list[tuple[int, bytes]]:
    return [(b, Path(directory, segment_name(b)).read_bytes()) for b in segment_bases(directory)]


def read_checkpoint(directory: str | os.PathLike[str]) -> list[str]:
    return Path(directory, "recovery-point-offset-checkpoint").read_text().splitlines()


def as_tuples(records: Any) -> list[tuple]:
    """Records as plain tuples (headers as tuples of tuples) for equality checks."""
    out = []
    for r in records:
        out.append(
            (
                r.offset,
                r.timestamp,
                r.timestamp_type,
                r.key,
                r.value,
                tuple((k, v) for k, v in r.headers),
            )
        )
    return out


def expected_records(
    base: int,
    values: list,
    keys: list | None = None,
    headers: list | None = None,
    timestamps: list[int] | None = None,
) -> list[tuple]:
    n = len(values)
    keys = keys if keys is not None else [None] * n
    headers = headers if headers is not None else [[] for _ in range(n)]
    assert timestamps is not None
    return [
        (
            base + i,
            timestamps[i],
            0,
            None if keys[i] is None else bytes(keys[i]),
            None if values[i] is None else bytes(values[i]),
            tuple((k, None if v is None else bytes(v)) for k, v in headers[i]),
        )
        for i in range(n)
    ]


def outcome(call: Any) -> tuple[str, Any]:
    """("ok", result) or ("error", exception type); anything but a typed error propagates."""
    from pylog.errors import PylogError

    try:
        return ("ok", call())
    except (PylogError, TypeError) as exc:
        return ("error", type(exc))


def run_on_both(logs: dict[str, Any], fn: Any) -> dict[str, tuple[str, Any]]:
    """``fn(log)`` on the native and the reference log of a differential machine: both must succeed
    or both raise the same error class; returns the outcome per engine."""
    from hypothesis import note

    results = {name: outcome(lambda log=log: fn(log)) for name, log in logs.items()}
    note(f"-> {results}")
    assert results["native"][0] == results["reference"][0], results
    if results["native"][0] == "error":
        assert results["native"][1] is results["reference"][1], results
    return results


# ----------------------------------------------------------------------------------------------
# kafka-python as an independent codec


def _install_snappy_shim() -> bool:
    """kafka-python needs python-snappy for its xerial framing; lend it cramjam's raw snappy."""
    if kafka_codec.snappy is not None:
        return True
    try:
        import cramjam
    except ImportError:
        return False

    class _Snappy:
        @staticmethod
        def compress(data: bytes) -> bytes:
            return bytes(cramjam.snappy.compress_raw(bytes(data)))

        @staticmethod
        def decompress(data: bytes) -> bytes:
            return bytes(cramjam.snappy.decompress_raw(bytes(data)))

        @staticmethod
        def isValidCompressed(data: bytes) -> bool:  # python-snappy API used by kafka-python
            try:
                cramjam.snappy.decompress_raw(bytes(data))
            except Exception:
                return False
            return True

    kafka_codec.snappy = _Snappy()
    return True


def kafka_codecs() -> list[str]:
    """Codecs kafka-python can handle in this environment."""
    _install_snappy_shim()
    ok = ["none", "gzip"]
    if kafka_codec.has_snappy():
        ok.append("snappy")
    if kafka_codec.has_lz4():
        ok.append("lz4")
    if kafka_codec.has_zstd():
        ok.append("zstd")
    return ok


def kafka_build_batch(
    records: list[tuple[int, bytes | None, bytes | None, list]],
    codec: str = "none",
    *,
    base_offset: int = 0,
) -> bytes:
    """One v2 batch built by kafka-python: records are (timestamp, key, value, headers)."""
    _install_snappy_shim()
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=CODEC_IDS[codec],
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 30,
    )
    for i, (ts, key, value, headers) in enumerate(records):
        # kafka-python takes the offset delta here; the base offset goes in the header below
        meta = builder.append(i, timestamp=ts, key=key, value=value, headers=headers)
        assert meta is not None
    out = bytearray(builder.build())
    out[0:8] = base_offset.to_bytes(8, "big")  # baseOffset is not under the CRC
    return bytes(out)


def kafka_decode(buf: bytes | bytearray | memoryview) -> list[tuple[Any, list[tuple]]]:
    """Decode every batch of a buffer with kafka-python: [(batch, records as tuples)]."""
    _install_snappy_shim()
    mr = MemoryRecords(bytes(buf))
    out = []
    while True:
        batch = mr.next_batch()
        if batch is None:
            break
        assert batch.validate_crc(), "kafka-python: CRC mismatch"
        out.append((batch, as_tuples(batch)))
    return out


def records_equal_ignoring_offsets(a: list, b: list) -> bool:
    return [x[1:] for x in as_tuples(a)] == [x[1:] for x in as_tuples(b)]


# ----------------------------------------------------------------------------------------------
# a hand encoder for malformed batches (independent of both engines and of kafka-python)


def zigzag_varint(value: int) -> bytes:
    u = ((value << 1) ^ (value >> 63)) & (2**64 - 1)
    out = bytearray()
    while True:
        b = u & 0x7F
        u >>= 7
        if u:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def raw_record(
    *,
    ts_delta: int = 0,
    offset_delta: int = 0,
    key: bytes | None = None,
    value: bytes | None = b"v",
    headers: list[tuple[bytes, bytes | None]] = (),  # type: ignore[assignment]
    body_override: bytes | None = None,
    length_override: int | None = None,
) -> bytes:
    """One record (length-prefixed); header keys are raw bytes so they can be invalid UTF-8."""
    if body_override is not None:
        body = body_override
    else:
        body = b"\x00" + zigzag_varint(ts_delta) + zigzag_varint(offset_delta)
        body += zigzag_varint(-1) if key is None else zigzag_varint(len(key)) + key
        body += zigzag_varint(-1) if value is None else zigzag_varint(len(value)) + value
        body += zigzag_varint(len(headers))
        for hk, hv in headers:
            body += zigzag_varint(len(hk)) + hk
            body += zigzag_varint(-1) if hv is None else zigzag_varint(len(hv)) + hv
    length = len(body) if length_override is None else length_override
    return zigzag_varint(length) + body


def raw_batch(
    records: bytes,
    count: int,
    *,
    base_offset: int = 0,
    attributes: int = 0,
    last_offset_delta: int | None = None,
    base_ts: int = 1000,
    max_ts: int = 1000,
    magic: int = 2,
    length_delta: int = 0,
    good_crc: bool = True,
) -> bytes:
    """A v2 batch around an already-encoded records area (CRC computed unless ``good_crc=False``)."""
    if last_offset_delta is None:
        last_offset_delta = max(count - 1, 0)
    tail = struct.pack(">hiqqqhii", attributes, last_offset_delta, base_ts, max_ts, -1, -1, -1, count)
    tail += records
    crc = crc32c(tail) if good_crc else (crc32c(tail) ^ 1)
    length = 4 + 1 + 4 + len(tail) + length_delta
    return struct.pack(">qiibI", base_offset, length, 0, magic, crc) + tail


# ----------------------------------------------------------------------------------------------
# child processes (tests/writer_process.py)

WRITER_SCRIPT = Path(__file__).resolve().parent / "writer_process.py"


def spawn_child(
    mode: str,
    engine: str,
    path: str | os.PathLike[str],
    config: dict,
    *args: object,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Start ``writer_process.py MODE ENGINE PATH CONFIG ARGS...`` with piped stdin/stdout/stderr
    (``env``: extra environment variables, e.g. the ``PYLOG_TEST_PAUSE`` crash-test hook)."""
    argv = [sys.executable, str(WRITER_SCRIPT), mode, engine, str(path), json.dumps(config)]
    return subprocess.Popen(
        argv + [str(a) for a in args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


#: ``.pylog.shm`` fields (native/src/shared_state.rs): name -> (offset, struct format)
SHARED_STATE_FIELDS = {
    "magic": (0, "<I"),
    "version": (4, "<I"),
    "generation": (8, "<I"),
    "tail_seq": (12, "<I"),
    "grants": (16, "<I"),
    "end_offset": (32, "<q"),
    "active_base": (40, "<q"),
    "active_size": (48, "<Q"),
    "recovery_point": (56, "<q"),
}


def read_shared_state(path: str | os.PathLike[str]) -> dict[str, int]:
    """The fields of a partition's ``.pylog.shm`` as another process sees them."""
    data = (Path(path) / ".pylog.shm").read_bytes()
    return {k: struct.unpack_from(fmt, data, off)[0] for k, (off, fmt) in SHARED_STATE_FIELDS.items()}


def synced_offset(path: str | os.PathLike[str]) -> int:
    """How far the partition's syncs got (the page's ``recovery_point``): since a ``sync()``
    writes ``recovery-point-offset-checkpoint`` only now and then, the page is where it shows."""
    return read_shared_state(path)["recovery_point"]


def write_shared_field(path: str | os.PathLike[str], name: str, value: int) -> None:
    """Store one field of ``.pylog.shm`` in place (through the file: it is MAP_SHARED, so every
    process that maps it sees the store), as a process that died mid-change would leave it."""
    off, fmt = SHARED_STATE_FIELDS[name]
    fd = os.open(Path(path) / ".pylog.shm", os.O_RDWR)
    try:
        os.pwrite(fd, struct.pack(fmt, value), off)
    finally:
        os.close(fd)


@contextlib.contextmanager
def reaped(procs: list[subprocess.Popen]) -> Iterator[list[subprocess.Popen]]:
    """Yield ``procs`` (the body may append more); on the way out SIGKILL whichever still runs,
    wait for every one and close its pipes, so no test leaves a child or an fd behind."""
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            for f in (p.stdin, p.stdout, p.stderr):
                if f is not None:
                    f.close()


def expect_line(proc: subprocess.Popen, text: str) -> None:
    line = proc.stdout.readline().decode().strip()
    assert line == text, f"child said {line!r}; stderr: {proc.stderr.read().decode()}"


# ----------------------------------------------------------------------------------------------
# wake-up latency of wait_for


def wake_up_gaps(log: Any, append: Any, rounds: int = 6) -> list[tuple[float, float]]:
    """Per round: a thread announces (Event) that it is about to call ``log.wait_for(end, 60 s)``;
    once it did, ``append()`` makes one append (anywhere: this thread, another process) and returns
    the ``time.monotonic()`` at which that append returned. Returns per round (wake-up gap: when
    wait_for returned minus when the append returned, negative if it woke before; how long
    wait_for took). The order of "waiter blocks" and "append lands" is not forced: either order
    must end with wait_for returning True promptly."""
    import threading
    import time

    out: list[tuple[float, float]] = []
    for k in range(rounds):
        target = log.end_offset
        entered = threading.Event()
        result: dict[str, Any] = {}

        def waiter(target: int = target, entered: threading.Event = entered, result: dict = result) -> None:
            entered.set()
            t0 = time.monotonic()
            result["ok"] = log.wait_for(target, 60_000)
            result["returned"] = time.monotonic()
            result["waited"] = result["returned"] - t0

        thread = threading.Thread(target=waiter)
        thread.start()
        assert entered.wait(10)
        if k % 2:
            # Not synchronization (the outcome is checked whatever the order): it only makes it
            # likely that the waiter is already blocked inside wait_for, so these rounds measure
            # the wake-up path rather than the "already there" fast path.
            time.sleep(0.03)
        appended = append()
        thread.join(30)
        assert not thread.is_alive(), "wait_for did not return"
        assert result["ok"] is True, f"round {k}: wait_for({target}) returned {result['ok']}"
        out.append((result["returned"] - appended, result["waited"]))
    return out


def assert_prompt_wake_ups(gaps: list[tuple[float, float]], bound: float) -> None:
    late = [gap for gap, _ in gaps if gap >= bound]
    assert not late, f"wait_for returned {late} s after the append (bound {bound} s): {gaps}"
    assert any(waited > 0.02 for _, waited in gaps), f"wait_for never blocked in any round: {gaps}"
