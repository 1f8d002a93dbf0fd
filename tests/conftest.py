"""Shared fixtures: every behaviour test runs against both engines through one fixture.

- ``engine``: parametrized over ``native`` and ``reference``. The native param is skipped (with the
  reason) only when ``pylog._native`` cannot be imported and ``CI`` is not set; in CI a missing
  extension is an error, never a skip.
- ``open_log(path=None, *, engine=None, config=None, **settings)``: opens a partition with
  ``pylog.engine.open_partition`` and closes it at teardown. ``settings`` take Kafka names with
  underscores for dots (``segment_bytes=1024``) or a ``config`` mapping with the real names.
- ``both_engines``: for tests that need the two engines at once (differential, cross-reading).
- ``kafka_bootstrap`` (session): ``host:port`` of a real Kafka broker — ``PYLOG_KAFKA_BOOTSTRAP``
  or one started for this worker by tools/kafka_broker.py; skipped with the reason without Java 17+
  or Maven, a failure instead under ``PYLOG_REQUIRE_KAFKA=1`` (see tests/kafka_broker.py).
  ``kafka_url`` is ``kafka://`` + it; ``kafka_cleanup`` deletes, after the test, the topics and
  consumer groups the test made (waiting until gone), so tests can reuse names like "t".
- Markers ``embedded_only(reason)`` and ``kafka_only(reason)``: the ``log`` fixture of tests/api
  skips the other backends' params with that reason.
- Hypothesis profiles: ``ci`` (more examples, selected when ``CI=true``), ``dev`` (few), and
  ``soak`` for manual bug hunts (``HYPOTHESIS_PROFILE=soak``).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kafka_broker
import pytest
from helpers import IN_CI, skip_if_engine_missing
from hypothesis import HealthCheck, settings

from pylog.engine import ENGINES, PartitionLog, open_partition

with warnings.catch_warnings():
    # Hypothesis imports this (and libcst) only after a failure, to suggest a patch; libcst warns
    # on import, which filterwarnings=error would turn into an INTERNALERROR hiding the failure.
    warnings.simplefilter("ignore", DeprecationWarning)
    with contextlib.suppress(ImportError):
        import hypothesis.extra._patching  # noqa: F401

settings.register_profile(
    "ci",
    max_examples=600,
    stateful_step_count=50,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "dev",
    max_examples=25,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(  # manual bug hunts: HYPOTHESIS_PROFILE=soak
    "soak",
    max_examples=2000,
    stateful_step_count=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if IN_CI else "dev"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "embedded_only(reason): the kafka param of the `log` fixture skips with reason"
    )
    config.addinivalue_line(
        "markers", "kafka_only(reason): the embedded params of the `log` fixture skip with reason"
    )


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from kafka_broker.session_bootstrap(tmp_path_factory)


@pytest.fixture(scope="session")
def kafka_url(kafka_bootstrap: str) -> str:
    return f"kafka://{kafka_bootstrap}"


@pytest.fixture(scope="session")
def kafka_cleaner(kafka_bootstrap: str) -> kafka_broker.Cleaner:
    return kafka_broker.Cleaner(kafka_bootstrap)


@pytest.fixture
def kafka_cleanup(kafka_cleaner: kafka_broker.Cleaner) -> Iterator[None]:
    before = kafka_cleaner.snapshot()
    yield
    kafka_cleaner.clean(before)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    skip_if_engine_missing(request.param)
    return request.param


@pytest.fixture
def other_engine(engine: str) -> str:
    name = "reference" if engine == "native" else "native"
    skip_if_engine_missing(name)
    return name


@pytest.fixture
def both_engines() -> tuple[str, str]:
    for name in ENGINES:
        skip_if_engine_missing(name)
    return ("native", "reference")


def make_config(config: dict[str, Any] | None = None, **settings_: Any) -> dict[str, Any]:
    """Merge a Kafka-named mapping with ``segment_bytes=...`` style keyword settings."""
    out = dict(config or {})
    for key, value in settings_.items():
        out[key.replace("_", ".")] = value
    return out


OpenLog = Callable[..., PartitionLog]


@pytest.fixture
def open_log(engine: str, tmp_path: Path) -> Iterator[OpenLog]:
    opened: list[PartitionLog] = []
    counter = iter(range(1_000_000))

    def factory(
        path: str | os.PathLike[str] | None = None,
        *,
        engine: str | None = None,
        config: dict[str, Any] | None = None,
        **settings_: Any,
    ) -> PartitionLog:
        name = engine or request_engine
        skip_if_engine_missing(name)
        if path is None:
            path = tmp_path / f"topic-{next(counter)}"
        log = open_partition(path, engine=name, config=make_config(config, **settings_))
        opened.append(log)
        return log

    request_engine = engine
    yield factory
    errors = []
    for log in reversed(opened):
        try:
            log.close()
        except Exception as exc:  # a broken close must fail the test, after closing the rest
            errors.append(exc)
    if errors:
        raise errors[0]
