"""The reference engine's record-batch codec and compression (pylog/reference/record.py,
pylog/reference/compression.py) against Kafka's own vectors, hand-built golden bytes, and
kafka-python's record classes as an independent implementation of the format."""

from __future__ import annotations

import array
import contextlib
import gzip
import random
import struct
import types
import warnings

import cramjam
import lz4.frame
import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():
    # kafka-python 3.0 calls the deprecated importlib.resources.read_text at import time
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka.codec
    from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
    from kafka.record.util import encode_varint as kp_encode_varint

from pylog.engine import Record
from pylog.errors import (
    CorruptBatchError,
    CorruptKind,
    InvalidConfigError,
    InvalidRecordError,
    RecordTooLargeError,
)
from pylog.reference import batch as record_batch
from pylog.reference import compression, record, validator

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
I64_MAX = 2**63 - 1

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------
# helpers


def encode(values, keys=None, headers=None, timestamps=None, codec="none", lat=None, base=0):
    v, k, h, t = record.prepare_records(values, keys, headers, timestamps, 1_700_000_000_000)
    return record_batch.encode_batch(base, v, k, h, t, codec, lat)


def craft(
    records_area: bytes,
    count: int,
    *,
    attributes: int = 0,
    base_offset: int = 0,
    base_ts: int = 0,
    max_ts: int = 0,
    magic: int = 2,
    last_offset_delta: int | None = None,
    length_delta: int = 0,
) -> bytes:
    """A batch around ``records_area`` with a correct CRC (unless bytes are changed later)."""
    lod = count - 1 if last_offset_delta is None else last_offset_delta
    covered = struct.pack(">hiqqqhii", attributes, lod, base_ts, max_ts, -1, -1, -1, count)
    covered += records_area
    crc = record_batch.crc32c(covered)
    length = 49 + len(records_area) + length_delta
    return struct.pack(">qiibI", base_offset, length, 0, magic, crc) + covered


def fix_crc(batch: bytes | bytearray) -> bytes:
    b = bytearray(batch)
    struct.pack_into(">I", b, 17, record_batch.crc32c(bytes(b[21:])))
    return bytes(b)


def zz(v: int) -> bytes:
    """Zigzag varint via kafka-python (an independent encoder)."""
    out = bytearray()
    kp_encode_varint(v, out.append)
    return bytes(out)


def raw_record(body: bytes) -> bytes:
    return zz(len(body)) + body


def simple_body(ts_delta=0, offset_delta=0, key=b"k", value=b"v", headers=b"\x00") -> bytes:
    out = b"\x00" + zz(ts_delta) + zz(offset_delta)
    out += b"\x01" if key is None else zz(len(key)) + key
    out += b"\x01" if value is None else zz(len(value)) + value
    return out + headers


def expect_corrupt(buf, position=0, match=None):
    with pytest.raises(CorruptBatchError, match=match) as info:
        record_batch.decode_records(buf)
    assert info.value.position == position
    assert info.value.path is None
    return info.value


@contextlib.contextmanager
def kafka_python_snappy():
    """kafka-python's snappy needs python-snappy (not installed): give it cramjam's raw snappy,
    so its own xerial framing code is what we test against."""
    shim = types.SimpleNamespace(
        compress=lambda b: bytes(cramjam.snappy.compress_raw(bytes(b))),
        decompress=lambda b: bytes(cramjam.snappy.decompress_raw(bytes(b))),
    )
    old = kafka.codec.snappy
    kafka.codec.snappy = shim
    try:
        yield
    finally:
        kafka.codec.snappy = old


def kafka_python_decode(batch: bytes):
    kb = DefaultRecordBatch(bytearray(batch))
    assert kb.validate_crc()
    with kafka_python_snappy():
        return kb, [(r.offset, r.timestamp, r.timestamp_type, r.key, r.value, list(r.headers)) for r in kb]


def kafka_python_build(recs, codec_id, ts_list, lat_offset=0):
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec_id,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 30,
    )
    for i, ((key, value, headers), ts) in enumerate(zip(recs, ts_list, strict=True)):
        assert builder.append(i, timestamp=ts, key=key, value=value, headers=headers) is not None
    with kafka_python_snappy():
        return bytes(builder.build())


# ---------------------------------------------------------------------------------------------
# Kafka's primitive vectors (ByteUtilsTest, Crc32CTest)

