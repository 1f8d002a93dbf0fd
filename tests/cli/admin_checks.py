"""Checks the command tests share: the one-line error rule (every command's tests), a JSON
answer, and a parser of the tables of the admin commands (topics, groups, compact,
delete-records; ``pylog.cli.common.emit_table``: upper-case headers, columns aligned by spaces,
so a cell's text starts under its header)."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any


def one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Assert ``result`` is the exit-2 rule (nothing on stdout, one line on stderr naming the
    command, no traceback) and that the line holds every fragment; returns the line."""
    err = result.stderr.decode()
    assert result.returncode == 2, (result.returncode, err)
    assert result.stdout == b"", result.stdout
    assert len(err.splitlines()) == 1 and err.startswith("pylog "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def json_answer(result: subprocess.CompletedProcess) -> Any:
    """The JSON document of a successful ``--json`` run (exactly one line on stdout)."""
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 1, lines
    return json.loads(lines[0])


def parse_tables(text: str, first_column: str) -> list[list[dict[str, str]]]:
    """Every table of ``text`` whose header starts with ``first_column``: its rows as
    ``{header: cell}`` (a cell is the text under its header up to the next column)."""
    tables: list[list[dict[str, str]]] = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not line.startswith(first_column + " "):
            continue
        heads = [(m.start(), m.group()) for m in re.finditer(r"\S+", line)]
        rows = []
        for row in lines[index + 1 :]:
            if not row.strip() or row.startswith(("Topic: ", "Group")):
                break
            cells = {}
            for i, (start, name) in enumerate(heads):
                end = heads[i + 1][0] if i + 1 < len(heads) else None
                cells[name] = row[start:end].strip()
            rows.append(cells)
        tables.append(rows)
    return tables


def parse_table(text: str, first_column: str) -> list[dict[str, str]]:
    """The one table of ``text`` (``parse_tables``)."""
    tables = parse_tables(text, first_column)
    assert len(tables) == 1, text
    return tables[0]


def cell(value: object) -> str:
    """How a table shows ``value`` (None as ``-``)."""
    return "-" if value is None else str(value)
