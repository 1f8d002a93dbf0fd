"""A real Kafka broker for the tests: where it comes from, and a clean slate after each test.

``session_bootstrap(tmp_path_factory)`` yields the ``host:port`` of a broker for this test process:
``PYLOG_KAFKA_BOOTSTRAP`` if set (an existing broker, checked reachable), else one started with
tools/kafka_broker.py in a fresh directory of its own (one per pytest-xdist worker: each worker is
its own session) and stopped when the session ends; the script's watchdog (``--owner-pid``) stops it
too if this process dies without its teardown. Without Java 17+ or Maven (the script's ``check``
says which) the kafka tests are skipped with that reason, unless ``PYLOG_REQUIRE_KAFKA=1`` (.ci/run
sets it): then they fail with it. A broker that should start and does not is always a failure.

``Cleaner`` restores the slate between tests: it notes the topics and consumer groups present
before a test and afterwards deletes every non-internal topic and group the test made, waiting
(bounded) until metadata no longer lists them, so the next test can create "t" again. On a broker
of our own that is every topic and group; on a shared ``PYLOG_KAFKA_BOOTSTRAP`` broker, other users'
topics present before the test are left alone (run with one xdist worker there: two workers'
tests would share the names "t", "g"...).

Thread-safety: used from pytest's main thread only.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "kafka_broker.py"
REQUIRED = os.environ.get("PYLOG_REQUIRE_KAFKA", "").strip() == "1"
EXTERNAL = os.environ.get("PYLOG_KAFKA_BOOTSTRAP", "").strip()
EXIT_MISSING = 3  # tools/kafka_broker.py: Java or Maven missing
# generous: a cold cache fetches the jars from Maven Central first (tools/kafka_jars.sh)
START_BOUND_S = 900.0
STOP_BOUND_S = 60.0
CLEANUP_BOUND_S = 20.0
ADMIN_TIMEOUT_S = 10.0


def run_script(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason``, or fail with it when the run requires Kafka (PYLOG_REQUIRE_KAFKA=1)."""
    if REQUIRED:
        pytest.fail(f"PYLOG_REQUIRE_KAFKA=1 but no Kafka broker: {reason}", pytrace=False)
    pytest.skip(f"no Kafka broker: {reason}")


def quiet_logger() -> logging.Logger:
    # librdkafka's own log lines (connection refused while a broker stops...) are not test output
    logger = logging.getLogger("tests.kafka_broker.librdkafka")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


def admin_client(bootstrap: str):  # -> confluent_kafka.admin.AdminClient
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, "logger": quiet_logger()})


def check_reachable(bootstrap: str) -> None:
    from confluent_kafka import KafkaException

    try:
        admin_client(bootstrap).list_topics(timeout=ADMIN_TIMEOUT_S)
    except KafkaException as exc:
        pytest.fail(f"PYLOG_KAFKA_BOOTSTRAP={bootstrap} does not answer: {exc}", pytrace=False)


class _Started:
    """The broker this process started: shared by every fixture that asks (tests/ and
    benchmarks/ each define a ``kafka_bootstrap``), stopped when the last of them is done."""

    directory: Path | None = None
    bootstrap = ""
    users = 0


def _start(tmp_path_factory: pytest.TempPathFactory) -> str:
    checked = run_script("check", timeout_s=60)
    if checked.returncode == EXIT_MISSING:
        skip_or_fail(checked.stderr.strip().removeprefix("kafka_broker check: "))
    if checked.returncode != 0:
        pytest.fail(f"tools/kafka_broker.py check failed: {checked.stderr.strip()}", pytrace=False)
    directory = tmp_path_factory.mktemp("kafka-broker")
    started = run_script(
        "start", "--dir", str(directory), "--owner-pid", str(os.getpid()), timeout_s=START_BOUND_S
    )
    if started.returncode == EXIT_MISSING:
        skip_or_fail(started.stderr.strip())
    if started.returncode != 0:
        pytest.fail(f"the test broker did not start:\n{started.stderr}", pytrace=False)
    _Started.directory = directory
    return started.stdout.strip().splitlines()[-1]


def _stop() -> None:
    assert _Started.directory is not None
    stopped = run_script("stop", "--dir", str(_Started.directory), timeout_s=STOP_BOUND_S)
    _Started.directory = None
    if stopped.returncode != 0:
        raise RuntimeError(f"the test broker did not stop cleanly: {stopped.stderr}")


def session_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The body of a session-scoped ``kafka_bootstrap`` fixture (see the module docstring)."""
    if EXTERNAL:
        check_reachable(EXTERNAL)
        yield EXTERNAL
        return
    if _Started.users == 0:
        _Started.bootstrap = _start(tmp_path_factory)
    _Started.users += 1
    try:
        yield _Started.bootstrap
    finally:
        _Started.users -= 1
        if _Started.users == 0:
            _stop()


def is_internal(topic: str) -> bool:
    # Kafka's internal topics (__consumer_offsets, __transaction_state, __share_group_state) all
    # start with "__"; no test here names a topic so
    return topic.startswith("__")


class Cleaner:
    """Deletes, after a test, the topics and consumer groups it created (see the module docstring)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.admin = admin_client(bootstrap)

    def topics(self) -> set[str]:
        metadata = self.admin.list_topics(timeout=ADMIN_TIMEOUT_S)
        return {name for name in metadata.topics if not is_internal(name)}

    def groups(self) -> set[str]:
        listed = self.admin.list_consumer_groups(request_timeout=ADMIN_TIMEOUT_S).result()
        return {group.group_id for group in listed.valid}

    def snapshot(self) -> tuple[set[str], set[str]]:
        return self.topics(), self.groups()

    def clean(self, before: tuple[set[str], set[str]]) -> None:
        """Delete what appeared since ``before``; raise if it is still there at the deadline."""
        topics_before, groups_before = before
        deadline = time.monotonic() + CLEANUP_BOUND_S
        self._delete_groups(groups_before, deadline)
        self._delete_topics(topics_before, deadline)

    def _delete_groups(self, keep: set[str], deadline: float) -> None:
        errors: dict[str, str] = {}
        while made := self.groups() - keep:
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"consumer groups still there {CLEANUP_BOUND_S:.0f} s after the test: "
                    f"{errors or sorted(made)} (a consumer left open keeps its group non-empty)"
                )
            futures = self.admin.delete_consumer_groups(sorted(made), request_timeout=ADMIN_TIMEOUT_S)
            # NON_EMPTY_GROUP until its last member has left (or its session ended)
            failed = {group: future.exception() for group, future in futures.items()}
            errors = {group: str(error) for group, error in failed.items() if error is not None}
            if errors:
                time.sleep(0.1)  # polling the broker's group state; the loop has a deadline

    def _delete_topics(self, keep: set[str], deadline: float) -> None:
        made = self.topics() - keep
        if made:
            futures = self.admin.delete_topics(sorted(made), operation_timeout=ADMIN_TIMEOUT_S)
            for future in futures.values():
                future.exception()  # UNKNOWN_TOPIC_OR_PART (already gone) is fine; the wait below judges
        # deletion is asynchronous: wait until metadata no longer lists them, so "t" can be made again
        while remaining := self.topics() & made:
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"topics still listed {CLEANUP_BOUND_S:.0f} s after deleting them: {sorted(remaining)}"
                )
            time.sleep(0.05)