VARINT_VECTORS = [
    (0, "00"),
    (-1, "01"),
    (1, "02"),
    (63, "7E"),
    (-64, "7F"),
    (64, "80 01"),
    (-65, "81 01"),
    (8191, "FE 7F"),
    (-8192, "FF 7F"),
    (8192, "80 80 01"),
    (-8193, "81 80 01"),
    (1048575, "FE FF 7F"),
    (-1048576, "FF FF 7F"),
    (1048576, "80 80 80 01"),
    (-1048577, "81 80 80 01"),
    (134217727, "FE FF FF 7F"),
    (-134217728, "FF FF FF 7F"),
    (134217728, "80 80 80 80 01"),
    (-134217729, "81 80 80 80 01"),
    (2147483647, "FE FF FF FF 0F"),
    (-2147483648, "FF FF FF FF 0F"),
]
VARLONG_ONLY_VECTORS = [
    (17179869183, "FE FF FF FF 7F"),
    (-17179869184, "FF FF FF FF 7F"),
    (17179869184, "80 80 80 80 80 01"),
    (-17179869185, "81 80 80 80 80 01"),
    (2199023255551, "FE FF FF FF FF 7F"),
    (-2199023255552, "FF FF FF FF FF 7F"),
    (2199023255552, "80 80 80 80 80 80 01"),
    (-2199023255553, "81 80 80 80 80 80 01"),
    (281474976710655, "FE FF FF FF FF FF 7F"),
    (-281474976710656, "FF FF FF FF FF FF 7F"),
    (281474976710656, "80 80 80 80 80 80 80 01"),
    (-281474976710657, "81 80 80 80 80 80 80 01"),
    (36028797018963967, "FE FF FF FF FF FF FF 7F"),
    (-36028797018963968, "FF FF FF FF FF FF FF 7F"),
    (36028797018963968, "80 80 80 80 80 80 80 80 01"),
    (-36028797018963969, "81 80 80 80 80 80 80 80 01"),
    (4611686018427387903, "FE FF FF FF FF FF FF FF 7F"),
    (-4611686018427387904, "FF FF FF FF FF FF FF FF 7F"),
    (4611686018427387904, "80 80 80 80 80 80 80 80 80 01"),
    (-4611686018427387905, "81 80 80 80 80 80 80 80 80 01"),
    (9223372036854775807, "FE FF FF FF FF FF FF FF FF 01"),
    (-9223372036854775808, "FF FF FF FF FF FF FF FF FF 01"),
]


@pytest.mark.parametrize(("value", "hexbytes"), VARINT_VECTORS)
def test_varint_vectors(value, hexbytes):
    expected = bytes.fromhex(hexbytes)
    assert record.encode_varint(value) == expected
    assert record.decode_varint(expected) == (value, len(expected))
    assert record.decode_varlong(expected) == (value, len(expected))
    # the same bytes in the middle of a buffer
    assert record.decode_varint(b"\xaa" + expected + b"\xbb", 1) == (value, 1 + len(expected))


@pytest.mark.parametrize(("value", "hexbytes"), VARINT_VECTORS + VARLONG_ONLY_VECTORS)
def test_varlong_vectors(value, hexbytes):
    expected = bytes.fromhex(hexbytes)
    assert record.encode_varlong(value) == expected
    assert record.decode_varlong(expected) == (value, len(expected))


def test_varint_too_long_is_corrupt():
    # ByteUtilsTest.testInvalidVarint / testInvalidVarlong
    with pytest.raises(CorruptBatchError, match="longer than 5"):
        record.decode_varint(bytes.fromhex("FF FF FF FF FF 01"))
    with pytest.raises(CorruptBatchError, match="longer than 10"):
        record.decode_varlong(bytes.fromhex("FF FF FF FF FF FF FF FF FF FF 01"))
    with pytest.raises(CorruptBatchError):
        record.decode_varint(bytes.fromhex("80 80"))  # truncated
    with pytest.raises(CorruptBatchError):
        record.decode_varint(b"")


def test_varint_truncates_like_java():
    # a 5th byte with bits above 32: Java's int shift keeps the low 32 bits only
    assert record.decode_varint(bytes.fromhex("FE FF FF FF 7F")) == (2147483647, 5)
    assert record.decode_varlong(bytes.fromhex("FE FF FF FF FF FF FF FF FF 7F")) == (I64_MAX, 10)


@given(st.integers(-(2**63), 2**63 - 1))
@FAST
def test_varlong_roundtrip_matches_kafka_python(v):
    assert record.encode_varlong(v) == zz(v)
    assert record.decode_varlong(zz(v) + b"\x00") == (v, len(zz(v)))


@given(st.integers(-(2**31), 2**31 - 1))
@FAST
def test_varint_roundtrip(v):
    encoded = record.encode_varint(v)
    assert len(encoded) <= 5
    assert record.decode_varint(encoded) == (v, len(encoded))


def test_crc32c_vectors():
    assert record_batch.crc32c(b"Some String") == 608512271  # Crc32CTest
    assert record_batch.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert record_batch.crc32c(memoryview(b"xx123456789")[2:]) == 0xE3069283
    assert record_batch.crc32c(bytearray(b"")) == 0


# ---------------------------------------------------------------------------------------------
# Golden bytes (codec none must be byte-identical across engines)

GOLDEN_RECORDS = (
    # record 0: ts 1000, key "k", value "v", one header ("h", "x")
    "18"
    "00"
    "00"
    "00"
    "02 6B"
    "02 76"
    "02"
    "02 68"
    "02 78"
    # record 1: ts 999 (delta -1), offsetDelta 1, null key, null value, no headers
    "0C"
    "00"
    "01"
    "02"
    "01"
    "01"
    "00"
)


def test_golden_batch_codec_none():
    records_area = bytes.fromhex(GOLDEN_RECORDS)
    covered = bytes.fromhex(
        "0000"  # attributes
        "00000001"  # lastOffsetDelta
        "00000000000003E8"  # baseTimestamp 1000
        "00000000000003E8"  # maxTimestamp 1000
        "FFFFFFFFFFFFFFFF"  # producerId -1
        "FFFF"  # producerEpoch -1
        "FFFFFFFF"  # baseSequence -1
        "00000002"  # count
    )
    crc = record_batch.crc32c(covered + records_area)
    expected = (
        bytes.fromhex("0000000000000005")  # baseOffset 5
        + (49 + len(records_area)).to_bytes(4, "big")
        + bytes.fromhex("00000000 02")  # partitionLeaderEpoch 0, magic 2
        + crc.to_bytes(4, "big")
        + covered
        + records_area
    )
    got = encode([b"v", None], keys=[b"k", None], headers=[[("h", b"x")], []], timestamps=[1000, 999], base=5)
    assert got == expected
    assert got.hex() == (
        "0000000000000005000000450000000002" + f"{crc:08x}" + covered.hex() + records_area.hex()
    )
    recs = record_batch.decode_records(got)
    assert recs == [
        Record(5, 1000, 0, b"k", b"v", [("h", b"x")]),
        Record(6, 999, 0, None, None, []),
    ]


