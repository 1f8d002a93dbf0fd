"""On-disk format: Kafka's RecordBatch v2 and segment/index files, checked independently.

Oracles: kafka-python's record classes (encode and decode), ``struct`` parsing of the spec layout,
an index recomputation from the ``.log`` bytes, and the other engine (byte-identical files).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
from helpers import (
    CODEC_IDS,
    CODECS,
    as_tuples,
    check_segment_indexes,
    expected_records,
    kafka_build_batch,
    kafka_codecs,
    kafka_decode,
    parse_batches,
    raw_batch,
    raw_record,
    read_time_index,
    segment_bases,
    segment_files,
    segment_name,
    zigzag_varint,
)

from pylog.engine import decode_records, open_partition
from pylog.errors import CorruptBatchError, CorruptKind, OffsetOutOfRangeError

TS = 1_700_000_000_000


def sample_batches(seed: int = 7):
    """Batches of records (values, keys, headers, timestamps), including multi-block payloads."""
    rng = random.Random(seed)
    out = []
    text = b"the quick brown fox jumps over the lazy dog " * 4000  # ~176 KB, compressible
    out.append(([text, rng.randbytes(70_000), None], [b"big", None, b"tomb"], None, [TS, TS + 1, TS - 5]))
    out.append(([b"x"], None, [[("h1", b"v1"), ("h2", None)]], [TS + 10]))  # does not shrink
    for i in range(5):
        n = rng.randint(1, 20)
        values = [rng.randbytes(rng.randint(0, 300)) if rng.random() > 0.1 else None for _ in range(n)]
        keys = [rng.randbytes(rng.randint(0, 20)) if rng.random() > 0.3 else None for _ in range(n)]
        headers = [[(f"h{j}", rng.randbytes(3)) for j in range(rng.randint(0, 3))] for _ in range(n)]
        stamps = [TS + 100 * i + rng.randint(-50, 50) for _ in range(n)]
        out.append((values, keys, headers, stamps))
    return out


def write_sample(log, codec: str):
    want = []
    for values, keys, headers, stamps in sample_batches():
        base = log.append(values, keys=keys, headers=headers, timestamps_ms=stamps, compression=codec)
        want += expected_records(base, values, keys, headers, stamps)
    return want


@pytest.mark.parametrize("codec", CODECS)
def test_codec_round_trip_and_cross_engine(engine, other_engine, tmp_path, codec):
    path = tmp_path / "codec-0"
    with open_partition(path, engine=engine) as log:
        want = write_sample(log, codec)
        assert as_tuples(log.records()) == want
        stored = parse_batches(Path(path, segment_name(0)).read_bytes())
        assert {b.codec for b in stored} == {CODEC_IDS[codec]}, "the requested codec is always applied"
    with open_partition(path, engine=other_engine) as other:
        assert as_tuples(other.records()) == want
        # the other engine appends to the same directory, and both read everything back
        base = other.append([b"tail"], timestamps_ms=[TS], compression=codec)
        want += expected_records(base, [b"tail"], timestamps=[TS])
    with open_partition(path, engine=engine) as log:
        assert as_tuples(log.records()) == want


@pytest.mark.parametrize("codec", CODECS)
def test_compression_type_config_default(open_log, codec):
    log = open_log(compression_type=codec)
    log.append([b"a" * 100], timestamps_ms=[TS])
    log.append([b"b" * 100], timestamps_ms=[TS], compression="none")
    batches = parse_batches(bytes(memoryview(log.read(0, 1 << 20))))
    assert [b.codec for b in batches] == [CODEC_IDS[codec], 0]


@pytest.mark.parametrize("alias", ["producer", "uncompressed"])
def test_compression_aliases_mean_none(open_log, alias):
    log = open_log(compression_type=alias)
    log.append([b"a" * 100], timestamps_ms=[TS])
    log.append([b"a" * 100], timestamps_ms=[TS], compression="uncompressed")
    assert [b.codec for b in parse_batches(bytes(memoryview(log.read(0, 1 << 20))))] == [0, 0]


@pytest.mark.parametrize("codec", kafka_codecs())
def test_kafka_python_decodes_segments(open_log, codec):
    log = open_log(segment_bytes=400_000)
    want = write_sample(log, codec)
    log.roll()
    log.append([b"after roll"], keys=[b"k"], timestamps_ms=[TS], compression=codec)
    want += expected_records(want[-1][0] + 1, [b"after roll"], [b"k"], timestamps=[TS])
    got = []
    for base in segment_bases(log.path):
        data = Path(log.path, segment_name(base)).read_bytes()
        decoded = kafka_decode(data)
        assert len(decoded) == len(parse_batches(data))
        for batch, recs in decoded:
            assert batch.compression_type == CODEC_IDS[codec]
            got += recs
    assert got == want


@pytest.mark.parametrize("codec", kafka_codecs())
def test_kafka_python_batches_append_raw(open_log, codec):
    log = open_log()
    log.append([b"first"], timestamps_ms=[TS])
    rng = random.Random(3)
    recs = [
        (TS + i, rng.randbytes(5) if i % 2 else None, rng.randbytes(i * 50), [("h", b"x")] * (i % 3))
        for i in range(30)
    ]
    recs.append((TS, b"k", b"z" * 100_000, []))  # several snappy/lz4 blocks
    raw = kafka_build_batch(recs, codec, base_offset=500)
    assert log.append_raw(raw) == 1
    assert log.append_raw(kafka_build_batch(recs[:1], codec)) == 1 + len(recs)
    got = as_tuples(log.records(1))
    want = [(1 + i, ts, 0, k, v, tuple(h)) for i, (ts, k, v, h) in enumerate(recs)]
    want.append((1 + len(recs), *want[0][1:]))
    assert got == want
    # read back through kafka-python too: base offsets rewritten, CRC still valid
    decoded = kafka_decode(memoryview(log.read(1, 1 << 30)))
    assert [b.base_offset for b, _ in decoded] == [1, 1 + len(recs)]


@pytest.mark.parametrize("codec", kafka_codecs())
def test_append_raw_log_append_time(open_log, codec):
    log = open_log(message_timestamp_type="LogAppendTime")
    raw = kafka_build_batch([(5, None, b"a" * 1000, []), (9, None, b"b", [])], codec)
    assert parse_batches(raw)[0].codec == CODEC_IDS[codec]  # kafka-python skips codecs that do not shrink
    before = int(time.time() * 1000)
    log.append_raw(raw)
    after = int(time.time() * 1000)
    data = bytes(memoryview(log.read(0, 1 << 20)))
    ((_, recs),) = kafka_decode(data)  # CRC recomputed
    (hdr,) = parse_batches(data)
    assert hdr.attributes == 0x08 | CODEC_IDS[codec]
    assert before - 1 <= hdr.max_timestamp <= after + 1
    assert [r[1:3] for r in recs] == [(hdr.max_timestamp, 1)] * 2
    assert [(r.timestamp, r.timestamp_type) for r in log.records()] == [(hdr.max_timestamp, 1)] * 2


# ---------------------------------------------------------------------------------------------
# header layout


@pytest.mark.parametrize("codec", CODECS)
def test_batch_header_layout(open_log, codec):
    log = open_log()
    log.append([b"a"], timestamps_ms=[TS])
    stamps = [TS + 5, TS + 2, TS + 9, TS + 1]
    log.append(
        [b"v1", None, b"v3", b""], keys=[None, b"k", None, b""], timestamps_ms=stamps, compression=codec
    )
    data = Path(log.path, segment_name(0)).read_bytes()
    _, hdr = parse_batches(data)
    assert hdr.base_offset == 1
    assert hdr.length == hdr.size - 12 == len(data) - hdr.position - 12
    assert hdr.partition_leader_epoch == 0
    assert hdr.magic == 2
    assert hdr.attributes == CODEC_IDS[codec]
    assert hdr.last_offset_delta == 3
    assert hdr.base_timestamp == TS + 5
    assert hdr.max_timestamp == TS + 9
    assert (hdr.producer_id, hdr.producer_epoch, hdr.base_sequence) == (-1, -1, -1)
    assert hdr.records_count == 4
    decoded = kafka_decode(data)  # validates the CRC
    assert [len(recs) for _, recs in decoded] == [1, 4]


@pytest.mark.parametrize("codec", ["snappy", "lz4"])
def test_compressed_stream_framing(open_log, codec):
    """Each engine frames its compressed records the way Kafka's Java reader expects: snappy in
    xerial framing (magic, version 1, compatible 1, then length-prefixed blocks), lz4 as a Kafka
    LZ4 frame (magic, FLG 0x60, BD 0x40 = 64 KiB blocks, header checksum 0x82, end mark)."""
    import cramjam
    import lz4.frame

    log = open_log()
    values = [bytes(range(256)) * 200, b"tail" * 3000]  # > 32 KiB: several snappy blocks
    base = log.append(values, timestamps_ms=[TS, TS + 1], compression=codec)
    batch = bytes(memoryview(log.read(base, 1)))
    assert parse_batches(batch)[0].codec == CODEC_IDS[codec]
    stream = batch[61:]
    if codec == "snappy":
        assert stream[:16] == bytes.fromhex("82 53 4E 41 50 50 59 00 00000001 00000001")
        pos, raw = 16, b""
        while pos < len(stream):
            n = int.from_bytes(stream[pos : pos + 4], "big")
            assert 0 < n <= len(stream) - pos - 4, f"block length {n} at {pos}"
            block = bytes(cramjam.snappy.decompress_raw(stream[pos + 4 : pos + 4 + n]))
            assert len(block) <= 32 * 1024
            raw += block
            pos += 4 + n
        assert pos == len(stream)
    else:
        assert stream[:7] == bytes.fromhex("04 22 4D 18 60 40 82")
        assert stream[-4:] == b"\x00\x00\x00\x00"
        raw = lz4.frame.decompress(stream)
    assert sum(len(v) for v in values) < len(raw) < sum(len(v) for v in values) + 100
    assert [r.value for r in decode_records(batch)] == values


def test_uncompressed_batch_matches_kafka_python_bytes(open_log):
    """With codec none the encoding is unique: kafka-python builds the very same bytes."""
    log = open_log()
    recs = [
        (TS + 3, b"key", b"value", [("a", b"1"), ("b", None)]),
        (TS, None, None, []),
        (TS + 300_000, b"", b"", [("", b"")]),
        (TS - 7, b"k" * 200, b"v" * 1000, []),
    ]
    base = log.append(
        [r[2] for r in recs],
        keys=[r[1] for r in recs],
        headers=[r[3] for r in recs],
        timestamps_ms=[r[0] for r in recs],
    )
    assert bytes(memoryview(log.read(base, 1))) == kafka_build_batch(recs, "none", base_offset=base)


def test_log_append_time_header(open_log):
    log = open_log(message_timestamp_type="LogAppendTime")
    before = int(time.time() * 1000)
    log.append([b"a", b"b"], timestamps_ms=[10, 20], compression="gzip")
    after = int(time.time() * 1000)
    data = Path(log.path, segment_name(0)).read_bytes()
    (hdr,) = parse_batches(data)
    assert hdr.attributes == 0x08 | 1
    assert before - 1 <= hdr.max_timestamp <= after + 1
    ((batch, recs),) = kafka_decode(data)
    assert batch.timestamp_type == 1
    assert [r[1] for r in recs] == [hdr.max_timestamp] * 2


# ---------------------------------------------------------------------------------------------
# index files


def index_workload(log, rng: random.Random, n: int):
    """Appends with non-monotonic timestamps, some rolls and some append_raw batches."""
    for i in range(n):
        k = rng.randint(1, 6)
        stamps = [TS + rng.randint(-1000, 1000) + 50 * i for _ in range(k)]
        values = [rng.randbytes(rng.randint(0, 120)) for _ in range(k)]
        if i % 7 == 3:
            log.append_raw(kafka_build_batch([(s, None, v, []) for s, v in zip(stamps, values, strict=True)]))
        else:
            log.append(values, timestamps_ms=stamps)
        if i % 17 == 16:
            log.roll()


@pytest.mark.parametrize("interval", [0, 1, 150, 4096])
def test_index_entries_follow_kafka_rules(open_log, tmp_path, interval):
    path = tmp_path / f"idx-{interval}"
    log = open_log(path, index_interval_bytes=interval, segment_bytes=3000)
    index_workload(log, random.Random(interval), 60)
    assert check_segment_indexes(path, interval) > 2
    log.close()
    assert check_segment_indexes(path, interval) > 2  # with the close-time final entry
    log = open_log(path, index_interval_bytes=interval, segment_bytes=3000)
    index_workload(log, random.Random(interval + 1), 10)  # the counter continues after reopen
    check_segment_indexes(path, interval)
    log.roll()
    check_segment_indexes(path, interval)


def test_full_index_rolls(open_log):
    # segment.index.bytes 24: offset index holds 3 entries, time index 24 // 12 - 1 = 1 (+ seal slot)
    log = open_log(index_interval_bytes=0, segment_index_bytes=24)
    for i in range(9):
        log.append([b"v%d" % i], timestamps_ms=[TS + i])
    bases = segment_bases(log.path)
    assert bases == [0, 2, 4, 6, 8]
    check_segment_indexes(log.path, 0)
    for base in bases[:-1]:  # the seal adds nothing: the one entry already holds the max
        assert read_time_index(Path(log.path, segment_name(base, ".timeindex"))) == [(TS + base + 1, 1)]


def test_indexes_not_preallocated(open_log):
    log = open_log()
    log.append([b"a"], timestamps_ms=[TS])
    for suffix in (".index", ".timeindex"):
        assert os.path.getsize(Path(log.path, segment_name(0, suffix))) == 0


# ---------------------------------------------------------------------------------------------
# byte-identical files across engines


def identical_workload(log):
    rng = random.Random(11)
    for i in range(80):
        k = rng.randint(1, 8)
        stamps = [TS + rng.randint(-500, 500) + 20 * i for _ in range(k)]
        values = [rng.randbytes(rng.randint(0, 90)) if rng.random() > 0.1 else None for _ in range(k)]
        keys = [rng.randbytes(rng.randint(0, 9)) if rng.random() > 0.5 else None for _ in range(k)]
        headers = [[("h", rng.randbytes(2))] if rng.random() > 0.7 else [] for _ in range(k)]
        if i % 9 == 4:
            log.append_raw(
                kafka_build_batch(list(zip(stamps, keys, values, headers, strict=True)), base_offset=99)
            )
        else:
            log.append(values, keys=keys, headers=headers, timestamps_ms=stamps)
        if i % 23 == 22:
            log.roll()
    return log.end_offset


def test_engines_write_identical_files(both_engines, tmp_path):
    config = {"segment.bytes": 2500, "index.interval.bytes": 120, "segment.ms": 100_000}
    trees = {}
    for name in both_engines:
        path = tmp_path / name / "same-3"
        with open_partition(path, engine=name, config=config) as log:
            end = identical_workload(log)
            mid = segment_files(path)
        trees[name] = (
            end,
            mid,
            segment_files(path),
            Path(path, "recovery-point-offset-checkpoint").read_text(),
        )
    native, reference = trees["native"], trees["reference"]
    assert native[0] == reference[0]
    assert sorted(native[1]) == sorted(reference[1])
    for name in native[1]:
        assert native[1][name] == reference[1][name], f"{name} differs between engines"
    assert native[2] == reference[2]
    assert native[3] == reference[3] == f"0\n1\nsame 3 {native[0]}\n"
    assert len(segment_bases(tmp_path / "native" / "same-3")) > 3
    check_segment_indexes(tmp_path / "native" / "same-3", 120)


# ---------------------------------------------------------------------------------------------
# decoding rules: every engine raises CorruptBatchError, with the batch's position


def _rec(**kw) -> bytes:
    return raw_record(**kw)


def _gzip_garbage() -> bytes:
    return raw_batch(b"\x1f\x8b\x08\x00garbage-not-gzip", 1, attributes=1)


BAD_BATCHES = {
    "size < 61": lambda: raw_batch(b"", 0)[:60],
    "length < 49": lambda: raw_batch(_rec(), 1, length_delta=-(4 + 1 + 4 + 40 + len(_rec()))),
    "length past end": lambda: raw_batch(_rec(), 1, length_delta=1),
    "magic 1": lambda: raw_batch(_rec(), 1, magic=1),
    "magic 3": lambda: raw_batch(_rec(), 1, magic=3),
    "crc mismatch": lambda: raw_batch(_rec(), 1, good_crc=False),
    "codec 5": lambda: raw_batch(_rec(), 1, attributes=5),
    "codec 7": lambda: raw_batch(_rec(), 1, attributes=7),
    "count < 0": lambda: raw_batch(_rec(), -1, last_offset_delta=0),
    "varint > 5 bytes": lambda: raw_batch(
        _rec(body_override=b"\x00\x00" + b"\x80\x80\x80\x80\x80\x00" + b"\x01\x01\x00"), 1
    ),
    "varlong > 10 bytes": lambda: raw_batch(
        _rec(body_override=b"\x00" + b"\x80" * 10 + b"\x00" + b"\x00\x01\x01\x00"), 1
    ),
    "record length < 0": lambda: raw_batch(_rec(length_override=-1), 1),
    "record length past data": lambda: raw_batch(_rec(length_override=200), 1),
    "consumed != length": lambda: raw_batch(_rec(length_override=len(_rec()) - 1 + 1) + b"\x00", 1),
    "key length < -1": lambda: raw_batch(
        _rec(body_override=b"\x00\x00\x00" + zigzag_varint(-2) + b"\x01\x00"), 1
    ),
    "value length < -1": lambda: raw_batch(
        _rec(body_override=b"\x00\x00\x00\x01" + zigzag_varint(-2) + b"\x00"), 1
    ),
    "header count < 0": lambda: raw_batch(_rec(body_override=b"\x00\x00\x00\x01\x01" + zigzag_varint(-1)), 1),
    "header key length < 0": lambda: raw_batch(
        _rec(body_override=b"\x00\x00\x00\x01\x01\x02" + zigzag_varint(-1) + b"\x01"), 1
    ),
    "header key not utf-8": lambda: raw_batch(_rec(headers=[(b"\xff\xfe", b"x")]), 1),
    "fewer records than count": lambda: raw_batch(_rec(), 2),
    "leftover bytes": lambda: raw_batch(_rec() + b"\x00", 1),
    "leftover record": lambda: raw_batch(_rec() + _rec(offset_delta=1), 1),
    "gzip garbage": _gzip_garbage,
    "gzip fewer records": lambda: raw_batch(__import__("gzip").compress(_rec()), 2, attributes=1),
}


def test_hand_encoder_baseline(engine):
    good = raw_batch(_rec(key=b"k", headers=[(b"h", None)]) + _rec(ts_delta=5, offset_delta=1, value=None), 2)
    assert as_tuples(decode_records(good, engine=engine)) == [
        (0, 1000, 0, b"k", b"v", (("h", None),)),
        (1, 1005, 0, None, None, ()),
    ]
    assert kafka_decode(good)[0][1] == as_tuples(decode_records(good, engine=engine))


#: the CorruptKind each decoding rule reports, the same in both engines
BAD_BATCH_KINDS = {
    "size < 61": CorruptKind.FRAMING,
    "length < 49": CorruptKind.FRAMING,
    "length past end": CorruptKind.FRAMING,
    "magic 1": CorruptKind.MAGIC,
    "magic 3": CorruptKind.MAGIC,
    "crc mismatch": CorruptKind.CRC,
    "codec 5": CorruptKind.CODEC,
    "codec 7": CorruptKind.CODEC,
    "count < 0": CorruptKind.RECORD_COUNT,
    "fewer records than count": CorruptKind.RECORD_COUNT,
    "leftover bytes": CorruptKind.RECORD_COUNT,
    "leftover record": CorruptKind.RECORD_COUNT,
    "gzip garbage": CorruptKind.COMPRESSION,
    "gzip fewer records": CorruptKind.RECORD_COUNT,
}


@pytest.mark.parametrize("name", list(BAD_BATCHES))
def test_decoding_rules(engine, name):
    bad = BAD_BATCHES[name]()
    with pytest.raises(CorruptBatchError) as info:
        decode_records(bad, engine=engine)
    assert info.value.position == 0
    assert info.value.path is None
    assert info.value.kind == BAD_BATCH_KINDS.get(name, CorruptKind.RECORD)
    prefix = raw_batch(_rec(), 1)
    with pytest.raises(CorruptBatchError) as info:
        decode_records(prefix + bad, engine=engine)
    assert info.value.position == len(prefix)
    assert info.value.kind == BAD_BATCH_KINDS.get(name, CorruptKind.RECORD)


def test_decode_empty_buffer(engine):
    assert decode_records(b"", engine=engine) == []


def _compressed_variants():
    import gzip

    import cramjam
    import lz4.frame
    import zstandard

    recs = raw_record(key=b"k") + raw_record(offset_delta=1, value=None)
    z = zstandard.ZstdCompressor()
    return {
        # streams other Kafka writers produce: every reader must accept them
        "snappy raw block": (2, bytes(cramjam.snappy.compress_raw(recs)), True),
        "lz4 sarama (checksums, 4 MiB blocks)": (
            3,
            lz4.frame.compress(recs, content_checksum=True, block_size=lz4.frame.BLOCKSIZE_MAX4MB),
            True,
        ),
        "lz4 with content size": (3, lz4.frame.compress(recs, store_size=True), True),
        "gzip two members": (1, gzip.compress(recs[:5]) + gzip.compress(recs[5:]), True),
        "zstd two frames": (4, z.compress(recs[:5]) + z.compress(recs[5:]), True),
        "zstd without content size": (
            4,
            zstandard.ZstdCompressor(write_content_size=False).compress(recs),
            True,
        ),
        # broken streams
        "gzip trailing garbage": (1, gzip.compress(recs) + b"junk", False),
        "zstd trailing garbage": (4, z.compress(recs) + b"junk", False),
        "empty gzip": (1, b"", False),
        "truncated zstd": (4, z.compress(recs)[:-3], False),
        "truncated lz4": (3, lz4.frame.compress(recs)[:-6], False),
        "snappy google framing": (2, bytes(cramjam.snappy.compress(recs)), False),
    }


@pytest.mark.parametrize("name", list(_compressed_variants()))
def test_compressed_stream_variants(both_engines, name):
    codec, payload, valid = _compressed_variants()[name]
    batch = raw_batch(payload, 2, attributes=codec)
    want = [(0, 1000, 0, b"k", b"v", ()), (1, 1000, 0, None, None, ())]
    for engine in both_engines:
        if valid:
            assert as_tuples(decode_records(batch, engine=engine)) == want, engine
        else:
            with pytest.raises(CorruptBatchError):
                decode_records(batch, engine=engine)


def test_log_append_time_indexes(open_log, tmp_path):
    path = tmp_path / "lat-0"
    log = open_log(path, message_timestamp_type="LogAppendTime", index_interval_bytes=0, segment_bytes=900)
    for i in range(40):
        log.append([b"v%d" % i * 5] * (1 + i % 3), timestamps_ms=[1] * (1 + i % 3))
    assert len(segment_bases(path)) > 2
    check_segment_indexes(path, 0)
    stamps = [r.timestamp for r in log.records()]
    assert all(r.timestamp_type == 1 for r in log.records())
    for ts in {stamps[0], stamps[len(stamps) // 2], stamps[-1]}:
        assert log.offset_for_timestamp(ts) == next(i for i, t in enumerate(stamps) if t >= ts)


def test_smallest_index_size_rolls_every_batch(open_log):
    # segment.index.bytes 12: the time index has no free slot (12 // 12 - 1 = 0), so it is always
    # full and every append after the first rolls; the seal entry uses the reserved slot
    log = open_log(segment_index_bytes=12, index_interval_bytes=0)
    for i in range(4):
        log.append([b"a", b"b"], timestamps_ms=[TS + i, TS + 10 * i])
    assert segment_bases(log.path) == [0, 2, 4, 6]
    check_segment_indexes(log.path, 0)
    for base in (0, 2, 4):
        assert read_time_index(Path(log.path, segment_name(base, ".timeindex"))) == [(TS + 10 * base // 2, 1)]
    assert [r.offset for r in log.records()] == list(range(8))


def test_engines_encode_a_huge_batch_identically(both_engines, tmp_path):
    n = 50_000
    out = {}
    for engine in both_engines:
        with open_partition(tmp_path / engine / "huge-0", engine=engine) as log:
            log.append(
                [b"%d" % i for i in range(n)],
                keys=[None if i % 2 else b"k" for i in range(n)],
                headers=[[("h", None)] if i % 3 else [] for i in range(n)],
                timestamps_ms=[TS + (i * 7919) % 100_000 for i in range(n)],
            )
            out[engine] = bytes(memoryview(log.read(0, 1 << 30)))
    assert out["native"] == out["reference"]
    ((batch, recs),) = kafka_decode(out["native"])
    assert batch.records_count == n == len(recs)
    assert recs[-1][4] == b"%d" % (n - 1)


def test_opens_a_directory_written_elsewhere(engine, tmp_path):
    """A partition directory in Kafka's layout, segments written by kafka-python, starting past 0
    (as after retention) and without index files: it opens, reads and takes appends."""
    path = tmp_path / "kafka-0"
    path.mkdir()
    first = kafka_build_batch([(TS + i, None, b"v%d" % i, []) for i in range(3)], base_offset=100)
    second = kafka_build_batch([(TS + 50, b"k", b"w" * 500, [("h", b"1")])], "gzip", base_offset=103)
    third = kafka_build_batch([(TS + 60, None, b"z", [])], base_offset=104)
    Path(path, segment_name(100)).write_bytes(first + second)
    Path(path, segment_name(104)).write_bytes(third)
    with open_partition(path, engine=engine, config={"index.interval.bytes": 10}) as log:
        assert (log.start_offset, log.end_offset) == (100, 105)
        assert [(r.offset, r.value) for r in log.records()] == [
            (100, b"v0"),
            (101, b"v1"),
            (102, b"v2"),
            (103, b"w" * 500),
            (104, b"z"),
        ]
        assert log.offset_for_timestamp(TS + 10) == 103
        with pytest.raises(OffsetOutOfRangeError):
            log.read(99, 100)
        assert log.append([b"mine"], timestamps_ms=[TS]) == 105
    check_segment_indexes(path, 10)
