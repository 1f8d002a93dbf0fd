"""``pylog mirror SOURCE DEST [--topic T ...] [--group G]``: copy topics between a pylog log
directory and a Kafka cluster, either way (or directory to directory), with ``pylog.mirror``.

SOURCE and DEST are each a log directory (the source's must exist; a missing destination is
created) or a ``kafka://host:port[,host:port...]`` URL; a relative directory that does not exist
as given but does under ``--dir`` (default ``$PYLOG_DIR``) is taken from there. Without
``--topic`` every topic of the source is copied. Progress is committed as consumer group ``--group`` (default
``pylog-mirror``) on the source, so running the same command again after an interruption goes on
where it stopped; the module docs of ``pylog.mirror`` say what is exact and what may duplicate.

Output: a table per partition on stdout (``--json``: one document, ``MirrorResult.as_json``);
each topic setting the destination refused is named on stderr (``pylog mirror: topic T: KEY=VALUE
not carried over: why``); a progress bar counts the records on stderr when it is a terminal.

Exit codes: 0 copied and counted; 1 the final count check failed (the mismatches on stderr);
2 the copy could not be done (unknown topic, unreachable cluster, a destination topic with fewer
partitions...), one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any

import pylog
from pylog.cli.common import DIR_ENVIRONMENT, emit_json, emit_table, progress
from pylog.log import KAFKA_SCHEME
from pylog.mirror import DEFAULT_GROUP_ID, MirrorCountError, MirrorResult

COLUMNS = ("TOPIC", "PARTITION", "RECORDS", "BYTES", "SKIPPED", "SOURCE-OFFSETS", "DEST-END", "OFFSETS")


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add ``pylog mirror``."""
    parser = subcommands.add_parser(
        "mirror",
        help="copy topics between a log directory and a Kafka cluster (either way), resumably",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", metavar="SOURCE", help="a log directory or kafka://host:port")
    parser.add_argument("dest", metavar="DEST", help="a log directory or kafka://host:port")
    parser.add_argument(
        "--topic", action="append", metavar="T", help="a topic to copy (repeatable; default: all)"
    )
    parser.add_argument(
        "--group",
        default=DEFAULT_GROUP_ID,
        metavar="G",
        help=f"the consumer group on SOURCE holding the progress (default: {DEFAULT_GROUP_ID})",
    )
    parser.add_argument(
        "--dir",
        metavar="PATH",
        default=os.environ.get(DIR_ENVIRONMENT),
        help="a relative SOURCE or DEST directory not found as given is looked up under PATH "
        f"(default: ${DIR_ENVIRONMENT})",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    parser.set_defaults(handler=run_mirror)


def resolve_place(place: str, directory: str | None) -> str:
    """SOURCE/DEST: a URL or a path as given; a relative path that does not exist but does under
    ``--dir`` is taken from there (the rule of ``dump`` and ``verify``)."""
    if place.startswith(KAFKA_SCHEME) or not directory or os.path.isabs(place) or os.path.exists(place):
        return place
    under = os.path.join(directory, place)
    return under if os.path.exists(under) else place


def run_mirror(args: argparse.Namespace) -> int:
    source, dest = resolve_place(args.source, args.dir), resolve_place(args.dest, args.dir)
    with _progress_bar() as report:
        try:
            result = pylog.mirror(source, dest, args.topic, group_id=args.group, progress=report)
        except MirrorCountError as error:
            _warn_not_carried(error.result)
            _show(error.result, args.json)
            for line in error.mismatches:
                print(f"pylog mirror: count check failed: {line}", file=sys.stderr)
            return 1
    _warn_not_carried(result)
    _show(result, args.json)
    return 0


@contextlib.contextmanager
def _progress_bar() -> Any:
    """A ``progress(copied, total)`` callback driving ``common.progress``'s bar (opened at the
    first call, when the total is known; nothing when stderr is not a terminal)."""
    with contextlib.ExitStack() as stack:
        state: dict[str, Any] = {"advance": None, "shown": 0}

        def report(copied: int, total: int) -> None:
            advance: Callable[[float], None] | None = state["advance"]
            if advance is None:
                advance = state["advance"] = stack.enter_context(progress("mirroring", total, "records"))
            advance(copied - state["shown"])
            state["shown"] = copied

        yield report


def _warn_not_carried(result: MirrorResult) -> None:
    for item in result.configs_not_carried:
        print(
            f"pylog mirror: topic {item.topic}: {item.key}={item.value} not carried over: {item.reason}",
            file=sys.stderr,
        )


def _show(result: MirrorResult, as_json: bool) -> None:
    if as_json:
        emit_json(result.as_json())
        return
    rows = []
    for tp, p in sorted(result.partitions.items()):
        offsets = "-" if p.offsets_preserved is None else "preserved" if p.offsets_preserved else "renumbered"
        rows.append(
            (
                tp.topic,
                tp.partition,
                p.records_written,
                p.bytes,
                p.skipped,
                f"[{p.first_offset}, {p.next_offset})",
                p.destination_end_after,
                offsets,
            )
        )
    emit_table(
        COLUMNS,
        rows,
        title=f"mirrored {result.records} records ({result.bytes} bytes) in {result.seconds:.2f} s "
        f"from {result.source} to {result.destination}",
    )
    for tp, p in sorted(result.partitions.items()):
        if p.renumbered:
            print(f"pylog mirror: {tp.topic}-{tp.partition} renumbered: {p.renumbered}", file=sys.stderr)