def test_encode_header_fields_and_log_append_time():
    batch = encode([b"a", b"b", b"c"], timestamps=[50, 70, 60], base=1000)
    h = record_batch.parse_header(batch)
    assert h == record_batch.BatchHeader(1000, len(batch) - 12, 0, 2, h.crc, 0, 2, 50, 70, -1, -1, -1, 3)
    assert h.last_offset == 1002 and h.next_offset == 1003 and h.size_bytes == len(batch)
    record_batch.verify_crc(batch, 0, h)

    lat = encode([b"a", b"b"], timestamps=[50, 70], lat=12345, codec="gzip")
    h = record_batch.parse_header(lat)
    assert h.attributes == 0x08 | 1 and h.timestamp_type == 1 and h.codec_id == 1
    assert (h.base_timestamp, h.max_timestamp) == (50, 12345)
    recs = record_batch.decode_records(lat)
    assert [(r.timestamp, r.timestamp_type) for r in recs] == [(12345, 1), (12345, 1)]


def test_encode_default_timestamp_is_now_for_every_record():
    v, k, h, t = record.prepare_records([b"a", b"b"], None, None, None, 777)
    assert t == [777, 777] and k == [None, None] and h == [[], []]
    assert v == [b"a", b"b"]


@pytest.mark.parametrize("codec", CODECS)
def test_codec_attribute_ids(codec):
    batch = encode([b"x" * 1000] * 3, codec=codec)
    assert record_batch.parse_header(batch).codec_id == CODEC_IDS[codec]
    assert [r.value for r in record_batch.decode_records(batch)] == [b"x" * 1000] * 3


def test_encode_unknown_codec():
    with pytest.raises(InvalidConfigError):
        encode([b"a"], codec="brotli")
    # producer / uncompressed mean none
    assert record_batch.parse_header(encode([b"a"], codec="producer")).codec_id == 0
    assert record_batch.parse_header(encode([b"a"], codec="uncompressed")).codec_id == 0


# ---------------------------------------------------------------------------------------------
# kafka-python as the independent oracle

record_strategy = st.tuples(
    st.one_of(st.none(), st.binary(max_size=40)),  # key
    st.one_of(st.none(), st.binary(max_size=200)),  # value
    st.lists(
        st.tuples(st.text(max_size=10), st.one_of(st.none(), st.binary(max_size=20))),
        max_size=4,
    ),
)
records_strategy = st.lists(record_strategy, min_size=1, max_size=25)
timestamp_strategy = st.integers(0, I64_MAX)


@st.composite
def batches(draw, codecs=CODECS):
    recs = draw(records_strategy)
    ts = draw(
        st.one_of(
            st.lists(timestamp_strategy, min_size=len(recs), max_size=len(recs)),
            st.lists(
                st.integers(1_600_000_000_000, 1_700_000_000_000),
                min_size=len(recs),
                max_size=len(recs),
            ),
        )
    )
    codec = draw(st.sampled_from(codecs))
    lat = draw(st.one_of(st.none(), timestamp_strategy))
    base = draw(st.integers(0, 2**62))
    return recs, ts, codec, lat, base


@given(batches())
@FAST
def test_roundtrip_and_kafka_python_decodes_ours(params):
    recs, ts, codec, lat, base = params
    values = [r[1] for r in recs]
    keys = [r[0] for r in recs]
    headers = [r[2] for r in recs]
    batch = encode(values, keys=keys, headers=headers, timestamps=ts, codec=codec, lat=lat, base=base)
    expected = [
        Record(
            base + i,
            ts[i] if lat is None else lat,
            0 if lat is None else 1,
            keys[i],
            values[i],
            [tuple(x) for x in headers[i]],
        )
        for i in range(len(recs))
    ]
    assert record_batch.decode_records(batch) == expected
    assert record_batch.decode_records(memoryview(batch)) == expected
    assert record_batch.decode_records(bytearray(batch)) == expected
    header = record_batch.frame(batch)
    assert header is not None and header.size_bytes == len(batch)
    assert header.max_timestamp == (max(ts) if lat is None else lat)
    assert header.base_timestamp == ts[0]
    assert validator.validate_for_append(batch) == header

    kb, theirs = kafka_python_decode(batch)
    assert kb.compression_type == CODEC_IDS[codec]
    assert theirs == [tuple(r) for r in expected]


