"""The ``scaling`` group of ``pylog bench``: does pylog stay fast while its log grows?

Two questions, asked at three log sizes spanning 100x (``SIZES``; ``--quick``: ``QUICK_SIZES``,
smaller), on the native and the reference engine:

- append throughput: appending ``window`` more records to a log already holding ``size``
  records should cost the same at every size (an append touches the active segment's tail and
  its indexes, never the whole log: Kafka's UnifiedLog.append in
  storage/src/main/java/org/apache/kafka/storage/internals/log/UnifiedLog.java);
- seek time: ``read(offset, 1)`` and ``offset_for_timestamp(ts)`` at random targets should grow
  at most logarithmically (a floor lookup of the segment by base offset, then a binary search of
  its sparse offset or time index and a scan of at most ``index.interval.bytes``:
  storage/src/main/java/org/apache/kafka/storage/internals/log/OffsetIndex.java, TimeIndex.java).

Two workloads, ``scaling-append`` and ``scaling-seek``; ``setup`` builds one base log per size
(native engine, ten-record batches of 100-byte values, timestamps one ms apart), and every timed
run visits every size, in an order rotated from run to run. Why one run across all sizes: the
question is how the figures of different sizes compare, and on a shared machine the load drifts
over seconds; measuring the sizes back to back inside each run (and taking medians over the
interleaved runs, as everywhere) lets the drift hit every size alike. The runner takes one
figure per metric from a ``LatencySample``, so the runs return one (its "percentiles" are the
per-size figures here), and each metric is a row:

- ``scaling-append``, metrics ``<size>`` (``10k``...): copy the base log (untimed) and time
  appending ``window`` records in the same batches, so each window starts at exactly ``size``
  records. Checked: the end offset moved by ``window``, the last record has its timestamp.
  Unit: k rec/s.
- ``scaling-seek``, metrics ``offset-<size>`` and ``timestamp-<size>``: ``seeks`` random
  ``read(offset, 1)`` and ``offset_for_timestamp`` calls on the base log, mean microseconds per
  call. Checked: sampled reads return the batch holding their offset, sampled timestamps map
  to their offset.

Every size uses the same ``segment.bytes`` (about an eighth of the largest log), so the
smallest log is one segment and the largest several: the segment lookup is part of the seek.
The base log is rolled after it is built, so at every size the appends start in an empty active
segment (a window never crosses a roll) and the seeks all read sealed segments.

``summary(rows)`` turns the rows into the JSON document's ``"scaling"`` object (sizes, per
engine: append rec/s and seek microseconds per size, plus the ``findings``); ``findings_lines``
states, per engine, whether append stayed flat (largest / smallest size's throughput >=
``FLAT_TOLERANCE``) and seek grew log-like (largest / smallest seek time <= ``LOG_SLACK`` times
ln(largest size) / ln(smallest size); a linear seek would grow 100x); the sentences go into the
notes of the largest size's rows. Findings, not asserts: a noisy shared machine can miss them,
and then the report says so rather than failing the run.

Thread-safety: the workloads run on the runner's one thread.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from typing import Any

from pylog.bench.model import Context, LatencySample, Scale, Workload
from pylog.engine import open_partition

GROUP = "scaling"
ENGINES = ("native", "reference")
#: log sizes (records) of the default suite and of ``--quick``; each spans 100x
SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 10_000, 100_000)
VALUE_BYTES = 100
BATCH_RECORDS = 10
#: the first record's timestamp (ms); record ``i`` has ``BASE_TIMESTAMP_MS + i``
BASE_TIMESTAMP_MS = 1_700_000_000_000
#: append stayed flat when largest-size throughput / smallest-size throughput >= this
FLAT_TOLERANCE = 0.5
#: seek grew log-like when its growth <= this many times ln(largest) / ln(smallest size)
LOG_SLACK = 2.0
#: sampled results each seek run checks (after the timed loop, so checking costs no time)
CHECKED_SEEKS = 50


def sizes(scale: Scale) -> tuple[int, ...]:
    return QUICK_SIZES if scale.is_quick else SIZES


def window(scale: Scale, engine: str) -> int:
    """Records one append window adds (the reference engine: a fifth; rates compare fairly).
    Why not fewer: a window of a few milliseconds is at the mercy of one descheduling."""
    native = 5_000 if scale.is_quick else 20_000
    return native if engine == "native" else native // 5


def seeks(scale: Scale, engine: str) -> int:
    """Seeks of each kind per size and run (the reference engine: a fifth)."""
    native = 5_000 if scale.is_quick else 20_000
    return native if engine == "native" else native // 5


def segment_bytes(scale: Scale) -> int:
    """One ``segment.bytes`` for every size: about an eighth of the largest log (>= 64 KiB)."""
    largest = max(sizes(scale)) * (VALUE_BYTES + 12) + max(sizes(scale)) // BATCH_RECORDS * 61
    return max(64 << 10, largest // 8)


def label(size: int) -> str:
    """``1000`` -> ``1k``, ``1000000`` -> ``1M`` (workload names and titles)."""
    for unit, factor in (("M", 1_000_000), ("k", 1_000)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def values() -> list[bytes]:
    rng = random.Random(7)
    return [rng.randbytes(VALUE_BYTES) for _ in range(BATCH_RECORDS)]


def timestamps(start: int, count: int) -> list[int]:
    return [BASE_TIMESTAMP_MS + offset for offset in range(start, start + count)]


def append_records(log: Any, count: int, batch: list[bytes]) -> None:
    """Append ``count`` records (whole batches of ``batch``) with timestamps one ms apart."""
    start = log.end_offset
    for at in range(start, start + count, BATCH_RECORDS):
        log.append(batch, timestamps_ms=timestamps(at, BATCH_RECORDS))


def build_bases(ctx: Context) -> None:
    """``setup``: one base log per size in the shared directory (native engine), each rolled at
    its end; ``ctx.shared["bases"]`` maps size -> path."""
    bases = {}
    batch = values()
    for size in sizes(ctx.scale):
        path = os.path.join(ctx.shared_dir, f"base-{label(size)}")
        with open_partition(path, engine="native", config=config(ctx.scale)) as log:
            append_records(log, size, batch)
            # why roll: every run then starts from a sealed log and an empty active segment, at
            # every size alike; otherwise whether a run's window crosses a segment roll (and
            # reads hit the pread path of the active segment or the mmap of sealed ones) would
            # depend on where the size happens to end inside its segment, not on its size
            log.roll()
            if log.end_offset != size:
                raise RuntimeError(f"the base log holds {log.end_offset} records, not {size}")
        bases[size] = path
    ctx.shared["bases"] = bases


def config(scale: Scale) -> dict[str, int]:
    return {"segment.bytes": segment_bytes(scale)}


def size_order(ctx: Context, engine: str) -> list[int]:
    """The sizes in the order this run visits them: rotated by one each run of ``engine``, so
    no size is always measured first (a run still sees every size under the same conditions)."""
    counter = f"runs-{engine}"
    runs = ctx.shared[counter] = ctx.shared.get(counter, -1) + 1
    order = list(sizes(ctx.scale))
    start = runs % len(order)
    return order[start:] + order[:start]


def append_window(ctx: Context, engine: str, size: int) -> tuple[float, bool]:
    """Seconds to append ``window`` records to a copy of the ``size`` base log, and its check:
    the end offset moved by exactly that much and the last record has its timestamp."""
    count = window(ctx.scale, engine)
    path = ctx.path(f"log-{label(size)}")
    shutil.copytree(ctx.shared["bases"][size], path)
    os.sync()  # why: start from a clean page cache (no write-back throttling of the timed part)
    batch = values()
    try:
        with open_partition(path, engine=engine, config=config(ctx.scale)) as log:
            t0 = time.perf_counter()
            append_records(log, count, batch)
            seconds = time.perf_counter() - t0
            end = log.end_offset
            last = list(log.records(end - 1, end))
    finally:
        shutil.rmtree(path, ignore_errors=True)
    ok = end == size + count and len(last) == 1 and last[0].timestamp == BASE_TIMESTAMP_MS + end - 1
    return seconds, ok


def append_run(ctx: Context, engine: str) -> LatencySample:
    """One timed run: an append window at every size; figures (metrics named by size) in
    k rec/s. A ``LatencySample`` because it is one figure per metric (here per size), not a
    latency: the runner takes each metric's median over runs."""
    figures, ok = {}, True
    for size in size_order(ctx, engine):
        seconds, checked = append_window(ctx, engine, size)
        figures[label(size)] = window(ctx.scale, engine) / seconds / 1e3
        ok &= checked
    return LatencySample(figures, ok)


