"""Fixtures of the command-line tests: ``pylog`` run as a real subprocess.

``run_pylog(*args, input=..., env=...)`` runs ``python -P -m pylog ARGS`` with the same pylog as
this process (``same_pylog_env``), stdin from ``input`` (bytes or str), and returns the
``CompletedProcess`` with bytes stdout and stderr; ``PYLOG_DIR`` is not inherited unless given.
"""

from __future__ import annotations

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