@given(batches(codecs=CODECS))
@FAST
def test_we_decode_kafka_python_batches(params):
    recs, ts, codec, _lat, _base = params
    batch = kafka_python_build(recs, CODEC_IDS[codec], ts)
    expected = [
        Record(i, ts[i], 0, recs[i][0], recs[i][1], [tuple(x) for x in recs[i][2]]) for i in range(len(recs))
    ]
    assert record_batch.decode_records(batch) == expected


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_compressed_batch_really_compressed(codec):
    # compressible data so kafka-python keeps the codec (it falls back to none otherwise)
    recs = [(b"key%d" % i, b"value " * 50, [("trace", b"abc")]) for i in range(100)]
    ts = list(range(1000, 1100))
    batch = kafka_python_build(recs, CODEC_IDS[codec], ts)
    assert record_batch.parse_header(batch).codec_id == CODEC_IDS[codec]
    got = record_batch.decode_records(batch)
    assert [(r.key, r.value, r.headers, r.timestamp) for r in got] == [
        (k, v, h, t) for (k, v, h), t in zip(recs, ts, strict=True)
    ]
    ours = encode(
        [r[1] for r in recs],
        keys=[r[0] for r in recs],
        headers=[r[2] for r in recs],
        timestamps=ts,
        codec=codec,
    )
    assert kafka_python_decode(ours)[1] == [tuple(r) for r in got]


# ---------------------------------------------------------------------------------------------
# prepare_records: append's argument validation


def test_prepare_bytes_like_conversion():
    vals = [
        b"a",
        bytearray(b"b"),
        memoryview(b"xcx")[1:2],
        array.array("B", [100]),
        np.frombuffer(b"e", dtype=np.uint8),
        None,
    ]
    v, k, _, _ = record.prepare_records(vals, vals, None, [1] * 6, 0)
    assert v == [b"a", b"b", b"c", b"d", b"e", None]
    assert k == v and all(type(x) is bytes for x in v[:-1])
    v, _, h, _ = record.prepare_records(
        (b"x",), None, [[("k1", bytearray(b"v")), ["k2", None], ("é", memoryview(b"z"))]], None, 0
    )
    assert h == [[("k1", b"v"), ("k2", None), ("é", b"z")]]
    assert all(type(hv) is bytes for _, hv in h[0] if hv is not None)


@pytest.mark.parametrize(
    ("values", "keys", "headers"),
    [
        (["text"], None, None),
        ([1], None, None),
        ([b"a", object()], None, None),
        ([b"a"], ["k"], None),
        ([b"a"], [3.5], None),
        ([b"a"], None, [[(b"key", b"v")]]),  # header key must be str
        ([b"a"], None, [[(None, b"v")]]),
        ([b"a"], None, [[("k", "text")]]),  # header value must be bytes-like
        ([b"a"], None, [[("k", 7)]]),
        ([b"a"], None, [[("k", b"v", b"extra")]]),
        ([b"a"], None, [None]),
        ([b"a"], None, [5]),
        (None, None, None),
        (b"abc", None, None),
    ],
)
def test_prepare_type_errors(values, keys, headers):
    with pytest.raises(TypeError):
        record.prepare_records(values, keys, headers, None, 0)


@pytest.mark.parametrize(
    ("values", "keys", "headers", "timestamps"),
    [
        ([], None, None, None),
        ((), None, None, None),
        ([b"a"], [b"k", b"k"], None, None),
        ([b"a", b"b"], [b"k"], None, None),
        ([b"a"], None, [[], []], None),
        ([b"a"], None, None, [1, 2]),
        ([b"a", b"b"], None, None, [1]),
        ([b"a"], None, None, [-1]),
        ([b"a"], None, None, [2**63]),
        ([b"a"], None, None, [True]),
        ([b"a"], None, None, [np.bool_(True)]),
        ([b"a"], None, None, [1.0]),
        ([b"a"], None, None, ["5"]),
        ([b"a"], None, None, [None]),
        ([b"a"], None, None, np.array([1.5])),
        ([b"a"], None, None, np.array([True])),
        ([b"a"], None, None, np.array([-3], dtype=np.int64)),
        ([b"a"], None, None, np.array([2**63], dtype=np.uint64)),
    ],
)
def test_prepare_invalid_records(values, keys, headers, timestamps):
    with pytest.raises(InvalidRecordError):
        record.prepare_records(values, keys, headers, timestamps, 0)


def test_prepare_timestamps_accept_ints_and_numpy():
    for ts in (
        [0, I64_MAX],
        (0, I64_MAX),
        np.array([0, I64_MAX], dtype=np.int64),
        np.array([0, I64_MAX], dtype=np.uint64),
        [np.int64(0), np.int64(I64_MAX)],
        [np.uint8(0), I64_MAX],
    ):
        _, _, _, t = record.prepare_records([b"a", b"b"], None, None, ts, 0)
        assert t == [0, I64_MAX]
        assert all(type(x) is int for x in t)


def test_prepare_unencodable_header_key():
    with pytest.raises(InvalidRecordError):
        record.prepare_records([b"a"], None, [[("\ud800", b"v")]], None, 0)


# ---------------------------------------------------------------------------------------------
# framing and append_raw validation


def test_frame():
    batch = encode([b"hello"])
    h = record_batch.frame(batch)
    assert h == record_batch.parse_header(batch)
    assert record_batch.frame(batch[:11]) is None  # < 12 bytes
    assert record_batch.frame(batch[:12]) is None  # length known, batch incomplete
    assert record_batch.frame(batch[:-1]) is None
    assert record_batch.frame(batch, 0, len(batch) - 1) is None  # ``end`` honoured
    two = batch + batch
    assert record_batch.frame(two, len(batch)) == h
    assert record_batch.frame(b"\xee" * 3 + batch, 3) == h
    # length < 49 is corruption, even when the claimed batch would also be incomplete
    zeros = bytes(100)
    with pytest.raises(CorruptBatchError) as info:
        record_batch.frame(b"\xee" * 7 + zeros, 7)
    assert info.value.position == 7
    with pytest.raises(CorruptBatchError):
        record_batch.frame(zeros[:12])
    bad_magic = bytearray(batch)
    bad_magic[16] = 1
    with pytest.raises(CorruptBatchError, match="magic"):
        record_batch.frame(bad_magic)
    # the CRC is not checked by framing
    bad_crc = bytearray(batch)
    bad_crc[-1] ^= 1
    assert record_batch.frame(bad_crc) is not None