def holds(batch: memoryview, offset: int) -> bool:
    """Whether the first batch of ``batch`` (Kafka's v2 framing) holds ``offset``: base offset
    at bytes 0-7, last offset delta at 23-26."""
    base = int.from_bytes(batch[0:8], "big")
    return base <= offset <= base + int.from_bytes(batch[23:27], "big")


def seek_size(ctx: Context, engine: str, size: int) -> tuple[float, float, bool]:
    """Mean microseconds per random seek by offset and by timestamp in the ``size`` base log,
    and the check of a sample of the answers."""
    count = seeks(ctx.scale, engine)
    rng = random.Random(size)  # the same targets for every run and engine
    offsets = [rng.randrange(size) for _ in range(count)]
    stamps = [BASE_TIMESTAMP_MS + rng.randrange(size) for _ in range(count)]
    with open_partition(ctx.shared["bases"][size], engine=engine, config=config(ctx.scale)) as log:
        read, for_timestamp = log.read, log.offset_for_timestamp
        t0 = time.perf_counter()
        for offset in offsets:
            read(offset, 1)
        by_offset = time.perf_counter() - t0
        t0 = time.perf_counter()
        for stamp in stamps:
            for_timestamp(stamp)
        by_timestamp = time.perf_counter() - t0
        ok = log.end_offset == size
        ok &= all(holds(memoryview(read(o, 1)), o) for o in offsets[:CHECKED_SEEKS])
        ok &= all(for_timestamp(s) == s - BASE_TIMESTAMP_MS for s in stamps[:CHECKED_SEEKS])
    return by_offset / count * 1e6, by_timestamp / count * 1e6, ok


