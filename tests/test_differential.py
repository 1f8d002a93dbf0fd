"""Differential tests: the reference engine is the oracle of the native one.

- Stateful machines drive a native and a reference log with the same operations and assert equal
  results and equal exceptions. ``ByteIdentical`` uses codec none only and also compares every
  file; ``AllCodecs`` mixes the five codecs and compares decoded content.
- Decoder fuzz: random bytes and mutated valid batches into ``decode_records`` of both engines:
  both succeed with equal records or both raise ``CorruptBatchError`` at the same position
  (uncompressed); compressed batches may only ever raise ``CorruptBatchError``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    BOTH_ENGINES_SKIP,
    CODECS,
    as_tuples,
    check_segment_indexes,
    crc32c,
    kafka_build_batch,
    outcome,
    parse_batches,
    run_on_both,
    segment_files,
)
from hypothesis import given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pylog.engine import decode_records, open_partition
from pylog.errors import CorruptBatchError

pytestmark = pytest.mark.skipif(BOTH_ENGINES_SKIP is not None, reason=BOTH_ENGINES_SKIP or "")

ENGINES = ("native", "reference")
TS = 1_700_000_000_000

# ---------------------------------------------------------------------------------------------
# strategies

small_bytes = st.binary(max_size=60)
header = st.tuples(st.text(max_size=4), st.none() | st.binary(max_size=6))


@st.composite
def record_batches(draw, *, allow_big: bool = True):
    n = draw(st.integers(1, 6))
    value = st.none() | small_bytes
    if allow_big:
        value = value | st.binary(min_size=300, max_size=1500)
    values = draw(st.lists(value, min_size=n, max_size=n))
    keys = draw(st.none() | st.lists(st.none() | small_bytes, min_size=n, max_size=n))
    headers = draw(st.none() | st.lists(st.lists(header, max_size=2), min_size=n, max_size=n))
    t0 = draw(st.integers(0, 5000))
    stamps = [TS + t0 + d for d in draw(st.lists(st.integers(-300, 300), min_size=n, max_size=n))]
    return values, keys, headers, stamps


def columns_tuples(cols):
    n = cols.num_records
    return (
        [int(x) for x in cols.offsets],
        [int(x) for x in cols.timestamps],
        [cols.key(i) for i in range(n)],
        [cols.value(i) for i in range(n)],
        [int(x) for x in cols.key_offsets],
        [int(x) for x in cols.value_offsets],
    )


# ---------------------------------------------------------------------------------------------
# stateful machines


@pytest.fixture(autouse=True)
def _machine_base(tmp_path_factory):
    """Stateful machines cannot take fixtures: give them a directory under pytest's tmp root."""
    TwoLogs.BASE = str(tmp_path_factory.mktemp("machine"))