def test_validate_for_append():
    good = encode([b"a", b"b"], codec="lz4")
    assert validator.validate_for_append(good).records_count == 2
    assert validator.validate_for_append(memoryview(good)).records_count == 2

    def bad(b, match):
        with pytest.raises(CorruptBatchError, match=match) as info:
            validator.validate_for_append(b)
        assert info.value.position == 0

    bad(good[:60], "< 61")
    bad(good + b"\x00", "length")
    bad(good + good, "length")
    m = bytearray(good)
    m[16] = 1
    bad(m, "magic")
    m = bytearray(good)
    m[-1] ^= 0xFF
    bad(m, "CRC")
    bad(fix_crc(good[:21] + b"\x00\x05" + good[23:]), "codec")
    with pytest.raises(InvalidRecordError, match="control") as info:  # 2 records, not one marker
        validator.validate_for_append(fix_crc(good[:21] + b"\x00\x23" + good[23:]))
    assert info.value.kind is CorruptKind.CONTROL
    bad(craft(b"", 0), "count")
    bad(craft(raw_record(simple_body()), 1, last_offset_delta=3), "lastOffsetDelta")


def test_set_base_offset_epoch_keep_crc():
    b = bytearray(encode([b"a", b"b"], base=0))
    record_batch.set_base_offset(b, 2**40)
    record_batch.set_partition_leader_epoch(b, 77)
    h = validator.validate_for_append(b)
    assert (h.base_offset, h.partition_leader_epoch) == (2**40, 77)
    assert [r.offset for r in record_batch.decode_records(b)] == [2**40, 2**40 + 1]


@pytest.mark.parametrize("codec", CODECS)
def test_set_log_append_time_recomputes_crc(codec):
    b = bytearray(encode([b"a", b"b"], timestamps=[5, 9], codec=codec))
    old_crc = record_batch.parse_header(b).crc
    record_batch.set_log_append_time(b, 4242)
    h = validator.validate_for_append(b)  # CRC valid
    assert h.crc != old_crc
    assert h.timestamp_type == 1 and h.max_timestamp == 4242 and h.codec_id == CODEC_IDS[codec]
    assert [(r.timestamp, r.timestamp_type) for r in record_batch.decode_records(b)] == [(4242, 1)] * 2
    _, theirs = kafka_python_decode(bytes(b))
    assert [(t[1], t[2]) for t in theirs] == [(4242, 1)] * 2


# ---------------------------------------------------------------------------------------------
# every decoding rule (docs/partition-log.md "Decoding rules")


def test_rule_size_and_length():
    batch = encode([b"a"])
    expect_corrupt(batch[:60])
    expect_corrupt(b"\x00" * 61)  # length 0 < 49
    expect_corrupt(batch[:-1])  # past the buffer end
    expect_corrupt(batch + batch[:30], position=len(batch))
    expect_corrupt(batch + batch[:-1], position=len(batch))
    shorter = bytearray(batch)
    struct.pack_into(">i", shorter, 8, 48)
    expect_corrupt(shorter)
    assert record_batch.decode_records(b"") == []


