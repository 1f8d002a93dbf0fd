"""append_raw validates every record before a byte is written (docs/partition-log.md, "append_raw"),
and the error kinds both engines report.

The rule under test: a batch ``append_raw`` accepts is one that ``records()`` and ``read_columns()``
decode in both engines; a batch it refuses raises ``CorruptBatchError`` or ``InvalidRecordError``
with a ``kind``, and leaves ``end_offset`` and every file of the partition byte for byte as it was.
Oracles: the other engine (same verdict, same class, same kind) and the files on disk.

Sections: the error kinds (one closed set in both engines, pickling); the fuzz (a fixed-seed run of
10,000 mutated batches per engine over the five codecs, and a hypothesis twin); transaction
markers (skipped by every reader, kept by read(), append_raw, recovery and copies; kafka-python
as the independent decoder); each append rule hand-built.
"""

from __future__ import annotations

import os
import pickle
import random
import struct
from collections import Counter
from pathlib import Path

import pytest
from helpers import (
    IN_CI,
    DefaultRecordBatchBuilder,
    as_tuples,
    crc32c,
    kafka_build_batch,
    kafka_decode,
    raw_record,
    segment_files,
    skip_if_engine_missing,
    zigzag_varint,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from pylog.engine import decode_records, open_partition
from pylog.errors import CorruptBatchError, CorruptKind, InvalidRecordError, RecordTooLargeError
from pylog.reference import batch as record_batch

# ---------------------------------------------------------------------------------------------
# error kinds: one closed set shared by both engines


def test_native_and_python_kinds_are_one_set():
    skip_if_engine_missing("native")
    from pylog import _native

    assert list(_native.CORRUPT_KINDS) == [k.value for k in CorruptKind]
    assert len(set(_native.CORRUPT_KINDS)) == len(CorruptKind)


def test_errors_keep_kind_path_position_through_pickling():
    e = CorruptBatchError("bad crc", "/x/00000000000000000000.log", 61, "crc")
    assert e.kind is CorruptKind.CRC
    assert str(e) == "bad crc (kind crc, /x/00000000000000000000.log, position 61)"
    back = pickle.loads(pickle.dumps(e))
    assert (type(back), back.args, back.path, back.position, back.kind) == (
        CorruptBatchError,
        ("bad crc",),
        e.path,
        61,
        CorruptKind.CRC,
    )
    plain = CorruptBatchError("no kind")
    assert plain.kind is None and str(plain) == "no kind"
    assert pickle.loads(pickle.dumps(plain)).kind is None
    inv = InvalidRecordError("lying maxTimestamp", CorruptKind.TIMESTAMP)
    assert str(inv) == "lying maxTimestamp (kind timestamp)"
    back = pickle.loads(pickle.dumps(inv))
    assert (type(back), back.args, back.kind) == (
        InvalidRecordError,
        ("lying maxTimestamp",),
        CorruptKind.TIMESTAMP,
    )
    assert InvalidRecordError("plain").kind is None
    assert isinstance(inv, ValueError)
    with pytest.raises(ValueError):
        CorruptBatchError("x", kind="no such kind")


# ---------------------------------------------------------------------------------------------
# the rule: accepted => readable in both engines; refused => typed error, nothing changed

TS = 1_700_000_000_000
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
ENGINES = ("native", "reference")


def base_batches(codec: str, rng: random.Random) -> list[bytes]:
    """Small valid batches of ``codec``: nulls, headers, negative timestamp deltas."""
    out = []
    for n in (1, 3, 6):
        values = [None if rng.random() < 0.2 else rng.randbytes(rng.randint(0, 12)) for _ in range(n)]
        keys = [None if rng.random() < 0.4 else rng.randbytes(rng.randint(0, 4)) for _ in range(n)]
        headers = [[("h", rng.randbytes(2))] if rng.random() < 0.3 else [] for _ in range(n)]
        stamps = [TS + rng.randint(-20, 20) for _ in range(n)]
        out.append(record_batch.encode_batch(0, values, keys, headers, stamps, codec, None))
    out.append(kafka_build_batch([(TS, b"k", b"value", [("a", None)]), (TS - 3, None, b"", [])], "none"))
    return out


def reseal(batch: bytearray) -> bytes:
    """Rewrite the length field and CRC-32C so framing and checksum agree with the bytes."""
    if len(batch) >= 12:
        batch[8:12] = (len(batch) - 12).to_bytes(4, "big", signed=True)
    if len(batch) >= 21:
        batch[17:21] = crc32c(bytes(batch[21:])).to_bytes(4, "big")
    return bytes(batch)


def mutate(batch: bytes, rng: random.Random) -> bytes:
    """Change 1-5 random bytes (mostly in the records area), sometimes truncate, then reseal."""
    out = bytearray(batch)
    for _ in range(rng.randint(1, 5)):
        in_records = rng.random() < 0.8 and len(out) > 61
        pos = rng.randrange(61, len(out)) if in_records else rng.randrange(len(out))
        out[pos] = rng.randrange(256)
    if rng.random() < 0.15:
        del out[rng.randrange(1, len(out)) :]
    return reseal(out)


class Partition:
    """One engine's log under test, with what it must still hold."""

    def __init__(self, engine: str, path):
        self.engine = engine
        self.log = open_partition(path, engine=engine)
        self.path = path

    def sizes(self) -> dict[str, int]:
        return {e.name: e.stat().st_size for e in os.scandir(self.path)}

    def files(self) -> dict[str, bytes]:
        return {e.name: Path(e.path).read_bytes() for e in os.scandir(self.path) if e.is_file()}

    def try_append(self, batch: bytes, full_check: bool) -> tuple:
        """The verdict of append_raw: ("ok", records read back) or ("refused", class, kind)."""
        end, sizes = self.log.end_offset, self.sizes()
        files = self.files() if full_check else None
        try:
            base = self.log.append_raw(batch)
        except (CorruptBatchError, InvalidRecordError) as exc:
            assert exc.kind is not None, (self.engine, exc)
            assert self.log.end_offset == end and self.sizes() == sizes, (self.engine, exc)
            if files is not None:
                assert self.files() == files, self.engine
            return ("refused", type(exc).__name__, exc.kind)
        except RecordTooLargeError:
            raise AssertionError("a small batch is never too large") from None
        new_end = self.log.end_offset
        assert base == end and new_end > end
        got = as_tuples(self.log.records(base, new_end))
        cols = self.log.read_columns(base, new_end - base)
        assert [int(o) for o in cols.offsets] == [r[0] for r in got], self.engine
        assert [cols.value(i) for i in range(cols.num_records)] == [r[4] for r in got], self.engine
        # the batch as written: the caller's bytes with baseOffset and the epoch rewritten
        raw = bytes(memoryview(self.log.read(base, len(batch))))
        assert raw[:8] == base.to_bytes(8, "big") and raw[16:] == batch[16:], self.engine
        return ("ok", got)

    def close(self) -> None:
        self.log.close()


def compare_engines(parts: dict[str, Partition], batch: bytes, full_check: bool) -> tuple:
    verdicts = {name: part.try_append(batch, full_check) for name, part in parts.items()}
    assert verdicts["native"] == verdicts["reference"], (batch.hex(), verdicts)
    return verdicts["native"]


@pytest.fixture
def partitions(tmp_path):
    for name in ENGINES:
        skip_if_engine_missing(name)
    parts = {name: Partition(name, tmp_path / name / "fuzz-0") for name in ENGINES}
    yield parts
    for part in parts.values():
        part.close()


#: tries per codec; 5 codecs x 2,000 = 10,000 mutated batches, each appended to both engines
FUZZ_TRIES_PER_CODEC = int(os.environ.get("PYLOG_APPEND_FUZZ_TRIES", "2000"))


@pytest.mark.parametrize("codec", CODECS)
def test_mutated_batches_fixed_seed(partitions, codec):
    rng = random.Random(f"append-raw-{codec}")
    bases = base_batches(codec, rng)
    verdicts: Counter = Counter()
    for i in range(FUZZ_TRIES_PER_CODEC):
        bad = mutate(rng.choice(bases), rng)
        verdict = compare_engines(partitions, bad, full_check=i % 250 == 0)
        verdicts[verdict[0] if verdict[0] == "ok" else verdict[2].value] += 1
    # the engines share one format: identical files after the same accepted batches
    assert partitions["native"].files() == partitions["reference"].files()
    for part in partitions.values():  # and every accepted batch still reads after a reopen
        part.close()
        part.log = open_partition(part.path, engine=part.engine)
        assert len(as_tuples(part.log.records())) == part.log.end_offset
    assert verdicts["ok"] > 0 and sum(verdicts.values()) == FUZZ_TRIES_PER_CODEC, verdicts
    assert len(verdicts) >= 4, verdicts  # several kinds of refusal were reached


mutation = st.tuples(st.integers(0, 10_000), st.integers(0, 255))


@settings(max_examples=150 if IN_CI else 40)
@given(
    codec=st.sampled_from(CODECS),
    values=st.lists(st.none() | st.binary(max_size=20), min_size=1, max_size=5),
    mutations=st.lists(mutation, min_size=1, max_size=5),
    cut=st.none() | st.integers(1, 10_000),
)
def test_mutated_batches_hypothesis(tmp_path_factory, codec, values, mutations, cut):
    n = len(values)
    good = record_batch.encode_batch(
        0, values, [None] * n, [[] for _ in range(n)], [TS + i for i in range(n)], codec, None
    )
    bad = bytearray(good)
    for pos, value in mutations:
        bad[pos % len(bad)] = value
    if cut is not None:
        del bad[cut % len(bad) or 1 :]
    bad = reseal(bad)
    root = tmp_path_factory.mktemp("hyp")
    parts = {name: Partition(name, root / name / "hyp-0") for name in ENGINES}
    try:
        assert compare_engines(parts, good, full_check=False)[0] == "ok"
        compare_engines(parts, bad, full_check=True)
    finally:
        for part in parts.values():
            part.close()


# ---------------------------------------------------------------------------------------------
# transaction markers: kept byte for byte, never returned as records (ControlRecordType.java, EndTransactionMarker.java)

PRODUCER_ID = 4242
PRODUCER_EPOCH = 3
ABORT, COMMIT = 0, 1


def control_batch(
    control_type: int,
    ts: int,
    *,
    attributes: int = 0x30,
    producer_id: int = PRODUCER_ID,
    count: int = 1,
    key: bytes | None = None,
    value: bytes | None = None,
) -> bytes:
    """A control batch as a transaction coordinator writes it: one record, key (version 0, type),
    value (version 0, coordinatorEpoch), transactional + control bits, the producer's id/epoch."""
    key = struct.pack(">hh", 0, control_type) if key is None else key
    value = struct.pack(">hi", 0, 17) if value is None else value
    records = b"".join(raw_record(key=key, value=value, offset_delta=i) for i in range(count))
    tail = struct.pack(">hiqqqhii", attributes, count - 1, ts, ts, producer_id, PRODUCER_EPOCH, -1, count)
    tail += records
    return struct.pack(">qiibI", 0, 9 + len(tail), -1, 2, crc32c(tail)) + tail


def transactional_batch(records: list[tuple], sequence: int) -> bytes:
    """A transactional data batch built by kafka-python (an independent encoder)."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=True,
        producer_id=PRODUCER_ID,
        producer_epoch=PRODUCER_EPOCH,
        base_sequence=sequence,
        batch_size=1 << 20,
    )
    for i, (ts, key, value) in enumerate(records):
        assert builder.append(i, timestamp=ts, key=key, value=value, headers=[]) is not None
    return bytes(builder.build())


#: a transactional log: (batch, is a marker); offsets 0-2 data, 3 commit, 4-5 data, 6 abort,
#: 7 data, 8 commit. Markers carry later timestamps than the data before them.
def transactional_log() -> list[tuple[bytes, bool]]:
    return [
        (transactional_batch([(TS, b"a", b"1"), (TS + 1, b"b", b"2"), (TS + 2, None, b"3")], 0), False),
        (control_batch(COMMIT, TS + 100), True),
        (transactional_batch([(TS + 200, b"c", b"4"), (TS + 201, b"d", None)], 3), False),
        (control_batch(ABORT, TS + 300), True),
        (transactional_batch([(TS + 400, b"e", b"5")], 5), False),
        (control_batch(COMMIT, TS + 500), True),
    ]


DATA_OFFSETS = [0, 1, 2, 4, 5, 7]


def test_control_batches_skipped_by_readers_kept_by_read(open_log):
    log = open_log(index_interval_bytes=0)
    for batch, _ in transactional_log():
        log.append_raw(batch)
    assert log.end_offset == 9
    got = as_tuples(log.records())
    assert [r[0] for r in got] == DATA_OFFSETS
    assert [r[3:5] for r in got] == [
        (b"a", b"1"),
        (b"b", b"2"),
        (None, b"3"),
        (b"c", b"4"),
        (b"d", None),
        (b"e", b"5"),
    ]
    # positions advance past a marker's offset
    assert [r[0] for r in as_tuples(log.records(3))] == [4, 5, 7]
    assert as_tuples(log.records(3, 4)) == [] and as_tuples(log.records(8)) == []
    cols = log.read_columns(0, 100)
    assert [int(o) for o in cols.offsets] == DATA_OFFSETS
    assert [int(o) for o in log.read_columns(3, 2).offsets] == [4, 5]
    assert [int(o) for o in log.read_columns(6, 5).offsets] == [7]
    assert log.read_columns(8, 5).num_records == 0
    # read() keeps markers byte for byte (after baseOffset and the epoch, which append rewrites)
    for offset, (batch, is_marker) in zip([0, 3, 4, 6, 7, 8], transactional_log(), strict=True):
        raw = bytes(memoryview(log.read(offset, 1)))
        assert raw[16:] == batch[16:] and int.from_bytes(raw[:8], "big") == offset
        assert bool(raw[22] & 0x20) == is_marker
    whole = bytes(memoryview(log.read(0, 1 << 20)))
    assert [r.offset for r in decode_records(whole, engine=log_engine(log))] == DATA_OFFSETS
    # kafka-python, an independent decoder, sees the same data records and our markers as markers
    seen = kafka_decode(whole)
    data = [r for batch, records in seen if not batch.is_control_batch for r in records]
    assert data == got
    markers = [records for batch, records in seen if batch.is_control_batch]  # ControlRecords
    assert [(r[0], struct.unpack(">hh", r[3])) for [r] in markers] == [
        (3, (0, COMMIT)),
        (6, (0, ABORT)),
        (8, (0, COMMIT)),
    ]
    assert all(batch.producer_id == PRODUCER_ID and batch.is_transactional for batch, _ in seen)


def log_engine(log) -> str:
    return "native" if type(log).__module__.startswith("pylog.native") else "reference"


def test_offset_for_timestamp_never_returns_a_marker(open_log):
    log = open_log(index_interval_bytes=0)
    for batch, _ in transactional_log():
        log.append_raw(batch)
    assert log.offset_for_timestamp(TS + 50) == 4  # the commit at TS+100 (offset 3) is no match
    assert log.offset_for_timestamp(TS + 250) == 7
    assert log.offset_for_timestamp(TS + 401) is None  # only the last commit (TS+500) is later
    assert log.offset_for_timestamp(TS) == 0


def test_markers_survive_recovery_and_the_other_engine(engine, other_engine, tmp_path):
    path = tmp_path / "txn-0"
    with open_partition(path, engine=engine, config={"index.interval.bytes": 0}) as log:
        for batch, _ in transactional_log():
            log.append_raw(batch)
        want = as_tuples(log.records())
    files = segment_files(path)
    (path / ".kafka_cleanshutdown").unlink()  # the next open recovers every segment
    for name in (other_engine, engine):
        with open_partition(path, engine=name, config={"index.interval.bytes": 0}) as log:
            assert log.end_offset == 9
            assert as_tuples(log.records()) == want
        assert segment_files(path) == files, name
        (path / ".kafka_cleanshutdown").unlink()


def test_both_engines_write_markers_identically(both_engines, tmp_path):
    out = {}
    for name in both_engines:
        with open_partition(
            tmp_path / name / "txn-0", engine=name, config={"index.interval.bytes": 0}
        ) as log:
            for batch, _ in transactional_log():
                log.append_raw(batch)
        out[name] = segment_files(tmp_path / name / "txn-0")
    assert out["native"] == out["reference"]


MALFORMED_MARKERS = {
    "two records": lambda: control_batch(COMMIT, TS, count=2),
    "short key": lambda: control_batch(COMMIT, TS, key=b"\x00\x00\x01"),
    "null key": lambda: control_batch(COMMIT, TS, key=None) and _null_key_marker(),
    "negative key version": lambda: control_batch(COMMIT, TS, key=struct.pack(">hh", -1, COMMIT)),
    "short marker value": lambda: control_batch(ABORT, TS, value=b"\x00\x00\x00"),
    "not transactional": lambda: control_batch(COMMIT, TS, attributes=0x20),
    "no producer id": lambda: control_batch(COMMIT, TS, producer_id=-1),
}


def _null_key_marker() -> bytes:
    records = raw_record(key=None, value=struct.pack(">hi", 0, 1))
    tail = struct.pack(">hiqqqhii", 0x30, 0, TS, TS, PRODUCER_ID, PRODUCER_EPOCH, -1, 1) + records
    return struct.pack(">qiibI", 0, 9 + len(tail), -1, 2, crc32c(tail)) + tail


@pytest.mark.parametrize("name", list(MALFORMED_MARKERS))
def test_malformed_markers_refused(open_log, name):
    log = open_log()
    log.append([b"x"], timestamps_ms=[TS])
    files = segment_files(log.path)
    with pytest.raises(InvalidRecordError) as info:
        log.append_raw(MALFORMED_MARKERS[name]())
    assert info.value.kind is CorruptKind.CONTROL
    assert log.end_offset == 1 and segment_files(log.path) == files


def test_other_control_types_accepted(open_log):
    """A LEADER_CHANGE-like control record (type 2) need not be transactional (KRaft writes them)."""
    log = open_log()
    assert log.append_raw(control_batch(2, TS, attributes=0x20, producer_id=-1, value=b"")) == 0
    assert as_tuples(log.records()) == [] and log.end_offset == 1


# ---------------------------------------------------------------------------------------------
# each append rule, hand-built (docs/partition-log.md "append_raw")


def data_batch(
    records: bytes, count: int, *, attributes: int = 0, base_ts: int = TS, max_ts: int = TS
) -> bytes:
    tail = struct.pack(">hiqqqhii", attributes, count - 1, base_ts, max_ts, -1, -1, -1, count) + records
    return struct.pack(">qiibI", 0, 9 + len(tail), -1, 2, crc32c(tail)) + tail


def _gzip(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data, mtime=0)


I64_MAX = 2**63 - 1
APPEND_RULES = {
    # name: (batch, None if accepted else (class, kind))
    "two records": (
        data_batch(raw_record() + raw_record(offset_delta=1, ts_delta=5), 2, max_ts=TS + 5),
        None,
    ),
    "negative ts delta": (
        data_batch(raw_record(ts_delta=-7) + raw_record(offset_delta=1), 2, max_ts=TS),
        None,
    ),
    "delete horizon bit": (data_batch(raw_record(), 1, attributes=0x40), None),
    "log append time bit": (data_batch(raw_record(ts_delta=99), 1, attributes=0x08, max_ts=5), None),
    "unused attribute bit 7": (
        data_batch(raw_record(), 1, attributes=0x80),
        (InvalidRecordError, "attributes"),
    ),
    "unused attribute bit 15": (
        data_batch(raw_record(), 1, attributes=-0x8000),
        (InvalidRecordError, "attributes"),
    ),
    "offset deltas swapped": (
        data_batch(raw_record(offset_delta=1) + raw_record(offset_delta=0), 2),
        (InvalidRecordError, "offset"),
    ),
    "offset delta gap": (
        data_batch(raw_record() + raw_record(offset_delta=2), 2),
        (InvalidRecordError, "offset"),
    ),
    "maxTimestamp too high": (data_batch(raw_record(), 1, max_ts=TS + 1), (InvalidRecordError, "timestamp")),
    "maxTimestamp too low": (
        data_batch(raw_record(ts_delta=3), 1, max_ts=TS),
        (InvalidRecordError, "timestamp"),
    ),
    "timestamp overflow": (
        data_batch(raw_record(ts_delta=I64_MAX), 1, base_ts=10, max_ts=-(2**63) + 9),
        (InvalidRecordError, "timestamp"),
    ),
    "corrupt record outranks bad offset": (
        data_batch(raw_record(offset_delta=5) + raw_record(length_override=99), 2),
        (CorruptBatchError, "record"),
    ),
    "gzip leftover bytes": (
        data_batch(_gzip(raw_record() + b"\x00"), 1, attributes=1),
        (CorruptBatchError, "record_count"),
    ),
    "gzip fewer records": (
        data_batch(_gzip(raw_record()), 2, attributes=1),
        (CorruptBatchError, "record_count"),
    ),
    "gzip two records": (
        data_batch(_gzip(raw_record() + raw_record(offset_delta=1)), 2, attributes=1),
        None,
    ),
}


@pytest.mark.parametrize("name", list(APPEND_RULES))
def test_append_rule(open_log, name):
    batch, refusal = APPEND_RULES[name]
    log = open_log()
    log.append([b"x"], timestamps_ms=[TS])
    files = segment_files(log.path)
    if refusal is None:
        assert log.append_raw(batch) == 1
        assert len(as_tuples(log.records(1))) == log.end_offset - 1 == log.read_columns(1, 10).num_records
        return
    cls, kind = refusal
    with pytest.raises(cls) as info:
        log.append_raw(batch)
    assert type(info.value) is cls and info.value.kind is CorruptKind(kind)
    assert log.end_offset == 1 and segment_files(log.path) == files


def test_copying_a_transactional_log_batch_by_batch(engine, other_engine, tmp_path):
    """append_raw is the copy path: read() each batch of one log, append_raw it to another (the
    other engine): the copy's .log bytes equal the source's, markers included."""
    src_path, dst_path = tmp_path / "src-0", tmp_path / "dst-0"
    with open_partition(src_path, engine=engine) as src:
        for batch, _ in transactional_log():
            src.append_raw(batch)
        with open_partition(dst_path, engine=other_engine) as dst:
            offset = 0
            while offset < src.end_offset:
                raw = bytes(memoryview(src.read(offset, 1)))
                assert dst.append_raw(raw) == offset
                offset = int.from_bytes(raw[:8], "big") + int.from_bytes(raw[23:27], "big") + 1
            assert as_tuples(dst.records()) == as_tuples(src.records())
    name = "00000000000000000000.log"
    assert (dst_path / name).read_bytes() == (src_path / name).read_bytes()


def test_size_is_checked_before_the_records(open_log):
    """As Kafka: an oversized batch is RecordTooLargeError, whatever its records hold."""
    log = open_log(max_message_bytes=200)
    garbage = data_batch(b"\xff" * 300, 1)  # framed, CRC valid, records malformed
    with pytest.raises(RecordTooLargeError):
        log.append_raw(garbage)
    with pytest.raises(CorruptBatchError) as info:
        log.append_raw(data_batch(b"\xff" * 100, 1))
    assert info.value.kind is CorruptKind.RECORD
    assert log.end_offset == 0


# ---------------------------------------------------------------------------------------------
# multi-byte varints: the fuzz above builds records whose varints are all one byte, so these
# reach the decoders' two-byte and longer paths (lengths, deltas and header fields >= 64)


def multibyte_batch(rng: random.Random, n: int = 40) -> tuple[bytes, list[int]]:
    """A valid batch whose every varint field takes two bytes or more, and the positions (in the
    batch) of every varint byte, where mutations are aimed."""
    records = bytearray()
    varint_positions: list[int] = []
    stamps = []
    for i in range(n):
        ts_delta = rng.choice((-1, 1)) * rng.randint(64, 9000)
        stamps.append(TS + ts_delta)
        key = rng.randbytes(rng.randint(64, 200))
        value = rng.randbytes(rng.randint(64, 300) if i % 10 else 8200)  # 3-byte lengths too
        hkey, hvalue = b"h" * rng.randint(64, 100), rng.randbytes(rng.randint(64, 100))
        parts: list[tuple[bool, bytes]] = [
            (False, b"\x00"),
            (True, zigzag_varint(ts_delta)),
            (True, zigzag_varint(i)),
            (True, zigzag_varint(len(key))),
            (False, key),
            (True, zigzag_varint(len(value))),
            (False, value),
            (True, zigzag_varint(1)),
            (True, zigzag_varint(len(hkey))),
            (False, hkey),
            (True, zigzag_varint(len(hvalue))),
            (False, hvalue),
        ]
        body_len = sum(len(p) for _, p in parts)
        parts.insert(0, (True, zigzag_varint(body_len)))
        for is_varint, part in parts:
            if is_varint:
                varint_positions.extend(range(61 + len(records), 61 + len(records) + len(part)))
            records += part
    batch = data_batch(bytes(records), n, max_ts=max(stamps))
    return batch, varint_positions


def test_multibyte_varints_fuzz(partitions):
    """Mutations aimed at multi-byte varints (and cuts right after one) get the same verdict and
    kind from both engines, and what is accepted reads back."""
    rng = random.Random("append-raw-multibyte")
    good, positions = multibyte_batch(rng)
    assert compare_engines(partitions, good, full_check=True)[0] == "ok"
    verdicts: Counter = Counter()
    for i in range(300):
        bad = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            bad[rng.choice(positions)] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0x81, 0xFF, rng.randrange(256)))
        if rng.random() < 0.2:
            del bad[rng.choice(positions) + 1 :]  # a varint's continuation is the last byte
        verdict = compare_engines(partitions, reseal(bad), full_check=i % 100 == 0)
        verdicts[verdict[0] if verdict[0] == "ok" else verdict[2].value] += 1
    assert verdicts["ok"] > 0 and verdicts["record"] > 0, verdicts


def _varint_of_width(value: int, width: int) -> bytes:
    """``value`` zigzag-encoded in exactly ``width`` bytes (padded with continuation bytes, as
    Java's ByteUtils.readVarint accepts)."""
    u = (value << 1) ^ (value >> 63)
    out = bytearray()
    for i in range(width):
        b = (u >> (7 * i)) & 0x7F
        out.append(b | 0x80 if i < width - 1 else b)
    assert u >> (7 * width) == 0
    return bytes(out)


@pytest.mark.parametrize("width", [1, 2, 3])
def test_padded_varints_accepted_by_both_engines(partitions, width):
    """A varint may use more bytes than it needs (Java reads it); both engines read every field
    padded to ``width`` bytes the same way."""

    def v(value: int) -> bytes:
        return _varint_of_width(value, width)

    body = b"\x00" + v(5) + v(0) + v(2) + b"kk" + v(3) + b"vvv" + v(1) + v(1) + b"h" + v(-1)
    record = v(len(body)) + body
    verdict = compare_engines(partitions, data_batch(record, 1, max_ts=TS + 5), full_check=True)
    assert verdict == ("ok", [(0, TS + 5, 0, b"kk", b"vvv", (("h", None),))])


def test_a_varint_continued_past_its_record_is_refused(partitions):
    """A record's last field is a varint whose byte says "continued" but the record (or the
    whole batch) ends there: both engines refuse it as a corrupt record, never reading across
    the record's end or past the data."""
    for field in range(5):  # the continuation in ts delta, offset delta, key, value, header count
        body = b"\x00" + b"\x00\x00\x01\x01\x00"[:field] + b"\x80"
        record = zigzag_varint(len(body)) + body
        for records, count in ((record, 1), (record + raw_record(offset_delta=1), 2)):
            verdict = compare_engines(partitions, data_batch(records, count), full_check=False)
            assert verdict == ("refused", "CorruptBatchError", CorruptKind.RECORD), (field, verdict)
