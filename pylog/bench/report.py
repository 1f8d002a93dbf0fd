"""The suite's two outputs: the rich table (people) and the JSON document (programs, plots).

Both print figures through ONE formatter, ``format_figure`` (a test parses the table and checks
that every cell is ``format_figure`` of the JSON document's figure), so they never disagree.

The JSON document (``--json FILE``; pylog/bench/plot.py draws from it alone)::

    {"command": ["pylog", "bench", ...], "started": ISO-8601 (UTC), "seconds": total,
     "machine": {"cpu", "cores", "memory_bytes", "os", "filesystem"},
     "versions": {"pylog", "python", "sqlite", "numpy", "twainmq" (or null), "rustc" (if found)},
     "quick": bool, "repeat": int,
     "rows": [{"workload", "title", "group", "metric", "unit", "higher_is_better",
               "figures": {contender: median}, "samples": {contender: [per-run values]},
               "ratios": {"native/reference": x, "native/os.write": y, ..., "native/best-baseline": z},
               "best_baseline": name or null, "ok": bool, "failed": [contender], "note": str}],
     "notes": [str], "workload_seconds": {workload: wall seconds of its setup and runs},
     "scaling": {...}  (only when the scaling group ran: pylog/bench/scaling.py's summary)}

Table columns: workload (name, plus the metric for latency rows), unit, one column per contender
(twainmq only when it took part), native/ref, native/os.write (the share of the physical
ceiling), native/best (against the faster alternative a user would pick instead: sqlite3 or
twainmq) and that alternative's name. A contender whose run failed its check (or raised) shows ``wrong`` in
its cell and in the ratios involving it; ratios and the best alternative are taken among the
others only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import math
import os
import platform
import shutil
import sqlite3
import subprocess
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from pylog.bench.model import CONTENDERS, Row, Scale

#: ratio key (after ``native/``) -> its column's heading
RATIO_COLUMNS = {"reference": "native/ref", "os.write": "native/os.write", "best-baseline": "native/best"}
WRONG = "wrong"
MISSING = "-"


def format_figure(x: float | None) -> str:
    """A figure or ratio as the table shows it: thousands separated and no decimals from 100 up,
    else three significant digits; ``-`` for none."""
    if x is None or not math.isfinite(x):
        return MISSING
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def columns(rows: Sequence[Row]) -> list[str]:
    """The contender columns: always the engines, os.write and sqlite3; twainmq when it ran."""
    present = {name for row in rows for name in row.figures}
    return [name for name in CONTENDERS if name != "twainmq" or name in present]


def table_cells(row: Row, contenders: Sequence[str]) -> list[str]:
    """One row's cells, in the table's column order."""
    cells = [row.label, row.unit]
    failed = set(row.failed)
    for name in contenders:
        cells.append(WRONG if name in failed else format_figure(row.figures.get(name)))
    for key in RATIO_COLUMNS:
        partner_failed = key in failed  # "best-baseline" is chosen among the trusted ones
        cells.append(
            WRONG if "native" in failed or partner_failed else format_figure(row.ratios.get(f"native/{key}"))
        )
    cells.append(row.best_baseline or MISSING)
    return cells


def render_table(rows: Sequence[Row], console: Any, header: str, notes: Sequence[str]) -> None:
    """The table on ``console`` (``pylog.cli.common.stdout_console()``), then the notes."""
    from rich import box
    from rich.table import Table

    contenders = columns(rows)
    table = Table(title=header, box=box.SQUARE, title_justify="left")
    table.add_column("workload", no_wrap=True)
    table.add_column("unit", no_wrap=True)
    for name in [*contenders, *RATIO_COLUMNS.values()]:
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("best alternative", no_wrap=True)
    for row in rows:
        table.add_row(*table_cells(row, contenders), style=None if row.ok else "red")
    console.print(table)
    for row in rows:
        if row.note:
            console.print(f"{row.label}: {row.note}", highlight=False)
    for note in notes:
        console.print(note, highlight=False)


def header_line(scale: Scale) -> str:
    kind = "quick (a smoke test, not a measurement)" if scale.is_quick else "default suite"
    return (
        f"pylog bench: {kind}, medians of {scale.repeat} interleaved runs; "
        "throughput higher is better, latency (us) lower is better"
    )


def document(
    rows: Sequence[Row],
    *,
    command: Sequence[str],
    started: dt.datetime,
    seconds: float,
    scale: Scale,
    work_dir: str,
    notes: Sequence[str] = (),
    sections: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document of a run (module docstring)."""
    out: dict[str, Any] = {
        "command": list(command),
        "started": started.isoformat(timespec="seconds"),
        "seconds": seconds,
        "machine": machine(work_dir),
        "versions": versions(),
        "quick": scale.is_quick,
        "repeat": scale.repeat,
        "rows": [asdict(row) for row in rows],
        "notes": list(notes),
    }
    out.update(sections or {})
    return out


def machine(work_dir: str) -> dict[str, Any]:
    """CPU model, cores, memory, OS and the file system type of ``work_dir`` (Linux /proc)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "memory_bytes": memory,
        "os": platform.platform(),
        "filesystem": filesystem_type(work_dir),
    }


def filesystem_type(path: str) -> str:
    """The type of the file system holding ``path`` (the longest mount point above it)."""
    path = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 3:
                    continue
                mount = fields[1]
                inside = path == mount or path.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, kind = mount, fields[2]
    except OSError:
        pass
    return kind


def versions() -> dict[str, Any]:
    import numpy

    import pylog

    out: dict[str, Any] = {
        "pylog": pylog.__version__,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "numpy": numpy.__version__,
        "twainmq": _installed_version("twainmq"),
    }
    rustc = shutil.which("rustc")
    if rustc:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out["rustc"] = subprocess.run(
                [rustc, "--version"], capture_output=True, text=True, timeout=10, check=False
            ).stdout.strip()
    return out


def _installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