def test_rule_magic_crc_codec_count():
    batch = encode([b"a"])
    m = bytearray(batch)
    m[16] = 1
    expect_corrupt(m, match="magic")
    m = bytearray(batch)
    m[-1] ^= 0x40
    expect_corrupt(m, match="CRC")
    for codec_id in (5, 6, 7):
        expect_corrupt(fix_crc(batch[:22] + bytes([codec_id]) + batch[23:]), match="codec")
    expect_corrupt(craft(b"", -1), match="count")
    assert record_batch.decode_records(craft(b"", 0)) == []  # an empty batch (count 0) is legal


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_rule_decompression_failure(codec):
    good = encode([b"v" * 300] * 10, codec=codec)
    payload = good[61:]
    for bad_payload in (b"", payload[: len(payload) // 2], b"\x00" * len(payload)):
        expect_corrupt(craft(bad_payload, 10, attributes=CODEC_IDS[codec]))


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_rule_decompressed_size_limit(codec, monkeypatch):
    batch = encode([b"v" * 1000] * 10, codec=codec)
    area = len(record_batch.decode_records(batch))  # decodes with the real limit
    assert area == 10
    monkeypatch.setattr(record_batch, "MAX_DECOMPRESSED_BYTES", 5000)
    expect_corrupt(batch, match="exceed")


def test_max_decompressed_bytes_is_256_mib():
    assert record_batch.MAX_DECOMPRESSED_BYTES == 256 * 1024 * 1024


def body_with(*parts: bytes) -> bytes:
    return b"".join(parts)


RULE_CASES = {
    "varint > 5 bytes": raw_record(b"\0\0" + bytes.fromhex("FF FF FF FF FF 01") + b"\1\1\0"),
    "varlong > 10 bytes": raw_record(b"\0" + bytes.fromhex("FF" * 10 + "01") + b"\0\1\1\0"),
    "record length < 0": zz(-2) + simple_body(),
    "record length past data": zz(len(simple_body()) + 5) + simple_body(),
    "consumed < length": zz(len(simple_body()) + 1) + simple_body() + b"\x00",
    "consumed > length": zz(len(simple_body()) - 1) + simple_body(),
    "key length < -1": raw_record(body_with(b"\x00\x00\x00", zz(-2), b"\x01\x00")),
    "value length < -1": raw_record(body_with(b"\x00\x00\x00\x01", zz(-5), b"\x00")),
    "key past record": raw_record(body_with(b"\x00\x00\x00", zz(50), b"ab")),
    "header count < 0": raw_record(simple_body(headers=zz(-1))),
    "header key length < 0": raw_record(simple_body(headers=zz(1) + zz(-1) + b"\x01")),
    "header key not UTF-8": raw_record(simple_body(headers=zz(1) + zz(2) + b"\xc3\x28" + b"\x01")),
    "header key surrogate": raw_record(simple_body(headers=zz(1) + zz(3) + b"\xed\xa0\x80\x01")),
    "header value length < -1": raw_record(simple_body(headers=zz(1) + zz(1) + b"h" + zz(-3))),
    "header count past record": raw_record(simple_body(headers=zz(2**30))),
    "truncated attributes": zz(0),
}


RULE_REASONS = {
    "varint > 5 bytes": "varint longer than 5",
    "varlong > 10 bytes": "varlong longer than 10",
    "record length < 0": "record length -2 < 0",
    "record length past data": "runs past the data",
    "consumed < length": "consumed 8 bytes, length says 9",
    "consumed > length": "past the end of its record",
    "key length < -1": "key length -2",
    "value length < -1": "value length -5",
    "key past record": "key runs past",
    "header count < 0": "header count -1",
    "header key length < 0": "header key length -1",
    "header key not UTF-8": "UTF-8",
    "header key surrogate": "UTF-8",
    "header value length < -1": "header value length -3",
    "header count past record": "past the end of its record",
    "truncated attributes": "attributes",
}


@pytest.mark.parametrize("case", sorted(RULE_CASES))
def test_record_rules(case):
    area = RULE_CASES[case]
    expect_corrupt(craft(area, 1), match=RULE_REASONS[case])
    # the same record after a valid batch: the position is that of the bad batch
    first = encode([b"ok"])
    expect_corrupt(first + craft(area, 1), position=len(first))


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
@pytest.mark.parametrize("case", ["header key not UTF-8", "record length past data"])
def test_record_rules_inside_compressed_stream(codec, case):
    area = compression.compress(codec, RULE_CASES[case])
    expect_corrupt(craft(area, 1, attributes=CODEC_IDS[codec]))


def test_rule_record_count():
    two = raw_record(simple_body()) + raw_record(simple_body(offset_delta=1))
    assert len(record_batch.decode_records(craft(two, 2))) == 2
    expect_corrupt(craft(two, 3), match="records found")  # fewer records than count
    expect_corrupt(craft(two, 1), match="left over")  # leftover bytes (uncompressed)
    expect_corrupt(craft(two, 2**31 - 1), match="records found")  # huge count, no allocation
    # compressed: bytes after ``count`` records are ignored, like Kafka
    recs = record_batch.decode_records(craft(compression.compress("gzip", two), 1, attributes=1))
    assert len(recs) == 1


def test_decode_wraps_offsets_and_timestamps_like_java():
    area = raw_record(simple_body(ts_delta=10, offset_delta=5))
    recs = record_batch.decode_records(craft(area, 1, base_offset=I64_MAX, base_ts=I64_MAX))
    assert recs[0].offset == -(2**63) + 4
    assert recs[0].timestamp == -(2**63) + 9


def test_decode_ignores_offset_delta_order_and_record_attributes():
    area = raw_record(b"\x7f" + simple_body(offset_delta=7)[1:])
    assert record_batch.decode_records(craft(area, 1, base_offset=10))[0].offset == 17


def test_decode_batch_positions():
    a = encode([b"a"], base=0)
    b = encode([b"b", b"c"], base=1, codec="zstd")
    buf = b"\x00" * 5 + a + b
    h = record_batch.frame(buf, 5 + len(a))
    recs = record_batch.decode_batch(buf, 5 + len(a), h)
    assert [(r.offset, r.value) for r in recs] == [(1, b"b"), (2, b"c")]
    corrupted = bytearray(buf)
    corrupted[-1] ^= 1
    with pytest.raises(CorruptBatchError) as info:
        record_batch.decode_batch(corrupted, 5 + len(a), h)
    assert info.value.position == 5 + len(a)
    with pytest.raises(CorruptBatchError):
        record_batch.verify_crc(corrupted, 5 + len(a), h)
    record_batch.verify_crc(buf, 5 + len(a), h)


# ---------------------------------------------------------------------------------------------
# fuzz: random bytes and mutated valid batches raise only CorruptBatchError


def decode_or_corrupt(buf):
    try:
        out = record_batch.decode_records(buf)
    except CorruptBatchError as e:
        assert e.position is not None and 0 <= e.position <= len(buf)
        return None
    assert all(type(r) is Record for r in out)
    return out


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_fuzz_random_bytes(data):
    decode_or_corrupt(data)
    decode_or_corrupt(craft(data, 3))  # random records area behind a valid header and CRC
    for cid in (1, 2, 3, 4):
        decode_or_corrupt(craft(data, 1, attributes=cid))


@given(batches(), st.randoms(use_true_random=False), st.booleans())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_mutated_batches(params, rnd, keep_crc_valid):
    recs, ts, codec, lat, base = params
    batch = bytearray(
        encode(
            [r[1] for r in recs],
            keys=[r[0] for r in recs],
            headers=[r[2] for r in recs],
            timestamps=ts,
            codec=codec,
            lat=lat,
            base=base,
        )
    )
    for _ in range(rnd.randint(1, 4)):
        kind = rnd.randrange(4)
        if kind == 0:  # flip a byte
            i = rnd.randrange(len(batch))
            batch[i] = rnd.randrange(256)
        elif kind == 1:  # truncate, keep the length field consistent
            cut = rnd.randrange(61, len(batch) + 1)
            del batch[cut:]
            struct.pack_into(">i", batch, 8, len(batch) - 12)
        elif kind == 2:  # insert bytes
            i = rnd.randrange(61, len(batch) + 1)
            batch[i:i] = rnd.randbytes(rnd.randint(1, 8))
            struct.pack_into(">i", batch, 8, len(batch) - 12)
        else:  # change the count
            struct.pack_into(">i", batch, 57, rnd.randint(-3, len(recs) + 3))
    if keep_crc_valid and len(batch) >= 21:
        batch = bytearray(fix_crc(batch))
    decode_or_corrupt(bytes(batch))


def test_fuzz_mutations_deterministic():
    """Many cheap mutations of the records area with the CRC fixed, every codec."""
    rnd = random.Random(1234)
    seeds = [
        encode(
            [b"value-%d" % i for i in range(20)],
            keys=[b"k"] * 20,
            headers=[[("h", b"x"), ("n", None)]] * 20,
            codec=codec,
        )
        for codec in CODECS
    ]
    decoded_ok = corrupt = 0
    for _ in range(4000):
        b = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 3)):
            i = rnd.randrange(61, len(b))
            b[i] = rnd.randrange(256)
        out = decode_or_corrupt(fix_crc(b))
        if out is None:
            corrupt += 1
        else:
            decoded_ok += 1
    assert corrupt > 1000  # the mutations reach the record and codec checks
    assert decoded_ok > 0  # and some (e.g. inside a value) still decode


