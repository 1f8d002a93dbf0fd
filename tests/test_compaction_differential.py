"""Differential tests of compaction and retention: the two engines against each other and against
a Python model of Kafka's rules (kafka-log.md sections 5 and 6; docs/partition-log.md
"Compaction" and "Retention").

- After compaction both engines yield the same records and the same ``CleanResult``; with codec
  none their segment files and checkpoints are byte-identical.
- A stateful machine mixes keyed appends (tombstones, every codec), rolls, ``compact(now)`` with
  small and large key maps, ``apply_retention(now)``, ``delete_before``, a clock that moves and
  reopens, on a native and a reference log, and checks after every step that both engines and
  the model agree: every record the model keeps (the latest of each key below the cleaned
  boundary, at its original offset; everything above it; tombstones until a pass after their
  horizon), the log start, the deleted segments (predicted from the directory by Kafka's
  retention rules), and that a reader from the start builds the same table before and after a
  compaction and before and after a reopen.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from compaction_child import TS, fill_keyed, table
from helpers import (
    BOTH_ENGINES_SKIP,
    CODECS,
    as_tuples,
    check_segment_indexes,
    read_time_index,
    run_on_both,
    segment_bases,
    segment_files,
    segment_name,
)
from hypothesis import note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pylog.engine import open_partition
from pylog.errors import InvalidRecordError

pytestmark = pytest.mark.skipif(BOTH_ENGINES_SKIP is not None, reason=BOTH_ENGINES_SKIP or "")

ENGINES = ("native", "reference")
NOW = TS + 10_000_000
CHECKPOINTS = ("cleaner-offset-checkpoint", "log-start-offset-checkpoint", "recovery-point-offset-checkpoint")


def directory_state(path: Path) -> dict[str, bytes]:
    files = segment_files(path)
    for name in CHECKPOINTS[:2]:
        if (path / name).exists():
            files[name] = (path / name).read_bytes()
    return files


# ----------------------------------------------------------------------------------------------
# one scenario, both engines


@pytest.mark.parametrize("map_bytes", [1024, 4096, 1 << 24])
@pytest.mark.parametrize("segment_bytes", [700, 3000, 1 << 20])
def test_both_engines_compact_to_byte_identical_files(tmp_path, map_bytes, segment_bytes):
    config = {
        "cleanup.policy": "compact",
        "segment.bytes": segment_bytes,
        "index.interval.bytes": 150,
        "delete.retention.ms": 500,
    }
    template = tmp_path / "template" / "same-0"
    with open_partition(template, engine="reference", config=config) as log:
        for _ in range(3):
            fill_keyed(log, 25, keys=70, tombstone_every=6, start=log.end_offset)
            log.roll()
    paths = {}
    for name in ENGINES:
        paths[name] = tmp_path / name / "same-0"
        shutil.copytree(template, paths[name])
    results: dict[str, list] = {name: [] for name in ENGINES}
    for name in ENGINES:
        with open_partition(paths[name], engine=name, config=config) as log:
            results[name].append(log.compact(NOW, map_bytes=map_bytes))
            fill_keyed(log, 5, keys=70, tombstone_every=4, start=log.end_offset)
            log.roll()
            results[name].append(log.compact(NOW + 499, map_bytes=map_bytes))
            log.roll()
            fill_keyed(log, 1, keys=70, start=log.end_offset)
            log.roll()
            results[name].append(log.compact(NOW + 500, map_bytes=map_bytes))  # horizons passed
            results[name].append(as_tuples(log.records()))
            results[name].append(log.cleanable(NOW + 500))
    assert results["native"] == results["reference"]
    assert results["native"][2].tombstones_removed > 0
    native, reference = directory_state(paths["native"]), directory_state(paths["reference"])
    assert sorted(native) == sorted(reference)
    for name in native:
        assert native[name] == reference[name], f"{name} differs"
    check_segment_indexes(paths["native"], 150)


@pytest.mark.parametrize("codecs", [CODECS, ("gzip",), ("zstd", "lz4")])
def test_both_engines_compact_compressed_logs_to_the_same_records(tmp_path, codecs):
    config = {"cleanup.policy": "compact", "segment.bytes": 1 << 20, "delete.retention.ms": 500}
    template = tmp_path / "template" / "codecs-0"
    with open_partition(template, engine="reference", config=config) as log:
        for _ in range(4):
            fill_keyed(log, 20, keys=30, tombstone_every=5, codecs=codecs, start=log.end_offset)
            log.roll()
    out = {}
    for name in ENGINES:
        path = tmp_path / name / "codecs-0"
        shutil.copytree(template, path)
        with open_partition(path, engine=name, config=config) as log:
            first = log.compact(NOW, map_bytes=2048)
            fill_keyed(log, 3, keys=30, start=log.end_offset)
            log.roll()
            second = log.compact(NOW + 500)
            out[name] = (
                first._replace(bytes_written=0),
                second._replace(bytes_read=0, bytes_written=0),
                as_tuples(log.records()),
                segment_bases(path),
            )
    assert out["native"] == out["reference"]


# ----------------------------------------------------------------------------------------------
# the model


@dataclass
class MBatch:
    base: int
    records: list[tuple]  # as_tuples rows: (offset, ts, ts_type, key, value, headers)
    horizon: int | None = None


@dataclass
class Model:
    """Kafka's rules over record tuples; segment boundaries are taken from the directory."""

    delete_retention_ms: int
    batches: list[MBatch] = field(default_factory=list)
    start: int = 0
    end: int = 0
    cleaned_to: int | None = None  # cleaner-offset-checkpoint

    def append(self, rows: list[tuple]) -> None:
        self.batches.append(MBatch(self.end, rows))
        self.end += len(rows)

    def visible(self) -> list[tuple]:
        return [r for b in self.batches for r in b.records if r[0] >= self.start]

    def first_dirty(self) -> int:
        c = self.cleaned_to
        return c if c is not None and self.start <= c <= self.end else self.start

    def compact(self, now: int, active_base: int) -> bool:
        """One or more passes cleaning up to the active segment (min.compaction.lag.ms 0);
        their result does not depend on the map size while delete.retention.ms > 0. False when
        nothing was cleanable."""
        dirty, uncleanable = self.first_dirty(), max(active_base, self.first_dirty())
        if dirty >= uncleanable:
            return False
        latest: dict[bytes, int] = {}
        for b in self.batches:
            for r in b.records:
                if dirty <= r[0] < uncleanable:
                    latest[r[3]] = r[0]
        for b in self.batches:
            if b.base >= uncleanable:
                continue
            had = b.horizon
            kept = [
                r
                for r in b.records
                if r[0] >= latest.get(r[3], -1) and not (r[4] is None and had is not None and now >= had)
            ]
            if had is None and any(r[4] is None for r in kept):
                b.horizon = now + self.delete_retention_ms
            b.records = kept
        self.batches = [b for b in self.batches if b.records or b.base >= uncleanable]
        self.cleaned_to = uncleanable
        return True

    def drop_segments_below(self, first_base: int) -> None:
        self.batches = [b for b in self.batches if b.base >= first_base]


