"""Fixtures of the client-API tests: the same tests run over every backend.

``log`` is a ``pylog.Log`` parametrized over ``native`` and ``reference`` (the embedded backend on
a fresh directory, one param per engine) and ``kafka`` (a real broker: ``kafka_bootstrap`` of
tests/conftest.py). Tests reach storage only through the public API. A test that needs the
embedded backend's internals asks for ``engine``, ``log_dir`` (its directory) or another embedded
fixture too; its ``kafka`` param is then skipped with the reason "needs the embedded backend's
files", without starting anything. ``@pytest.mark.embedded_only("why")`` skips the kafka param and
``@pytest.mark.kafka_only("why")`` the embedded ones, with the stated reason (``-rs`` prints it).

Kafka isolation: the kafka param notes the topics and groups present before the test and, after
closing the log, deletes those the test made and waits until they are gone (tests/kafka_broker.py
``Cleaner``), so every test starts on an empty cluster and may reuse "t".

Tests that ask for ``engine`` without ``log`` run on the two engines only, as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import skip_if_engine_missing

import pylog
from pylog.engine import ENGINES

BACKENDS = (*ENGINES, "kafka")
# fixtures that only mean something on the embedded backend (its engines, files and partitions)
EMBEDDED_FIXTURES = frozenset({"engine", "other_engine", "both_engines", "log_dir", "open_log"})
EMBEDDED_FILES_REASON = "needs the embedded backend's files"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_name" in metafunc.fixturenames:
        names = BACKENDS if "log" in metafunc.fixturenames else ENGINES
        metafunc.parametrize("backend_name", names, indirect=True)


@pytest.fixture
def backend_name(request: pytest.FixtureRequest) -> str:
    """The param: "native" or "reference" (embedded engines) or "kafka"."""
    return request.param


@pytest.fixture
def engine(backend_name: str) -> str:
    # overrides tests/conftest.py's parametrized one: the engine follows the `log` param
    if backend_name == "kafka":
        pytest.skip(EMBEDDED_FILES_REASON)
    skip_if_engine_missing(backend_name)
    return backend_name


@pytest.fixture
def log_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    # why not a backend_name argument: a test using log_dir alone stays unparametrized, as before
    if "backend_name" in request.fixturenames and request.getfixturevalue("backend_name") == "kafka":
        pytest.skip(EMBEDDED_FILES_REASON)
    return tmp_path / "log"


def skip_for_markers(request: pytest.FixtureRequest, backend_name: str) -> None:
    """Skip this param as the test's markers and embedded-only fixtures say, before opening."""
    if backend_name == "kafka":
        marker = request.node.get_closest_marker("embedded_only")
        if marker is not None:
            pytest.skip(marker.args[0] if marker.args else "embedded backend only")
        needs = sorted(EMBEDDED_FIXTURES & set(request.fixturenames))
        if needs:
            pytest.skip(f"{EMBEDDED_FILES_REASON} (uses {', '.join(needs)})")
    else:
        marker = request.node.get_closest_marker("kafka_only")
        if marker is not None:
            pytest.skip(marker.args[0] if marker.args else "kafka backend only")


@pytest.fixture
def log(request: pytest.FixtureRequest, backend_name: str, tmp_path: Path) -> Iterator[pylog.Log]:
    skip_for_markers(request, backend_name)
    if backend_name != "kafka":
        skip_if_engine_missing(backend_name)
        with pylog.open(tmp_path / "log", engine=backend_name) as opened:
            yield opened
        return
    cleaner = request.getfixturevalue("kafka_cleaner")
    url = request.getfixturevalue("kafka_url")
    before = cleaner.snapshot()
    try:
        with pylog.open(url) as opened:
            yield opened
    finally:
        cleaner.clean(before)
