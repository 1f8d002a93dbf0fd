"""Fixtures of the command-line tests: ``pylog`` run as a real subprocess.

``run_pylog(*args, input=..., env=...)`` runs ``python -P -m pylog ARGS`` with the same pylog as
this process (``same_pylog_env``), stdin from ``input`` (bytes or str), and returns the
``CompletedProcess`` with bytes stdout and stderr; ``PYLOG_DIR`` is not inherited unless given.
``run_with_terminal_stderr(*args)`` runs it with stderr on a pseudo-terminal (progress bars).
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from pylog.bench_processes import same_pylog_env

RunPylog = Callable[..., subprocess.CompletedProcess]


def pylog_command(*args: object) -> list[str]:
    # why -P: the working directory (a source checkout without its built extension) must not
    # shadow the pylog this process runs
    return [sys.executable, "-P", "-m", "pylog", *map(str, args)]


@pytest.fixture
def run_pylog() -> RunPylog:
    def run(
        *args: object,
        input: bytes | str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess:
        child_env = same_pylog_env()
        child_env.pop("PYLOG_DIR", None)
        child_env.update(env or {})
        data: Any = input.encode() if isinstance(input, str) else input
        return subprocess.run(
            pylog_command(*args), input=data, env=child_env, capture_output=True, timeout=timeout, check=False
        )

    return run


def run_with_terminal_stderr(*args: object) -> tuple[int, bytes, bytes]:
    """Run ``pylog *args`` with stderr on a pseudo-terminal (what a user at a terminal sees:
    progress bars show only there) and stdout on a pipe; ``(exit code, stdout, what the terminal
    showed)``, after the child exited."""
    controller, terminal = pty.openpty()
    env = {**same_pylog_env(), "COLUMNS": "120"}
    try:
        child = subprocess.Popen(pylog_command(*args), stdout=subprocess.PIPE, stderr=terminal, env=env)
    finally:
        os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    out, _ = child.communicate(timeout=60)
    return child.returncode, out, shown
