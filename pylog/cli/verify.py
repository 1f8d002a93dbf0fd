"""``pylog verify PATH``: check a log directory, a partition directory or one segment, and report
each problem with its file and byte position (the rules: pylog/verification.py).

Exit 0 only when healthy (warnings allowed), 1 when damage was found (after ``--repair``: when
damage remains), 2 when PATH is not something to verify. ``--json``: one document::

    {"path", "kind": "log_dir"|"partition"|"segment", "healthy": bool,
     "partitions": [{"path", "healthy", "segments", "batches", "records", "bytes",
                     "start_offset", "end_offset", "recovery_point", "clean_shutdown"}],
     "problems": [{"kind", "path", "position", "message", "offset", "severity", "repairable"}],
     "seconds", "bytes", "mb_per_s",
     "repair": [{"path", "repaired", "reason", "bytes_cut", "end_offset_before",
                 "end_offset_after", "offsets_removed", "records_removed",
                 "segments_deleted", "indexes_rebuilt"}]   (with --repair)
     "after_repair": {the same "healthy", "partitions", "problems"}  (with --repair)}

``--repair`` runs the engine's recovery on each damaged partition where that is safe
(pylog/repair.py) and verifies again.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

from pylog.cli.common import (
    CliError,
    add_path_arguments,
    emit_json,
    emit_table,
    parse_assignments,
    progress,
    resolve_paths,
    stdout_console,
)
from pylog.verification import Report, classify_path, segment_bytes, verify_path


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add ``pylog verify`` to ``pylog``."""
    parser = subcommands.add_parser(
        "verify",
        help="check a log directory, a partition or a segment (CRCs, offsets, indexes, checkpoints)",
        description="Check every batch's CRC and structure, offsets increasing across batches and "
        "segments, indexes consistent with the bytes and checkpoints sane. Exit 0 only when healthy.",
    )
    add_path_arguments(
        parser, many=False, help="a log directory, a partition directory or a segment file (default: --dir)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument(
        "--repair",
        action="store_true",
        help="apply the engine's crash recovery to a torn or corrupt unsynced tail (never below the "
        "recovery point) and say what it cut, then verify again",
    )
    parser.add_argument(
        "--engine",
        choices=("native", "reference"),
        default=None,
        help="the engine whose recovery --repair runs (default: $PYLOG_ENGINE or native)",
    )
    parser.add_argument(
        "--config",
        action="append",
        metavar="KEY=VALUE",
        help="a setting (Kafka's name) for --repair's open, over the topic's from the catalog; a "
        "partition outside a log directory needs the settings it was written with, e.g. "
        "index.interval.bytes, or its rebuilt indexes use the defaults (repeatable)",
    )
    parser.set_defaults(handler=run)


def _verify(path: str) -> tuple[Report, float, int]:
    try:
        _kind, dirs, only_base = classify_path(path)
    except ValueError as error:
        raise CliError(str(error)) from None
    total = segment_bytes([path] if only_base is not None else dirs)
    started = time.perf_counter()
    with progress(f"verifying {path}", total, "bytes") as advance:
        report = verify_path(path, advance=advance)
    return report, time.perf_counter() - started, total


def run(args: argparse.Namespace) -> int:
    (path,) = resolve_paths(args)
    report, seconds, total = _verify(path)
    document: dict[str, Any] = _document(report)
    document.update(
        seconds=round(seconds, 6), bytes=total, mb_per_s=round(total / 1e6 / seconds, 1) if seconds else None
    )
    final = report
    if args.repair:
        from pylog.repair import repair_partition

        # the engine's recovery events (cuts, deleted segments, rebuilt indexes) on stderr, one
        # line each, as an operator reads them (docs/partition-log.md "Operator logging")
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)

        overrides = parse_assignments(args.config, "--config")
        results = [
            repair_partition(health, engine=args.engine, config=overrides)
            for health in report.partitions
            if not health.healthy
        ]
        document["repair"] = [r.to_json() for r in results]
        if any(r.repaired for r in results):
            final, _seconds, _total = _verify(path)
        document["after_repair"] = _document(final)
    if args.json:
        emit_json(document)
    else:
        _print(report, document, final if args.repair else None)
    return 0 if final.healthy else 1


def _document(report: Report) -> dict[str, Any]:
    return {
        "path": report.path,
        "kind": report.kind,
        "healthy": report.healthy,
        "partitions": [h.to_json() for h in report.partitions],
        "problems": [p.to_json() for p in report.problems],
    }


def _print(report: Report, document: dict[str, Any], final: Report | None) -> None:
    console = stdout_console()
    rows = []
    for health in report.partitions:
        errors = sum(p.severity == "error" for p in health.problems)
        warnings = len(health.problems) - errors
        status = "healthy" if not errors else f"{errors} problem(s)"
        if warnings:
            status += f", {warnings} warning(s)"
        offsets = None if health.start_offset is None else f"{health.start_offset}..{health.end_offset}"
        rows.append(
            (
                health.path,
                health.segments,
                health.batches,
                health.records,
                health.bytes,
                offsets,
                health.recovery_point,
                status,
            )
        )
    emit_table(
        ("PARTITION", "SEGMENTS", "BATCHES", "RECORDS", "BYTES", "OFFSETS", "RECOVERY-POINT", "STATUS"),
        rows,
        title=f"pylog verify {report.path}",
    )
    _print_problems(report, "problems")
    rate = document.get("mb_per_s")
    console.print(
        f"{document['bytes']} bytes in {document['seconds']:.3f} s" + (f" ({rate} MB/s)" if rate else "")
    )
    for result in document.get("repair", []):
        line = f"repair {result['path']}: {result['reason']}"
        if result["repaired"]:
            line += f"; {result['bytes_cut']} bytes cut"
            if result["offsets_removed"]:
                low, high = result["offsets_removed"]
                line += f", offsets {low}..{high - 1} removed ({result['records_removed']} records)"
            if result["segments_deleted"]:
                line += f", segments deleted: {', '.join(result['segments_deleted'])}"
            if result["indexes_rebuilt"]:
                line += f", indexes rebuilt: {', '.join(result['indexes_rebuilt'])}"
        console.print(line, markup=False, highlight=False)
    if final is not None:
        console.print("after repair: " + ("healthy" if final.healthy else "still damaged"))
        _print_problems(final, "remaining problems")
    console.print("healthy" if (final or report).healthy else "DAMAGED")


def _print_problems(report: Report, title: str) -> None:
    if not report.problems:
        return
    emit_table(
        ("SEVERITY", "KIND", "PATH", "POSITION", "OFFSET", "REPAIRABLE", "MESSAGE"),
        [
            (
                p.severity,
                p.kind,
                p.path,
                p.position,
                p.offset,
                {True: "yes", False: "no", None: None}[p.repairable],
                p.message,
            )
            for p in report.problems
        ],
        title=title,
    )