def seek_run(ctx: Context, engine: str) -> LatencySample:
    """One timed run: random seeks at every size; metrics ``offset-<size>`` and
    ``timestamp-<size>``, mean microseconds per call."""
    figures, ok = {}, True
    for size in size_order(ctx, engine):
        by_offset, by_timestamp, checked = seek_size(ctx, engine, size)
        figures[f"offset-{label(size)}"] = by_offset
        figures[f"timestamp-{label(size)}"] = by_timestamp
        ok &= checked
    return LatencySample(figures, ok)


def _append_contender(engine: str):
    return lambda ctx: append_run(ctx, engine)


def _seek_contender(engine: str):
    return lambda ctx: seek_run(ctx, engine)


APPEND = "scaling-append"
SEEK = "scaling-seek"


def workloads(scale: Scale) -> list[Workload]:
    """The group's two workloads for ``scale``: append and seek, one row per size (and kind)."""
    labels = [label(size) for size in sizes(scale)]
    return [
        Workload(
            name=APPEND,
            title=f"append {window(scale, 'native'):,} more records (reference: a fifth) to a log of N records",
            group=GROUP,
            unit="k rec/s",
            higher_is_better=True,
            contenders={engine: _append_contender(engine) for engine in ENGINES},
            setup=build_bases,
            metrics=tuple(labels),
        ),
        Workload(
            name=SEEK,
            title="random seek by offset / by timestamp in a log of N records, us per call",
            group=GROUP,
            unit="us",
            higher_is_better=False,
            contenders={engine: _seek_contender(engine) for engine in ENGINES},
            setup=build_bases,
            metrics=tuple(f"{kind}-{name}" for kind in ("offset", "timestamp") for name in labels),
        ),
    ]