# ---------------------------------------------------------------------------------------------
# compression formats


def test_snappy_xerial_layout():
    data = bytes(range(256)) * 400  # 102400 bytes: 4 blocks of <= 32 KiB
    out = compression.compress("snappy", data)
    assert out[:16] == bytes.fromhex("82 53 4E 41 50 50 59 00 00000001 00000001")
    p, blocks = 16, []
    while p < len(out):
        (n,) = struct.unpack_from(">i", out, p)
        blocks.append(bytes(cramjam.snappy.decompress_raw(out[p + 4 : p + 4 + n])))
        p += 4 + n
    assert p == len(out)
    assert [len(b) for b in blocks] == [32768, 32768, 32768, 4096]
    assert b"".join(blocks) == data
    with kafka_python_snappy():
        assert kafka.codec.snappy_decode(out) == data
        theirs = kafka.codec.snappy_encode(data)
    assert compression.decompress(2, theirs, 1 << 20) == data


def test_snappy_accepts_raw_and_concatenated_xerial():
    data = b"abc" * 1000
    raw = bytes(cramjam.snappy.compress_raw(data))
    assert compression.decompress(2, raw, 1 << 20) == data
    framed = compression.compress("snappy", data)
    assert compression.decompress(2, framed + framed, 1 << 20) == data + data
    with pytest.raises(CorruptBatchError):
        compression.decompress(2, framed + b"\x00\x00", 1 << 20)
    with pytest.raises(CorruptBatchError):
        compression.decompress(2, framed[:20], 1 << 20)


def test_lz4_kafka_frame():
    data = bytes(range(256)) * 1000
    out = compression.compress("lz4", data)
    assert out[:7] == bytes.fromhex("04 22 4D 18 60 40 82")
    assert out[-4:] == b"\x00\x00\x00\x00"
    assert lz4.frame.decompress(out) == data
    assert compression.decompress(3, out, len(data)) == data
    # frames Kafka's reader accepts: content size (kafka-python), sarama's 0x64/0x70 with a
    # content checksum, block checksums
    sarama_writer = lz4.frame.LZ4FrameCompressor(
        block_size=lz4.frame.BLOCKSIZE_MAX4MB, block_linked=False, content_checksum=True
    )
    sarama = sarama_writer.begin() + sarama_writer.compress(data) + sarama_writer.flush()
    assert sarama[4:6] == bytes.fromhex("64 70")
    kafka_python = lz4.frame.compress(data, block_linked=False)
    assert kafka_python[4] == 0x68  # content size present
    for frame in (
        kafka_python,
        sarama,
        lz4.frame.compress(data, block_checksum=True, block_linked=False),
    ):
        assert compression.decompress(3, frame, len(data)) == data
    # ...and what it rejects: dependent blocks, another version, reserved bits, block size code
    linked = lz4.frame.compress(data, block_linked=True)
    with pytest.raises(CorruptBatchError, match="dependent"):
        compression.decompress(3, linked, len(data))
    for i, value in ((4, 0xA0), (4, 0x61), (5, 0x30), (5, 0x41)):
        bad = bytearray(out)
        bad[i] = value
        with pytest.raises(CorruptBatchError):
            compression.decompress(3, bytes(bad), len(data))


