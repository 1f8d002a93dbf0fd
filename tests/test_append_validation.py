"""append_raw validates every record before a byte is written (docs/partition-log.md, "append_raw"),
and the error kinds both engines report.

The rule under test: a batch ``append_raw`` accepts is one that ``records()`` and ``read_columns()``
decode in both engines; a batch it refuses raises ``CorruptBatchError`` or ``InvalidRecordError``
with a ``kind``, and leaves ``end_offset`` and every file of the partition byte for byte as it was.
Oracles: the other engine (same verdict, same class, same kind) and the files on disk.
"""

from __future__ import annotations

import os
import pickle
import random
from collections import Counter
from pathlib import Path

import pytest
from helpers import IN_CI, as_tuples, crc32c, kafka_build_batch, skip_if_engine_missing
from hypothesis import given, settings
from hypothesis import strategies as st

from pylog.engine import open_partition
from pylog.errors import CorruptBatchError, CorruptKind, InvalidRecordError, RecordTooLargeError
from pylog.reference import record

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
    assert (type(back), back.args, back.kind) == (InvalidRecordError, ("lying maxTimestamp",), CorruptKind.TIMESTAMP)
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
        out.append(record.encode_batch(0, values, keys, headers, stamps, codec, None))
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
        if rng.random() < 0.8 and len(out) > 61:
            pos = rng.randrange(61, len(out))
        else:
            pos = rng.randrange(len(out))
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
    good = record.encode_batch(0, values, [None] * n, [[] for _ in range(n)], [TS + i for i in range(n)], codec, None)
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