def largest_timestamp(path: Path, base: int) -> int:
    entries = read_time_index(path / segment_name(base, ".timeindex"))
    if entries:
        return entries[-1][0]
    return (path / segment_name(base)).stat().st_mtime_ns // 1_000_000


def predict_retention(
    path: Path, start: int, policy: str, retention_bytes: int, retention_ms: int, now: int | None
):
    """(deleted segments, deleted bytes, new start) by kafka-log.md section 6 from the files."""
    bases = segment_bases(path)
    sizes = [(path / segment_name(b)).stat().st_size for b in bases]
    i = 0
    while i < len(bases) - 1 and bases[i + 1] <= start:
        i += 1
    if "delete" in policy and now is not None:
        if retention_bytes >= 0:
            diff = sum(sizes[i:]) - retention_bytes
            while i < len(bases) - 1 and diff - sizes[i] >= 0:
                diff -= sizes[i]
                i += 1
        if retention_ms >= 0:
            while i < len(bases) - 1 and now - largest_timestamp(path, bases[i]) > retention_ms:
                i += 1
    return i, sum(sizes[:i]), max(start, bases[i])


@pytest.fixture(autouse=True)
def _machine_base(tmp_path_factory):
    CompactingLogs.BASE = str(tmp_path_factory.mktemp("compaction-machine"))


