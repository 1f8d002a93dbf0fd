"""Fixtures of the client-API tests: the same tests run over every backend.

``log`` is a ``pylog.Log`` over a fresh directory, on each engine of the embedded backend (and, when
the kafka backend lands, over a real broker). Tests should reach storage only through the public
API; tests that need the embedded backend's internals (files, catalog) ask for ``log_dir`` too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import pylog


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "log"


@pytest.fixture
def log(engine: str, log_dir: Path) -> Iterator[pylog.Log]:
    with pylog.open(log_dir, engine=engine) as opened:
        yield opened