def size_of(text: str) -> int | None:
    """The size a label names (``10k`` -> 10000, ``1M`` -> 1000000), else None."""
    factor = {"k": 1_000, "M": 1_000_000}.get(text[-1:], 1)
    digits = text[:-1] if factor > 1 else text
    return int(digits) * factor if digits.isdigit() else None


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON document's ``"scaling"`` object from the group's rows (JSON dicts)::

        {"sizes": [records], "append": {engine: [rec/s per size]},
         "seek_offset_us": {engine: [us]}, "seek_timestamp_us": {engine: [us]},
         "findings": {engine: {...}}, "flat_tolerance": x, "log_slack": y}

    A size or engine without a figure gives null in its list. The findings also go into the
    notes of the rows (the table prints them); they never mark a row failed: a shared
    machine's noise must not fail the run."""
    by_key = {(row["workload"], row["metric"]): row for row in rows}
    found = set()
    for workload, metric in by_key:
        name = metric if workload == APPEND else metric.partition("-")[2] if workload == SEEK else ""
        if (size := size_of(name)) is not None:
            found.add(size)
    found_sizes = sorted(found)

    def series(workload: str, prefix: str, factor: float) -> dict[str, list[float | None]]:
        out: dict[str, list[float | None]] = {}
        for engine in ENGINES:
            figures = [
                by_key.get((workload, prefix + label(s)), {}).get("figures", {}).get(engine)
                for s in found_sizes
            ]
            if any(f is not None for f in figures):
                out[engine] = [None if f is None else f * factor for f in figures]
        return out

    scaling: dict[str, Any] = {
        "sizes": found_sizes,
        "append": series(APPEND, "", 1e3),
        "seek_offset_us": series(SEEK, "offset-", 1.0),
        "seek_timestamp_us": series(SEEK, "timestamp-", 1.0),
        "flat_tolerance": FLAT_TOLERANCE,
        "log_slack": LOG_SLACK,
    }
    scaling["findings"] = findings(scaling)
    if found_sizes:
        largest = label(found_sizes[-1])
        for key, lines in (
            ((APPEND, largest), findings_lines(scaling, seek=False)),
            ((SEEK, f"offset-{largest}"), findings_lines(scaling, append=False)),
        ):
            row = by_key.get(key)
            if row is not None and lines:
                row["note"] = "; ".join(filter(None, [row.get("note", ""), *lines]))
    return scaling


def _growth(values: Sequence[float | None]) -> float | None:
    """Last over first figure, when both exist and the first is positive."""
    if len(values) < 2 or values[0] is None or values[-1] is None or values[0] <= 0:
        return None
    return values[-1] / values[0]


def findings(scaling: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per engine: append's largest/smallest ratio and whether it stayed flat; both seeks'
    growth and whether it is within ``LOG_SLACK`` x the growth of ln(size)."""
    found_sizes = scaling["sizes"]
    bound = None
    if len(found_sizes) >= 2 and found_sizes[0] > 1:
        bound = LOG_SLACK * math.log(found_sizes[-1]) / math.log(found_sizes[0])
    out: dict[str, dict[str, Any]] = {}
    for engine in ENGINES:
        append = _growth(scaling["append"].get(engine, []))
        by_offset = _growth(scaling["seek_offset_us"].get(engine, []))
        by_timestamp = _growth(scaling["seek_timestamp_us"].get(engine, []))
        if append is None and by_offset is None and by_timestamp is None:
            continue
        seek_growths = [g for g in (by_offset, by_timestamp) if g is not None]
        out[engine] = {
            "append_last_over_first": append,
            "append_flat": None if append is None else append >= FLAT_TOLERANCE,
            "seek_offset_growth": by_offset,
            "seek_timestamp_growth": by_timestamp,
            "seek_log_bound": bound,
            "seek_log_like": None
            if bound is None or not seek_growths
            else all(g <= bound for g in seek_growths),
        }
    return out


def findings_lines(scaling: dict[str, Any], *, append: bool = True, seek: bool = True) -> list[str]:
    """The report's sentences about ``summary(...)`` (one per engine): the append finding, the
    seek finding, or both."""
    if not scaling.get("sizes") or len(scaling["sizes"]) < 2:
        return []
    first, last = label(scaling["sizes"][0]), label(scaling["sizes"][-1])
    lines = []
    for engine, found in scaling["findings"].items():
        parts = []
        if append and found["append_flat"] is not None:
            verdict = "stayed flat" if found["append_flat"] else "did NOT stay flat"
            parts.append(
                f"append {verdict} ({last}/{first} records: {found['append_last_over_first']:.2f}x "
                f"the throughput, flat means >= {FLAT_TOLERANCE:g}x)"
            )
        if seek and found["seek_log_like"] is not None:
            verdict = "grew log-like" if found["seek_log_like"] else "grew MORE than log-like"
            growths = ", ".join(
                f"{what} {found[key]:.2f}x"
                for what, key in (
                    ("by offset", "seek_offset_growth"),
                    ("by timestamp", "seek_timestamp_growth"),
                )
                if found[key] is not None
            )
            parts.append(f"seek {verdict} ({growths}; log-like means <= {found['seek_log_bound']:.2f}x)")
        if parts:
            lines.append(f"scaling, {engine}: " + "; ".join(parts))
    return lines
