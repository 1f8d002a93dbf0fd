"""What every ``pylog`` command shares: the log directory option, opening the log, typed
argument parsers, and output (tables and JSON on stdout, progress on stderr).

Output rules: data goes to stdout (a rich table for people, ``--json`` for programs: one JSON
document, or one object per line for record streams); progress bars and messages go to stderr, and
progress shows only when stderr is a terminal, so pipelines and tests see clean output.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pylog
from pylog.embedded.catalog import CATALOG_FILE

#: the environment variable naming the default log directory of every command
DIR_ENVIRONMENT = "PYLOG_DIR"


class CliError(Exception):
    """A command cannot do what was asked; ``main`` prints the message on one line and exits with
    ``code`` (2: bad input or a refused operation)."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def add_dir_argument(parser: argparse.ArgumentParser) -> None:
    """``--dir PATH``: the log directory (default ``$PYLOG_DIR``)."""
    parser.add_argument(
        "--dir",
        metavar="PATH",
        default=os.environ.get(DIR_ENVIRONMENT),
        help=f"the log directory (default: ${DIR_ENVIRONMENT})",
    )
    parser.add_argument(
        "--engine",
        choices=("native", "reference"),
        default=None,
        help="the partition engine (default: $PYLOG_ENGINE or native)",
    )


def add_path_arguments(parser: argparse.ArgumentParser, *, many: bool, help: str) -> None:
    """``PATH`` positional(s) for the commands that look at files (``dump``, ``verify``), and the
    ``--dir`` every command takes: a PATH that does not exist as given is looked up under
    ``--dir``, and ``verify`` without a PATH checks ``--dir`` itself (``resolve_paths``)."""
    parser.add_argument("paths", nargs="*" if many else "?", metavar="PATH", help=help)
    parser.add_argument(
        "--dir",
        metavar="PATH",
        default=os.environ.get(DIR_ENVIRONMENT),
        help=f"the log directory relative PATHs are looked up in, and the default PATH (default: ${DIR_ENVIRONMENT})",
    )


def resolve_paths(args: argparse.Namespace) -> list[str]:
    """The PATHs of ``add_path_arguments``: each as given when it exists, else under ``--dir``;
    none given: ``--dir`` itself. A ``CliError`` when there is nothing to look at."""
    given = args.paths if isinstance(args.paths, list) else [args.paths] if args.paths else []
    if not given:
        if not args.dir:
            raise CliError(f"no PATH: pass one, or --dir PATH, or set {DIR_ENVIRONMENT}")
        return [args.dir]
    resolved = []
    for path in given:
        under_dir = os.path.join(args.dir, path) if args.dir else None
        exists_here = os.path.exists(path)
        resolved.append(under_dir if not exists_here and under_dir and os.path.exists(under_dir) else path)
    return resolved


def log_directory(args: argparse.Namespace, *, must_exist: bool = True) -> str:
    """The ``--dir`` of ``args``; a ``CliError`` when none was given or (with ``must_exist``) it is
    not a log directory."""
    path = args.dir
    if not path:
        raise CliError(f"no log directory: pass --dir PATH or set {DIR_ENVIRONMENT}")
    if must_exist and not os.path.isdir(path):
        raise CliError(f"no log directory at {path}")
    if must_exist and not is_log_directory(path):
        raise CliError(f"{path} is not a pylog log directory (no {CATALOG_FILE})")
    return path


def is_log_directory(path: str) -> bool:
    """Whether ``path`` is a pylog log directory (it holds the catalog)."""
    return os.path.isfile(os.path.join(path, CATALOG_FILE))


#: ``open_log(args, config=NO_CLEANER)``: a short-lived command that only looks or makes one change
#: should not start compacting behind the user's back (the background cleaner of its ``Log``
#: would begin at once); the processes that own the log run their own cleaner
NO_CLEANER = {"log.cleaner.enable": False}


def open_log(args: argparse.Namespace, *, create: bool = False, **config: Any) -> pylog.Log:
    """Open the log of ``--dir`` (``create``: make it if missing). Commands never auto-create
    topics: a typo in a topic name is an error, not a new topic."""
    path = log_directory(args, must_exist=not create)
    return pylog.open(path, engine=args.engine, auto_create_topics=False, **config)


def require_topic(log: pylog.Log, topic: str) -> None:
    """A ``CliError`` naming the known topics when ``topic`` does not exist."""
    known = log.list_topics()
    if topic not in known:
        hint = f" (topics: {', '.join(sorted(known))})" if known else " (the log has no topics)"
        raise CliError(f"unknown topic {topic!r}{hint}")


def parse_assignments(pairs: Sequence[str] | None, what: str) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{k: v}``; a ``CliError`` naming ``what`` for an entry without ``=``."""
    result: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"{what} must be key=value, not {pair!r}")
        result[key] = value
    return result


def parse_timestamp(text: str) -> int:
    """Milliseconds since the epoch from ``text``: an integer (ms) or an ISO 8601 date-time
    (a naive one is UTC). A ``CliError`` otherwise."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"not a timestamp (ISO 8601 or milliseconds): {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def emit_json(document: Any) -> None:
    """One JSON document (or one object of a stream) on one line of stdout."""
    sys.stdout.write(json.dumps(document, separators=(",", ":"), default=str) + "\n")


def stdout_console() -> Any:
    """A rich Console on stdout. Not a terminal: no colour, and wide enough that tables never
    wrap, so their lines can be parsed."""
    from rich.console import Console

    if sys.stdout.isatty():
        return Console()
    return Console(width=240, color_system=None, force_terminal=False, soft_wrap=True)


def stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


@contextlib.contextmanager
def progress(description: str, total: float | None, unit: str = "") -> Iterator[Callable[[float], None]]:
    """A progress bar on stderr while the block runs, when stderr is a terminal (quiet otherwise);
    yields ``advance(amount)``. ``total`` None: an open-ended count (no percentage)."""
    if not sys.stderr.isatty():
        yield lambda _amount: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[Any] = [TextColumn("[progress.description]{task.description}"), BarColumn()]
    columns += [MofNCompleteColumn(), TextColumn(unit)] if unit else []
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=stderr_console(), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda amount: bar.advance(task, amount)


def emit_table(columns: Sequence[str], rows: Sequence[Sequence[object]], *, title: str | None = None) -> None:
    """A table on stdout (``stdout_console``): Kafka's tools' look — upper-case headers, columns
    aligned by spaces, no box — so people read it and scripts can split it; None shows as ``-``.
    ``title`` is printed on its own line above."""
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        # why Text: a cell is data (a path, a message with "[0, 5)"), never rich markup
        table.add_row(*(Text("-" if cell is None else str(cell)) for cell in row))
    console = stdout_console()
    if title:
        console.print(title, highlight=False, markup=False)
    console.print(table, highlight=False)
