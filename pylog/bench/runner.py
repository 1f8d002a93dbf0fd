"""Running the suite: every selected workload, interleaved repetitions, medians, ratios.

Rules (why: on a shared 2-core VM the machine's state drifts during a run; interleaving exposes
every contender to the same drift, and ratios are only ever taken between figures of this run):
- a workload's ``setup`` runs once, then ``repeat`` repetitions; repetition ``r`` runs every
  contender once, in the contender order rotated by ``r`` (so none is always first or last);
- every timed run gets a fresh work directory, removed right after it (disk space stays bounded
  by the largest single run, plus the workload's shared log);
- a run whose own check fails, or that raises, marks its row not ``ok`` and its contender
  ``failed`` (the table says ``wrong`` in that contender's cell and the ratios involving it, the
  exit code is 1) and the suite goes on; the reason goes in the note. why per contender: a
  baseline's failure (twainmq's reader tearing a line) must not hide pylog's figures, nor the
  reverse;
- figures are medians over repetitions; ``native/<contender>`` ratios are of those medians.

Thread-safety: one suite runs on the calling thread; contenders may start their own threads and
child processes, and must have stopped them when they return.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pylog.bench.model import ALTERNATIVES, Context, LatencySample, Row, Sample, Scale, Workload


def rotated(names: Sequence[str], repetition: int) -> list[str]:
    """``names`` starting at ``repetition % len(names)``: repetition r's contender order."""
    if not names:
        return []
    start = repetition % len(names)
    return [*names[start:], *names[:start]]


@dataclass
class Measured:
    """Everything one workload's runs returned, by contender, and the first error of each."""

    workload: Workload
    samples: dict[str, list[Sample | LatencySample]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    setup_error: str = ""
    #: wall time of the whole workload (setup and every run)
    seconds: float = 0.0


def measure(
    workload: Workload, scale: Scale, root: str, advance: Callable[[float], None] = lambda _n: None
) -> Measured:
    """Run ``workload``: setup, then ``scale.repeat`` interleaved repetitions under ``root``."""
    measured = Measured(workload, {name: [] for name in workload.contenders})
    started = time.perf_counter()
    shared_dir = os.path.join(root, f"{workload.name}-shared")
    os.makedirs(shared_dir, exist_ok=True)
    shared: dict = {}
    try:
        if workload.setup is not None:
            try:
                workload.setup(Context(scale, shared_dir, shared_dir, shared))
            except Exception as error:  # the workload cannot run: its rows say why
                measured.setup_error = f"setup: {type(error).__name__}: {error}"
                advance(scale.repeat * len(workload.contenders))
                return measured
        names = list(workload.contenders)
        for repetition in range(scale.repeat):
            for index, name in enumerate(rotated(names, repetition)):
                work_dir = os.path.join(root, f"{workload.name}-{name}-{repetition}-{index}")
                os.makedirs(work_dir)
                try:
                    sample = workload.contenders[name](Context(scale, work_dir, shared_dir, shared))
                    measured.samples[name].append(sample)
                except Exception as error:
                    measured.errors.setdefault(name, f"{name}: {type(error).__name__}: {error}")
                finally:
                    shutil.rmtree(work_dir, ignore_errors=True)
                    advance(1)
    finally:
        shutil.rmtree(shared_dir, ignore_errors=True)
        measured.seconds = time.perf_counter() - started
    return measured


def rows_of(measured: Measured) -> list[Row]:
    """The table rows of one workload: one per metric, with medians, per-run values and ratios."""
    workload = measured.workload
    rows = []
    for metric in workload.metrics:
        row = Row(
            workload.name, workload.title, workload.group, metric, workload.unit, workload.higher_is_better
        )
        notes = [measured.setup_error] if measured.setup_error else []
        failed = set(workload.contenders) if measured.setup_error else set()
        for name, samples in measured.samples.items():
            values = [_value(sample, metric, workload.divisor) for sample in samples]
            wrong = [sample for sample in samples if not sample.ok]
            if wrong:
                notes.append(f"{name}: {len(wrong)} of {len(samples)} runs failed their check")
                failed.add(name)
            if values:
                row.samples[name] = values
                row.figures[name] = statistics.median(values)
        notes += measured.errors.values()
        failed |= set(measured.errors)
        row.failed = [name for name in workload.contenders if name in failed]
        row.ok = not notes
        if workload.note:
            notes.append(workload.note)
        row.note = "; ".join(notes)
        trusted = {name: value for name, value in row.figures.items() if name not in failed}
        row.ratios, row.best_baseline = ratios(trusted, workload.higher_is_better)
        rows.append(row)
    return rows


def _value(sample: Sample | LatencySample, metric: str, divisor: float) -> float:
    if isinstance(sample, LatencySample):
        return sample.percentiles_us[metric]
    return sample.rate / divisor


def ratios(figures: dict[str, float], higher_is_better: bool) -> tuple[dict[str, float], str | None]:
    """``native/<other>`` for every other contender with a figure that is not zero, and
    ``native/best-baseline`` against the fastest *alternative* (highest rate, lowest latency of
    sqlite3 and twainmq, what a user would pick instead). why not os.write: it is the physical
    ceiling, fastest on every write workload, so its ratio has its own key and column."""
    native = figures.get("native")
    if native is None:
        return {}, None
    out = {f"native/{name}": native / value for name, value in figures.items() if name != "native" and value}
    baselines = [name for name in ALTERNATIVES if figures.get(name)]
    if not baselines:
        return out, None
    pick = max if higher_is_better else min
    best = pick(baselines, key=lambda name: figures[name])
    out["native/best-baseline"] = native / figures[best]
    return out, best


def run_suite(
    workloads: Sequence[Workload],
    scale: Scale,
    root: str,
    advance: Callable[[float], None] = lambda _n: None,
    timings: dict[str, float] | None = None,
) -> list[Row]:
    """Every workload in order (the registry's), under ``root``; all their rows. ``timings``
    (when given) receives each workload's wall time in seconds."""
    rows: list[Row] = []
    for workload in workloads:
        measured = measure(workload, scale, root, advance)
        if timings is not None:
            timings[workload.name] = measured.seconds
        rows.extend(rows_of(measured))
    return rows


def total_runs(workloads: Sequence[Workload], scale: Scale) -> int:
    """Timed runs of a suite (the progress bar's total)."""
    return sum(len(w.contenders) for w in workloads) * scale.repeat
