"""Fixtures of the kafka backend's own tests (tests/kafka_backend/), one set for the three files.

- ``bootstrap``: ``host:port`` of the session's broker (``kafka_bootstrap``, tests/conftest.py:
  ``PYLOG_KAFKA_BOOTSTRAP`` or a broker started for this worker; never skipped under
  ``PYLOG_REQUIRE_KAFKA=1``).
- ``prefix``: a fresh name prefix per test (``<module>-<random>-``), so names never meet what
  another test, or another user of a shared broker, made.
- ``log``: ``pylog.open`` of that broker with a 10 s admin bound; after the test it is closed
  (its consumers leave their groups) and then every topic and consumer group the test made is
  deleted and awaited (``kafka_cleanup``; it is set up before the log, so it is torn down after).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

import pylog


@pytest.fixture
def bootstrap(kafka_bootstrap: str) -> str:
    return kafka_bootstrap


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    stem = request.module.__name__.rpartition(".")[2].removeprefix("test_").removesuffix("_kafka")
    return f"{stem}-{uuid.uuid4().hex[:10]}-"


@pytest.fixture
def log(kafka_cleanup: None, kafka_url: str) -> Iterator[pylog.Log]:
    with pylog.open(kafka_url, timeout_ms=10_000) as opened:
        yield opened