def test_gzip_multi_member_and_trailing_garbage():
    assert compression.decompress(1, gzip.compress(b"ab") + gzip.compress(b"cd"), 10) == b"abcd"
    with pytest.raises(CorruptBatchError):
        compression.decompress(1, gzip.compress(b"ab") + b"junk", 10)
    with pytest.raises(CorruptBatchError, match="exceed"):
        compression.decompress(1, gzip.compress(b"ab") + gzip.compress(b"cd"), 3)
    assert compression.compress("gzip", b"x")[:2] == b"\x1f\x8b"


def test_zstd_frames_without_content_size_and_limit():
    data = bytes(range(256)) * 2000
    no_size = zstandard.ZstdCompressor(write_content_size=False).compress(data)
    assert zstandard.frame_content_size(no_size) == -1
    assert compression.decompress(4, no_size, len(data)) == data
    with pytest.raises(CorruptBatchError, match="exceed"):
        compression.decompress(4, no_size, len(data) - 1)
    streamed = zstandard.ZstdCompressor(write_checksum=True).compressobj()
    frame = streamed.compress(data) + streamed.flush()
    assert compression.decompress(4, frame + frame, 2 * len(data)) == data + data
    skippable = b"\x50\x2a\x4d\x18" + (3).to_bytes(4, "little") + b"abc"
    assert compression.decompress(4, skippable + frame, len(data)) == data
    assert compression.compress("zstd", b"x")[:4] == bytes.fromhex("28 B5 2F FD")
    assert compression.zstd_decompressed_bound(no_size) >= len(data)
    for bad in (no_size[:-3], no_size + b"\x00", b"\x28\xb5\x2f\xfd", skippable):
        if bad is skippable:
            assert compression.decompress(4, bad, 10) == b""
            continue
        with pytest.raises(CorruptBatchError):
            compression.decompress(4, bad, 1 << 20)


@pytest.mark.parametrize("codec", ["gzip", "lz4", "zstd", "snappy"])
def test_decompression_bomb_is_bounded(codec):
    zeros = b"\x00" * (8 << 20)
    packed = compression.compress(codec, zeros)
    assert compression.decompress(CODEC_IDS[codec], packed, len(zeros)) == zeros
    with pytest.raises(CorruptBatchError, match="exceed"):
        compression.decompress(CODEC_IDS[codec], packed, 1 << 20)


@pytest.mark.parametrize("codec_id", [1, 2, 3, 4])
def test_decompress_garbage(codec_id):
    rnd = random.Random(codec_id)
    for _ in range(300):
        blob = rnd.randbytes(rnd.randint(0, 64))
        try:
            out = compression.decompress(codec_id, blob, 1 << 16)
        except CorruptBatchError as e:
            assert e.position is None
        else:
            assert len(out) <= 1 << 16


def test_snappy_rejects_impossible_expansion_claim():
    # preamble claims 100 MB from a few bytes: corrupt, without allocating the claim
    raw = bytes([0x80, 0xC2, 0xD7, 0x2F]) + b"\x00" * 4  # unsigned varint 100_000_000
    assert cramjam.snappy.decompress_raw_len(raw) == 100_000_000
    with pytest.raises(CorruptBatchError, match="claims"):
        compression.decompress(2, raw, 1 << 30)


# ---------------------------------------------------------------------------------------------
# decisions the native engine must match


def test_prepare_shape_errors_come_before_item_errors():
    # a length mismatch wins over a bad item, whichever argument holds it
    with pytest.raises(InvalidRecordError):
        record.prepare_records(["text"], [b"k", b"k"], None, None, 0)
    with pytest.raises(InvalidRecordError):
        record.prepare_records([b"a"], [1], None, [1, 2], 0)
    # items: values before keys before headers before timestamps
    with pytest.raises(TypeError, match="value"):
        record.prepare_records([1], [2], None, [-1], 0)
    with pytest.raises(TypeError, match="key"):
        record.prepare_records([b"a"], [2], [[("k", 1)]], [-1], 0)
    with pytest.raises(TypeError, match="header"):
        record.prepare_records([b"a"], [b"k"], [[("k", 1)]], [-1], 0)
    # a scalar or a string is not a sequence of timestamps: TypeError
    for bad in (5, "12", b"12"):
        with pytest.raises(TypeError):
            record.prepare_records([b"a"], None, None, bad, 0)


def test_encode_refuses_what_a_reader_would_reject(monkeypatch):
    monkeypatch.setattr(record_batch, "MAX_DECOMPRESSED_BYTES", 1000)
    with pytest.raises(RecordTooLargeError):
        encode([b"x" * 2000], codec="zstd")
    assert len(encode([b"x" * 2000], codec="none")) > 2000  # no codec: no decompression limit


def test_buffers_of_every_shape_decode():
    batch = encode([b"a", b"b"], codec="snappy")
    expected = record_batch.decode_records(batch)
    padded = np.frombuffer(b"".join(bytes([c, 0]) for c in batch), dtype=np.uint8)
    with pytest.raises(BufferError):  # strided: not bytes-like, refused as by the native engine
        record_batch.decode_records(memoryview(padded)[::2])
    assert record_batch.decode_records(np.frombuffer(batch, dtype=np.uint8)) == expected
    as_u32 = np.frombuffer(batch + bytes(4 - len(batch) % 4), dtype=np.uint32)  # 1..4 zeros
    with pytest.raises(CorruptBatchError) as info:  # the zeros after the batch: a torn header
        record_batch.decode_records(as_u32)
    assert info.value.position == len(batch)
    assert record_batch.frame(batch, 0, len(batch) + 100) is not None  # ``end`` past the buffer
