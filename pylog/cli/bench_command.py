"""``pylog bench``: the command (arguments, workload selection, temporary space, output); the
suite itself is the ``pylog.bench`` package (docs/cli.md, "Benchmark: bench").

``--dir D`` is a work directory, not a log directory: the suite makes a fresh ``pylog-bench-*``
directory inside it (default: the system's temporary directory) and removes it afterwards, so it
never touches files it did not create. Exit codes: 0 every check passed, 1 a run failed its own
check (its row says ``wrong``), 2 a bad argument or not enough free space.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from pylog.cli.common import CliError, progress, stdout_console


def register(subcommands: argparse._SubParsersAction) -> None:
    bench = subcommands.add_parser(
        "bench",
        help="measure the engines against os.write, sqlite3 and twainmq",
        description="Run the standard workloads (produce, durable produce, consume, seek, compaction, "
        "latency, recovery, scaling) on the native and reference engines and the baselines, "
        "interleaved, and print medians and ratios measured in this one run.",
    )
    bench.add_argument(
        "--dir",
        metavar="D",
        help="where to make the temporary work directory (default: the system's temp dir)",
    )
    bench.add_argument("--quick", action="store_true", help="small sizes, under a minute: a smoke test")
    bench.add_argument("--repeat", type=int, help="repetitions per workload (medians; default 5, quick 3)")
    bench.add_argument(
        "--workload",
        action="append",
        metavar="NAME",
        help="run only this workload, or this group (repeatable; see --list)",
    )
    bench.add_argument("--list", action="store_true", help="list the workloads and exit")
    bench.add_argument("--json", metavar="FILE", help="also write the figures, machine and versions as JSON")
    bench.add_argument("--plot", metavar="FILE.png", help="also draw the figures (needs matplotlib)")
    bench.add_argument(
        "--from-json",
        metavar="FILE",
        help="run nothing: draw --plot from a document an earlier --json saved",
    )
    bench.set_defaults(handler=run)


def command_line(args: argparse.Namespace) -> list[str]:
    """The command that reproduces this run (every option given, in a fixed order)."""
    out = ["pylog", "bench"]
    out += ["--quick"] if args.quick else []
    out += ["--repeat", str(args.repeat)] if args.repeat is not None else []
    for name in args.workload or ():
        out += ["--workload", name]
    out += ["--dir", args.dir] if args.dir else []
    out += ["--json", args.json] if args.json else []
    out += ["--plot", args.plot] if args.plot else []
    return out


def select(workloads: Sequence[Any], names: Sequence[str] | None) -> list[Any]:
    """The workloads named (by name or by group), in suite order; a ``CliError`` naming the
    known ones for any other name."""
    if not names:
        return list(workloads)
    known = {w.name for w in workloads}
    groups = {w.group for w in workloads}
    unknown = [name for name in names if name not in known and name not in groups]
    if unknown:
        raise CliError(
            f"unknown workload {', '.join(map(repr, unknown))}; known workloads: "
            f"{', '.join(w.name for w in workloads)}; groups: {', '.join(sorted(groups))}"
        )
    wanted = set(names)
    return [w for w in workloads if w.name in wanted or w.group in wanted]


def run(args: argparse.Namespace) -> int:
    from pylog.bench import plot, report, runner, workloads  # plot imports matplotlib only to draw
    from pylog.bench.model import Row, Scale

    if args.from_json:  # re-plot a saved document, measure nothing
        return plot.from_json(args.from_json, args.plot)
    if args.repeat is not None and args.repeat < 1:
        raise CliError("--repeat must be >= 1")
    scale = Scale.quick() if args.quick else Scale()
    if args.repeat is not None:
        scale.repeat = args.repeat
    suite = workloads.registry(scale)
    if args.list:
        return list_workloads(suite)
    chosen = select(suite, args.workload)
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise CliError(plot.MISSING_MATPLOTLIB)  # before minutes of measuring, not after
    parent = args.dir or tempfile.gettempdir()
    if not os.path.isdir(parent):
        raise CliError(f"no directory at {parent}")
    need, free = scale.disk_bytes(), shutil.disk_usage(parent).free
    if free < need:
        raise CliError(
            f"needs about {need >> 20} MiB free in {parent}, found {free >> 20} MiB; "
            "use --dir on a larger file system, or --quick"
        )
    root = tempfile.mkdtemp(prefix="pylog-bench-", dir=parent)
    started, t0 = report.utc_now(), time.perf_counter()
    timings: dict[str, float] = {}
    try:
        with progress("pylog bench", runner.total_runs(chosen, scale), "runs") as advance:
            rows = runner.run_suite(chosen, scale, root, advance, timings)
        document_rows = [dataclasses.asdict(row) for row in rows]
        sections = workloads.sections(document_rows)  # may mark rows (the scaling checks)
        rows = [Row(**row_dict) for row_dict in document_rows]
        notes = [note for note in [workloads.twainmq_note()] if note]
        document = report.document(
            rows,
            command=command_line(args),
            started=started,
            seconds=time.perf_counter() - t0,
            scale=scale,
            work_dir=root,
            notes=notes,
            sections={**sections, "workload_seconds": timings},
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report.render_table(rows, stdout_console(), report.header_line(scale), notes)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(document, f, indent=1)
    if args.plot:
        plot.plot(document, args.plot)
    return 0 if all(row.ok for row in rows) else 1


def list_workloads(suite: Sequence[Any]) -> int:
    from rich.table import Table

    table = Table(title="pylog bench workloads (--workload takes a name or a group)", title_justify="left")
    for column in ("name", "group", "unit", "contenders", "what"):
        table.add_column(column, no_wrap=column != "what")
    for w in suite:
        table.add_row(w.name, w.group, w.unit, ", ".join(w.contenders), w.title)
    stdout_console().print(table)
    return 0
