"""The ``pylog`` command line (also ``python -m pylog``).

Each command lives in its own module of this package and adds its argparse parser in
``register(subcommands)``, setting ``handler=`` (a function of the parsed arguments returning the
exit code) with ``set_defaults``. This module owns the rule every command shares: how a run ends.

Exit codes (one rule for every command):
- 0: done, and what was checked is healthy;
- 1: the command ran and found a problem (``verify``: damage; ``bench``: a figure failed its check);
- 2: the command could not do what was asked: a usage error, a missing directory, an unknown
  topic or group, a malformed argument, a refused operation. One line on stderr,
  ``pylog <command>: <message>``, never a traceback;
- 130: interrupted (Ctrl-C).
A closed stdout (``pylog consume t | head``) ends the command quietly with 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from pylog.cli import (
    bench_command,
    consume,
    dump,
    groups,
    maintenance,
    mirror,
    produce,
    topics,
    verify,
)
from pylog.cli.common import CliError
from pylog.errors import PylogError

#: the command modules, in the order ``pylog --help`` lists them
COMMANDS = (topics, produce, consume, groups, dump, verify, maintenance, mirror, bench_command)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the one-line error rule: a usage error prints ``pylog <command>: <message>``
    (and where ``--help`` is), not the whole usage block. Subcommand parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="pylog",
        description="An embeddable, Kafka-compatible commit log: look inside a log directory, "
        "produce and consume records, manage groups, mirror topics to and from Kafka, and measure the engines.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (the module docstring's rule)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    name = " ".join(filter(None, [args.command, getattr(args, "action", None)]))
    try:
        return int(args.handler(args))
    except CliError as error:
        print(f"pylog {name}: {error}", file=sys.stderr)
        return error.code
    except PylogError as error:
        print(f"pylog {name}: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if isinstance(error, BrokenPipeError):
            return _quiet_after_closed_stdout()
        print(f"pylog {name}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pylog {name}: interrupted", file=sys.stderr)
        return 130


def _quiet_after_closed_stdout() -> int:
    """The reader of our stdout went away (``| head``): end quietly. why dup2: Python flushes
    stdout again at exit and would print a second BrokenPipeError; pointing the descriptor at
    /dev/null makes that flush succeed."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 0


def run() -> None:
    """The console script's entry point (``pylog``)."""
    sys.exit(main())