class TwoLogs(RuleBasedStateMachine):
    BASE: str | None = None
    CODECS: tuple[str, ...] = ("none",)
    BYTE_IDENTICAL = True

    def __init__(self):
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="run-", dir=TwoLogs.BASE))
        self.logs: dict[str, object] = {}
        self.peers: dict[str, object] = {}  # a second object on the same directory, per engine
        self.config: dict[str, object] = {}

    def path(self, name: str) -> Path:
        return self.root / name / "diff-7"

    @initialize(
        segment_bytes=st.sampled_from([400, 1500, 1 << 20]),
        interval=st.sampled_from([0, 60, 300, 4096]),
        index_bytes=st.sampled_from([12, 24, 96, 1 << 20]),
        max_message=st.sampled_from([1200, 1048588]),
        segment_ms=st.sampled_from([400, 10**9]),
    )
    def open_logs(self, segment_bytes, interval, index_bytes, max_message, segment_ms):
        if not self.BYTE_IDENTICAL:
            # compressed sizes differ between engines (compressors are not canonical), so keep every
            # batch far below the size limits: which batches fit must not depend on the compressor
            segment_bytes, max_message = max(segment_bytes * 50, 20_000), 1048588
        self.config = {
            "segment.bytes": segment_bytes,
            "index.interval.bytes": interval,
            "segment.index.bytes": index_bytes,
            "max.message.bytes": max_message,
            "segment.ms": segment_ms,
        }
        note(f"config {self.config}")
        self.reopen()

    def reopen(self):
        for name in ENGINES:
            self.logs[name] = open_partition(self.path(name), engine=name, config=self.config)
            self.peers[name] = open_partition(self.path(name), engine=name, config=self.config)

    def teardown(self):
        for log in [*self.logs.values(), *self.peers.values()]:
            log.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def both(self, fn):
        return run_on_both(self.logs, fn)

    @property
    def end(self) -> int:
        return self.logs["reference"].end_offset

    # -- writes ---------------------------------------------------------------------------------

    @rule(batch=record_batches(), codec=st.sampled_from(CODECS))
    def append(self, batch, codec):
        values, keys, headers, stamps = batch
        codec = codec if codec in self.CODECS else "none"
        results = self.both(
            lambda log: log.append(
                values, keys=keys, headers=headers, timestamps_ms=stamps, compression=codec
            )
        )
        assert results["native"] == results["reference"]

    @rule(batch=record_batches(allow_big=False), codec=st.sampled_from(CODECS), data=st.data())
    def append_raw(self, batch, codec, data):
        codec = codec if codec in self.CODECS else "none"
        values, keys, headers, stamps = batch
        n = len(values)
        keys = keys or [None] * n
        headers = headers or [[] for _ in range(n)]
        raw = bytearray(kafka_build_batch(list(zip(stamps, keys, values, headers, strict=True)), codec))
        if data.draw(st.booleans(), label="mutate"):
            pos = data.draw(st.integers(0, len(raw) - 1), label="pos")
            raw[pos] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        results = self.both(lambda log: log.append_raw(bytes(raw)))
        assert results["native"] == results["reference"]

    @rule(
        bad=st.sampled_from(
            [
                ("text", dict()),
                (b"v", dict(keys=["k"])),
                (b"v", dict(headers=[[(b"h", b"x")]])),
                (b"v", dict(timestamps_ms=[-1])),
                (b"v", dict(compression="brotli")),
            ]
        )
    )
    def append_bad(self, bad):
        value, kwargs = bad
        kwargs = {"timestamps_ms": [TS], **kwargs}
        results = self.both(lambda log: log.append([value], **kwargs))
        assert results["native"][0] == "error"

    @rule()
    def switch_objects(self):
        """From now on the other object on the directory does the work (it must re-sync first)."""
        self.logs, self.peers = self.peers, self.logs

    @rule()
    def roll(self):
        self.both(lambda log: log.roll())

    @rule()
    def sync(self):
        self.both(lambda log: log.sync())

    @rule()
    def close_and_reopen(self):
        for log in [*self.logs.values(), *self.peers.values()]:
            log.close()
        if self.BYTE_IDENTICAL:
            names = {name: sorted(os.listdir(self.path(name))) for name in ENGINES}
            assert names["native"] == names["reference"]
            for name in names["native"]:
                if not name.startswith(".pylog"):
                    a = (self.path("native") / name).read_bytes()
                    b = (self.path("reference") / name).read_bytes()
                    assert a == b, f"{name} differs after close"
        self.reopen()

    # -- reads ----------------------------------------------------------------------------------

    @rule(data=st.data(), max_bytes=st.integers(-2, 4000))
    def read(self, data, max_bytes):
        offset = data.draw(st.integers(-1, self.end + 1), label="offset")
        results = self.both(lambda log: bytes(memoryview(log.read(offset, max_bytes))))
        if results["native"][0] == "error":
            return
        if self.BYTE_IDENTICAL:
            assert results["native"] == results["reference"]
            return
        first = {}
        for name, (_, buf) in results.items():
            batches = parse_batches(buf)
            if not batches:
                first[name] = None
                continue
            b = batches[0]
            assert b.base_offset <= offset <= b.last_offset
            first[name] = (
                b.base_offset,
                b.last_offset,
                as_tuples(decode_records(buf[: b.size], engine=name)),
            )
        assert first["native"] == first["reference"]

    @rule(data=st.data())
    def records(self, data):
        end = self.end
        start = data.draw(st.none() | st.integers(-1, end + 1), label="start")
        stop = data.draw(st.none() | st.integers(-1, end + 3), label="stop")
        results = self.both(lambda log: as_tuples(log.records(start, stop)))
        assert results["native"] == results["reference"]

    @rule(data=st.data(), max_records=st.integers(-2, 30))
    def read_columns(self, data, max_records):
        offset = data.draw(st.integers(-1, self.end + 1), label="offset")
        results = self.both(lambda log: columns_tuples(log.read_columns(offset, max_records)))
        assert results["native"] == results["reference"]

    @rule(delta=st.integers(-400, 6000) | st.sampled_from([-TS - 5, -TS, 2**62]))
    def offset_for_timestamp(self, delta):
        results = self.both(lambda log: log.offset_for_timestamp(TS + delta))
        assert results["native"] == results["reference"]
        if results["native"][0] == "ok":
            brute = next(
                (r.offset for r in self.logs["reference"].records() if r.timestamp >= TS + delta),
                None,
            )
            assert results["native"][1] == brute

    @precondition(lambda self: self.logs)
    @invariant()
    def same_state(self):
        for attr in ("start_offset", "end_offset"):
            values = {name: getattr(log, attr) for name, log in self.logs.items()}
            assert values["native"] == values["reference"], (attr, values)
            peers = {name: getattr(log, attr) for name, log in self.peers.items()}
            assert peers == values, (attr, "the other object sees the same log", peers, values)
        if self.BYTE_IDENTICAL:
            native, reference = segment_files(self.path("native")), segment_files(self.path("reference"))
            assert sorted(native) == sorted(reference)
            for name in native:
                assert native[name] == reference[name], f"{name} differs"
            check_segment_indexes(self.path("native"), self.config["index.interval.bytes"])