class CompactingLogs(RuleBasedStateMachine):
    BASE: str | None = None
    CODECS: tuple[str, ...] = ("none",)
    BYTE_IDENTICAL = True

    def __init__(self):
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="run-", dir=CompactingLogs.BASE))
        self.logs: dict[str, object] = {}
        self.config: dict[str, object] = {}
        self.model: Model | None = None
        self.now = NOW
        self.keys: list[bytes] = []

    def path(self, name: str) -> Path:
        return self.root / name / "diff-7"

    @initialize(
        policy=st.sampled_from(["compact", "compact,delete"]),
        segment_bytes=st.sampled_from([500, 1500, 1 << 20]),
        interval=st.sampled_from([0, 100, 4096]),
        drm=st.sampled_from([1, 1000, 10**6]),
        retention_bytes=st.sampled_from([-1, 1500, 4000]),
        retention_ms=st.sampled_from([-1, 3000, 10**6]),
        keys=st.sampled_from([2, 8, 60]),
    )
    def open_logs(self, policy, segment_bytes, interval, drm, retention_bytes, retention_ms, keys):
        if not self.BYTE_IDENTICAL:
            # compressed sizes differ between engines: no size-driven roll, group or retention
            segment_bytes, retention_bytes = 1 << 20, -1
        self.config = {
            "cleanup.policy": policy,
            "segment.bytes": segment_bytes,
            "index.interval.bytes": interval,
            "delete.retention.ms": drm,
            "retention.bytes": retention_bytes,
            "retention.ms": retention_ms,
        }
        self.keys = [b"k%d" % i for i in range(keys)]
        note(f"config {self.config}")
        self.model = Model(drm)
        self.reopen()

    def reopen(self):
        for name in ENGINES:
            self.logs[name] = open_partition(self.path(name), engine=name, config=self.config)

    def teardown(self):
        for log in self.logs.values():
            log.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def both(self, fn):
        return run_on_both(self.logs, fn)

    def reference_dir(self) -> Path:
        return self.path("reference")

    def visible_table(self) -> dict:
        return table(_Rec(t) for t in self.model.visible())

    # -- rules ----------------------------------------------------------------------------------

    @rule(
        data=st.data(),
        n=st.integers(1, 6),
        codec=st.sampled_from(CODECS),
        t0=st.integers(0, 5000),
    )
    def append(self, data, n, codec, t0):
        codec = codec if codec in self.CODECS else "none"
        keys = data.draw(st.lists(st.sampled_from(self.keys), min_size=n, max_size=n), label="keys")
        values = data.draw(
            st.lists(st.none() | st.binary(max_size=40), min_size=n, max_size=n), label="values"
        )
        headers = data.draw(
            st.lists(
                st.lists(st.tuples(st.text(max_size=3), st.none() | st.binary(max_size=4)), max_size=1),
                min_size=n,
                max_size=n,
            ),
            label="headers",
        )
        stamps = [self.now - 2500 + t0 + j for j in range(n)]  # near the clock: retention.ms bites later
        results = self.both(
            lambda log: log.append(
                values, keys=keys, headers=headers, timestamps_ms=stamps, compression=codec
            )
        )
        assert results["native"] == results["reference"] == ("ok", self.model.end)
        self.model.append(
            [(self.model.end + j, stamps[j], 0, keys[j], values[j], tuple(headers[j])) for j in range(n)]
        )

    @rule(count=st.integers(1, 30), seed=st.integers(0, 2**32), t0=st.integers(0, 5000))
    def append_many(self, count, seed, t0):
        """Volume: ``count`` batches of pseudo-random keys (a fifth tombstones), so maps fill and
        segments roll."""
        rng = random.Random(seed)
        for i in range(count):
            n = rng.randint(1, 6)
            keys = [rng.choice(self.keys) for _ in range(n)]
            values = [None if rng.random() < 0.2 else rng.randbytes(rng.randint(0, 30)) for _ in range(n)]
            stamps = [self.now - 2500 + t0 + i + j for j in range(n)]
            codec = rng.choice(self.CODECS)
            results = self.both(
                lambda log, v=values, k=keys, t=stamps, c=codec: log.append(
                    v, keys=k, timestamps_ms=t, compression=c
                )
            )
            assert results["native"] == results["reference"] == ("ok", self.model.end)
            self.model.append([(self.model.end + j, stamps[j], 0, keys[j], values[j], ()) for j in range(n)])

    @rule()
    def append_without_a_key(self):
        results = self.both(
            lambda log: log.append([b"x", b"y"], keys=[self.keys[0], None], timestamps_ms=[TS, TS])
        )
        assert results["native"] == ("error", InvalidRecordError)

    @rule()
    def roll(self):
        self.both(lambda log: log.roll())

    @rule(delta=st.sampled_from([0, 1, 400, "horizon - 1", "horizon", 2500, 10**6]))
    def advance_clock(self, delta):
        """``horizon``: exactly delete.retention.ms, so a pass lands on a delete horizon."""
        drm = self.config["delete.retention.ms"]
        self.now += {"horizon - 1": drm - 1, "horizon": drm}.get(delta, delta)

    @rule(map_bytes=st.sampled_from([1024, 2048, 1 << 20]), roll_first=st.booleans())
    def compact(self, map_bytes, roll_first):
        if roll_first:  # what was appended becomes cleanable
            self.both(lambda log: log.roll())
        active = segment_bases(self.reference_dir())[-1]
        table_before, start_before = self.visible_table(), self.model.start
        ran = self.model.compact(self.now, active)
        results = self.both(lambda log: log.compact(self.now, map_bytes=map_bytes))
        assert results["native"][0] == "ok", results
        native, reference = results["native"][1], results["reference"][1]
        if self.BYTE_IDENTICAL:
            assert native == reference
        else:
            assert native._replace(bytes_read=0, bytes_written=0) == reference._replace(
                bytes_read=0, bytes_written=0
            )
        assert (reference.skipped is None) == ran, (reference, ran)
        if ran:
            assert reference.passes >= 1 and reference.clean_offset == active
        new_start = self.logs["reference"].start_offset
        assert new_start >= start_before
        if "delete" in self.config["cleanup.policy"]:
            # compact ran retention too: the start moved to a segment boundary at most, and it
            # left nothing deletable
            self.model.start = new_start
            self.model.drop_segments_below(segment_bases(self.reference_dir())[0])
            again = predict_retention(self.reference_dir(), new_start, **self._retention_args())
            assert again[0] == 0, f"retention inside compact left deletable segments: {again}"
        else:
            assert new_start == start_before
        if self.model.start == start_before:
            assert self.visible_table() == table_before, "compaction changed the table"

    def _retention_args(self) -> dict:
        return {
            "policy": self.config["cleanup.policy"],
            "retention_bytes": self.config["retention.bytes"],
            "retention_ms": self.config["retention.ms"],
            "now": self.now,
        }

    def same_retention(self, results) -> None:
        """Equal results; with codecs the deleted bytes differ (compressors are not canonical)."""
        native, reference = results["native"][1], results["reference"][1]
        if self.BYTE_IDENTICAL:
            assert native == reference
        else:
            assert native._replace(deleted_bytes=0) == reference._replace(deleted_bytes=0)

    @rule()
    def apply_retention(self):
        want = predict_retention(self.reference_dir(), self.model.start, **self._retention_args())
        results = self.both(lambda log: log.apply_retention(self.now))
        self.same_retention(results)
        assert tuple(results["reference"][1]) == (*want, None)
        self.model.start = want[2]
        self.model.drop_segments_below(segment_bases(self.reference_dir())[0])

    @rule(data=st.data())
    def delete_before(self, data):
        offset = data.draw(st.integers(self.model.start - 1, self.model.end + 1), label="offset")
        want = predict_retention(self.reference_dir(), offset, **{**self._retention_args(), "now": None})
        results = self.both(lambda log: log.delete_before(offset))
        if not self.model.start <= offset <= self.model.end:
            assert results["native"][0] == "error"
            return
        self.same_retention(results)
        if offset == self.model.start:
            want = (0, 0, offset)
        assert tuple(results["reference"][1]) == (want[0], want[1], offset, None)
        self.model.start = offset
        self.model.drop_segments_below(segment_bases(self.reference_dir())[0])

    @rule()
    def close_and_reopen(self):
        table_before = table(self.logs["reference"].records())
        for log in self.logs.values():
            log.close()
        self.reopen()
        assert table(self.logs["native"].records()) == table_before

    @rule(data=st.data())
    def records_from(self, data):
        start = data.draw(st.integers(self.model.start, self.model.end), label="start")
        results = self.both(lambda log: as_tuples(log.records(start)))
        assert results["native"] == results["reference"]
        assert results["native"][1] == [r for r in self.model.visible() if r[0] >= start]

    # -- invariants -----------------------------------------------------------------------------

    @precondition(lambda self: self.logs)
    @invariant()
    def agree(self):
        for attr in ("start_offset", "end_offset"):
            values = {name: getattr(log, attr) for name, log in self.logs.items()}
            assert values["native"] == values["reference"], (attr, values)
        assert self.logs["reference"].start_offset == self.model.start
        assert self.logs["reference"].end_offset == self.model.end
        records = {name: as_tuples(log.records()) for name, log in self.logs.items()}
        assert records["native"] == records["reference"]
        assert records["reference"] == self.model.visible()
        views = {name: log.cleanable(self.now) for name, log in self.logs.items()}
        if self.BYTE_IDENTICAL:
            assert views["native"] == views["reference"]
            native, reference = directory_state(self.path("native")), directory_state(self.path("reference"))
            assert sorted(native) == sorted(reference)
            for name in native:
                assert native[name] == reference[name], f"{name} differs"
            check_segment_indexes(self.path("native"), self.config["index.interval.bytes"])
        else:
            strip = {"clean_bytes": 0, "cleanable_bytes": 0, "dirty_ratio": 0.0, "due": False}
            assert views["native"]._replace(**strip) == views["reference"]._replace(**strip)
        assert not [
            n for n in os.listdir(self.path("native")) if n.endswith((".cleaned", ".swap", ".deleted"))
        ]


class _Rec:
    __slots__ = ("key", "offset", "value")

    def __init__(self, row: tuple):
        self.offset, self.key, self.value = row[0], row[3], row[4]


class ByteIdentical(CompactingLogs):
    CODECS = ("none",)
    BYTE_IDENTICAL = True


class AllCodecs(CompactingLogs):
    CODECS = CODECS
    BYTE_IDENTICAL = False


# each example is a whole run of compactions on two logs; the compressed one costs about twice
# as much (the reference engine's codecs), and each test must stay within pytest's 300 s timeout
TestCompactionByteIdentical = pytest.mark.slow(ByteIdentical.TestCase)
TestCompactionByteIdentical.settings = settings(max_examples=max(8, settings.default.max_examples // 6))
TestCompactionAllCodecs = pytest.mark.slow(AllCodecs.TestCase)
TestCompactionAllCodecs.settings = settings(max_examples=max(8, settings.default.max_examples // 12))