class ByteIdentical(TwoLogs):
    CODECS = ("none",)
    BYTE_IDENTICAL = True


class AllCodecs(TwoLogs):
    CODECS = CODECS
    BYTE_IDENTICAL = False


# each example is a whole run of file operations on two logs: a quarter of the profile's examples
STATEFUL = settings(max_examples=max(8, settings.default.max_examples // 4))
TestByteIdentical = pytest.mark.slow(ByteIdentical.TestCase)
TestByteIdentical.settings = STATEFUL
TestAllCodecs = pytest.mark.slow(AllCodecs.TestCase)
TestAllCodecs.settings = STATEFUL


# ---------------------------------------------------------------------------------------------
# decoder fuzz


def decode_outcome(engine: str, buf: bytes):
    try:
        return ("ok", as_tuples(decode_records(buf, engine=engine)))
    except CorruptBatchError as exc:
        assert exc.path is None
        assert isinstance(exc.position, int) and 0 <= exc.position < max(len(buf), 1)
        return ("corrupt", exc.position)


def compare_decoders(buf: bytes):
    results = {name: decode_outcome(name, buf) for name in ENGINES}
    assert results["native"] == results["reference"], results
    return results["native"]


@given(st.binary(max_size=300))
def test_fuzz_random_bytes(buf):
    compare_decoders(buf)


@given(
    st.binary(min_size=61, max_size=200).map(
        lambda b: b[:8] + (len(b) - 12).to_bytes(4, "big") + b[12:16] + b"\x02" + b[17:]
    )
)
def test_fuzz_random_framed_bytes(buf):
    """Random bytes with a plausible length and magic: the CRC or the record layout must catch them."""
    compare_decoders(buf)


@given(st.binary(min_size=44, max_size=200))
def test_fuzz_random_body_with_valid_crc(tail):
    """Random attributes/counts/records under a correct CRC: record-level validation is fuzzed."""
    tail = bytearray(tail)
    tail[0:2] = (int.from_bytes(tail[0:2], "big") & ~0x07).to_bytes(2, "big")  # codec none, any other bit
    tail[2:6] = (tail[2] % 4).to_bytes(4, "big")
    tail[36:40] = ((tail[39] % 5) - (tail[38] & 1)).to_bytes(4, "big", signed=True)
    body = bytes(tail)
    buf = (0).to_bytes(8, "big") + (len(body) + 9).to_bytes(4, "big") + bytes(4) + b"\x02"
    buf += crc32c(body).to_bytes(4, "big") + body
    compare_decoders(buf)


def valid_batches(codecs):
    one = st.tuples(record_batches(allow_big=False), st.sampled_from(codecs)).map(
        lambda bc: kafka_build_batch(
            list(
                zip(
                    bc[0][3],
                    bc[0][1] or [None] * len(bc[0][0]),
                    bc[0][0],
                    bc[0][2] or [[] for _ in bc[0][0]],
                    strict=True,
                )
            ),
            bc[1],
        )
    )
    return st.lists(one, min_size=1, max_size=3).map(b"".join)


mutation = st.tuples(
    st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
    st.integers(0, 10_000),
    st.integers(0, 255),
)


def mutate(buf: bytes, mutations, fix_crc: bool) -> bytes:
    out = bytearray(buf)
    for kind, pos, value in mutations:
        if not out:
            break
        pos %= len(out)
        if kind == "flip":
            out[pos] ^= 1 << (value % 8)
        elif kind == "set":
            out[pos] = value
        elif kind == "insert":
            out[pos:pos] = bytes([value])
        elif kind == "delete":
            del out[pos]
        else:
            del out[pos:]
    if fix_crc:  # recompute the CRC of every framed batch so layout checks are reached
        pos = 0
        while pos + 61 <= len(out):
            length = int.from_bytes(out[pos + 8 : pos + 12], "big", signed=True)
            end = pos + 12 + length
            if length < 49 or end > len(out):
                break
            out[pos + 17 : pos + 21] = crc32c(out[pos + 21 : end]).to_bytes(4, "big")
            pos = end
    return bytes(out)


@given(valid_batches(("none",)), st.lists(mutation, max_size=4), st.booleans())
def test_fuzz_mutated_uncompressed_batches(buf, mutations, fix_crc):
    assert compare_decoders(buf)[0] == "ok"
    compare_decoders(mutate(buf, mutations, fix_crc))


@given(
    valid_batches(CODECS[1:]),
    st.lists(mutation, min_size=1, max_size=4),
    st.booleans(),
)
def test_fuzz_mutated_compressed_batches(buf, mutations, fix_crc):
    for engine in ENGINES:
        assert decode_outcome(engine, buf)[0] == "ok"
    bad = mutate(buf, mutations, fix_crc)
    for engine in ENGINES:
        decode_outcome(engine, bad)  # only CorruptBatchError may escape (anything else fails)


# ---------------------------------------------------------------------------------------------
# argument handling: the same result or the same exception class, call by call

ARGUMENT_PROBES = {
    "read np.int64": lambda log: bytes(memoryview(log.read(np.int64(0), 100))),
    "read bool": lambda log: log.read(True, 100),
    "read float": lambda log: log.read(1.0, 100),
    "read str": lambda log: log.read("1", 100),
    "read huge offset": lambda log: log.read(2**70, 100),
    "read huge max": lambda log: bytes(memoryview(log.read(0, 2**70))),
    "read negative max": lambda log: bytes(memoryview(log.read(0, -1))),
    "records numpy": lambda log: as_tuples(log.records(np.int64(1), np.int32(2))),
    "records float": lambda log: log.records(1.0),
    "records bool": lambda log: log.records(False),
    "columns numpy": lambda log: columns_tuples(log.read_columns(np.int64(0), np.int64(5))),
    "columns bool": lambda log: log.read_columns(True, 5),
    "columns huge": lambda log: columns_tuples(log.read_columns(0, 2**70)),
    "columns negative": lambda log: columns_tuples(log.read_columns(0, -3)),
    "timestamp numpy": lambda log: log.offset_for_timestamp(np.int64(6)),
    "timestamp float": lambda log: log.offset_for_timestamp(5.5),
    "timestamp 2**64": lambda log: log.offset_for_timestamp(2**64),
    "timestamp -2**64": lambda log: log.offset_for_timestamp(-(2**64)),
    "wait float": lambda log: log.wait_for(0, 1.5),
    "wait negative": lambda log: log.wait_for(5, -1),
    "wait huge": lambda log: log.wait_for(2**70, 1),
    "ts uint64": lambda log: log.append([b"x"], timestamps_ms=np.array([2**63], dtype=np.uint64)),
    "ts float array": lambda log: log.append([b"x"], timestamps_ms=np.array([1.5])),
    "ts int32 array": lambda log: log.append([b"x"], timestamps_ms=np.array([7], dtype=np.int32)),
    "ts 2-d": lambda log: log.append([b"x"], timestamps_ms=np.array([[7]])),
    "ts 2**64": lambda log: log.append([b"x"], timestamps_ms=[2**64]),
    "ts generator": lambda log: log.append([b"x"], timestamps_ms=(t for t in [1])),
    "values str": lambda log: log.append("abc"),
    "values bytes": lambda log: log.append(b"abc"),
    "values None": lambda log: log.append(None),
    "keys bytes": lambda log: log.append([b"x"], keys=b"k", timestamps_ms=[1]),
    "headers None entry": lambda log: log.append([b"x"], headers=[None], timestamps_ms=[1]),
    "headers triple": lambda log: log.append([b"x"], headers=[[("a", b"1", b"2")]], timestamps_ms=[1]),
    "headers list pair": lambda log: log.append([b"x"], headers=[[["a", b"1"]]], timestamps_ms=[1]),
    "headers surrogate key": lambda log: log.append([b"x"], headers=[[("\ud800", b"1")]], timestamps_ms=[1]),
    "compression int": lambda log: log.append([b"x"], timestamps_ms=[1], compression=1),
    "compression producer": lambda log: log.append([b"x"], timestamps_ms=[1], compression="producer"),
    "compression GZIP": lambda log: log.append([b"x"], timestamps_ms=[1], compression="GZIP"),
    "append_raw str": lambda log: log.append_raw("abc"),
    "append_raw None": lambda log: log.append_raw(None),
    "append_raw empty": lambda log: log.append_raw(b""),
}


@pytest.mark.parametrize("name", list(ARGUMENT_PROBES))
def test_argument_handling_matches(tmp_path, name):
    probe = ARGUMENT_PROBES[name]
    results = {}
    for engine in ENGINES:
        with open_partition(tmp_path / engine / "args-0", engine=engine) as log:
            log.append([b"a", b"b"], timestamps_ms=[5, 6])
            results[engine] = outcome(lambda log=log: probe(log))
            results[engine] += (log.end_offset, as_tuples(log.records()))
    assert results["native"][0] == results["reference"][0], results
    if results["native"][0] == "error":
        assert results["native"][1:] == results["reference"][1:], results
    else:
        assert results["native"] == results["reference"], results
